"""IP sets as data: the sets ``ipset save`` prints, with typed members.

A set's type (``hash:ip,port``) is a list of *dimensions*; every member is one typed part per
dimension, so ``10.0.0.1,tcp:80`` in a ``hash:ip,port`` set becomes a :class:`NetPart` and a
:class:`PortPart`. Matching code (``-m set --match-set NAME src,dst``) walks the parts in the
order the iptables rule names directions, which is why the parts keep the type's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from nodetrace.errors import SourcePos
from nodetrace.model.packet import Family, IPProto

IPNetwork = IPv4Network | IPv6Network


class Dimension(StrEnum):
    """One component of a set type name (``hash:net,port`` has ``net`` and ``port``)."""

    IP = "ip"
    NET = "net"
    PORT = "port"
    MAC = "mac"
    IFACE = "iface"
    MARK = "mark"
    SET = "set"


class Method(StrEnum):
    """The storage method before the colon of a type name; it decides which options exist."""

    HASH = "hash"
    BITMAP = "bitmap"
    LIST = "list"


@dataclass(frozen=True, slots=True)
class NetPart:
    """An address or a network. ``hash:ip`` members are host networks (/32, /128) unless the
    set has a ``netmask``; ``hash:net`` members may have any prefix."""

    network: IPNetwork

    def contains(self, addr: IPv4Address | IPv6Address) -> bool:
        return addr in self.network


PORT_PROTOCOLS: dict[int, str] = {
    IPProto.TCP: "tcp",
    IPProto.UDP: "udp",
    IPProto.SCTP: "sctp",
    IPProto.UDPLITE: "udplite",
}
"""The protocol a :class:`PortPart` names (``tcp:80``), by IP protocol number."""


@dataclass(frozen=True, slots=True)
class PortPart:
    """A protocol and port (``tcp:80``). ``bitmap:port`` members carry no protocol (``""``)."""

    proto: str
    port: int


@dataclass(frozen=True, slots=True)
class IcmpPart:
    """An ICMP type/code in a port dimension (``icmp:echo-request``, ``icmpv6:1/4``).

    ``name`` keeps the symbolic form ipset printed; ``icmp_type``/``icmp_code`` are set when the
    member was numeric or the name is one ipset documents.
    """

    proto: str
    name: str
    icmp_type: int | None = None
    icmp_code: int | None = None


@dataclass(frozen=True, slots=True)
class MacPart:
    mac: str
    """Lower case, zero padded, colon separated (ipset prints upper case)."""


@dataclass(frozen=True, slots=True)
class IfacePart:
    name: str
    physdev: bool = False
    """``physdev:tap1``: the bridge port rather than the logical device."""


@dataclass(frozen=True, slots=True)
class MarkPart:
    value: int


@dataclass(frozen=True, slots=True)
class SetPart:
    """A member of a ``list:set``: another set, by name."""

    name: str


Part = NetPart | PortPart | IcmpPart | MacPart | IfacePart | MarkPart | SetPart


@dataclass(frozen=True, slots=True)
class Member:
    """One ``add`` line: a part per dimension of the set's type plus the per-member options."""

    parts: tuple[Part, ...]
    nomatch: bool = False
    """``nomatch`` excludes the member's network from a ``hash:net*`` set."""
    timeout: int | None = None
    packets: int | None = None
    bytes: int | None = None
    comment: str | None = None
    skbmark: tuple[int, int] | None = None
    """(value, mask) from ``skbmark 0x1/0xff``."""
    skbprio: str | None = None
    skbqueue: int | None = None
    text: str = ""
    """The member as ipset printed it, for messages."""
    pos: SourcePos | None = None


@dataclass(frozen=True, slots=True)
class CreateOptions:
    """Options of a ``create`` line that change what a set matches or how it is shown."""

    hashsize: int | None = None
    maxelem: int | None = None
    timeout: int | None = None
    """Default member timeout in seconds; members then expire (a snapshot ages)."""
    netmask: int | None = None
    """``hash:ip ... netmask 24``: members are stored as networks of this prefix."""
    counters: bool = False
    comment: bool = False
    skbinfo: bool = False
    forceadd: bool = False
    range: str | None = None
    """``bitmap:*`` sets: the range they cover, as printed."""
    size: int | None = None
    """``list:set`` capacity."""
    other: tuple[tuple[str, str], ...] = ()
    """Options nodetrace does not interpret (``bucketsize``, ``initval``...), kept as printed."""


@dataclass(frozen=True, slots=True)
class IpSet:
    name: str
    method: Method
    dimensions: tuple[Dimension, ...]
    family: Family | None
    """``None`` for sets without a family (``bitmap:port``, ``hash:mac``, ``list:set``)."""
    options: CreateOptions = field(default_factory=CreateOptions)
    members: tuple[Member, ...] = ()
    pos: SourcePos | None = None

    @property
    def type_name(self) -> str:
        return f"{self.method.value}:{','.join(d.value for d in self.dimensions)}"


@dataclass(frozen=True, slots=True)
class IpSets:
    """Every set one ``ipset save`` printed, by name, in the order printed."""

    sets: dict[str, IpSet] = field(default_factory=dict)
    source: str = ""

    def get(self, name: str) -> IpSet | None:
        return self.sets.get(name)

    def __iter__(self) -> Iterator[IpSet]:
        return iter(self.sets.values())

    def __len__(self) -> int:
        return len(self.sets)
