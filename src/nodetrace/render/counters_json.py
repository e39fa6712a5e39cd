"""JSON documents of ``nodetrace live watch`` (``watch``) and ``nodetrace diff`` (``diff``),
through :func:`nodetrace.render.json.document` (docs/json.md describes their keys)."""

from __future__ import annotations

from typing import Any

from nodetrace.model.counters import CounterId
from nodetrace.model.path_counters import CounterChange, FallOff, WatchResult
from nodetrace.model.snapshot_diff import CounterGrowth, SnapshotDiff
from nodetrace.model.trace_diff import describe
from nodetrace.render.json import document, to_jsonable, trace_fields
from nodetrace.render.watch_text import SHARED


def counter_fields(counter: CounterId) -> dict[str, Any]:
    return {
        "source": counter.source.value,
        "netns": counter.netns,
        "owner": counter.owner,
        "item": counter.item,
        "name": counter.name,
    }


def change_fields(change: CounterChange) -> dict[str, Any]:
    return {
        **counter_fields(change.counter.id),
        "role": change.counter.role.value,
        "label": change.counter.label,
        "step": change.counter.step,
        "first_hop": change.counter.first_hop,
        "before": change.before,
        "after": change.after,
        "delta": change.delta,
        "unknown": change.why_unknown if change.delta is None else None,
    }


def _fall(falls: FallOff | None) -> dict[str, Any] | None:
    if falls is None:
        return None
    return {
        "last_moved_hop": falls.last_moved,
        "first_still_hop": falls.first_still,
        "last_counter": change_fields(falls.last_counter) if falls.last_counter else None,
        "first_silent": change_fields(falls.first_silent) if falls.first_silent else None,
        "counted": falls.counted,
        "reaching": falls.reaching,
    }


def watch_document(result: WatchResult, *, interval: int, packet: str) -> dict[str, Any]:
    """One interval of ``live watch``: the predicted trace, each hop's counters and deltas."""
    hops = [
        {
            "index": h.hop.index,
            "label": h.hop.label,
            "netns": h.hop.netns,
            "steps": list(h.hop.steps),
            "state": h.state.value,
            "count": h.count,
            "counters": [change_fields(c) for c in h.changes],
        }
        for h in result.hops
    ]
    return document(
        "watch",
        interval=interval,
        seconds=round(result.seconds, 3),
        given_packet=packet,
        predicted=trace_fields(result.plan.trace),
        hops=hops,
        node_wide=[change_fields(c) for c in result.node_wide],
        falls_off=_fall(result.falls_off),
        reached_end=result.reached_end,
        drops=[change_fields(c) for c in result.drops],
        unknown=[change_fields(c) for c in result.unknown],
        notes=list(result.plan.notes),
        shared=SHARED,
    )


def _growth(g: CounterGrowth) -> dict[str, Any]:
    return {**counter_fields(g.counter), "before": g.before, "after": g.after, "delta": g.delta}


def diff_document(result: SnapshotDiff) -> dict[str, Any]:
    """``nodetrace diff``: what changed from snapshot A to snapshot B."""
    fate = None
    if result.fate is not None:
        f = result.fate
        fate = {
            "packet": f.packet,
            "a": trace_fields(f.a),
            "b": trace_fields(f.b),
            "same": f.divergence.same,
            "divergence": {
                "index": f.divergence.index,
                "reason": f.divergence.reason,
                "a_step": describe(f.divergence.observed) if f.divergence.observed else None,
                "b_step": describe(f.divergence.simulated) if f.divergence.simulated else None,
            },
        }
    return document(
        "diff",
        a=result.a,
        b=result.b,
        rules=to_jsonable(result.rules),
        flows=to_jsonable(result.flows),
        sets=to_jsonable(result.sets),
        devices=to_jsonable(result.devices),
        grown=[_growth(g) for g in result.grown],
        reset=[_growth(g) for g in result.reset],
        not_compared=list(result.not_compared),
        packet=fate,
        same=result.same,
    )
