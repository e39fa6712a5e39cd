"""A distributed (DVR) router over three nodes, built for real and walked
(examples/scenarios/dvr.toml).

cmp1 and cmp2 host VMs on two VXLAN networks and a VLAN network; net1 runs ``dvr_snat``. Each
node gets its own copy of the router (``qrouter-``, the same ``qr-`` MACs and addresses,
permanent ARP entries for the subnets' ports), the OVS agent's DVR flows and a ``fip-``
namespace; net1 also the ``snat-`` namespace. Every node and its namespaces are captured with
``collect`` after a few pings filled the caches. A packet that crosses to another node is sent
for real, walked on its first node from the VM, and walked on the second from the frame the
underlay really carried (VXLAN, or tagged on the physical network); each kernel's TRACE lines
must be its node's walk's, in order. Cases: routed VM to VM across nodes (the DVR MAC on the
wire, the router's MAC back on arrival), on one node, into the VLAN network, through net1's SNAT,
outside to a floating IP and back out with it, proxy ARP for it, ARP for the gateway kept on
the node; and the generated flows, rules, ``ip rule``s and ARP entries are what the kernels and
Open vSwitch hold.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from nodetrace.engine.walk import FromInterface, ToDevice, ToHost, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog
from nodetrace.lab.dvr import fip_netns
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.resources import Resources
from nodetrace.lab.router import OUTSIDE_IFNAME, outside_netns, router_netns
from nodetrace.lab.run import run
from nodetrace.lab.send import Wire, packet_from_frame
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.packet import ETH_TYPE_ARP, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import DeviceStep, NetfilterStep, OpenFlowStep, Outcome, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.l3_agent import EXTERNAL_NIC, PolicyRule
from nodetrace.neutron.ovs_agent import UNDERLAY_NIC
from nodetrace.neutron.scenario import load_scenario
from nodetrace.neutron.scenario_routers import FloatingIp
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, unique
from tests.lab.router_bed import Host, TaggedListener, flow_lines, icmp, mac_of, save_tables, send

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/dvr.toml"
NODES = ("cmp1", "cmp2", "net1")
INTERNET = "8.8.8.8"
VXLAN_HEADERS = 14 + 20 + 8 + 8
"""Outer Ethernet, IPv4, UDP and VXLAN headers before the inner frame."""


@dataclass
class DvrLab:
    info: LabInfo
    states: dict[str, NodeState]
    router_ns: dict[str, str]
    fip_ns: dict[str, str]
    snat_ns: str
    snaps: dict[str, Snapshot]
    log: KernelTraceLog

    def vm_ip(self, vm: str) -> IPv4Address:
        ip = self.state_of(vm).vm_port(vm).port.fixed_ips[0]
        assert isinstance(ip, IPv4Address)
        return ip

    def state_of(self, vm: str) -> NodeState:
        return self.states[self.info.vm(vm).node]

    def qr_mac(self, vm: str) -> str:
        """The MAC of the router's interface on ``vm``'s network (the same on every node)."""
        state = self.state_of(vm)
        net = state.vm_port(vm).network.id
        return next(p.interface.mac for p in state.routers[0].internal if p.network.id == net)

    def tap(self, vm: str) -> str:
        return naming.tap_name(self.state_of(vm).vm_port(vm).port.id)

    def walk(self, node: str, packet: Packet, start: FromInterface, target: ToDevice) -> Trace:
        snap = self.snaps[node]
        request = WalkRequest(packet, start, (), None, target)
        return walk(snap, request, engines_for(snap), switch=snap.ovs)

    def devices(self) -> set[str]:
        return {i.name for s in self.snaps.values() for i in s.topology.interfaces}

    def devices_of(self, node: str) -> set[str]:
        return {i.name for i in self.snaps[node].topology.interfaces}

    def underlay_port(self, node: str) -> Host:
        """The node's cable into the underlay switch: what it sends arrives there."""
        index = [n.name for n in self.info.nodes].index(node)
        return Host(self.info.underlay_netns, f"u{index}")

    def two_legs(
        self, sender: Host, receiver: Host, packet: Packet, nodes: tuple[str, str], target: str
    ) -> tuple[list[Packet], Packet, Trace, Trace]:
        """Send ``packet`` from a VM on ``nodes[0]`` to ``receiver``, beyond a tunnel on
        ``nodes[1]``: what arrived, the inner frame the underlay carried, the walk on the
        first node from the VM's tap to the underlay, and the walk on the second of the frame
        really carried, from the underlay to ``target``. Each node's kernel must have logged
        its own walk's TRACE lines, in order; the nodes' lines interleave in time and are told
        apart by the devices only the second node has (names both share, such as qr-, count
        for the first: the second node's router seeing the packet would add lines there)."""
        src, dst = (self.states[n] for n in nodes)
        self.log.records()
        with TaggedListener(self.underlay_port(nodes[0])) as on_underlay:
            on_underlay.drain()
            arrived = send(sender, receiver, packet, lambda p: p.ip_id == packet.ip_id)
            crossed = _underlay_frames(on_underlay, packet.ip_id or 0, dst.node.underlay_ip)
        mine = re.compile(rf"^[^\[]* TTL=\d+ ID={packet.ip_id} [^\[]* TYPE=8 ")
        lines = [
            line for line in self.log.lines(devices=self.devices(), settle=0.1) if mine.search(line)
        ]
        assert len(crossed) == 1, crossed
        vm = next(vp for vp in src.vm_ports if vp.port.mac == packet.dl_src)
        first = self.walk(
            nodes[0], packet, FromInterface(naming.tap_name(vm.port.id)), ToDevice(UNDERLAY_NIC)
        )
        vni, inner = crossed[0]
        meta: tuple[tuple[str, str], ...] = ()
        if vni:  # a tunnel: the walk rebuilds the outer packet from these
            meta = (
                ("tun_src", str(src.node.underlay_ip)),
                ("tun_dst", str(dst.node.underlay_ip)),
                ("tun_id", str(int.from_bytes(vni, "big"))),
            )
        snap = self.snaps[nodes[1]]
        request = WalkRequest(inner, FromInterface(UNDERLAY_NIC), meta, None, ToDevice(target))
        second = walk(snap, request, engines_for(snap), switch=snap.ovs)
        only_second = self.devices_of(nodes[1]) - self.devices_of(nodes[0])
        on_second = [line for line in lines if only_second.intersection(_devs(line))]
        on_first = [line for line in lines if line not in on_second]
        assert on_first == render_kernel_walk(first)[0].splitlines()
        assert on_second == render_kernel_walk(second)[0].splitlines()
        return arrived, inner, first, second


