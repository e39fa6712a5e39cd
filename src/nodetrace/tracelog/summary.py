"""The summary of a whole log: packets by outcome, the rules that dropped most, chains by hits.

It is fed one conclusion per packet and the chain hits of its steps, so a log of millions of
lines is summarised without keeping its packets.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nodetrace.model.trace import Outcome
from nodetrace.parsers.trace_kernel_log import LineCounts
from nodetrace.tracelog.observed import Conclusion


@dataclass
class Summary:
    packets: int = 0
    again: int = 0
    """Passes of a packet seen before (retransmissions, copies, second bridge passes)."""
    by_outcome: Counter[str] = field(default_factory=Counter)
    dropping: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(step label, rule text or "") -> packets that step dropped or rejected."""
    ends_at: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(last step label, rule text or "") -> packets whose trace ends there without a verdict."""
    step_hits: Counter[str] = field(default_factory=Counter)
    """``table:chain:kind:number`` (or an nf_tables label) -> times logged."""
    lines: LineCounts = field(default_factory=LineCounts)
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)

    def add(self, conclusion: Conclusion, occurrence: int = 1) -> None:
        """One packet's pass; ``occurrence`` > 1: a packet seen before."""
        self.add_passes(conclusion, 1, 1 if occurrence > 1 else 0)

    def add_passes(self, conclusion: Conclusion, passes: int, again: int) -> None:
        """``passes`` packets with the same conclusion, ``again`` of them seen before."""
        self.packets += passes
        self.again += again
        self.by_outcome[conclusion.outcome.value] += passes
        if conclusion.deciding:
            key = (conclusion.deciding, conclusion.deciding_rule or "")
            if conclusion.outcome in (Outcome.DROPPED, Outcome.REJECTED):
                self.dropping[key] += passes
            elif conclusion.outcome is Outcome.ENDS:
                self.ends_at[key] += passes

    def chain_hits(self) -> Counter[str]:
        """Hits per ``table:chain``, from the per-step counts."""
        chains: Counter[str] = Counter()
        for label, count in self.step_hits.items():
            parts = label.split(":")
            if len(parts) >= 3 and parts[-2] in ("rule", "return", "policy"):
                chains[":".join(parts[:-2])] += count
            else:
                chains[":".join(parts[:2])] += count
        return chains

    def as_json(self, top: int = 10) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "seen_again": self.again,
            "by_outcome": {o.value: self.by_outcome.get(o.value, 0) for o in _OUTCOMES},
            "top_dropping_rules": [
                {"step": label, "rule": rule or None, "packets": count}
                for (label, rule), count in self.dropping.most_common(top)
            ],
            "traces_end_at": [
                {"step": label, "rule": rule or None, "packets": count}
                for (label, rule), count in self.ends_at.most_common(top)
            ],
            "chains_by_hits": [
                {"chain": chain, "hits": count}
                for chain, count in self.chain_hits().most_common(top)
            ],
            "lines": {
                "total": self.lines.total,
                "parsed": self.lines.parsed,
                "skipped": self.lines.skipped,
                "malformed": self.lines.malformed,
                "not_text": self.lines.not_text,
            },
            "files": [{"file": f, "format": self.formats.get(f)} for f in self.files],
        }


_OUTCOMES = (Outcome.ACCEPTED, Outcome.DROPPED, Outcome.REJECTED, Outcome.ENDS)
