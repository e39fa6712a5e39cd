"""The fidelity suite's DVR shape: random labs with one distributed router and their packets.

A random scenario follows ``examples/scenarios/dvr.toml``: two compute nodes with VMs and a
third node running the L3 agent as ``dvr_snat`` (the router's ``snat-`` namespace), two or
three tenant networks of one type joined by one distributed router, its gateway on an external
VLAN network, floating IPs for some VMs, and random security groups (the hybrid firewall).

Every packet a DVR router forwards is routed on the node it starts from, so the planner builds
its hops from that node's router copy:

- east-west: the source node's ``qrouter-`` (``qr-`` in, ``qr-`` out); a packet for another
  node crosses the underlay on the destination network with the source node's DVR MAC;
- to the internet without a floating IP: the source node's router sends it back out of the
  same ``qr-`` to the ``sg-`` port (an ``ip rule`` per subnet), across to the ``dvr_snat``
  node, whose ``snat-`` namespace SNATs it out of ``qg-`` (``--random-fully``);
- with a floating IP: the router SNATs it to the floating IP and hands it through ``rfp-`` to
  the node's ``fip-`` namespace, out of ``fg-``; from the outside, the reverse (``fg-`` →
  ``fpr-`` → ``rfp-``, DNAT, ``qr-``), and the VM's reply back the same way.

With iptables-legacy every node's router copy has the same ``qr-`` names, so kernel-log TRACE
lines cannot tell the copies apart; the shape runs on iptables-nft only (one monitor per
namespace).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address

from nodetrace.lab.fidelity_plan import (
    PlanContext,
    Routed,
    Send,
    base_packet,
    first_ip,
    random_rules,
    reply_to,
    with_reply,
)
from nodetrace.lab.fidelity_router import EXTERNAL_CIDR, from_internet, internet_packet
from nodetrace.lab.observe import TracePoint, Tunnel, outside_endpoint
from nodetrace.lab.run import run
from nodetrace.lab.state import VmInfo
from nodetrace.model.packet import Packet
from nodetrace.neutron.dvr_router import FipNamespace
from nodetrace.neutron.l3_agent import RouterPort, RouterState
from nodetrace.neutron.scenario import NetworkType

COMPUTES = ("cmp1", "cmp2")
SNAT_NODE = "net1"
BACKENDS = ("nft",)
"""The iptables backends the shape runs on (see the module docstring)."""
SUMMARY = (
    "hybrid firewall, a distributed router on two compute nodes and a dvr_snat node, SNAT and "
    "floating IPs (iptables-nft only: legacy TRACE lines cannot tell the router copies apart)"
)

MacOf = Callable[[str, str], str]
"""``(namespace, device)`` → the device's MAC (a veth's is the kernel's pick)."""


