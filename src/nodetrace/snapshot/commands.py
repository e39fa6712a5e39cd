"""Recognise a command output by its file name, the way sosreport and people name such files.

sosreport names a file after its command with spaces made ``_`` and ``/`` made ``.``
(``ovs-appctl_fdb.show_br-int``, ``ip_-d_address``, ``ip_netns_exec_qrouter-1_iptables-save``);
people save ``iptables-save.txt`` or ``ovs-ofctl dump-flows br-int``. Both are split into words
and matched against the commands nodetrace reads; a bundle's own file names (``ip-link.json``,
``ovs-ofctl-dump-flows.br-int.txt``) are recognised too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KNOWN_KINDS = frozenset(
    {
        "iptables-save",
        "ip6tables-save",
        "iptables-legacy-save",
        "iptables-nft-save",
        "ip6tables-legacy-save",
        "ip6tables-nft-save",
        "ipset-save",
        "ipset-list",
        "nft-list-ruleset",
        "ip-netns",
        "ip-link",
        "ip-addr",
        "ip-route",
        "ip6-route",
        "ip-rule",
        "ip6-rule",
        "ip-neigh",
        "bridge-link",
        "bridge-fdb",
        "bridge-vlan",
        "sysctl",
        "conntrack-ipv4",
        "conntrack-ipv6",
        "ovs-vsctl-show",
        "ovs-vsctl-list-open_vswitch",
        "ovs-vsctl-list-bridge",
        "ovs-vsctl-list-port",
        "ovs-vsctl-list-interface",
        "ovs-ofctl-show",
        "ovs-ofctl-dump-flows",
        "ovs-appctl-fdb-show",
        "ovs-appctl-dpctl-dump-conntrack",
    }
)
"""Every kind a reader may produce; the collector's kinds are a subset (a test checks it)."""

PER_BRIDGE = frozenset({"ovs-ofctl-show", "ovs-ofctl-dump-flows", "ovs-appctl-fdb-show"})


@dataclass(frozen=True, slots=True)
class Recognised:
    kind: str
    bridge: str | None = None
    netns: str | None = None
    preference: int = 0
    """Higher wins when several files give the same kind (JSON over text, details over less)."""


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
    if not words:
        return None
    found = _command(words[0].rsplit("/", 1)[-1], words[1:])
    if found is None:
        return None
    return Recognised(found.kind, found.bridge, netns, found.preference)


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
    "link": "link",
    "l": "link",
    "address": "addr",
    "addr": "addr",
    "a": "addr",
    "route": "route",
    "r": "route",
    "ro": "route",
    "rule": "rule",
    "ru": "rule",
    "neigh": "neigh",
    "neighbour": "neigh",
    "neighbor": "neigh",
    "n": "neigh",
    "netns": "netns",
}


def _command(prog: str, args: list[str]) -> Recognised | None:
    if re.fullmatch(r"ip6?tables(-legacy|-nft)?-save", prog):
        return Recognised(prog)
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
        return None
    if prog == "ovs-ofctl":
        pos, flags = _drop_options(args, ("-O", "--protocols", "-t", "--timeout"))
        pos = _join_bridge(pos)
        if len(pos) == 2 and pos[0] in ("show", "dump-flows"):
            version = next(
                (f.split()[1] for f in flags if f.startswith(("-O ", "--protocols "))), ""
            )
            # Without -O, ovs-ofctl speaks OpenFlow 1.0 and prints resubmit/mod_vlan_vid, the
            # form most tools and the reference expect; take it when both exist.
            preference = 3 if not version else 2 if version == "OpenFlow13" else 1
            return Recognised(f"ovs-ofctl-{pos[0]}", bridge=pos[1], preference=preference)
        return None
    if prog == "ovs-appctl":
        pos, _ = _drop_options(args, ("-t", "--target", "-T", "--timeout"))
        pos = _join_bridge(pos)
        if len(pos) == 2 and pos[0] in ("fdb/show", "fdb.show"):
            return Recognised("ovs-appctl-fdb-show", bridge=pos[1])
        # "/" cannot be in a file name: sos writes "dpctl.dump-conntrack", others "dpctl_dump...".
        if pos[:1] in (["dpctl/dump-conntrack"], ["dpctl.dump-conntrack"]) or pos[:2] == [
            "dpctl",
            "dump-conntrack",
        ]:
            return Recognised("ovs-appctl-dpctl-dump-conntrack")
        return None
    return None


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
        return None  # one-line output is not read
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
