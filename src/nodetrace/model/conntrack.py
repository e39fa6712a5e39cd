"""Connections as the kernel's tracker keys them: one vocabulary for a dump and the engine.

A tracked connection is a pair of tuples, the original direction and the reply, in a zone.
``dpctl/dump-conntrack`` prints the tracker's table (read into a :class:`ConntrackDump` of
:class:`ConntrackEntry` records, which the OpenFlow engine consults after ``ct()``); the
netfilter engine keeps its own live table of the same tuples (``engine/conntrack.py``). Both
key a connection the way ``nf_conntrack`` does, so one :class:`ConnTuple` serves both.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from nodetrace.errors import SourcePos
from nodetrace.model.netfilter import PROTOCOL_NUMBERS

IPAddress = IPv4Address | IPv6Address

ICMP_PROTOCOLS = frozenset({1, 58})
PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})
"""TCP, UDP, DCCP, SCTP and UDP-Lite: the protocols a tuple keys by ports."""


@dataclass(frozen=True, slots=True)
class ConnTuple:
    """One direction of a connection: addresses, protocol and the protocol's identifiers.

    For TCP/UDP/SCTP ``sport``/``dport`` are ports; for ICMP ``sport`` is the query id and
    ``dport`` the type (the kernel keys ICMP queries by type and id, never by code); for other
    protocols both are 0.
    """

    src: IPAddress
    dst: IPAddress
    proto: int
    sport: int = 0
    dport: int = 0

    @property
    def icmp_id(self) -> int | None:
        return self.sport if self.proto in ICMP_PROTOCOLS else None

    @property
    def icmp_type(self) -> int | None:
        return self.dport if self.proto in ICMP_PROTOCOLS else None


def protocol_number(name: str) -> int | None:
    """The IP protocol a conntrack dump names (``tcp``, ``icmp6``, ``47``); ``None`` if unknown."""
    if name.isdigit():
        return int(name)
    return PROTOCOL_NUMBERS.get("icmpv6" if name == "icmp6" else name)


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    """A connection the tracker knows, with its zone, mark, labels and protocol state."""

    orig: ConnTuple
    reply: ConnTuple
    zone: int = 0
    mark: int = 0
    labels: int = 0
    state: str | None = None
    """The TCP/SCTP state (``ESTABLISHED``, ``SYN_SENT`` ...), when the tracker shows one."""
    pos: SourcePos | None = None

    @property
    def proto(self) -> int:
        return self.orig.proto


@dataclass(frozen=True, slots=True)
class ConntrackDump:
    """What ``dpctl/dump-conntrack`` printed: the tracker's connections at that moment."""

    entries: tuple[ConntrackEntry, ...] = ()
    source: str = ""
