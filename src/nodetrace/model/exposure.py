"""What a port's rules let through, as data: header-space classes and their outcome.

A *class* is a box in header space: one set of integers per dimension (source and destination
address, IP protocol, the two layer-4 words, fragment, conntrack state, source MAC, and one
yes/no dimension per ipset whose members are not known). Every packet of a class meets the same
rules and gets the same verdict, so a port's exposure is a short list of disjoint classes, each
with the rules that decided it. The audit computes them (``nodetrace.audit.exposure``); the
renderers print them; nothing here computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from nodetrace.model.packet import Family

Interval = tuple[int, int]
"""An inclusive range of integers."""
Intervals = tuple[Interval, ...]
"""A set of integers as sorted, disjoint, non-adjacent inclusive ranges."""
Box = tuple[Intervals, ...]
"""One set per dimension, in :class:`Dim` order, then one per atom."""


class Dim(IntEnum):
    """The dimensions of a class, in the order a :data:`Box` holds them."""

    SRC = 0
    DST = 1
    PROTO = 2
    L4A = 3
    """Source port (tcp, udp, sctp, udplite, dccp) or ICMP type."""
    L4B = 4
    """Destination port, or ICMP code."""
    FRAG = 5
    """0: the first (or only) fragment, which carries the layer-4 header; 1: a later one."""
    CT = 6
    """Conntrack state, numbered as :data:`CT_STATES`."""
    MAC = 7
    """Source MAC address as a 48-bit integer."""


BASE_DIMS = len(Dim)

CT_STATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")
"""The states a packet can have for ``-m state``/``-m conntrack --ctstate`` (index = value)."""

PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})
"""Protocols whose first layer-4 words are ports (tcp, udp, dccp, sctp, udplite)."""
ICMP_PROTOCOLS = frozenset({1, 58})


def universe(family: Family, atoms: int = 0) -> Box:
    """Every packet of ``family``."""
    width = 32 if family is Family.IPV4 else 128
    top = (1 << width) - 1
    return (
        ((0, top),),
        ((0, top),),
        ((0, 255),),
        ((0, 65535),),
        ((0, 65535),),
        ((0, 1),),
        ((0, len(CT_STATES) - 1),),
        ((0, (1 << 48) - 1),),
        *(((0, 1),) for _ in range(atoms)),
    )


class Direction(StrEnum):
    INBOUND = "inbound"
    """To the VM: the frames its bridge forwards out of its tap."""
    OUTBOUND = "outbound"
    """From the VM, forwarded beyond its bridge."""
    TO_HOST = "to_host"
    """From the VM to the node itself (the bridge's INPUT)."""


class Fate(StrEnum):
    ALLOWED = "allowed"
    DENIED = "denied"
    UNKNOWN = "unknown"
    IMPOSSIBLE = "impossible"
    """No packet the rules see has these headers in this state: a NOTRACK rule makes them
    UNTRACKED, only a NOTRACK rule does, and conntrack reassembles fragments first. Kept so
    the classes of a direction cover every packet exactly once."""


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule or flow that decided a class, as written and where it was read."""

    table: str
    chain: str
    position: int
    text: str
    source: str
    kind: str = "rule"
    """``rule`` (an iptables rule: ``position`` is its number in the chain) or ``flow`` (an
    OpenFlow flow: ``table`` is the bridge, ``chain`` the flow table, ``position`` its
    priority)."""


@dataclass(frozen=True, slots=True)
class HeaderClass:
    """A set of packets that all get the same fate for the same reason."""

    family: Family
    box: Box
    fate: Fate
    rules: tuple[RuleRef, ...]
    """The rules that jumped to, returned, accepted or dropped it, in the order met."""
    reason: str = ""
    """Why it is denied by a policy, or unknown; empty when a rule says it."""


@dataclass(frozen=True, slots=True)
class DirectionExposure:
    direction: Direction
    path: str
    """The hooks and devices crossed: ``PREROUTING,FORWARD,POSTROUTING qbrX qvbX->tapX``."""
    classes: tuple[HeaderClass, ...]
    assumptions: tuple[str, ...] = ()

    def of(self, fate: Fate) -> tuple[HeaderClass, ...]:
        return tuple(c for c in self.classes if c.fate is fate)


@dataclass(frozen=True, slots=True)
class PortExposure:
    port_id: str
    tap: str | None
    firewall: str | None
    atoms: tuple[str, ...]
    """What each atom dimension stands for (``src in ipset NAME (members not known)``)."""
    directions: tuple[DirectionExposure, ...]
    notes: tuple[str, ...] = ()

    def direction(self, which: Direction) -> DirectionExposure | None:
        return next((d for d in self.directions if d.direction is which), None)


@dataclass(frozen=True, slots=True)
class IntendedGap:
    """Traffic on which the rules and the intended security groups disagree."""

    direction: Direction
    family: Family
    box: Box
    kind: str
    """``allowed-not-intended`` or ``intended-not-allowed``."""
    rules: tuple[RuleRef, ...] = ()
    """For allowed traffic, the rules that allow it."""


@dataclass(frozen=True, slots=True)
class IntendedComparison:
    port_id: str
    gaps: tuple[IntendedGap, ...]
    notes: tuple[str, ...] = ()
