"""The native OVS firewall (``firewall_driver = "openvswitch"``) against real Open vSwitch.

One lab of src/nodetrace/examples/scenarios/ovs-firewall.toml: two nodes, each tap plugged
straight into br-int, security groups as conntrack and conjunction flows. First the generated
flows must be exactly what OVS holds; then each case sends one real frame and walks the same
packet through node cmp1's snapshot: the walk's outcome must be what OVS did (which VM received
the frame), and its OpenFlow tables the ones ``ofproto/trace`` went through.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import ip_address, ip_interface
from pathlib import Path

import pytest

from nodetrace.engine.walk import FromInterface, Target, ToDevice, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.observe import LabProbe, Observation
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.run import run
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.node_inventory import PortKind
from nodetrace.model.packet import ETH_TYPE_IPV4, IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import LinkKind
from nodetrace.model.trace import NetfilterStep, OpenFlowStep, Outcome, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.generate import generate_node
from nodetrace.neutron.inventory import inventory
from nodetrace.neutron.scenario import load_scenario
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, unique

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/ovs-firewall.toml"
UNDERLAY_NIC = "und0"

pytestmark = pytest.mark.lab


@dataclass
class Bed:
    info: LabInfo
    probe: LabProbe
    snap: Snapshot
    root: Path

    def tap(self, vm: str) -> str:
        return naming.tap_name(self.info.vm(vm).port_id)

    def ip(self, vm: str) -> str:
        return str(ip_interface(self.info.vm(vm).ips[0]).ip)

    def packet(self, src: str, dst: str, *, port: int | None = None, **extra: object) -> Packet:
        """A TCP SYN to ``port``, or an ICMP echo request without one."""
        ip_id = int(time.monotonic_ns() % 60000) + 1
        fields: dict[str, object] = {
            "dl_src": self.info.vm(src).mac, "dl_dst": self.info.vm(dst).mac,
            "dl_type": ETH_TYPE_IPV4, "nw_src": ip_address(self.ip(src)),
            "nw_dst": ip_address(self.ip(dst)), "nw_ttl": 64, "ip_id": ip_id,
        }  # fmt: skip
        if port is None:
            fields |= {"nw_proto": IPProto.ICMP, "icmp_type": 8, "icmp_code": 0,
                       "icmp_id": ip_id, "icmp_seq": 1}  # fmt: skip
        else:
            fields |= {"nw_proto": IPProto.TCP, "tp_src": 30000 + ip_id % 30000, "tp_dst": port,
                       "tcp_flags": 0x002, "tcp_window": 64240}  # fmt: skip
        return Packet(**(fields | extra))  # type: ignore[arg-type]

    def walk(self, packet: Packet, start: FromInterface, target: Target | None = None,
             meta: tuple[tuple[str, str], ...] = ()) -> Trace:  # fmt: skip
        request = WalkRequest(packet, start, meta, None, target)
        return walk(self.snap, request, engines_for(self.snap), switch=self.snap.ovs)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("ofw")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="nft", root=root)
    try:
        with LabProbe(LabDir(name, root), info, mute_vms=True) as probe:
            node = info.node("cmp1")
            out = root / "cmp1-snapshot"
            collect(str(out), Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=()))
            yield Bed(info, probe, load(out), root)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _flows(text: str) -> list[str]:
    return sorted(
        re.sub(r" (duration|n_packets|n_bytes|idle_age)=[^,]*,", "", line)
        for line in text.splitlines()
        if "cookie=" in line and "hard_timeout=" not in line  # br-tun's learned flows
    )


def _of_tables(trace: Trace) -> list[tuple[str, int]]:
    return [(s.bridge, s.table) for s in trace.steps if isinstance(s, OpenFlowStep)]


def _decisive(trace: Trace) -> OpenFlowStep:
    assert trace.verdict_step is not None, trace.reason
    step = trace.steps[trace.verdict_step]
    assert isinstance(step, OpenFlowStep), step
    return step


def _dropped_after(trace: Trace, table: int, match: str) -> None:
    """The walk ends in table 93 (DROPPED_TRAFFIC), sent there by a flow of ``table``."""
    drop = _decisive(trace)
    assert (drop.table, drop.actions) == (93, "drop"), drop
    lookups = [s for s in trace.steps if isinstance(s, OpenFlowStep)]
    before = lookups[lookups.index(drop) - 1]
    assert before.table == table and match in before.match, before


def _agrees(trace: Trace, seen: Observation, node: str = "cmp1") -> None:
    """The walk took the tables the real ``ofproto/trace`` took, and no iptables at all."""
    assert _of_tables(trace) == _of_tables(seen.openflow[node])
    assert not any(isinstance(s, NetfilterStep) for s in trace.steps)
    assert seen.trace_lines.get(node, ()) == ()


def test_generated_flows_are_what_ovs_holds_and_the_plug_has_no_linux_bridge(bed: Bed) -> None:
    scenario = load_scenario(SCENARIO)
    for node in bed.info.nodes:
        state = generate_node(scenario, node.name)
        ovs = OvsInstance(node.netns, Path(node.ovs_rundir))
        for of13 in (False, True):
            real = ovs.ofctl(*(["-O", "OpenFlow13"] if of13 else []), "dump-flows", "br-int")
            generated = state.dump_flows_text("br-int", openflow13=of13)
            assert _flows(real) == _flows(generated), f"{node.name} OF1.{3 if of13 else 0}"
        for vp in state.vm_ports:
            ports = ovs.vsctl("list-ports", "br-int").split()
            assert vp.devices.tap in ports and vp.devices.qvo not in ports
        saved = run(["iptables-nft-save"], netns=node.netns).stdout
        assert "neutron" not in saved
    tap = bed.snap.topology.interface(bed.tap("db1"))
    assert tap is not None and tap.kind is LinkKind.VETH and tap.master_kind != "bridge"
    assert bed.snap.topology.interface(naming.qbr_name(bed.info.vm("db1").port_id)) is None


def test_the_node_reads_back_as_native_firewall_ports(bed: Bed) -> None:
    """What ``nodetrace show`` infers from the snapshot: the zone is the local VLAN (reg6),
    the addresses come from table 71's anti-spoofing flows."""
    ports = {p.port_id: p for p in inventory(bed.snap).ports}
    for name in ("app1", "db1", "other1"):
        vm = bed.info.vm(name)
        info = ports[vm.port_id]
        assert info.kind is PortKind.VM
        assert info.ovs_port == bed.tap(name) and info.bridge == "br-int"
        assert info.zone is not None and info.zone.value == 1
        assert info.local_vlan is not None and info.local_vlan.value == 1
        assert {str(f.value) for f in info.ips if f.value.version == 4} == {bed.ip(name)}
        assert all("table 71" in f.source for f in info.ips)


