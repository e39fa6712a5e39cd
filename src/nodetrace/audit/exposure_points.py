"""Packets drawn from header space for the exposure cross-checks: inside a class (any value
of each dimension, the ranges' edges favoured) or anywhere, with the protocols and values rules
name made likely; and the packet a point of header space stands for."""

from __future__ import annotations

import random
from collections.abc import Sequence

from nodetrace.engine.conntrack import CtState
from nodetrace.model.exposure import (
    CT_STATES,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Box,
    Dim,
    Intervals,
)
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Family, Packet, TcpFlag


def _value(ivs: Intervals, rng: random.Random) -> int:
    lo, hi = rng.choice(ivs)
    r = rng.random()
    if r < 0.15:
        return lo
    if r < 0.3:
        return hi
    return rng.randint(lo, hi)


def sample_point(box: Box, rng: random.Random) -> tuple[int, ...]:
    return tuple(_value(ivs, rng) for ivs in box)


def packet_of(family: Family, point: Sequence[int], rng: random.Random) -> tuple[Packet, CtState]:
    """The packet a point of header space stands for, and its conntrack state."""
    from ipaddress import IPv4Address, IPv6Address

    addr = IPv4Address if family is Family.IPV4 else IPv6Address
    proto = point[Dim.PROTO]
    kw: dict[str, object] = {}
    if proto in PORT_PROTOCOLS:
        kw.update(tp_src=point[Dim.L4A], tp_dst=point[Dim.L4B])
        if proto == 6:
            kw["tcp_flags"] = int(TcpFlag.SYN)
    elif proto in ICMP_PROTOCOLS:
        kw.update(icmp_type=point[Dim.L4A], icmp_code=point[Dim.L4B])
    mac = point[Dim.MAC]
    packet = Packet(
        dl_src=":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -1, -8)),
        dl_dst="fa:16:3e:00:00:01",
        dl_type=ETH_TYPE_IPV4 if family is Family.IPV4 else ETH_TYPE_IPV6,
        nw_src=addr(point[Dim.SRC]),
        nw_dst=addr(point[Dim.DST]),
        nw_proto=proto,
        ip_frag_offset=rng.randint(1, 8191) if point[Dim.FRAG] else 0,
        **kw,  # type: ignore[arg-type]
    )
    return packet, CtState(CT_STATES[point[Dim.CT]])


def random_point(family: Family, rng: random.Random, atoms: int) -> tuple[int, ...]:
    """Anywhere in header space, with the protocols and values rules name made likely."""
    width = 32 if family is Family.IPV4 else 128
    proto = rng.choice((6, 6, 17, 1 if family is Family.IPV4 else 58, 58, 47, 132, 0))
    if proto in PORT_PROTOCOLS:
        l4a = rng.choice((rng.randint(0, 65535), 67, 68, 546, 547))
        l4b = rng.choice((rng.randint(0, 65535), 22, 80, 443, 53, 67, 68, 546, 547, 8080, 9090))
    elif proto in ICMP_PROTOCOLS:
        l4a, l4b = (
            rng.choice((0, 3, 8, 11, 130, 131, 134, 135, 136, 143, rng.randint(0, 255))),
            rng.randint(0, 3),
        )
    else:
        l4a = l4b = 0
    src = rng.choice((rng.getrandbits(width), 0))
    dst = rng.choice((rng.getrandbits(width), (1 << width) - 1))
    point = [
        src,
        dst,
        proto,
        l4a,
        l4b,
        int(rng.random() < 0.02),
        rng.choice((0, 0, 0, 1, 1, 2, 3, 4)),
        rng.getrandbits(48),
    ]
    return (*point, *(rng.randint(0, 1) for _ in range(atoms)))
