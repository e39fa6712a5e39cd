"""Trace a packet through Open vSwitch bridges offline, the way ``ofproto/trace`` does live.

The translator follows ovs-vswitchd's ``ofproto-dpif-xlate.c`` step by step: table lookups from
table 0, resubmit/goto_table with OVS's depth and resubmit limits, patch ports continuing in the
peer bridge with a scrubbed copy of the packet, NORMAL with OVSDB VLAN semantics, tunnel ports
recording their encapsulation, ``ct(table=N)`` recirculations resumed with a conntrack state,
``learn`` recorded (and applied if asked). It builds the same trace tree OVS builds, so the
result can be printed exactly as ``ofproto/trace`` prints it, and says what it assumed.

Public entry point: :class:`OpenFlowEngine` (``trace()``).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

from nodetrace.engine.openflow_classifier import Table
from nodetrace.engine.openflow_compile import CompiledBridge, compile_bridge, compile_rule
from nodetrace.engine.openflow_state import (
    PACKET_TO_STORAGE,
    State,
    port_text,
    state_from_packet,
)
from nodetrace.engine.openflow_xlate import Xlate
from nodetrace.engine.ovs_conntrack import ConntrackModel
from nodetrace.errors import UsageError
from nodetrace.model.openflow import (
    LOCAL_PORT,
    Flow,
    ct_state_from_text,
    ct_state_problem,
)
from nodetrace.model.openflow_trace import (
    EgressKind,
    OpenFlowTrace,
    TracePass,
    TunnelEncap,
    UnsetField,
)
from nodetrace.model.ovs_runtime import DpifShow
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.ovsdb import parse_ip
from nodetrace.model.packet import Packet
from nodetrace.model.topology import OvsRoute, OvsTunnelNeighbour
from nodetrace.model.trace import Outcome

_FRIENDLY = {
    "vlan_tci": "dl_vlan",
    "nw_src": "nw_src/arp_spa",
    "nw_dst": "nw_dst/arp_tpa",
    "tp_src": "tp_src/icmp_type",
    "tp_dst": "tp_dst/icmp_code",
}
"""Storage fields a user knows by other names (the rest are named as stored)."""


class OpenFlowEngine:
    """Traces packets through the bridges of one :class:`OvsSwitch`.

    With ``apply_side_effects`` the engine remembers what packets do to the switch -- flows added
    by ``learn``, MACs learned by NORMAL, connections committed by ``ct(commit)`` -- and later
    traces on the same engine see them (``ofproto/trace -generate`` does the same live).
    """

    def __init__(
        self,
        switch: OvsSwitch,
        *,
        apply_side_effects: bool = False,
        routes: Sequence[OvsRoute] | None = None,
        neighbours: Sequence[OvsTunnelNeighbour] | None = None,
        dpif: DpifShow | None = None,
        remember_connections: bool = False,
    ) -> None:
        self.switch = switch
        self.apply_side_effects = apply_side_effects
        self.remember_connections = apply_side_effects or remember_connections
        """Connections ``ct(commit)`` commits are known to later traces. With
        ``remember_connections`` (the walk) the engine models the datapath's tracker, not
        ``ofproto/trace``'s default: a committed connection's reply is ``+est+rpl`` and a packet
        that cannot open a connection and belongs to none is ``+inv``."""
        self.routes = routes
        """OVS's own routing table (``ovs/route/show``): with it, a native tunnel's outer
        packet is followed through the underlay bridge as ``ofproto/trace`` does."""
        self.neighbours = neighbours
        """OVS's tunnel neighbour cache (``tnl/neigh/show``): the outer destination MACs."""
        self.dpif = dpif
        """``dpif/show``: the datapath port numbers the ``Datapath actions`` line names."""
        self.bridges = {b.name: compile_bridge(b) for b in switch.bridges}
        self.encap_cache: dict[tuple[object, ...], tuple[TunnelEncap | None, str]] = {}
        """Encapsulations by (bridge, port, the packet fields they depend on)."""
        # Remembering connections models the datapath's tracker, not ofproto/trace's default.
        self.ct_model = ConntrackModel(switch.conntrack, datapath=remember_connections)

    def add_flow(self, bridge: str, flow: Flow) -> None:
        """Add (or replace, same match and priority) a flow, as ``learn`` does."""
        b = self.bridges[bridge]
        rules = [
            r
            for r in b.rules.get(flow.table, [])
            if not (
                r.flow.priority == flow.priority
                and r.flow.matches == flow.matches
                and r.flow.in_port == flow.in_port
            )
        ]
        b.learned_order += 1
        rules.append(compile_rule(b, flow, b.learned_order))
        b.rules[flow.table] = rules
        b.tables[flow.table] = Table(flow.table, rules)

    def port_number(self, bridge: str, port: str | int) -> int:
        """Resolve ``--in-port``: a number, ``LOCAL`` or a port name."""
        b = self.bridges.get(bridge)
        if b is None:
            known = ", ".join(self.bridges) or "none"
            raise UsageError(f"bridge {bridge!r} is not in the snapshot (bridges: {known})")
        if isinstance(port, int):
            return port
        text = port.strip()
        if text.upper() == "LOCAL":
            return LOCAL_PORT
        if text.isdigit():
            return int(text)
        if text in b.numbers:  # every listed port, and every port a flow names
            return b.numbers[text]
        raise UsageError(f"port {text!r} is not a port of {bridge}")

    def trace(
        self,
        bridge: str,
        in_port: str | int,
        packet: Packet,
        metadata: Sequence[tuple[str, str]] = (),
        *,
        given: frozenset[str] | None = None,
        ct_states: Sequence[str | int] = (),
        start_table: int = 0,
    ) -> OpenFlowTrace:
        """Trace ``packet`` arriving on ``in_port`` of ``bridge``.

        ``metadata`` holds pipeline fields as written in OVS flow syntax (``tun_id``,
        ``tun_src``, ``reg0``, ``ct_state`` ...). ``given`` names the packet fields the user set
        (so unset ones a flow looked at are reported); ``ct_states`` are the states for
        successive conntrack recirculations, like ``ofproto/trace --ct-next``. ``start_table``
        begins the first pass in another table than 0 (no ``ofproto/trace`` equivalent).
        """
        number = self.port_number(bridge, in_port)
        b = self.bridges[bridge]
        try:
            explicit = [s if isinstance(s, int) else ct_state_from_text(s) for s in ct_states]
        except ValueError as err:
            raise UsageError(f"--ct-state: {err}") from None
        for bits in explicit:
            problem = ct_state_problem(bits)
            if problem is not None:
                raise UsageError(f"--ct-state: invalid connection state {problem}")
        ct = self.ct_model
        ct.explicit = explicit
        state = state_from_packet(packet, metadata, number)
        if given is not None:
            given = frozenset(
                {PACKET_TO_STORAGE.get(g, g) for g in given} | {k for k, _ in metadata}
            )
            if "nw_ttl" not in given and "nw_ttl" in state:
                state["nw_ttl"] = 0  # as ofproto/trace: a field left out is zero
        x = Xlate(self, packet, ct, given)
        x.start_table = start_table
        self._tunnel_ingress(b, number, state, {k for k, _ in metadata}, x)
        passes = x.run(b, state)
        for name, flow in x.pending_flows:
            self.add_flow(name, flow)
        if ct.explicit:
            x.note(f"{len(ct.explicit)} --ct-state value(s) were not used (fewer recirculations)")
        unset = tuple(
            UnsetField(f, tuple(_FRIENDLY.get(f, f).split("/")), *where)
            for f, where in sorted(x.consulted.items())
        )
        for u in unset:
            x.note(u.note)
        assumptions = self.switch_notes(x) + x.assumptions
        return _result(bridge, port_text(number, b.names), packet, passes, x, assumptions, unset)

    def _tunnel_ingress(
        self, b: CompiledBridge, number: int, state: State, given: set[str], x: Xlate
    ) -> None:
        """A packet entering by a tunnel port carries the outer addresses and key; what the user
        left out is taken from the port's own options (remote_ip is the sender), and said."""
        port = b.ports.get(number)
        iface = port.interface if port is not None else None
        if iface is None or not iface.is_tunnel:
            return
        filled = []
        for key, option in (("tun_src", iface.remote_ip), ("tun_dst", iface.local_ip)):
            address = parse_ip(option)
            if key not in given and isinstance(address, IPv4Address):
                state[key] = int(address)
                filled.append(f"{key}={address}")
        in_key = iface.in_key
        if "tun_id" not in given and in_key not in (None, "flow"):
            state["tun_id"] = int(in_key, 0) if in_key.isdigit() or in_key.startswith("0x") else 0
            filled.append(f"tun_id={state['tun_id']:#x}")
        if filled:
            x.note(
                f"{port.name if port else number}: tunnel ingress without "
                + ", ".join(f.split("=")[0] for f in filled)
                + "; taken from the port's options: "
                + ", ".join(filled)
            )
            for f in filled:
                x.unset.discard(f.split("=")[0])

    def switch_notes(self, x: Xlate) -> list[str]:
        """The snapshot's gaps that matter for the bridges this trace went through."""
        out = []
        for note in self.switch.notes:
            bridge, sep, _ = note.partition(":")
            if "MAC table" in note or "vlan_mode" in note or "no ovs-vsctl data" in note:
                continue  # NORMAL states these itself when it runs
            if sep and bridge in self.bridges and bridge not in x.touched:
                continue
            out.append(note)
        return out


