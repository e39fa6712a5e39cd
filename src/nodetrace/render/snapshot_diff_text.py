"""``nodetrace diff`` for people: rules, flows, ipsets and devices that changed between two
snapshots, the counters that grew, and (with ``--packet``) how the packet's fate differs."""

from __future__ import annotations

from nodetrace.model.counters import CounterId
from nodetrace.model.snapshot_diff import Change, CounterGrowth, SnapshotDiff
from nodetrace.model.trace_diff import TraceDiff, describe

_SIGN = {Change.ADDED: "+", Change.REMOVED: "-", Change.CHANGED: "~"}


def counter_words(counter: CounterId) -> str:
    return str(counter)


def _ns(netns: str) -> str:
    return f" [netns {netns}]" if netns else ""


def render_snapshot_diff(result: SnapshotDiff, *, limit: int | None = 50) -> str:
    """The whole comparison; ``limit`` caps each list of counters (``None``: all)."""
    lines = [f"A: {result.a}", f"B: {result.b}"]
    if result.fate is not None:
        fate = result.fate
        lines.append("")
        lines.append(f"Packet {fate.packet}:")
        lines.append(
            f"  A: {fate.a.outcome.value}" + (f": {fate.a.reason}" if fate.a.reason else "")
        )
        lines.append(
            f"  B: {fate.b.outcome.value}" + (f": {fate.b.reason}" if fate.b.reason else "")
        )
        lines += _parting(fate.divergence)
    if result.rules:
        lines += ["", "Rules:"]
        for r in result.rules:
            where = f"{r.family} {r.table} {r.chain}{_ns(r.netns)}"
            detail = f" ({r.detail})" if r.detail else ""
            lines.append(f"  {_SIGN[r.change]} {where}: {r.text}{detail}")
    if result.flows:
        lines += ["", "Flows:"]
        for f in result.flows:
            match f.change:
                case Change.ADDED:
                    lines.append(f"  + {f.bridge} {f.identity} actions={f.actions_b}")
                case Change.REMOVED:
                    lines.append(f"  - {f.bridge} {f.identity} actions={f.actions_a}")
                case Change.CHANGED:
                    lines.append(
                        f"  ~ {f.bridge} {f.identity} actions={f.actions_a} -> {f.actions_b}"
                    )
    if result.sets:
        lines += ["", "Ipsets:"]
        for s in result.sets:
            parts = [f"+{m}" for m in s.added] + [f"-{m}" for m in s.removed]
            lines.append(f"  {_SIGN[s.change]} {s.name}{_ns(s.netns)}: {' '.join(parts)}".rstrip())
    if result.devices:
        lines += ["", "Devices:"]
        for d in result.devices:
            details = f": {', '.join(d.details)}" if d.details else ""
            lines.append(f"  {_SIGN[d.change]} {d.name}{_ns(d.netns)}{details}")
    lines += _counters("Counters that grew:", result.grown, limit)
    lines += _counters("Counters lower in B (reset, not grown):", result.reset, limit)
    if result.not_compared:
        lines += ["", "Not compared (unknown, not unchanged):"]
        lines += [f"  {why}" for why in result.not_compared]
    if result.same:
        lines += ["", "No difference in what both snapshots hold."]
    return "\n".join(lines) + "\n"


def _parting(divergence: TraceDiff) -> list[str]:
    """Where the two traces part, each side's step in its own words (the comparison names
    A "observed" and B "simulated": the same one that compares a log with a prediction)."""
    if divergence.same:
        return ["  same path and fate on both"]
    if divergence.observed is None and divergence.simulated is None:
        return ["  same steps; only the fate differs"]
    out = ["  the paths part at:"]
    for side, step in (("A", divergence.observed), ("B", divergence.simulated)):
        if step is None:
            out.append(f"    {side}: (its path had ended)")
            continue
        text = getattr(step, "rule_text", None)
        out.append(f"    {side}: {describe(step)}" + (f"  {text}" if text else ""))
    return out


def _counters(title: str, grown: tuple[CounterGrowth, ...], limit: int | None) -> list[str]:
    if not grown:
        return []
    out = ["", title]
    shown = grown if limit is None else grown[:limit]
    out += [f"  {g.delta:+d}  {counter_words(g.counter)} ({g.before} -> {g.after})" for g in shown]
    if len(shown) < len(grown):
        out.append(f"  ... {len(grown) - len(shown)} more (--all shows every one)")
    return out
