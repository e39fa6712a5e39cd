"""A native-firewall port's exposure classes checked against the OpenFlow engine, packet by
packet.

As ``exposure_check.py`` does for the hybrid firewall: a packet drawn inside a class (or
anywhere) must lie in exactly one class; the OpenFlow engine (``engine/openflow.py``, which
evaluates flows one packet at a time, conjunctions and conntrack recirculations included)
then traces it with a ``ct_state`` the class's state stands for. Inbound, the trace starts
where the symbolic walk does (table 81, the port's registers loaded) and the packet must be
output to the port exactly when the class is allowed; outbound it starts at the port itself
in table 0, so the registers the walk derived are checked too, and the packet must reach an
accepted-egress table exactly when the class is allowed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from nodetrace.audit.exposure_ovs import (
    ACCEPTED_EGRESS_TABLES,
    BASE_INGRESS_TABLE,
    CT_PATTERNS,
    PortStart,
)
from nodetrace.audit.exposure_points import packet_of
from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.model.exposure import BASE_DIMS, Direction, Fate, HeaderClass
from nodetrace.model.header_space import box_contains
from nodetrace.model.openflow_trace import OpenFlowTrace
from nodetrace.model.packet import Family
from nodetrace.model.trace import OpenFlowStep, Outcome

UNDECIDED = "the engine cannot tell"


def _mac_text(mac: int) -> str:
    return ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -1, -8))


def check_ovs_point(
    engine: OpenFlowEngine,
    bridge: str,
    start: PortStart,
    direction: Direction,
    family: Family,
    classes: Sequence[HeaderClass],
    point: tuple[int, ...],
    rng: random.Random,
) -> str | None:
    """``None`` when the class holding ``point`` and the engine agree (or the class is not
    compared: unknown, impossible); :data:`UNDECIDED` when the engine cannot tell (an
    incomplete dump); else the disagreement, said."""
    holding = [c for c in classes if box_contains(c.box, point)]
    if len(holding) != 1:
        return f"{family.value} point {point}: in {len(holding)} classes"
    cls = holding[0]
    if cls.fate not in (Fate.ALLOWED, Fate.DENIED) or len(point) != BASE_DIMS:
        return None
    packet, state = packet_of(family, point, rng)
    patterns = CT_PATTERNS[state.value]
    ct_states = [rng.choice(patterns)] if patterns else []
    if direction is Direction.INBOUND:
        if start.mac is not None:
            packet = replace(packet, dl_dst=_mac_text(start.mac))
        metadata = [("reg5", hex(start.ofport))]
        if start.zone is not None:
            metadata.append(("reg6", hex(start.zone)))
        trace = engine.trace(
            bridge, "LOCAL", packet, metadata, ct_states=ct_states, start_table=BASE_INGRESS_TABLE
        )
        allowed = any(e.ofport == start.ofport for e in trace.egress)
    else:
        trace = engine.trace(bridge, start.ofport, packet, ct_states=ct_states)
        allowed = _accepted(trace)
    if trace.outcome is Outcome.UNKNOWN and not allowed:
        return UNDECIDED
    if allowed is (cls.fate is Fate.ALLOWED):
        return None
    return (
        f"{direction.value} {packet.flow_text()} ct_state={ct_states}: class {cls.fate.value}, "
        f"engine {'allowed' if allowed else 'denied'} ({trace.verdict})"
    )


def _accepted(trace: OpenFlowTrace) -> bool:
    return any(
        isinstance(s, OpenFlowStep) and s.table in ACCEPTED_EGRESS_TABLES for s in trace.steps
    )
