"""What the OVS agent wrote into the flows, read back per port and per network, in one pass.

The agent keeps some facts only in flows: with the native OVS firewall a port's addresses live
in br-int table 71 (BASE_EGRESS: ``reg5=<ofport>,dl_src=MAC,nw_src=IP``, ``arp_spa``,
``ipv6_src``), its conntrack zone in the ``reg6`` value table 0 or 60 loads for its OpenFlow
port (used as ``ct(zone=NXM_NX_REG6[0..15])``), its local VLAN in table 60's
``dl_vlan=L,dl_dst=MAC`` flows; the hybrid driver's ARP spoofing protection keeps addresses in
table 24 (``in_port=X,arp_spa=IP``) and MACs in table 25. The VLAN of each network maps to its
segment in br-tun (tables 3/4/6 ``tun_id=S → mod_vlan_vid:L``, table 22 floods) and in br-int
table 0 / the provider bridges (``dl_vlan=S → mod_vlan_vid:L``).

Each bridge's flows are read once into per-port and per-VLAN indexes, so a node with hundreds
of ports costs one pass over its flows, not one per port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from nodetrace.model.node_inventory import Found
from nodetrace.model.openflow import (
    Flow,
    Output,
    PopVlan,
    PortName,
    PortNumber,
    PortRef,
    SetField,
    SetTunnel,
    SetVlan,
    VlanOp,
)
from nodetrace.model.ovs_switch import BridgeState, OvsSwitch

IPAddress = IPv4Address | IPv6Address
T = TypeVar("T")

TUNNEL_TABLES = {3: "gre", 4: "vxlan", 6: "geneve"}
"""br-tun tables that map a tunnel key to a local VLAN, by tunnel type (Neutron's constants)."""
FLOOD_TABLE = 22
"""br-tun: local VLAN → tunnel key, output to every tunnel port of the network."""
OVSFW_PORT_TABLES = (0, 60)
"""Where the native firewall loads reg5/reg6 for a port (table 60 before Ussuri, then 0)."""
OVSFW_EGRESS_TABLE = 71
ARP_SPOOF_TABLE = 24
MAC_SPOOF_TABLE = 25
TRANSIENT_TABLE = 60
ACCEPT_OR_INGRESS_TABLE = 73
"""``reg6=<vlan>,dl_dst=MAC actions=load:<ofport>->reg5``: traffic to a port's MAC."""

VLAN_PRESENT = 0x1000
VID_MASK = 0x0FFF
ETH_IP, ETH_ARP, ETH_IPV6 = 0x0800, 0x0806, 0x86DD
FULL32 = 0xFFFFFFFF
FULL48 = (1 << 48) - 1
FULL128 = (1 << 128) - 1


def mac_text(value: int) -> str:
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


def flow_source(bridge: str, flow: Flow) -> str:
    where = f" ({flow.span})" if flow.span is not None else ""
    return f"{bridge} table {flow.table} flow {flow.match_text}{where}"


def _match(flow: Flow, name: str) -> tuple[int, int] | None:
    for m in flow.matches:
        if m.field == name:
            return m.value, m.mask
    return None


def _vlan_match(flow: Flow) -> int | None:
    """The VID a flow matches (``dl_vlan=L`` or ``vlan_tci=0x100L/0x1fff|0x0fff``), or
    ``0`` for "untagged" (``vlan_tci=0x0000/0x1fff``)."""
    m = _match(flow, "vlan_tci")
    if m is None:
        return None
    value, mask = m
    if mask & VID_MASK != VID_MASK:
        return None
    if mask & VLAN_PRESENT and not value & VLAN_PRESENT:
        return 0 if value & VID_MASK == 0 else None
    return value & VID_MASK


def _vlan_set(flow: Flow) -> int | None:
    for a in flow.actions:
        if isinstance(a, SetVlan) and a.op in (VlanOp.MOD_VID, VlanOp.SET_VID):
            return a.value
        if isinstance(a, SetField) and a.field in ("vlan_vid", "dl_vlan"):
            return a.value & VID_MASK
    return None


def _loads(flow: Flow, reg: str) -> int | None:
    for a in flow.actions:
        if isinstance(a, SetField) and a.field == reg:
            return a.value
    return None


def _tun_id_set(flow: Flow) -> int | None:
    for a in flow.actions:
        if isinstance(a, SetTunnel):
            return a.tun_id
        if isinstance(a, SetField) and a.field in ("tun_id", "tunnel_id"):
            return a.value
    return None


def _strips(flow: Flow) -> bool:
    return any(isinstance(a, PopVlan) for a in flow.actions)


@dataclass
class PortFlowFacts:
    """What one bridge's flows say about one OpenFlow port."""

    ofport: int
    reg6: Found[int] | None = None
    firewall_flows: int = 0
    """Native firewall egress flows (table 71) for the port."""
    vlan: Found[int] | None = None
    macs: list[Found[str]] = field(default_factory=list)
    ips: list[Found[IPAddress]] = field(default_factory=list)


def add_new(found: list[Found[T]], value: Found[T]) -> None:
    """Add ``value`` unless an equal value was found already (the first source is kept)."""
    if all(f.value != value.value for f in found):
        found.append(value)


@dataclass
class BridgeIndex:
    """One bridge's flows, indexed once: flows per port number and per MAC."""

    name: str
    numbers_from_flows: dict[str, int] = field(default_factory=dict)
    """OpenFlow numbers no other output gave, read from the firewall's reg5 loads."""
    by_ofport: dict[int, set[int]] = field(default_factory=dict)
    by_name: dict[str, set[int]] = field(default_factory=dict)
    """Flows naming a port by name (``--names`` dumps) that no number was known for."""
    by_mac: dict[str, set[int]] = field(default_factory=dict)
    ports: dict[int, PortFlowFacts] = field(default_factory=dict)

    def port(self, ofport: int) -> PortFlowFacts:
        if ofport not in self.ports:
            self.ports[ofport] = PortFlowFacts(ofport)
        return self.ports[ofport]

    def flows_naming(
        self, ofport: int | None, macs: Iterable[str] = (), name: str | None = None
    ) -> int:
        hits: set[int] = set()
        if ofport is not None:
            hits |= self.by_ofport.get(ofport, set())
        if name is not None:
            hits |= self.by_name.get(name, set())
        for mac in macs:
            hits |= self.by_mac.get(mac, set())
        return len(hits)


def _number(
    bridge: BridgeState, ref: PortRef | None, by_flows: dict[str, int] | None = None
) -> int | None:
    if isinstance(ref, PortNumber):
        return ref.number
    if isinstance(ref, PortName):
        port = bridge.port_by_name(ref.name)
        if port is not None and port.ofport is not None:
            return port.ofport
        return by_flows.get(ref.name) if by_flows else None
    return None


def _numbers_from_flows(bridge: BridgeState) -> dict[str, int]:
    """Port name → OpenFlow number, from a dump printed with names (``in_port="tapX"``) where
    no other output numbers the ports: the native firewall loads each port's own number into
    reg5 (``in_port="tapX" actions=load:0x4->NXM_NX_REG5[]``)."""
    found: dict[str, int] = {}
    for flow in bridge.flows.flows if bridge.flows is not None else ():
        ref = flow.in_port
        if flow.table in OVSFW_PORT_TABLES and isinstance(ref, PortName):
            port = bridge.port_by_name(ref.name)
            reg5 = _loads(flow, "reg5")
            if reg5 is not None and (port is None or port.ofport is None):
                found.setdefault(ref.name, reg5)
    return found


def index_bridge(bridge: BridgeState) -> BridgeIndex:
    by_flows = _numbers_from_flows(bridge)
    index = BridgeIndex(bridge.name, numbers_from_flows=by_flows)
    flows = bridge.flows.flows if bridge.flows is not None else ()
    for i, flow in enumerate(flows):
        named: set[int] = set()
        in_port = _number(bridge, flow.in_port, by_flows)
        if in_port is not None:
            named.add(in_port)
        reg5 = _match(flow, "reg5")
        if reg5 is not None and reg5[1] == FULL32:
            named.add(reg5[0])
        for a in flow.actions:
            if isinstance(a, Output):
                out = _number(bridge, a.port, by_flows)
                if out is not None:
                    named.add(out)
            elif isinstance(a, SetField) and a.field == "reg5":
                named.add(a.value)
        for n in named:
            index.by_ofport.setdefault(n, set()).add(i)
        refs = [flow.in_port, *(a.port for a in flow.actions if isinstance(a, Output))]
        for ref in refs:
            if isinstance(ref, PortName) and _number(bridge, ref, by_flows) is None:
                index.by_name.setdefault(ref.name, set()).add(i)
        for name in ("dl_src", "dl_dst"):
            m = _match(flow, name)
            if m is not None and m[1] == FULL48:
                index.by_mac.setdefault(mac_text(m[0]), set()).add(i)
        _read_port_facts(index, bridge.name, flow, in_port, reg5)
    return index


def _read_port_facts(
    index: BridgeIndex, bridge: str, flow: Flow, in_port: int | None, reg5: tuple[int, int] | None
) -> None:
    table = flow.table
    if table in OVSFW_PORT_TABLES and in_port is not None:
        reg5_set, reg6_set = _loads(flow, "reg5"), _loads(flow, "reg6")
        if reg5_set == in_port and reg6_set is not None:
            index.port(in_port).reg6 = Found(reg6_set, flow_source(bridge, flow))
    if table == TRANSIENT_TABLE and in_port is None:
        # ``dl_vlan=L,dl_dst=MAC actions=...reg5=<ofport>`` or ``...output:<ofport>``: the
        # port's own MAC on its local VLAN.
        vlan, dst = _vlan_match(flow), _match(flow, "dl_dst")
        target = _loads(flow, "reg5")
        if target is None:
            outs = [a.port.number for a in flow.actions if isinstance(a, Output)
                    and isinstance(a.port, PortNumber)]  # fmt: skip
            target = outs[0] if len(outs) == 1 else None
        if vlan and target is not None and dst is not None and dst[1] == FULL48:
            facts = index.port(target)
            if facts.vlan is None:
                facts.vlan = Found(vlan, flow_source(bridge, flow))
    if table == OVSFW_EGRESS_TABLE and reg5 is not None and reg5[1] == FULL32:
        facts = index.port(reg5[0])
        facts.firewall_flows += 1
        _addresses(facts, bridge, flow)
    if table == ACCEPT_OR_INGRESS_TABLE and in_port is None:
        dst, target = _match(flow, "dl_dst"), _loads(flow, "reg5")
        if dst is not None and dst[1] == FULL48 and target is not None:
            add_new(index.port(target).macs, Found(mac_text(dst[0]), flow_source(bridge, flow)))
    if table in (ARP_SPOOF_TABLE, MAC_SPOOF_TABLE) and in_port is not None:
        _addresses(index.port(in_port), bridge, flow)


def _addresses(facts: PortFlowFacts, bridge: str, flow: Flow) -> None:
    source = flow_source(bridge, flow)
    src = _match(flow, "dl_src")
    if src is not None and src[1] == FULL48:
        add_new(facts.macs, Found(mac_text(src[0]), source))
    dl_type = _match(flow, "dl_type")
    kind = dl_type[0] if dl_type is not None else None
    nw = _match(flow, "nw_src")
    ips: list[IPAddress] = []
    if nw is not None and nw[1] == FULL32 and kind in (ETH_IP, ETH_ARP) and nw[0] != 0:
        ips.append(IPv4Address(nw[0]))
    for name in ("ipv6_src", "nd_target"):
        # A neighbour advertisement may announce only the port's own addresses.
        v6 = _match(flow, name)
        if v6 is not None and v6[1] == FULL128 and v6[0] != 0:
            ips.append(IPv6Address(v6[0]))
    for ip in ips:
        add_new(facts.ips, Found(ip, source))


@dataclass(frozen=True)
class SegmentFact:
    local_vlan: int
    network_type: Found[str]
    segmentation_id: Found[int] | None


def segments(switch: OvsSwitch, integration: str | None) -> dict[int, SegmentFact]:
    """Local VLAN → the network's type and segment, from the tunnel and provider flows."""
    found: dict[int, SegmentFact] = {}
    for bridge in switch.bridges:
        tunnel_types = {
            p.ofport: p.interface.type
            for p in bridge.ports
            if p.ofport is not None and p.interface is not None and p.interface.is_tunnel
        }
        peers = {
            p.name: peer[0].name
            for p in bridge.ports
            if p.interface is not None
            and p.interface.is_patch
            and (peer := switch.peer_of(bridge.name, p)) is not None
        }
        names = {p.ofport: p.name for p in bridge.ports if p.ofport is not None}
        for flow in bridge.flows.flows if bridge.flows is not None else ():
            fact = _segment_of(bridge, flow, integration, tunnel_types, peers, names)
            if fact is not None and fact.local_vlan not in found:
                found[fact.local_vlan] = fact
    return found


def _segment_of(
    bridge: BridgeState,
    flow: Flow,
    integration: str | None,
    tunnel_types: dict[int, str],
    peers: dict[str, str],
    names: dict[int, str],
) -> SegmentFact | None:
    source = flow_source(bridge.name, flow)
    tun = _match(flow, "tun_id")
    if flow.table in TUNNEL_TABLES and tun is not None:
        lvid = _vlan_set(flow)
        if lvid is not None:
            kind = TUNNEL_TABLES[flow.table]
            return SegmentFact(lvid, Found(kind, source), Found(tun[0], source))
    if flow.table == FLOOD_TABLE and tunnel_types:
        lvid, key = _vlan_match(flow), _tun_id_set(flow)
        if lvid and key is not None:
            outs = {
                tunnel_types.get(a.port.number)
                for a in flow.actions
                if isinstance(a, Output) and isinstance(a.port, PortNumber)
            }
            if len(outs) == 1 and None not in outs:
                kind = str(next(iter(outs)))
                return SegmentFact(lvid, Found(kind, source), Found(key, source))
    ref = flow.in_port
    name = ref.name if isinstance(ref, PortName) else None
    if isinstance(ref, PortNumber):
        name = names.get(ref.number)
    peer = peers.get(name) if name is not None else None
    if peer is None:
        return None
    if bridge.name == integration:
        # br-int table 0, from a provider bridge: wire VLAN S (or untagged) → local VLAN L.
        wire, lvid = _vlan_match(flow), _vlan_set(flow)
        if wire is None or lvid is None:
            return None
        if wire == 0:
            return SegmentFact(lvid, Found("flat", source), None)
        return SegmentFact(lvid, Found("vlan", source), Found(wire, source))
    if peer == integration:
        # A provider bridge, from br-int: local VLAN L → wire VLAN S, or stripped (flat).
        lvid = _vlan_match(flow)
        if not lvid:
            return None
        wire = _vlan_set(flow)
        if wire is not None:
            return SegmentFact(lvid, Found("vlan", source), Found(wire, source))
        if _strips(flow):
            return SegmentFact(lvid, Found("flat", source), None)
    return None
