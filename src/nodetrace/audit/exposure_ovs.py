"""What a port of the native Open vSwitch firewall lets through: br-int's flows over header space.

Neutron's OVS firewall (``neutron/agent/linux/openvswitch_firewall/firewall.py``, table numbers
in ``neutron/plugins/ml2/drivers/openvswitch/agent/common/constants.py``) keeps a port's
security groups in br-int. Traffic *to* the VM enters table 81 (BASE_INGRESS) with ``reg5`` = the
port's OpenFlow number and ``reg6`` = its conntrack zone, goes through conntrack
(``ct(table=82)``) and is output to the port by table 82's rules. Traffic *from* the VM enters
table 71 (BASE_EGRESS), where the anti-spoofing flows check its MAC and address; table 72 holds
the egress rules, and what they accept goes on to table 73 (ACCEPT_OR_INGRESS), 91 or 94.

Those tables are walked symbolically, as the hybrid firewall's chains are (``exposure_eval.py``):
a set of packets enters, each flow in priority order takes the packets its match covers, and
its actions are followed for them (``resubmit``, ``goto_table``, register loads, ``output``,
``ct(table=N)`` recirculation, conjunctions matched as the intersection of their clauses).
Addresses, protocol, ports, ICMP type and code, fragments and the source MAC are the classes'
dimensions; registers, VLAN, ``in_port`` and the rest are the walk's concrete state, known from
the port. A flow that matches a field the walk does not know (the destination MAC of a frame
the VM sends, ``tcp_flags``) makes the packets it would take *unknown*, never allowed or denied.

The conntrack dimension is walked state by state: each class state stands for the ``ct_state``
values OVS gives such a packet (ESTABLISHED is ``+trk+est`` in either direction, with or without
``+rpl``); where they lead to different fates the packets are unknown. UNTRACKED packets that
reach a ``ct(table=N)`` are impossible: the firewall sends every IP packet to conntrack.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from nodetrace.model.exposure import (
    CT_STATES,
    Box,
    Dim,
    Direction,
    Fate,
    HeaderClass,
    Intervals,
    RuleRef,
)
from nodetrace.model.header_space import HeaderSet, box_and, coalesce, iv_and, iv_normal, with_dim
from nodetrace.model.openflow import (
    CT_STATE_BITS,
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
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Family

BASE_EGRESS_TABLE = 71
BASE_INGRESS_TABLE = 81
ACCEPTED_EGRESS_TABLES = frozenset({73, 91, 94})
"""ACCEPT_OR_INGRESS, ACCEPTED_EGRESS_TRAFFIC and ACCEPTED_EGRESS_TRAFFIC_NORMAL: a packet that
reaches one of them has passed the port's egress filter."""

_TRK, _NEW, _EST = CT_STATE_BITS["trk"], CT_STATE_BITS["new"], CT_STATE_BITS["est"]
_REL, _RPL, _INV = CT_STATE_BITS["rel"], CT_STATE_BITS["rpl"], CT_STATE_BITS["inv"]
CT_PATTERNS: dict[str, tuple[int, ...]] = {
    "NEW": (_TRK | _NEW,),
    "ESTABLISHED": (_TRK | _EST, _TRK | _EST | _RPL),
    "RELATED": (_TRK | _REL, _TRK | _REL | _RPL),
    "INVALID": (_TRK | _INV,),
    "UNTRACKED": (),
}
"""The ``ct_state`` values conntrack gives a packet of each class state (the kernel's mapping:
a related packet is ``+rel``, in either direction)."""

ASSUMPTIONS = (
    "conntrack states as OVS gives them: NEW is +trk+new, ESTABLISHED +trk+est and RELATED "
    "+trk+rel (either direction, with or without +rpl), INVALID +trk+inv",
    "the connection carries no ct_mark (Neutron marks a connection 0x1 when a rule that "
    "allowed it is removed; such packets are dropped)",
)

