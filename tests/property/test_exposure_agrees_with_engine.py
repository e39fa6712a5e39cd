"""Every exposure class gets its fate from the netfilter engine, packet by packet.

Rulesets are the Neutron nodes of the bundled example and random rulesets over every match and
target the engine models (``lab/netfilter_random.py``: jumps, gotos, returns, marks, CT and
NOTRACK, NAT, negations, ipsets); packets are drawn inside classes (any value of each range) and
anywhere in header space. Each must fall in exactly one class, and the engine, given the
class's conntrack state as ``nodetrace iptables --ct-state`` does, must accept an allowed one
and drop or reject a denied one. Unknown classes and classes conditioned on an ipset whose
members are not known are not compared (counted).
"""

from __future__ import annotations

import random
from functools import cache
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodetrace.audit.exposure import NodeExposure, start_set
from nodetrace.audit.exposure_check import CheckResult, check_point, random_point, sample_point
from nodetrace.audit.exposure_eval import HookPath, PathEvaluator
from nodetrace.audit.exposure_match import MatchCompiler
from nodetrace.engine.netfilter import NetfilterEngine, NodeFacts, bridge_path, input_path
from nodetrace.lab.netfilter_random import V6_ADDRESSES, BedNames, RandomRuleset
from nodetrace.model.exposure import Fate, HeaderClass, universe
from nodetrace.model.packet import Family
from nodetrace.parsers.ipset_save import parse_ipset_save
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.snapshot.load import load

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
IPSETS = {
    Family.IPV4: "create s1 hash:net family inet\nadd s1 10.9.0.0/30\nadd s1 10.9.0.2 nomatch\n"
    "create s2 hash:ip family inet\nadd s2 10.9.1.7\n",
    Family.IPV6: "create s1 hash:net family inet6\nadd s1 2001:db8::/126\n",
}

LOCAL: dict[Family, dict[str, tuple[IPv4Address | IPv6Address, ...]]] = {
    Family.IPV4: {"br0": (IPv4Address("10.9.0.1"),), "eth0": (IPv4Address("192.0.2.1"),)},
    Family.IPV6: {"br0": (IPv6Address("2001:db8::1"),), "eth0": ()},
}
"""The bed's own addresses (``-m addrtype``, MASQUERADE, REDIRECT), given to both sides."""


@cache
def _example(name: str) -> NodeExposure:
    return NodeExposure(load(str(EXAMPLES / name)))


class Case(NamedTuple):
    engine: NetfilterEngine
    path: HookPath
    classes: list[HeaderClass]
    atoms: int


def _random_case(seed: int, family: Family, path_name: str) -> Case:
    names = BedNames(
        "br0",
        ("veth-a", "veth-b"),
        ("02:00:00:00:00:0a", "02:00:00:00:00:0b"),
        ipsets=("s1", "s2"),
        family=family,
        **({"addresses": V6_ADDRESSES} if family is Family.IPV6 else {}),
    )
    text = RandomRuleset(random.Random(seed), names, path=path_name).text()
    ruleset = parse_iptables_save(text, source=f"random-{seed}.save", family=family)
    ipsets = parse_ipset_save(IPSETS[family], source="sets")
    local = LOCAL[family]
    compiler = MatchCompiler(family, ipsets, universe(family), local)
    atoms = compiler.prepare_atoms(list(ruleset.rules()))
    compiler.u = universe(family, atoms)
    evaluator = PathEvaluator(ruleset, compiler, local)
    path = (
        bridge_path("br0", physin="veth-a", physout="veth-b")
        if path_name == "forward"
        else input_path("br0", physin="veth-a")
    )
    outcomes = evaluator.run(path, start_set(family, atoms))
    classes = [HeaderClass(family, b, o.fate, (), o.reason) for o in outcomes for b in o.boxes]
    engine = NetfilterEngine(ruleset, ipsets=ipsets, facts=NodeFacts(local_addresses=local))
    return Case(engine, path, classes, atoms)


def _check(case: Case, family: Family, rng: random.Random, n: int, where: str) -> CheckResult:
    engine, path, classes, atoms = case
    result = CheckResult()
    for _ in range(n):
        if classes and rng.random() < 0.6:
            point = sample_point(rng.choice(classes).box, rng)
        else:
            point = random_point(family, rng, atoms)
        check_point(engine, result, where, path, family, classes, point, rng)
    return result


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**30),
    family=st.sampled_from(list(Family)),
    path_name=st.sampled_from(["forward", "input"]),
    packets_seed=st.integers(0, 2**30),
)
def test_random_rulesets_classes_agree_with_the_engine(
    seed: int, family: Family, path_name: str, packets_seed: int
) -> None:
    case = _random_case(seed, family, path_name)
    rng = random.Random(packets_seed)
    result = _check(case, family, rng, 40, f"seed {seed} {path_name}")
    assert result.disagreements == []


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["two-nodes-cmp1.snapshot.tar.gz", "two-nodes-cmp2.snapshot.tar.gz"]),
    packets_seed=st.integers(0, 2**30),
)
def test_neutron_ports_classes_agree_with_the_engine(name: str, packets_seed: int) -> None:
    from nodetrace.audit.exposure_check import Checker

    rng = random.Random(packets_seed)
    node = _example(name)
    port = rng.choice(node.ports())
    result = Checker(node).check_port(port, node.exposure(port), 50, rng)
    assert result.disagreements == []
    assert result.agreed > 0


def test_the_check_can_fail() -> None:
    """Classes given the wrong fate are caught: the comparison is not vacuous."""
    from nodetrace.audit.exposure import hybrid_paths
    from nodetrace.audit.exposure_check import Checker
    from nodetrace.model.exposure import Direction

    node = _example("two-nodes-cmp1.snapshot.tar.gz")
    port = node.ports()[-1]
    paths = hybrid_paths(port)
    assert paths is not None
    inbound = node.exposure(port).direction(Direction.INBOUND)
    assert inbound is not None
    swap = {Fate.ALLOWED: Fate.DENIED, Fate.DENIED: Fate.ALLOWED}
    flipped = [
        HeaderClass(c.family, c.box, swap.get(c.fate, c.fate), c.rules, c.reason)
        for c in inbound.classes
        if c.family is Family.IPV4
    ]
    checker, rng, result = Checker(node), random.Random(1), CheckResult()
    for _ in range(200):
        point = sample_point(rng.choice(flipped).box, rng)
        checker.check_point(result, "flipped", paths.inbound, Family.IPV4, flipped, point, rng)
    assert len(result.disagreements) > 100
