"""Complete a packet the user described only partly, from what the node tells, and say how.

``nodetrace trace --from-port A --to-port B --packet tcp,tp_dst=22`` names no address: the
sender's MAC and IP are its port's (OVSDB ``attached-mac``, the hybrid firewall's anti-spoofing
chain, the OVS firewall's table 71 flows), the destination's are the receiver's; an ARP
request's ``arp_spa``/``arp_sha``/``arp_tpa`` come from the same ports; a ``dl_dst`` for an
address that is not the receiver's comes from whoever owns it on the node, Neutron's ARP
responder flows (br-tun table 21), the neighbour tables, or the router interface that is the
sender's gateway. What nothing tells is assumed with a stated value, so the trace can say which
of its verdicts rest on a guess. Every field traced is returned with its origin.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface
from typing import Any

from nodetrace.model.node_inventory import Found, PortInfo
from nodetrace.model.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV6,
    IPProto,
    Packet,
    TcpFlag,
    canonical_mac,
)
from nodetrace.model.packet_origin import FieldOrigin, Origin
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS, Interface

IPAddress = IPv4Address | IPv6Address

ZERO_MAC = "00:00:00:00:00:00"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
EPHEMERAL_FIRST = 32768
"""The first port of Linux's default ``net.ipv4.ip_local_port_range`` (32768-60999)."""
UNKNOWN_SENDER = {4: IPv4Address("192.0.2.1"), 6: IPv6Address("2001:db8::1")}
"""Documentation addresses (RFC 5737, RFC 3849) standing for a sender nothing names."""
ARP_RESPONDER_TABLE = 21
"""br-tun's ARP responder table (Neutron's ``ARP_RESPONDER``), one flow per remote port."""

_L4 = (IPProto.TCP, IPProto.UDP, IPProto.SCTP)


@dataclass(frozen=True)
class Ends:
    """Who sends and who is meant to receive, as far as the command line says."""

    sender: PortInfo | None = None
    receiver: PortInfo | None = None
    ports: Sequence[PortInfo] = ()
    """Every port of the node, to find who owns a destination address."""
    over_tunnel: bool = False
    """The packet arrives over the receiver's network tunnel from a sender elsewhere."""
    from_host: bool = False
    """The node's own stack sends it (its routes pick the source address)."""


@dataclass(frozen=True)
class Completed:
    packet: Packet
    flow: tuple[FieldOrigin, ...]
    known: frozenset[str]
    """Packet fields that have a stated value (given, derived or assumed)."""


class _Fields:
    """The packet being completed and the origin of every field decided so far."""

    def __init__(self, packet: Packet, given: frozenset[str]) -> None:
        self.packet = packet
        self.given = given
        self.origins: dict[str, FieldOrigin] = {}

    def has(self, name: str) -> bool:
        return name in self.given or name in self.origins

    def set(self, name: str, value: object, origin: Origin, source: str) -> None:
        if value is not None:
            change: dict[str, Any] = {name: value}
            self.packet = dataclasses.replace(self.packet, **change)
        if value is not None:
            text = _text(value)
        else:
            text = "(chosen on the way)" if origin is Origin.DERIVED else "(none)"
        self.origins[name] = FieldOrigin(name, text, origin, source)


def _text(value: object) -> str:
    return str(value)


def complete_packet(
    snap: Snapshot,
    packet: Packet,
    given: frozenset[str],
    ends: Ends,
    metadata: Iterable[tuple[str, str]] = (),
) -> Completed:
    """Fill the fields left out of ``packet`` (``given`` names those the user wrote)."""
    f = _Fields(packet, given)
    is_arp = packet.dl_type == ETH_TYPE_ARP
    if packet.is_ip:
        _addresses(snap, f, ends)
        _transport(snap, f, ends)
        if "nw_ttl" not in given:
            f.set("nw_ttl", packet.nw_ttl, Origin.ASSUMED, "Linux's default TTL")
    elif is_arp:
        _arp(f, ends)
    _link(snap, f, ends, is_arp)
    fields = {name: _given(f.packet, name) for name in given} | f.origins
    flow = [FieldOrigin(k, v, Origin.GIVEN) for k, v in metadata]
    flow += [fields[name] for name in _ordered(fields)]
    return Completed(f.packet, tuple(flow), frozenset(given) | frozenset(f.origins))