_DIM_FIELDS: dict[Family, dict[str, tuple[int, int]]] = {
    Family.IPV4: {"nw_src": (Dim.SRC, 32), "nw_dst": (Dim.DST, 32)},
    Family.IPV6: {"ipv6_src": (Dim.SRC, 128), "ipv6_dst": (Dim.DST, 128)},
}
_SHARED_DIMS = {
    "nw_proto": (Dim.PROTO, 8),
    "tp_src": (Dim.L4A, 16),
    "tp_dst": (Dim.L4B, 16),
    "dl_src": (Dim.MAC, 48),
}
_HEADER_FIELDS = frozenset(
    {"nw_src", "nw_dst", "ipv6_src", "ipv6_dst", "nw_proto", "tp_src", "tp_dst", "dl_src",
     "nw_frag", "dl_type"}
)  # fmt: skip
"""Storage fields that are (or select) the classes' dimensions: a flow rewriting one changes
what the later flows see in a way the walk does not follow."""

_FRAG_VALUES = ((0, 1), (3,))
"""``nw_frag`` bits (1: a fragment, 2: a later one) of each FRAG dimension value: 0 is an
unfragmented packet or a first fragment, 1 a later fragment."""

UNTRACKED_WHY = "untracked: the firewall sends every IP packet to conntrack"
FRAGMENT_WHY = "a later fragment: conntrack reassembles fragments, so none leaves ct() alone"

_ENUMERATION_LIMIT = 4096
"""A masked value with more separate runs than this is not turned into intervals (unknown)."""


def masked_intervals(value: int, mask: int, width: int) -> Intervals | None:
    """The integers ``x`` of ``width`` bits with ``x & mask == value``, as intervals; ``None``
    when the mask leaves too many separate runs to list."""
    full = (1 << width) - 1
    mask &= full
    if mask == 0:
        return ((0, full),)
    low = mask & -mask
    free = full & ~mask & ~(low - 1)
    bits = [1 << i for i in range(width) if free >> i & 1]
    if 1 << len(bits) > _ENUMERATION_LIMIT:
        return None
    runs = []
    for combo in range(1 << len(bits)):
        start = value & mask
        for i, bit in enumerate(bits):
            if combo >> i & 1:
                start |= bit
        runs.append((start, start + low - 1))
    return iv_normal(runs)


# --- one flow's match, for one family --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Match:
    """A flow's match split into what it asks of the classes' dimensions and of the walk's
    concrete state."""

    sure: tuple[Box, ...]
    """Packets the header part of the match takes (if the concrete part holds)."""
    maybe: tuple[Box, ...]
    """Packets whose fragment bits the match tells apart more finely than the classes do."""
    concrete: tuple[tuple[str, int, int], ...]
    """``(storage field, value, mask)`` the walk's state must satisfy."""
    unreadable: str = ""
    """Why the match cannot be evaluated at all (a term nodetrace does not model)."""


def _compile(flow: Flow, family: Family, universe: Box) -> _Match | None:
    """``None`` when the flow never matches a packet of ``family``."""
    box = list(universe)
    layer4: dict[int, Intervals] = {}
    concrete: list[tuple[str, int, int]] = []
    frag: tuple[int, int] | None = None
    ethertype = ETH_TYPE_IPV4 if family is Family.IPV4 else ETH_TYPE_IPV6
    dims = _DIM_FIELDS[family] | _SHARED_DIMS
    for m in flow.matches:
        if m.field == "dl_type":
            if ethertype & m.mask != m.value:
                return None
        elif m.field in dims:
            dim, width = dims[m.field]
            ivs = masked_intervals(m.value, m.mask, width)
            if ivs is None:
                return _Match((), (), (), f"{m.field} mask {m.mask:#x} is too fragmented")
            if dim in (Dim.L4A, Dim.L4B):
                layer4[dim] = ivs
            else:
                box[dim] = iv_and(box[dim], ivs)
                if not box[dim]:
                    return None
        elif m.field in ("nw_src", "nw_dst", "ipv6_src", "ipv6_dst"):
            if m.value != 0:  # the other family's addresses read as zero
                return None
        elif m.field == "nw_frag":
            frag = (m.value, m.mask)
        else:
            concrete.append((m.field, m.value, m.mask))
    # A later fragment carries no layer-4 header: OVS reads its ports (ICMP type, code) as 0.
    whole = tuple(box)
    for dim, ivs in layer4.items():
        whole = with_dim(whole, dim, iv_and(whole[dim], ivs))
    later_fits = all(iv_and(ivs, ((0, 0),)) for ivs in layer4.values())
    per_frag = {0: whole if all(whole[d] for d in layer4) else None}
    per_frag[1] = tuple(box) if later_fits else None
    sure: list[Box] = []
    maybe: list[Box] = []
    for value, how in _frag_split(frag).items():
        b = per_frag[value]
        if b is not None and how is not None:
            (sure if how else maybe).append(with_dim(b, Dim.FRAG, ((value, value),)))
    if not sure and not maybe:
        return None
    unreadable = f"match term {flow.unsupported[0]!r} is not modelled" if flow.unsupported else ""
    return _Match(tuple(sure), tuple(maybe), tuple(concrete), unreadable)


