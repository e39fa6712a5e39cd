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
from nodetrace.audit.exposure_ovs import port_start
from nodetrace.audit.exposure_ovs_check import UNDECIDED, check_ovs_point
from nodetrace.audit.exposure_points import packet_of, random_point, sample_point
from nodetrace.engine.netfilter import CtFacts, NetfilterEngine, NodeFacts
from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.model.exposure import (
    BASE_DIMS,
    Direction,
    Fate,
    HeaderClass,
    PortExposure,
)
from nodetrace.model.header_space import box_contains
from nodetrace.model.node_inventory import PortInfo
from nodetrace.model.packet import Family
from nodetrace.model.verdict import Verdict

_EXPECTED = {Fate.ALLOWED: {Verdict.ACCEPT}, Fate.DENIED: {Verdict.DROP, Verdict.REJECT}}


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
    undecided: int = 0
    """Packets the engine could not decide (flows left out of the dump): not compared."""
    disagreements: list[str] = field(default_factory=list)

    def add(self, other: CheckResult) -> None:
        self.packets += other.packets
        self.agreed += other.agreed
        self.unknown += other.unknown
        self.atoms += other.atoms
        self.impossible += other.impossible
        self.undecided += other.undecided
        self.disagreements += other.disagreements


class Checker:
    """Runs packets of one node's ports through the engine and through the classes."""

    def __init__(self, node: NodeExposure) -> None:
        self.node = node
        self._engines: dict[Family, NetfilterEngine] = {}
        self._openflow: OpenFlowEngine | None = None

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
        if port.firewall == "openvswitch":
            return self.check_ovs_port(port, exp, count, rng)
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

    def check_ovs_port(
        self, port: PortInfo, exp: PortExposure, count: int, rng: random.Random
    ) -> CheckResult:
        """A native-firewall port: inbound and outbound packets through the OpenFlow engine."""
        result = CheckResult()
        ovs = self.node.snapshot.ovs
        bridge = ovs.bridge(port.bridge or "br-int") if ovs is not None else None
        if ovs is None or bridge is None or port.ofport is None:
            return result
        if self._openflow is None:
            self._openflow = OpenFlowEngine(ovs)
        zone = port.zone.value if port.zone is not None else None
        start = port_start(bridge, port.ofport, zone, port.mac.value if port.mac else None)
        for _ in range(count):
            direction = rng.choice((Direction.INBOUND, Direction.OUTBOUND))
            d = exp.direction(direction)
            assert d is not None
            family = rng.choice(list(Family))
            classes = [c for c in d.classes if c.family is family]
            decided = [c for c in classes if c.fate in (Fate.ALLOWED, Fate.DENIED)]
            if decided and rng.random() < 0.7:
                point = sample_point(rng.choice(decided).box, rng)
            else:
                point = random_point(family, rng, 0)
            holding = [c for c in classes if box_contains(c.box, point)]
            result.packets += 1
            if len(holding) == 1 and holding[0].fate is Fate.UNKNOWN:
                result.unknown += 1
                continue
            if len(holding) == 1 and holding[0].fate is Fate.IMPOSSIBLE:
                result.impossible += 1
                continue
            problem = check_ovs_point(
                self._openflow, bridge.name, start, direction, family, classes, point, rng
            )
            if problem is None:
                result.agreed += 1
            elif problem == UNDECIDED:
                result.undecided += 1
            else:
                result.disagreements.append(f"{port.port_id} {problem}")
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
