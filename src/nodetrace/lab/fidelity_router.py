"""The fidelity suite's legacy-router shape: random routed labs and the packets that cross them.

A random scenario has two nodes, two or three tenant networks (all of one type: VXLAN, GRE or
provider VLAN) joined by one legacy router on one of the nodes, an external VLAN network on
br-ex as its gateway (SNAT on or off), floating IPs for some VMs, and VMs of every network on
both nodes: a VM on the other node reaches the router across the tunnel. The VMs' firewall is
the hybrid iptables one, or the native OVS firewall. The packets are
east-west across the router (same node and across nodes, with replies), north-south to an
outside address through SNAT or a floating IP, from the outside to a floating IP (and the VM's
reply), and to the metadata address; the random security groups deny some of each.

Each routed packet carries its :class:`~nodetrace.lab.fidelity_plan.Routed` hop: how the
scenario says the router forwards it, which is where the netfilter comparison looks for the router's
pass and the walk continues on the next node.
"""

from __future__ import annotations

import random
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
from nodetrace.lab.observe import TracePoint, Tunnel, outside_endpoint
from nodetrace.lab.state import VmInfo
from nodetrace.model.packet import IPProto, Packet, TcpFlag
from nodetrace.neutron.l3_agent import RouterPort
from nodetrace.neutron.scenario import FirewallDriver, NetworkType

EXTERNAL_CIDR = "203.0.113.0/24"
INTERNET = IPv4Address("8.8.8.8")
"""An address the outside namespace stands for (``lab.router.INTERNET_ADDRESSES``)."""
METADATA = IPv4Address("169.254.169.254")
NODES = ("cmp1", "cmp2")


