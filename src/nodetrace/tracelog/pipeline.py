"""From an opened log to explained packets (or to a summary): format detection, parsing,
grouping and explaining, with every line accounted for and every problem reported."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum

from nodetrace.errors import DiagnosticSink, SourcePos
from nodetrace.model.trace import NetfilterStep
from nodetrace.parsers.trace_kernel_log import (
    KernelLogReader,
    LineCounts,
    Malformed,
    journal_json_lines,
    looks_like_journal_json,
)
from nodetrace.parsers.trace_nft_events import NftReadResult
from nodetrace.parsers.trace_nft_monitor import looks_like_nft_monitor, read_nft_monitor
from nodetrace.parsers.trace_xtables_monitor import (
    looks_like_xtables_monitor,
    read_xtables_monitor,
)
from nodetrace.tracelog.explain import conclude_legacy, conclude_nft, observe_legacy, observe_nft
from nodetrace.tracelog.fast_summary import summarize_compiled
from nodetrace.tracelog.group_legacy import DEFAULT_GAP, DEFAULT_WINDOW, LegacyGrouper, LegacyPass
from nodetrace.tracelog.group_nft import NftGrouper, NftPass
from nodetrace.tracelog.match import PacketMatch
from nodetrace.tracelog.namespace_books import Choice, NamespaceBooks
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import LogSource
from nodetrace.tracelog.summary import Summary

SNIFF_LINES = 200
MAX_REPORTED = 50
"""Malformed lines reported one by one per file; beyond that they are counted in one line."""


class LogFormat(StrEnum):
    KERNEL = "kernel"
    JOURNAL_JSON = "journal-json"
    XTABLES_MONITOR = "xtables-monitor"
    NFT_MONITOR = "nft-monitor"


def detect_format(head: list[str]) -> LogFormat:
    """Which printer wrote a log, from its first lines (kernel log when nothing else fits)."""
    if looks_like_journal_json(head):
        return LogFormat.JOURNAL_JSON
    if looks_like_nft_monitor(head):
        return LogFormat.NFT_MONITOR
    if looks_like_xtables_monitor(head):
        return LogFormat.XTABLES_MONITOR
    return LogFormat.KERNEL


@dataclass
class Analysis:
    """One run of ``nodetrace log`` over several inputs: shared rules, filter and summary."""

    book: RuleBook | NamespaceBooks | None = None
    """One set of rules, or a snapshot's namespaces', each packet explained with its own."""
    match: PacketMatch | None = None
    sink: DiagnosticSink = field(default_factory=DiagnosticSink)
    gap: float = DEFAULT_GAP
    window: int = DEFAULT_WINDOW
    summary: Summary = field(default_factory=Summary)
    emitted: int = 0

    def __post_init__(self) -> None:
        # Every packet's rules when they are not a snapshot's namespaces: made once, not per
        # packet.
        self._fixed = Choice(None, self.book if isinstance(self.book, RuleBook) else None)

    def packets(self, source: LogSource) -> Iterator[ObservedPacket]:
        """Every packet of ``source``, explained, in order of first appearance (after --match)."""
        fmt = self._start(source)
        if fmt in (LogFormat.KERNEL, LogFormat.JOURNAL_JSON):
            reader = KernelLogReader()
            lines = source.lines()
            if fmt is LogFormat.JOURNAL_JSON:
                lines = journal_json_lines(lines)
            grouper = LegacyGrouper(gap=self.gap, window=self.window)
            for p in grouper.passes_of_batches(reader.batches(lines)):
                choice = self._legacy_rules(p)
                obs = observe_legacy(p, choice.book, index=self.emitted + 1, source=source.name)
                obs = _chosen(obs, choice)
                if self._keep(obs):
                    yield obs
            self._finish_kernel(source, reader)
            return
        result = NftReadResult()
        read = read_nft_monitor if fmt is LogFormat.NFT_MONITOR else read_xtables_monitor
        for q in NftGrouper(window=self.window).passes(read(source.lines(), result)):
            if not q.events:
                continue
            choice = self._nft_rules(q)
            obs = observe_nft(
                q, choice.book, index=self.emitted + 1, source=source.name, log_format=fmt.value
            )
            obs = _chosen(obs, choice)
            if self._keep(obs):
                yield obs
        self._finish_nft(source, result)

    def summarize(self, source: LogSource) -> None:
        """Add ``source`` to the summary without building per-step objects (the fast path)."""
        if self.match is not None:
            for _ in self.packets(source):
                pass
            return
        fmt = self._start(source)
        summary = self.summary
        if fmt in (LogFormat.KERNEL, LogFormat.JOURNAL_JSON):
            reader = KernelLogReader()
            lines = source.lines()
            if fmt is LogFormat.JOURNAL_JSON:
                lines = journal_json_lines(lines)
            compiled = None
            if fmt is LogFormat.KERNEL and not isinstance(self.book, NamespaceBooks):
                compiled = summarize_compiled(
                    source, summary, gap=self.gap, window=self.window, book=self.book
                )
            if compiled is None:
                grouper = LegacyGrouper(gap=self.gap, window=self.window, keep_records=False)
                for p in grouper.passes_of_batches(reader.batches(lines)):
                    summary.add(conclude_legacy(p, self._legacy_rules(p).book), p.occurrence)
                summary.step_hits.update(reader.prefix_counts)
            else:
                reader = compiled
            self.emitted = summary.packets
            self._finish_kernel(source, reader)
            return
        result = NftReadResult()
        read = read_nft_monitor if fmt is LogFormat.NFT_MONITOR else read_xtables_monitor
        for q in NftGrouper(window=self.window).passes(read(source.lines(), result)):
            if q.events:
                summary.add(conclude_nft(q, self._nft_rules(q).book), q.occurrence)
                summary.step_hits.update(f"{e.table}:{e.chain}:{e.kind.value}" for e in q.events)
        self.emitted = summary.packets
        self._finish_nft(source, result)

    # -----------------------------------------------------------------------------------------

    def _legacy_rules(self, p: LegacyPass) -> Choice:
        if isinstance(self.book, NamespaceBooks):
            return self.book.choose(p.devs, ((i.table, i.chain) for i in p.infos))
        return self._fixed

    def _nft_rules(self, q: NftPass) -> Choice:
        if isinstance(self.book, NamespaceBooks):
            return self.book.choose((), ((e.table, e.chain) for e in q.events))
        return self._fixed

    def _start(self, source: LogSource) -> LogFormat:
        head = source.peek_lines(SNIFF_LINES)
        fmt = detect_format(head)
        self.summary.files.append(source.name)
        self.summary.formats[source.name] = fmt.value
        return fmt

    def _keep(self, obs: ObservedPacket) -> bool:
        """Apply --match; count a kept packet in the summary (its index is already emitted+1)."""
        if self.match is not None and not self.match.matches(obs):
            return False
        self.emitted += 1
        self.summary.add(obs.conclusion, obs.occurrence)
        self.summary.step_hits.update(_labels(obs))
        return True

    def _finish_kernel(self, source: LogSource, reader: KernelLogReader) -> None:
        counts = reader.counts
        self._report_counts(source, counts, reader.malformed)
        name = source.name
        for repair in reader.repairs[:MAX_REPORTED]:
            self.sink.warn(
                SourcePos(name, repair.line),
                "spaces lost between fields (copied from a web page?) put back before "
                + ", ".join(_unique(repair.before)),
            )
        if len(reader.repairs) > MAX_REPORTED:
            rest = reader.repairs[MAX_REPORTED:]
            self.sink.warn(
                SourcePos(name, rest[0].line),
                f"{len(rest)} more records had lost spaces between fields; they were put back "
                f"(lines {rest[0].line}-{rest[-1].line})",
            )
        if reader.no_dump_lines:
            n = len(reader.no_dump_lines)
            self.sink.warn(
                SourcePos(name, reader.no_dump_lines[0]),
                f"{n} TRACE record{'s' if n > 1 else ''} carry no packet dump (a tool's reformatted output?); "
                "they are grouped by line order only",
            )

    def _finish_nft(self, source: LogSource, result: NftReadResult) -> None:
        self._report_counts(source, result.counts, result.malformed)

    def _report_counts(
        self, source: LogSource, counts: LineCounts, malformed: list[Malformed]
    ) -> None:
        self.summary.lines.add(counts)
        name = source.name
        for bad in malformed[:MAX_REPORTED]:
            self.sink.warn(SourcePos(name, bad.line), f"malformed TRACE line skipped: {bad.reason}")
        if len(malformed) > MAX_REPORTED:
            rest = malformed[MAX_REPORTED:]
            self.sink.warn(
                SourcePos(name, rest[0].line),
                f"{len(rest)} more malformed TRACE lines skipped (lines {rest[0].line}-{rest[-1].line})",
            )
        if counts.total == 0:
            self.sink.warn(SourcePos(name, 0), "empty file")
        elif counts.not_text:
            self.sink.warn(
                SourcePos(name, counts.first_not_text or 1),
                f"{counts.not_text} line{'s' if counts.not_text > 1 else ''} are not text (binary data?) and were skipped",
            )
        if counts.total and not counts.parsed:
            self.sink.warn(SourcePos(name, 0), f"no TRACE records in {counts.total} lines")


def _unique(words: tuple[str, ...]) -> list[str]:
    """Each word once, in order of first appearance (``ID=`` is put back twice in a ping)."""
    return list(dict.fromkeys(words))


def _labels(obs: ObservedPacket) -> list[str]:
    """Step labels for the hit counts: ``table:chain:kind:number`` (or ``table:chain:kind``)."""
    out: list[str] = []
    for s in obs.trace.steps:
        if isinstance(s, NetfilterStep):
            number = f":{s.number}" if s.number is not None else ""
            out.append(f"{s.table}:{s.chain}:{s.kind.value}{number}")
    return out


def _chosen(obs: ObservedPacket, choice: Choice) -> ObservedPacket:
    """``obs`` with the namespace its rules came from, or the warning that none could be told."""
    if choice.netns is None and not choice.warning:
        return obs
    warnings = (*obs.warnings, choice.warning) if choice.warning else obs.warnings
    return replace(obs, netns=choice.netns, warnings=warnings)
