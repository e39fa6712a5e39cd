"""A legacy Neutron router, built for real and walked (examples/scenarios/legacy-router.toml).

The lab builds the router's ``qrouter-`` namespace with its ``qr-``/``qg-`` ports moved out of
br-int, the L3 agent's iptables in it, and br-ex's uplink to a namespace standing for the
outside (203.0.113.1 and 8.8.8.8). The node and the router's namespace are captured with
``collect`` after a few pings filled the neighbour and MAC tables. Each case sends one real
frame and records what arrived where (with which addresses, after the router's NAT), then
walks the same packet through the snapshot: the walk must end where the frame really went,
through the rule that really rewrote it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest

from nodetrace.engine.walk import FromInterface, ToDevice, ToHost, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.resources import Resources
from nodetrace.lab.router import OUTSIDE_IFNAME, outside_netns, router_netns
from nodetrace.lab.run import run
from nodetrace.lab.send import Wire
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.packet import ETH_TYPE_ARP, ETH_TYPE_IPV4, IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import DeviceStep, NetfilterStep, Outcome, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.l3_agent import EXTERNAL_NIC, RouterState
from nodetrace.neutron.scenario import load_scenario
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, unique
from tests.lab.router_bed import Host, flow_lines, icmp, mac_of, save_tables
from tests.lab.router_bed import send as send_frame

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/legacy-router.toml"
NODE = "aio1"
INTERNET = "8.8.8.8"


@dataclass
class RouterLab:
    info: LabInfo
    state: NodeState
    router: RouterState
    router_ns: str
    outside_ns: str
    snap: Snapshot
    log: KernelTraceLog
    loaded_rules: str
    """``iptables-legacy-save`` in the router's namespace, as ``lab up`` left it."""

    def vm_ip(self, vm: str) -> IPv4Address:
        port = self.state.vm_port(vm).port
        ip = port.fixed_ips[0]
        assert isinstance(ip, IPv4Address)
        return ip

    def qr_mac(self, vm: str) -> str:
        """The MAC of the router's interface on ``vm``'s network (the VM's gateway)."""
        net = self.state.vm_port(vm).network.id
        return next(p.interface.mac for p in self.router.internal if p.network.id == net)

    def tap(self, vm: str) -> str:
        return naming.tap_name(self.state.vm_port(vm).port.id)

    def walk(
        self, packet: Packet, start: FromInterface, target: ToDevice | ToHost | None = None
    ) -> Trace:
        request = WalkRequest(packet, start, (), None, target)
        return walk(self.snap, request, engines_for(self.snap), switch=self.snap.ovs)

    def send(
        self,
        sender: Host,
        receiver: Host,
        packet: Packet,
        arrived: Callable[[Packet], bool] | None = None,
    ) -> tuple[list[Packet], list[str]]:
        """Send ``packet``; what reached ``receiver`` (``arrived`` says what counts; by default
        the packet itself, known by its IP ID, as it arrived after whatever NAT rewrote it), and
        the TRACE lines the node and the router's namespace logged for the packet sent (not for
        any answer)."""
        self.log.records()
        seen = send_frame(sender, receiver, packet, arrived or (lambda p: p.ip_id == packet.ip_id))
        devices = {i.name for i in self.snap.topology.interfaces}
        tail = " TYPE=8 " if packet.nw_proto == IPProto.ICMP else f" SPT={packet.tp_src} "
        # Its own header, not one quoted inside an ICMP error ("[SRC=... ]").
        mine = re.compile(rf"^[^\[]* TTL=\d+ ID={packet.ip_id} [^\[]*{tail}")
        lines = [line for line in self.log.lines(devices=devices, settle=0.1) if mine.search(line)]
        return seen, lines


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterLab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("rt")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="legacy", root=root)
    try:
        state = generate_node(scenario, NODE)
        router = state.routers[0]
        rns, ons = router_netns(name, router), outside_netns(name, NODE)
        # Fill the neighbour caches and br-int's/br-ex's MAC tables, as a running cloud has
        # them; then forget those connections, so each case starts a new one.
        for vm in info.vms:
            run(["ping", "-c1", "-W1", INTERNET], netns=vm.netns)
        run(["ping", "-c1", "-W1", str(router.gateway.interface.ip)], netns=ons)  # type: ignore[union-attr]
        run(["conntrack", "-F"], netns=rns, check=False)
        node = info.node(NODE)
        loaded = run(["iptables-legacy-save"], netns=rns).stdout
        # TRACE everything from where it enters each stack; the snapshot holds these rules too.
        for netns in (node.netns, rns):
            run(
                ["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                netns=netns,
            )
        out = root / "snapshot"
        collect(str(out), Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=(rns,)))
        res = Resources(Ledger(LabDir(name, root).ledger_path))
        with KernelTraceLog(res) as log:
            yield RouterLab(info, state, router, rns, ons, load(out), log, loaded)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _nat_rule(trace: Trace, target: str) -> str:
    """The text of the one ``target`` (SNAT/DNAT) rule the walk applied in the router."""
    texts = [
        s.rule.text
        for s in trace.steps
        if isinstance(s, NetfilterStep) and s.rule is not None and f"-j {target}" in s.rule.text
    ]
    assert len(texts) == 1, texts
    return texts[0]


