"""``nodetrace log --format html``: the log's analysis turned into the page's plain data.

Every packet is explained (the per-packet path of the analysis), so each bar of the page can
list the packets behind it; the counts are the analysis's own summary, the same numbers
``nodetrace log --summary`` prints. Past ``MAX_DRAWN`` packets the trees are left out (a page
of a million packets would not open) and the page says so; they are still counted.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence

from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.neutron.inventory import inventory
from nodetrace.parsers.trace_kernel_log import envelope_time
from nodetrace.render.html_log import Count, LoggedPacket, LogReport, log_page
from nodetrace.snapshot.load import load
from nodetrace.snapshot.parts import is_snapshot
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.source import STDIN, LogSource

MAX_DRAWN = 2000
"""Packets whose trace tree is on the page."""

_FAILED = (Outcome.DROPPED, Outcome.REJECTED)


def _chain(label: str) -> str:
    """``table:chain`` of a step label (``table:chain:kind:number`` or ``table:chain:kind``)."""
    return ":".join(label.split(":")[:2])


def _chains_hit(obs: ObservedPacket) -> set[str]:
    return {f"{s.table}:{s.chain}" for s in obs.trace.steps if isinstance(s, NetfilterStep)}


def _per_chain(by_step: Counter[tuple[str, str]]) -> list[tuple[str, int]]:
    """Packets per ``table:chain`` from the summary's per-step (label, rule) counts, most first."""
    chains: Counter[str] = Counter()
    for (label, _rule), count in by_step.items():
        chains[_chain(label)] += count
    return sorted(chains.items(), key=lambda kv: (-kv[1], kv[0]))


def log_report(
    analysis: Analysis,
    sources: Iterable[LogSource],
    *,
    title: Callable[[ObservedPacket], str],
    subtitle: Callable[[ObservedPacket], str],
    diagnostics: Callable[[], list[str]],
    replayed: Callable[[ObservedPacket], ObservedPacket] = lambda obs: obs,
) -> LogReport:
    """Read every source through ``analysis`` and gather what the page shows (``replayed``:
    each packet with the warnings the text view adds to it)."""
    packets: list[LoggedPacket] = []
    drops_behind: defaultdict[str, list[int]] = defaultdict(list)
    ends_behind: defaultdict[str, list[int]] = defaultdict(list)
    hits_behind: defaultdict[str, list[int]] = defaultdict(list)
    outcome_behind: defaultdict[str, list[int]] = defaultdict(list)
    rule_behind: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for source in sources:
        try:
            for obs in map(replayed, analysis.packets(source)):
                drawn = len(packets) < MAX_DRAWN
                packets.append(
                    LoggedPacket(
                        index=obs.index,
                        outcome=obs.conclusion.outcome,
                        source=obs.source,
                        trace=obs.trace if drawn else None,
                        title=title(obs) if drawn else "",
                        subtitle=subtitle(obs) if drawn else "",
                        warnings=obs.warnings if drawn else (),
                        seconds=envelope_time(obs.time) if obs.time else None,
                    )
                )
                outcome_behind[obs.conclusion.outcome.value].append(obs.index)
                for chain in _chains_hit(obs):
                    hits_behind[chain].append(obs.index)
                deciding = obs.conclusion.deciding
                if deciding and obs.conclusion.outcome in _FAILED:
                    drops_behind[_chain(deciding)].append(obs.index)
                    rule_behind[(deciding, obs.conclusion.deciding_rule or "")].append(obs.index)
                elif deciding and obs.conclusion.outcome is Outcome.ENDS:
                    ends_behind[_chain(deciding)].append(obs.index)
        finally:
            source.close()
    summary = analysis.summary
    chain_drops = _per_chain(summary.dropping)
    chain_ends = _per_chain(summary.ends_at)
    data = summary.as_json()
    return LogReport(
        files=tuple((f["file"], f["format"] or "") for f in data["files"]),
        packets=tuple(packets),
        total_packets=summary.packets,
        by_outcome=tuple(
            Count(outcome, count, tuple(outcome_behind[outcome]))
            for outcome, count in data["by_outcome"].items()
        ),
        chain_drops=tuple(Count(c, n, tuple(drops_behind[c])) for c, n in chain_drops),
        chain_ends=tuple(Count(c, n, tuple(ends_behind[c])) for c, n in chain_ends),
        chain_hits=tuple(
            Count(chain, count, tuple(hits_behind[chain]))
            for chain, count in summary.chain_hits().most_common()
        ),
        dropping_rules=tuple(
            Count(label, count, tuple(rule_behind[(label, rule)]), detail=rule)
            for (label, rule), count in summary.dropping.most_common()
        ),
        lines=tuple((kind, n) for kind, n in data["lines"].items()),
        drawn_limit=MAX_DRAWN,
        diagnostics=tuple(diagnostics()),
    )


def run_html(
    analysis: Analysis,
    sources: list[LogSource],
    files: list[str],
    *,
    reported: int,
    rules: Sequence[str] = (),
    replayed: Callable[[ObservedPacket], ObservedPacket] = lambda obs: obs,
) -> int:
    """Write the page of the log to stdout: exit status as the text view's (``reported``:
    diagnostics already printed)."""
    from nodetrace.cli.log import EXIT_NOTHING_USABLE, EXIT_OK, _subtitle, _title  # no cycle

    report = log_report(
        analysis,
        sources,
        title=_title,
        subtitle=_subtitle,
        diagnostics=lambda: [str(d) for d in analysis.sink.items],
        replayed=replayed,
    )
    for diagnostic in report.diagnostics[reported:]:
        print(f"nodetrace: {diagnostic}", file=sys.stderr)
    if analysis.summary.lines.parsed == 0:
        names = ", ".join("<stdin>" if f == STDIN else f for f in files)
        why = "holds no TRACE records" if len(files) == 1 else "hold no TRACE records"
        print(f"nodetrace: error: nothing usable: {names} {why}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    # A snapshot among the rules is the node the log came from: its diagram goes on the page.
    snapshot = next((load(name) for name in rules if is_snapshot(name)), None)
    inv = inventory(snapshot) if snapshot is not None else None
    sys.stdout.write(log_page(report, snapshot=snapshot, inventory=inv))
    return EXIT_OK
