"""The text view of a trace, for every command: ``log``, ``iptables`` and the whole-node ``trace``.

One renderer serves a trace *observed* in a log and one *simulated* by an engine alike, since
both are a :class:`~nodetrace.model.trace.Trace`. Three levels, as ``ovn-trace`` has:

- ``summary``: one line per hop (a device crossed, a bridge's OpenFlow pass, a netfilter hook)
  with the rule or flow that decided it;
- ``default``: every step, numbered from 1, netfilter steps under their hook with the devices
  the packet had there and indented by chain depth (a jump indents, a return dedents, so the
  call structure the kernel log flattens is visible again);
- ``detailed``: also every field of each step and the packet wherever it changed.

The header says which packet (and, for a simulation, where each field came from); the footer
gives the verdict, what it rests on, and every assumption. Width and colour come from a
:class:`~nodetrace.render.screen.Screen`. Plain string building: rendering a million-line log
must cost about what reading it does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import assert_never

from nodetrace.model.packet import IPProto, Packet, TcpFlag
from nodetrace.model.packet_origin import FieldOrigin, Origin
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    Step,
    StepKind,
    Trace,
)
from nodetrace.render.screen import PLAIN, Screen, Style


class Level(StrEnum):
    """How much of a trace the text shows."""

    SUMMARY = "summary"
    DEFAULT = "default"
    DETAILED = "detailed"


OUTCOME_LABEL: dict[Outcome, tuple[str, Style]] = {
    Outcome.ACCEPTED: ("ACCEPTED", "green"),
    Outcome.DELIVERED: ("DELIVERED", "green"),
    Outcome.DROPPED: ("DROPPED", "red"),
    Outcome.REJECTED: ("REJECTED", "red"),
    Outcome.ENDS: ("TRACE ENDS", "yellow"),
    Outcome.UNKNOWN: ("UNKNOWN", "magenta"),
}

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
    DeviceAction.RECIRC: "↻",
}

_ICMP_NAMES = {0: "echo-reply", 3: "unreachable", 8: "echo-request", 11: "time-exceeded"}
_ICMPV6_NAMES = {
    1: "unreachable",
    128: "echo-request",
    129: "echo-reply",
    135: "neighbor-solicit",
    136: "neighbor-advert",
}
_PROTO_NAMES = {int(p): p.name for p in IPProto} | {int(IPProto.ICMPV6): "ICMPv6"}
_TCP_FLAGS = [(int(f), f.name) for f in TcpFlag]
_HEAD_MAX = 46
"""The step column's widest: a deeper step's text starts right after it."""
_TEXT_MIN = 40
"""Narrower than this, a step's text goes on the lines below it instead of beside it."""
_DECIDED = "  ◀ decided here"


def describe_packet(packet: Packet) -> str:
    """One line a person reads a packet by: ``TCP 10.0.0.1:5672 → 10.0.0.2:41943 [ACK] ID 10770``."""
    proto = _PROTO_NAMES.get(
        packet.nw_proto, f"proto {packet.nw_proto}" if packet.nw_proto else "IP"
    )
    src = str(packet.nw_src) if packet.nw_src is not None else "?"
    dst = str(packet.nw_dst) if packet.nw_dst is not None else "?"
    if packet.tp_src is not None and packet.tp_dst is not None:
        text = f"{proto} {src}:{packet.tp_src} → {dst}:{packet.tp_dst}"
    else:
        text = f"{proto} {src} → {dst}"
    if packet.nw_proto == IPProto.TCP and packet.tcp_flags:
        flags = [name for bit, name in _TCP_FLAGS if packet.tcp_flags & bit]
        text += f" [{','.join(flags)}]"
    if packet.icmp_type is not None:
        names = _ICMPV6_NAMES if packet.nw_proto == IPProto.ICMPV6 else _ICMP_NAMES
        text += f" {names.get(packet.icmp_type, f'type {packet.icmp_type}')}"
        if packet.icmp_code:
            text += f" code {packet.icmp_code}"
        if packet.icmp_id is not None:
            text += f" id {packet.icmp_id}"
        if packet.icmp_seq is not None:
            text += f" seq {packet.icmp_seq}"
    if packet.ip_id:
        text += f" · IP ID {packet.ip_id}"
    if packet.ip_len:
        text += f" · {packet.ip_len} bytes"
    return text


