"""Diagnoses for people and scripts: observed next to predicted, where they part, where and
why the packet was lost, and the evidence; and the counts of a whole log's diagnoses.

The text view puts the two paths side by side (the steps the observation could show against
the prediction's same steps, the first divergence marked), then the place, the cause, its
evidence and the command that confirms it. The JSON fields are ``docs/json.md``'s
``explain`` document; both traces are spelled as every other trace is (``trace_fields``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from nodetrace.model.diagnosis import Diagnosis
from nodetrace.model.trace import NetfilterStep, Step, Trace
from nodetrace.model.trace_diff import describe
from nodetrace.render.json import trace_fields
from nodetrace.render.screen import PLAIN, Screen, Style
from nodetrace.render.text import OUTCOME_LABEL, Level, render_trace


def diagnosis_fields(d: Diagnosis) -> dict[str, Any]:
    """A diagnosis as the schema spells it (docs/json.md, ``explain``)."""
    divergence = d.divergence
    return {
        "agrees": d.agrees,
        "observed": trace_fields(d.observed) if d.observed is not None else None,
        "predicted": trace_fields(d.predicted),
        "compared": trace_fields(d.compared) if d.compared is not None else None,
        "divergence": None
        if divergence is None
        else {
            "same": divergence.same,
            "index": divergence.index,
            "observed": describe(divergence.observed) if divergence.observed else None,
            "predicted": describe(divergence.simulated) if divergence.simulated else None,
            "reason": divergence.reason,
        },
        "layer": d.layer.value,
        "location": d.location,
        "cause": None
        if d.cause is None
        else {
            "id": d.cause.id,
            "title": d.cause.title,
            "evidence": list(d.cause.evidence),
            "confirm": d.cause.confirm,
        },
        "notes": list(d.notes),
    }


def _outcome(trace: Trace) -> str:
    label, _ = OUTCOME_LABEL[trace.outcome]
    return label + (f": {trace.reason}" if trace.reason else "")


def _shown(steps: Sequence[Step]) -> list[Step]:
    """The steps a diff compares: not a simulated step the kernel would not have logged."""
    return [s for s in steps if not isinstance(s, NetfilterStep) or s.traced]


def _column(steps: Sequence[Step], index: int) -> str:
    return describe(steps[index]) if index < len(steps) else "·"


def side_by_side(d: Diagnosis, screen: Screen = PLAIN) -> list[str]:
    """The compared steps in two columns, observed | predicted, the first divergence marked."""
    if d.observed is None or d.compared is None:
        return []
    seen, predicted = _shown(d.observed.steps), _shown(d.compared.steps)
    rows = max(len(seen), len(predicted))
    left = [_column(seen, i) for i in range(rows)]
    width = max([len("observed"), *(len(x) for x in left)])
    if screen.width is not None:
        width = min(width, max(20, (screen.width - 8) // 2))
    parted = d.divergence.index if d.divergence is not None and not d.divergence.same else None
    out = [screen.paint(f"    {'observed'.ljust(width)}   predicted", "dim")]
    for i in range(rows):
        mark = "≠" if parted is not None and i + 1 == parted else " "
        text = f"  {mark} {left[i][:width].ljust(width)} {'│'} {_column(predicted, i)}"
        out.append(screen.paint(text, "yellow") if mark != " " else text)
    return out


def render_diagnosis(
    d: Diagnosis,
    screen: Screen = PLAIN,
    *,
    title: str | None = None,
    subtitle: str | None = None,
    level: Level = Level.DEFAULT,
) -> str:
    """One packet's diagnosis as text, ending in a newline. ``Level.DETAILED`` adds the two
    paths side by side and the whole prediction."""
    out: list[str] = []
    if title:
        out += screen.lines(title, 2, "bold")
    if subtitle:
        out += screen.lines(subtitle, 2, "dim")
    if d.observed is not None:
        out += screen.lines(f"  observed   {_outcome(d.observed)}", 13)
    else:
        out += screen.lines("  observed   nothing", 13)
    out += screen.lines(f"  predicted  {_outcome(d.predicted)}", 13)
    if d.divergence is not None:
        word = "agree" if d.divergence.same else "diverge"
        style: Style = "green" if d.divergence.same else "yellow"
        out += screen.lines(f"  {word.ljust(9)}  {d.divergence}", 13, spans=((word, style),))
    if d.cause is not None:
        where = f"{d.layer.value}" + (f" · {d.location}" if d.location else "")
        out += screen.lines(f"  lost at    {where}", 13)
        out += screen.lines(f"  cause      {d.cause.id}: {d.cause.title}", 13,
                            spans=((d.cause.id, "red"),))  # fmt: skip
        for fact in d.cause.evidence:
            out += screen.lines(f"    · {fact}", 6, "dim")
        if d.cause.confirm:
            out += screen.lines(
                f"  confirm    {d.cause.confirm}", 13, spans=((d.cause.confirm, "cyan"),)
            )
    elif d.observed is not None:
        out += screen.lines("  not lost: observed and predicted agree", 4, "green")
    if level is Level.DETAILED:
        out += side_by_side(d, screen)
        for note in d.notes:
            out += screen.lines(f"  note: {note}", 8, "dim")
        out.append("")
        out.append(render_trace(d.predicted, screen, title="  predicted path").rstrip("\n"))
    return "\n".join(out) + "\n"


@dataclass
class ExplainCounts:
    """How many packets agreed, diverged, were lost, and by which cause and layer."""

    packets: int = 0
    agreeing: int = 0
    divergent: int = 0
    unpredicted: int = 0
    """Observed packets that could not be predicted (the cause says why)."""
    lost: int = 0
    by_cause: Counter[str] = field(default_factory=Counter)
    by_layer: Counter[str] = field(default_factory=Counter)

    def add(self, d: Diagnosis) -> None:
        self.packets += 1
        if not d.compared_with_observation:
            self.unpredicted += 1
        elif d.agrees:
            self.agreeing += 1
        else:
            self.divergent += 1
        if d.cause is not None:
            self.lost += 1
            self.by_cause[d.cause.id] += 1
            self.by_layer[d.layer.value] += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "agreeing": self.agreeing,
            "divergent": self.divergent,
            "unpredicted": self.unpredicted,
            "lost": self.lost,
            "by_cause": dict(self.by_cause.most_common()),
            "by_layer": dict(self.by_layer.most_common()),
        }


def render_explain_summary(counts: ExplainCounts, screen: Screen = PLAIN) -> str:
    """The closing lines: packets, agreeing, divergent, and the causes named."""
    unpredicted = f"{counts.unpredicted} not predicted · " if counts.unpredicted else ""
    out = screen.lines(
        f"{counts.packets} packet(s) · {counts.agreeing} agreeing with the snapshot · "
        f"{counts.divergent} divergent · {unpredicted}{counts.lost} with a cause",
        2,
        "bold",
    )
    for cid, n in counts.by_cause.most_common():
        out += screen.lines(f"  {n:>6}  {cid}", 10)
    return "\n".join(out) + "\n"
