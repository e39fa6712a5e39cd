"""A crash-safe record of what a lab created, so teardown removes exactly that.

Each entry is appended (and flushed to disk) *before* the object is created: after a crash the
ledger may name something that was never made, which teardown tolerates, but it never misses
something that was. Entries are JSON lines: ``{"kind": "netns", "id": "..."}``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    """``netns``, ``daemon`` (id = pid, with ``path`` = its run folder), ``dir``, ``sysctl``."""
    id: str
    path: str = ""
    extra: str = ""


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, entry: Entry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[Entry]:
        """Recorded entries, oldest first. A torn last line (crash mid-write) is ignored."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                d = json.loads(line)
                out.append(Entry(d["kind"], d["id"], d.get("path", ""), d.get("extra", "")))
            except (ValueError, KeyError):
                continue
        return out
