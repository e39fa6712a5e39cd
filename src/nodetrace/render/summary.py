"""The text view of a log summary: packets by outcome, top dropping rules, chains by hits.

It takes plain counts (not the analysis objects) so any producer of such counts can use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nodetrace.model.trace import Outcome
from nodetrace.render.screen import PLAIN, Screen, Style
from nodetrace.render.text import OUTCOME_LABEL

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


def _step_rows(rows: Sequence[tuple[str, str, int]], style: Style, screen: Screen) -> list[str]:
    """Packets per step: the count, the step's label and, dimmed below it, its rule."""
    nw = max(len(f"{n:,}") for _, _, n in rows)
    out: list[str] = []
    for label, rule, n in rows:
        out += screen.lines(f"{n:>{nw},}  {label}", nw + 4, spans=((label, style),))
        if rule:
            out += screen.lines(f"{'':{nw}}    {rule}", nw + 6, "dim")
    return out


def render_summary(counts: SummaryCounts, screen: Screen = PLAIN) -> str:
    """The whole summary as text, ending in a newline."""
    head = f"{counts.packets:,} packet{'s' if counts.packets != 1 else ''}"
    line = head
    if counts.seen_again:
        line += (
            f" ({counts.seen_again:,} of them a packet seen again: retransmission, copy or "
            "second bridge pass)"
        )
    line += "  from " + ", ".join(f"{name} ({fmt})" for name, fmt in counts.files)
    out = screen.lines(line, 2, spans=((head, "bold"),))

    numbers = {o: f"{counts.by_outcome.get(o, 0):,}" for o in _OUTCOME_HELP}
    nw = max(len(n) for n in numbers.values())
    ow = max(len(o) for o in _OUTCOME_HELP)
    for outcome, help_text in _OUTCOME_HELP.items():
        line = f"{numbers[outcome]:>{nw}}  {outcome:<{ow}}  {help_text}"
        spans: tuple[tuple[str, Style], ...] = (
            (outcome, OUTCOME_LABEL[Outcome(outcome)][1]),
            (help_text, "dim"),
        )
        out += screen.lines(line, nw + ow + 4, spans=spans)

    if counts.dropping:
        out += ["", screen.paint("Top dropping rules", "bold")]
        out += _step_rows(counts.dropping, "red", screen)
    if counts.ends_at:
        out += ["", screen.paint("Where traces end without a verdict line", "bold")]
        out += _step_rows(counts.ends_at, "yellow", screen)
    if counts.chains:
        out += ["", screen.paint("Chains by hits", "bold")]
        cw = max(len(f"{n:,}") for _, n in counts.chains)
        for chain, n in counts.chains:
            out += screen.lines(f"{n:>{cw},}  {chain}", cw + 2, spans=((chain, "cyan"),))

    lines = counts.lines
    text = (
        f"Lines: {lines.get('total', 0):,} read, {lines.get('parsed', 0):,} in TRACE records, "
        f"{lines.get('skipped', 0):,} skipped (not TRACE), {lines.get('malformed', 0):,} malformed"
    )
    not_text = (
        f"({lines['not_text']:,} of the skipped are not text)" if lines.get("not_text") else ""
    )
    out.append("")
    out += screen.lines(
        f"{text} {not_text}".rstrip(), 7, spans=(("Lines:", "bold"), (not_text, "yellow"))
    )
    return "\n".join(out) + "\n"