def _frag_split(frag: tuple[int, int] | None) -> dict[int, bool | None]:
    """For each FRAG value, whether the ``nw_frag`` match takes it: True (wholly), False (in
    part: it tells first fragments from unfragmented packets) or None (not at all)."""
    out: dict[int, bool | None] = {}
    for dim_value, patterns in enumerate(_FRAG_VALUES):
        if frag is None:
            out[dim_value] = True
            continue
        value, mask = frag
        hits = sum((p & mask) == value for p in patterns)
        out[dim_value] = True if hits == len(patterns) else (False if hits else None)
    return out


# --- the walk --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Walk:
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
        self._compiled: dict[int, _Match | None] = {}
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

    def _match(self, flow: Flow) -> _Match | None:
        key = id(flow)
        if key not in self._compiled:
            self._compiled[key] = _compile(flow, self.family, self.universe)
        return self._compiled[key]

    def _concrete(self, flow: Flow, m: _Match, state: Mapping[str, int]) -> bool | str:
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

    def table(self, table: int, walk: _Walk, depth: int) -> list[_Walk]:
        if depth > MAX_DEPTH:
            return [replace(walk, stop="resubmits nest deeper than OVS allows")]
        remaining = walk.space
        out: list[_Walk] = []
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

    def actions(
        self, actions: Sequence[Action], walk: _Walk, table: int, depth: int
    ) -> list[_Walk]:
        walks = [walk]
        for action in actions:
            nxt: list[_Walk] = []
            for w in walks:
                if w.stop or w.impossible:
                    nxt.append(w)
                else:
                    nxt += self._action(action, w, table, depth)
            walks = nxt
            if isinstance(action, GotoTable):
                break
        return walks

    def _action(self, a: Action, w: _Walk, table: int, depth: int) -> list[_Walk]:
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

    def _goto(self, target: int, w: _Walk, depth: int) -> list[_Walk]:
        if target in self.accept_tables:
            return [replace(w, sinks=w.sinks | {f"accepted:{target}"})]
        return self.table(target, w, depth + 1)

    def _ct(self, a: Ct, w: _Walk, depth: int) -> list[_Walk]:
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
            if storage in _HEADER_FIELDS or storage not in state:
                return None
            value |= ((state[storage] >> bit) & ((1 << width) - 1)) << vbit
        return value

    @staticmethod
    def _write(
        w: _Walk, text: str, name: str, start: int, width: int | None, value: int, mask: int | None
    ) -> _Walk:
        segments = field_segments(name, start, width)
        if segments is None:
            return replace(w, stop=f"{text}: field {name} is not modelled")
        state = dict(w.state)
        for storage, bit, seg_width, vbit in segments:
            if storage in _HEADER_FIELDS:
                return replace(w, stop=f"{text} rewrites a header the classes are made of")
            part = ((1 << seg_width) - 1) << vbit
            if mask is not None:
                part &= mask
            bits = (part >> vbit) << bit
            state[storage] = (state.get(storage, 0) & ~bits) | (((value & part) >> vbit) << bit)
        return replace(w, state=state)