def test_ingress_allowed_by_a_rule(bed: Bed) -> None:
    packet = bed.packet("other1", "app1", port=22)
    seen = bed.probe.send(packet, "other1")
    trace = bed.walk(packet, FromInterface(bed.tap("other1")), ToDevice(bed.tap("app1")))
    assert seen.arrived == ("app1",)
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert bed.tap("app1") in trace.reason
    _agrees(trace, seen)
    tables = [t for _, t in _of_tables(trace)]
    assert tables[:3] == [0, 58, 59] and {60, 71, 72, 73, 81, 82} <= set(tables)
    accept = next(s for s in trace.steps if isinstance(s, OpenFlowStep) and s.table == 82)
    assert "ct_state=+new-est" in accept.match and "tp_dst=22" in accept.match


def test_ingress_dropped_without_a_rule(bed: Bed) -> None:
    packet = bed.packet("app1", "other1", port=22)  # "db" allows 5432 and ICMP only
    seen = bed.probe.send(packet, "app1")
    trace = bed.walk(packet, FromInterface(bed.tap("app1")), ToDevice(bed.tap("other1")))
    assert seen.arrived == ()
    assert trace.outcome is Outcome.DROPPED, trace.reason
    _agrees(trace, seen)
    _dropped_after(trace, 82, "ct_state=-est")


def test_ingress_allowed_only_through_the_remote_group_conjunction(bed: Bed) -> None:
    packet = bed.packet("app1", "db1", port=5432)
    seen = bed.probe.send(packet, "app1")
    trace = bed.walk(packet, FromInterface(bed.tap("app1")), ToDevice(bed.tap("db1")))
    assert seen.arrived == ("db1",)
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    _agrees(trace, seen)
    conj = [s for s in trace.steps if isinstance(s, OpenFlowStep) and "conj_id=" in s.match]
    assert conj and conj[0].table == 82, [
        s.match for s in trace.steps if isinstance(s, OpenFlowStep)
    ]

    # The same port from a VM outside "app" completes no conjunction: dropped.
    outsider = bed.packet("other1", "db1", port=5432)
    seen = bed.probe.send(outsider, "other1")
    trace = bed.walk(outsider, FromInterface(bed.tap("other1")), ToDevice(bed.tap("db1")))
    assert seen.arrived == ()
    assert trace.outcome is Outcome.DROPPED, trace.reason
    _agrees(trace, seen)
    assert not any(isinstance(s, OpenFlowStep) and "conj_id=" in s.match for s in trace.steps)
    _dropped_after(trace, 82, "ct_state=-est")


