"""A whole-node trace as an indented text tree: the packet traced (``Flow:``, each field with
its origin), devices crossed, then under each bridge or hook the OpenFlow tables and netfilter
rules met, then the verdict, what it rests on, and every assumption.

The layout follows ``ofproto/trace``: one line per decision, the decisive one marked, a summary
at the end. Netfilter steps print as ``table:chain:kind:number`` (the kernel's own TRACE words)
with the rule text, so a line can be found in ``iptables-save`` by eye.
"""

from __future__ import annotations

from nodetrace.model.packet_origin import FieldOrigin, Origin
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    Trace,
)

_ARROW = {
    DeviceAction.ENTER: "→",
    DeviceAction.VETH: "⇄",
    DeviceAction.BRIDGE: "▸",
    DeviceAction.PATCH: "⇄",
    DeviceAction.ENCAP: "⊕",
    DeviceAction.DECAP: "⊖",
    DeviceAction.ROUTE: "◇",
    DeviceAction.DELIVER: "✓",
    DeviceAction.OUTPUT: "←",
}

_VERDICT = {
    Outcome.DELIVERED: "DELIVERED",
    Outcome.DROPPED: "DROPPED",
    Outcome.REJECTED: "REJECTED",
    Outcome.UNKNOWN: "UNKNOWN",
    Outcome.ACCEPTED: "ACCEPTED",
    Outcome.ENDS: "ENDS",
}


def _netfilter_line(step: NetfilterStep) -> str:
    number = "" if step.number is None else f":{step.number}"
    head = f"{step.table}:{step.chain}:{step.kind.value}{number}"
    devs = []
    if step.in_dev:
        devs.append(f"IN={step.in_dev}")
    if step.out_dev:
        devs.append(f"OUT={step.out_dev}")
    if step.physin:
        devs.append(f"PHYSIN={step.physin}")
    if step.physout:
        devs.append(f"PHYSOUT={step.physout}")
    text = step.rule.text if step.rule is not None else (step.rule_text or "")
    line = f"{head}  [{' '.join(devs)}]" if devs else head
    if text:
        line += f"  {text}"
    if step.verdict:
        line += f"  → {step.verdict}"
    if step.note:
        line += f"  ({step.note})"
    return line


def _openflow_line(step: OpenFlowStep) -> str:
    if not step.match and step.priority is None:
        body = "no match"
    else:
        prio = f"priority={step.priority}" if step.priority is not None else ""
        body = ",".join(x for x in (prio, step.match) if x)
    line = f"{step.bridge} table {step.table}: {body}"
    if step.actions:
        line += f"  actions={step.actions}"
    if step.cookie:
        line += f"  cookie={step.cookie:#x}"
    if step.note:
        line += f"  ({step.note})"
    return line


def flow_lines(flow: tuple[FieldOrigin, ...]) -> list[str]:
    """``Flow: ...`` as ``ofproto/trace`` prints it, then where each field not given came from."""
    shown = [f for f in flow if not f.value.startswith("(")]
    lines = ["Flow: " + ",".join(f"{f.field}={f.value}" for f in shown)]
    width = max((len(f.field) + len(f.value) + 1 for f in flow), default=0)
    for f in flow:
        if f.origin is Origin.GIVEN:
            continue
        pair = f"{f.field}={f.value}"
        lines.append(f"  {pair:<{width}}  {f.origin.value}: {f.source}")
    given = [f.field for f in flow if f.origin is Origin.GIVEN]
    if given:
        lines.append(f"  given: {', '.join(given)}")
    lines.append("")
    return lines


def render_tree(trace: Trace) -> str:
    lines: list[str] = flow_lines(trace.flow) if trace.flow else []
    hook = None
    for index, step in enumerate(trace.steps):
        mark = "▶ " if index == trace.verdict_step else "  "
        if isinstance(step, DeviceStep):
            hook = None
            arrow = _ARROW.get(step.action, "·")
            detail = f"  {step.detail}" if step.detail else ""
            lines.append(f"{mark}{arrow} {step.device}{detail}")
        elif isinstance(step, NetfilterStep):
            if step.hook is not None and step.hook != hook:
                hook = step.hook
                lines.append(f"      {hook.value}")
            lines.append(f"{mark}      {_netfilter_line(step)}")
        else:
            lines.append(f"{mark}    {_openflow_line(step)}")
    lines.append("")
    lines.append(f"Verdict: {_VERDICT[trace.outcome]}: {trace.reason}")
    if trace.resting_on:
        lines.append("Resting on values neither given nor found on the node:")
        lines.extend(f"  - {r}" for r in trace.resting_on)
    if trace.assumptions:
        lines.append("Assumed:")
        lines.extend(f"  - {a}" for a in trace.assumptions)
    return "\n".join(lines) + "\n"