def _devs(line: str) -> set[str]:
    """The devices a TRACE line names (IN=, OUT=, PHYSIN=, PHYSOUT=)."""
    return set(re.findall(r"\b(?:IN|OUT|PHYSIN|PHYSOUT)=(\S+)", line))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DvrLab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("dv")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="legacy", root=root)
    try:
        states = {n: generate_node(scenario, n) for n in NODES}
        router_ns = {n: router_netns(name, states[n].routers[0]) for n in NODES}
        fip_ns = {n: fip_netns(name, n, states[n].fip_namespaces[0]) for n in NODES}
        snat_ns = router_netns(name, states["net1"].snat_routers[0])
        own = {n: (router_ns[n], fip_ns[n]) + ((snat_ns,) if n == "net1" else ()) for n in NODES}
        # Fill the VMs' ARP caches for their gateway and the switches' MAC tables, as a
        # running cloud has them; then forget the connections, so each case starts anew.
        pairs = (("blue1", "green2"), ("green2", "blue1"), ("blue2", "green1"), ("blue1", "red2"))
        for src, dst in pairs:
            run(["ping", "-c1", "-W1", str(_ip(states, dst))], netns=info.vm(src).netns)
        run(["ping", "-c1", "-W1", INTERNET], netns=info.vm("blue1").netns)
        run(["ping", "-c1", "-W1", INTERNET], netns=info.vm("blue2").netns)
        run(["ping", "-c1", "-W1", str(_fip(states).address)], netns=outside_netns(name, "cmp1"))
        for n in NODES:
            for netns in own[n]:
                run(["conntrack", "-F"], netns=netns, check=False)
            for netns in (info.node(n).netns, *own[n]):
                run(
                    ["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                    netns=netns,
                )
        snaps = {}
        for n in NODES:
            node = info.node(n)
            out = root / f"snapshot-{n}"
            collect(
                str(out),
                Options(
                    netns=node.netns,
                    ovs_rundir=node.ovs_rundir,
                    namespaces=own[n],
                ),
            )
            snaps[n] = load(out)
        res = Resources(Ledger(LabDir(name, root).ledger_path))
        with KernelTraceLog(res) as log:
            yield DvrLab(info, states, router_ns, fip_ns, snat_ns, snaps, log)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _fip(states: dict[str, NodeState]) -> FloatingIp:
    return states["cmp1"].routers[0].router.floating_ips[0]


def _ip(states: dict[str, NodeState], vm: str) -> IPv4Address:
    for state in states.values():
        for vp in state.vm_ports:
            if vp.port.name == vm:
                ip = vp.port.fixed_ips[0]
                assert isinstance(ip, IPv4Address)
                return ip
    raise KeyError(vm)


def _underlay_frames(
    wire: TaggedListener, ip_id: int, to: IPv4Address | None = None
) -> list[tuple[bytes, Packet]]:
    """Frames on the underlay carrying the probe: VXLAN (to the tunnel endpoint ``to``, or
    any) as (VNI, inner packet), or 802.1Q-tagged (a VLAN network) as (b"", the packet with
    its VLAN)."""
    out = []
    for data, vlan in wire.receive(timeout=0.3):
        if vlan is not None:
            tagged = packet_from_frame(data)
            if tagged is not None and tagged.ip_id == ip_id:
                out.append((b"", dataclasses.replace(tagged, dl_vlan=vlan)))
            continue
        outer = packet_from_frame(data)
        if outer is None or outer.tp_dst != 4789 or len(data) <= VXLAN_HEADERS:
            continue
        if to is not None and outer.nw_dst != to:
            continue  # flooded to another node as well: unknown unicast in br-tun
        inner = packet_from_frame(data[VXLAN_HEADERS:])
        if inner is not None and inner.ip_id == ip_id:
            out.append((data[VXLAN_HEADERS - 4 : VXLAN_HEADERS - 1], inner))
    return out


def _openflow(trace: Trace, bridge: str) -> list[OpenFlowStep]:
    return [s for s in trace.steps if isinstance(s, OpenFlowStep) and s.bridge == bridge]


@pytest.mark.lab
def test_vm_to_vm_is_routed_on_the_source_node_and_crosses_with_its_dvr_mac(
    lab: DvrLab,
) -> None:
    blue1, green2 = lab.info.vm("blue1"), lab.info.vm("green2")
    cmp1 = lab.states["cmp1"]
    packet = icmp(blue1.mac, lab.qr_mac("blue1"), str(lab.vm_ip("blue1")), str(lab.vm_ip("green2")))
    tap = lab.tap("green2")
    arrived, crossed, first, second = lab.two_legs(
        Host(blue1.netns), Host(green2.netns), packet, ("cmp1", "cmp2"), tap
    )
    # Reality: across the tunnel with cmp1's DVR MAC, into the VM from the router's MAC.
    assert crossed.dl_src == cmp1.dvr_mac
    assert [p.dl_src for p in arrived] == [lab.qr_mac("green2")]
    assert [(p.nw_src, p.nw_dst, p.nw_ttl) for p in arrived] == [(packet.nw_src, packet.nw_dst, 63)]
    # The walks: routed by cmp1's router, the source rewritten in cmp1's br-tun, put back in
    # cmp2's br-int.
    assert first.outcome is Outcome.DELIVERED, first.reason
    rewrite = [s for s in _openflow(first, "br-tun") if s.table == 1]
    assert rewrite and rewrite[0].actions.startswith(f"mod_dl_src:{cmp1.dvr_mac},")
    assert any(d.startswith("qr-") for d in _devices(first))
    assert second.outcome is Outcome.DELIVERED, second.reason
    assert _devices(second)[-1] == tap
    to_src = [s for s in _openflow(second, "br-int") if s.table == 1]
    assert to_src and to_src[0].actions.startswith(f"mod_dl_src:{lab.qr_mac('green2')},")


@pytest.mark.lab
def test_vm_to_a_vlan_network_crosses_the_physical_network_with_the_dvr_mac(
    lab: DvrLab,
) -> None:
    blue1, red2 = lab.info.vm("blue1"), lab.info.vm("red2")
    cmp1 = lab.states["cmp1"]
    red = next(p for p in cmp1.routers[0].internal if p.network.name == "red")
    packet = icmp(blue1.mac, lab.qr_mac("blue1"), str(lab.vm_ip("blue1")), str(lab.vm_ip("red2")))
    tap = lab.tap("red2")
    arrived, crossed, first, second = lab.two_legs(
        Host(blue1.netns), Host(red2.netns), packet, ("cmp1", "cmp2"), tap
    )
    # Reality: on the physical network in the provider VLAN, from cmp1's DVR MAC; into the
    # VM from the router's MAC.
    assert (crossed.dl_vlan, crossed.dl_src) == (red.network.segmentation_id, cmp1.dvr_mac)
    assert [(p.dl_src, p.nw_ttl) for p in arrived] == [(red.interface.mac, 63)]
    # The walks: the rewrite is br-phys's (table 1), cmp2's br-int matches the provider VLAN
    # in table 2.
    assert first.outcome is Outcome.DELIVERED, first.reason
    rewrite = [s for s in _openflow(first, "br-phys") if s.table == 1]
    assert rewrite and rewrite[0].actions.startswith(f"mod_dl_src:{cmp1.dvr_mac},")
    assert second.outcome is Outcome.DELIVERED, second.reason
    assert _devices(second)[-1] == tap
    to_src = [s for s in _openflow(second, "br-int") if s.table == 2]
    assert to_src and to_src[0].actions.startswith(f"mod_dl_src:{red.interface.mac},")


@pytest.mark.lab
def test_a_vm_without_a_floating_ip_leaves_through_the_snat_namespace_on_net1(
    lab: DvrLab,
) -> None:
    blue2 = lab.info.vm("blue2")
    cmp2, net1 = lab.states["cmp2"], lab.states["net1"]
    [snat] = net1.snat_routers
    assert snat.gateway is not None
    sg = next(p for p in snat.internal if p.network.name == "blue")
    packet = icmp(blue2.mac, lab.qr_mac("blue2"), str(lab.vm_ip("blue2")), INTERNET)
    outside = Host(outside_netns(lab.info.name, "net1"), OUTSIDE_IFNAME)
    arrived, crossed, first, second = lab.two_legs(
        Host(blue2.netns), outside, packet, ("cmp2", "net1"), EXTERNAL_NIC
    )
    # Reality: cmp2's router sends it to the sg- port, with cmp2's DVR MAC across the tunnel;
    # it reaches the outside with the gateway's address.
    assert (crossed.dl_src, crossed.dl_dst) == (cmp2.dvr_mac, sg.interface.mac)
    assert [(p.nw_src, p.nw_ttl) for p in arrived] == [(snat.gateway.interface.ip, 62)]
    # The walks: the ip rule for blue's subnet in cmp2's router, SNAT in net1's snat- namespace.
    assert first.outcome is Outcome.DELIVERED, first.reason
    table = str(int(lab.states["cmp2"].routers[0].internal[0].interface.ip))
    assert any(f"table {table}:" in s.detail for s in first.steps if isinstance(s, DeviceStep))
    assert second.outcome is Outcome.DELIVERED, second.reason
    assert _devices(second)[-1] == EXTERNAL_NIC
    assert sg.device in _devices(second)
    assert [t for t in _nat(second, "SNAT") if f"-o {snat.gateway.device} " in t] == [
        f"-A neutron-l3-agent-snat -o {snat.gateway.device} -j SNAT --to-source "
        f"{snat.gateway.interface.ip} --random-fully"
    ]


@pytest.mark.lab
@pytest.mark.parametrize("node", NODES)
@pytest.mark.parametrize("bridge", ["br-int", "br-tun", "br-phys", "br-ex"])
def test_the_generated_dvr_flows_are_what_open_vswitch_holds(
    lab: DvrLab, node: str, bridge: str
) -> None:
    built = lab.info.node(node)
    ovs = OvsInstance(built.netns, Path(built.ovs_rundir))
    real = ovs.ofctl("-O", "OpenFlow13", "dump-flows", bridge)
    # Learned flows (table 20) come from the traffic, not from the agent.
    real = "\n".join(
        line for line in real.splitlines() if "table=20, " not in line or "priority=0" in line
    )
    assert flow_lines(real) == flow_lines(lab.states[node].dump_flows_text(bridge, openflow13=True))


@pytest.mark.lab
@pytest.mark.parametrize("node", NODES)
def test_each_node_has_the_routers_permanent_arp_entries(lab: DvrLab, node: str) -> None:
    out = run(["ip", "-4", "neigh", "show", "nud", "permanent"], netns=lab.router_ns[node]).stdout
    real = sorted((w[0], w[2], w[4]) for line in out.splitlines() if len(w := line.split()) >= 5)
    router = lab.states[node].routers[0]
    want = [(str(e.ip), e.device, e.mac) for e in router.neighbours]
    link = router.fip_link
    assert link is not None
    want.append((str(link.fpr_ip), link.rfp, mac_of(lab.fip_ns[node], link.fpr)))
    # Every VM port and sg- port of the three subnets, and the fpr- end of the veth.
    assert real == sorted(want) and len(want) == 6 + 3 + 1


@pytest.mark.lab
def test_vm_to_vm_on_one_node_is_routed_there_and_never_crosses(lab: DvrLab) -> None:
    blue1, green1 = lab.info.vm("blue1"), lab.info.vm("green1")
    packet = icmp(blue1.mac, lab.qr_mac("blue1"), str(lab.vm_ip("blue1")), str(lab.vm_ip("green1")))
    with TaggedListener(lab.underlay_port("cmp1")) as underlay:
        underlay.drain()
        arrived = send(
            Host(blue1.netns), Host(green1.netns), packet, lambda p: p.ip_id == packet.ip_id
        )
        crossed = _underlay_frames(underlay, packet.ip_id or 0)
    tap = lab.tap("green1")
    trace = lab.walk("cmp1", packet, FromInterface(lab.tap("blue1")), ToDevice(tap))
    assert [(p.dl_src, p.nw_ttl) for p in arrived] == [(lab.qr_mac("green1"), 63)]
    assert crossed == []
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert [s for s in trace.steps if isinstance(s, DeviceStep)][-1].device == tap
    assert not [s for s in _openflow(trace, "br-tun") if s.actions != "drop"]


@pytest.mark.lab
def test_arp_for_the_gateway_is_answered_on_the_node_and_kept_off_the_tunnels(
    lab: DvrLab,
) -> None:
    from scapy.layers.l2 import ARP, Ether

    vm, gateway = lab.info.vm("blue1"), lab.states["cmp1"].routers[0].internal[0].interface
    frame = Ether(src=vm.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=vm.mac, psrc=str(lab.vm_ip("blue1")), pdst=str(gateway.ip)
    )
    packet = Packet(
        dl_src=vm.mac, dl_dst="ff:ff:ff:ff:ff:ff", dl_type=ETH_TYPE_ARP, arp_op=1,
        arp_spa=lab.vm_ip("blue1"), arp_tpa=gateway.ip, arp_sha=vm.mac,
        arp_tha="00:00:00:00:00:00",
    )  # fmt: skip
    with (
        Wire.open(lab.underlay_port("cmp1")) as underlay,
        Wire.open(Host(vm.netns)) as wire,
    ):
        underlay.drain()
        wire.drain()
        wire.send(bytes(frame))
        replies = [
            Ether(f.data)[ARP].hwsrc
            for f in wire.receive(timeout=0.5)
            if Ether(f.data).haslayer(ARP) and Ether(f.data)[ARP].op == 2
        ]
        crossed = [f for f in underlay.receive(timeout=0.2) if f.data[12:14] == b"\x08\x00"]
    trace = lab.walk("cmp1", packet, FromInterface(lab.tap("blue1")), ToDevice(UNDERLAY_NIC))
    assert replies == [gateway.mac]
    assert crossed == []
    dropped = [s for s in _openflow(trace, "br-tun") if s.table == 22 and s.priority == 3]
    assert dropped and dropped[0].actions == "drop"
    assert trace.outcome is Outcome.DROPPED, trace.reason


def _trace_lines(lab: DvrLab, packet: Packet) -> list[str]:
    """The TRACE lines both nodes logged for ``packet`` (not for an answer or a quoted copy)."""
    tail = " TYPE=8 " if packet.icmp_type == 8 else " "
    mine = re.compile(rf"^[^\[]* TTL=\d+ ID={packet.ip_id} [^\[]*{tail}")
    return [line for line in lab.log.lines(devices=lab.devices(), settle=0.1) if mine.search(line)]


def _nat(trace: Trace, target: str) -> list[str]:
    return [
        s.rule.text
        for s in trace.steps
        if isinstance(s, NetfilterStep) and s.rule is not None and f"-j {target}" in s.rule.text
    ]


def _devices(trace: Trace) -> list[str]:
    return [s.device for s in trace.steps if isinstance(s, DeviceStep)]


@pytest.mark.lab
def test_outside_to_the_floating_ip_goes_through_the_fip_namespace_to_the_vm(lab: DvrLab) -> None:
    fip, fip_ns = _fip(lab.states), lab.states["cmp1"].fip_namespaces[0]
    outside = outside_netns(lab.info.name, "cmp1")
    packet = icmp(mac_of(outside, OUTSIDE_IFNAME), fip_ns.gateway.mac, INTERNET, str(fip.address))
    lab.log.records()
    seen = send(
        Host(outside, OUTSIDE_IFNAME),
        Host(lab.info.vm("blue1").netns),
        packet,
        lambda p: p.ip_id == packet.ip_id,
    )
    lines = _trace_lines(lab, packet)
    tap = lab.tap("blue1")
    trace = lab.walk("cmp1", packet, FromInterface(EXTERNAL_NIC), ToDevice(tap))
    assert [(str(p.nw_src), p.nw_dst) for p in seen] == [(INTERNET, fip.fixed_ip)]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert _devices(trace)[-1] == tap
    link = lab.states["cmp1"].routers[0].fip_link
    assert link is not None
    assert f"{link.fpr} → {link.rfp}" in _devices(trace)
    assert _nat(trace, "DNAT") == [
        f"-A neutron-l3-agent-PREROUTING -d {fip.address}/32 -i {link.rfp} -j DNAT "
        f"--to-destination {fip.fixed_ip}"
    ]
    assert lines == render_kernel_walk(trace)[0].splitlines()


@pytest.mark.lab
def test_a_vm_with_a_floating_ip_leaves_with_it_through_table_16(lab: DvrLab) -> None:
    vm = lab.info.vm("blue1")
    fip = _fip(lab.states)
    outside = outside_netns(lab.info.name, "cmp1")
    packet = icmp(vm.mac, lab.qr_mac("blue1"), str(fip.fixed_ip), INTERNET)
    lab.log.records()
    seen = send(
        Host(vm.netns), Host(outside, OUTSIDE_IFNAME), packet, lambda p: p.ip_id == packet.ip_id
    )
    lines = _trace_lines(lab, packet)
    trace = lab.walk("cmp1", packet, FromInterface(lab.tap("blue1")), ToDevice(EXTERNAL_NIC))
    fg = lab.states["cmp1"].fip_namespaces[0]
    assert [(p.nw_src, p.dl_src) for p in seen] == [(fip.address, fg.gateway.mac)]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert _devices(trace)[-1] == EXTERNAL_NIC
    assert [t for t in _nat(trace, "SNAT") if "float-snat" in t] == [
        f"-A neutron-l3-agent-float-snat -s {fip.fixed_ip}/32 -j SNAT --to-source "
        f"{fip.address} --random-fully"
    ]
    # --random-fully gives the echo a random id as it gives TCP/UDP a random port: what the
    # fip namespace logs after the SNAT carries the id the outside really received.
    after = [line for line in lines if f"SRC={fip.address} " in line]
    assert after and all(f" ID={seen[0].icmp_id} SEQ=" in line for line in after)
    predicted = [
        re.sub(r" ID=\d+ SEQ=", f" ID={seen[0].icmp_id} SEQ=", line)
        if f"SRC={fip.address} " in line
        else line
        for line in render_kernel_walk(trace)[0].splitlines()
    ]
    assert lines == predicted


@pytest.mark.lab
def test_arp_for_the_floating_ip_is_answered_by_proxy_arp_on_fg(lab: DvrLab) -> None:
    from scapy.layers.l2 import ARP, Ether

    fip, fg = _fip(lab.states), lab.states["cmp1"].fip_namespaces[0]
    outside = outside_netns(lab.info.name, "cmp1")
    mac = mac_of(outside, OUTSIDE_IFNAME)
    spa = fg.upstream
    frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac, psrc=str(spa), pdst=str(fip.address)
    )
    with Wire.open(Host(outside, OUTSIDE_IFNAME)) as wire:
        wire.drain()
        wire.send(bytes(frame))
        replies = [
            Ether(f.data)[ARP].hwsrc
            for f in wire.receive(timeout=1.5)
            if Ether(f.data).haslayer(ARP) and Ether(f.data)[ARP].op == 2
        ]
    packet = Packet(
        dl_src=mac, dl_dst="ff:ff:ff:ff:ff:ff", dl_type=ETH_TYPE_ARP, arp_op=1, arp_spa=spa,
        arp_tpa=fip.address, arp_sha=mac, arp_tha="00:00:00:00:00:00",
    )  # fmt: skip
    snap = lab.snaps["cmp1"]
    request = WalkRequest(packet, FromInterface(EXTERNAL_NIC), (), None, ToHost(lab.fip_ns["cmp1"]))
    trace = walk(snap, request, engines_for(snap), switch=snap.ovs)
    assert replies == [fg.gateway.mac]
    assert "proxy ARP" in trace.reason
    assert trace.outcome is Outcome.DELIVERED