def _last_device(trace: Trace) -> str:
    return [s for s in trace.steps if isinstance(s, DeviceStep)][-1].device


@pytest.mark.lab
def test_vm_to_the_internet_leaves_snat_to_the_gateway_address(lab: RouterLab) -> None:
    vm = lab.info.vm("db1")
    packet = icmp(vm.mac, lab.qr_mac("db1"), str(lab.vm_ip("db1")), INTERNET)
    seen, lines = lab.send(Host(vm.netns), Host(lab.outside_ns, OUTSIDE_IFNAME), packet)
    trace = lab.walk(packet, FromInterface(lab.tap("db1")))
    gateway = lab.router.gateway
    assert gateway is not None
    assert [str(p.nw_src) for p in seen] == [str(gateway.interface.ip)]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert lines == render_kernel_walk(trace)[0].splitlines()
    assert _last_device(trace) == EXTERNAL_NIC
    rule = _nat_rule(trace, "SNAT")
    assert f"-o {gateway.device} -j SNAT --to-source {seen[0].nw_src}" in rule


@pytest.mark.lab
def test_a_packet_with_ttl_1_dies_in_the_router(lab: RouterLab) -> None:
    vm = lab.info.vm("db1")
    packet = dataclasses.replace(
        icmp(vm.mac, lab.qr_mac("db1"), str(lab.vm_ip("db1")), INTERNET), nw_ttl=1
    )
    answers, lines = lab.send(Host(vm.netns), Host(vm.netns), packet, lambda p: p.icmp_type == 11)
    trace = lab.walk(packet, FromInterface(lab.tap("db1")))
    # The router answers time-exceeded from its interface on db1's network; nothing leaves.
    router_ip = next(p.interface.ip for p in lab.router.internal if p.network.name == "db")
    assert [p.nw_src for p in answers] == [router_ip]
    assert trace.outcome is Outcome.DROPPED, trace.reason
    assert "ICMP time-exceeded" in trace.reason
    assert lines == render_kernel_walk(trace)[0].splitlines()


@pytest.mark.lab
def test_vm_with_a_floating_ip_leaves_with_that_address(lab: RouterLab) -> None:
    vm = lab.info.vm("web1")
    packet = icmp(vm.mac, lab.qr_mac("web1"), str(lab.vm_ip("web1")), INTERNET)
    seen, lines = lab.send(Host(vm.netns), Host(lab.outside_ns, OUTSIDE_IFNAME), packet)
    trace = lab.walk(packet, FromInterface(lab.tap("web1")))
    fip = lab.router.router.floating_ips[0].address
    assert [p.nw_src for p in seen] == [fip]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert lines == render_kernel_walk(trace)[0].splitlines()
    assert _last_device(trace) == EXTERNAL_NIC
    assert f"-j SNAT --to-source {fip}" in _nat_rule(trace, "SNAT")


@pytest.mark.lab
def test_outside_to_the_floating_ip_reaches_the_vm(lab: RouterLab) -> None:
    gateway = lab.router.gateway
    assert gateway is not None
    fip = lab.router.router.floating_ips[0]
    src_mac = mac_of(lab.outside_ns, OUTSIDE_IFNAME)
    packet = icmp(src_mac, gateway.interface.mac, INTERNET, str(fip.address))
    web1 = lab.info.vm("web1")
    seen, lines = lab.send(Host(lab.outside_ns, OUTSIDE_IFNAME), Host(web1.netns), packet)
    tap = lab.tap("web1")
    trace = lab.walk(packet, FromInterface(EXTERNAL_NIC), ToDevice(tap))
    assert [(str(p.nw_src), p.nw_dst) for p in seen] == [(INTERNET, fip.fixed_ip)]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert lines == render_kernel_walk(trace)[0].splitlines()
    assert _last_device(trace) == tap
    assert f"-d {fip.address}/32 -j DNAT --to-destination {fip.fixed_ip}" in _nat_rule(
        trace, "DNAT"
    )


@pytest.mark.lab
def test_vm_to_vm_across_the_router_is_not_natted(lab: RouterLab) -> None:
    db1, web1 = lab.info.vm("db1"), lab.info.vm("web1")
    packet = icmp(db1.mac, lab.qr_mac("db1"), str(lab.vm_ip("db1")), str(lab.vm_ip("web1")))
    seen, lines = lab.send(Host(db1.netns), Host(web1.netns), packet)
    tap = lab.tap("web1")
    trace = lab.walk(packet, FromInterface(lab.tap("db1")), ToDevice(tap))
    assert [(p.nw_src, p.nw_dst) for p in seen] == [(packet.nw_src, packet.nw_dst)]
    assert [p.dl_src for p in seen] == [lab.qr_mac("web1")]  # routed: from the router's MAC
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert lines == render_kernel_walk(trace)[0].splitlines()
    assert _last_device(trace) == tap
    accepted = [
        s
        for s in trace.steps
        if isinstance(s, NetfilterStep)
        and s.table == "nat"
        and s.rule is not None
        and "! --ctstate DNAT -j ACCEPT" in s.rule.text
    ]
    assert accepted, "the router's nat POSTROUTING lets east-west traffic through unchanged"


