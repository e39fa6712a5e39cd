"""The terminal view of a trace: each step with its hook, rule and meaning, then the outcome.

It serves a trace *observed* in a log (``nodetrace log``) and one *simulated* by an engine
(``nodetrace iptables``, the node walk) alike, since both are :class:`~nodetrace.model.trace.Trace`.
Netfilter steps are grouped under their hook with the interfaces the packet had there, and
indented by chain depth (a jump indents, a return dedents), so the call structure the kernel
log flattens is visible again. The step that decided the outcome is marked.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from nodetrace.model.packet import IPProto, Packet, TcpFlag
from nodetrace.model.trace import (
    DeviceStep,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    Step,
    Trace,
)

OUTCOME_STYLE: dict[Outcome, tuple[str, str]] = {
    Outcome.ACCEPTED: ("ACCEPTED", "bold green"),
    Outcome.DELIVERED: ("DELIVERED", "bold green"),
    Outcome.DROPPED: ("DROPPED", "bold red"),
    Outcome.REJECTED: ("REJECTED", "bold red"),
    Outcome.ENDS: ("TRACE ENDS", "bold yellow"),
    Outcome.UNKNOWN: ("UNKNOWN", "bold magenta"),
}

_ICMP_NAMES = {0: "echo-reply", 3: "unreachable", 8: "echo-request", 11: "time-exceeded"}
_ICMPV6_NAMES = {
    1: "unreachable",
    128: "echo-request",
    129: "echo-reply",
    135: "neighbor-solicit",
    136: "neighbor-advert",
}


def describe_packet(packet: Packet) -> str:
    """One line a person reads a packet by: ``TCP 10.0.0.1:5672 → 10.0.0.2:41943 [ACK] ID 10770``."""
    proto_names = {int(p): p.name for p in IPProto}
    proto = proto_names.get(
        packet.nw_proto, f"proto {packet.nw_proto}" if packet.nw_proto else "IP"
    )
    if packet.nw_proto == IPProto.ICMPV6:
        proto = "ICMPv6"
    src = str(packet.nw_src) if packet.nw_src is not None else "?"
    dst = str(packet.nw_dst) if packet.nw_dst is not None else "?"
    if packet.tp_src is not None and packet.tp_dst is not None:
        text = f"{proto} {src}:{packet.tp_src} → {dst}:{packet.tp_dst}"
    else:
        text = f"{proto} {src} → {dst}"
    if packet.nw_proto == IPProto.TCP and packet.tcp_flags:
        flags = [f.name for f in TcpFlag if packet.tcp_flags & f]
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
    if step.kind.value == "rule":
        if step.number is not None:
            return f"rule {step.number}"
        return f"rule (handle {step.handle})" if step.handle is not None else "rule"
    if step.number is not None:
        return f"{step.kind.value} {step.number}"
    return f"{step.kind.value}" + (f" {step.verdict}" if step.verdict else "")


def _netfilter_cells(step: NetfilterStep, depth: int, decided: bool) -> tuple[Text, Text]:
    """The step cell (chain, indented by depth, and the kind/number) and the rule/meaning cell
    (the rule text when known, then what the step meant)."""
    where = Text("  " * depth)
    where.append(step.chain, style="cyan" if depth else "bold cyan")
    where.append(" " + _step_name(step), style="bold")
    meaning = Text()
    text = step.rule.text if step.rule is not None else step.rule_text
    if text:
        meaning.append(text)
    elif step.note is None:
        meaning.append(_implicit_end(step), style="italic")
    if step.note:
        if meaning:
            meaning.append("\n")
        meaning.append(("→ " if text else "") + step.note, style="italic" if text else "")
    if step.misfit:
        if meaning:
            meaning.append("\n")
        meaning.append("⚠ does not fit the ruleset: " + step.misfit, style="yellow")
    if decided:
        meaning.append("  ◀ decided here", style="bold")
    return where, meaning


def _implicit_end(step: NetfilterStep) -> str:
    """What a step without a rule means: the end of its chain (a return or the policy)."""
    if step.kind.value == "return":
        return f"end of {step.chain}: back to the calling chain"
    if step.kind.value == "policy":
        policy = f" {step.verdict}" if step.verdict else ""
        return f"end of {step.chain}: its policy{policy} decides"
    return ""


def _other_cells(step: Step) -> tuple[str, Text, Text]:
    if isinstance(step, OpenFlowStep):
        where = Text(f"{step.bridge} table {step.table}", style="bold cyan")
        if step.priority is not None:
            where.append(f" priority {step.priority}")
        if step.match:
            where.append("\n  " + step.match, style="dim")
        meaning = Text(
            f"actions={step.actions}" if step.match or step.actions else "no flow matched"
        )
        if step.note:
            meaning.append("\n" + step.note)
        return "openflow", where, meaning
    assert isinstance(step, DeviceStep)
    return (
        step.action.value,
        Text(step.device, style="bold"),
        Text(step.detail),
    )


def trace_renderable(
    trace: Trace,
    *,
    title: str | None = None,
    subtitle: str | None = None,
    warnings: Sequence[str] = (),
) -> RenderableType:
    """The rich renderable of one trace; ``title``/``subtitle`` say which packet it is."""
    parts: list[RenderableType] = []
    if title:
        parts.append(Text(title, style="bold"))
    if subtitle:
        parts.append(Text(subtitle, style="dim"))
    for warning in warnings:
        parts.append(Text("⚠ " + warning, style="yellow"))
    table = Table(box=None, show_header=True, header_style="dim", pad_edge=False, expand=True)
    table.add_column("#", justify="right", style="dim", no_wrap=True)
    table.add_column("table", no_wrap=True)
    table.add_column("step", no_wrap=True)
    table.add_column("rule · meaning", overflow="fold", ratio=1)
    depths = _depths(trace.steps)
    current: tuple[object, str] | None = None
    for i, step in enumerate(trace.steps):
        decided = trace.verdict_step == i
        if isinstance(step, NetfilterStep):
            section = (step.hook, _devices(step))
            if section != current:
                hook = step.hook.value if step.hook is not None else "(hook unknown)"
                # the devices go in the wide column so long interface names do not squeeze it
                table.add_row(
                    "", "", Text(hook, style="bold magenta"), Text(section[1], style="magenta")
                )
                current = section
            where, meaning = _netfilter_cells(step, depths[i], decided)
            style = "on grey15" if decided else None
            if not step.traced:  # a simulated step the kernel would not log (before -j TRACE)
                meaning.append(("\n" if meaning else "") + "(not logged by TRACE)", style="dim")
                style = "dim"
            table.add_row(str(i + 1), step.table, where, meaning, style=style)
        else:
            current = None
            kind, where, meaning = _other_cells(step)
            table.add_row(str(i + 1), kind, where, meaning)
    parts.append(table)
    label, style = OUTCOME_STYLE.get(trace.outcome, (trace.outcome.value.upper(), "bold"))
    outcome = Text("→ ")
    outcome.append(label, style=style)
    if trace.reason:
        outcome.append("  " + trace.reason)
    parts.append(outcome)
    for assumption in trace.assumptions:
        parts.append(Text("  assumed: " + assumption, style="dim"))
    return Group(*parts)


class StdoutConsole(Console):
    """A console on stdout that lets a closed pipe (``| head``) surface as BrokenPipeError.

    rich's own handling exits with status 1, which would read as "nothing usable"; the command
    line turns BrokenPipeError into a quiet exit 0 instead.
    """

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def print_trace(
    trace: Trace,
    *,
    console: Console | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    warnings: Sequence[str] = (),
) -> None:
    out = console if console is not None else StdoutConsole()
    out.print(trace_renderable(trace, title=title, subtitle=subtitle, warnings=warnings))
