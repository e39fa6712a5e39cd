"""Where a packet goes on each node and in which netfilter passes, for the fidelity engines.

For a packet on one network (no router) that is the sending VM's Linux bridge, then the
receiving VM's, and a walk from the sending tap (and from the far node's underlay NIC). For a
packet a router forwards (:class:`~nodetrace.lab.fidelity_plan.Routed`) it is longer: the
sending VM's bridge, the router's namespace (PREROUTING, then FORWARD and POSTROUTING, or INPUT
when the router itself is the destination), the receiving VM's bridge with the packet as the
router sent it; and walks on each node the packet crosses: the sender's node, the router's node
(reached across the tunnel or the provider VLAN when the sender is elsewhere), and the node of
a VM the router forwards to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nodetrace.engine.netfilter import HookPath, bridge_path
from nodetrace.engine.walk import ToDevice, ToHost
from nodetrace.model.netfilter import HookDevices
from nodetrace.model.packet import Packet
from nodetrace.model.trace import Hook
from nodetrace.neutron.l3_agent import EXTERNAL_NIC
from nodetrace.neutron.ovs_agent import UNDERLAY_NIC
from nodetrace.neutron.ovs_firewall import uses_native_firewall
from nodetrace.neutron.scenario import Network, NetworkType

if TYPE_CHECKING:
    from nodetrace.lab.fidelity_engines import ScenarioContext
    from nodetrace.lab.fidelity_plan import Routed, Send

ROUTER = "router"
"""The target of a packet for the router's own stack (the metadata address)."""


@dataclass(frozen=True, slots=True)
class NetfilterPass:
    """One skb's way through one namespace's netfilter hooks, as the lab's TRACE shows it."""

    where: str
    """The node (its own namespace) or the router namespace the TRACE output is read in."""
    node: str
    bridge: str | None
    """The Linux bridge of a bridge pass; ``None`` for a router's namespace."""
    path: HookPath
    packet: Packet
    routed: bool = False

    @property
    def label(self) -> str:
        return f"{self.node} {self.bridge}" if self.bridge else f"{self.node} {self.where}"


def netfilter_passes(ctx: ScenarioContext, send: Send) -> list[NetfilterPass]:
    """The netfilter passes the packet meets, in order (native-firewall labs have no bridge)."""
    hybrid = not uses_native_firewall(ctx.scenario)
    out = []
    if send.source in {vm.name for vm in ctx.info.vms} and hybrid:
        vm = ctx.info.vm(send.source)
        dev = ctx.states[vm.node].vm_port(vm.name).devices
        path = bridge_path(dev.qbr, physin=dev.tap, physout=dev.qvb)
        out.append(NetfilterPass(vm.node, vm.node, dev.qbr, path, send.packet))
    arriving = send.packet
    for hop in send.hops:
        out.append(NetfilterPass(hop.netns, hop.node, None, router_path(hop), arriving, True))
        arriving = hop.after
    if send.target in {vm.name for vm in ctx.info.vms} and hybrid:
        vm = ctx.info.vm(send.target)
        dev = ctx.states[vm.node].vm_port(vm.name).devices
        path = bridge_path(dev.qbr, physin=dev.qvb, physout=dev.tap)
        out.append(NetfilterPass(vm.node, vm.node, dev.qbr, path, arriving))
    return out


def router_path(routed: Routed) -> HookPath:
    """The hooks a router's namespace runs a packet through, with the devices it names."""
    first = (Hook.PREROUTING, HookDevices(routed.in_dev, "", None, None, False))
    if routed.out_dev is None:
        return (first, (Hook.INPUT, HookDevices(routed.in_dev, "", None, None, False)))
    return (
        first,
        (Hook.FORWARD, HookDevices(routed.in_dev, routed.out_dev, None, None, False)),
        # ip_output() hands POSTROUTING the device a forwarded packet came in on, too.
        (Hook.POSTROUTING, HookDevices(routed.in_dev, routed.out_dev, None, None, False)),
    )


