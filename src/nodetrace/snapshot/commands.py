"""Recognise a command output by its file name, the way sosreport and people name such files.

sosreport names a file after its command with spaces made ``_`` and ``/`` made ``.``
(``ovs-appctl_fdb.show_br-int``, ``ip_-d_address``, ``ip_netns_exec_qrouter-1_iptables-save``);
people save ``iptables-save.txt`` or ``ovs-ofctl dump-flows br-int``. Both are split into words
and matched against the commands nodetrace reads; a bundle's own file names (``ip-link.json``,
``ovs-ofctl-dump-flows.br-int.txt``) are recognised too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

TABLES = ("raw", "mangle", "nat", "filter", "security")
"""The iptables tables a listing (``iptables -t TABLE -nvL``) may show."""

PER_BRIDGE = frozenset(
    {"ovs-ofctl-show", "ovs-ofctl-dump-flows",
     "ovs-appctl-fdb-show", "ovs-appctl-bridge-dump-flows"}
)  # fmt: skip

COMMANDS: dict[str, str] = {
    "iptables-save": "iptables-save",
    "ip6tables-save": "ip6tables-save",
    "iptables-legacy-save": "iptables-legacy-save",
    "iptables-nft-save": "iptables-nft-save",
    "ip6tables-legacy-save": "ip6tables-legacy-save",
    "ip6tables-nft-save": "ip6tables-nft-save",
    "ipset-save": "ipset save",
    "ipset-list": "ipset list",
    "nft-list-ruleset": "nft -a list ruleset",
    "ip-netns": "ip netns list",
    "ip-link": "ip -d -j link",
    "ip-addr": "ip -d -j address",
    "ip-addr-oneline": "ip -o address",
    "iptables-version": "iptables -V",
    "ip-route": "ip -j route show table all",
    "ip6-route": "ip -6 -j route show table all",
    "ip-rule": "ip -j rule",
    "ip6-rule": "ip -6 -j rule",
    "ip-neigh": "ip -j neigh",
    "bridge-link": "bridge -d -j link",
    "bridge-fdb": "bridge -j fdb",
    "bridge-vlan": "bridge -j vlan",
    "brctl-show": "brctl show",
    "sysctl": "sysctl -a",
    "conntrack-ipv4": "conntrack -L -f ipv4",
    "conntrack-ipv6": "conntrack -L -f ipv6",
    "ovs-vsctl-show": "ovs-vsctl show",
    "ovs-vsctl-list-open_vswitch": "ovs-vsctl --format json list Open_vSwitch",
    "ovs-vsctl-list-bridge": "ovs-vsctl --format json list Bridge",
    "ovs-vsctl-list-port": "ovs-vsctl --format json list Port",
    "ovs-vsctl-list-interface": "ovs-vsctl --format json list Interface",
    "ovs-vsctl-record-port": "ovs-vsctl list Port BRIDGE",
    "ovs-vsctl-record-interface": "ovs-vsctl list Interface BRIDGE",
    "ovs-ofctl-show": "ovs-ofctl show BRIDGE",
    "ovs-ofctl-dump-flows": "ovs-ofctl dump-flows BRIDGE",
    "ovs-appctl-fdb-show": "ovs-appctl fdb/show BRIDGE",
    "ovs-appctl-dpctl-dump-conntrack": "ovs-appctl dpctl/dump-conntrack",
    "ovs-appctl-dpctl-show": "ovs-appctl dpctl/show",
    "ovs-appctl-bridge-dump-flows": "ovs-appctl bridge/dump-flows BRIDGE",
    "ovs-appctl-ovs-route-show": "ovs-appctl ovs/route/show",
    "ovs-appctl-tnl-neigh-show": "ovs-appctl tnl/neigh/show",
    "ovs-appctl-dpif-show": "ovs-appctl dpif/show",
    "ovs-appctl-dpctl-show-stats": "ovs-appctl dpctl/show -s",
    "ip-link-stats": "ip -s -s -j link show",
    "nstat": "nstat -asz",
    "conntrack-stats": "conntrack -S",
}
"""The command that collects each kind (``BRIDGE`` stands for the bridge's name), for what the
snapshot lacks and for the list of accepted file names."""

KNOWN_KINDS = frozenset(
    {
        *COMMANDS,
        *(f"{prog}-list-{table}" for prog in ("iptables", "ip6tables") for table in TABLES),
    }
)
"""Every kind a reader may produce; the collector's kinds are a subset (a test checks it)."""


def command_of(kind: str, bridge: str | None = None) -> str:
    """The command line that would collect ``kind`` (of ``bridge``)."""
    if kind in COMMANDS:
        cmd = COMMANDS[kind]
        return cmd.replace("BRIDGE", bridge) if bridge else cmd
    for prog in ("ip6tables", "iptables"):
        if kind.startswith(f"{prog}-list-"):
            return f"{prog} -t {kind[len(prog) + 6 :]} -nvxL"
    return kind


@dataclass(frozen=True, slots=True)
class Recognised:
    kind: str
    bridge: str | None = None
    netns: str | None = None
    preference: int = 0
    """Higher wins when several files give the same kind (JSON over text, details over less)."""
    flow_filter: str = ""
    """The match a flow dump was limited to (``table=4`` of ``ovs-ofctl dump-flows br-tun
    table=4``): such a dump holds only part of the bridge's flows."""


_EXTENSIONS = re.compile(r"\.(txt|json|out|log)$")
_BUNDLE_NAME = re.compile(r"^(?P<kind>[a-z0-9_-]+?)(?:\.(?P<bridge>[^/]+))?$")


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[\s_]+", name) if w]


def recognise(filename: str, *, netns: str | None = None) -> Recognised | None:
    """What command produced the file ``filename`` (a base name), or ``None``."""
    stem = _EXTENSIONS.sub("", filename)
    m = _BUNDLE_NAME.match(stem)
    if m and m.group("kind") in KNOWN_KINDS:
        kind, bridge = m.group("kind"), m.group("bridge")
        if (kind in PER_BRIDGE) == (bridge is not None):
            return Recognised(kind, bridge, netns, preference=10)
    if netns is not None:
        # sosreport: namespaces/NS/ip_netns_exec_NS_COMMAND; the name may contain `_`.
        for prefix in (f"ip_netns_exec_{netns}_", f"ip netns exec {netns} "):
            if stem.startswith(prefix):
                stem = stem[len(prefix) :]
                break
    words = _words(stem)
    if len(words) >= 4 and words[:3] == ["ip", "netns", "exec"]:
        netns, words = words[3], words[4:]
    piped = ""
    if "|" in words:
        # `ovs-ofctl show br-int | grep X`: the command's output, filtered by another.
        at = words.index("|")
        words, piped = words[:at], " ".join(words[at:])
    if not words:
        return None
    prog = words[0].rsplit("/", 1)[-1]
    found = _command(prog, words[1:])
    alias = _SNAP_ALIAS.match(prog)
    if found is None and alias is not None:
        # A snap runs its commands as `SNAP.COMMAND` (`openstack-hypervisor.ovs-vsctl`);
        # sos names the file after that alias.
        found = _command(alias.group("command"), words[1:])
    if found is None:
        return None
    if found.flow_filter:
        # The words were split on `_` too (`in_port`): quote the filter as the name has it.
        start = stem.find(found.flow_filter.split(" ", 1)[0], stem.find("dump-flows"))
        end = min((i for i in (stem.find(" |"), stem.find("_|")) if i > start), default=len(stem))
        found = replace(found, flow_filter=stem[start:end].strip(" _"))
    if piped:
        if found.kind not in PIPED_KINDS:
            return None  # a filtered listing of devices or rules would pass for the whole
        flow_filter = f"{found.flow_filter} {piped}".strip()
        return Recognised(found.kind, found.bridge, netns, found.preference - 20, flow_filter)
    return Recognised(found.kind, found.bridge, netns, found.preference, found.flow_filter)


PIPED_KINDS = frozenset(
    {"ovs-ofctl-show", "ovs-ofctl-dump-flows",
     "ovs-vsctl-record-port", "ovs-vsctl-record-interface"}
)  # fmt: skip
"""Outputs still read when a file holds them filtered (``ovs-ofctl show br-int | grep X``):
what they show is true of the bridge, and the loader records that the rest is unknown."""


OVS_PROGRAMS = ("ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ovs-dpctl", "ovsdb-client")


def ovs_program(filename: str) -> tuple[str, list[str]] | None:
    """``(program, positional words)`` when ``filename`` is the output of an Open vSwitch
    tool, read or not (``ovs-vsctl list-br``, ``ovs-appctl dpctl/show``): proof that the node
    runs Open vSwitch even when the outputs nodetrace reads are absent."""
    words = _words(_EXTENSIONS.sub("", filename))
    if not words:
        return None
    prog = words[0].rsplit("/", 1)[-1]
    alias = _SNAP_ALIAS.match(prog)
    if prog not in OVS_PROGRAMS and alias is not None:
        prog = alias.group("command")
    if prog not in OVS_PROGRAMS:
        return None
    pos, _ = _drop_options(words[1:], ("-t", "--timeout"))
    return prog, pos


_SNAP_ALIAS = re.compile(r"^[a-z0-9][a-z0-9-]*\.(?P<command>[a-z0-9][a-z0-9-]*)$")
"""``snap-name.command``: a snap's alias of a command it ships."""


def _drop_options(words: list[str], with_value: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """Split words into positional ones and option flags (options in ``with_value`` eat one)."""
    rest: list[str] = []
    flags: set[str] = set()
    skip = False
    for i, w in enumerate(words):
        if skip:
            skip = False
            continue
        if w.startswith("-"):
            flags.add(w.split("=", 1)[0])
            if w in with_value and i + 1 < len(words):
                flags.add(f"{w} {words[i + 1]}")
                skip = True
            continue
        rest.append(w)
    return rest, flags


_IP_OBJECTS = {
    "link": "link", "l": "link",
    "address": "addr", "addr": "addr", "a": "addr",
    "route": "route", "r": "route", "ro": "route",
    "rule": "rule", "ru": "rule",
    "neigh": "neigh", "neighbour": "neigh", "neighbor": "neigh", "n": "neigh",
    "netns": "netns",
}  # fmt: skip


def _command(prog: str, args: list[str]) -> Recognised | None:
    if re.fullmatch(r"ip6?tables(-legacy|-nft)?-save", prog):
        return Recognised(prog)
    if re.fullmatch(r"ip6?tables(-legacy|-nft)?", prog):
        if prog == "iptables" and args in (["-V"], ["--version"]):
            return Recognised("iptables-version")
        return _iptables_listing(prog, args)
    if prog == "brctl":
        pos, _ = _drop_options(args, ())
        return Recognised("brctl-show") if pos == ["show"] else None
    if prog == "ipset":
        pos, _ = _drop_options(args, ())
        if pos[:1] == ["save"]:
            return Recognised("ipset-save", preference=2)
        if pos[:1] == ["list"] and len(pos) == 1:
            return Recognised("ipset-list", preference=1)
        return None
    if prog == "nft":
        # Only a listing with handles (-a) can name the rules nf_tables traces print.
        pos, flags = _drop_options(args, ())
        if pos == ["list", "ruleset"] and flags & {"-a", "--handle"}:
            return Recognised("nft-list-ruleset")
        return None
    if prog == "sysctl":
        return Recognised("sysctl")
    if prog == "conntrack":
        pos, flags = _drop_options(args, ("-f",))
        if "-L" in flags or pos[:1] == ["list"]:
            return Recognised("conntrack-ipv6" if "-f ipv6" in flags else "conntrack-ipv4")
        return None
    if prog == "ip":
        return _ip_command(args)
    if prog == "bridge":
        pos, flags = _drop_options(args, ())
        if pos and pos[0] in ("link", "fdb", "vlan") and pos[1:] in ([], ["show"]):
            return Recognised(f"bridge-{pos[0]}", preference=2 if "-j" in flags else 1)
        return None
    if prog == "ovs-vsctl":
        pos, flags = _drop_options(args, ("-t", "-f", "--format", "-d", "--data"))
        if pos == ["show"]:
            return Recognised("ovs-vsctl-show")
        if len(pos) == 2 and pos[0] == "list":
            table = pos[1].lower()
            if table in ("open_vswitch", "bridge", "port", "interface"):
                json_out = "--format" in flags and any("json" in f for f in flags)
                return Recognised(f"ovs-vsctl-list-{table}", preference=2 if json_out else 1)
        if len(pos) == 3 and pos[0] == "list" and pos[1].lower() in ("port", "interface"):
            # One record, named by the command (`ovs-vsctl list port qvoX`); `bridge` holds
            # the record's name, as it holds the bridge of per-bridge outputs.
            return Recognised(f"ovs-vsctl-record-{pos[1].lower()}", bridge=pos[2])
        return None
    if prog == "ovs-dpctl":
        pos, _ = _drop_options(args, ())
        return Recognised("ovs-appctl-dpctl-show") if pos[:1] == ["show"] else None
    if prog == "ovs-ofctl":
        pos, flags = _drop_options(args, ("-O", "--protocols", "-t", "--timeout"))
        flow_filter = ""
        if pos[:1] == ["dump-flows"]:
            pos, flow_filter = _split_flow_filter(pos)
        pos = _join_bridge(pos)
        if len(pos) == 2 and pos[0] == "dump-ports-desc":
            # The same port blocks as `show` prints; read only when `show` is absent.
            return Recognised("ovs-ofctl-show", bridge=pos[1], preference=-1)
        if len(pos) == 2 and pos[0] in ("show", "dump-flows"):
            version = next(
                (f.split()[1] for f in flags if f.startswith(("-O ", "--protocols "))), ""
            )
            # The OpenFlow 1.3 dump spells actions as the agent installed them and as
            # ofproto/trace prints them (set_field, push_vlan); without -O ovs-ofctl speaks
            # OpenFlow 1.0 and re-spells some (load, mod_vlan_vid, strip_vlan). Later versions
            # print like 1.3.
            preference = {"OpenFlow13": 5, "OpenFlow14": 4, "OpenFlow15": 4, "": 3}.get(version, 2)
            if flow_filter:
                preference -= 10  # any whole dump of the bridge says more
            return Recognised(
                f"ovs-ofctl-{pos[0]}", bridge=pos[1], preference=preference, flow_filter=flow_filter
            )
        return None
    if prog == "ovs-appctl":
        pos, _ = _drop_options(args, ("-t", "--target", "-T", "--timeout"))
        pos = _join_bridge(pos)
        if len(pos) == 2 and pos[0] in ("fdb/show", "fdb.show"):
            return Recognised("ovs-appctl-fdb-show", bridge=pos[1])
        if pos[:1] in (["bridge/dump-flows"], ["bridge.dump-flows"]) and len(pos) == 2:
            return Recognised("ovs-appctl-bridge-dump-flows", bridge=pos[1])
        if len(pos) == 1 and pos[0].replace(".", "/") in _APPCTL_NODE:
            kind, preference = _APPCTL_NODE[pos[0].replace(".", "/")]
            return Recognised(kind, preference=preference)
        # "/" cannot be in a file name: sos writes "dpctl.dump-conntrack", others "dpctl_dump...".
        dpctl = "/".join(pos[:2] if pos[:1] == ["dpctl"] else pos[:1]).replace(".", "/")
        if dpctl == "dpctl/show":
            return Recognised("ovs-appctl-dpctl-show", preference=1)
        if dpctl == "dpctl/dump-conntrack":
            return Recognised("ovs-appctl-dpctl-dump-conntrack")
        return None
    return None


_APPCTL_NODE = {
    "ovs/route/show": ("ovs-appctl-ovs-route-show", 0),
    "tnl/neigh/show": ("ovs-appctl-tnl-neigh-show", 1),
    "tnl/arp/show": ("ovs-appctl-tnl-neigh-show", 0),  # its name before OVS 2.5
    "dpif/show": ("ovs-appctl-dpif-show", 0),
}
"""``ovs-appctl`` commands about the node as a whole: their kind and preference."""


def _iptables_listing(prog: str, args: list[str]) -> Recognised | None:
    """``iptables [-t TABLE] -L -n [-v] [-x]`` in any spelling (``-vnxL``, ``-nvL -t nat``)."""
    table = "filter"
    letters = ""
    chain_given = False
    i = 0
    while i < len(args):
        word = args[i]
        if word in ("-t", "--table") and i + 1 < len(args):
            table = args[i + 1]
            i += 2
            continue
        if word.startswith("--"):
            letters += {"--list": "L", "--numeric": "n", "--verbose": "v", "--exact": "x"}.get(
                word, ""
            )
        elif word.startswith("-"):
            letters += word[1:]
        else:
            chain_given = True  # one chain only: not the whole table
        i += 1
    if "L" not in letters or "n" not in letters or chain_given or table not in TABLES:
        return None  # without -n, addresses and ports are names that cannot be read back
    base = "ip6tables" if prog.startswith("ip6") else "iptables"
    preference = ("v" in letters) * 2 + ("x" in letters)
    return Recognised(f"{base}-list-{table}", preference=preference)


_MATCH_WORDS = frozenset(
    {
        "ip", "ipv6", "icmp", "icmp6", "tcp", "tcp6", "udp", "udp6", "sctp", "sctp6", "arp",
        "rarp", "mpls", "mplsm",
    }
)  # fmt: skip
"""Protocol shorthands of OVS's flow syntax, which may open a dump-flows filter."""


def _split_flow_filter(pos: list[str]) -> tuple[list[str], str]:
    """``[dump-flows, br-tun, table=4]`` -> ``([dump-flows, br-tun], "table=4")``.

    A word after the bridge that is flow syntax (``field=value``, ``arp``) starts the filter;
    other words are the rest of a bridge name split on ``_`` (``br_ex``).
    """
    for i in range(2, len(pos)):
        word = pos[i]
        if "=" in word or word.split(",", 1)[0] in _MATCH_WORDS:
            return pos[:i], " ".join(pos[i:])
    return pos, ""


def _join_bridge(pos: list[str]) -> list[str]:
    """``[cmd, "br", "ex"]`` -> ``[cmd, "br_ex"]``: the words were split on ``_`` too."""
    return pos if len(pos) <= 2 else [pos[0], "_".join(pos[1:])]


def _ip_command(args: list[str]) -> Recognised | None:
    pos, flags = _drop_options(args, ())
    if not pos or pos[0] not in _IP_OBJECTS:
        return None
    obj = _IP_OBJECTS[pos[0]]
    tail = pos[1:]
    if "-o" in flags or "-oneline" in flags:
        # One line per address: read only for the addresses, beside an `ip link` listing.
        if obj == "addr" and tail in ([], ["show"], ["list"]) and not flags & {"-4", "-6"}:
            return Recognised("ip-addr-oneline")
        return None
    if obj == "netns":
        return Recognised("ip-netns") if tail in ([], ["list"], ["show"]) else None
    if obj == "route":
        if tail not in ([], ["show"], ["list"], ["show", "table", "all"], ["list", "table", "all"]):
            return None  # route cache, a single table, get...
    elif tail not in ([], ["show"], ["list"], ["show", "nud", "all"]):
        return None
    family6 = "-6" in flags
    kind = {
        "link": "ip-link",
        "addr": "ip-addr",
        "route": "ip6-route" if family6 else "ip-route",
        "rule": "ip6-rule" if family6 else "ip-rule",
        "neigh": "ip-neigh",
    }[obj]
    if obj in ("link", "addr", "neigh") and ("-4" in flags or family6):
        return None  # a family-filtered list would lose half the node
    preference = (2 if "-j" in flags or "-json" in flags else 0) + (1 if "-d" in flags else 0)
    return Recognised(kind, preference=preference)
