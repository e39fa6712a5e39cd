"""OVS bridges prepared for tracing: flow tables compiled for the classifier, ports numbered,
NORMAL's bundles indexed, tunnel ports' options read once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import assert_never

from nodetrace.engine.openflow_classifier import Rule, Table
from nodetrace.engine.ovs_normal import Bundles, compile_bundles
from nodetrace.errors import UsageError
from nodetrace.model.openflow import (
    RESERVED_PORT_NUMBERS,
    Flow,
    Output,
    PortName,
    PortNumber,
    PortRef,
    Reserved,
    Resubmit,
)
from nodetrace.model.openflow_trace import TunnelEncap
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
    names_in_actions: bool = False
    """The dump names ports in actions (``--names``); ofproto/trace prints their numbers."""
    unnumbered: tuple[str, ...] = ()
    """Listed ports whose OpenFlow numbers the snapshot does not give."""
    unmapped_numbers: tuple[int, ...] = ()
    """Port numbers the flows use (``in_port=5``, ``output:5``) that no listed port has: with
    ports unnumbered, any of them may be one of those ports."""
    incomplete: str = ""
    """Why the bridge's flow dump holds only part of its flows (empty when it is whole)."""
    placeholders: dict[int, str] = field(default_factory=dict)
    """Ports known only by name, by the stand-in number nodetrace gave them: printed by name,
    never as if the number were theirs."""


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
        Bundles([], {}, {}, []),
        macs={},
    )
    # A port the snapshot names without its OpenFlow number (``ovs-vsctl show``, flows dumped
    # with names) is still that OVSDB port: its patch peer, tunnel options and VLAN go with it.
    for p in b.ports:
        if p.ofport is None and p.name not in numbers:
            ports[number_for_name(bridge, p.name)] = p
    bridge.unnumbered = tuple(p.name for p in b.ports if p.ofport is None)
    bridge.bundles = compile_bundles(b, numbers)
    if b.fdb is not None:
        for e in b.fdb.entries:
            bridge.macs[(int(e.mac.replace(":", ""), 16), e.vlan)] = e.port
    flows = b.flows.flows if b.flows is not None else ()
    if b.flows is not None and not b.flows.complete:
        bridge.incomplete = b.flows.incomplete_reason or "part of the dump is missing"
    for order, flow in enumerate(flows):
        bridge.rules.setdefault(flow.table, []).append(compile_rule(bridge, flow, order))
    for table_id, rules in bridge.rules.items():
        bridge.tables[table_id] = Table(table_id, rules)
    bridge.learned_order = len(flows)
    used: set[int] = set()
    for flow in flows:
        if isinstance(flow.in_port, PortNumber):
            used.add(flow.in_port.number)
        for a in flow.actions:
            if isinstance(a, (Output, Resubmit)) and isinstance(a.port, PortName):
                bridge.names_in_actions = True
                number_for_name(bridge, a.port.name)  # a port, even if no listing has it
            elif isinstance(a, Output) and isinstance(a.port, PortNumber):
                used.add(a.port.number)
    if bridge.unnumbered:
        bridge.unmapped_numbers = tuple(
            sorted(n for n in used if n not in ports and n < SYNTHETIC_BASE)
        )
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
        bridge.placeholders[number] = name
    return number


def unmapped_ports(bridge: CompiledBridge, numbers: tuple[int, ...]) -> str:
    """Why port ``numbers`` of ``bridge`` cannot be tied to ports, for an unknown answer."""
    listed = ", ".join(str(n) for n in numbers[:6]) + (", ..." if len(numbers) > 6 else "")
    names = bridge.unnumbered
    ports = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return (
        f"{bridge.name}'s flows name ports by number ({listed}) and the snapshot lists "
        f"{ports} without their numbers, so which port is which is unknown (collect "
        f"`ovs-ofctl show {bridge.name}`)"
    )


def is_placeholder(number: int) -> bool:
    """Whether ``number`` is one nodetrace gave a port known only by name."""
    return SYNTHETIC_BASE <= number <= 0xFFF7


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
    """The number a flow's port reference stands for (a stand-in for a port known by name)."""
    match ref:
        case PortNumber(number=number):
            return number
        case PortName(name=name):
            return number_for_name(bridge, name)
        case Reserved(port=port):
            return RESERVED_PORT_NUMBERS[port]
        case _:
            assert_never(ref)


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
