"""Parse iproute2's plain-text output, as sosreports hold it: ``ip -d address``,
``ip -s -d link``, ``ip route show table all``, ``ip rule list``, ``ip neigh show``,
``bridge fdb show`` and ``ip netns``.

A sample of ``ip -d address`` (iproute2 6.1, abridged)::

    6: tap3b1f6a2c-8d@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master qbr3b1f6a2c-8d state UP group default qlen 1000
        link/ether 22:8c:99:12:c3:82 brd ff:ff:ff:ff:ff:ff link-netns snpv9f1ca4 promiscuity 1  allmulti 1 minmtu 68 maxmtu 65535
        veth
        bridge_slave state forwarding priority 32 cost 2 hairpin off guard off ... learning on flood on ...
        inet6 fe80::208c:99ff:fe12:c382/64 scope link
           valid_lft forever preferred_lft forever
    7: qbr3b1f6a2c-8d: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP group default qlen 1000
        link/ether 22:8c:99:12:c3:82 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535
        bridge forward_delay 1500 hello_time 200 max_age 2000 ageing_time 0 stp_state 0 ... nf_call_iptables 0 ...

The JSON forms (parsers/ip_json.py) are preferred when a snapshot has them: the text drops the
peer's ifindex (``@if2``) when the peer is in another namespace, so only its name is known.
"""

from __future__ import annotations

import re
from ipaddress import ip_interface

from nodetrace.errors import DiagnosticSink, SourcePos, report_line
from nodetrace.model.packet import Family
from nodetrace.model.topology import (
    MAIN_NS,
    Address,
    BridgeInfo,
    BridgePortInfo,
    FdbEntry,
    Interface,
    LinkDetail,
    LinkKind,
    NamespaceId,
    Neighbour,
    NextHop,
    Route,
    RouteRule,
    RouteType,
    TunnelInfo,
    TunTapInfo,
    VethInfo,
)
from nodetrace.parsers.elision import ELISION
from nodetrace.parsers.ip_json import ROUTE_TYPES, as_int, as_ip, as_network, rule_network
from nodetrace.parsers.pasted import output_lines

_HEADER = re.compile(r"^(\d+):\s+([^\s:@]+)(?:@([^\s:]+))?:\s+<([^>]*)>(.*)$")
_LINK = re.compile(r"^\s+link/(\S+)(?:\s+(\S+))?(.*)$")
_INET = re.compile(r"^\s+(inet6?)\s+(\S+)(?:\s+peer\s+(\S+))?(.*)$")
_KIND_WORDS = {
    "veth": LinkKind.VETH, "bridge": LinkKind.BRIDGE, "vxlan": LinkKind.VXLAN, "gre": LinkKind.GRE,
    "gretap": LinkKind.GRETAP, "ip6gre": LinkKind.GRE, "ip6gretap": LinkKind.GRETAP,
    "geneve": LinkKind.GENEVE, "tun": LinkKind.TUN, "openvswitch": LinkKind.OPENVSWITCH,
    "bond": LinkKind.BOND, "vlan": LinkKind.VLAN, "macvlan": LinkKind.MACVLAN,
    "dummy": LinkKind.DUMMY,
}  # fmt: skip
_ELIDED = "lines left out where the output was copied"
_SLAVE_WORDS = {"bridge_slave": "bridge", "openvswitch_slave": "openvswitch", "bond_slave": "bond"}


def _pairs(words: list[str]) -> dict[str, str]:
    """Each word mapped to the word after it (first occurrence wins): ``get("dev")`` is the
    device after ``dev``. Flags are tested with ``in``; no guessing of which word is a key."""
    out: dict[str, str] = {}
    for i, word in enumerate(words):
        out.setdefault(word, words[i + 1] if i + 1 < len(words) else "")
    return out


