"""Neutron naming layer and scenario generator: the only place that knows OpenStack names.

- :mod:`~nodetrace.neutron.naming`: port UUID ↔ device, chain, ipset, zone and tunnel names.
- :mod:`~nodetrace.neutron.scenario`: the TOML scenario (nodes, networks, groups, ports).
- :mod:`~nodetrace.neutron.generate`: what the agents put on a node (iptables, ipsets, OVS).
- :mod:`~nodetrace.neutron.synthetic`: large made-up scenarios for benchmarks.
- :mod:`~nodetrace.neutron.inventory`: the other direction: a node's Neutron ports read back
  from a snapshot (devices, OVSDB, iptables, flows via :mod:`~nodetrace.neutron.flow_facts`),
  and :mod:`~nodetrace.neutron.ports` to find the one a user names.
"""

from nodetrace.neutron.generate import NodeState, VmPort, generate, generate_node
from nodetrace.neutron.scenario import Scenario, load_scenario, parse_scenario
from nodetrace.neutron.synthetic import synthetic_node, synthetic_scenario

__all__ = [
    "NodeState",
    "Scenario",
    "VmPort",
    "generate",
    "generate_node",
    "load_scenario",
    "parse_scenario",
    "synthetic_node",
    "synthetic_scenario",
]
