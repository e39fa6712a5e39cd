"""A trace as an HTML tree: the page's twin of the text view (``render/text.py``).

The same grouping a reader of the text knows: netfilter steps under their hook with the
devices the packet had there, indented by chain depth; OpenFlow lookups under their bridge;
devices crossed one per row; the deciding step marked, a drop in red, an unknown marked. Each
step is an element with ``data-step`` (from 1, as the text and JSON number them) and, when the
packet's path is drawn, ``data-hop`` (the hop of ``render/node_diagram.py`` it belongs to), so
the page's script can select a hop's steps and a step's hop. The rule or flow behind a step and
the line it was read from are in the step's hidden ``more`` part, revealed by a click.

The wording comes from ``render/text.py`` so both views say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from nodetrace.model.packet_origin import Origin
from nodetrace.model.trace import (
    DeviceStep,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    Step,
    Trace,
)
from nodetrace.render.html_page import esc
from nodetrace.render.text import (
    OUTCOME_LABEL,
    _depths,
    _devices,
    _implicit_end,
    _openflow_head,
    _openflow_text,
    _step_name,
    describe_packet,
)

MAX_DEPTH_CLASS = 8
"""Chains nested deeper than this are indented as this deep (the stylesheet has 0..8)."""

_FAILED = (Outcome.DROPPED, Outcome.REJECTED)


def _state(trace: Trace, index: int) -> str:
    """The step's mark: ``decided`` (and ``dropped``/``unknown`` by the outcome) or ``""``."""
    if index != trace.verdict_step:
        return ""
    if trace.outcome in _FAILED:
        return "decided dropped"
    if trace.outcome is Outcome.UNKNOWN:
        return "decided unknown"
    return "decided"


def _netfilter_parts(
    step: NetfilterStep, packet_changed: bool
) -> tuple[str, str, list[tuple[str, str]]]:
    """(where, short text, the revealed facts as (label, value))."""
    where = f"{step.table} {step.chain} {_step_name(step)}"
    rule_text = step.rule.text if step.rule is not None else step.rule_text
    facts: list[tuple[str, str]] = []
    if rule_text:
        facts.append(("rule", rule_text))
        if step.rule is not None and step.rule.pos is not None:
            facts.append(("read from", str(step.rule.pos)))
    text = rule_text or step.note or _implicit_end(step)
    if step.note and rule_text:
        facts.append(("meaning", step.note))
    elif not rule_text and text:
        facts.append(("meaning", text))
    if step.misfit:
        facts.append(("does not fit the ruleset", step.misfit))
    devices = _devices(step)
    if devices:
        facts.append(("devices", devices))
    if step.handle is not None:
        facts.append(("handle", str(step.handle)))
    if step.verdict:
        facts.append(("verdict", step.verdict))
    if step.span is not None:
        facts.append(("logged at", str(step.span)))
    if not packet_changed:
        pass
    elif step.dump is not None:
        facts.append(("packet", " ".join(k + ("=" + v if v else "") for k, v in step.dump.fields)))
    elif step.packet is not None:
        facts.append(("packet", step.packet.flow_text()))
    if not step.traced:
        facts.append(("TRACE", "not logged by TRACE (before the -j TRACE rule marks the packet)"))
    return where, text, facts


def _openflow_parts(step: OpenFlowStep) -> tuple[str, str, list[tuple[str, str]]]:
    text = _openflow_text(step)
    facts: list[tuple[str, str]] = [("flow", text)]
    if step.source is not None:
        facts.append(("read from", str(step.source)))
    if step.note:
        facts.append(("meaning", step.note))
    if step.cookie is not None:
        facts.append(("cookie", f"{step.cookie:#x}"))
    return _openflow_head(step), text, facts


def _device_parts(step: DeviceStep) -> tuple[str, str, list[tuple[str, str]]]:
    facts = [("detail", step.detail)] if step.detail else []
    return f"{step.action.value} {step.device}", step.detail, facts


def _step_item(
    trace: Trace,
    index: int,
    step: Step,
    depth: int,
    hop: int | None,
    path: int,
    packet_changed: bool,
) -> str:
    match step:
        case NetfilterStep():
            kind = "netfilter"
            where, text, facts = _netfilter_parts(step, packet_changed)
            if not step.traced:
                kind += " untraced"
            if step.misfit:
                kind += " misfit"
        case OpenFlowStep():
            kind = "openflow"
            where, text, facts = _openflow_parts(step)
        case DeviceStep():
            kind = "device"
            where, text, facts = _device_parts(step)
        case _:
            assert_never(step)
    state = _state(trace, index)
    classes = f"step {kind} depth-{min(depth, MAX_DEPTH_CLASS)}" + (f" {state}" if state else "")
    hop_attr = f' data-hop="{hop}"' if hop is not None else ""
    mark = ' <span class="mark">◀ decided here</span>' if state else ""
    more = "".join(
        f'<div class="fact"><span class="label">{esc(label)}</span> '
        f'<code class="value fact-{esc(label.replace(" ", "-"))}">{esc(value)}</code></div>'
        for label, value in facts
    )
    return (
        f'<li class="{classes}" data-step="{index + 1}" data-path="{path}"{hop_attr} tabindex="0">'
        f'<div class="row"><span class="num">{index + 1}</span> '
        f'<span class="where">{esc(where)}</span> '
        f'<span class="text">{esc(text)}</span>{mark}</div>'
        f'<div class="more" hidden>{more}</div></li>'
    )


