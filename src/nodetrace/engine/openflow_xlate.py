"""The translator: one trace through the OpenFlow tables, the way ovs-vswitchd translates a
packet (``ofproto-dpif-xlate.c``), building the same trace tree ``ofproto/trace`` prints."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING, assert_never

from nodetrace.engine.openflow_classifier import LookupResult, Rule
from nodetrace.engine.openflow_compile import CompiledBridge, is_placeholder, unmapped_ports
from nodetrace.engine.openflow_datapath import datapath_actions
from nodetrace.engine.openflow_learn import execute_learn
from nodetrace.engine.openflow_output import IN_PORT, Outputs
from nodetrace.engine.openflow_state import (
    CT_KEYS,
    HEADER_FIELDS,
    TCI1,
    TPID0,
    TPID1,
    VLAN_CFI,
    WIDTHS,
    State,
    field_prereq,
    format_flow,
    is_ip,
    packet_from_state,
    prereq_ok,
    read_field,
    value_text,
    write_field,
    write_masked,
)
from nodetrace.engine.ovs_conntrack import ConntrackModel
from nodetrace.model.openflow import (
    MAX_DEPTH,
    MAX_RESUBMITS,
    Action,
    ClearActions,
    Clone,
    Conjunction,
    Controller,
    Ct,
    CtClear,
    DecTtl,
    Drop,
    DumpProtocol,
    Enqueue,
    Exit,
    Flow,
    GotoTable,
    Learn,
    LegacySet,
    Meter,
    ModField,
    Move,
    Nat,
    NoEffect,
    Note,
    Output,
    OutputField,
    PopVlan,
    PortName,
    PushVlan,
    Resubmit,
    SetField,
    SetTunnel,
    SetVlan,
    StackPop,
    StackPush,
    SubField,
    Unsupported,
    VlanOp,
    WriteMetadata,
    ct_state_text,
)
from nodetrace.model.openflow_trace import (
    ActionRun,
    Bridge,
    ConntrackCleared,
    Egress,
    Learned,
    LearnedFlow,
    Message,
    NativeTunnel,
    NodeKind,
    Recirculate,
    TableLookup,
    Thaw,
    TraceNode,
    TracePass,
)
from nodetrace.model.packet import Packet
from nodetrace.model.trace import DeviceAction, DeviceStep, OpenFlowStep

if TYPE_CHECKING:
    from nodetrace.engine.openflow import OpenFlowEngine


class _Node:
    """A trace node while its children are being added (frozen into the node at the end)."""

    __slots__ = ("children", "node")

    def __init__(self, node: TraceNode) -> None:
        self.node = node
        self.children: list[_Node] = []

    def freeze(self) -> TraceNode:
        if not self.children:
            return self.node
        children = tuple([c.freeze() for c in self.children])
        match self.node:
            case Bridge() | TableLookup() | Thaw():
                return replace(self.node, children=children)
            case _:
                raise AssertionError(f"{type(self.node).__name__} has no children")


@dataclass(slots=True)
class _Recirc:
    state: State
    bridge: CompiledBridge
    table: int
    zone: int
    nat: Nat | None
    stack: list[int]


class _Stop(Exception):
    """Translation cannot go on (an unmodelled action): unwinds to the pass."""


class Xlate(Outputs):
    """One trace: the translation context OVS calls ``struct xlate_ctx``."""

    def __init__(
        self,
        engine: OpenFlowEngine,
        packet: Packet,
        ct: ConntrackModel,
        given: frozenset[str] | None,
    ) -> None:
        self.engine = engine
        self.packet = packet
        self.ct = ct
        self.assumptions: list[str] = []
        self.egress: list[Egress] = []
        self.learned: list[LearnedFlow] = []
        self.recircs: list[_Recirc] = []
        self.unknown = ""
        self.drops: list[tuple[OpenFlowStep | DeviceStep | None, str]] = []
        self.unset: set[str] = set()
        if given is not None:
            self.unset = {f for f in HEADER_FIELDS if f not in given}
        self.consulted: dict[str, tuple[str, int, str]] = {}
        """Fields left out that something depended on: (bridge, table, action) that looked."""
        self.pass_index = 0
        self.recirc_count = 0
        self.touched: set[str] = set()
        self.leaving_cache: dict[tuple[tuple[str, int], ...], tuple[Packet, str]] = {}
        self.pending_flows: list[tuple[str, Flow]] = []
        self.start: CompiledBridge | None = None
        self.start_table = 0
        """The table the first pass begins in: 0 as in OVS; another to check one stage of a
        pipeline alone (the exposure audit starts a port's firewall at its own table)."""
        self.carrying: NativeTunnel | None = None
        self.routes_missing_said = False
        self.underived: dict[int, str] = {}
        self.flooded: set[int] = set()
        self._reset()

    def _reset(self) -> None:
        self.trace: list[_Node] = []
        self.depth = 0
        self.resubmits = 0
        self.table_id = 0
        self.error = ""
        self.exit = False
        self.conntracked = False
        self.stack: list[int] = []

    # -- reporting ---------------------------------------------------------------------------

    def report(self, node: TraceNode) -> _Node:
        built = _Node(node)
        self.trace.append(built)
        return built

    def say(self, level: NodeKind, text: str) -> None:
        """One of OVS's detail, warning or error lines."""
        self.report(Message(level, text))

    def note(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)

    def stop(self, reason: str) -> None:
        if not self.unknown:
            self.unknown = reason
        raise _Stop

    # -- passes ------------------------------------------------------------------------------

    def run(self, bridge: CompiledBridge, state: State) -> list[TracePass]:
        self.start = bridge
        self.orig_tun_dst = state.get("tun_dst", 0)
        self.state = state
        self.bridge = bridge
        passes = [self._pass(bridge, state, None)]
        while self.recircs and not self.unknown:
            rec = self.recircs.pop(0)
            self.pass_index += 1
            passes.append(self._recirc_pass(rec))
        return passes

    def _pass(self, bridge: CompiledBridge, state: State, recirc: _Recirc | None) -> TracePass:
        self._reset()
        self.state = state
        self.bridge = bridge
        self.touched.add(bridge.name)
        initial = dict(state)
        start = self.start
        assert start is not None
        root = _Node(Bridge(start.name))
        self.trace = root.children
        egress_before = len(self.egress)
        table = self.start_table
        if recirc is not None:
            thaw = self.report(Thaw())
            thaw.children.append(
                _Node(
                    Thaw(
                        recirc.table,
                        step=DeviceStep(
                            DeviceAction.RECIRC,
                            bridge.name,
                            f"resume at table {recirc.table} with ct_state="
                            f"{ct_state_text(state.get('ct_state', 0))}, "
                            f"zone {recirc.zone}",
                        ),
                    )
                )
            )
            table = recirc.table
            self.stack = list(recirc.stack)
            self.conntracked = True
        with contextlib.suppress(_Stop):  # an unmodelled step: ``self.unknown`` says which
            self._initial_lookup(table)
        if self.error:
            del self.egress[egress_before:]
            self.drops.append((None, f"translation failed ({self.error}), the packet is dropped"))
        changed = {k: v for k, v in self.state.items() if v} != {
            k: v for k, v in initial.items() if v
        }
        final = format_flow(self.state, bridge.placeholders) if changed else None
        actions = self._datapath_actions(initial, egress_before)
        return TracePass(
            format_flow(initial, bridge.placeholders),
            (root.freeze(),),
            final,
            datapath_actions=actions,
        )

    def _datapath_actions(self, initial: State, first: int) -> str:
        if self.unknown:
            why: str | None = "the trace stops before the end"
        elif self.error:
            why = "translation failed"
        else:
            why = self.underived.get(self.pass_index)
        egress = [] if why else self.egress[first:]
        if not why and self.pass_index in self.flooded and len(egress) > 1:
            why = "flooded copies leave in the order of OVS's port hash table"
        return datapath_actions(
            lambda: packet_from_state(initial, self.packet), egress, self.engine.dpif, why
        )

    def _recirc_pass(self, rec: _Recirc) -> TracePass:
        self.recirc_count += 1
        state = dict(rec.state)
        verdict = self.ct.next_state(state, self.packet, rec.zone)
        if verdict.why:
            self.note(f"recirculation {self.recirc_count}: {verdict.why}")
        state["recirc_id"] = self.recirc_count
        state["ct_state"] = verdict.state
        state["ct_zone"] = rec.zone
        if verdict.mark:
            state["ct_mark"] = verdict.mark
        if verdict.labels:
            state["ct_label"] = verdict.labels
        nat_text = _simulate_nat(state, rec.nat)
        result = self._pass(rec.bridge, state, rec)
        return TracePass(
            result.flow,
            result.nodes,
            result.final_flow,
            self.recirc_count,
            ct_state_text(verdict.state),
            verdict.default,
            nat_text,
            rec.zone,
            result.datapath_actions,
        )

    # -- tables ------------------------------------------------------------------------------

    def _initial_lookup(self, table_id: int) -> None:
        self.table_id = table_id
        rule = self._lookup(table_id, self.state.get("in_port", 0))
        node = self._report_table(rule, table_id)
        self.trace = node.children
        self._do_actions(rule.actions if rule is not None else (), True)

    def _lookup(self, table_id: int, in_port: int) -> Rule | None:
        bridge = self.bridge
        if bridge.state.flows is None:
            self.stop(
                f"no flow dump for bridge {bridge.name} (`ovs-ofctl dump-flows {bridge.name}`): "
                "its OpenFlow tables are unknown"
            )
        if bridge.unmapped_numbers and is_placeholder(in_port):
            why = unmapped_ports(bridge, bridge.unmapped_numbers)
            self.stop(
                f"{bridge.name} table {table_id}: the packet came in by {bridge.names[in_port]}; {why}"
            )
        if bridge.incomplete:
            self.note(
                f"{bridge.name}: its flow dump is incomplete ({bridge.incomplete}); a flow "
                "not shown, of higher priority, could match instead of the one followed"
            )
        table = bridge.tables.get(table_id)
        if table is None:
            return None
        state = self.state
        old_in_port = state.get("in_port", 0)
        old_tp = (state.get("tp_src", 0), state.get("tp_dst", 0))
        state["in_port"] = in_port
        if state.get("nw_frag", 0) & 1:
            # frag_handling "normal" (the default): fragments match as if they had no ports.
            state["tp_src"] = state["tp_dst"] = 0
        try:
            result = table.lookup(state)
            if self.unset:
                where = (bridge.name, table_id, "")
                for f in table.relevant(state, self.unset, result.rule):
                    self.consulted.setdefault(f, where)
        finally:
            state["in_port"] = old_in_port
            if state.get("nw_frag", 0) & 1:
                state["tp_src"], state["tp_dst"] = old_tp
        self._after_lookup(table_id, result)
        return result.rule

    def _after_lookup(self, table_id: int, result: LookupResult) -> None:
        where = f"{self.bridge.name} table {table_id}"
        if result.ties and result.rule is not None:
            spans = ", ".join(_where(r.flow) for r in result.ties)
            self.note(
                f"{where}: flows at {_where(result.rule.flow)} and {spans} both match with "
                f"priority {result.rule.priority}; OVS picks by the order the flows were added, "
                f"which a dump does not show; followed {_where(result.rule.flow)}"
            )
        if result.uncertain is not None:
            u = result.uncertain
            self.stop(
                f"{where}: the flow at {_where(u.flow)} (priority {u.priority}) {u.uncertain}"
            )

    def _report_table(self, rule: Rule | None, table_id: int) -> _Node:
        if rule is None:
            step = OpenFlowStep(self.bridge.name, table_id, None, "", "drop", note="no match")
            # A later bridge's miss is reported as OVS's internal no-packet-in rule.
            first = self.bridge is self.start
            node = self.report(
                TableLookup(table_id, "" if first else "reg0=0x2", None if first else 0, step=step)
            )
            if self.bridge.incomplete:
                self.stop(
                    f"{self.bridge.name} table {table_id}: no flow shown matches, but the dump "
                    f"of {self.bridge.name} is incomplete ({self.bridge.incomplete}): a flow not "
                    "shown may match"
                )
            self.drops.append((step, f"no flow matched in {self.bridge.name} table {table_id}"))
            return node
        flow = rule.flow
        step = OpenFlowStep(
            self.bridge.name,
            table_id,
            flow.priority,
            flow.match_text,
            flow.actions_text,
            flow.cookie,
            source=flow.span,
        )
        if isinstance(flow.actions[0], Drop) if flow.actions else True:
            self.drops.append(
                (
                    step,
                    f"{self.bridge.name} table {table_id}: flow at "
                    f"{_where(flow)} drops it (priority {flow.priority})",
                )
            )
        return self.report(
            TableLookup(table_id, rule.match_text, flow.priority, flow.cookie, step=step)
        )

    def _check_resources(self) -> bool:
        if self.depth >= MAX_DEPTH:
            self.say(NodeKind.ERROR, f"over max translation depth {MAX_DEPTH}")
            self.error = "Recursion too deep"
        elif self.resubmits >= MAX_RESUBMITS:
            self.say(NodeKind.ERROR, f"over {MAX_RESUBMITS} resubmit actions")
            self.error = "Too many resubmits"
        else:
            return True
        return False

    def _table_action(self, in_port: int, table_id: int, is_last: bool) -> None:
        if not self._check_resources():
            return
        old_table = self.table_id
        self.table_id = table_id
        rule = self._lookup(table_id, in_port)
        old_trace = self.trace
        node = self._report_table(rule, table_id)
        self.trace = node.children
        self.resubmits += 1
        deepens = table_id <= old_table
        self.depth += deepens
        self._do_actions(rule.actions if rule is not None else (), is_last)
        self.depth -= deepens
        self.trace = old_trace
        self.table_id = old_table

    # -- actions -----------------------------------------------------------------------------

    def _do_actions(self, actions: Sequence[Action], is_last: bool) -> None:
        if not actions or (len(actions) == 1 and isinstance(actions[0], Drop)):
            self.report(ActionRun("drop"))
            return
        n = len(actions)
        for i, action in enumerate(actions):
            if self.error or self.exit:
                break
            last = is_last and i == n - 1
            self.report(
                ActionRun(
                    self._action_line(action) if self.bridge.names_in_actions else action.text
                )
            )
            if self._do_action(action, last):
                return

    def _action_line(self, a: Action) -> str:
        """The action as ``ofproto/trace`` prints it: ports by number even when the dump was
        taken with ``--names`` (``output`` checked against OVS 3.1 in
        tests/unit/test_openflow_spelling.py; ``resubmit`` follows OVS's format_RESUBMIT)."""
        if isinstance(a, Output) and isinstance(a.port, PortName) and a.max_len is None:
            number = self.bridge.numbers.get(a.port.name)
            if number is not None and not is_placeholder(number):
                return f"output:{number}"
        elif isinstance(a, Resubmit) and isinstance(a.port, PortName) and not a.ct_orig:
            number = self.bridge.numbers.get(a.port.name)
            if number is not None and not is_placeholder(number):
                return (
                    f"resubmit({number},{a.table})" if a.table is not None else f"resubmit:{number}"
                )
        return a.text

    def _do_action(self, a: Action, last: bool) -> bool:
        """Run one action; True means "stop this action list" (dec_ttl exception)."""
        s = self.state
        match a:
            case Output() | Enqueue():
                self._output(self._port(a.port), last)
            case Resubmit():
                in_port = s.get("in_port", 0) if a.port is None else self._port(a.port)
                if in_port == IN_PORT:
                    in_port = s.get("in_port", 0)
                table = self.table_id if a.table is None else a.table
                if a.ct_orig:
                    if not s.get("ct_nw_proto") or not is_ip(s):
                        self.say(NodeKind.ERROR, "resubmit(ct) with non-tracked or non-IP packet!")
                        return False
                    _tuple_swap(s)
                    try:
                        self._table_action(in_port, table, last)
                    finally:
                        _tuple_swap(s)
                else:
                    self._table_action(in_port, table, last)
            case GotoTable():
                self._table_action(s.get("in_port", 0), a.table, last)
            case SetField():
                self._set_field(a)
            case SetVlan():
                self._set_vlan(a)
            case PopVlan():
                s["vlan_tci"], s[TPID0] = s.get(TCI1, 0), s.get(TPID1, 0)
                s[TCI1] = s[TPID1] = 0
                self._written("vlan_tci")
            case PushVlan():
                if s.get("vlan_tci", 0) & VLAN_CFI:
                    self._vlan_spelling_note(
                        "push_vlan+set_field", "mod_vlan_vid", DumpProtocol.OF11_PLUS
                    )
                s[TCI1], s[TPID1] = s.get("vlan_tci", 0), s.get(TPID0, 0)
                s["vlan_tci"], s[TPID0] = VLAN_CFI, a.ethertype
                self._written("vlan_tci")
            case ModField():
                self._mod_field(a)
            case Move():
                value = read_field(s, a.src.field, a.src.start, a.src.width)
                for f in write_field(s, a.dst.field, a.dst.start, a.dst.width, value):
                    self._written(f)
                self._say_written(a.dst, value)
            case StackPush():
                self.stack.append(read_field(s, a.src.field, a.src.start, a.src.width))
            case StackPop():
                if not self.stack:
                    self.say(NodeKind.ERROR, "stack underflow")
                else:
                    value = self.stack.pop()
                    write_field(s, a.dst.field, a.dst.start, a.dst.width, value)
                    self._say_written(a.dst, value)
            case DecTtl():
                if is_ip(s):
                    if "nw_ttl" in self.unset:
                        where = (self.bridge.name, self.table_id, "dec_ttl")
                        self.consulted.setdefault("nw_ttl", where)
                    ttl = s.get("nw_ttl", 0)
                    if ttl > 1:
                        s["nw_ttl"] = ttl - 1
                    else:
                        version = 4 if s.get("dl_type") == 0x0800 else 6
                        for _ in a.controller_ids:
                            self._controller("invalid TTL")
                        self.say(NodeKind.WARN, f"IPv{version} decrement TTL exception")
                        self.drops.append(
                            (None, f"TTL expired in {self.bridge.name} table {self.table_id}")
                        )
                        return True
            case SetTunnel():
                s["tun_id"] = a.tun_id
            case WriteMetadata():
                s["metadata"] = (s.get("metadata", 0) & ~a.mask) | (a.value & a.mask)
            case OutputField():
                port = read_field(s, a.src.field, a.src.start, a.src.width)
                if port <= 0xFFFF:
                    self.say(NodeKind.DETAIL, f"output port is {port}")
                    self._output(port, last)
                else:
                    self.say(NodeKind.WARN, f"output port {port} is out of range")
            case Controller():
                self._controller(a.reason or "action")
            case Conjunction():
                self.say(NodeKind.ERROR, "executing no-op conjunction action")
            case Exit():
                self.exit = True
            case ClearActions():
                self.say(NodeKind.DETAIL, "action set was empty")
            case Meter():
                self.note(
                    f"meter {a.meter_id} ({self.bridge.name}): rate limits are not modelled; "
                    "the packet is assumed to be within the rate"
                )
            case Note() | NoEffect() | Drop():
                pass
            case Clone():
                saved = dict(s)
                self._do_actions(a.actions, False)
                self.state.clear()
                self.state.update(saved)
            case Ct():
                self._ct(a, last)
            case CtClear():
                if self.conntracked:
                    for k in CT_KEYS:
                        s.pop(k, None)
                    self.conntracked = False
            case Learn():
                self._learn(a)
            case Unsupported():
                self.stop(
                    f"{self.bridge.name} table {self.table_id}: action {a.text!r} is not "
                    f"modelled ({a.why or a.name})"
                )
            case _:
                assert_never(a)
        return False

    def _say_written(self, dst: SubField, value: int) -> None:
        """``NXM_NX_REG0[] is now 0x5``, as OVS says after a move or a stack pop."""
        name = dst.field
        if dst.width == WIDTHS.get(name, -1) or name in ("dl_src", "dl_dst", "nw_src", "nw_dst"):
            text = value_text(name, value)
        else:
            text = f"{value:#x}"
        self.say(NodeKind.DETAIL, f"{dst.text} is now {text}")

    def _written(self, field_name: str) -> None:
        self.unset.discard(field_name)

    def _set_field(self, a: SetField) -> None:
        prereq = field_prereq(a.field)
        if not prereq_ok(prereq, self.state):
            self.say(NodeKind.WARN, f"unmet prerequisites for {a.field}, set_field ignored")
            return
        for f in write_masked(self.state, a.field, a.value, a.mask):
            self._written(f)

    def _set_vlan(self, a: SetVlan) -> None:
        s = self.state
        tci = s.get("vlan_tci", 0)
        push = a.op in (VlanOp.MOD_VID, VlanOp.MOD_PCP)
        if not (tci & VLAN_CFI or push):
            return
        if tci & VLAN_CFI and a.op is VlanOp.MOD_VID:
            self._vlan_spelling_note("mod_vlan_vid", "push_vlan+set_field", DumpProtocol.OF10)
        if not s.get(TPID0):
            s[TPID0] = 0x8100
        if a.op in (VlanOp.MOD_VID, VlanOp.SET_VID):
            s["vlan_tci"] = (tci & ~0xFFF) | (a.value & 0xFFF) | VLAN_CFI
        else:
            s["vlan_tci"] = (tci & ~0xE000) | ((a.value & 7) << 13) | VLAN_CFI
        self._written("vlan_tci")

    def _vlan_spelling_note(self, shown: str, other: str, protocol: DumpProtocol) -> None:
        """OpenFlow 1.0 dumps print push_vlan+set_field as mod_vlan_vid and 1.3+ dumps print
        mod_vlan_vid as push_vlan+set_field; on a tagged packet the two differ (QinQ or not)."""
        flows = self.bridge.state.flows
        if flows is not None and flows.protocol in (protocol, DumpProtocol.UNKNOWN):
            self.note(
                f"{self.bridge.name} table {self.table_id}: this dump prints {shown}, which is also "
                f"how it prints {other}; on this tagged packet they differ (one tag or two). "
                "A dump in the flow's own OpenFlow version settles it."
            )

    def _mod_field(self, a: ModField) -> None:
        s = self.state
        k = a.kind
        if k is LegacySet.DL_SRC:
            s["dl_src"] = a.value
        elif k is LegacySet.DL_DST:
            s["dl_dst"] = a.value
        elif k in (LegacySet.NW_SRC, LegacySet.NW_DST):
            if s.get("dl_type") == 0x0800:
                s["nw_src" if k is LegacySet.NW_SRC else "nw_dst"] = a.value
        elif k in (LegacySet.NW_TOS, LegacySet.NW_ECN, LegacySet.NW_TTL):
            if is_ip(s):
                tos = s.get("nw_tos", 0)
                if k is LegacySet.NW_TOS:
                    s["nw_tos"] = (tos & 3) | (a.value & 0xFC)
                elif k is LegacySet.NW_ECN:
                    s["nw_tos"] = (tos & 0xFC) | (a.value & 3)
                else:
                    s["nw_ttl"] = a.value & 0xFF
        elif is_ip(s) and not s.get("nw_frag", 0) & 2:
            s["tp_src" if k is LegacySet.TP_SRC else "tp_dst"] = a.value & 0xFFFF
        self._written({LegacySet.DL_SRC: "dl_src", LegacySet.DL_DST: "dl_dst"}.get(k, ""))

    # -- conntrack, learn --------------------------------------------------------------------

    def _ct(self, a: Ct, last: bool) -> None:
        self._underive("conntrack (ct) actions are not derived")
        s = self.state
        zone = a.zone
        if a.zone_field is not None:
            zone = read_field(s, a.zone_field.field, a.zone_field.start, a.zone_field.width)
        nested: list[tuple[str, Action | None]] = []
        if a.nat is not None:
            nested.append((a.nat.text, None))
        for x in a.exec_actions:
            nested.append((x.text, x))
        if a.nat is not None and a.exec_actions and a.text.find("exec(") < a.text.find("nat"):
            nested = nested[1:] + nested[:1]
        if not nested:
            self.report(ActionRun("drop"))
        for text, action in nested:
            self.report(ActionRun(text))
            if action is not None:
                self._do_action(action, False)
        if a.commit and self.engine.remember_connections:
            self.ct.commit(s, self.packet, zone)
        if a.table is not None:
            self.conntracked = True
            self.recircs.append(
                _Recirc(dict(s), self.bridge, a.table, zone, a.nat, list(self.stack))
            )
            self.report(Recirculate(a.table))
        for k in CT_KEYS:
            s.pop(k, None)
        self.report(ConntrackCleared())
        self.conntracked = False

    def _learn(self, a: Learn) -> None:
        flow, record = execute_learn(
            a, self.state, self.bridge.name, WIDTHS, self.bridge.placeholders
        )
        if self.engine.apply_side_effects:
            # Like OVS, the flow becomes visible to later packets, not to this translation.
            record = replace(record, applied=True)
            self.pending_flows.append((self.bridge.name, flow))
        else:
            self.say(NodeKind.WARN, "suppressing side effects, so learn action ignored")
        self.report(Learned(record))
        self.learned.append(record)


# Helpers


def _where(flow: Flow) -> str:
    if flow.span is not None:
        return str(flow.span)
    return f"table {flow.table} priority {flow.priority}"


def _tuple_swap(s: State) -> None:
    v6 = s.get("dl_type") == 0x86DD
    pairs = [("nw_proto", "ct_nw_proto"), ("tp_src", "ct_tp_src"), ("tp_dst", "ct_tp_dst")]
    pairs += (
        [("ipv6_src", "ct_ipv6_src"), ("ipv6_dst", "ct_ipv6_dst")]
        if v6
        else [("nw_src", "ct_nw_src"), ("nw_dst", "ct_nw_dst")]
    )
    for a, b in pairs:
        s[a], s[b] = s.get(b, 0), s.get(a, 0)


def _simulate_nat(s: State, nat: Nat | None) -> str | None:
    """Like ``ofproto/trace``: NAT to the first address/port of the range."""
    if nat is None:
        return None
    v6 = s.get("dl_type") == 0x86DD
    nw, address = ("ipv6_", IPv6Address) if v6 else ("nw_", IPv4Address)

    def flow_text() -> str:
        if nat.addr_min is None:
            return ""
        return ",".join(
            f"{nw}{end}={address(s.get(nw + end, 0))},tp_{end}={s.get('tp_' + end, 0)}"
            for end in ("src", "dst")
        )

    before = flow_text()
    if nat.addr_min is not None and nat.kind in ("src", "dst"):
        s[nw + nat.kind] = int(ip_address(nat.addr_min))
        if nat.port_min:
            s["tp_src" if nat.kind == "src" else "tp_dst"] = nat.port_min
    return f"Initial flow: {before}\nModified flow: {flow_text()}"
