"""Where an observed trace and a simulated one part: the first step they disagree on.

This is how nodetrace proves itself: what a source showed (TRACE records, ``xtables-monitor``,
``ofproto/trace``) and what an engine predicted from a snapshot are both a
:class:`~nodetrace.model.trace.Trace`, and :func:`diff` walks them side by side.

Only what both could show is compared, so a source's silence is never a difference:

* a simulated netfilter step the kernel would not have logged (``traced=False``) is skipped;
* device steps are compared only when both traces have some (a log has none);
* a field one side does not carry (a legacy TRACE line has no rule handle, an ``nf_tables``
  event no rule number and no bridge ports, a log may not know the hook) is not compared;
* an observed outcome that the source did not decide (``ends``, ``unknown``) is not compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from nodetrace.model.openflow_spelling import of10_actions
from nodetrace.model.trace import DeviceStep, NetfilterStep, OpenFlowStep, Outcome, Step, Trace

_UNDECIDED = frozenset({Outcome.ENDS, Outcome.UNKNOWN})


@dataclass(frozen=True, slots=True)
class TraceDiff:
    """The first difference between an observed and a simulated trace, or none."""

    same: bool
    index: int | None
    """Position, counted from 1, of the first divergent step among the steps compared;
    ``None`` when the steps agree (and only the outcome differs, or nothing does)."""
    observed: Step | None
    """The observed step at ``index``; ``None`` when the observed trace had ended."""
    simulated: Step | None
    """The simulated step at ``index``; ``None`` when the simulated trace had ended."""
    reason: str
    """One sentence: what differs (or how much agrees)."""

    def __str__(self) -> str:
        if self.index is None:
            return self.reason
        return f"step {self.index}: {self.reason}"


def diff(observed: Trace, simulated: Trace) -> TraceDiff:
    """Compare ``observed`` with ``simulated`` step by step, then their outcomes."""
    devices = _has_devices(observed.steps) and _has_devices(simulated.steps)
    seen = _comparable(observed.steps, devices)
    predicted = _comparable(simulated.steps, devices)
    for index, (o, s) in enumerate(zip(seen, predicted, strict=False), start=1):
        difference = _step_difference(o, s)
        if difference is not None:
            return TraceDiff(False, index, o, s, difference)
    if len(seen) != len(predicted):
        index = min(len(seen), len(predicted)) + 1
        if len(seen) > len(predicted):
            extra = seen[index - 1]
            reason = f"observed {describe(extra)}, where the simulation had ended"
            return TraceDiff(False, index, extra, None, reason)
        extra = predicted[index - 1]
        reason = f"simulated {describe(extra)}, where the observed trace had ended"
        return TraceDiff(False, index, None, extra, reason)
    if observed.outcome not in _UNDECIDED and observed.outcome is not simulated.outcome:
        reason = (
            f"the {len(seen)} steps agree, but the packet was observed {observed.outcome.value} "
            f"and simulated {simulated.outcome.value}"
        )
        return TraceDiff(False, None, None, None, reason)
    outcome = f", {simulated.outcome.value}" if observed.outcome not in _UNDECIDED else ""
    return TraceDiff(True, None, None, None, f"the traces agree ({len(seen)} steps{outcome})")


def _has_devices(steps: Sequence[Step]) -> bool:
    return any(isinstance(s, DeviceStep) for s in steps)


def _comparable(steps: Sequence[Step], devices: bool) -> list[Step]:
    out: list[Step] = []
    for step in steps:
        match step:
            case NetfilterStep():
                if step.traced:
                    out.append(step)
            case OpenFlowStep():
                out.append(step)
            case DeviceStep():
                if devices:
                    out.append(step)
            case _:
                assert_never(step)
    return out


def _step_difference(o: Step, s: Step) -> str | None:
    if type(o) is not type(s):
        return f"observed {describe(o)}, simulated {describe(s)}"
    for (name, a), (_, b) in zip(_fields(o), _fields(s), strict=True):
        if a is not None and b is not None and a != b:
            return f"the {name} differs: observed {describe(o)}, simulated {describe(s)}"
    return None


def _fields(step: Step) -> tuple[tuple[str, object], ...]:
    """What is compared of a step, named as the sentences say it."""
    match step:
        case NetfilterStep():
            # ``None`` stands for "this source does not say": such a field is not compared.
            return (
                ("family", step.family),
                ("table", step.table),
                ("chain", step.chain),
                ("kind", step.kind),
                ("rule number", step.number),
                ("rule handle", step.handle),
                # ``JUMP:chain`` where a source names the target: the next step shows the chain.
                ("verdict", step.verdict.partition(":")[0].upper() if step.verdict else None),
                ("hook", step.hook),
                ("input device", step.in_dev),
                ("output device", step.out_dev),
                ("bridge input port", step.physin),
                ("bridge output port", step.physout),
                ("rule", _words(step.rule_text)),
            )
        case OpenFlowStep():
            return (
                ("bridge", step.bridge),
                ("table", step.table),
                # No flow matched: a miss, which both sources say as no priority.
                ("priority", step.priority if step.priority is not None else "none"),
                ("match", step.match),
                # ofproto/trace prints actions as they were added; a dump in OpenFlow 1.0
                # (ovs-ofctl's default) respells some of them: both sides are compared in the
                # dump's spelling.
                ("actions", of10_actions(step.actions)),
            )
        case DeviceStep():
            return (("crossing", step.action), ("device", step.device))
        case _:
            assert_never(step)


def _words(text: str | None) -> tuple[str, ...] | None:
    return tuple(text.split()) if text is not None else None


def describe(step: Step) -> str:
    """A step in a few words, as the sentences of a :class:`TraceDiff` name it."""
    match step:
        case NetfilterStep():
            where = f"{step.table}:{step.chain}:{step.kind.value}:"
            where += str(step.number) if step.number is not None else f"0x{step.handle or 0:x}"
            devices = f" IN={step.in_dev} OUT={step.out_dev}"
            if step.physin:
                devices += f" PHYSIN={step.physin}"
            if step.physout:
                devices += f" PHYSOUT={step.physout}"
            return f"{where}{devices}"
        case OpenFlowStep():
            if not step.match and step.priority is None:
                return f"{step.bridge} table {step.table} (no match)"
            actions = f": {step.actions}" if step.actions else ""
            return (
                f"{step.bridge} table {step.table} (priority {step.priority}, "
                f"{step.match or 'any'}{actions})"
            )
        case DeviceStep():
            return f"{step.action.value} {step.device}"
        case _:
            assert_never(step)