def _result(
    bridge: str,
    in_port: str,
    packet: Packet,
    passes: list[TracePass],
    x: Xlate,
    assumptions: list[str],
    unset: tuple[UnsetField, ...] = (),
) -> OpenFlowTrace:
    egress = tuple(x.egress)
    real = [e for e in egress if e.kind is not EgressKind.CONTROLLER]
    verdict_step: int | None = None
    if x.unknown:
        outcome = Outcome.UNKNOWN
        verdict = f"unknown: {x.unknown}"
        reason = x.unknown
    elif real:
        outcome = Outcome.DELIVERED
        listed = "; ".join(e.describe() for e in real[:4])
        more = f" (+{len(real) - 4} more)" if len(real) > 4 else ""
        verdict = f"leaves through {len(real)} port{'s' if len(real) > 1 else ''}: {listed}{more}"
        reason = ""
    elif egress:
        outcome = Outcome.ENDS
        verdict = "sent to the OpenFlow controller only"
        reason = verdict
    else:
        outcome = Outcome.DROPPED
        step, why = x.drops[-1] if x.drops else (None, "no action sent the packet anywhere")
        verdict = f"dropped: {why}"
        reason = why
        if step is not None:
            trace_steps = [
                n.step
                for p in passes
                for node in p.nodes
                for n in node.walk()
                if n.step is not None
            ]
            verdict_step = next((i for i, t in enumerate(trace_steps) if t is step), None)
    return OpenFlowTrace(
        bridge,
        in_port,
        packet,
        tuple(passes),
        egress,
        outcome,
        verdict,
        reason,
        tuple(dict.fromkeys(assumptions)),
        tuple(x.learned),
        verdict_step,
        unset,
    )
