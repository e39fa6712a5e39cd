"""The node shapes the fidelity suite builds random labs of, each a scenario generator and a
packet planner.

A shape says what kind of node the random lab is (which firewall driver, which routers) and
which packets are worth sending through it; the runner (:mod:`nodetrace.lab.fidelity`) builds
the lab, observes the packets and compares the engines the same way for every shape. A new
shape (a DVR router, say) is one more :class:`Shape` in :data:`SHAPES`: a function writing its
random scenario and one planning its packets (:class:`~nodetrace.lab.fidelity_plan.Send`, with
a :class:`~nodetrace.lab.fidelity_plan.Routed` for each packet a router forwards).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from nodetrace.errors import UsageError
from nodetrace.lab.fidelity_dvr import BACKENDS as DVR_BACKENDS
from nodetrace.lab.fidelity_dvr import SUMMARY as DVR_SUMMARY
from nodetrace.lab.fidelity_dvr import dvr_scenario, plan_dvr_packets
from nodetrace.lab.fidelity_plan import PlanContext, Send, plan_flat, random_scenario
from nodetrace.lab.fidelity_router import plan_router_packets, router_scenario
from nodetrace.neutron.scenario import FirewallDriver, NetworkType

ScenarioWriter = Callable[[random.Random, int, NetworkType], str]
"""``(rng, lab index, tenant network type)`` → the scenario's TOML."""
Planner = Callable[[random.Random, PlanContext, int], list[Send]]
"""``(rng, the built lab, count)`` → exactly ``count`` packets."""


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    summary: str
    scenario: ScenarioWriter
    plan: Planner
    backends: tuple[str, ...] = ("legacy", "nft")
    """The iptables backends whose TRACE output can tell this shape's namespaces apart."""


def _flat(driver: FirewallDriver) -> ScenarioWriter:
    def write(rng: random.Random, index: int, tunnel: NetworkType) -> str:
        return random_scenario(rng, index, tunnel, driver)

    return write


def _routed(driver: FirewallDriver) -> ScenarioWriter:
    def write(rng: random.Random, index: int, tunnel: NetworkType) -> str:
        return router_scenario(rng, index, tunnel, driver)

    return write


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape(
            "hybrid",
            "hybrid iptables firewall, no router",
            _flat(FirewallDriver.IPTABLES_HYBRID),
            plan_flat,
        ),
        Shape(
            "ovs-firewall",
            "native OVS firewall, no router",
            _flat(FirewallDriver.OPENVSWITCH),
            plan_flat,
        ),
        Shape(
            "legacy-router",
            "hybrid firewall, a legacy router on one node with SNAT and floating IPs",
            _routed(FirewallDriver.IPTABLES_HYBRID),
            plan_router_packets,
        ),
        Shape(
            "ovs-firewall-router",
            "native OVS firewall, a legacy router on one node with SNAT and floating IPs",
            _routed(FirewallDriver.OPENVSWITCH),
            plan_router_packets,
        ),
        Shape("dvr", DVR_SUMMARY, dvr_scenario, plan_dvr_packets, DVR_BACKENDS),
    )
}
"""Every shape, by the name ``--shapes`` takes."""


def parse_shapes(text: str) -> tuple[Shape, ...]:
    """``hybrid,legacy-router`` → those shapes, in that order; ``all``: every shape."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return tuple(SHAPES.values())
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names:
        raise UsageError(
            f"--shapes {text!r}: expected a comma-separated list of {', '.join(SHAPES)} (or all)"
        )
    return tuple(SHAPES[n] for n in dict.fromkeys(names))
