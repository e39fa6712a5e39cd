"""Who owns a ledger: a process named by its pid *and* its start time, so a recycled pid is
never mistaken for the run that wrote the ledger."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcessId:
    pid: int
    start: int
    """Clock ticks since boot at which the process started (``/proc/PID/stat`` field 22)."""

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        start = start_time(pid)
        return cls(pid, start) if start is not None else None

    @classmethod
    def me(cls) -> ProcessId:
        me = cls.of(os.getpid())
        if me is None:  # /proc is not mounted: cannot tell a live owner from a dead one
            raise OSError("/proc/self/stat is unreadable")
        return me

    def alive(self) -> bool:
        """True while this very process runs (not another one that got the same pid)."""
        return start_time(self.pid) == self.start


def start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); starttime is field 22.
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
