"""What a diagnosis says: where a packet was lost (the layer and the place), why (a cause
from the catalogue, with the facts it rests on and a read-only command to confirm it), and the
two traces it compared.

These are the types every consumer shares: ``nodetrace explain``, ``nodetrace live trace``
(one diagnosis per captured packet) and the pages that draw observed next to predicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nodetrace.model.trace import Trace
from nodetrace.model.trace_diff import TraceDiff


class Layer(StrEnum):
    """Where the packet was lost or went astray."""

    NETFILTER = "netfilter"
    OPENFLOW = "openflow"
    BRIDGE = "bridge"
    """A Linux bridge and its forwarding table (or OVS's MAC learning table)."""
    DEVICE = "device"
    """A device's link state, its MTU, its drop counters."""
    ROUTING = "routing"
    """Routes, rp_filter, ip_forward, neighbours."""
    CONNTRACK = "conntrack"
    TUNNEL = "tunnel"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Cause:
    """A likely cause, by its catalogue id (docs/explain.md)."""

    id: str
    title: str
    """One line for people."""
    evidence: tuple[str, ...]
    """The facts it rests on, each with its source (file:line, rule or flow text, sysctl)."""
    confirm: str = ""
    """A read-only command an operator runs on the node to confirm it."""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One packet: what the node did, what its snapshot says it should do, where they part,
    and where and why the packet was lost."""

    observed: Trace | None
    """What the node did (``None``: nothing was observed)."""
    predicted: Trace
    """What the snapshot says (the whole-node walk)."""
    divergence: TraceDiff | None
    """The first difference between ``observed`` and what of ``predicted`` the observation
    could show (``None`` when nothing was observed)."""
    layer: Layer
    location: str
    """Where: ``filter FORWARD rule 12: -A ... -j DROP``, ``br-int table 60``, ``qvb1234 (down)``."""
    cause: Cause | None
    """``None``: the packet was not lost (observed and predicted agree that it passes)."""
    notes: tuple[str, ...] = ()
    """How the prediction was set up: what was derived from the observation (its start, its
    connection state) and what could not be."""
    compared: Trace | None = None
    """The part of ``predicted`` the observation could show (a TRACE log shows one netfilter
    pass): what ``divergence`` compared ``observed`` with, step for step."""

    @property
    def agrees(self) -> bool:
        """The observation and the prediction were compared and agree."""
        return self.divergence is not None and self.divergence.same

    @property
    def compared_with_observation(self) -> bool:
        """An observation was compared with a prediction (not the case when nothing was
        observed, or when the observation did not say enough to predict the packet)."""
        return self.divergence is not None
