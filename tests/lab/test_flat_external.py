"""Flat networks, built for real and walked (examples/scenarios/flat-external.toml).

A legacy router on net1 has its gateway on a flat external network: br-ex's uplink ``ext0``
carries untagged frames, so only the agent's flat flows (the local VLAN stripped on the way out
of br-ex, pushed onto untagged frames coming into br-int) let anything through; a frame that
kept its local VLAN would be an 802.1Q frame the outside's plain interface drops. A flat
provider network on br-phys joins prov1 (net1) and prov2 (cmp2) over the physical network. Each
case sends a real frame, records what arrived where, and walks the same packet through the
nodes' snapshots: the walk must end where the frame went, through the rules the kernel logged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest

from nodetrace.engine.walk import FromInterface, ToDevice, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.resources import Resources
from nodetrace.lab.router import OUTSIDE_IFNAME, outside_netns, router_netns
from nodetrace.lab.run import run
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.packet import ETH_TYPE_IPV4, IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import DeviceStep, NetfilterStep, OpenFlowStep, Outcome, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.l3_agent import EXTERNAL_NIC, RouterState
from nodetrace.neutron.ovs_agent import UNDERLAY_NIC
from nodetrace.neutron.scenario import Scenario, load_scenario
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, unique
from tests.lab.router_bed import Host, flow_lines, mac_of
from tests.lab.router_bed import send as send_frame

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/flat-external.toml"
INTERNET = "8.8.8.8"


@dataclass
class FlatLab:
    info: LabInfo
    scenario: Scenario
    states: dict[str, NodeState]
    router: RouterState
    router_ns: str
    outside_ns: str
    snaps: dict[str, Snapshot]
    log: KernelTraceLog

    def port(self, vm: str) -> tuple[str, IPv4Address, str]:
        """(node, address, tap) of a VM."""
        port = self.scenario.port(vm)
        ip = port.fixed_ips[0]
        assert isinstance(ip, IPv4Address)
        return port.node, ip, naming.tap_name(port.id)

    def walk(self, node: str, packet: Packet, start: str, target: str | None = None) -> Trace:
        snap = self.snaps[node]
        to = ToDevice(target) if target is not None else None
        request = WalkRequest(packet, FromInterface(start), (), None, to)
        return walk(snap, request, engines_for(snap), switch=snap.ovs)

    def send(
        self, sender: Host, receiver: Host, packet: Packet, node: str
    ) -> tuple[list[Packet], list[str]]:
        """What reached ``receiver`` (the packet itself, known by its IP ID, after any NAT),
        and the TRACE lines ``node`` (and the router's namespace) logged for it."""
        self.log.records()
        seen = send_frame(sender, receiver, packet, lambda p: p.ip_id == packet.ip_id)
        devices = {i.name for i in self.snaps[node].topology.interfaces}
        mine = re.compile(rf"^[^\[]* TTL=\d+ ID={packet.ip_id} [^\[]* TYPE=8 ")
        lines = [line for line in self.log.lines(devices=devices, settle=0.1) if mine.search(line)]
        return seen, lines


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlatLab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("fl")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="legacy", root=root)
    try:
        states = {n.name: generate_node(scenario, n.name) for n in scenario.nodes}
        router = states["net1"].routers[0]
        rns, ons = router_netns(name, router), outside_netns(name, "net1")
        # Neighbour caches and MAC tables, as a running cloud has them; then forget those
        # connections, so each case starts a new one.
        for vm in ("web1", "web2"):
            run(["ping", "-c1", "-W1", INTERNET], netns=info.vm(vm).netns)
        run(["ping", "-c1", "-W1", str(router.gateway.interface.ip)], netns=ons)  # type: ignore[union-attr]
        prov2 = str(scenario.port("prov2").fixed_ips[0])
        run(["ping", "-c1", "-W1", prov2], netns=info.vm("prov1").netns)
        run(["conntrack", "-F"], netns=rns, check=False)
        for node in info.nodes:
            run(["conntrack", "-F"], netns=node.netns, check=False)
        snaps = {}
        for node in info.nodes:
            extra = (rns,) if node.name == "net1" else ()
            for netns in (node.netns, *extra):
                run(
                    ["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                    netns=netns,
                )
            out = root / f"snapshot-{node.name}"
            opts = Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=extra)
            collect(str(out), opts)
            snaps[node.name] = load(out)
        res = Resources(Ledger(LabDir(name, root).ledger_path))
        with KernelTraceLog(res) as log:
            yield FlatLab(info, scenario, states, router, rns, ons, snaps, log)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


_ids = iter(range(1, 60000))


