"""Observed against predicted for each live packet: the node is read (in process, read-only,
the run's namespace only) once the trace rules are in and again whenever the rules changed, and
every traced packet is walked on that snapshot and compared with what the kernel did
(``nodetrace.diagnosis``), as ``nodetrace explain`` does for a saved log.

Each snapshot is kept in a folder of its own (``nodetrace-live-*`` in the temporary folder),
named in a notice, because the evidence of a diagnosis quotes its files by line. This sits with
the command, not in ``live/``, which the layering keeps apart from ``diagnosis/``: the session
takes any object with ``refresh()`` and a call (``live.session.Diagnoser``).
Reading the node takes a moment (a second or two on a busy node); trace events wait in the
monitor's pipe or the kernel log meanwhile.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from nodetrace.diagnosis import diagnose_packets
from nodetrace.live.ports import read_node
from nodetrace.model.diagnosis import Diagnosis
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.tracelog.observed import ObservedPacket


class LiveDiagnosis:
    """Diagnoses packets against a snapshot of namespace ``netns`` taken now."""

    def __init__(self, netns: str, ovs_rundir: str | None = None) -> None:
        self.netns = netns
        self.ovs_rundir = ovs_rundir
        self.snapshot: Snapshot | None = None
        self.kept: list[Path] = []

    def refresh(self) -> str:
        """Read the node again; return where its snapshot is kept."""
        folder = Path(tempfile.mkdtemp(prefix="nodetrace-live-"))
        self.snapshot = read_node(self.netns, self.ovs_rundir, keep_in=folder)
        self.kept.append(folder)
        return str(folder)

    def __call__(self, obs: ObservedPacket) -> Diagnosis | None:
        if self.snapshot is None:
            return None
        # The snapshot was taken inside the run's namespace: there it is the main one.
        for _, diagnosis in diagnose_packets(self.snapshot, [obs], netns=MAIN_NS):
            return diagnosis
        return None