# --- a port ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortStart:
    """Where a native-firewall port's packets enter br-int's firewall tables, and the state the
    flows see there."""

    ofport: int
    zone: int | None
    mac: int | None
    notes: tuple[str, ...] = ()

    def ingress(self) -> dict[str, int]:
        state = {**_ZEROS, "reg5": self.ofport, "vlan_tci": 0}
        if self.zone is not None:
            state["reg6"] = self.zone
        if self.mac is not None:
            state["dl_dst"] = self.mac
        return state

    def egress(self) -> dict[str, int]:
        """The VM sends untagged frames to destinations the walk does not fix (no dl_dst)."""
        state = {**self.ingress(), "in_port": self.ofport}
        state.pop("dl_dst", None)
        return state


_ZEROS = {
    **{f"reg{i}": 0 for i in range(16)},
    "metadata": 0, "conj_id": 0, "ct_state": 0, "ct_zone": 0, "ct_mark": 0, "ct_label": 0,
    "pkt_mark": 0, "tun_id": 0, "recirc_id": 0,
}  # fmt: skip
"""Pipeline fields as a packet from a VM port starts with them."""


def port_start(bridge: BridgeState, ofport: int, zone: int | None, mac: str | None) -> PortStart:
    """The port's registers as br-int's flows load them: the flow that sets ``reg5`` to the
    port's number and resubmits to table 81 also loads its zone into ``reg6``."""
    notes: list[str] = []
    found: int | None = None
    for flow in bridge.flows.flows if bridge.flows is not None else ():
        loads = {a.field: a.value for a in flow.actions if isinstance(a, SetField)}
        goes = {a.table for a in flow.actions if isinstance(a, (Resubmit, GotoTable))}
        if loads.get("reg5") == ofport and BASE_INGRESS_TABLE in goes and "reg6" in loads:
            found = loads["reg6"]
            break
    if found is None and zone is not None:
        found = zone
        notes.append(f"reg6 (the port's conntrack zone) taken as {zone}, the port's zone")
    elif found is None:
        notes.append("no flow loads the port's conntrack zone into reg6: flows matching reg6 "
                     "make their packets unknown")  # fmt: skip
    mac_int = int(mac.replace(":", ""), 16) if mac else None
    if mac_int is None:
        notes.append("the port's MAC is not known: flows matching dl_dst make packets unknown")
    return PortStart(ofport, found, mac_int, tuple(notes))


@dataclass(frozen=True, slots=True)
class _Piece:
    box: Box
    fate: Fate
    trail: tuple[Flow, ...]
    reason: str


def walk_direction(
    walker: FlowWalker, start: PortStart, direction: Direction, space: HeaderSet
) -> list[_Piece]:
    """The fate of every packet of ``space`` (its boxes hold one conntrack state each) in
    ``direction``."""
    pieces: list[_Piece] = []
    for ct_index, ct_name in enumerate(CT_STATES):
        part = space.restrict(Dim.CT, ((ct_index, ct_index),))
        if not part:
            continue
        patterns: Sequence[int | None] = CT_PATTERNS[ct_name] or (None,)
        merged: list[_Piece] | None = None
        for bits in patterns:
            walker.ct_bits = bits
            got = _run(walker, start, direction, part)
            merged = got if merged is None else _agree(merged, got, ct_name)
        pieces += merged or []
    return pieces


def _run(
    walker: FlowWalker, start: PortStart, direction: Direction, space: HeaderSet
) -> list[_Piece]:
    if direction is Direction.INBOUND:
        walker.accept_tables = frozenset()
        first = _Walk(space, start.ingress())
        walks = walker.table(BASE_INGRESS_TABLE, first, 0)
    else:
        walker.accept_tables = ACCEPTED_EGRESS_TABLES
        first = _Walk(space, start.egress())
        walks = walker.table(BASE_EGRESS_TABLE, first, 0)
    out = []
    for w in walks:
        fate, reason = _fate(w, start, direction)
        out += [_Piece(b, fate, w.trail, reason) for b in w.space.boxes]
    return out


