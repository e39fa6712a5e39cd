"""The exposure classes checked against the netfilter engine, packet by packet.

A packet is drawn either inside a class (any value of each of its dimensions, ranges' edges
favoured) or anywhere in header space; it is then found among the port's classes, which must
hold it exactly once, and run through ``engine/netfilter.py`` along the same hooks with the
conntrack state the class names (as ``nodetrace iptables --ct-state`` does). The engine's
verdict must be the class's fate: accept for allowed, drop or reject for denied. Classes that
depend on an ipset atom are not checked (the engine has no members to look up), nor unknown
ones (the engine may know more, e.g. a connection mark it takes as 0).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from nodetrace.audit.exposure import NodeExposure, hybrid_paths
from nodetrace.audit.exposure_eval import HookPath
from nodetrace.engine.conntrack import CtState
from nodetrace.engine.netfilter import CtFacts, NetfilterEngine, NodeFacts
from nodetrace.model.exposure import (
    BASE_DIMS,
    CT_STATES,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Box,
    Dim,
    Direction,
    Fate,
    HeaderClass,
    Intervals,
    PortExposure,
)
from nodetrace.model.header_space import box_contains
from nodetrace.model.node_inventory import PortInfo
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Family, Packet, TcpFlag
from nodetrace.model.verdict import Verdict

_EXPECTED = {Fate.ALLOWED: {Verdict.ACCEPT}, Fate.DENIED: {Verdict.DROP, Verdict.REJECT}}


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


@dataclass
class CheckResult:
    packets: int = 0
    agreed: int = 0
    unknown: int = 0
    """Packets in an unknown class (not compared)."""
    atoms: int = 0
    """Packets in a class that depends on an ipset atom (not compared)."""
    impossible: int = 0
    """Packets no rule can see (UNTRACKED without NOTRACK, later fragments): not compared."""
    disagreements: list[str] = field(default_factory=list)

    def add(self, other: CheckResult) -> None:
        self.packets += other.packets
        self.agreed += other.agreed
        self.unknown += other.unknown
        self.atoms += other.atoms
        self.impossible += other.impossible
        self.disagreements += other.disagreements


class Checker:
    """Runs packets of one node's ports through the engine and through the classes."""

    def __init__(self, node: NodeExposure) -> None:
        self.node = node
        self._engines: dict[Family, NetfilterEngine] = {}

    def engine(self, family: Family) -> NetfilterEngine | None:
        if family not in self._engines:
            ns = self.node.ns
            ruleset = ns.ruleset(family) if ns is not None else None
            if ruleset is None:
                return None
            facts = NodeFacts(local_addresses=self.node.local_addresses)
            self._engines[family] = NetfilterEngine(
                ruleset, ipsets=ns.ipsets if ns else None, facts=facts
            )
        return self._engines[family]

    def check_port(
        self, port: PortInfo, exp: PortExposure, count: int, rng: random.Random
    ) -> CheckResult:
        result = CheckResult()
        paths = hybrid_paths(port)
        if paths is None:
            return result
        for _ in range(count):
            direction = rng.choice(list(Direction))
            d = exp.direction(direction)
            assert d is not None
            family = rng.choice(list(Family))
            classes = [c for c in d.classes if c.family is family]
            if not classes:
                continue
            atoms = len(classes[0].box) - BASE_DIMS
            seen = [c for c in classes if c.fate is not Fate.IMPOSSIBLE]
            if seen and rng.random() < 0.5:
                point = sample_point(rng.choice(seen).box, rng)
            else:
                point = random_point(family, rng, atoms)
            self.check_point(
                result,
                f"{port.port_id} {direction.value}",
                paths.of(direction),
                family,
                classes,
                point,
                rng,
            )
        return result

    def check_point(
        self,
        result: CheckResult,
        where: str,
        path: HookPath,
        family: Family,
        classes: Sequence[HeaderClass],
        point: tuple[int, ...],
        rng: random.Random,
    ) -> None:
        """Add to ``result`` whether the class holding ``point`` and the engine agree."""
        check_point(self.engine(family), result, where, path, family, classes, point, rng)


def check_point(
    engine: NetfilterEngine | None,
    result: CheckResult,
    where: str,
    path: HookPath,
    family: Family,
    classes: Sequence[HeaderClass],
    point: tuple[int, ...],
    rng: random.Random,
) -> None:
    """One packet: found in exactly one class, and given that class's fate by the engine."""
    holding = [c for c in classes if box_contains(c.box, point)]
    result.packets += 1
    if len(holding) != 1:
        result.disagreements.append(
            f"{where} {family.value} point {point}: in {len(holding)} classes"
        )
        return
    cls = holding[0]
    if cls.fate is Fate.IMPOSSIBLE:
        result.impossible += 1
        return
    if cls.fate is Fate.UNKNOWN:
        result.unknown += 1
        return
    if any(ivs != ((0, 1),) for ivs in cls.box[BASE_DIMS:]):
        result.atoms += 1
        return
    if engine is None:
        result.disagreements.append(f"{where}: a {cls.fate.value} class of a family without rules")
        return
    packet, state = packet_of(family, point, rng)
    got = engine.run(packet, path, ct=CtFacts(state=state))
    if got.verdict in _EXPECTED[cls.fate]:
        result.agreed += 1
    else:
        result.disagreements.append(
            f"{where}: {packet.flow_text()} ct={state.value}: class "
            f"{cls.fate.value}, engine {got.verdict.value} ({got.trace.reason})"
        )


def cross_check(node: NodeExposure, packets: int, *, seed: int = 0) -> CheckResult:
    """``packets`` packets spread over the node's VM ports."""
    rng = random.Random(seed)
    checker = Checker(node)
    ports = node.ports()
    total = CheckResult()
    if not ports:
        return total
    exposures = {}
    per_port = max(1, packets // len(ports))
    done = 0
    while done < packets:
        port = ports[(done // per_port) % len(ports)]
        if port.port_id not in exposures:
            exposures[port.port_id] = node.exposure(port)
        n = min(per_port, packets - done)
        total.add(checker.check_port(port, exposures[port.port_id], n, rng))
        done += n
    return total
