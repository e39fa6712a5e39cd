"""Observed against predicted: for a packet the node was seen to handle (a TRACE log, a live
capture), walk the same packet on a snapshot of the node, find where the two part, and name
where and why it was lost from a documented catalogue of causes (docs/explain.md).

Pure computation on what it is given: no process is started, and the only files read are the
log and snapshot handed to it, through ``tracelog`` and ``snapshot``.
"""

from nodetrace.diagnosis.catalogue import CauseId
from nodetrace.diagnosis.diagnose import diagnose
from nodetrace.diagnosis.from_log import (
    PacketDiagnoser,
    diagnose_log,
    diagnose_packets,
    request_for,
)
from nodetrace.model.diagnosis import Cause, Diagnosis, Layer

__all__ = [
    "Cause",
    "CauseId",
    "Diagnosis",
    "Layer",
    "PacketDiagnoser",
    "diagnose",
    "diagnose_log",
    "diagnose_packets",
    "request_for",
]