class _Builder:
    def __init__(self, netns: str, ifindex: int, name: str, at: str | None, flags: str, rest: str):
        self.netns = netns
        self.ifindex = ifindex
        self.name = name
        self.at = at
        self.flags = flags.split(",")
        attrs = _pairs(rest.split())
        self.mtu = as_int(attrs.get("mtu"))
        self.master = attrs.get("master")
        self.kind: LinkKind | None = None
        self.link_type = ""
        self.mac: str | None = None
        self.peer_netns: str | None = None
        self.peer_netnsid: int | None = None
        self.kind_attrs: dict[str, str] = {}
        self.slave_kind: str | None = None
        self.slave_attrs: dict[str, str] = {}
        self.addresses: list[Address] = []
        self.detailed = False
        """Whether ``ip`` printed this device's details (``-d``): only then does the absence of
        a kind line mean a plain NIC."""
        self.mutual_peer = False
        """Whether the device ``@NAME`` names points back at this one: only veth pairs do."""

    def _peer_in_other_namespace(self) -> bool:
        linked = self.peer_netns is not None or self.peer_netnsid is not None
        return linked and self.at is not None and re.fullmatch(r"if\d+", self.at) is not None

    def detail_line(self, words: list[str]) -> None:
        self.detailed = True
        first = words[0]
        if first in _SLAVE_WORDS:
            self.slave_kind = _SLAVE_WORDS[first]
            self.slave_attrs = _pairs(words[1:])
        elif self.kind is None and first in _KIND_WORDS:
            self.kind = _KIND_WORDS[first]
            self.kind_attrs = _pairs(words[1:])
            if first == "tun":
                self.kind = LinkKind.TAP if self.kind_attrs.get("type") == "tap" else LinkKind.TUN
            # `veth` is alone on its line when slave details follow on the next one.
            for i, w in enumerate(words[1:], 1):
                if w in _SLAVE_WORDS:
                    self.kind_attrs = _pairs(words[1:i])
                    self.slave_kind = _SLAVE_WORDS[w]
                    self.slave_attrs = _pairs(words[i + 1 :])
                    break

    def build(self) -> Interface:
        kind = self.kind
        derived = where = ""
        if kind is None and self.link_type == "ether" and self._peer_in_other_namespace():
            # Without -d, `NAME@ifN ... link-netns NS` is what ip prints for a veth whose
            # other end is device N of namespace NS (DVR's rfp-/fpr-, ns- of ovs_use_veth).
            kind = LinkKind.VETH
            where = (
                f"link-netns {self.peer_netns}"
                if self.peer_netns is not None
                else f"link-netnsid {self.peer_netnsid}"
            )
        elif kind is None and self.mutual_peer:
            # `qvoX@qvbX` and `qvbX@qvoX`: two devices naming each other as their link are the
            # two ends of a veth (a VLAN or macvlan names its lower device, which never names
            # it back).
            kind, where = LinkKind.VETH, f"{self.at}@{self.name}"
        if where:
            derived = (
                f"veth derived from {self.name}@{self.at} and {where} "
                "(ip address without -d does not print the kind)"
            )
        if kind is None and self.link_type == "ether" and not self.detailed:
            # Without -d, `ip` prints no kind at all: a NIC, a bridge, a tap and an OVS internal
            # port look alike, so the kind is unknown rather than taken for a NIC.
            kind = LinkKind.UNKNOWN
        if kind is None:
            kind = {"loopback": LinkKind.LOOPBACK, "ether": LinkKind.PHYSICAL}.get(
                self.link_type, LinkKind.OTHER
            )
        a = self.kind_attrs
        detail: LinkDetail | None = None
        if kind is LinkKind.VETH:
            same_ns = self.peer_netns is None and self.peer_netnsid is None
            peer = self.at if self.at and not re.fullmatch(r"if\d+", self.at) else None
            detail = VethInfo(
                peer=peer if same_ns else None,
                peer_ifindex=as_int(self.at[2:]) if self.at and self.at.startswith("if") else None,
                peer_netnsid=self.peer_netnsid,
                peer_netns=self.peer_netns,
                derived=derived,
            )
        elif kind is LinkKind.BRIDGE:
            detail = BridgeInfo(
                ageing_time=as_int(a.get("ageing_time")),
                stp_state=as_int(a.get("stp_state")) or 0,
                vlan_filtering=a.get("vlan_filtering") == "1",
                nf_call_iptables=a.get("nf_call_iptables") == "1",
                nf_call_ip6tables=a.get("nf_call_ip6tables") == "1",
                nf_call_arptables=a.get("nf_call_arptables") == "1",
            )
        elif kind in (LinkKind.VXLAN, LinkKind.GENEVE, LinkKind.GRE, LinkKind.GRETAP):
            detail = TunnelInfo(
                key=None if "external" in a else as_int(a.get("id", a.get("key", a.get("ikey")))),
                local=as_ip(a.get("local")),
                remote=as_ip(a.get("remote", a.get("group"))),
                dst_port=as_int(a.get("dstport")),
                underlay=a.get("dev"),
                learning="nolearning" not in a,
                external="external" in a,
            )
        elif kind in (LinkKind.TAP, LinkKind.TUN):
            detail = TunTapInfo(mode=a.get("type", kind.value))
        port = None
        if self.slave_kind == "bridge":
            s = self.slave_attrs
            port = BridgePortInfo(
                state=s.get("state", "forwarding"),
                learning=s.get("learning", "on") == "on",
                flood=s.get("flood", "on") == "on",
                hairpin=s.get("hairpin", "off") == "on",
                isolated=s.get("isolated", "off") == "on",
            )
        return Interface(
            name=self.name,
            netns=self.netns,
            ifindex=self.ifindex,
            kind=kind,
            mac=self.mac,
            mtu=self.mtu,
            up="UP" in self.flags,
            carrier="LOWER_UP" in self.flags,
            master=self.master,
            master_kind=self.slave_kind or ("bridge" if self.master and port else None),
            addresses=tuple(self.addresses),
            detail=detail,
            bridge_port=port,
        )


