"""What of a prediction an observation could have shown, so that their diff is fair.

A TRACE log shows one pass of a packet through netfilter: the kernel clears the trace flag
when the packet crosses a veth (``skb_scrub_packet``), so the next bridge logs a new pass, and
a log never shows OpenFlow tables or devices. A whole-node prediction crosses all of them. The
comparison therefore takes, from the prediction, the netfilter pass that begins where the
observation begins (same input devices), and its fate at the end of that pass: accepted when
the packet left netfilter there, or the prediction's own drop when it happened in that pass.
An observation that carries OpenFlow or device steps is compared with the whole prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    NetfilterStep,
    Outcome,
    Step,
    StepKind,
    Trace,
)

_PASS_BREAKS = frozenset({DeviceAction.VETH, DeviceAction.ENCAP, DeviceAction.DECAP})
"""Crossings after which the kernel starts a new trace (a veth scrubs the skb; a tunnel makes
another packet)."""


@dataclass(frozen=True, slots=True)
class Pass:
    """One netfilter pass of a prediction: its steps and their indexes in the whole trace."""

    steps: tuple[NetfilterStep, ...]
    indexes: tuple[int, ...]


def netfilter_only(trace: Trace) -> bool:
    return all(isinstance(s, NetfilterStep) for s in trace.steps)


def passes(trace: Trace) -> list[Pass]:
    """The prediction's netfilter passes, in order."""
    out: list[Pass] = []
    steps: list[NetfilterStep] = []
    indexes: list[int] = []
    for index, step in enumerate(trace.steps):
        if isinstance(step, DeviceStep) and step.action in _PASS_BREAKS and steps:
            out.append(Pass(tuple(steps), tuple(indexes)))
            steps, indexes = [], []
        elif isinstance(step, NetfilterStep):
            steps.append(step)
            indexes.append(index)
    if steps:
        out.append(Pass(tuple(steps), tuple(indexes)))
    return out


def _same_entry(seen: NetfilterStep, predicted: NetfilterStep) -> bool:
    """Both enter on the same devices, as far as the observation says (nf_tables events
    carry no bridge port)."""
    if seen.in_dev != predicted.in_dev:
        return False
    return seen.physin is None or seen.physin == predicted.physin


def matching_pass(predicted: Trace, observed: Trace) -> Pass | None:
    """The pass of ``predicted`` that begins on the devices ``observed`` begins on (else the
    first pass; ``None`` when the prediction crosses no netfilter at all)."""
    found = passes(predicted)
    if not found:
        return None
    first = next((s for s in observed.steps if isinstance(s, NetfilterStep)), None)
    if first is not None:
        for candidate in found:
            if _same_entry(first, candidate.steps[0]):
                return candidate
    return found[0]


def from_nf_tables(observed: Trace) -> bool:
    """The observation is nf_tables' trace events (a rule handle, a verdict word: a legacy
    TRACE line has neither)."""
    return any(
        isinstance(s, NetfilterStep) and (s.handle is not None or s.verdict is not None)
        for s in observed.steps
    )


def as_nf_tables_reports(trace: Trace) -> Trace:
    """A prediction as nf_tables' trace events report it: a user chain's end reports nothing,
    and every rule is reported as a rule (legacy TRACE calls a chain's unconditional last rule
    ``return`` or ``policy``). The deciding step keeps its place among the steps kept."""
    steps: list[Step] = []
    verdict: int | None = None
    for index, step in enumerate(trace.steps):
        if isinstance(step, NetfilterStep):
            if step.kind is StepKind.RETURN and step.rule is None and index != trace.verdict_step:
                continue
            # Rules are told apart by handle and number: the monitors print a rule's text in
            # their own syntax (nft's, or iptables' with -4 -t TABLE), the engine in
            # iptables-save's.
            step = replace(step, kind=StepKind.RULE if step.rule else step.kind, rule_text=None)
        if index == trace.verdict_step:
            verdict = len(steps)
        steps.append(step)
    return replace(trace, steps=tuple(steps), verdict_step=verdict)


def comparable(predicted: Trace, observed: Trace) -> Trace:
    """The part of ``predicted`` that ``observed`` could have shown, as a trace of its own."""
    if from_nf_tables(observed):
        predicted = as_nf_tables_reports(predicted)
    if not netfilter_only(observed):
        return predicted
    chosen = matching_pass(predicted, observed)
    if chosen is None:
        return replace(predicted, steps=(), verdict_step=None)
    decided = predicted.verdict_step
    if decided is not None and decided in chosen.indexes:
        return replace(predicted, steps=chosen.steps, verdict_step=chosen.indexes.index(decided))
    if decided is not None and decided < chosen.indexes[0]:
        # Decided before this pass began: nothing of it is comparable.
        return replace(predicted, steps=(), verdict_step=None)
    return replace(
        predicted,
        steps=chosen.steps,
        outcome=Outcome.ACCEPTED,
        verdict_step=None,
        reason="netfilter lets it through this pass",
    )
