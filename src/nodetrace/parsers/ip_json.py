"""Parse iproute2's JSON output (``ip -d -j link|addr|route|rule|neigh``, ``ip -j netns list``).

A sample of ``ip -d -j link show`` (iproute2 6.1, abridged; one JSON array on one line)::

    [{"ifindex":4,"link":"vmA","ifname":"tapA","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
      "mtu":1500,"master":"qbrA","operstate":"UP","address":"5a:c5:45:84:e8:fc",
      "linkinfo":{"info_kind":"veth","info_slave_kind":"bridge",
                  "info_slave_data":{"state":"forwarding","learning":true,"flood":true}}},
     {"ifindex":6,"link_index":3,"link_netnsid":0,"ifname":"tap3b1f6a2c-8d",...}]

A veth whose peer is in the same namespace names it (``link``); a peer elsewhere is given as
``link_index`` + ``link_netnsid``. ``ip -d -j addr show`` prints the same objects with an
``addr_info`` list, so one parser reads both. A command that failed half-way leaves a cut array
(``[{...},{...``): the complete objects are kept and the cut is reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from ipaddress import ip_address, ip_interface, ip_network
from typing import Any

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos, report
from nodetrace.model.netfilter import IPNetwork
from nodetrace.model.packet import Family
from nodetrace.model.topology import (
    MAIN_NS,
    Address,
    BridgeInfo,
    BridgePortInfo,
    Interface,
    IPAddress,
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
    default_network,
)

_KINDS = {k.value: k for k in LinkKind}
_KINDS.update({"ip6gre": LinkKind.GRE, "ip6gretap": LinkKind.GRETAP, "erspan": LinkKind.GRE})


def json_array(text: str, *, source: str, sink: DiagnosticSink | None) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, element)`` of a top-level JSON array, keeping what precedes a cut.

    iproute2 prints ``[`` before it asks the kernel, so a failing command leaves a partial
    array; decoding element by element keeps every complete one.
    """
    stripped = text.strip()
    if not stripped:
        return
    if not stripped.startswith("["):
        report(sink, ParseError(SourcePos(source, 1), "not a JSON array", expected="'['"))
        return
    decoder = json.JSONDecoder()
    pos, n, index = stripped.index("[") + 1, len(stripped), 0
    while True:
        while pos < n and stripped[pos] in " \t\r\n,":
            pos += 1
        if pos >= n:
            report(sink, _cut(source, stripped, pos, index))
            return
        if stripped[pos] == "]":
            return
        try:
            value, pos = decoder.raw_decode(stripped, pos)
        except json.JSONDecodeError as err:
            report(sink, _cut(source, stripped, err.pos, index, err.msg))
            return
        yield index, value
        index += 1


def _cut(source: str, text: str, pos: int, index: int, why: str = "") -> ParseError:
    line = text.count("\n", 0, pos) + 1
    reason = f"output cut short after {index} complete entries"
    if why:
        reason += f" ({why})"
    return ParseError(SourcePos(source, line), reason)


def entry_error(
    sink: DiagnosticSink | None, source: str, index: int, reason: str, token: str | None = None
) -> None:
    report(sink, ParseError(SourcePos(source, 1), f"entry {index + 1}: {reason}", token=token))


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            return None
    return None


def obj(d: dict[str, Any], key: str) -> dict[str, Any]:
    """``d[key]`` when it is a JSON object, else an empty one (fields are often absent)."""
    value = d.get(key)
    return value if isinstance(value, dict) else {}


def items(d: dict[str, Any], key: str) -> list[Any]:
    """``d[key]`` when it is a JSON array, else an empty one."""
    value = d.get(key)
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def bridge_port(data: dict[str, Any]) -> BridgePortInfo:
    """A bridge port's settings (``info_slave_data`` of ``ip -d -j link``, ``bridge -j link``)."""
    return BridgePortInfo(
        state=str(data.get("state", "forwarding")),
        learning=bool(data.get("learning", True)),
        flood=bool(data.get("flood", True)),
        hairpin=bool(data.get("hairpin", False)),
        isolated=bool(data.get("isolated", False)),
    )


def as_ip(value: Any) -> IPAddress | None:
    if not isinstance(value, str):
        return None
    try:
        return ip_address(value.split("%")[0])
    except ValueError:
        return None


