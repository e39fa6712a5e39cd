"""A whole-node trace as an indented text tree: devices crossed, then under each bridge or hook
the OpenFlow tables and netfilter rules met, then the verdict and every assumption.

The layout follows ``ofproto/trace``: one line per decision, the decisive one marked, a summary
at the end. Netfilter steps print as ``table:chain:kind:number`` (the kernel's own TRACE words)
with the rule text, so a line can be found in ``iptables-save`` by eye.
"""

from __future__ import annotations

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


def render_tree(trace: Trace) -> str:
    lines: list[str] = []
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
    if trace.assumptions:
        lines.append("Assumed:")
        lines.extend(f"  - {a}" for a in trace.assumptions)
    return "\n".join(lines) + "\n"
