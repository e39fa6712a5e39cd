"""What a snapshot source offers before anything is parsed: one entry per command output.

Each reader (bundle, sosreport, plain folder) turns its files into a :class:`Listing`; the
loader then parses the entries it knows, whatever their origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetrace.model.netfilter import Backend
from nodetrace.model.snapshot import SourceKind
from nodetrace.model.topology import MAIN_NS
from nodetrace.snapshot.tree import SubTree

OK = "ok"


@dataclass(frozen=True, slots=True)
class Entry:
    """One command's output (or its absence) in a source.

    ``kind`` is the bundle's name for the command (``ip-link``, ``ovs-ofctl-dump-flows``...);
    ``path`` is the file inside the source, ``None`` when there is no output to read.
    """

    kind: str
    netns: str = MAIN_NS
    bridge: str | None = None
    path: str | None = None
    status: str = OK
    """``ok`` or why there is no usable output (``missing``, ``failed``, ``timeout``...)."""
    detail: str = ""
    truncated: bool = False
    flow_filter: str = ""
    """The match a flow dump was limited to: only part of the bridge's flows."""
    fallbacks: tuple[str, ...] = ()
    """Other files giving the same output, best first: read when ``path`` holds only the
    command's error (``ovs-ofctl`` failing to speak the bridge's OpenFlow version)."""


@dataclass
class Listing:
    """Everything a source holds, with its metadata."""

    kind: SourceKind
    root: SubTree
    host: str = ""
    kernel: str = ""
    kernel_source: str = ""
    """The output the kernel release was read from (empty: ``uname``)."""
    collected_at: str = ""
    iptables_backend: Backend = Backend.UNKNOWN
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Problems with the source itself (skipped archive members, unreadable manifest...)."""

    def find(self, kind: str, netns: str = MAIN_NS, bridge: str | None = None) -> Entry | None:
        for e in self.entries:
            if e.kind == kind and e.netns == netns and e.bridge == bridge:
                return e
        return None