def _detail(kind: LinkKind, link: dict[str, Any], data: dict[str, Any]) -> LinkDetail | None:
    if kind is LinkKind.VETH:
        return VethInfo(
            peer=as_str(link.get("link")) if "link_netnsid" not in link else None,
            peer_ifindex=as_int(link.get("link_index")),
            peer_netnsid=as_int(link.get("link_netnsid")),
        )
    if kind is LinkKind.BRIDGE:
        return BridgeInfo(
            ageing_time=as_int(data.get("ageing_time")),
            stp_state=as_int(data.get("stp_state")) or 0,
            vlan_filtering=bool(data.get("vlan_filtering")),
            nf_call_iptables=bool(data.get("nf_call_iptables")),
            nf_call_ip6tables=bool(data.get("nf_call_ip6tables")),
            nf_call_arptables=bool(data.get("nf_call_arptables")),
        )
    if kind in (LinkKind.VXLAN, LinkKind.GENEVE, LinkKind.GRE, LinkKind.GRETAP):
        key = data.get("id", data.get("ikey", data.get("key")))
        external = bool(data.get("external", data.get("collect_metadata", False)))
        return TunnelInfo(
            key=None if external else as_int(key),
            local=as_ip(data.get("local")),
            remote=as_ip(data.get("remote", data.get("group"))),
            dst_port=as_int(data.get("port", data.get("dstport"))),
            underlay=as_str(data.get("link")),
            learning=bool(data.get("learning", True)),
            external=external,
        )
    if kind in (LinkKind.TAP, LinkKind.TUN):
        mode = as_str(data.get("type"))
        return TunTapInfo(mode=kind.value if mode is None else mode)
    return None


def _kind(link: dict[str, Any], info: dict[str, Any]) -> LinkKind:
    raw = info.get("info_kind")
    if raw == "tun":
        mode = obj(info, "info_data").get("type")
        return LinkKind.TAP if mode == "tap" else LinkKind.TUN
    if isinstance(raw, str):
        return _KINDS.get(raw, LinkKind.OTHER)
    if link.get("link_type") == "loopback":
        return LinkKind.LOOPBACK
    if link.get("link_type") not in (None, "ether"):
        return LinkKind.OTHER
    return LinkKind.PHYSICAL


def _addresses(link: dict[str, Any]) -> tuple[Address, ...]:
    out = []
    for a in link.get("addr_info") or ():
        if not isinstance(a, dict) or "local" not in a:
            continue
        try:
            iface = ip_interface(f"{a['local']}/{a.get('prefixlen', 32)}")
            peer = a.get("address")
            peer_iface = (
                ip_interface(f"{peer}/{a.get('prefixlen', 32)}")
                if isinstance(peer, str) and peer != a["local"]
                else None
            )
        except ValueError:
            continue
        out.append(Address(iface, str(a.get("scope", "global")), peer_iface))
    return tuple(out)