def parse_ip_link_text(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[Interface, ...]:
    """Interfaces from ``ip [-s] [-d] link`` or ``ip [-d] address`` text."""
    out: list[_Builder] = []
    current: _Builder | None = None
    after_elision = False
    for number, line in output_lines(text, source=source, sink=sink):
        if not line.strip():
            continue
        if ELISION.match(line):
            if sink is not None:
                sink.warn(SourcePos(source, number), f"{_ELIDED}: devices may be missing")
            # What follows up to the next device belongs to a device whose header was cut.
            if current is not None:
                out.append(current)
            current, after_elision = None, True
            continue
        m = _HEADER.match(line)
        if m:
            if current is not None:
                out.append(current)
            current = _Builder(
                netns, int(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
            )
            continue
        if current is None and after_elision:
            continue
        if current is None:
            # sosreport fixtures sometimes start with tool noise ("Message truncated").
            report_line(
                sink,
                source,
                number,
                "line before the first interface",
                line.strip()[:40],
                "N: NAME: <FLAGS>",
            )
            continue
        lm = _LINK.match(line)
        if lm:
            current.link_type = lm.group(1)
            if lm.group(2) and re.fullmatch(r"[0-9a-fA-F:]{11,}", lm.group(2)):
                current.mac = lm.group(2).lower()
            words = (lm.group(3) or "").split()
            current.detailed = current.detailed or "promiscuity" in words
            attrs = _pairs(words)
            current.peer_netns = attrs.get("link-netns")
            current.peer_netnsid = as_int(attrs.get("link-netnsid"))
            continue
        im = _INET.match(line)
        if im:
            try:
                iface = ip_interface(im.group(2))
                peer = ip_interface(im.group(3)) if im.group(3) else None
            except ValueError:
                report_line(sink, source, number, "bad address", im.group(2))
                continue
            scope = _pairs(im.group(4).split()).get("scope", "global")
            current.addresses.append(Address(iface, scope, peer))
            continue
        words = line.split()
        if words[0] in ("valid_lft", "RX:", "TX:", "altname", "alias") or words[0].isdigit():
            continue
        current.detail_line(words)
    if current is not None:
        out.append(current)
    _mark_mutual_peers(out)
    return tuple(b.build() for b in out)


def _mark_mutual_peers(builders: list[_Builder]) -> None:
    """Flag the devices whose ``@NAME`` names a device that names them back (veth pairs)."""
    at_of = {b.name: b.at for b in builders}
    for b in builders:
        if b.at is not None and at_of.get(b.at) == b.name:
            b.mutual_peer = True


def parse_ip_route_text(
    text: str,
    *,
    source: str,
    sink: DiagnosticSink | None = None,
    netns: str = MAIN_NS,
    family: Family = Family.IPV4,
) -> tuple[Route, ...]:
    """Routes from ``ip [-6] route show table all`` text (``nexthop`` lines join their route)."""
    out: list[Route] = []
    pending: tuple[int, list[str], list[NextHop]] | None = None

    def flush() -> None:
        if pending is None:
            return
        number, words, hops = pending
        route = _route(words, hops, number)
        if route is not None:
            out.append(route)

    def _route(words: list[str], hops: list[NextHop], number: int) -> Route | None:
        rtype = RouteType.UNICAST
        if words[0] in ROUTE_TYPES and len(words) > 1:
            rtype = ROUTE_TYPES[words[0]]
            words = words[1:]
        dst = as_network(words[0], family)
        if dst is None:
            report_line(
                sink, source, number, "unreadable destination", words[0], "PREFIX or default"
            )
            return None
        attrs = _pairs(words[1:])
        return Route(
            family=Family.IPV4 if dst.version == 4 else Family.IPV6,
            dst=dst,
            table=attrs.get("table", "main"),
            type=rtype,
            gateway=as_ip(attrs.get("via")),
            dev=attrs.get("dev"),
            prefsrc=as_ip(attrs.get("src")),
            metric=as_int(attrs.get("metric")) or 0,
            scope=attrs.get("scope", "global" if rtype is RouteType.UNICAST else "host"),
            protocol=attrs.get("proto", ""),
            nexthops=tuple(hops),
            netns=netns,
        )

    for number, line in output_lines(text, source=source, sink=sink):
        words = line.split()
        if not words:
            continue
        if line[0] in " \t":
            if words[0] == "nexthop" and pending is not None:
                a = _pairs(words[1:])
                pending[2].append(
                    NextHop(as_ip(a.get("via")), a.get("dev"), as_int(a.get("weight")) or 1)
                )
            continue  # `cache` lines and other continuations
        flush()
        pending = (number, words, [])
    flush()
    return tuple(out)


def parse_ip_rule_text(
    text: str,
    *,
    source: str,
    sink: DiagnosticSink | None = None,
    netns: str = MAIN_NS,
    family: Family = Family.IPV4,
) -> tuple[RouteRule, ...]:
    """Policy rules from ``ip [-4|-6] rule list`` (``32766:\\tfrom all lookup main``)."""
    out: list[RouteRule] = []
    for number, line in output_lines(text, source=source, sink=sink):
        m = re.match(r"^\s*(\d+):\s+(.*)$", line)
        if not m:
            if line.strip():
                report_line(sink, source, number, "not a rule", expected="PRIO: SELECTOR ACTION")
            continue
        words = m.group(2).split()
        negate = bool(words) and words[0] == "not"
        attrs = _pairs(words[1:] if negate else words)
        action, table = "lookup", attrs.get("lookup", attrs.get("table"))
        for word in ("blackhole", "unreachable", "prohibit", "goto", "nop"):
            if word in attrs:
                action, table = word, None
        mark, _, mask = (attrs.get("fwmark") or "").partition("/")
        out.append(
            RouteRule(
                family=family,
                priority=int(m.group(1)),
                table=table,
                action=action,
                src=rule_network(attrs.get("from"), family),
                dst=rule_network(attrs.get("to"), family),
                iif=attrs.get("iif"),
                oif=attrs.get("oif"),
                fwmark=as_int(mark) if mark else None,
                fwmask=as_int(mask) if mask else None,
                not_=negate,
                netns=netns,
            )
        )
    return tuple(out)


_NUD = {
    "PERMANENT", "NOARP", "REACHABLE", "STALE", "NONE", "INCOMPLETE", "DELAY", "PROBE", "FAILED",
}  # fmt: skip


def parse_ip_neigh_text(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[Neighbour, ...]:
    """ARP/NDP entries from ``ip [-s] neigh show`` text."""
    out: list[Neighbour] = []
    for number, line in output_lines(text, source=source, sink=sink):
        words = line.split()
        if not words:
            continue
        ip = as_ip(words[0])
        if ip is None or "dev" not in words:
            report_line(sink, source, number, "not a neighbour entry", words[0])
            continue
        dev = words[words.index("dev") + 1] if words.index("dev") + 1 < len(words) else ""
        mac = words[words.index("lladdr") + 1] if "lladdr" in words[:-1] else None
        out.append(
            Neighbour(
                ip=ip,
                dev=dev,
                mac=mac.lower() if mac else None,
                state=tuple(w for w in words if w in _NUD),
                netns=netns,
            )
        )
    return tuple(out)


def parse_bridge_fdb_text(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[FdbEntry, ...]:
    """Forwarding entries from ``bridge [-s] [-d] fdb show`` text."""
    out: list[FdbEntry] = []
    for number, line in output_lines(text, source=source, sink=sink):
        words = line.split()
        if not words:
            continue
        if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", words[0]) or "dev" not in words:
            report_line(sink, source, number, "not an fdb entry", words[0])
            continue
        rest = words[1:]
        flags = {w for w in rest if w in ("self", "permanent", "static", "extern_learn")}
        attrs = _pairs([w for w in rest if w not in flags])
        state = "permanent" if "permanent" in flags else "static" if "static" in flags else ""
        out.append(
            FdbEntry(
                mac=words[0].lower(),
                dev=attrs.get("dev", ""),
                master=attrs.get("master"),
                vlan=as_int(attrs.get("vlan")),
                state=state,
                self_entry="self" in flags,
                dst=as_ip(attrs.get("dst")),
                netns=netns,
            )
        )
    return tuple(out)


def parse_ip_netns_text(
    text: str, *, source: str, sink: DiagnosticSink | None = None
) -> tuple[NamespaceId, ...]:
    """Names and ids from ``ip netns`` (``qrouter-1c2d (id: 0)``).

    A line marking lines left out where the output was copied (``(...)``) is skipped with a
    warning: the namespaces it stood for are unknown.
    """
    out: list[NamespaceId] = []
    for number, line in output_lines(text, source=source, sink=sink):
        if not line.strip():
            continue
        if ELISION.match(line):
            if sink is not None:
                sink.warn(SourcePos(source, number), f"{_ELIDED}: the list is incomplete")
            continue
        m = re.match(r"^([A-Za-z0-9_.:@+-]+)(?:\s+\(id:\s*(\d+)\))?\s*$", line)
        if not m:
            report_line(sink, source, number, "not a namespace line", line[:40])
            continue
        out.append(NamespaceId(m.group(1), int(m.group(2)) if m.group(2) else None))
    return tuple(out)
