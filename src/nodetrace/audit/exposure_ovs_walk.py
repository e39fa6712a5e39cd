"""br-int's flows walked over sets of packets: the engine of the native firewall's exposure.

A set of packets enters a table; each flow in priority order takes the packets its match covers
(``exposure_ovs_match.py``) when the walk's concrete state (registers, VLAN, ``in_port``,
``ct_state`` ...) satisfies the rest of its match, and its actions are followed for them:
``resubmit``, ``goto_table``, register loads and moves, VLAN changes, ``output``, ``clone``, and
``ct(table=N)``, which recirculates with the conntrack state the walker is set to (the original
packet goes on untracked). Conjunctions (``conjunction(N,k/n)`` flows and the ``conj_id=N`` flow)
take the intersection of their clauses, at their clauses' priority. What the walk cannot follow
(a field it does not know, a header rewrite, an unmodelled action, a table miss in a cut dump)
stops it with the reason: those packets are unknown, never allowed or denied.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from nodetrace.audit.exposure_ovs_match import HEADER_FIELDS, FlowMatch, compile_match
from nodetrace.model.exposure import Box, Dim
from nodetrace.model.header_space import HeaderSet
from nodetrace.model.openflow import (
    MAX_DEPTH,
    Action,
    Clone,
    Conjunction,
    Controller,
    Ct,
    CtClear,
    DecTtl,
    Drop,
    Enqueue,
    Flow,
    GotoTable,
    Learn,
    LegacySet,
    Meter,
    ModField,
    Move,
    NoEffect,
    Note,
    Output,
    OutputField,
    PopVlan,
    PortName,
    PortNumber,
    PortRef,
    PushVlan,
    Reserved,
    ReservedPort,
    Resubmit,
    SetField,
    SetTunnel,
    SetVlan,
    SubField,
    VlanOp,
    WriteMetadata,
    field_segments,
)
from nodetrace.model.ovs_switch import BridgeState
from nodetrace.model.packet import Family

UNTRACKED_WHY = "untracked: the firewall sends every IP packet to conntrack"
FRAGMENT_WHY = "a later fragment: conntrack reassembles fragments, so none leaves ct() alone"


@dataclass(frozen=True, slots=True)
class Walk:
    """Packets on their way through the tables, and what happened to them so far."""

    space: HeaderSet
    state: Mapping[str, int]
    trail: tuple[Flow, ...] = ()
    sinks: frozenset[str] = frozenset()
    """``output:N``, ``accepted:T``, ``normal``, ``controller``."""
    stop: str = ""
    """Why the walk could not be followed further (the packets are unknown)."""
    impossible: str = ""
    """Why no packet of the walk can be here (set when it cannot)."""
    last: str = ""
    """What ended the walk without an output, when no flow says it (a table miss)."""


_Keyed = tuple[int, int, Flow]
"""A flow with its sort key: (-priority, dump order)."""


@dataclass
class _TableIndex:
    """One table's flows, sorted by priority then dump order, split by the register value
    they require (``reg5`` first, else ``reg6``) so a walk with known registers skips the rest."""

    by_reg5: dict[int, list[_Keyed]] = field(default_factory=dict)
    by_reg6: dict[int, list[_Keyed]] = field(default_factory=dict)
    rest: list[_Keyed] = field(default_factory=list)

    def add(self, keyed: _Keyed) -> None:
        exact = {m.field: m.value for m in keyed[2].matches if m.mask == 0xFFFFFFFF}
        if "reg5" in exact:
            self.by_reg5.setdefault(exact["reg5"], []).append(keyed)
        elif "reg6" in exact:
            self.by_reg6.setdefault(exact["reg6"], []).append(keyed)
        else:
            self.rest.append(keyed)


@dataclass
class _Conj:
    priority: int
    order: int
    clauses: dict[int, list[Flow]] = field(default_factory=dict)
    n_clauses: int = 0


class FlowWalker:
    """br-int's flows of one family, indexed once; walks any number of ports' packets."""

    def __init__(self, bridge: BridgeState, family: Family, universe: Box) -> None:
        self.bridge = bridge
        self.family = family
        self.universe = universe
        dump = bridge.flows
        self.complete = dump.complete if dump is not None else False
        self.numbers = {p.name: p.ofport for p in bridge.ports if p.ofport is not None}
        self._compiled: dict[int, FlowMatch | None] = {}
        # Neutron's firewall flows name the port (reg5) or its zone (reg6): indexed on those,
        # a port's walk looks at its own flows and the shared ones, not every port's.
        self._tables: dict[int, _TableIndex] = {}
        for order, flow in enumerate(dump.flows if dump is not None else ()):
            index = self._tables.setdefault(flow.table, _TableIndex())
            index.add((-flow.priority, order, flow))
        self._conjunctions: dict[int, tuple[Conjunction, ...]] = {}
        self.ct_bits: int | None = None
        self.accept_tables: frozenset[int] = frozenset()

    # - matching -

    def _match(self, flow: Flow) -> FlowMatch | None:
        key = id(flow)
        if key not in self._compiled:
            self._compiled[key] = compile_match(flow, self.family, self.universe)
        return self._compiled[key]

    def _concrete(self, flow: Flow, m: FlowMatch, state: Mapping[str, int]) -> bool | str:
        """True/False, or the reason the state cannot tell."""
        if m.unreadable:
            return m.unreadable
        if flow.in_port is not None:
            number = self._port_number(flow.in_port)
            if number is None:
                return f"in_port {flow.in_port} is not a port of {self.bridge.name}"
            if "in_port" not in state:
                return "matches in_port, which this walk does not fix"
            if state["in_port"] != number:
                return False
        for name, value, mask in m.concrete:
            if name not in state:
                return f"matches {name}, which this walk does not know"
            if state[name] & mask != value:
                return False
        return True

    def _port_number(self, ref: PortRef) -> int | None:
        match ref:
            case PortNumber(number=n):
                return n
            case PortName(name=name):
                return self.numbers.get(name)
            case Reserved():
                return None

    def _candidates(self, table: int, state: Mapping[str, int]) -> Iterator[Flow]:
        index = self._tables.get(table)
        if index is None:
            return
        lists = [index.rest]
        for register, keyed in (("reg5", index.by_reg5), ("reg6", index.by_reg6)):
            if register in state:
                lists.append(keyed.get(state[register], []))
            else:
                lists.extend(keyed.values())
        for _, _, flow in heapq.merge(*lists, key=lambda k: k[:2]):
            yield flow

    def _clauses(self, flow: Flow) -> tuple[Conjunction, ...]:
        key = id(flow)
        if key not in self._conjunctions:
            self._conjunctions[key] = flow.conjunctions
        return self._conjunctions[key]

    # - tables -

    def table(self, table: int, walk: Walk, depth: int) -> list[Walk]:
        if depth > MAX_DEPTH:
            return [replace(walk, stop="resubmits nest deeper than OVS allows")]
        remaining = walk.space
        out: list[Walk] = []
        entries = list(self._entries(table, walk.state))
        for flow, sure, maybe, why, actions in entries:
            if not remaining:
                break
            if maybe:
                taken, remaining = remaining.split(maybe)
                if taken:
                    out.append(replace(walk, space=taken, trail=(*walk.trail, flow), stop=why))
            if sure:
                taken, remaining = remaining.split(sure)
                if taken:
                    step = replace(walk, space=taken, trail=(*walk.trail, flow))
                    out += self.actions(actions, step, table, depth)
        if remaining:
            if not self.complete:
                out.append(
                    replace(
                        walk,
                        space=remaining,
                        stop=f"no flow of table {table} in the dump matches, and the dump is "
                        "incomplete",
                    )
                )
            else:
                out.append(
                    replace(walk, space=remaining, last=f"table {table}: no flow matches (dropped)")
                )
        return out

    def _entries(
        self, table: int, state: Mapping[str, int]
    ) -> Iterator[tuple[Flow, tuple[Box, ...], tuple[Box, ...], str, tuple[Action, ...]]]:
        """``(flow, sure region, unknown region, why unknown, actions)`` in priority order;
        a conjunction appears at its clauses' priority, as its ``conj_id`` flow."""
        conjs: dict[int, _Conj] = {}
        plain: list[tuple[int, int, Flow]] = []
        for order, flow in enumerate(self._candidates(table, state)):
            clauses = self._clauses(flow)
            if not clauses:
                plain.append((-flow.priority, order, flow))
                continue
            for c in clauses:
                conj = conjs.setdefault(c.id, _Conj(flow.priority, order))
                conj.n_clauses = c.n_clauses
                conj.clauses.setdefault(c.clause, []).append(flow)
        virtual = [(-c.priority, c.order, cid) for cid, c in conjs.items()]
        items: list[tuple[int, int, Flow | int]] = [*plain, *virtual]
        items.sort(key=lambda k: k[:2])
        for _, _, item in items:
            if isinstance(item, Flow):
                entry = self._plain(item, state)
                if entry is not None:
                    yield entry
            else:
                yield from self._conjunction(table, item, conjs[item], state)

    def _plain(
        self, flow: Flow, state: Mapping[str, int]
    ) -> tuple[Flow, tuple[Box, ...], tuple[Box, ...], str, tuple[Action, ...]] | None:
        m = self._match(flow)
        if m is None:
            return None
        ok = self._concrete(flow, m, state)
        if ok is False:
            return None
        if ok is not True:
            return flow, (), (*m.sure, *m.maybe), str(ok), flow.actions
        why = "nw_frag tells first fragments from unfragmented packets" if m.maybe else ""
        return flow, m.sure, m.maybe, why, flow.actions

    def _conjunction(
        self, table: int, cid: int, conj: _Conj, state: Mapping[str, int]
    ) -> Iterator[tuple[Flow, tuple[Box, ...], tuple[Box, ...], str, tuple[Action, ...]]]:
        sure = HeaderSet([self.universe])
        reach = HeaderSet([self.universe])
        for k in range(1, conj.n_clauses + 1):
            clause_sure: list[Box] = []
            clause_reach: list[Box] = []
            for flow in conj.clauses.get(k, []):
                entry = self._plain(flow, state)
                if entry is None:
                    continue
                _, flow_sure, flow_maybe, _, _ = entry
                clause_sure += flow_sure
                clause_reach += (*flow_sure, *flow_maybe)
            sure = sure.intersect(clause_sure)
            reach = reach.intersect(clause_reach)
        if not reach:
            return
        with_id = {**state, "conj_id": cid}
        target = next(
            (
                f
                for f in self._candidates(table, with_id)
                if any(m.field == "conj_id" for m in f.matches)
                and self._plain(f, with_id) is not None
            ),
            None,
        )
        if target is None:
            anchor = conj.clauses[min(conj.clauses)][0]
            why = f"conjunction {cid} completes but no flow of table {table} matches conj_id={cid}"
            yield anchor, (), tuple(reach.boxes), why, ()
            return
        entry = self._plain(target, with_id)
        assert entry is not None
        _, t_sure, t_maybe, t_why, actions = entry
        inside = sure.intersect(t_sure)
        unsure = reach.intersect([*t_sure, *t_maybe]).subtract(inside.boxes)
        why = t_why or "a clause of the conjunction cannot be evaluated"
        yield target, tuple(inside.boxes), tuple(unsure.boxes), why, actions

    # - actions -

    def actions(self, actions: Sequence[Action], walk: Walk, table: int, depth: int) -> list[Walk]:
        walks = [walk]
        for action in actions:
            nxt: list[Walk] = []
            for w in walks:
                if w.stop or w.impossible:
                    nxt.append(w)
                else:
                    nxt += self._action(action, w, table, depth)
            walks = nxt
            if isinstance(action, GotoTable):
                break
        return walks

    def _action(self, a: Action, w: Walk, table: int, depth: int) -> list[Walk]:
        match a:
            case Output(port=port) | Enqueue(port=port):
                return [replace(w, sinks=w.sinks | {self._sink(port, w.state)})]
            case OutputField(src=src):
                value = self._read(src, w.state)
                if value is None:
                    return [replace(w, stop=f"{a.text}: the register's value is not known")]
                return [replace(w, sinks=w.sinks | {f"output:{value}"})]
            case Resubmit(port=port, table=target, ct_orig=ct_orig):
                if ct_orig:
                    return [replace(w, stop=f"{a.text}: the original direction is not followed")]
                state = w.state
                if port is not None:
                    number = self._port_number(port)
                    if number is None:
                        return [replace(w, stop=f"{a.text}: port not known")]
                    state = {**state, "in_port": number}
                return self._goto(
                    target if target is not None else table, replace(w, state=state), depth
                )
            case GotoTable(table=target):
                return self._goto(target, w, depth)
            case Ct():
                return self._ct(a, w, depth)
            case SetField(field=name, value=value, mask=mask):
                return [self._write(w, a.text, name, 0, None, value, mask)]
            case Move(src=src, dst=dst):
                value = self._read(src, w.state)
                if value is None:
                    return [replace(w, stop=f"{a.text}: moves a value the walk does not know")]
                return [self._write(w, a.text, dst.field, dst.start, dst.width, value, None)]
            case ModField(kind=kind, value=value):
                if kind is LegacySet.DL_DST:
                    return [replace(w, state={**w.state, "dl_dst": value})]
                if kind in (LegacySet.NW_TOS, LegacySet.NW_ECN, LegacySet.NW_TTL):
                    return [w]
                return [replace(w, stop=f"{a.text} rewrites a header the classes are made of")]
            case SetVlan(op=op, value=value):
                tci = w.state.get("vlan_tci", 0)
                if op in (VlanOp.MOD_VID, VlanOp.SET_VID):
                    tci = (tci & 0xE000) | 0x1000 | (value & 0xFFF)
                else:
                    tci = (tci & 0x1FFF) | 0x1000 | ((value & 7) << 13)
                return [replace(w, state={**w.state, "vlan_tci": tci})]
            case PopVlan():
                return [replace(w, state={**w.state, "vlan_tci": 0})]
            case PushVlan():
                return [replace(w, state={**w.state, "vlan_tci": 0x1000})]
            case CtClear():
                return [replace(w, state={**w.state, "ct_state": 0})]
            case SetTunnel(tun_id=tun_id):
                return [replace(w, state={**w.state, "tun_id": tun_id})]
            case WriteMetadata(value=value, mask=mask):
                old = w.state.get("metadata", 0)
                return [replace(w, state={**w.state, "metadata": (old & ~mask) | (value & mask)})]
            case Clone(actions=inner):
                done = self.actions(inner, w, table, depth)
                return [replace(w, space=d.space, sinks=d.sinks, trail=d.trail, stop=d.stop)
                        for d in done]  # fmt: skip
            case Controller():
                return [replace(w, sinks=w.sinks | {"controller"})]
            case Drop() | Note() | NoEffect() | Learn() | Meter() | DecTtl() | Conjunction():
                return [w]
            case _:
                return [replace(w, stop=f"action {a.text!r} is not evaluated")]

    def _goto(self, target: int, w: Walk, depth: int) -> list[Walk]:
        if target in self.accept_tables:
            return [replace(w, sinks=w.sinks | {f"accepted:{target}"})]
        return self.table(target, w, depth + 1)

    def _ct(self, a: Ct, w: Walk, depth: int) -> list[Walk]:
        if a.nat is not None:
            return [replace(w, stop=f"{a.text}: NAT rewrites the addresses")]
        if a.table is None:
            return [w]  # a commit: it changes later packets, not this one
        if self.ct_bits is None:
            return [replace(w, impossible=UNTRACKED_WHY)]
        later, whole = w.space.split_dim(Dim.FRAG, ((1, 1),))
        out = [replace(w, space=later, impossible=FRAGMENT_WHY)] if later else []
        if not whole:
            return out
        zone = self._read(a.zone_field, w.state) if a.zone_field is not None else a.zone
        state = {**w.state, "ct_state": self.ct_bits, "ct_zone": zone or 0}
        passes = self.table(a.table, replace(w, space=whole, state=state), depth + 1)
        # The original packet goes on untracked with the rest of the actions: the same space,
        # split as the recirculated copy's fates split it.
        return out + [
            replace(w, space=p.space, trail=p.trail, sinks=w.sinks | p.sinks, stop=p.stop,
                    impossible=p.impossible, last=p.last)
            for p in passes
        ]  # fmt: skip

    def _sink(self, port: PortRef, state: Mapping[str, int]) -> str:
        match port:
            case Reserved(port=ReservedPort.NORMAL):
                return "normal"
            case Reserved(port=ReservedPort.IN_PORT):
                return f"output:{state.get('in_port', 'IN_PORT')}"
            case Reserved(port=reserved):
                return f"output:{reserved.value}"
            case _:
                number = self._port_number(port)
                return f"output:{number if number is not None else port}"

    @staticmethod
    def _read(src: SubField | None, state: Mapping[str, int]) -> int | None:
        if src is None:
            return None
        segments = field_segments(src.field, src.start, src.width)
        if segments is None:
            return None
        value = 0
        for storage, bit, width, vbit in segments:
            if storage in HEADER_FIELDS or storage not in state:
                return None
            value |= ((state[storage] >> bit) & ((1 << width) - 1)) << vbit
        return value

    @staticmethod
    def _write(
        w: Walk, text: str, name: str, start: int, width: int | None, value: int, mask: int | None
    ) -> Walk:
        segments = field_segments(name, start, width)
        if segments is None:
            return replace(w, stop=f"{text}: field {name} is not modelled")
        state = dict(w.state)
        for storage, bit, seg_width, vbit in segments:
            if storage in HEADER_FIELDS:
                return replace(w, stop=f"{text} rewrites a header the classes are made of")
            part = ((1 << seg_width) - 1) << vbit
            if mask is not None:
                part &= mask
            bits = (part >> vbit) << bit
            state[storage] = (state.get(storage, 0) & ~bits) | (((value & part) >> vbit) << bit)
        return replace(w, state=state)
