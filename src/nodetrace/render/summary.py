"""The terminal view of a log summary: packets by outcome, top dropping rules, chains by hits.

It takes plain counts (not the analysis objects) so any producer of such counts can use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

_OUTCOME_STYLES = {
    "accepted": "green",
    "dropped": "red",
    "rejected": "red",
    "ends": "yellow",
}
_OUTCOME_HELP = {
    "accepted": "went on to POSTROUTING, or were accepted in their last traced hook",
    "dropped": "dropped by a rule or a DROP policy",
    "rejected": "rejected (dropped with an error sent back)",
    "ends": "trace ends without a verdict line (lines missing, or give --rules)",
}


@dataclass(frozen=True, slots=True)
class SummaryCounts:
    packets: int
    seen_again: int
    by_outcome: Mapping[str, int]
    dropping: Sequence[tuple[str, str, int]]
    """(step label, rule text or "", packets)."""
    chains: Sequence[tuple[str, int]]
    lines: Mapping[str, int]
    """total, parsed, skipped, malformed, not_text."""
    files: Sequence[tuple[str, str]]
    """(file, detected format)."""
    ends_at: Sequence[tuple[str, str, int]] = ()
    """(last step label, rule text or "", packets) of traces that end without a verdict."""


def _step_table(rows: Sequence[tuple[str, str, int]], style: str) -> Table:
    """Packets per step: the count, the step's label and, dimmed below it, its rule."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(justify="right")
    table.add_column(overflow="fold")
    for label, rule, n in rows:
        cell = Text(label, style=style)
        if rule:
            cell.append("\n  " + rule, style="dim")
        table.add_row(f"{n:,}", cell)
    return table


def summary_renderable(counts: SummaryCounts) -> RenderableType:
    parts: list[RenderableType] = []
    head = Text(f"{counts.packets:,} packet{'s' if counts.packets != 1 else ''}", style="bold")
    if counts.seen_again:
        head.append(
            f" ({counts.seen_again:,} of them a packet seen again: retransmission, copy or second bridge pass)",
            style="dim",
        )
    files = ", ".join(f"{name} ({fmt})" for name, fmt in counts.files)
    head.append(f"  from {files}", style="dim")
    parts.append(head)

    outcomes = Table(box=None, show_header=False, pad_edge=False)
    outcomes.add_column(justify="right")
    outcomes.add_column()
    outcomes.add_column(style="dim")
    for outcome in ("accepted", "dropped", "rejected", "ends"):
        n = counts.by_outcome.get(outcome, 0)
        outcomes.add_row(
            f"{n:,}", Text(outcome, style=_OUTCOME_STYLES[outcome]), _OUTCOME_HELP[outcome]
        )
    parts.append(outcomes)

    if counts.dropping:
        parts.append(Text("\nTop dropping rules", style="bold"))
        parts.append(_step_table(counts.dropping, "red"))

    if counts.ends_at:
        parts.append(Text("\nWhere traces end without a verdict line", style="bold"))
        parts.append(_step_table(counts.ends_at, "yellow"))

    if counts.chains:
        parts.append(Text("\nChains by hits", style="bold"))
        chains = Table(box=None, show_header=False, pad_edge=False)
        chains.add_column(justify="right")
        chains.add_column(style="cyan", overflow="fold")
        for chain, n in counts.chains:
            chains.add_row(f"{n:,}", chain)
        parts.append(chains)

    lines = counts.lines
    text = Text("\nLines: ", style="bold")
    text.append(
        f"{lines.get('total', 0):,} read, {lines.get('parsed', 0):,} in TRACE records, "
        f"{lines.get('skipped', 0):,} skipped (not TRACE), {lines.get('malformed', 0):,} malformed"
    )
    if lines.get("not_text"):
        text.append(f" ({lines['not_text']:,} of the skipped are not text)", style="yellow")
    parts.append(text)
    return Group(*parts)