def _icmp(src_mac: str, dst_mac: str, src: str, dst: str) -> Packet:
    ident = (int(time.monotonic_ns() // 1000) + next(_ids)) % 60000 + 1
    return Packet(
        dl_src=src_mac, dl_dst=dst_mac, dl_type=ETH_TYPE_IPV4, nw_src=ip_address(src),
        nw_dst=ip_address(dst), nw_proto=IPProto.ICMP, nw_ttl=64, icmp_type=8, icmp_code=0,
        icmp_id=ident, icmp_seq=1, ip_id=ident,
    )  # fmt: skip


def _stripped(trace: Trace, bridge: str) -> bool:
    """The walk took a flow on ``bridge`` that strips the VLAN (either dialect's spelling)."""
    return any(
        re.match(r"(strip|pop)_vlan,NORMAL", s.actions)
        for s in trace.steps
        if isinstance(s, OpenFlowStep) and s.bridge == bridge
    )


def _pushed(trace: Trace, bridge: str) -> bool:
    """The walk took a flow on ``bridge`` that tags an untagged frame with a local VLAN."""
    return any(
        "vlan_tci=0x0000/0x1fff" in s.match and re.match(r"(push_vlan|mod_vlan_vid)", s.actions)
        for s in trace.steps
        if isinstance(s, OpenFlowStep) and s.bridge == bridge
    )


def _last_device(trace: Trace) -> str:
    return [s for s in trace.steps if isinstance(s, DeviceStep)][-1].device


@pytest.mark.lab
@pytest.mark.parametrize("openflow13", [False, True])
@pytest.mark.parametrize(
    ("node", "bridge"), [("net1", "br-int"), ("net1", "br-ex"), ("net1", "br-phys"),
                         ("cmp2", "br-int"), ("cmp2", "br-phys")],
)  # fmt: skip
def test_the_generated_flows_are_what_open_vswitch_holds(
    lab: FlatLab, node: str, bridge: str, openflow13: bool
) -> None:
    info = lab.info.node(node)
    ovs = OvsInstance(info.netns, Path(info.ovs_rundir))
    dialect = ["-O", "OpenFlow13"] if openflow13 else []
    real = ovs.ofctl(*dialect, "dump-flows", bridge)
    generated = lab.states[node].dump_flows_text(bridge, openflow13=openflow13)
    assert flow_lines(real) == flow_lines(generated)
    flat = "pop_vlan" if openflow13 else "strip_vlan"
    if bridge != "br-int":
        assert any(flat in line for line in flow_lines(real))


@pytest.mark.lab
def test_vm_to_the_internet_leaves_snat_untagged_on_the_flat_network(lab: FlatLab) -> None:
    node, ip, tap = lab.port("web2")
    vm = lab.info.vm("web2")
    qr = lab.router.internal[0].interface.mac
    packet = _icmp(vm.mac, qr, str(ip), INTERNET)
    seen, lines = lab.send(Host(vm.netns), Host(lab.outside_ns, OUTSIDE_IFNAME), packet, node)
    trace = lab.walk(node, packet, tap)
    gateway = lab.router.gateway
    assert gateway is not None
    assert [str(p.nw_src) for p in seen] == [str(gateway.interface.ip)]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert lines == render_kernel_walk(trace)[0].splitlines()
    assert _last_device(trace) == EXTERNAL_NIC
    assert _stripped(trace, "br-ex")
    snat = [
        s.rule.text
        for s in trace.steps
        if isinstance(s, NetfilterStep) and s.rule is not None and "-j SNAT" in s.rule.text
    ]
    assert snat and f"-j SNAT --to-source {gateway.interface.ip}" in snat[0]


@pytest.mark.lab
def test_outside_to_the_floating_ip_comes_in_untagged_and_reaches_the_vm(lab: FlatLab) -> None:
    gateway = lab.router.gateway
    assert gateway is not None
    fip = lab.router.router.floating_ips[0]
    node, _, tap = lab.port("web1")
    src_mac = mac_of(lab.outside_ns, OUTSIDE_IFNAME)
    packet = _icmp(src_mac, gateway.interface.mac, INTERNET, str(fip.address))
    web1 = lab.info.vm("web1")
    seen, lines = lab.send(Host(lab.outside_ns, OUTSIDE_IFNAME), Host(web1.netns), packet, node)
    trace = lab.walk(node, packet, EXTERNAL_NIC, tap)
    assert [(str(p.nw_src), p.nw_dst) for p in seen] == [(INTERNET, fip.fixed_ip)]
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert lines == render_kernel_walk(trace)[0].splitlines()
    assert _last_device(trace) == tap
    # Untagged from ext0: br-int's flat flow pushes the external network's local VLAN.
    assert _pushed(trace, "br-int")


@pytest.mark.lab
def test_vms_on_a_flat_provider_network_meet_over_the_physical_network(lab: FlatLab) -> None:
    node1, ip1, tap1 = lab.port("prov1")
    node2, ip2, tap2 = lab.port("prov2")
    prov1, prov2 = lab.info.vm("prov1"), lab.info.vm("prov2")
    packet = _icmp(prov1.mac, prov2.mac, str(ip1), str(ip2))
    seen, lines = lab.send(Host(prov1.netns), Host(prov2.netns), packet, node1)
    assert [(p.nw_src, p.nw_dst) for p in seen] == [(ip1, ip2)]
    # Out of net1: br-phys strips the local VLAN and hands the frame to the underlay NIC.
    out = lab.walk(node1, packet, tap1)
    assert out.outcome is Outcome.DELIVERED, out.reason
    assert lines == render_kernel_walk(out)[0].splitlines()
    assert _last_device(out) == UNDERLAY_NIC
    assert _stripped(out, "br-phys")
    # Into cmp2: the untagged frame gets cmp2's local VLAN pushed in br-int, then prov2's tap.
    into = lab.walk(node2, seen[0], UNDERLAY_NIC, tap2)
    assert into.outcome is Outcome.DELIVERED, into.reason
    assert _last_device(into) == tap2
    assert _pushed(into, "br-int")
