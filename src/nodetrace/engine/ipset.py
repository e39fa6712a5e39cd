"""Whether a packet is in an IP set, as ``-m set --match-set NAME src,dst`` asks the kernel.

Each dimension of the set's type takes the packet field the rule's direction flag names, in
order: ``hash:net,port`` with ``src,dst`` compares the source address with the net part and the
destination port with the port part. ``hash:net`` sets honour ``nomatch`` members the way the
kernel does: the most specific matching member wins, and a ``nomatch`` winner means "not in the
set" (or "in the set" with ``--return-nomatch``). ``list:set`` tries its member sets in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodetrace.model.ipset import (
    PORT_PROTOCOLS,
    Dimension,
    IcmpPart,
    IfacePart,
    IpSet,
    IpSets,
    MacPart,
    MarkPart,
    Member,
    Method,
    NetPart,
    PortPart,
    SetPart,
)
from nodetrace.model.packet import Family, IPProto, Packet


@dataclass(frozen=True, slots=True)
class SetContext:
    """What a set lookup may read beyond the packet headers."""

    in_dev: str = ""
    out_dev: str = ""
    physin: str | None = None
    physout: str | None = None
    mark: int = 0
    mac_valid: bool = True
    """False in OUTPUT/POSTROUTING, where the kernel has no MAC header to look at."""


class SetUnknown(Exception):
    """The lookup cannot be decided from what is known (missing set, unmodelled type...)."""


def _part_matches(dim: Dimension, part: object, packet: Packet, src: bool, ctx: SetContext) -> bool:
    if dim in (Dimension.IP, Dimension.NET):
        addr = packet.nw_src if src else packet.nw_dst
        return isinstance(part, NetPart) and addr is not None and addr in part.network
    if dim is Dimension.PORT:
        port = packet.tp_src if src else packet.tp_dst
        if isinstance(part, PortPart):
            proto = PORT_PROTOCOLS.get(packet.nw_proto)
            if part.proto == "":
                return proto is not None and port == part.port
            return proto == part.proto and port == part.port
        if isinstance(part, IcmpPart):
            if part.icmp_type is None:
                raise SetUnknown(f"ICMP name {part.name!r} in a set is not known to nodetrace")
            want = "icmp" if packet.nw_proto == IPProto.ICMP else "icmpv6"
            return (
                packet.nw_proto in (IPProto.ICMP, IPProto.ICMPV6)
                and part.proto == want
                and packet.icmp_type == part.icmp_type
                and packet.icmp_code == part.icmp_code
            )
        return False
    if dim is Dimension.MAC:
        if not ctx.mac_valid:
            raise SetUnknown("MAC sets are not matched where the frame has no MAC header")
        mac = packet.dl_src if src else packet.dl_dst
        return isinstance(part, MacPart) and part.mac == mac.lower()
    if dim is Dimension.IFACE:
        if not isinstance(part, IfacePart):
            return False
        if part.physdev:
            dev = ctx.physin if src else ctx.physout
        else:
            dev = ctx.in_dev if src else ctx.out_dev
        return dev is not None and dev == part.name
    if dim is Dimension.MARK:
        return isinstance(part, MarkPart) and part.value == ctx.mark
    raise SetUnknown(f"set dimension {dim.value} is not modelled")


def _specificity(member: Member) -> tuple[int, ...]:
    return tuple(p.network.prefixlen for p in member.parts if isinstance(p, NetPart))


class SetIndex:
    """Fast membership for sets of one address dimension (``hash:ip``, ``hash:net``: what
    Neutron's remote-group sets are): per prefix length, the member networks as integers, so a
    lookup costs one dict probe per distinct prefix length instead of a scan of every member."""

    def __init__(self) -> None:
        self._by_set: dict[int, list[tuple[int, dict[int, bool]]] | None] = {}

    def lookup(self, ipset: IpSet, addr: int) -> bool | None:
        """True/False for "in the set" (nomatch members already applied as the kernel's longest
        match does); ``None`` when the set is not a one-dimension address set."""
        table = self._by_set.get(id(ipset), ())
        if table == ():
            table = self._build(ipset)
            self._by_set[id(ipset)] = table
        if table is None:
            return None
        for mask, nets in table:
            hit = nets.get(addr & mask)
            if hit is not None:
                return not hit
        return False

    @staticmethod
    def _build(ipset: IpSet) -> list[tuple[int, dict[int, bool]]] | None:
        if len(ipset.dimensions) != 1 or ipset.dimensions[0] not in (Dimension.IP, Dimension.NET):
            return None
        by_len: dict[int, dict[int, bool]] = {}
        width = 128 if ipset.family is Family.IPV6 else 32
        for member in ipset.members:
            part = member.parts[0] if member.parts else None
            if not isinstance(part, NetPart):
                return None
            net = part.network
            by_len.setdefault(net.prefixlen, {})[int(net.network_address)] = member.nomatch
        full = (1 << width) - 1
        return [
            (full ^ ((1 << (width - plen)) - 1), nets)
            for plen, nets in sorted(by_len.items(), reverse=True)
        ]


def in_set(
    sets: IpSets,
    name: str,
    directions: tuple[str, ...],
    packet: Packet,
    ctx: SetContext,
    *,
    return_nomatch: bool = False,
    depth: int = 0,
    index: SetIndex | None = None,
) -> bool:
    """True when the packet is in set ``name`` under the given src/dst flags.

    Raises :class:`SetUnknown` when the answer cannot be known from the sets given.
    """
    ipset = sets.get(name)
    if ipset is None:
        raise SetUnknown(f"set {name!r} is not in the ipset data given")
    if ipset.method is Method.LIST:
        if depth > 0:
            raise SetUnknown("list:set inside list:set")
        for member in ipset.members:
            part = member.parts[0] if member.parts else None
            if isinstance(part, SetPart) and in_set(
                sets,
                part.name,
                directions,
                packet,
                ctx,
                return_nomatch=return_nomatch,
                depth=1,
                index=index,
            ):
                return True
        return False
    if index is not None and not return_nomatch and ipset.family is packet.family:
        addr = packet.nw_src if directions[:1] == ("src",) else packet.nw_dst
        if addr is not None:
            hit = index.lookup(ipset, int(addr))
            if hit is not None:
                return hit
    return _hash_lookup(ipset, directions, packet, ctx, return_nomatch)


def _hash_lookup(
    ipset: IpSet, directions: tuple[str, ...], packet: Packet, ctx: SetContext, return_nomatch: bool
) -> bool:
    dims = ipset.dimensions
    # A dimension without a flag reads as "dst": the kernel tests a per-dimension src bit.
    flags = tuple(directions[i] if i < len(directions) else "dst" for i in range(len(dims)))
    if ipset.family is not None and packet.family is not None and ipset.family is not packet.family:
        return False
    best: Member | None = None
    for member in ipset.members:
        hit = all(
            _part_matches(dim, part, packet, flags[i] == "src", ctx)
            for i, (dim, part) in enumerate(zip(dims, member.parts, strict=False))
        )
        if hit and (best is None or _specificity(member) > _specificity(best)):
            best = member
    if best is None:
        return False
    supports_nomatch = Dimension.NET in dims
    if not (return_nomatch and supports_nomatch):
        return not best.nomatch
    # ip_set_test(): --return-nomatch swaps the answer for sets that know nomatch.
    return best.nomatch