def dvr_scenario(rng: random.Random, index: int, tunnel: NetworkType) -> str:
    """A 3-node scenario with one distributed router (see the module docstring), as TOML."""
    count = rng.choice((2, 3))
    nets = [f"net{k}" for k in range(count)]
    cidrs = [f"10.{60 + index % 150}.{k}.0/24" for k in range(count)]
    seg_ids = rng.sample(range(100, 4000), count + 1)  # VLAN ids too: all distinct
    groups = ["sga", "sgb", "sgc"]
    lines = [f'name = "fid{index}"', ""]
    for node in COMPUTES:
        lines += ["[[nodes]]", f'name = "{node}"', ""]
    lines += ["[[nodes]]", f'name = "{SNAT_NODE}"', 'agent_mode = "dvr_snat"', ""]
    for net, cidr, seg in zip(nets, cidrs, seg_ids, strict=False):
        lines += ["[[networks]]", f'name = "{net}"', f'type = "{tunnel.value}"',
                  f"segmentation_id = {seg}", f'cidr = "{cidr}"', ""]  # fmt: skip
    lines += ["[[networks]]", 'name = "public"', 'type = "vlan"',
              f"segmentation_id = {seg_ids[-1]}", f'cidr = "{EXTERNAL_CIDR}"', "external = true",
              ""]  # fmt: skip
    for g in groups:
        rules = ",\n  ".join(random_rules(rng, groups, cidrs[0]))
        lines += ["[[security_groups]]", f'name = "{g}"', f"rules = [\n  {rules},\n]", ""]
    vms = []
    for i in range(2 * count):
        # Every network gets a VM on both compute nodes.
        node, net = COMPUTES[i % 2], nets[i // 2]
        vms.append(f"vm{i + 1}")
        lines += ["[[ports]]", f'name = "vm{i + 1}"', f'node = "{node}"', f'network = "{net}"']
        if rng.random() < 0.1:
            lines.append("port_security = false")
        else:
            sgs = rng.sample(groups, k=rng.choice((1, 1, 2)))
            lines.append("security_groups = [" + ", ".join(f'"{g}"' for g in sgs) + "]")
        lines.append("")
    fips = [vm for vm in vms if rng.random() < 0.5] or [rng.choice(vms)]
    if len(fips) == len(vms):  # keep one VM that needs the snat namespace
        fips.pop(rng.randrange(len(fips)))
    fip_list = ", ".join(
        f'{{ port = "{vm}", address = "203.0.113.{20 + i}" }}' for i, vm in enumerate(fips)
    )
    lines += ["[[routers]]", 'name = "r1"', "distributed = true",
              "interfaces = [" + ", ".join(f'"{n}"' for n in nets) + "]",
              'external_gateway = { network = "public", ip = "203.0.113.5" }',
              f"floating_ips = [{fip_list}]", ""]  # fmt: skip
    return "\n".join(lines)


def veth_mac(netns: str, device: str) -> str:
    """The MAC of ``device`` in the lab namespace ``netns``, as the kernel holds it."""
    out = run(["ip", "-j", "link", "show", "dev", device], netns=netns).stdout
    return str(json.loads(out)[0]["address"])


class _Dvr:
    """The routing facts of one DVR lab: each node's router copy and fip namespace, the snat
    namespace, the floating IPs and the outsides."""

    def __init__(self, ctx: PlanContext, mac_of: MacOf) -> None:
        self.ctx = ctx
        self.copies: dict[str, tuple[str, RouterState]] = {}
        self.snat: tuple[str, str, RouterState] | None = None
        for netns, (node, copy) in ctx.routers.items():
            self.copies[node] = (netns, copy)
        for node, state in ctx.states.items():
            for snat in state.snat_routers:
                netns = next(ns for ns, n in ctx.namespaces.items() if n == node
                             and ns.endswith(snat.namespace))  # fmt: skip
                self.snat = (node, netns, snat)
        self.fip_ns: dict[str, tuple[str, FipNamespace]] = {}
        for node, node_state in ctx.states.items():
            for fip in node_state.fip_namespaces:
                netns = next(ns for ns, n in ctx.namespaces.items() if n == node
                             and ns.endswith(f"-{node}-{fip.namespace}"))  # fmt: skip
                self.fip_ns[node] = (netns, fip)
        router = next(iter(self.copies.values()))[1].router
        self.fips = {f.port: f.address for f in router.floating_ips}
        self.mac_of = mac_of

    def copy(self, vm: VmInfo) -> tuple[str, RouterState]:
        return self.copies[vm.node]

    def port_on(self, vm: VmInfo, state: RouterState | None = None) -> RouterPort:
        """The router's port on the VM's network (in the VM's node's copy unless ``state``)."""
        state = state or self.copy(vm)[1]
        return next(p for p in state.internal if p.network.name == vm.network)

    def tunnel(self, network: str, from_node: str, to_node: str) -> Tunnel:
        net = next(n for n in self.ctx.scenario.networks if n.name == network)
        return Tunnel(net.type, net.segmentation_id, from_node, to_node)

    def dvr_mac(self, node: str) -> str:
        mac = self.ctx.states[node].dvr_mac
        assert mac is not None, f"{node} has no DVR MAC"
        return mac

    def fip_of(self, vm: VmInfo) -> IPv4Address | None:
        return self.fips.get(vm.port_id)

    def outside_mac(self, node: str) -> str:
        return self.ctx.outside_macs[outside_endpoint(node)]

    def link_macs(self, vm: VmInfo) -> tuple[str, str]:
        """The MACs of the VM's node's ``rfp-`` (router side) and ``fpr-`` (fip side)."""
        netns, state = self.copy(vm)
        link = state.fip_link
        assert link is not None
        fip_netns = self.fip_ns[vm.node][0]
        return self.mac_of(netns, link.rfp), self.mac_of(fip_netns, link.fpr)


def plan_dvr_packets(rng: random.Random, ctx: PlanContext, count: int) -> list[Send]:
    """``count`` packets (openers included) across the lab's distributed router."""
    return plan_with(rng, ctx, count, veth_mac)


def plan_with(rng: random.Random, ctx: PlanContext, count: int, mac_of: MacOf) -> list[Send]:
    """:func:`plan_dvr_packets` with the veths' MACs read by ``mac_of``."""
    lab = _Dvr(ctx, mac_of)
    vms = list(ctx.info.vms)
    with_fip = [vm for vm in vms if lab.fip_of(vm) is not None]
    without = [vm for vm in vms if lab.fip_of(vm) is None]
    plan: list[Send] = []
    while len(plan) < count:
        roll = rng.random()
        proto = rng.choice(("tcp", "tcp", "udp", "icmp"))
        pair = len(plan) + 2 <= count
        if roll < 0.4:
            src, dst = rng.choice([(a, b) for a in vms for b in vms if a.network != b.network])
            opener = _east_west(lab, base_packet(rng, src, dst, proto), src, dst, "east-west")
            replied = rng.random() < 0.3 and pair
            back = reply_to(rng, opener.packet) if replied else None
            plan += with_reply(
                opener, _east_west(lab, back, dst, src, "established") if back else None
            )
        elif roll < 0.6 and without:
            plan.append(_via_snat(lab, rng, rng.choice(without), proto))
        elif roll < 0.7 and with_fip:
            plan.append(_fip_out(lab, rng, rng.choice(with_fip), proto))
        elif with_fip:
            vm = rng.choice(with_fip)
            inbound = _from_outside(lab, rng, vm, proto)
            replied = rng.random() < 0.5 and pair
            plan += with_reply(
                inbound, _reply_to_outside(lab, rng, vm, inbound.packet) if replied else None
            )
    return plan[:count]


def _east_west(lab: _Dvr, packet: Packet, src: VmInfo, dst: VmInfo, kind: str) -> Send:
    netns, state = lab.copy(src)
    gw_in, gw_out = lab.port_on(src), lab.port_on(dst, state)
    packet = replace(packet, dl_dst=gw_in.interface.mac)
    after = replace(packet, dl_src=gw_out.interface.mac, dl_dst=dst.mac, nw_ttl=packet.nw_ttl - 1)
    cross = src.node != dst.node
    routed = Routed(src.node, netns, gw_in.device, gw_out.device, after,
                    dst.node if cross else None, gw_out.network.id if cross else None)  # fmt: skip
    points = [TracePoint(src.node, packet, vm=src.name)]
    if cross:
        wire = replace(after, dl_src=lab.dvr_mac(src.node))
        points.append(TracePoint(dst.node, wire, tunnel=lab.tunnel(dst.network, src.node,
                                                                   dst.node)))  # fmt: skip
    path = "cross-node" if cross else "same-node"
    return Send(packet, src.name, kind, path, dst.name, hops=(routed,), trace_at=tuple(points))


def _via_snat(lab: _Dvr, rng: random.Random, vm: VmInfo, proto: str) -> Send:
    """Routed on the VM's node to the ``sg-`` port, SNATed in the snat namespace."""
    assert lab.snat is not None
    snat_node, snat_netns, snat = lab.snat
    assert snat.gateway is not None
    netns, _ = lab.copy(vm)
    qr, sg = lab.port_on(vm), lab.port_on(vm, snat)
    packet = replace(internet_packet(rng, vm, proto), dl_dst=qr.interface.mac)
    to_sg = replace(packet, dl_src=qr.interface.mac, dl_dst=sg.interface.mac,
                    nw_ttl=packet.nw_ttl - 1)  # fmt: skip
    cross = vm.node != snat_node
    first = Routed(vm.node, netns, qr.device, qr.device, to_sg,
                   snat_node if cross else None, qr.network.id if cross else None)  # fmt: skip
    out = replace(to_sg, dl_src=snat.gateway.interface.mac, dl_dst=lab.outside_mac(snat_node),
                  nw_src=snat.gateway.interface.ip, nw_ttl=to_sg.nw_ttl - 1)  # fmt: skip
    second = Routed(snat_node, snat_netns, sg.device, snat.gateway.device, out)
    points = [TracePoint(vm.node, packet, vm=vm.name)]
    if cross:
        wire = replace(to_sg, dl_src=lab.dvr_mac(vm.node))
        points.append(TracePoint(snat_node, wire, tunnel=lab.tunnel(vm.network, vm.node,
                                                                    snat_node)))  # fmt: skip
    return Send(packet, vm.name, "snat", "north-south", outside_endpoint(snat_node),
                hops=(first, second), trace_at=tuple(points))  # fmt: skip


def _fip_hops(lab: _Dvr, vm: VmInfo, packet: Packet) -> tuple[Routed, Routed]:
    """The VM's packet to the internet leaving with its floating IP: its node's router (SNAT,
    out of ``rfp-``), then the fip namespace (out of ``fg-``)."""
    netns, state = lab.copy(vm)
    link = state.fip_link
    assert link is not None
    fip_netns, fip = lab.fip_ns[vm.node]
    rfp_mac, fpr_mac = lab.link_macs(vm)
    qr = lab.port_on(vm)
    to_fip = replace(packet, dl_src=rfp_mac, dl_dst=fpr_mac, nw_src=lab.fip_of(vm),
                     nw_ttl=packet.nw_ttl - 1)  # fmt: skip
    first = Routed(vm.node, netns, qr.device, link.rfp, to_fip)
    out = replace(to_fip, dl_src=fip.gateway.mac, dl_dst=lab.outside_mac(vm.node),
                  nw_ttl=to_fip.nw_ttl - 1)  # fmt: skip
    second = Routed(vm.node, fip_netns, link.fpr, fip.device, out)
    return first, second


def _fip_out(lab: _Dvr, rng: random.Random, vm: VmInfo, proto: str) -> Send:
    packet = replace(internet_packet(rng, vm, proto), dl_dst=lab.port_on(vm).interface.mac)
    return Send(packet, vm.name, "floating-ip-out", "north-south", outside_endpoint(vm.node),
                hops=_fip_hops(lab, vm, packet),
                trace_at=(TracePoint(vm.node, packet, vm=vm.name),))  # fmt: skip


def _from_outside(lab: _Dvr, rng: random.Random, vm: VmInfo, proto: str) -> Send:
    """From the outside behind the VM's node to its floating IP: the fip namespace answers
    for it on ``fg-`` and routes it to the node's router, which DNATs it to the VM."""
    fip = lab.fip_of(vm)
    assert fip is not None
    netns, state = lab.copy(vm)
    link = state.fip_link
    assert link is not None
    fip_netns, fip_ns = lab.fip_ns[vm.node]
    rfp_mac, fpr_mac = lab.link_macs(vm)
    inbound = from_internet(rng, vm, proto, fip, lab.outside_mac(vm.node), fip_ns.gateway.mac)
    to_router = replace(inbound, dl_src=fpr_mac, dl_dst=rfp_mac, nw_ttl=inbound.nw_ttl - 1)
    first = Routed(vm.node, fip_netns, fip_ns.device, link.fpr, to_router)
    qr = lab.port_on(vm)
    to_vm = replace(to_router, dl_src=qr.interface.mac, dl_dst=vm.mac, nw_dst=first_ip(vm),
                    nw_ttl=to_router.nw_ttl - 1)  # fmt: skip
    second = Routed(vm.node, netns, link.rfp, qr.device, to_vm)
    return Send(inbound, outside_endpoint(vm.node), "floating-ip", "from-outside", vm.name,
                hops=(first, second),
                trace_at=(TracePoint(vm.node, inbound, external=True),))  # fmt: skip


def _reply_to_outside(lab: _Dvr, rng: random.Random, vm: VmInfo, inbound: Packet) -> Send:
    """The VM's answer to a packet that came in through its floating IP: conntrack gives it
    the floating IP as its source, and it leaves the way it came."""
    opened = replace(inbound, nw_dst=first_ip(vm))
    packet = replace(reply_to(rng, opened), dl_src=vm.mac, dl_dst=lab.port_on(vm).interface.mac)
    return Send(packet, vm.name, "established", "north-south", outside_endpoint(vm.node),
                hops=_fip_hops(lab, vm, packet),
                trace_at=(TracePoint(vm.node, packet, vm=vm.name),))  # fmt: skip