def render_trace(
    trace: Trace,
    screen: Screen = PLAIN,
    *,
    level: Level = Level.DEFAULT,
    title: str | None = None,
    subtitle: str | None = None,
    warnings: Sequence[str] = (),
) -> str:
    """The whole text of one trace, ending in a newline; ``title``/``subtitle`` say which
    packet it is, ``warnings`` what the reader must know before trusting its steps."""
    out: list[str] = []
    if title:
        out += screen.lines(title, 2, "bold")
    if subtitle:
        out += screen.lines(subtitle, 2, "dim")
    for warning in warnings:
        out += screen.lines("⚠ " + warning, 2, "yellow")
    if trace.flow:
        out += _flow_lines(trace.flow, screen, origins=level is not Level.SUMMARY)
    if level is Level.SUMMARY:
        out += _hop_lines(trace, screen)
    else:
        out += _step_lines(trace, screen, detailed=level is Level.DETAILED)
    out += _footer(trace, screen)
    return "\n".join(out) + "\n"


def _flow_lines(flow: tuple[FieldOrigin, ...], screen: Screen, *, origins: bool) -> list[str]:
    """``Flow: ...`` as ``ofproto/trace`` prints it, then where each field not given came from."""
    shown = [f for f in flow if not f.value.startswith("(")]
    out = ["Flow: " + ",".join(f"{f.field}={f.value}" for f in shown)]
    if not origins:
        return out
    width = max((len(f.field) + len(f.value) + 1 for f in flow), default=0)
    for f in flow:
        if f.origin is not Origin.GIVEN:
            pair = f"{f.field}={f.value}"
            out += screen.wrap(f"  {pair:<{width}}  {f.origin.value}: {f.source}", width + 4)
    given = [f.field for f in flow if f.origin is Origin.GIVEN]
    if given:
        out += screen.wrap(f"  given: {', '.join(given)}", 9)
    out.append("")
    return out


def _footer(trace: Trace, screen: Screen) -> list[str]:
    label, style = OUTCOME_LABEL[trace.outcome]
    verdict = f"Verdict: {label}" + (f": {trace.reason}" if trace.reason else "")
    lines = screen.lines(verdict, 4, spans=((label, style),))
    if trace.resting_on:
        lines.append("Resting on values neither given nor found on the node:")
        for r in trace.resting_on:
            lines += screen.wrap(f"  - {r}", 4)
    if trace.assumptions:
        lines.append("Assumed:")
        for a in trace.assumptions:
            lines += screen.lines(f"  - {a}", 4, "dim")
    return lines


# --- default and detailed: one row per step -----------------------------------------------


def _devices(step: NetfilterStep) -> str:
    """How the packet sits on the interfaces at this step: ``in qbr (port qvb) → out qbr (port tap)``."""
    parts: list[str] = []
    if step.in_dev:
        parts.append(f"in {step.in_dev}" + (f" (port {step.physin})" if step.physin else ""))
    elif step.physin:
        parts.append(f"from port {step.physin}")
    if step.out_dev:
        parts.append(f"out {step.out_dev}" + (f" (port {step.physout})" if step.physout else ""))
    elif step.physout:
        parts.append(f"to port {step.physout}")
    return " → ".join(parts)


def _depths(steps: Sequence[Step]) -> list[int]:
    """Chain nesting per step, from the order the chains appear in (jump in, return out)."""
    depths: list[int] = []
    stack: list[str] = []
    previous: tuple[object, str] | None = None
    for step in steps:
        if not isinstance(step, NetfilterStep):
            depths.append(0)
            previous = None
            stack = []
            continue
        where = (step.hook, step.table)
        if where != previous:
            stack = [step.chain]
        elif step.chain == stack[-1]:
            pass
        elif step.chain in stack:
            del stack[stack.index(step.chain) + 1 :]
        else:
            stack.append(step.chain)
        previous = where
        depths.append(len(stack) - 1)
    return depths