def parse_ip_link(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[Interface, ...]:
    """Interfaces from ``ip -d -j link show`` or ``ip -d -j addr show`` (with addresses)."""
    out: list[Interface] = []
    for index, link in json_array(text, source=source, sink=sink):
        if not isinstance(link, dict) or not isinstance(link.get("ifname"), str):
            entry_error(sink, source, index, "an interface without a name")
            continue
        info = obj(link, "linkinfo")
        data = obj(info, "info_data")
        kind = _kind(link, info)
        flags = items(link, "flags")
        master_kind = info.get("info_slave_kind")
        port = bridge_port(obj(info, "info_slave_data")) if master_kind == "bridge" else None
        out.append(
            Interface(
                name=link["ifname"],
                netns=netns,
                ifindex=as_int(link.get("ifindex")),
                kind=kind,
                mac=as_str(link.get("address")),
                mtu=as_int(link.get("mtu")),
                up="UP" in flags,
                carrier="LOWER_UP" in flags,
                master=as_str(link.get("master")),
                master_kind=as_str(master_kind),
                addresses=_addresses(link),
                detail=_detail(kind, link, data),
                bridge_port=port,
            )
        )
    return tuple(out)


parse_ip_addr = parse_ip_link
"""``ip -d -j addr show`` prints link objects with ``addr_info``: the same reader serves."""


ROUTE_TYPES = {t.value: t for t in RouteType}


def as_network(value: Any, family: Family | None) -> IPNetwork | None:
    """A prefix as ip prints it (``10.0.0.0/24``, ``default`` in ``family``), else None."""
    if value == "default":
        return default_network(family or Family.IPV4)
    if not isinstance(value, str):
        return None
    try:
        return ip_network(value, strict=False)
    except ValueError:
        return None


def parse_ip_route(
    text: str,
    *,
    source: str,
    sink: DiagnosticSink | None = None,
    netns: str = MAIN_NS,
    family: Family | None = None,
) -> tuple[Route, ...]:
    """Routes from ``ip [-6] -d -j route show table all``.

    ``family`` says what ``default`` means (``ip -6`` output); otherwise each route's family
    follows its addresses.
    """
    out: list[Route] = []
    for index, r in json_array(text, source=source, sink=sink):
        if not isinstance(r, dict):
            entry_error(sink, source, index, "not an object")
            continue
        fam = family
        if fam is None:
            for key in ("dst", "gateway", "prefsrc"):
                addr = as_network(r.get(key), None) if r.get(key) != "default" else None
                if addr is not None:
                    fam = Family.IPV4 if addr.version == 4 else Family.IPV6
                    break
        dst = as_network(r.get("dst"), fam)
        if dst is None:
            entry_error(sink, source, index, "unreadable destination", str(r.get("dst")))
            continue
        fam = Family.IPV4 if dst.version == 4 else Family.IPV6
        hops = tuple(
            NextHop(as_ip(h.get("gateway")), h.get("dev"), as_int(h.get("weight")) or 1)
            for h in r.get("nexthops") or ()
            if isinstance(h, dict)
        )
        out.append(
            Route(
                family=fam,
                dst=dst,
                table=str(r.get("table", "main")),
                type=ROUTE_TYPES.get(str(r.get("type", "unicast")), RouteType.OTHER),
                gateway=as_ip(r.get("gateway")),
                dev=as_str(r.get("dev")),
                prefsrc=as_ip(r.get("prefsrc")),
                metric=as_int(r.get("metric")) or 0,
                scope=str(r.get("scope", "global")),
                protocol=str(r.get("protocol", "")),
                nexthops=hops,
                netns=netns,
            )
        )
    return tuple(out)


def rule_network(value: Any, family: Family) -> IPNetwork | None:
    """A rule's ``from``/``to`` prefix; none for ``all``, absent, or a prefix of another family."""
    if value in (None, "all"):
        return None
    net = as_network(value, family)
    return net if net is not None and (net.version == 4) == (family is Family.IPV4) else None


def _rule_net(r: dict[str, Any], key: str, family: Family) -> IPNetwork | None:
    value, length = r.get(key), r.get(f"{key}len")
    return rule_network(f"{value}/{length}" if length is not None else value, family)


def parse_ip_rule(
    text: str,
    *,
    source: str,
    sink: DiagnosticSink | None = None,
    netns: str = MAIN_NS,
    family: Family = Family.IPV4,
) -> tuple[RouteRule, ...]:
    """Policy rules from ``ip [-6] -d -j rule show``, in priority order as printed."""
    out: list[RouteRule] = []
    for index, r in json_array(text, source=source, sink=sink):
        if not isinstance(r, dict) or as_int(r.get("priority")) is None:
            entry_error(sink, source, index, "a rule without a priority")
            continue
        action = "lookup" if "table" in r else str(r.get("action", r.get("type", "lookup")))
        if "goto" in r:
            action = "goto"
        out.append(
            RouteRule(
                family=family,
                priority=as_int(r["priority"]) or 0,
                table=str(r["table"]) if "table" in r else None,
                action=action,
                src=_rule_net(r, "src", family),
                dst=_rule_net(r, "dst", family),
                iif=as_str(r.get("iif")),
                oif=as_str(r.get("oif")),
                fwmark=as_int(r.get("fwmark")),
                fwmask=as_int(r.get("fwmask")),
                not_="not" in r,
                netns=netns,
            )
        )
    return tuple(out)


def parse_ip_neigh(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[Neighbour, ...]:
    """ARP/NDP entries from ``ip -d -j neigh show``."""
    out: list[Neighbour] = []
    for index, n in json_array(text, source=source, sink=sink):
        ip = as_ip(n.get("dst")) if isinstance(n, dict) else None
        if ip is None or not isinstance(n.get("dev"), str):
            entry_error(sink, source, index, "a neighbour without an address or device")
            continue
        out.append(
            Neighbour(
                ip=ip,
                dev=n["dev"],
                mac=as_str(n.get("lladdr")),
                state=tuple(str(s) for s in items(n, "state")),
                netns=netns,
            )
        )
    return tuple(out)


def parse_ip_netns(
    text: str, *, source: str, sink: DiagnosticSink | None = None
) -> tuple[NamespaceId, ...]:
    """Names and ids from ``ip -j netns list`` (ids are relative to the namespace that ran it)."""
    out: list[NamespaceId] = []
    for index, n in json_array(text, source=source, sink=sink):
        if not isinstance(n, dict) or not isinstance(n.get("name"), str):
            entry_error(sink, source, index, "a namespace without a name")
            continue
        out.append(NamespaceId(n["name"], as_int(n.get("id"))))
    return tuple(out)