def router_scenario(
    rng: random.Random,
    index: int,
    tunnel: NetworkType,
    firewall_driver: FirewallDriver = FirewallDriver.IPTABLES_HYBRID,
) -> str:
    """A 2-node scenario with one legacy router (see the module docstring), as TOML."""
    count = rng.choice((2, 3))
    nets = [f"net{k}" for k in range(count)]
    cidrs = [f"10.{60 + index % 150}.{k}.0/24" for k in range(count)]
    seg_ids = rng.sample(range(100, 4000), count + 1)  # VLAN ids too: all distinct
    groups = ["sga", "sgb", "sgc"]
    lines = [f'name = "fid{index}"', ""]
    if firewall_driver is not FirewallDriver.IPTABLES_HYBRID:
        lines[1:1] = [f'firewall_driver = "{firewall_driver.value}"']
    for node in NODES:
        lines += ["[[nodes]]", f'name = "{node}"', ""]
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
    for i in range(6):
        # Every network gets a VM on both nodes.
        node, net = NODES[i % 2], nets[(i // 2) % count]
        vms.append(f"vm{i + 1}")
        lines += ["[[ports]]", f'name = "vm{i + 1}"', f'node = "{node}"', f'network = "{net}"']
        if rng.random() < 0.1:
            lines.append("port_security = false")
        else:
            sgs = rng.sample(groups, k=rng.choice((1, 1, 2)))
            lines.append("security_groups = [" + ", ".join(f'"{g}"' for g in sgs) + "]")
        lines.append("")
    fips = [vm for vm in vms if rng.random() < 0.5] or [rng.choice(vms)]
    fip_list = ", ".join(
        f'{{ port = "{vm}", address = "203.0.113.{20 + i}" }}' for i, vm in enumerate(fips)
    )
    snat = "true" if rng.random() < 0.5 else "false"
    lines += ["[[routers]]", 'name = "r1"', f'node = "{rng.choice(NODES)}"',
              "interfaces = [" + ", ".join(f'"{n}"' for n in nets) + "]",
              'external_gateway = { network = "public" }', f"enable_snat = {snat}",
              f"floating_ips = [{fip_list}]", ""]  # fmt: skip
    return "\n".join(lines)


class _Lab:
    """The routing facts of one lab: its router, the ports it has on each network, the
    floating IPs and the outside."""

    def __init__(self, ctx: PlanContext) -> None:
        self.ctx = ctx
        found = list(ctx.routers.items())
        if len(found) != 1:
            raise ValueError(f"a legacy-router lab has one router namespace, not {len(found)}")
        self.netns, (self.node, self.router) = found[0]
        self.outside = outside_endpoint(self.node)
        self.outside_mac = ctx.outside_macs[self.outside]
        self.fips = {f.port: f.address for f in self.router.router.floating_ips}

    def port_on(self, vm: VmInfo) -> RouterPort:
        """The router's port on the VM's network (the VM's gateway)."""
        return next(p for p in self.router.internal if p.network.name == vm.network)

    def network_of(self, vm: VmInfo) -> tuple[NetworkType, int, str]:
        net = next(n for n in self.ctx.scenario.networks if n.name == vm.network)
        return net.type, net.segmentation_id, net.id

    def fip_of(self, vm: VmInfo) -> IPv4Address | None:
        return self.fips.get(vm.port_id)

    def leaves_as(self, vm: VmInfo) -> IPv4Address:
        """The source address a VM's packet to the outside leaves the router with."""
        fip = self.fip_of(vm)
        if fip is not None:
            return fip
        gateway = self.router.gateway
        if self.router.router.enable_snat and gateway is not None:
            return gateway.interface.ip
        source = first_ip(vm)
        assert isinstance(source, IPv4Address)
        return source

    def points(self, packet: Packet, src: VmInfo | None, routed: Routed) -> tuple[TracePoint, ...]:
        """``ofproto/trace`` where the packet enters OVS, where it reaches the router's node,
        and where the router's copy reaches another node: one per node."""
        out: list[TracePoint] = []
        if src is None:
            out.append(TracePoint(self.node, packet, external=True))
        else:
            out.append(TracePoint(src.node, packet, vm=src.name))
            if src.node != self.node:
                kind, seg, _ = self.network_of(src)
                tunnel = Tunnel(kind, seg, src.node, self.node)
                out.append(TracePoint(self.node, packet, tunnel=tunnel))
        to = routed.to_node
        if to is not None and to not in {p.node for p in out} and routed.to_network is not None:
            net = self.ctx.scenario.network(routed.to_network)
            tunnel = Tunnel(net.type, net.segmentation_id, self.node, to)
            out.append(TracePoint(to, routed.after, tunnel=tunnel))
        return tuple(out)


def plan_router_packets(rng: random.Random, ctx: PlanContext, count: int) -> list[Send]:
    """``count`` packets (openers included) across the lab's router."""
    lab = _Lab(ctx)
    vms = list(ctx.info.vms)
    with_fip = [vm for vm in vms if lab.fip_of(vm) is not None]
    plan: list[Send] = []
    while len(plan) < count:
        roll = rng.random()
        proto = rng.choice(("tcp", "tcp", "udp", "icmp"))
        pair = len(plan) + 2 <= count
        if roll < 0.35:
            src, dst = rng.choice([(a, b) for a in vms for b in vms if a.network != b.network])
            opener = _east_west(lab, base_packet(rng, src, dst, proto), src, dst, "east-west")
            replied = rng.random() < 0.3 and pair
            back = reply_to(rng, opener.packet) if replied else None
            plan += with_reply(
                opener, _east_west(lab, back, dst, src, "established") if back else None
            )
        elif roll < 0.45:
            src, dst = rng.choice([(a, b) for a in vms for b in vms if a is not b])
            if src.network == dst.network:
                path = "same-node" if src.node == dst.node else "cross-node"
                plan.append(Send(base_packet(rng, src, dst, proto), src.name, "new", path,
                                 dst.name))  # fmt: skip
            else:
                plan.append(_east_west(lab, base_packet(rng, src, dst, proto), src, dst,
                                       "east-west"))  # fmt: skip
        elif roll < 0.65 or not with_fip:
            plan.append(_to_outside(lab, rng, rng.choice(vms), proto))
        elif roll < 0.85:
            vm = rng.choice(with_fip)
            inbound = _from_outside(lab, rng, vm, proto)
            replied = rng.random() < 0.5 and pair
            plan += with_reply(
                inbound, _reply_to_outside(lab, rng, vm, inbound.packet) if replied else None
            )
        else:
            plan.append(_metadata(lab, rng, rng.choice(vms)))
    return plan[:count]


def _east_west(lab: _Lab, packet: Packet, src: VmInfo, dst: VmInfo, kind: str) -> Send:
    gw_in, gw_out = lab.port_on(src), lab.port_on(dst)
    packet = replace(packet, dl_dst=gw_in.interface.mac)
    after = replace(packet, dl_src=gw_out.interface.mac, dl_dst=dst.mac, nw_ttl=packet.nw_ttl - 1)
    to = dst.node if dst.node != lab.node else None
    routed = Routed(lab.node, lab.netns, gw_in.device, gw_out.device, after, to,
                    gw_out.network.id if to else None)  # fmt: skip
    path = "same-node" if src.node == dst.node else "cross-node"
    return Send(packet, src.name, kind, path, dst.name, hops=(routed,),
                trace_at=lab.points(packet, src, routed))  # fmt: skip


def internet_packet(rng: random.Random, vm: VmInfo, proto: str) -> Packet:
    """A new packet from ``vm`` to the internet address (its MACs are filled in by the caller)."""
    stand_in = replace(vm, ips=(f"{INTERNET}/32",), mac="00:00:00:00:00:00")
    return base_packet(rng, vm, stand_in, proto)


def from_internet(
    rng: random.Random, vm: VmInfo, proto: str, fip: IPv4Address, src_mac: str, dst_mac: str
) -> Packet:
    """A new connection from the internet address to ``vm``'s floating IP (a SYN, a datagram
    or an echo request), as the outside sends it from ``src_mac`` to ``dst_mac``."""
    toward = replace(internet_packet(rng, vm, proto), dl_src=vm.mac)
    inbound = replace(
        reply_to(rng, toward) if proto != "icmp" else toward,
        dl_src=src_mac, dl_dst=dst_mac, nw_src=INTERNET, nw_dst=fip,
    )  # fmt: skip
    if inbound.nw_proto == IPProto.TCP:
        return replace(inbound, tcp_flags=TcpFlag.SYN, tcp_ack=0)
    if inbound.nw_proto == IPProto.ICMP:
        return replace(inbound, icmp_type=8)
    return inbound


def _to_outside(lab: _Lab, rng: random.Random, vm: VmInfo, proto: str) -> Send:
    gateway = lab.router.gateway
    assert gateway is not None
    packet = replace(internet_packet(rng, vm, proto), dl_dst=lab.port_on(vm).interface.mac)
    after = replace(packet, dl_src=gateway.interface.mac, dl_dst=lab.outside_mac,
                    nw_src=lab.leaves_as(vm), nw_ttl=packet.nw_ttl - 1)  # fmt: skip
    routed = Routed(lab.node, lab.netns, lab.port_on(vm).device, gateway.device, after)
    return Send(packet, vm.name, "snat", "north-south", lab.outside, hops=(routed,),
                trace_at=lab.points(packet, vm, routed))  # fmt: skip


def _from_outside(lab: _Lab, rng: random.Random, vm: VmInfo, proto: str) -> Send:
    gateway, fip = lab.router.gateway, lab.fip_of(vm)
    assert gateway is not None and fip is not None
    inbound = from_internet(rng, vm, proto, fip, lab.outside_mac, gateway.interface.mac)
    port = lab.port_on(vm)
    after = replace(inbound, dl_src=port.interface.mac, dl_dst=vm.mac, nw_dst=first_ip(vm),
                    nw_ttl=inbound.nw_ttl - 1)  # fmt: skip
    to = vm.node if vm.node != lab.node else None
    routed = Routed(lab.node, lab.netns, gateway.device, port.device, after, to,
                    port.network.id if to else None)  # fmt: skip
    return Send(inbound, lab.outside, "floating-ip", "from-outside", vm.name, hops=(routed,),
                trace_at=lab.points(inbound, None, routed))  # fmt: skip


def _reply_to_outside(lab: _Lab, rng: random.Random, vm: VmInfo, inbound: Packet) -> Send:
    """The VM's answer to a packet that came in through its floating IP: conntrack gives it
    the floating IP as its source on the way out."""
    gateway = lab.router.gateway
    assert gateway is not None
    fixed = first_ip(vm)
    opened = replace(inbound, nw_dst=fixed)
    packet = replace(reply_to(rng, opened), dl_src=vm.mac, dl_dst=lab.port_on(vm).interface.mac)
    after = replace(packet, dl_src=gateway.interface.mac, dl_dst=lab.outside_mac,
                    nw_src=lab.fip_of(vm), nw_ttl=packet.nw_ttl - 1)  # fmt: skip
    routed = Routed(lab.node, lab.netns, lab.port_on(vm).device, gateway.device, after)
    return Send(packet, vm.name, "established", "north-south", lab.outside, hops=(routed,),
                trace_at=lab.points(packet, vm, routed))  # fmt: skip


def _metadata(lab: _Lab, rng: random.Random, vm: VmInfo) -> Send:
    """A new connection to the metadata service, which the router redirects to its own
    port 9697 (its proxy, if one listens there)."""
    to_service = replace(vm, ips=(f"{METADATA}/32",), mac="00:00:00:00:00:00")
    packet = replace(base_packet(rng, vm, to_service, "tcp"), tp_dst=80,
                     dl_dst=lab.port_on(vm).interface.mac)  # fmt: skip
    routed = Routed(lab.node, lab.netns, lab.port_on(vm).device, None, packet)
    return Send(packet, vm.name, "metadata", "to-router", "router", hops=(routed,),
                trace_at=lab.points(packet, vm, routed))  # fmt: skip