def _step_name(step: NetfilterStep) -> str:
    if step.kind is StepKind.RULE:
        if step.number is not None:
            return f"rule {step.number}"
        return f"rule (handle {step.handle})" if step.handle is not None else "rule"
    if step.number is not None:
        return f"{step.kind.value} {step.number}"
    return step.kind.value + (f" {step.verdict}" if step.verdict else "")


def _implicit_end(step: NetfilterStep) -> str:
    """What a step without a rule means: the end of its chain (a return or the policy)."""
    if step.kind is StepKind.RETURN:
        return f"end of {step.chain}: back to the calling chain"
    if step.kind is StepKind.POLICY:
        policy = f" {step.verdict}" if step.verdict else ""
        return f"end of {step.chain}: its policy{policy} decides"
    return ""


def _netfilter_text(step: NetfilterStep) -> tuple[str, list[str]]:
    """The rule or what the step meant, and the lines below it (the meaning when the rule is
    shown, a misfit)."""
    text = step.rule.text if step.rule is not None else step.rule_text
    below: list[str] = []
    if text:
        if step.note:
            below.append("→ " + step.note)
    else:
        text = step.note or _implicit_end(step)
    if step.misfit:
        below.append("⚠ does not fit the ruleset: " + step.misfit)
    return text, below


def _openflow_text(step: OpenFlowStep) -> str:
    if step.priority is None and not step.match:
        return "no flow matched"
    actions = f"actions={step.actions}"
    return f"{step.match} {actions}" if step.match else actions


def _openflow_head(step: OpenFlowStep) -> str:
    prio = f" priority {step.priority}" if step.priority is not None else ""
    return f"{step.bridge} table {step.table}{prio}"


def _detail_lines(step: Step, shown: object) -> tuple[list[str], object]:
    """``--detailed``: every field of a step the default view leaves out, and the packet where
    it differs from the one shown last (returned, to compare the next step with)."""
    more: list[str] = []
    match step:
        case NetfilterStep():
            named = (("IN", step.in_dev), ("OUT", step.out_dev), ("PHYSIN", step.physin),
                     ("PHYSOUT", step.physout))  # fmt: skip
            devs = [f"{name}={value}" for name, value in named if value]
            if devs:
                more.append("devices: " + " ".join(devs))
            if step.handle is not None:
                more.append(f"handle {step.handle}")
            if step.verdict:
                more.append(f"verdict {step.verdict}")
            if step.span is not None:
                more.append(f"read from {step.span}")
            packet = step.packet if step.packet is not None else step.dump
            if packet is not None and packet != shown:
                if isinstance(packet, Packet):
                    more.append("packet: " + packet.flow_text())
                else:
                    more.append(
                        "packet: " + " ".join(k + ("=" + v if v else "") for k, v in packet.fields)
                    )
                shown = packet
        case OpenFlowStep():
            if step.cookie is not None:
                more.append(f"cookie {step.cookie:#x}")
            if step.source is not None:
                more.append(f"flow read from {step.source}")
        case DeviceStep():
            pass
        case _:
            assert_never(step)
    return more, shown