_ORDER = (
    "dl_src", "dl_dst", "dl_type", "dl_vlan", "dl_vlan_pcp", "arp_op", "arp_spa", "arp_sha",
    "arp_tpa", "arp_tha", "nw_src", "nw_dst", "nw_proto", "nw_tos", "nw_ttl", "tp_src",
    "tp_dst", "tcp_flags", "icmp_type", "icmp_code",
)  # fmt: skip


def _ordered(names: Iterable[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _given(packet: Packet, name: str) -> FieldOrigin:
    value = getattr(packet, name, None)
    if name == "dl_type" and isinstance(value, int):
        text = f"0x{value:04x}"
    elif name == "tcp_flags" and isinstance(value, int):
        text = _flags_text(value)
    else:
        text = "(none)" if value is None else str(value)
    return FieldOrigin(name, text, Origin.GIVEN)


def _flags_text(bits: int) -> str:
    names = [flag.name.lower() for flag in TcpFlag if bits & flag and flag.name]
    return "+".join(names) if names else "0"


def _version(packet: Packet) -> int:
    return 6 if packet.dl_type == ETH_TYPE_IPV6 else 4


def _first_ip(port: PortInfo | None, version: int) -> Found[IPAddress] | None:
    """The port's first address of ``version``; a global one before a link-local one."""
    if port is None:
        return None
    found = [a for a in port.ips if a.value.version == version]
    return next((a for a in found if not a.value.is_link_local), found[0] if found else None)


def _addresses(snap: Snapshot, f: _Fields, ends: Ends) -> None:
    version = _version(f.packet)
    if not f.has("nw_src") and ends.from_host:
        f.set("nw_src", None, Origin.DERIVED, "the host's routing picks it (see the route step)")
    elif not f.has("nw_src") and not _port_address(f, "nw_src", ends.sender, version):
        who = "the sender is elsewhere" if ends.over_tunnel else "no port names the sender"
        f.set("nw_src", UNKNOWN_SENDER[version], Origin.ASSUMED,
              f"not given and {who}: a documentation address stands for any sender; "
              "give nw_src= for a real one")  # fmt: skip
    if not f.has("nw_dst") and not _port_address(f, "nw_dst", ends.receiver, version):
        f.set("nw_dst", None, Origin.ASSUMED,
              "not given and no --to-port: nothing says where the packet goes")  # fmt: skip


def _port_address(f: _Fields, name: str, port: PortInfo | None, version: int) -> bool:
    """Set field ``name`` to the port's first address of ``version``; ``False`` without one."""
    own = _first_ip(port, version)
    if own is None or port is None:
        return False
    f.set(name, own.value, Origin.DERIVED, f"the address of port {port.port_id}: {own.source}")
    return True


def _transport(snap: Snapshot, f: _Fields, ends: Ends) -> None:
    p = f.packet
    if p.nw_proto in _L4:
        if not f.has("tp_src"):
            first, source = _ephemeral(snap, ends)
            f.set("tp_src", first, Origin.DERIVED if source.startswith("sysctl") else
                  Origin.ASSUMED, source)  # fmt: skip
        if not f.has("tp_dst"):
            f.set("tp_dst", 0, Origin.ASSUMED, "not given")
        if p.nw_proto == IPProto.TCP and not f.has("tcp_flags"):
            f.set("tcp_flags", 0, Origin.ASSUMED,
                  "not given: no flags (a new connection starts with tcp_flags=+syn)")  # fmt: skip
    elif p.nw_proto in (IPProto.ICMP, IPProto.ICMPV6):
        echo = 8 if p.nw_proto == IPProto.ICMP else 128
        if not f.has("icmp_type"):
            f.set("icmp_type", echo, Origin.ASSUMED, "not given: an echo request (ping)")
        if not f.has("icmp_code"):
            f.set("icmp_code", 0, Origin.ASSUMED, "not given")


def _ephemeral(snap: Snapshot, ends: Ends) -> tuple[int, str]:
    """The source port a sender's stack picks: the first of its ephemeral range."""
    if ends.from_host:
        text = snap.main.sysctls.get("net.ipv4.ip_local_port_range")
        if text and text.split()[0].isdigit():
            first = int(text.split()[0])
            return first, f"sysctl net.ipv4.ip_local_port_range = {text}: its first port"
    return EPHEMERAL_FIRST, (
        "not given: the first port of Linux's default ephemeral range 32768-60999 "
        "(the sender picks one in its own net.ipv4.ip_local_port_range)"
    )


def _arp(f: _Fields, ends: Ends) -> None:
    p = f.packet
    if not f.has("arp_op"):
        f.set("arp_op", 1, Origin.ASSUMED, "not given: a request")
    sides = (
        ("arp_spa", "nw_src", p.nw_src, ends.sender, UNKNOWN_SENDER[4],
         "not given and no port names the sender: a documentation address"),
        ("arp_tpa", "nw_dst", p.nw_dst, ends.receiver, None,
         "not given and no --to-port: the request asks for no one"),
    )  # fmt: skip
    for name, ip_name, ip, port, fallback, why in sides:
        if f.has(name):
            continue
        if ip_name in f.given and isinstance(ip, IPv4Address):
            f.set(name, ip, Origin.GIVEN, f"as {ip_name}")
        elif not _port_address(f, name, port, 4):
            f.set(name, fallback, Origin.ASSUMED, why)


def _link(snap: Snapshot, f: _Fields, ends: Ends, is_arp: bool) -> None:
    p = f.packet
    if not f.has("dl_src"):
        mac = ends.sender.mac if ends.sender is not None else None
        if mac is not None and ends.sender is not None:
            f.set("dl_src", mac.value, Origin.DERIVED,
                  f"the MAC of port {ends.sender.port_id}: {mac.source}")  # fmt: skip
        elif ends.over_tunnel and ends.receiver is not None:
            _remote_sender_mac(snap, f, ends.receiver)
        elif ends.from_host:
            f.set("dl_src", None, Origin.DERIVED, "the MAC of the device the host sends from")
        else:
            f.set("dl_src", ZERO_MAC, Origin.ASSUMED,
                  "not given and no port names the sender")  # fmt: skip
    if is_arp and not f.has("arp_sha"):
        f.set("arp_sha", f.packet.dl_src, Origin.DERIVED, "the sender's MAC (dl_src)")
    if f.has("dl_dst"):
        return
    if ends.from_host:
        f.set("dl_dst", None, Origin.DERIVED, "the next hop's MAC, from the neighbour table")
        return
    if is_arp and f.packet.arp_op == 1:
        f.set("dl_dst", BROADCAST_MAC, Origin.DERIVED, "an ARP request is broadcast")
        return
    mac = ends.receiver.mac if ends.receiver is not None else None
    if mac is not None and ends.receiver is not None:
        f.set("dl_dst", mac.value, Origin.DERIVED,
              f"the MAC of port {ends.receiver.port_id}: {mac.source}")  # fmt: skip
        return
    target = f.packet.arp_tpa if is_arp else p.nw_dst
    if target is None:
        f.set("dl_dst", ZERO_MAC, Origin.ASSUMED, "not given and no destination address")
        return
    sender_ip = f.packet.arp_spa if is_arp else f.packet.nw_src
    vlan = ends.sender.local_vlan if ends.sender is not None else None
    found = mac_for_address(snap, target, ends.ports, sender_ip, vlan.value if vlan else None)
    if found is not None:
        f.set("dl_dst", found[0], Origin.DERIVED, found[1])
        return
    f.set("dl_dst", ZERO_MAC, Origin.ASSUMED,
          f"not given, and nothing on the node maps {target} to a MAC (no port, namespace "
          "address, ARP responder flow, neighbour entry or router interface has it); give "
          "dl_dst=")  # fmt: skip


def _remote_sender_mac(snap: Snapshot, f: _Fields, receiver: PortInfo) -> None:
    """A packet over the tunnel comes from a MAC the integration bridge learned there."""
    bridge = snap.ovs.bridge(receiver.bridge) if snap.ovs and receiver.bridge else None
    vlan = receiver.local_vlan.value if receiver.local_vlan is not None else None
    if bridge is not None and bridge.fdb is not None and vlan is not None:
        patches = {p.ofport for p in bridge.ports if p.type == "patch" and p.ofport is not None}
        for entry in bridge.fdb.entries:
            if entry.vlan == vlan and entry.port in patches:
                f.set("dl_src", entry.mac, Origin.DERIVED,
                      f"a MAC {bridge.name} learned from the tunnel side in VLAN {vlan} "
                      f"(ovs-appctl fdb/show {bridge.name}, port {entry.port})")  # fmt: skip
                return
    f.set("dl_src", ZERO_MAC, Origin.ASSUMED,
          "not given: the sender is behind the tunnel and no MAC table names one")  # fmt: skip


def mac_for_address(
    snap: Snapshot,
    address: IPAddress,
    ports: Sequence[PortInfo],
    sender: IPAddress | None,
    vlan: int | None = None,
) -> tuple[str, str] | None:
    """The MAC a sender would put in front of ``address``, and where the node says so
    (``vlan``: the sender's local VLAN, which the ARP responder flows are keyed by)."""
    for port in ports:
        if port.mac is not None and any(a.value == address for a in port.ips):
            return port.mac.value, f"the MAC of port {port.port_id}, owner of {address}"
    for iface in snap.topology.interfaces:
        if iface.mac and any(a.ip == address for a in iface.addresses):
            return iface.mac, f"the MAC of {_where(iface)}, which has {address} (ip address)"
    responder = _arp_responder(snap, address, vlan)
    if responder is not None:
        return responder
    for n in snap.topology.neighbours:
        if n.ip == address and n.mac:
            ns = f" in namespace {n.netns}" if n.netns != MAIN_NS else ""
            return n.mac, f"neighbour entry of {address} on {n.dev}{ns} (ip neigh)"
    if sender is not None:
        return _gateway_mac(snap, address, sender)
    return None


def _where(iface: Interface) -> str:
    return iface.name + (f" in namespace {iface.netns}" if iface.netns != MAIN_NS else "")


_TPA = re.compile(r"\barp_tpa=([0-9.]+)(?:[,\s]|$)")
_VLAN = re.compile(r"\bdl_vlan=(\d+)")
_RESPONDER_MAC = (
    re.compile(r"mod_dl_src:([0-9a-fA-F:]{11,17})"),
    re.compile(r"set_field:([0-9a-fA-F:]{11,17})->(?:eth_src|dl_src)"),
)


def _arp_responder(snap: Snapshot, address: IPAddress, vlan: int | None) -> tuple[str, str] | None:
    """Neutron's l2population ARP responder answers for remote ports with their MAC, per
    network (its local VLAN)."""
    if snap.ovs is None or address.version != 4:
        return None
    for bridge in snap.ovs.bridges:
        if bridge.flows is None:
            continue
        for flow in bridge.flows.table(ARP_RESPONDER_TABLE):
            m = _TPA.search(flow.match_text)
            if m is None or ip_address(m.group(1)) != address:
                continue
            on = _VLAN.search(flow.match_text)
            if vlan is not None and on is not None and int(on.group(1)) != vlan:
                continue
            for pattern in _RESPONDER_MAC:
                found = pattern.search(flow.actions_text)
                if found is not None:
                    where = f" ({flow.span})" if flow.span is not None else ""
                    return canonical_mac(found.group(1)), (
                        f"{bridge.name} table {ARP_RESPONDER_TABLE} ARP responder flow for "
                        f"{address}{where}"
                    )
    return None


def _gateway_mac(snap: Snapshot, address: IPAddress, sender: IPAddress) -> tuple[str, str] | None:
    """Off the sender's subnet, the frame goes to its router: a qr- interface on that subnet."""
    for iface in snap.topology.interfaces:
        if not iface.mac or not iface.name.startswith("qr-"):
            continue
        for a in iface.addresses:
            net = ip_interface(a.interface).network
            if sender in net and address not in net:
                return iface.mac, (
                    f"the gateway: router interface {_where(iface)} on {net} (ip address), "
                    f"as {address} is outside the sender's subnet"
                )
    return None