def _fate(w: _Walk, start: PortStart, direction: Direction) -> tuple[Fate, str]:
    if direction is Direction.INBOUND and f"output:{start.ofport}" in w.sinks:
        return Fate.ALLOWED, ""
    if direction is Direction.OUTBOUND and any(s.startswith("accepted:") for s in w.sinks):
        return Fate.ALLOWED, ""
    if w.impossible:
        return Fate.IMPOSSIBLE, w.impossible
    if w.stop:
        return Fate.UNKNOWN, w.stop
    return Fate.DENIED, w.last


def _agree(a: list[_Piece], b: list[_Piece], ct_name: str) -> list[_Piece]:
    """Pieces of both walks of one class state: where the ``ct_state`` values it stands for
    lead to different fates, unknown."""
    out = []
    for x in a:
        for y in b:
            box = box_and(x.box, y.box)
            if box is None:
                continue
            if x.fate is y.fate:
                out.append(_Piece(box, x.fate, x.trail, x.reason))
            else:
                why = (
                    f"{ct_name.lower()}: {x.fate.value} in the connection's original direction "
                    f"(ct_state -rpl), {y.fate.value} as a reply (+rpl)"
                )
                out.append(_Piece(box, Fate.UNKNOWN, x.trail, why))
    return out


def flow_ref(bridge: str, flow: Flow) -> RuleRef:
    """A flow as the classes cite it: bridge, table, priority, text and where it was read."""
    match = f"priority={flow.priority}" + (f",{flow.match_text}" if flow.match_text else "")
    source = f"{flow.span.file}:{flow.span.first_line}" if flow.span is not None else ""
    return RuleRef(
        bridge, f"table {flow.table}", flow.priority, f"{match} actions={flow.actions_text}",
        source, kind="flow",
    )  # fmt: skip


def classes_of(bridge: str, family: Family, pieces: Sequence[_Piece]) -> list[HeaderClass]:
    """Pieces grouped by fate, flows and reason, each group's boxes merged where they can be."""
    groups: dict[tuple[Fate, tuple[int, ...], str], list[Box]] = {}
    trails: dict[tuple[int, ...], tuple[Flow, ...]] = {}
    for p in pieces:
        key = tuple(id(f) for f in p.trail)
        trails[key] = p.trail
        groups.setdefault((p.fate, key, p.reason), []).append(p.box)
    out: list[HeaderClass] = []
    for (fate, key, reason), boxes in groups.items():
        refs = tuple(flow_ref(bridge, f) for f in trails[key])
        out.extend(HeaderClass(family, b, fate, refs, reason) for b in coalesce(boxes))
    return out


def direction_path(bridge: str, start: PortStart, direction: Direction) -> str:
    if direction is Direction.INBOUND:
        return f"{bridge} table {BASE_INGRESS_TABLE} (reg5={start.ofport}) -> output:{start.ofport}"
    accepted = ", ".join(str(t) for t in sorted(ACCEPTED_EGRESS_TABLES))
    return f"{bridge} table {BASE_EGRESS_TABLE} from in_port {start.ofport} -> tables {accepted}"


def no_host_path(family: Family, universe: Box) -> HeaderClass:
    return HeaderClass(
        family,
        universe,
        Fate.UNKNOWN,
        (),
        "the native firewall has no path of its own to the node: a VM's frames reach the "
        "node's stack only through br-int, after the egress flows (the outbound classes)",
    )


def family_classes(
    walker: FlowWalker, start: PortStart, direction: Direction, space: HeaderSet
) -> list[HeaderClass]:
    """One direction's classes of the walker's family."""
    pieces = walk_direction(walker, start, direction, space)
    return classes_of(walker.bridge.name, walker.family, pieces)