def _namespaces(lab: DvrLab) -> list[tuple[str, str, list[PolicyRule]]]:
    """(lab namespace, generated iptables-save text, generated ip rules) of every router
    copy, fip and snat namespace."""
    out = []
    for n in NODES:
        state = lab.states[n]
        router, fip = state.routers[0], state.fip_namespaces[0]
        out.append((lab.router_ns[n], router.iptables_save, list(router.rules)))
        out.append((lab.fip_ns[n], fip.iptables_save, list(fip.rules)))
    snat = lab.states["net1"].snat_routers[0]
    out.append((lab.snat_ns, snat.iptables_save, []))
    return out


@pytest.mark.lab
def test_the_generated_rules_are_what_each_kernel_holds(lab: DvrLab) -> None:
    for netns, save, rules in _namespaces(lab):
        real = run(["iptables-legacy-save"], netns=netns).stdout
        # The TRACE rule the fixture added comes first in raw PREROUTING.
        real = real.replace("-A PREROUTING -j TRACE\n", "")
        assert save_tables(real) == save_tables(save), netns
        shown = json.loads(run(["ip", "-j", "-4", "rule", "show"], netns=netns).stdout)
        extra = [r for r in shown if r.get("table") not in ("local", "main", "default")]
        assert sorted(
            (r["priority"], r.get("src", "all"), r.get("srclen", 0 if r.get("src", "all") == "all" else 32),
             r.get("iif"), str(r["table"]))
            for r in extra
        ) == sorted(
            (r.priority, str(r.src) if r.src else "all", r.src_len if r.src else 0, r.iif,
             str(r.table))
            for r in rules
        ), netns  # fmt: skip