@pytest.mark.lab
def test_the_generated_rules_are_what_the_kernel_holds(lab: RouterLab) -> None:
    assert save_tables(lab.loaded_rules) == save_tables(lab.router.iptables_save)


@pytest.mark.lab
def test_metadata_requests_are_redirected_to_the_routers_proxy_port(lab: RouterLab) -> None:
    vm = lab.info.vm("web1")
    ident = int(time.monotonic_ns() % 60000) + 1
    packet = Packet(
        dl_src=vm.mac, dl_dst=lab.qr_mac("web1"), dl_type=ETH_TYPE_IPV4,
        nw_src=lab.vm_ip("web1"), nw_dst=ip_address("169.254.169.254"), nw_proto=IPProto.TCP,
        nw_ttl=64, ip_id=ident, tp_src=30000 + ident % 20000, tp_dst=80, tcp_flags=0x002,
        tcp_window=64240,
    )  # fmt: skip
    answers, lines = lab.send(
        Host(vm.netns), Host(vm.netns), packet, lambda p: p.tp_dst == packet.tp_src
    )
    trace = lab.walk(packet, FromInterface(lab.tap("web1")))
    # The lab's metadata proxy listens on 9697 (nodetrace.lab.metadata): it accepts, and
    # conntrack turns its SYN-ACK back into one from 169.254.169.254:80.
    assert [(str(p.nw_src), p.tp_src, p.tcp_flags & 0x12) for p in answers] == [
        ("169.254.169.254", 80, 0x12)
    ]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert trace.reason.startswith("delivered to the host's TCP")
    assert lines == render_kernel_walk(trace)[0].splitlines()
    redirect = _nat_rule(trace, "REDIRECT")
    assert redirect.endswith("--dport 80 -j REDIRECT --to-ports 9697")
    accepted = [
        s.rule.text
        for s in trace.steps
        if isinstance(s, NetfilterStep) and s.table == "filter" and s.rule is not None
    ]
    assert "-A neutron-l3-agent-INPUT -m mark --mark 0x1/0xffff -j ACCEPT" in accepted


@pytest.mark.lab
@pytest.mark.parametrize("bridge", ["br-int", "br-ex"])
def test_the_generated_flows_are_what_open_vswitch_holds(lab: RouterLab, bridge: str) -> None:
    node = lab.info.node(NODE)
    ovs = OvsInstance(node.netns, Path(node.ovs_rundir))
    real = ovs.ofctl("-O", "OpenFlow13", "dump-flows", bridge)
    assert flow_lines(real) == flow_lines(lab.state.dump_flows_text(bridge, openflow13=True))


def _arp_answered(lab: RouterLab, vm: str, tpa: IPv4Address) -> tuple[bool, Trace]:
    """An ARP request for ``tpa`` from ``vm``: did a reply come back, and the walk of it to
    the router's namespace."""
    from scapy.layers.l2 import ARP, Ether

    info, spa = lab.info.vm(vm), lab.vm_ip(vm)
    frame = Ether(src=info.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=info.mac, psrc=str(spa), hwdst="00:00:00:00:00:00", pdst=str(tpa)
    )
    packet = Packet(
        dl_src=info.mac, dl_dst="ff:ff:ff:ff:ff:ff", dl_type=ETH_TYPE_ARP, arp_op=1,
        arp_spa=spa, arp_tpa=tpa, arp_sha=info.mac, arp_tha="00:00:00:00:00:00",
    )  # fmt: skip
    with Wire.open(Host(info.netns)) as wire:
        wire.drain()
        wire.send(bytes(frame))
        replies = [
            f
            for f in wire.receive(timeout=0.5)
            if Ether(f.data).haslayer(ARP) and Ether(f.data)[ARP].op == 2
        ]
    trace = lab.walk(packet, FromInterface(lab.tap(vm)), ToHost(lab.router_ns))
    return bool(replies), trace


@pytest.mark.lab
def test_the_router_answers_arp_only_on_the_interface_holding_the_address(
    lab: RouterLab,
) -> None:
    """Neutron sets arp_ignore=1 in a router's namespace."""
    own = next(p.interface.ip for p in lab.router.internal if p.network.name == "db")
    other = next(p.interface.ip for p in lab.router.internal if p.network.name == "private")
    answered, trace = _arp_answered(lab, "db1", own)
    assert answered
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    answered, trace = _arp_answered(lab, "db1", other)
    assert not answered
    assert trace.outcome is Outcome.DROPPED, trace.reason
    assert "arp_ignore=1" in trace.reason
