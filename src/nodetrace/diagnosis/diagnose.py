"""One packet, observed and predicted: walk the request on the snapshot, compare what the
observation could show, and name where and why the packet was lost.

The prediction is the whole-node walk. Its own drop (a rule, a table miss, a device down, an
MTU) is the cause when the observation agrees with it; when they part, the divergence is read
with the snapshot's facts (:mod:`.divergence`). Without an observation (``observed=None``) the
prediction alone speaks; an observation that saw nothing of the packet (a trace without
steps) parts from the prediction at its first step, and is read as any other divergence.
"""

from __future__ import annotations

from dataclasses import replace

from nodetrace.diagnosis.counters import DeviceCounters, explain_counters
from nodetrace.diagnosis.divergence import explain_divergence
from nodetrace.diagnosis.predicted import Finding, explain_prediction
from nodetrace.diagnosis.view import comparable
from nodetrace.engine.walk import Engines, WalkRequest, walk
from nodetrace.model.diagnosis import Diagnosis, Layer
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.model.trace import Outcome, Trace
from nodetrace.model.trace_diff import diff

_UNDECIDED = frozenset({Outcome.ENDS, Outcome.UNKNOWN})
"""An observation's fates that decide nothing (its source stopped showing the packet)."""


def diagnose(
    snapshot: Snapshot,
    *,
    observed: Trace | None,
    request: WalkRequest,
    engines: Engines | None = None,
    notes: tuple[str, ...] = (),
    device_counters: DeviceCounters | None = None,
) -> Diagnosis:
    """Where and why the packet of ``request`` was lost, from what was ``observed`` (``None``:
    nothing) and what ``snapshot`` predicts.

    ``engines``: compiled engines to reuse across packets
    (:func:`nodetrace.engine.walk_adapters.engines_for`). ``device_counters``: per device, how
    much its counters (``tx_dropped``...) grew while the packet was followed; a rise on the
    predicted path names a cause the snapshot alone cannot (a VM not reading its tap)."""
    if engines is None:
        from nodetrace.engine.walk_adapters import engines_for

        engines = engines_for(snapshot, ct_state=request.ct_state)
    predicted = walk(snapshot, request, engines, switch=snapshot.ovs)
    return judge(snapshot, observed, predicted, request, notes, device_counters)


def judge(
    snapshot: Snapshot,
    observed: Trace | None,
    predicted: Trace,
    request: WalkRequest,
    notes: tuple[str, ...] = (),
    device_counters: DeviceCounters | None = None,
) -> Diagnosis:
    """The diagnosis of an observation against a prediction already walked."""
    netns = getattr(request.start, "netns", MAIN_NS)

    def passing() -> Finding | None:
        """The cause when the prediction lets the packet through: the counters', if any."""
        if not device_counters:
            return None
        return explain_counters(snapshot, predicted, device_counters)

    if observed is None:
        finding = explain_prediction(snapshot, predicted, request) or passing()
        return _diagnosis(None, predicted, None, finding, notes)
    view = comparable(predicted, observed)
    found = diff(observed, view)
    if found.same:
        finding = explain_prediction(snapshot, predicted, request) or passing()
    elif found.observed is None and observed.outcome in _UNDECIDED:
        # The observation stops where the prediction goes on, without contradicting it (a
        # source that cannot show the rest, or the packet lost there): a loss the prediction
        # explains further on is the answer; otherwise, why it stopped.
        finding = explain_prediction(snapshot, predicted, request) or explain_divergence(
            snapshot, observed, predicted, view, found, netns
        )
    else:
        finding = explain_divergence(snapshot, observed, predicted, view, found, netns)
    return replace(_diagnosis(observed, predicted, found, finding, notes), compared=view)


def _diagnosis(
    observed: Trace | None,
    predicted: Trace,
    found: object,
    finding: Finding | None,
    notes: tuple[str, ...],
) -> Diagnosis:
    from nodetrace.model.trace_diff import TraceDiff

    divergence = found if isinstance(found, TraceDiff) else None
    if finding is None:
        return Diagnosis(observed, predicted, divergence, Layer.UNKNOWN, "", None, notes)
    return Diagnosis(
        observed, predicted, divergence, finding.layer, finding.location, finding.cause, notes
    )