def test_remote_group_member_on_the_other_node(bed: Bed) -> None:
    """app2 on cmp2 is a member too: its SYN crosses the VXLAN tunnel and is let in on cmp1."""
    packet = bed.packet("app2", "db1", port=5432)
    seen = bed.probe.send(packet, "app2", wait=1.0)
    meta = (
        ("tun_src", bed.info.node("cmp2").underlay_ip),
        ("tun_dst", bed.info.node("cmp1").underlay_ip),
        ("tun_id", "2001"),
    )
    trace = bed.walk(packet, FromInterface(UNDERLAY_NIC), ToDevice(bed.tap("db1")), meta=meta)
    assert seen.arrived == ("db1",)
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert any(isinstance(s, OpenFlowStep) and "conj_id=" in s.match for s in trace.steps)
    # ofproto/trace prints the lookups after the ct() recirculation under the bridge the packet
    # entered OVS on (br-tun), so the tables are compared without their bridge names.
    walked = _of_tables(trace)
    tail = [t for _, t in walked[next(i for i, (b, _) in enumerate(walked) if b == "br-tun") :]]
    assert tail == [t for _, t in _of_tables(seen.openflow["cmp1"])], walked


def test_egress_with_a_spoofed_source_is_dropped(bed: Bed) -> None:
    honest = bed.packet("app1", "db1")  # ICMP: "db" lets it in
    spoofed = replace(honest, nw_src=ip_address("10.30.0.99"), ip_id=honest.ip_id + 1)
    seen_honest = bed.probe.send(honest, "app1")
    seen = bed.probe.send(spoofed, "app1")
    assert seen_honest.arrived == ("db1",)  # the same observation can see a delivery
    assert seen.arrived == ()
    trace = bed.walk(spoofed, FromInterface(bed.tap("app1")), ToDevice(bed.tap("db1")))
    assert trace.outcome is Outcome.DROPPED, trace.reason
    _agrees(trace, seen)
    # No anti-spoofing flow of table 71 matches: the port's catch-all sends it to table 93.
    assert 72 not in [t for _, t in _of_tables(trace)]
    ofport = bed.probe.states["cmp1"].vm_port("app1").ofport
    _dropped_after(trace, 71, f"reg5={ofport:#x},in_port={ofport}")
    ok = bed.walk(honest, FromInterface(bed.tap("app1")), ToDevice(bed.tap("db1")))
    assert ok.outcome is Outcome.DELIVERED, ok.reason


def test_reply_passes_by_conntrack_state_only(bed: Bed) -> None:
    """``app`` lets in TCP 22 only: db1's SYN-ACK from port 5432 reaches app1 because the SYN
    was committed (zone 1, the network's local VLAN). The walk knows it from the conntrack
    table of a snapshot taken after the SYN; from one taken before, the SYN-ACK belongs to no
    connection and is invalid, as OVS's tracker makes it."""
    syn = bed.packet("app1", "db1", port=5432)
    assert bed.probe.send(syn, "app1", ofproto=False).arrived == ("db1",)
    assert syn.tp_src is not None
    reply = replace(bed.packet("db1", "app1", port=syn.tp_src), tp_src=5432, tcp_flags=0x012)
    seen = bed.probe.send(reply, "db1", ofproto=False)
    assert seen.arrived == ("app1",)
    node = bed.info.node("cmp1")
    out = bed.root / "cmp1-after-syn"
    collect(
        str(out),
        Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=(), conntrack_max=100),
    )
    after = Bed(bed.info, bed.probe, load(out), bed.root)
    trace = after.walk(reply, FromInterface(bed.tap("db1")), ToDevice(bed.tap("app1")))
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    rpl = [s for s in trace.steps if isinstance(s, OpenFlowStep) and "+est-rel+rpl" in s.match]
    assert rpl and rpl[0].table == 72 and "ct_zone=1" in rpl[0].match
    before = bed.walk(reply, FromInterface(bed.tap("db1")), ToDevice(bed.tap("app1")))
    # No connection known: OVS's tracker does not let a SYN-ACK open one, so it is invalid.
    assert before.outcome is Outcome.DROPPED
    _dropped_after(before, 72, "ct_state=+inv+trk")
    assert any("ct_state=trk|inv assumed" in a for a in before.assumptions), before.assumptions


def test_a_syn_ack_of_no_connection_is_invalid(bed: Bed) -> None:
    """Real OVS drops a SYN-ACK no SYN opened (its tracker marks it invalid); the walk too."""
    orphan = replace(bed.packet("db1", "app1", port=41000), tp_src=5432, tcp_flags=0x012)
    seen = bed.probe.send(orphan, "db1", ofproto=False)
    assert seen.arrived == ()
    trace = bed.walk(orphan, FromInterface(bed.tap("db1")), ToDevice(bed.tap("app1")))
    assert trace.outcome is Outcome.DROPPED, trace.reason
    _dropped_after(trace, 72, "ct_state=+inv+trk")
