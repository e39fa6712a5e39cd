"""What a port of the native Open vSwitch firewall lets through: br-int's flows over header space.

Neutron's OVS firewall (``neutron/agent/linux/openvswitch_firewall/firewall.py``, table numbers
in ``neutron/plugins/ml2/drivers/openvswitch/agent/common/constants.py``) keeps a port's
security groups in br-int. Traffic *to* the VM enters table 81 (BASE_INGRESS) with ``reg5`` = the
port's OpenFlow number and ``reg6`` = its conntrack zone, goes through conntrack
(``ct(table=82)``) and is output to the port by table 82's rules. Traffic *from* the VM enters
table 71 (BASE_EGRESS), where the anti-spoofing flows check its MAC and address; table 72 holds
the egress rules, and what they accept goes on to table 73 (ACCEPT_OR_INGRESS), 91 or 94.

Those tables are walked symbolically (``exposure_ovs_walk.py``), as the hybrid firewall's chains
are (``exposure_eval.py``): a set of packets enters, each flow in priority order takes the packets
its match covers (``exposure_ovs_match.py``) and its actions are followed for them. Registers,
VLAN, ``in_port`` and the rest are the walk's concrete state, known from the port (this module:
where a port's packets enter, with what state, and what counts as allowed).

The conntrack dimension is walked state by state: each class state stands for the ``ct_state``
values OVS gives such a packet (ESTABLISHED is ``+trk+est`` in either direction, with or without
``+rpl``); where they lead to different fates the packets are unknown. UNTRACKED packets that
reach a ``ct(table=N)`` are impossible: the firewall sends every IP packet to conntrack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nodetrace.audit.exposure_ovs_walk import FlowWalker, Walk
from nodetrace.model.exposure import CT_STATES, Box, Dim, Direction, Fate, HeaderClass, RuleRef
from nodetrace.model.header_space import HeaderSet, box_and, coalesce
from nodetrace.model.openflow import CT_STATE_BITS, Flow, GotoTable, Resubmit, SetField
from nodetrace.model.ovs_switch import BridgeState
from nodetrace.model.packet import Family

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
        first = Walk(space, start.ingress())
        walks = walker.table(BASE_INGRESS_TABLE, first, 0)
    else:
        walker.accept_tables = ACCEPTED_EGRESS_TABLES
        first = Walk(space, start.egress())
        walks = walker.table(BASE_EGRESS_TABLE, first, 0)
    out = []
    for w in walks:
        fate, reason = _fate(w, start, direction)
        out += [_Piece(b, fate, w.trail, reason) for b in w.space.boxes]
    return out


def _fate(w: Walk, start: PortStart, direction: Direction) -> tuple[Fate, str]:
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