def _group_of(step: Step) -> tuple[object, ...] | None:
    """Consecutive steps with the same key share a heading (a hook with its devices, a
    bridge's pipeline); a device step stands alone (None)."""
    match step:
        case NetfilterStep():
            return ("nf", step.hook, step.in_dev, step.out_dev, step.physin, step.physout)
        case OpenFlowStep():
            return ("of", step.bridge)
        case DeviceStep():
            return None
        case _:
            assert_never(step)


def _group_heading(step: Step) -> str:
    if isinstance(step, NetfilterStep):
        hook = step.hook.value if step.hook is not None else "(hook unknown)"
        devices = _devices(step)
        return f'<span class="hook">{esc(hook)}</span>' + (
            f' <span class="devices">{esc(devices)}</span>' if devices else ""
        )
    if isinstance(step, OpenFlowStep):
        return (
            f'<span class="bridge">{esc(step.bridge)}</span> <span class="devices">OpenFlow</span>'
        )
    return ""


def steps_list(trace: Trace, hop_of_step: Mapping[int, int], path: int) -> str:
    """The steps, grouped, as nested lists."""
    depths = _depths(trace.steps)
    shown: object = trace.packet
    out: list[str] = ['<ol class="steps">']
    open_group: tuple[object, ...] | None = None
    for i, step in enumerate(trace.steps):
        key = _group_of(step)
        if key != open_group:
            if open_group is not None:
                out.append("</ol></li>")
            if key is not None:
                kind = "hook" if key[0] == "nf" else "bridge"
                out.append(
                    f'<li class="group {kind}"><div class="heading">{_group_heading(step)}</div>'
                    '<ol class="steps">'
                )
            open_group = key
        changed = False
        if isinstance(step, NetfilterStep):
            packet = step.dump if step.dump is not None else step.packet
            changed = packet is not None and packet != shown
            shown = packet if packet is not None else shown
        out.append(_step_item(trace, i, step, depths[i], hop_of_step.get(i + 1), path, changed))
    if open_group is not None:
        out.append("</ol></li>")
    out.append("</ol>")
    return "".join(out)


def _flow(trace: Trace, *, packet_line: bool) -> str:
    if not trace.flow:
        if trace.packet is not None and packet_line:
            return f'<p class="packet">{esc(describe_packet(trace.packet))}</p>'
        return ""
    rows = []
    for f in trace.flow:
        origin = f.origin.value if f.origin is not Origin.GIVEN else "given"
        where = f": {f.source}" if f.origin is not Origin.GIVEN and f.source else ""
        rows.append(
            f'<tr class="origin-{esc(f.origin.value)}"><th>{esc(f.field)}</th>'
            f"<td><code>{esc(f.value)}</code></td><td>{esc(origin)}{esc(where)}</td></tr>"
        )
    return (
        '<details class="flow"><summary>Packet: <code>'
        + esc(",".join(f"{f.field}={f.value}" for f in trace.flow if not f.value.startswith("(")))
        + "</code></summary><table>"
        + "".join(rows)
        + "</table></details>"
    )


def verdict_line(trace: Trace) -> str:
    label, _ = OUTCOME_LABEL[trace.outcome]
    reason = f": {trace.reason}" if trace.reason else ""
    return (
        f'<p class="verdict outcome-{esc(trace.outcome.value)}">Verdict: '
        f'<strong class="outcome">{esc(label)}</strong>{esc(reason)}</p>'
    )


def _footer(trace: Trace) -> str:
    out = []
    if trace.resting_on:
        out.append(
            '<div class="resting-on"><h4>Resting on values neither given nor found on the '
            "node</h4><ul>"
            + "".join(f"<li>{esc(r)}</li>" for r in trace.resting_on)
            + "</ul></div>"
        )
    if trace.assumptions:
        out.append(
            '<div class="assumptions"><h4>Assumed</h4><ul>'
            + "".join(f"<li>{esc(a)}</li>" for a in trace.assumptions)
            + "</ul></div>"
        )
    return "".join(out)


def trace_tree(
    trace: Trace,
    *,
    hop_of_step: Mapping[int, int] = {},
    path: int = 0,
    heading: str = "",
    subtitle: str = "",
    warnings: tuple[str, ...] = (),
    css_class: str = "",
    packet_line: bool = True,
) -> str:
    """One trace: heading, packet, verdict, the grouped steps, what it rests on and assumed.

    ``hop_of_step`` maps a step number (from 1) to its hop on the drawn path ``path`` (0: the
    predicted or only path; 1: the observed one). ``packet_line``: say which packet it is
    (False when the heading already does)."""
    parts = [f'<section class="trace {esc(css_class)}" data-path="{path}">']
    if heading:
        parts.append(f"<h3>{esc(heading)}</h3>")
    if subtitle:
        parts.append(f'<p class="subtitle">{esc(subtitle)}</p>')
    parts += [f'<p class="warning">⚠ {esc(w)}</p>' for w in warnings]
    parts.append(_flow(trace, packet_line=packet_line))
    parts.append(verdict_line(trace))
    parts.append(steps_list(trace, hop_of_step, path) if trace.steps else "<p>No steps.</p>")
    parts.append(_footer(trace))
    parts.append("</section>")
    return "".join(parts)
