"""OVS bridges prepared for tracing: flow tables compiled for the classifier, ports numbered,
NORMAL's bundles indexed, tunnel ports' options read once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from nodetrace.engine.openflow_classifier import Rule, Table
from nodetrace.engine.ovs_normal import Bundles, compile_bundles
from nodetrace.errors import UsageError
from nodetrace.model.openflow import (
    RESERVED_PORT_NUMBERS,
    Flow,
    PortName,
    PortNumber,
    PortRef,
)
from nodetrace.model.openflow_trace import (
    TunnelEncap,
)
from nodetrace.model.ovs_switch import BridgeState, SwitchPort
from nodetrace.model.ovsdb import Interface, parse_ip

SYNTHETIC_BASE = 0xFF01
"""Port numbers nodetrace gives ports known only by name (OpenFlow reserves 0xff01-0xfff7)."""


@dataclass(slots=True)
class CompiledBridge:
    state: BridgeState
    name: str
    tables: dict[int, Table]
    ports: dict[int, SwitchPort]
    names: dict[int, str]
    numbers: dict[str, int]
    ports_known: bool
    bundles: Bundles
    macs: dict[tuple[int, int], int]
    rules: dict[int, list[Rule]] = field(default_factory=dict)
    learned_order: int = 0
    vlan_modes_derived: bool = False
    tunnels: dict[str, TunnelTemplate] = field(default_factory=dict)


def compile_bridge(b: BridgeState) -> CompiledBridge:
    ports = {p.ofport: p for p in b.ports if p.ofport is not None}
    names = {n: p.name for n, p in ports.items()}
    numbers = {p.name: n for n, p in ports.items()}
    bridge = CompiledBridge(
        b,
        b.name,
        {},
        ports,
        names,
        numbers,
        b.ovsdb is not None or b.ofctl is not None,
        compile_bundles(b),
        macs={},
    )
    if b.fdb is not None:
        for e in b.fdb.entries:
            bridge.macs[(int(e.mac.replace(":", ""), 16), e.vlan)] = e.port
    flows = b.flows.flows if b.flows is not None else ()
    for order, flow in enumerate(flows):
        bridge.rules.setdefault(flow.table, []).append(compile_rule(bridge, flow, order))
    for table_id, rules in bridge.rules.items():
        bridge.tables[table_id] = Table(table_id, rules)
    bridge.learned_order = len(flows)
    bridge.vlan_modes_derived = b.ovsdb is not None and any(
        not p.vlan_mode_known for p in b.ovsdb.ports
    )
    for p in b.ports:
        if p.interface is not None and p.interface.is_tunnel:
            bridge.tunnels[p.name] = tunnel_template(p.interface)
    return bridge


def number_for_name(bridge: CompiledBridge, name: str) -> int:
    """The number of a port known by name; ports seen only by name get a synthetic number."""
    number = bridge.numbers.get(name)
    if number is None:
        number = SYNTHETIC_BASE + sum(1 for n in bridge.numbers.values() if n >= SYNTHETIC_BASE)
        if number > 0xFFF7:
            raise UsageError(f"{bridge.name}: too many ports without OpenFlow numbers")
        bridge.numbers[name] = number
        bridge.names[number] = name
    return number


def compile_rule(bridge: CompiledBridge, flow: Flow, order: int) -> Rule:
    fields = {m.field: (m.value, m.mask) for m in flow.matches}
    match_text = flow.match_text
    if flow.in_port is not None:
        number = ref_number(bridge, flow.in_port)
        fields["in_port"] = (number, 0xFFFF)
        if isinstance(flow.in_port, PortName) and number < SYNTHETIC_BASE:
            # ofproto/trace prints port numbers even when the dump used --names.
            match_text = _IN_PORT_TERM.sub(lambda m: f"{m.group(1)}in_port={number}", match_text)
    sig = tuple(sorted((f, m) for f, (_, m) in fields.items()))
    key = tuple(fields[f][0] & m for f, m in sig)
    uncertain = ""
    if flow.unsupported:
        uncertain = "matches on " + ", ".join(flow.unsupported) + ", which nodetrace does not model"
    return Rule(
        flow,
        flow.priority,
        key,
        sig,
        flow.conjunctions,
        uncertain,
        flow.actions,
        order,
        match_text=match_text,
    )


_IN_PORT_TERM = re.compile(r'(^|,)in_port=("[^"]*"|[^,]*)')


def ref_number(bridge: CompiledBridge, ref: PortRef) -> int:
    if isinstance(ref, PortNumber):
        return ref.number
    if isinstance(ref, PortName):
        return number_for_name(bridge, ref.name)
    return RESERVED_PORT_NUMBERS[ref.port]


@dataclass(frozen=True, slots=True)
class TunnelTemplate:
    """A tunnel port's options, read once: what its encapsulation takes from the packet."""

    type: str
    dst: IPv4Address | IPv6Address | None
    dst_from_flow: bool
    src: IPv4Address | IPv6Address | None
    src_from_flow: bool
    key: int | None
    key_from_flow: bool
    dst_port: int | None
    tos: str
    ttl: str
    flags: tuple[str, ...]


def tunnel_template(iface: Interface) -> TunnelTemplate:
    remote, local, key_opt = iface.remote_ip, iface.local_ip, iface.out_key
    if key_opt == "flow" or key_opt is None:
        key = None if key_opt == "flow" or iface.type not in _KEYED_ALWAYS else 0
    else:
        try:
            key = int(key_opt, 0)
        except ValueError:
            key = 0
    flags = []
    if iface.option("df_default") != "false":
        flags.append("df")
    if iface.option("csum") == "true":
        flags.append("csum")
    if key_opt is not None:
        flags.append("key")
    return TunnelTemplate(
        iface.type,
        None if remote == "flow" else parse_ip(remote),
        remote == "flow",
        None if local == "flow" else parse_ip(local),
        local == "flow",
        key,
        key_opt == "flow",
        iface.dst_port,
        iface.option("tos") or "0",
        iface.option("ttl") or "",
        tuple(flags),
    )


_KEYED_ALWAYS = frozenset({"vxlan", "geneve", "stt", "lisp", "gtpu"})
"""Tunnel types whose header always carries a key (VNI), 0 when the port sets none."""


def encapsulation(t: TunnelTemplate, s: Mapping[str, int]) -> TunnelEncap | None:
    """The encapsulation a tunnel port gives the packet in ``s`` (OVS's tnl_port_send())."""
    dst = IPv4Address(s.get("tun_dst", 0)) if t.dst_from_flow else t.dst
    if dst is None:
        return None
    src = IPv4Address(s.get("tun_src", 0)) if t.src_from_flow else t.src
    key = s.get("tun_id", 0) if t.key_from_flow else t.key
    ip = s.get("dl_type") in (0x0800, 0x86DD)
    if t.tos == "inherit":
        tos = s.get("nw_tos", 0) & 0xFC if ip else 0
    else:
        tos = int(t.tos, 0) if t.tos.isdigit() else 0
    if ip:
        ecn = s.get("nw_tos", 0) & 3
        tos |= 2 if ecn == 3 else ecn
    if t.ttl == "inherit":
        ttl = s.get("nw_ttl", 0) if ip else 64
    else:
        ttl = int(t.ttl) if t.ttl.isdigit() else 64
    return TunnelEncap(t.type, key, src, dst, t.dst_port, tos, ttl, t.flags)
