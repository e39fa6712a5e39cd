"""The fidelity suite's random labs and packets for the flat shapes (no router).

A random scenario is two nodes, one tenant network (VXLAN, GRE or a provider VLAN, in turn)
and three random security groups; a plan is a list of :class:`Send`: allowed and denied, new
and established (a reply after an opener), same node and across the tunnel, from VMs and from
the underlay, some with spoofed addresses, and unicast ARP replies. The router shapes build on
the same packets (:mod:`nodetrace.lab.fidelity_router`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import ip_interface
from typing import Any

from nodetrace.lab.observe import TracePoint, Tunnel
from nodetrace.lab.state import LabInfo, VmInfo
from nodetrace.model.packet import ETH_TYPE_ARP, IPProto, Packet, TcpFlag
from nodetrace.neutron.generate import NodeState
from nodetrace.neutron.l3_agent import RouterState
from nodetrace.neutron.scenario import FirewallDriver, NetworkType, Scenario

TCP_PORTS = (22, 80, 443, 8080, 1500, 3306)
UDP_PORTS = (53, 123, 5000)


# --- random scenarios -------------------------------------------------------------------------


def random_rules(rng: random.Random, groups: Sequence[str], cidr: str) -> list[str]:
    small = cidr.replace(".0/24", ".0/28")  # covers some of the VMs (.10 to .15), not all
    pool = [
        f'{{ direction = "ingress", protocol = "tcp", port = {rng.choice(TCP_PORTS)} }}',
        '{ direction = "ingress", protocol = "tcp", port_range_min = 1000, port_range_max = 2000 }',
        f'{{ direction = "ingress", protocol = "udp", port = {rng.choice(UDP_PORTS)} }}',
        '{ direction = "ingress", protocol = "icmp" }',
        '{ direction = "ingress", protocol = "icmp", icmp_type = 8, icmp_code = 0 }',
        f'{{ direction = "ingress", remote_group = "{rng.choice(groups)}" }}',
        f'{{ direction = "ingress", protocol = "tcp", port = 22, remote_ip_prefix = "{small}" }}',
        '{ direction = "ingress", protocol = "tcp", remote_ip_prefix = "192.0.2.0/24" }',
        '{ direction = "egress", protocol = "tcp", port = 443 }',
    ]
    rules = rng.sample(pool, k=rng.randint(2, 4))
    if rng.random() < 0.8:
        rules.append('{ direction = "egress" }')
    return rules


def random_scenario(
    rng: random.Random,
    index: int,
    tunnel: NetworkType,
    firewall_driver: FirewallDriver = FirewallDriver.IPTABLES_HYBRID,
) -> str:
    """A 2-node scenario with 5 VMs on one network of type ``tunnel`` (VXLAN, GRE or a
    provider VLAN) and three random security groups, as TOML."""
    cidr = f"10.{60 + index % 150}.0.0/24"
    groups = ["sga", "sgb", "sgc"]
    lines = [f'name = "fid{index}"', ""]
    if firewall_driver is not FirewallDriver.IPTABLES_HYBRID:
        lines[1:1] = [f'firewall_driver = "{firewall_driver.value}"']
    for node in ("cmp1", "cmp2"):
        lines += ["[[nodes]]", f'name = "{node}"', ""]
    segmentation_id = rng.randint(100, 4000)  # a valid VLAN id too
    lines += ["[[networks]]", 'name = "net"', f'type = "{tunnel.value}"']
    if tunnel is not NetworkType.FLAT:  # a flat network has none
        lines.append(f"segmentation_id = {segmentation_id}")
    lines += [f'cidr = "{cidr}"', ""]
    for g in groups:
        rules = ",\n  ".join(random_rules(rng, groups, cidr))
        lines += ["[[security_groups]]", f'name = "{g}"', f"rules = [\n  {rules},\n]", ""]
    for i, node in enumerate(("cmp1", "cmp1", "cmp1", "cmp2", "cmp2")):
        lines += ["[[ports]]", f'name = "vm{i + 1}"', f'node = "{node}"', 'network = "net"']
        if rng.random() < 0.15:
            lines.append("port_security = false")
        else:
            sgs = rng.sample(groups, k=rng.choice((1, 1, 2)))
            lines.append("security_groups = [" + ", ".join(f'"{g}"' for g in sgs) + "]")
        lines.append("")
    return "\n".join(lines)


# --- random packets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """One packet of the plan: where it is injected and why it is interesting."""

    packet: Packet
    source: str
    kind: str
    """``new``, ``established`` (reply to the previous opener), ``spoofed`` (source address),
    ``arp`` (a unicast ARP reply, honest or spoofed) or ``underlay``."""
    path: str
    """``same-node``, ``cross-node`` or ``from-underlay``."""
    target: str
    """A VM, ``outside:NODE`` (the outside namespace behind the node's br-ex) or ``router``
    (the stack of the router the packet is sent to)."""
    tunnel: Tunnel | None = None
    opener: bool = False
    """Sent to set up conntrack state for the ``established`` packet that follows."""
    hops: tuple[Routed, ...] = ()
    """Each router namespace that forwards it, in order (router shapes only)."""
    trace_at: tuple[TracePoint, ...] | None = None
    """Where ``ofproto/trace`` runs; ``None``: where the packet enters OVS (and the far node)."""


@dataclass(frozen=True, slots=True)
class Routed:
    """A packet's way through a router, as the scenario says it goes: into the router's
    namespace on ``in_dev``, out of ``out_dev`` (``None``: to the router's own stack), leaving
    as ``after`` (the router's MAC as source, the next hop's as destination, TTL one lower, the
    floating IP's NAT applied)."""

    node: str
    netns: str
    in_dev: str
    out_dev: str | None
    after: Packet
    to_node: str | None = None
    """The node the packet goes to next when that is not this one (a VM's node, or the next
    router namespace's); ``None``: it stays on this node (a VM here, br-ex's uplink)."""
    to_network: str | None = None
    """The UUID of the network it leaves the namespace on, when ``to_node`` is set (it crosses
    the tunnel or the provider VLAN of that network)."""


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a packet planner knows of a built lab."""

    scenario: Scenario
    info: LabInfo
    states: Mapping[str, NodeState]
    outside_macs: Mapping[str, str]
    """``outside:NODE`` → the MAC of the outside's interface (the routers' next hop)."""
    routers: Mapping[str, tuple[str, RouterState]]
    """Each router namespace of the lab (a distributed router has one per node) → its node and
    what the L3 agent set up there."""
    namespaces: Mapping[str, str]
    """Every namespace the lab built for a node besides its own (routers', fip, snat) → the
    node."""


def first_ip(vm: VmInfo) -> Any:
    return ip_interface(vm.ips[0]).ip


def base_packet(rng: random.Random, src: VmInfo, dst: VmInfo, proto: str) -> Packet:
    common: dict[str, Any] = {
        "dl_src": src.mac,
        "dl_dst": dst.mac,
        "nw_src": first_ip(src),
        "nw_dst": first_ip(dst),
        "ip_id": rng.randrange(1, 0x10000),
    }
    if proto == "tcp":
        return Packet(
            **common,
            nw_proto=IPProto.TCP,
            tp_src=rng.randrange(32768, 61000),
            tp_dst=rng.choice((*TCP_PORTS, 1234, 1999)),
            tcp_flags=TcpFlag.SYN,
            tcp_seq=rng.randrange(1, 2**32),
            tcp_window=64240,
        )
    if proto == "udp":
        return Packet(
            **common,
            nw_proto=IPProto.UDP,
            tp_src=rng.randrange(32768, 61000),
            tp_dst=rng.choice(UDP_PORTS),
        )
    return Packet(
        **common,
        nw_proto=IPProto.ICMP,
        icmp_type=8,
        icmp_code=0,
        icmp_id=rng.randrange(1, 0x10000),
        icmp_seq=1,
    )


def reply_to(rng: random.Random, p: Packet) -> Packet:
    swapped = replace(
        p,
        dl_src=p.dl_dst,
        dl_dst=p.dl_src,
        nw_src=p.nw_dst,
        nw_dst=p.nw_src,
        ip_id=rng.randrange(1, 0x10000),
    )
    if p.nw_proto == IPProto.TCP:
        return replace(
            swapped,
            tp_src=p.tp_dst,
            tp_dst=p.tp_src,
            tcp_flags=TcpFlag.SYN | TcpFlag.ACK,
            tcp_seq=rng.randrange(1, 2**32),
            tcp_ack=(p.tcp_seq + 1) % 2**32,
        )
    if p.nw_proto == IPProto.UDP:
        return replace(swapped, tp_src=p.tp_dst, tp_dst=p.tp_src)
    return replace(swapped, icmp_type=0)


def arp_reply(src: VmInfo, dst: VmInfo, *, spoof: bool) -> Packet:
    """A unicast ARP reply; a spoofed one claims an address that is not the sender's, which
    OVS's anti-spoofing table drops (iptables never sees ARP)."""
    spa = first_ip(src) if not spoof else first_ip(src) + 100
    return Packet(
        dl_src=src.mac,
        dl_dst=dst.mac,
        dl_type=ETH_TYPE_ARP,
        arp_op=2,
        arp_spa=spa,
        arp_tpa=first_ip(dst),
        arp_sha=src.mac,
        arp_tha=dst.mac,
    )


def plan_packets(rng: random.Random, info: LabInfo, count: int, network: Any) -> list[Send]:
    """``count`` packets (openers included) over the lab's VMs."""
    plan: list[Send] = []
    vms = list(info.vms)
    while len(plan) < count:
        src, dst = rng.sample(vms, 2)
        path = "same-node" if src.node == dst.node else "cross-node"
        proto = rng.choice(("tcp", "tcp", "udp", "icmp"))
        packet = base_packet(rng, src, dst, proto)
        roll = rng.random()
        if roll < 0.25 and len(plan) + 2 <= count:
            plan.append(Send(packet, src.name, "new", path, dst.name, opener=True))
            plan.append(Send(reply_to(rng, packet), dst.name, "established", path, src.name))
        elif roll < 0.35:
            spoofed = replace(packet, nw_src=network.cidr.network_address + rng.randrange(200, 250))
            plan.append(Send(spoofed, src.name, "spoofed", path, dst.name))
        elif roll < 0.42:
            plan.append(
                Send(arp_reply(src, dst, spoof=rng.random() < 0.5), src.name, "arp", path, dst.name)
            )
        elif roll < 0.55:
            others = [n.name for n in info.nodes if n.name != dst.node]
            tunnel = Tunnel(network.type, network.segmentation_id, others[0], dst.node)
            remote = next((v for v in vms if v.node != dst.node), src)
            inner = base_packet(rng, remote, dst, proto)
            plan.append(Send(inner, "underlay", "underlay", "from-underlay", dst.name, tunnel))
        else:
            plan.append(Send(packet, src.name, "new", path, dst.name))
    return plan[:count]


def plan_flat(rng: random.Random, ctx: PlanContext, count: int) -> list[Send]:
    """:func:`plan_packets` over the lab's one network."""
    return plan_packets(rng, ctx.info, count, ctx.scenario.networks[0])


def with_reply(opener: Send, reply: Send | None) -> list[Send]:
    """``opener`` alone, or marked as the opener of the connection ``reply`` answers in."""
    if reply is None:
        return [opener]
    return [replace(opener, opener=True), reply]
