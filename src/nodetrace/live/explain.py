"""Explain a live run's trace events with the rules the node holds now.

The rules are read with the back end's own ``iptables-save``/``ip6tables-save`` in the run's
namespace after the trace rules are in (so the kernel's rule numbers match what is read), and
read again when they change: on a schedule, and whenever the run had to put its rules back. Each
batch of captured lines goes through the same pipeline as ``nodetrace log`` (``tracelog/``), so
a live packet reads exactly as the same lines would in a saved log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodetrace.errors import Diagnostic, DiagnosticSink
from nodetrace.live.capture import lines_text
from nodetrace.live.command import CommandError, run
from nodetrace.live.rules import Backend
from nodetrace.model.packet import Family
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import open_bytes

_COUNTERS = re.compile(r"\[\d+:\d+\]")
_QUIET = ("empty file", "no TRACE records in")
"""Pipeline remarks about a batch as a whole, which say nothing about a live stream."""


def without_counters(save: str) -> str:
    """``iptables-save`` text without its comment lines and packet/byte counters."""
    return "\n".join(
        _COUNTERS.sub("[0:0]", line) for line in save.splitlines() if not line.startswith("#")
    )


@dataclass
class LiveRules:
    """The rules of one namespace and back end, as last read, for explaining."""

    netns: str
    backend: Backend
    families: tuple[Family, ...]
    book: RuleBook | None = None
    problems: list[str] = field(default_factory=list)
    _seen: str | None = None

    def read(self) -> bool:
        """Read the rules again; True when they differ from the last read (counters aside)."""
        if self.backend is Backend.NFTABLES:
            return False  # native rules are not iptables rules: steps keep the monitor's text
        texts: dict[Family, str] = {}
        for family in self.families:
            tool = f"{self.backend.tool(family)}-save"
            try:
                texts[family] = run([tool], netns=self.netns).stdout
            except CommandError as err:
                self.problems.append(str(err))
        key = "\n".join(without_counters(texts[f]) for f in sorted(texts))
        if key == self._seen:
            return False
        self._seen = key
        book = RuleBook()
        for family, text in texts.items():
            if text.strip():
                source = f"{self.backend.tool(family)}-save" + (
                    f" in {self.netns}" if self.netns else ""
                )
                sink = DiagnosticSink()
                book.rulesets[family] = parse_iptables_save(
                    text, source=source, family=family, sink=sink
                )
                self.problems += [str(d) for d in sink.items]
        book.sources = tuple(f"{self.backend.tool(f)}-save" for f in book.rulesets)
        self.book = book if book.rulesets else None
        return True


def explain_lines(
    lines: list[str], book: RuleBook | None, source: str
) -> tuple[list[ObservedPacket], list[Diagnostic]]:
    """The packets of a batch of trace lines, explained as ``nodetrace log`` explains them, and
    what the pipeline reported about the lines (malformed ones above all)."""
    sink = DiagnosticSink()
    analysis = Analysis(book=book, sink=sink)
    packets = list(analysis.packets(open_bytes(source, lines_text(lines), sink)))
    problems = [d for d in sink.items if not d.message.startswith(_QUIET)]
    return packets, problems
