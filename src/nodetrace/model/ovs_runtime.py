"""Open vSwitch's runtime state as data: OpenFlow port numbers, the MAC learning table and
the userspace connection tracker.

These come from ``ovs-ofctl show``, ``ovs-appctl fdb/show`` and ``ovs-appctl
dpctl/dump-conntrack``; they change while the switch runs, so a trace that uses them says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from nodetrace.errors import SourcePos

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class OfPort:
    """A port line of ``ovs-ofctl show``: its OpenFlow number, name and flags."""

    number: int
    """The OpenFlow port number; ``LOCAL`` is 65534."""
    name: str
    mac: str | None = None
    config: tuple[str, ...] = ()
    """``PORT_DOWN``, ``NO_FLOOD``, ``NO_FWD``, ``NO_RECV`` ... (empty for ``config: 0``)."""
    state: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OfctlShow:
    ports: tuple[OfPort, ...] = ()
    datapath_id: str | None = None
    n_tables: int | None = None
    source: str = ""

    def by_name(self, name: str) -> OfPort | None:
        for p in self.ports:
            if p.name == name:
                return p
        return None


@dataclass(frozen=True, slots=True)
class MacEntry:
    """A line of ``ovs-appctl fdb/show``: ``mac`` in ``vlan`` was learned on OpenFlow ``port``."""

    port: int
    vlan: int
    mac: str
    age: int | None = None
    """Seconds since last seen; ``None`` for a static entry."""
    pos: SourcePos | None = None


@dataclass(frozen=True, slots=True)
class MacTable:
    entries: tuple[MacEntry, ...] = ()
    source: str = ""

    def lookup(self, mac: str, vlan: int) -> MacEntry | None:
        for e in self.entries:
            if e.mac == mac and e.vlan == vlan:
                return e
        return None


@dataclass(frozen=True, slots=True)
class CtTuple:
    """One direction of a connection, as ``dpctl/dump-conntrack`` prints it."""

    src: IPAddress
    dst: IPAddress
    sport: int | None = None
    dport: int | None = None
    icmp_id: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    """A connection known to the tracker, with its zone, mark, labels and protocol state."""

    proto: str
    """``tcp``, ``udp``, ``icmp``, ``icmpv6``, ``sctp`` or a protocol number."""
    orig: CtTuple
    reply: CtTuple
    zone: int = 0
    mark: int = 0
    labels: int = 0
    state: str | None = None
    """The TCP/SCTP state (``ESTABLISHED``, ``SYN_SENT`` ...), when the tracker shows one."""
    pos: SourcePos | None = None


@dataclass(frozen=True, slots=True)
class ConntrackTable:
    entries: tuple[ConntrackEntry, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True)
class DpifPort:
    """A port line of ``ovs-appctl dpif/show``: OpenFlow number and datapath port number."""

    bridge: str
    name: str
    ofport: int
    dp_port: int | None
    """``None`` for ports with no datapath port (patch ports)."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DpifShow:
    ports: tuple[DpifPort, ...] = ()
    source: str = ""

    def by_dp_port(self, number: int) -> DpifPort | None:
        for p in self.ports:
            if p.dp_port == number:
                return p
        return None