def _step_lines(trace: Trace, screen: Screen, *, detailed: bool) -> list[str]:
    """One row per step: number, table (or what kind of step), the step, then the rule or flow
    and what it meant; netfilter steps under a line naming their hook and devices."""
    steps = trace.steps
    if not steps:
        return []
    depths = _depths(steps)
    # Columns: rows are built first so the widths can fit the longest ones.
    rows: list[tuple[tuple[str, str] | None, str, str, str, list[str], Style | None]] = []
    # (a new hook and its devices, column 2, head, text, lines below, style)
    section: tuple[object, ...] | None = None
    shown: object = trace.packet
    for i, step in enumerate(steps):
        hook_line: tuple[str, str] | None = None
        style: Style | None = "bold" if i == trace.verdict_step else None
        match step:
            case NetfilterStep():
                where = (step.hook, step.in_dev, step.out_dev, step.physin, step.physout)
                if where != section:
                    section = where
                    hook = step.hook.value if step.hook is not None else "(hook unknown)"
                    hook_line = (hook, _devices(step))
                col2 = step.table
                head = "  " * depths[i] + step.chain + " " + _step_name(step)
                text, below = _netfilter_text(step)
                if not step.traced:  # a simulated step the kernel would not log (before -j TRACE)
                    below.append("(not logged by TRACE)")
                    style = style or "dim"
            case OpenFlowStep():
                section = None
                col2, head, text = "openflow", _openflow_head(step), _openflow_text(step)
                below = ["→ " + step.note] if step.note else []
            case DeviceStep():
                section = None
                col2 = step.action.value
                head = f"{_ARROW.get(step.action, '·')} {step.device}"
                text, below = step.detail, []
            case _:
                assert_never(step)
        if i == trace.verdict_step:
            text += _DECIDED
        if detailed:
            more, shown = _detail_lines(step, shown)
            below += more
        rows.append((hook_line, col2, head, text, below, style))
    nw = len(str(len(steps)))
    c2w = max(len(r[1]) for r in rows)
    hw = min(max(len(r[2]) for r in rows), _HEAD_MAX)
    indent = nw + c2w + hw + 6
    # On a narrow screen the text goes below its step rather than into a thin column.
    stacked = screen.width is not None and screen.width - indent < _TEXT_MIN
    if stacked:
        hw, indent = 0, nw + c2w + 8
    hook_pad = " " * (nw + c2w + 4)
    below_pad = " " * indent
    lines = screen.lines
    out: list[str] = []
    for number, (hook_line, col2, head, text, below, style) in enumerate(rows, 1):
        if hook_line is not None:
            hook, devices = hook_line
            if stacked:
                out += lines(hook_pad + hook, indent, "magenta")
                out += lines(below_pad + devices, indent, "magenta")
            else:
                out += lines(f"{hook_pad}{hook:<{hw}}  {devices}", indent, "magenta")
        if stacked:  # the text goes under its step, indented past the step's chain depth
            at = indent + len(head) - len(head.lstrip(" "))
            out += lines(f"{number:>{nw}}  {col2:<{c2w}}  {head}", at, style)
            out += lines(" " * at + text, at, style) if text else []
            out += [x for extra in below for x in lines(" " * at + extra, at, style)]
            continue
        out += lines(f"{number:>{nw}}  {col2:<{c2w}}  {head:<{hw}}  {text}", indent, style)
        for extra in below:
            out += lines(below_pad + extra, indent, style)
    return out


# --- summary: one line per hop --------------------------------------------------------------


def _hops(trace: Trace) -> Iterator[tuple[int, int]]:
    """(first, last) step index of each hop: consecutive steps that do the same to the same
    device, one bridge's consecutive OpenFlow steps, or one hook's consecutive netfilter steps
    with the same devices."""
    start, key = 0, None
    for i, step in enumerate(trace.steps):
        match step:
            case NetfilterStep():
                here: object = ("nf", step.hook, _devices(step))
            case OpenFlowStep():
                here = ("of", step.bridge)
            case DeviceStep():
                here = ("dev", step.action, step.device)
            case _:
                assert_never(step)
        if i and here != key:
            yield start, i - 1
            start = i
        key = here
    if trace.steps:
        yield start, len(trace.steps) - 1


def _hop_lines(trace: Trace, screen: Screen) -> list[str]:
    nw = len(str(len(trace.steps)))
    out: list[str] = []
    for first, last in _hops(trace):
        decided = trace.verdict_step is not None and first <= trace.verdict_step <= last
        index = trace.verdict_step if decided and trace.verdict_step is not None else last
        step = trace.steps[index]
        match step:
            case NetfilterStep():
                hook = step.hook.value if step.hook is not None else "(hook unknown)"
                devices = _devices(step)
                text, _ = _netfilter_text(step)
                where = f"{step.table} {step.chain} {_step_name(step)}"
                line = f"{hook} {devices}: {where}" if devices else f"{hook}: {where}"
                line += f"  {text}" if text else ""
            case OpenFlowStep():
                line = f"{_openflow_head(step)}  {_openflow_text(step)}"
            case DeviceStep():
                line = f"{_ARROW.get(step.action, '·')} {step.device}"
                line += f"  {step.detail}" if step.detail else ""
            case _:
                assert_never(step)
        if decided:
            line += _DECIDED
        out += screen.lines(f"{index + 1:>{nw}}  {line}", nw + 4, "bold" if decided else None)
    return out
