"""The whole-node walk against a real two-node lab (tests/data/snapshot/golden.toml).

The lab runs real Open vSwitch (userspace datapath), Linux bridges with br_netfilter and
iptables-legacy. Node cmp1 is captured with ``collect`` (the same code as ``nodetrace collect``)
after every VM announced itself, so MAC tables and learned tunnel flows are in the snapshot.
Each case sends one real frame and walks the same packet through the snapshot: the walk's
verdict must be what the lab did (which VMs received the frame, whether the host answered).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address, ip_interface

import pytest

from nodetrace.engine.walk import (
    FromInterface,
    ToDevice,
    ToHost,
    WalkRequest,
    walk,
)
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.observe import LabProbe
from nodetrace.lab.send import Wire, frame_bytes
from nodetrace.lab.state import LabDir, LabInfo, VmInfo
from nodetrace.model.packet import ETH_TYPE_ARP, ETH_TYPE_IPV4, IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import DeviceAction, DeviceStep, NetfilterStep, OpenFlowStep, Outcome
from nodetrace.neutron import naming
from nodetrace.neutron.scenario import load_scenario
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import DATA, lab_unavailable, unique

SCENARIO = DATA / "snapshot" / "golden.toml"
UNDERLAY_NIC = "und0"


@dataclass(frozen=True)
class _Host:
    netns: str
    ifname: str = "eth0"


@dataclass
class Golden:
    info: LabInfo
    probe: LabProbe
    snap: Snapshot

    def vm(self, name: str) -> VmInfo:
        return self.info.vm(name)

    def tap(self, name: str) -> str:
        return naming.tap_name(self.vm(name).port_id)

    def ip(self, name: str) -> str:
        return str(ip_interface(self.vm(name).ips[0]).ip)

    def walk(self, packet: Packet, start: FromInterface, target=None, meta=()):  # type: ignore[no-untyped-def]
        return walk(
            self.snap,
            WalkRequest(packet, start, tuple(meta), None, target),
            engines_for(self.snap),
            switch=self.snap.ovs,
        )


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Golden]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("wg")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="legacy", root=root)
    try:
        with LabProbe(LabDir(name, root), info, mute_vms=True) as probe:
            node = info.node("cmp1")
            out = root / "cmp1-snapshot"
            collect(str(out), Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=()))
            yield Golden(info, probe, load(out))
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _ip_packet(g: Golden, src: str, dst: str, proto: str, **extra: object) -> Packet:
    fields: dict[str, object] = {
        "dl_src": g.vm(src).mac,
        "dl_dst": g.vm(dst).mac,
        "dl_type": ETH_TYPE_IPV4,
        "nw_src": ip_address(g.ip(src)),
        "nw_dst": ip_address(g.ip(dst)),
        "ip_id": int(time.monotonic_ns() % 60000) + 1,
    }
    if proto == "icmp":
        fields |= {"nw_proto": IPProto.ICMP, "icmp_type": 8, "icmp_code": 0, "icmp_id": 77,
                   "icmp_seq": 1}  # fmt: skip
    else:
        fields |= {"nw_proto": IPProto.TCP, "tp_src": 40000 + fields["ip_id"] % 20000,  # type: ignore[operator]
                   "tp_dst": 22, "tcp_flags": 0x002, "tcp_window": 64240}  # fmt: skip
    fields |= extra
    return Packet(**fields)  # type: ignore[arg-type]


def _netfilter_drop(trace) -> NetfilterStep:  # type: ignore[no-untyped-def]
    assert trace.verdict_step is not None
    step = trace.steps[trace.verdict_step]
    assert isinstance(step, NetfilterStep), step
    return step


@pytest.mark.lab
def test_vm_to_vm_on_one_node_is_delivered(golden: Golden) -> None:
    packet = _ip_packet(golden, "a", "b", "tcp")
    seen = golden.probe.send(packet, "a")
    trace = golden.walk(packet, FromInterface(golden.tap("a")), ToDevice(golden.tap("b")))
    assert seen.arrived == ("b",)
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    # Two bridge passes, the second in b's zone through its ingress chain.
    chains = [s.chain for s in trace.steps if isinstance(s, NetfilterStep)]
    ingress = naming.chain_name(naming.ChainKind.INGRESS, golden.vm("b").port_id)
    egress = naming.chain_name(naming.ChainKind.EGRESS, golden.vm("a").port_id)
    assert egress in chains and ingress in chains
    # Line for line what the kernel logged on cmp1 for both bridge passes (the lab put a
    # `-j TRACE` rule first in raw PREROUTING; the snapshot has it too).
    predicted = render_kernel_walk(trace)[0].splitlines()
    assert predicted == [line.rstrip("\n") for line in seen.trace_lines["cmp1"]]
    # And the OpenFlow tables, in the order the real ofproto/trace walked them.
    assert _of_tables(trace) == _of_tables(seen.openflow["cmp1"])


def _of_tables(trace) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return [(s.bridge, s.table) for s in trace.steps if isinstance(s, OpenFlowStep)]


@pytest.mark.lab
def test_packet_dropped_by_a_security_group(golden: Golden) -> None:
    packet = _ip_packet(golden, "a", "b", "icmp")
    seen = golden.probe.send(packet, "a")
    trace = golden.walk(packet, FromInterface(golden.tap("a")), ToDevice(golden.tap("b")))
    assert seen.arrived == ()
    assert trace.outcome is Outcome.DROPPED
    drop = _netfilter_drop(trace)
    assert (drop.table, drop.chain, drop.number) == ("filter", naming.sg_fallback_chain(), 1)
    assert drop.physout == golden.tap("b")
    assert render_kernel_walk(trace)[0].splitlines() == [
        x.rstrip("\n") for x in seen.trace_lines["cmp1"]
    ]
    assert _of_tables(trace) == _of_tables(seen.openflow["cmp1"])


@pytest.mark.lab
@pytest.mark.parametrize(
    ("src", "dst", "kind", "key"), [("a", "c", "vxlan", 1037), ("d", "e", "gre", 2001)]
)
def test_vm_to_remote_vm_leaves_through_the_tunnel(
    golden: Golden, src: str, dst: str, kind: str, key: int
) -> None:
    packet = _ip_packet(golden, src, dst, "icmp")
    seen = golden.probe.send(packet, src, ofproto=False, wait=1.0)
    trace = golden.walk(packet, FromInterface(golden.tap(src)))
    assert seen.arrived == (dst,)
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert f"through {UNDERLAY_NIC}" in trace.reason
    encaps = [
        s for s in trace.steps if isinstance(s, DeviceStep) and s.action is DeviceAction.ENCAP
    ]
    cmp2 = golden.info.node("cmp2").underlay_ip
    assert any(
        f"{kind} " in s.detail and f"0x{key:x}" in s.detail and cmp2 in s.detail for s in encaps
    )


@pytest.mark.lab
def test_traffic_to_the_host_itself(golden: Golden) -> None:
    cmp1 = golden.info.node("cmp1")
    phys = golden.snap.topology.interface("br-phys")
    assert phys is not None and phys.mac is not None
    with Wire.open(_Host(golden.info.underlay_netns, "underlay")) as wire:
        from scapy.layers.inet import ICMP, IP
        from scapy.layers.l2 import Ether

        src = golden.info.underlay_ip
        packet = Packet(
            dl_src=wire_mac(golden), dl_dst=phys.mac, dl_type=ETH_TYPE_IPV4,
            nw_src=ip_address(src), nw_dst=ip_address(cmp1.underlay_ip), nw_proto=IPProto.ICMP,
            icmp_type=8, icmp_code=0, icmp_id=4242, icmp_seq=1, ip_id=4242,
        )  # fmt: skip
        wire.drain()
        wire.send(frame_bytes(packet))
        replies = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not replies:
            for frame in wire.receive(timeout=0.2):
                eth = Ether(frame.data)
                if eth.haslayer(ICMP) and eth[ICMP].type == 0 and eth[ICMP].id == 4242:
                    replies.append(eth[IP].src)
    trace = golden.walk(packet, FromInterface(UNDERLAY_NIC), ToHost())
    assert replies == [cmp1.underlay_ip]  # the real host answered
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert "host" in trace.reason and "ICMP" in trace.reason
    hooks = [s.hook.value for s in trace.steps if isinstance(s, NetfilterStep) and s.hook]
    assert "INPUT" in hooks and "FORWARD" not in hooks


def wire_mac(g: Golden) -> str:
    from nodetrace.lab.node import netlink

    with netlink(g.info.underlay_netns) as nl:
        index = nl.link_lookup(ifname="underlay")[0]
        return str(nl.get_links(index)[0].get_attr("IFLA_ADDRESS"))


def _arp(g: Golden, vm: str, spa: str) -> tuple[Packet, bytes]:
    from scapy.layers.l2 import ARP, Ether

    mac = g.vm(vm).mac
    target = g.ip("b")
    frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=mac, psrc=spa, hwdst="00:00:00:00:00:00", pdst=target
    )
    packet = Packet(
        dl_src=mac, dl_dst="ff:ff:ff:ff:ff:ff", dl_type=ETH_TYPE_ARP, arp_op=1,
        arp_spa=ip_address(spa), arp_tpa=ip_address(target), arp_sha=mac,
        arp_tha="00:00:00:00:00:00",
    )  # type: ignore[arg-type]  # fmt: skip
    return packet, bytes(frame)


def _arp_seen_by_b(g: Golden, frame: bytes, spa: str) -> bool:
    from scapy.layers.l2 import ARP, Ether

    with Wire.open(_Host(g.vm("a").netns)) as sender, Wire.open(_Host(g.vm("b").netns)) as rx:
        rx.drain()
        sender.send(frame)
        for f in rx.receive(timeout=0.5):
            eth = Ether(f.data)
            if eth.haslayer(ARP) and eth[ARP].psrc == spa:
                return True
    return False


@pytest.mark.lab
def test_arp_spoofing_is_dropped_by_ovs_before_iptables(golden: Golden) -> None:
    honest, honest_frame = _arp(golden, "a", golden.ip("a"))
    spoofed, spoofed_frame = _arp(golden, "a", "10.30.0.99")
    # The same observation on an honest request shows it can see an ARP arrive.
    assert _arp_seen_by_b(golden, honest_frame, golden.ip("a"))
    assert not _arp_seen_by_b(golden, spoofed_frame, "10.30.0.99")
    trace = golden.walk(spoofed, FromInterface(golden.tap("a")), ToDevice(golden.tap("b")))
    assert trace.outcome is Outcome.DROPPED
    assert trace.verdict_step is not None
    step = trace.steps[trace.verdict_step]
    assert isinstance(step, OpenFlowStep) and (step.bridge, step.table) == ("br-int", 24), step
    # No iptables verdict: ARP is not IP, br_netfilter does not hand it to iptables.
    assert not any(isinstance(s, NetfilterStep) for s in trace.steps)
    ok = golden.walk(honest, FromInterface(golden.tap("a")), ToDevice(golden.tap("b")))
    assert ok.outcome is Outcome.DELIVERED, ok.reason


@pytest.mark.lab
def test_unknown_destination_mac_is_flooded_and_the_trace_says_so(golden: Golden) -> None:
    packet = dataclasses.replace(_ip_packet(golden, "a", "b", "tcp"), dl_dst="fa:16:3e:99:99:99")
    # The copy to c crosses the tunnel: give it time to arrive.
    seen = golden.probe.send(packet, "a", ofproto=False, wait=1.0)
    trace = golden.walk(packet, FromInterface(golden.tap("a")))
    # Flooded in VLAN of blue: b on this node; c behind the tunnel on cmp2.
    assert set(seen.arrived) == {"b", "c"}
    assert trace.outcome is Outcome.DELIVERED
    text = " ".join(
        [trace.reason, *trace.assumptions]
        + [s.detail for s in trace.steps if isinstance(s, DeviceStep)]
        + [s.note or "" for s in trace.steps if isinstance(s, OpenFlowStep)]
    ).lower()
    assert "flood" in text
    assert golden.tap("b") in trace.reason or golden.tap("b") in text
    assert f"through {UNDERLAY_NIC}" in trace.reason or f"through {UNDERLAY_NIC}" in text


@pytest.mark.lab
def test_remote_vm_to_vm_ingress_at_the_underlay_nic(golden: Golden) -> None:
    """Last on purpose: the lab's underlay injection teaches cmp1's OVS a wrong tunnel
    neighbour for cmp2 (see the module's note), which breaks later cmp1 -> cmp2 tunnelling."""
    from nodetrace.lab.observe import Tunnel
    from nodetrace.neutron.scenario import NetworkType

    packet = _ip_packet(golden, "c", "a", "icmp")
    seen = golden.probe.send(
        packet, "underlay", tunnel=Tunnel(NetworkType.VXLAN, 1037, "cmp2", "cmp1"), ofproto=False
    )
    meta = (
        ("tun_src", golden.info.node("cmp2").underlay_ip),
        ("tun_dst", golden.info.node("cmp1").underlay_ip),
        ("tun_id", "1037"),
    )
    trace = golden.walk(packet, FromInterface(UNDERLAY_NIC), ToDevice(golden.tap("a")), meta=meta)
    assert seen.arrived == ("a",)
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert any(isinstance(s, DeviceStep) and s.action is DeviceAction.DECAP for s in trace.steps)
    bridges = [s.bridge for s in trace.steps if isinstance(s, OpenFlowStep)]
    assert bridges.index("br-phys") < bridges.index("br-tun") < bridges.index("br-int")
