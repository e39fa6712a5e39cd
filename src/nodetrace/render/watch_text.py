"""``nodetrace live watch`` for people: per hop of the predicted path, how much each counter
rose, where the count falls off, which drop counters rose, and which counters are unknown.

Counters are shared with every other packet crossing the same rule, flow or device, so the
view says so each time: a counter that rose may have counted other traffic; one that did not
rise is what tells where this packet stopped.
"""

from __future__ import annotations

from nodetrace.model.counters import CounterRole
from nodetrace.model.path_counters import CounterChange, HopChange, HopState, WatchResult

SHARED = (
    "Counters are shared with all traffic crossing the same rules, flows and devices: a rise "
    "may come from other packets; a counter that did not move is what tells."
)

_MARK = {
    HopState.MOVED: "+",
    HopState.STILL: "0",
    HopState.UNKNOWN: "?",
    HopState.NOT_FOLLOWED: ".",
    HopState.OTHER_COPY: "~",
}


def delta_text(change: CounterChange) -> str:
    delta = change.delta
    return "?" if delta is None else f"+{delta}" if delta > 0 else "0"


def render_watch(result: WatchResult, *, packet: str = "", detailed: bool = False) -> str:
    """One interval's view; ``detailed`` lists every counter, else hops and what matters."""
    trace = result.plan.trace
    lines: list[str] = []
    if packet:
        lines.append(f"Packet: {packet}")
    verdict = trace.outcome.value + (f": {trace.reason}" if trace.reason else "")
    lines.append(f"Predicted: {verdict}")
    lines.append(f"Counters over {result.seconds:.1f} s, per hop of the predicted path")
    lines.append(
        "(+ counted, 0 did not count, ? could not be read, . no counter follows every packet, "
        "~ another copy of a flooded packet):"
    )
    falls = result.falls_off
    for hop in result.hops:
        lines += _hop_lines(hop, falls.first_still if falls else None, detailed)
    lines.append("")
    lines += _summary(result)
    drops = result.drops
    if drops:
        lines.append("Drop counters that rose:")
        lines += [f"  {delta_text(c)}  {c.counter.label} ({c.counter.id})" for c in drops]
    if result.unknown:
        lines.append(f"Unknown (could not be read, not zero): {len(result.unknown)} counters")
        reasons: dict[str, list[str]] = {}
        for change in result.unknown:
            reasons.setdefault(change.why_unknown or "not read", []).append(change.counter.label)
        for why, labels in reasons.items():
            shown = ", ".join(labels[:3]) + (
                f" and {len(labels) - 3} more" if len(labels) > 3 else ""
            )
            lines.append(f"  {why}: {shown}")
    for note in result.plan.notes:
        lines.append(f"Note: {note}")
    lines.append(SHARED)
    return "\n".join(lines) + "\n"


def _hop_lines(hop: HopChange, falls_at: int | None, detailed: bool) -> list[str]:
    mark = "  <- the count falls off here" if hop.hop.index == falls_at else ""
    ns = f" [netns {hop.hop.netns}]" if hop.hop.netns else ""
    count = f" (counted {hop.count})" if hop.count is not None else ""
    head = f"{hop.hop.index:>3} {_MARK[hop.state]} {hop.hop.label}{ns}{count}{mark}"
    out = [head]
    for change in hop.changes:
        role = change.counter.role
        shown = detailed or role is not CounterRole.DROP or (change.delta or 0) > 0
        if not shown:
            continue
        tag = {
            CounterRole.PASS: "",
            CounterRole.DROP: " (drop)",
            CounterRole.INFO: " (not used to follow the count)",
        }[role]
        also = change.counter.first_hop
        tag += f" (also at hop {also})" if also is not None else ""
        out.append(f"      {delta_text(change):>6}  {change.counter.label}{tag}")
    return out


def _summary(result: WatchResult) -> list[str]:
    falls = result.falls_off
    trace = result.plan.trace
    if falls is None:
        if result.reached_end:
            return [f"The count reaches the end of the predicted path ({trace.outcome.value})."]
        return ["The count cannot be followed: no hop's counters could be read twice."]
    hops = {h.hop.index: h for h in result.hops}
    still = hops[falls.first_still].hop
    if falls.last_moved is None:
        return [
            f"Nothing counted from hop {still.index} ({still.label}) on: was the packet sent "
            "during the interval, and does it start where the trace says?"
        ]
    moved = hops[falls.last_moved].hop
    out = [
        f"The count falls off at hop {still.index} ({still.label}): it counted "
        f"{falls.counted} where every hop up to hop {moved.index} ({moved.label}) counted "
        f"at least {falls.reaching}."
    ]
    if falls.last_counter is not None:
        out.append(f"  last counter that rose: {falls.last_counter.counter.label} "
                   f"({delta_text(falls.last_counter)})")  # fmt: skip
    if falls.first_silent is not None:
        out.append(
            f"  first counter that fell short: {falls.first_silent.counter.label} "
            f"({delta_text(falls.first_silent)})"
        )
    return out