@dataclass(frozen=True, slots=True)
class Leg:
    """One node's part of the walk: where the packet enters it, as what, and (on the last
    node) what it is meant to reach."""

    node: str
    start: str
    packet: Any
    metadata: tuple[tuple[str, str], ...]
    target: ToDevice | ToHost | None


def _arrival(
    ctx: ScenarioContext, node: str, packet: Packet, network: Network, from_node: str
) -> tuple[Packet, tuple[tuple[str, str], ...]]:
    """The packet as ``node``'s underlay NIC receives it from ``from_node``: VLAN-tagged on a
    provider network, else with the tunnel's metadata."""
    if network.type is NetworkType.VLAN:
        return replace(packet, dl_vlan=network.segmentation_id), ()
    meta = (
        ("tun_src", ctx.info.node(from_node).underlay_ip),
        ("tun_dst", ctx.info.node(node).underlay_ip),
        ("tun_id", str(network.segmentation_id)),
    )
    return packet, meta


def flat_legs(ctx: ScenarioContext, send: Send) -> list[Leg]:
    """The sender's tap, then (across the underlay) the receiving node's underlay NIC."""
    info = ctx.info
    dst = info.vm(send.target)
    dst_port = ctx.states[dst.node].vm_port(dst.name)
    target = ToDevice(dst_port.devices.tap)
    legs: list[Leg] = []
    if send.source != "underlay":
        src = info.vm(send.source)
        src_tap = ctx.states[src.node].vm_port(src.name).devices.tap
        same = src.node == dst.node
        legs.append(Leg(src.node, src_tap, send.packet, (), target if same else None))
        if same:
            return legs
        remote = src.node
    else:
        assert send.tunnel is not None
        remote = send.tunnel.remote_node
    packet, meta = _arrival(ctx, dst.node, send.packet, dst_port.network, remote)
    legs.append(Leg(dst.node, UNDERLAY_NIC, packet, meta, target))
    return legs


def routed_legs(ctx: ScenarioContext, send: Send) -> list[Leg]:
    """One leg per node the packet crosses: the sender's (a VM's tap, or br-ex's uplink for a
    packet from the outside), each router namespace's node reached across the underlay, and
    the node the last router sends it on to."""
    hops = send.hops
    assert hops
    info = ctx.info
    vms = {vm.name for vm in info.vms}
    final: ToDevice | ToHost
    if send.target == ROUTER:
        final = ToHost(hops[-1].netns)
    elif send.target in vms:
        vm = info.vm(send.target)
        final = ToDevice(ctx.states[vm.node].vm_port(vm.name).devices.tap)
    else:
        final = ToDevice(EXTERNAL_NIC)  # the outside, behind br-ex's uplink
    packet = send.packet
    network: Network | None = None
    if send.source in vms:
        src = info.vm(send.source)
        node = src.node
        pending = Leg(node, ctx.states[node].vm_port(src.name).devices.tap, packet, (), None)
        network = next(n for n in ctx.scenario.networks if n.name == src.network)
    else:
        node = hops[0].node
        pending = Leg(node, EXTERNAL_NIC, packet, (), None)
    legs: list[Leg] = []
    dvr_mac: str | None = None
    for hop in (*hops, None):
        # Where the packet goes next: the next hop's node, or (after the last) the node it is
        # sent on to.
        nxt = hop.node if hop is not None else (hops[-1].to_node or node)
        if nxt != node:
            assert network is not None, "a packet crossing nodes needs its network"
            legs.append(pending)
            # A distributed router's frame leaves its node with the node's DVR MAC as source.
            wire = replace(packet, dl_src=dvr_mac) if dvr_mac else packet
            arriving, meta = _arrival(ctx, nxt, wire, network, node)
            pending = Leg(nxt, UNDERLAY_NIC, arriving, meta, None)
            node = nxt
        if hop is not None:
            packet = hop.after
            dvr_mac = ctx.states[hop.node].dvr_mac
            network = ctx.scenario.network(hop.to_network) if hop.to_network else network
    legs.append(replace(pending, target=final))
    return legs
