"""What a live run tells its user, as data: the start, notices, packets, status, summary.

The session produces these; the command renders them (text for people, JSON lines for
scripts), so both say the same things.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from nodetrace.tracelog.observed import ObservedPacket


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    netns: str
    backend: str
    backend_reason: str
    selectors: tuple[str, ...]
    """Each selector in flow syntax."""
    inserted: tuple[str, ...]
    """Each trace rule (or the nft table) as it is inserted."""
    capture: str
    ledger: str
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user must know while the run goes on.

    ``kind``: ``cleanup`` (leftovers of a dead run removed), ``reinserted`` (the trace rules
    vanished, e.g. the agent rewrote the table, and were put back), ``rules-changed`` (the
    ruleset was read again), ``snapshot`` (the node was read for predictions, and where that
    snapshot is kept), ``monitor`` (the monitor stopped and was restarted), ``lost``
    (kernel log records overwritten before they were read), ``problem``.
    """

    kind: str
    message: str
    elapsed: float


@dataclass(frozen=True, slots=True)
class Status:
    seen: int
    explained: int
    divergent: int | None
    """``None`` while no diagnosis is made (the comparison with a prediction is not available)."""
    elapsed: float


@dataclass(frozen=True, slots=True)
class LivePacket:
    index: int
    observed: ObservedPacket
    elapsed: float
    diagnosis: object | None = None
    """A :class:`nodetrace.diagnosis.Diagnosis` when the diagnosis could be made."""


@dataclass
class LiveSummary:
    run_id: str
    seen: int = 0
    explained: int = 0
    divergent: int | None = None
    outcomes: Counter[str] = field(default_factory=Counter)
    reinserted: int = 0
    rules_read: int = 0
    ignored: int = 0
    """Traced packets no selector of this run names (another tracer's, or another namespace's)."""
    stopped_by: str = ""
    elapsed: float = 0.0
    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    """Objects that could not be removed: the ledger is kept for ``nodetrace live cleanup``."""
    notices: list[Notice] = field(default_factory=list)


class Reporter(Protocol):
    def started(self, info: RunInfo) -> None: ...
    def notice(self, notice: Notice) -> None: ...
    def packet(self, packet: LivePacket) -> None: ...
    def status(self, status: Status) -> None: ...
    def finished(self, summary: LiveSummary) -> None: ...
