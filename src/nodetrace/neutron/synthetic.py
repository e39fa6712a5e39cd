"""Large, realistic scenarios made up from a seed, for benchmarks and randomised tests.

:func:`synthetic_scenario` builds a node under test (``cmp1``) with many VM ports spread over
VXLAN, GRE and VLAN networks, security groups mixing port rules, ranges, ICMP types, prefixes
and remote groups, some IPv6 addresses, allowed address pairs and ports without port security,
plus a few peer nodes so tunnels and remote-group members exist. Same arguments, same scenario.
:func:`synthetic_node` returns the generated state of the node under test directly::

    state = synthetic_node(ports=500, seed=1)
    state.firewall.iptables_save          # iptables-save text
    state.dump_flows_text("br-int")       # ovs-ofctl dump-flows text
"""

from __future__ import annotations

import random
from ipaddress import IPv4Network, IPv6Network, ip_network

from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.scenario import (
    DEFAULT_UNDERLAY,
    AddressPair,
    Direction,
    Ethertype,
    IPAddress,
    Network,
    NetworkType,
    Node,
    Port,
    Scenario,
    SecurityGroup,
    SgRule,
    stable_mac,
    stable_uuid,
)

NODE_UNDER_TEST = "cmp1"
_SERVICE_PORTS = (22, 53, 80, 123, 443, 3306, 5432, 6379, 8080, 9090)


def _rule(rng: random.Random, groups: list[str]) -> SgRule:
    direction = Direction.INGRESS if rng.random() < 0.8 else Direction.EGRESS
    ethertype = Ethertype.IPV6 if rng.random() < 0.15 else Ethertype.IPV4
    kind = rng.random()
    prefix: IPv4Network | IPv6Network | None = None
    if rng.random() < 0.3:
        prefix = (
            ip_network(f"192.168.{rng.randrange(256)}.0/24")
            if ethertype is Ethertype.IPV4
            else ip_network(f"fd00:{rng.randrange(1, 0xFFFF):x}::/64")
        )
    remote = rng.choice(groups) if prefix is None and groups and rng.random() < 0.25 else None
    if kind < 0.45:
        port = rng.choice(_SERVICE_PORTS)
        return SgRule(direction, ethertype, "tcp", port, port, prefix, remote)
    if kind < 0.6:
        low = rng.randrange(1024, 60000)
        return SgRule(direction, ethertype, "tcp", low, low + rng.randrange(1, 500), prefix, remote)
    if kind < 0.75:
        port = rng.choice(_SERVICE_PORTS)
        return SgRule(direction, ethertype, "udp", port, port, prefix, remote)
    if kind < 0.9:
        icmp = "icmp" if ethertype is Ethertype.IPV4 else "ipv6-icmp"
        if rng.random() < 0.5:
            return SgRule(direction, ethertype, icmp, None, None, prefix, remote)
        return SgRule(direction, ethertype, icmp, rng.choice((0, 3, 8, 11)), 0, prefix, remote)
    return SgRule(direction, ethertype, None, None, None, prefix, remote)


def synthetic_scenario(
    *,
    ports: int = 500,
    peers: int = 3,
    ports_per_peer: int = 4,
    networks: int = 10,
    security_groups: int = 20,
    rules_per_group: int = 8,
    seed: int = 0,
    name: str = "synthetic",
) -> Scenario:
    """A scenario whose node ``cmp1`` carries ``ports`` VM ports (see the module docstring)."""
    rng = random.Random(seed)
    nodes = tuple(
        Node(f"cmp{i + 1}", DEFAULT_UNDERLAY.network_address + i + 1) for i in range(peers + 1)
    )
    types = (NetworkType.VXLAN, NetworkType.GRE, NetworkType.VLAN)
    nets = tuple(
        Network(
            f"net{i}",
            stable_uuid("network", f"{name}-net{i}"),
            types[i % 3],
            100 + i,
            ip_network(f"10.{i}.0.0/16"),
            {NetworkType.VXLAN: 1450, NetworkType.GRE: 1458, NetworkType.VLAN: 1500}[types[i % 3]],
        )
        for i in range(max(1, networks))
    )
    sg_ids = [stable_uuid("security_group", f"{name}-sg{i}") for i in range(security_groups)]
    groups = tuple(
        SecurityGroup(
            f"sg{i}",
            sg_id,
            (
                *(_rule(rng, sg_ids) for _ in range(rules_per_group)),
                SgRule(Direction.EGRESS, Ethertype.IPV4),
                SgRule(Direction.EGRESS, Ethertype.IPV6),
            ),
        )
        for i, sg_id in enumerate(sg_ids)
    )
    placement = [NODE_UNDER_TEST] * ports + [
        n.name for n in nodes[1:] for _ in range(ports_per_peer)
    ]
    port_list = []
    for i, node in enumerate(placement):
        net = nets[i % len(nets)]
        port_id = stable_uuid("port", f"{name}-port{i}")
        host = 10 + i // len(nets)
        ips: list[IPAddress] = [net.cidr.network_address + host] if net.cidr else []
        if rng.random() < 0.1:
            ips.append(ip_network(f"fd00:{i % len(nets) + 1:x}::/64").network_address + host)
        secure = rng.random() >= 0.05
        sgs = tuple(rng.sample(sg_ids, k=rng.choice((1, 1, 2)))) if secure and sg_ids else ()
        pairs: tuple[AddressPair, ...] = ()
        if secure and rng.random() < 0.05:
            pairs = (AddressPair(ip_network(f"172.16.{i % 256}.0/28"), stable_mac(port_id + "p")),)
        port_list.append(
            Port(
                f"port{i}",
                port_id,
                node,
                net.id,
                stable_mac(port_id),
                tuple(ips),
                sgs,
                secure,
                pairs,
                stable_uuid("instance", f"{name}-port{i}"),
            )
        )
    return Scenario(name, nodes, nets, groups, tuple(port_list), source=f"<synthetic seed={seed}>")


def synthetic_node(
    *,
    ports: int = 500,
    seed: int = 0,
    peers: int = 3,
    networks: int = 10,
    security_groups: int = 20,
    rules_per_group: int = 8,
) -> NodeState:
    """The generated state of the node under test of :func:`synthetic_scenario`."""
    scenario = synthetic_scenario(
        ports=ports,
        seed=seed,
        peers=peers,
        networks=networks,
        security_groups=security_groups,
        rules_per_group=rules_per_group,
    )
    return generate_node(scenario, NODE_UNDER_TEST)
