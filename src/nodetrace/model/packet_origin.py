"""Where each field of a simulated packet came from: the user, the node, or an assumption.

A trace is only as good as its packet. ``ofproto/trace`` prints the flow it traced first
(``Flow: ...``); a whole-node trace does the same and says, per field, whether the user gave it,
nodetrace derived it from the node's data (and from which output), or nodetrace assumed it
because nothing told it. A verdict that depends on an assumed field says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Origin(StrEnum):
    GIVEN = "given"
    """Written by the user in ``--packet``."""
    DERIVED = "derived"
    """Read from the node's data (a port's MAC, an ARP responder flow, a neighbour entry)."""
    ASSUMED = "assumed"
    """Nothing told it: a stated default the verdict may rest on."""


@dataclass(frozen=True, slots=True)
class FieldOrigin:
    """One packet field as traced, and why it has that value."""

    field: str
    """OVS flow-syntax name (``dl_dst``, ``nw_src``, ``arp_spa``, ``tp_src``)."""
    value: str
    origin: Origin
    source: str = ""
    """For ``derived``: the output it was read from; for ``assumed``: why this value."""

    def __str__(self) -> str:
        text = f"{self.field}={self.value} ({self.origin.value}"
        return text + (f": {self.source})" if self.source else ")")
