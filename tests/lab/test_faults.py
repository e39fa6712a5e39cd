"""Faults injected into a real two-node lab, each located by the diagnosis at the right layer
with the right cause, on iptables-legacy and iptables-nft.

One lab per backend (compute nodes cmp1 and cmp2 over VXLAN; VMs a and b on cmp1, c on cmp2;
a small host behind a routed veth of cmp1 for the routing faults). Each test breaks one thing
(:mod:`nodetrace.lab.faults`, recorded in the lab's ledger before it is made), sends a real
packet, checks what the kernel and Open vSwitch really did with it (the VM's wire, TRACE
output, counters, ``ofproto/trace``, ovs-vswitchd's log), takes the node's snapshot with the
fault in place, and asks the diagnosis. Then it undoes the fault and sends the packet again:
it passes, so the fault was the cause. The diagnosis is checked last, so a wrong answer still
leaves the real behaviour proven above it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, ip_address, ip_interface
from pathlib import Path

import pytest

from nodetrace.diagnosis import Diagnosis, Layer, diagnose, diagnose_log
from nodetrace.engine.walk import FromInterface, ToDevice, ToHost, WalkRequest
from nodetrace.lab import faults as F
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog, TraceMonitor
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.node import netlink
from nodetrace.lab.observe import LabProbe, Observation, Tunnel, read_passes
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.lab.send import Frame, Wire, frame_bytes
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.packet import ETH_TYPE_IPV4, Family, IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import NetfilterStep, Outcome, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.ovs_agent import BR_INT, BR_PHYS, UNDERLAY_NIC
from nodetrace.neutron.scenario import NetworkType, parse_scenario
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from nodetrace.tracelog.rulebook import RuleBook
from tests.conftest import lab_unavailable, unique
from tests.lab.fault_observation import log_file, netstat, observed_trace

SCENARIO = """
name = "faults"
[[nodes]]
name = "cmp1"
[[nodes]]
name = "cmp2"

[[networks]]
name = "blue"
type = "vxlan"
segmentation_id = 1037
cidr = "10.40.0.0/24"

[[security_groups]]
name = "open"
rules = [
  { direction = "ingress", protocol = "icmp" },
  { direction = "ingress", protocol = "tcp", port = 22 },
  { direction = "egress" },
]

[[ports]]
name = "a"
node = "cmp1"
network = "blue"
security_groups = ["open"]
[[ports]]
name = "b"
node = "cmp1"
network = "blue"
security_groups = ["open"]
[[ports]]
name = "c"
node = "cmp2"
network = "blue"
security_groups = ["open"]
"""

SIDE_NET = "10.77.0"
"""The routed network behind cmp1's side veth: cmp1 is .1, the side host .5."""
NODE = "cmp1"
K = naming.DeviceKind


@dataclass(frozen=True)
class _Host:
    netns: str
    ifname: str = "eth0"


@dataclass
class FaultLab:
    info: LabInfo
    lab: LabDir
    faults: F.Faults
    side_netns: str
    side_dev: str
    active: list[F.Fault] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    @property
    def backend(self) -> str:
        return self.info.backend

    @property
    def netns(self) -> str:
        return self.info.node(NODE).netns

    def dev(self, kind: naming.DeviceKind, vm: str) -> str:
        return naming.device_name(kind, self.info.vm(vm).port_id)

    def chain(self, kind: naming.ChainKind, vm: str) -> str:
        return naming.chain_name(kind, self.info.vm(vm).port_id)

    def ip(self, vm: str) -> IPv4Address:
        addr = ip_interface(self.info.vm(vm).ips[0]).ip
        assert isinstance(addr, IPv4Address)
        return addr

    def icmp(self, src: str, dst: str, **extra: object) -> Packet:
        """An echo request from VM ``src`` to VM ``dst``, with an IP ID and ICMP id of its own
        (a new conntrack entry, and the frame recognisable on arrival)."""
        fields: dict[str, object] = {
            "dl_src": self.info.vm(src).mac, "dl_dst": self.info.vm(dst).mac,
            "dl_type": ETH_TYPE_IPV4, "nw_src": self.ip(src), "nw_dst": self.ip(dst),
            "ip_id": self.rng.randrange(1, 0x10000), "nw_proto": IPProto.ICMP,
            "icmp_type": 8, "icmp_code": 0, "icmp_id": self.rng.randrange(1, 0x10000),
            "icmp_seq": 1,
        }  # fmt: skip
        return Packet(**(fields | extra))  # type: ignore[arg-type]

    def tcp_ack(self, src: str, dst: str, sport: int, dport: int) -> Packet:
        """A bare ACK, as the middle of a connection sends."""
        return replace(
            self.icmp(src, dst),
            nw_proto=IPProto.TCP, icmp_type=None, icmp_code=None, icmp_id=None, icmp_seq=None,
            tp_src=sport, tp_dst=dport, tcp_flags=0x010, tcp_seq=self.rng.randrange(1, 2**31),
            tcp_ack=self.rng.randrange(1, 2**31), tcp_window=502,
        )  # fmt: skip

    def fresh(self, packet: Packet) -> Packet:
        """The same packet as a new frame (another IP ID)."""
        return replace(packet, ip_id=self.rng.randrange(1, 0x10000))

    def between(self, packet: Packet, src: str, dst: str) -> WalkRequest:
        """The walk of ``packet`` sent by VM ``src``, meant for ``dst`` (a VM of cmp1; one on
        another node is reached through the tunnel, beyond this node's walk)."""
        here = self.info.vm(dst).node == NODE
        target = ToDevice(self.dev(K.TAP, dst)) if here else None
        return WalkRequest(packet, FromInterface(self.dev(K.TAP, src)), target=target)

    def inject(self, fault: F.Fault) -> F.Fault:
        self.active.append(fault)
        return self.faults.inject(fault)

    def undo(self, fault: F.Fault) -> None:
        assert self.faults.undo(fault) == []
        self.active.remove(fault)

    @contextmanager
    def probe(self) -> Iterator[LabProbe]:
        """Watch the lab (opened after the fault, so TRACE output is read with the rules the
        node holds now); the VMs' kernels stay silent, so no reply changes conntrack."""
        with LabProbe(self.lab, self.info, mute_vms=True) as probe:
            yield probe

    def snapshot(self, where: Path, *, conntrack: bool = False) -> Snapshot:
        node = self.info.node(NODE)
        out = where / "snapshot"
        shutil.rmtree(out, ignore_errors=True)
        options = Options(
            netns=node.netns,
            ovs_rundir=node.ovs_rundir,
            namespaces=(),
            conntrack_max=1000 if conntrack else 0,
        )
        collect(str(out), options)
        return load(out)

    def live_rules(self) -> RuleBook:
        save = f"iptables-{self.backend}-save"
        text = run([save], netns=self.netns).stdout
        return RuleBook({Family.IPV4: parse_iptables_save(text, source=save)})

    def settle_ovs(self) -> None:
        """Wait for a full round of OVS's revalidators: datapath flows cached before a change
        of flows or MAC learning are redone, so the next packet meets the change."""
        node = self.info.node(NODE)
        ctl = f"{node.ovs_rundir}/ovs-vswitchd.ctl"
        env = {**os.environ, "OVS_RUNDIR": node.ovs_rundir}
        run(["ovs-appctl", "-t", ctl, "revalidator/wait"], env=env)

    def mac_port(self, bridge: str, mac: str) -> str | None:
        """The port ``bridge``'s MAC learning table puts ``mac`` behind (``fdb/show``)."""
        node = self.info.node(NODE)
        ovs = OvsInstance(node.netns, Path(node.ovs_rundir))
        table = ovs.appctl("fdb/show", bridge)
        shown = ovs.ofctl("-O", "OpenFlow13", "show", bridge)
        names: dict[str, str] = dict(re.findall(r"^\s*(\d+)\(([^)]+)\):", shown, re.MULTILINE))
        for line in table.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3 and cols[2] == mac:
                return names.get(cols[0], cols[0])
        return None

    def wait_ovs_mtu(self, device: str, mtu: int, *, limit: float = 2.0) -> None:
        """Wait until Open vSwitch has noticed ``device``'s MTU (it reads it from netlink
        notifications), then for its revalidators."""
        node = self.info.node(NODE)
        ovs = OvsInstance(node.netns, Path(node.ovs_rundir))
        deadline = time.monotonic() + limit
        while ovs.vsctl("get", "interface", device, "mtu").strip() != str(mtu):
            assert time.monotonic() < deadline, f"OVS still reports another MTU for {device}"
            time.sleep(0.02)
        self.settle_ovs()

    def ovs_log(self) -> str:
        return (Path(self.info.node(NODE).ovs_rundir) / "ovs-vswitchd.log").read_text()


@pytest.fixture(scope="module", params=["legacy", "nft"])
def flab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultLab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    backend = str(request.param)
    root = tmp_path_factory.mktemp("labs")
    name = unique("fl")
    scenario = parse_scenario(SCENARIO, source="faults.toml")
    info = lab_up(scenario, SCENARIO, name=name, backend=backend, root=root)
    lab = LabDir(name, root)
    ledger = Ledger(lab.ledger_path)
    faults = F.Faults(ledger)
    try:
        # A small host behind a routed veth of cmp1: the path the routing faults break.
        side_netns = Resources(ledger).add_netns(f"{name}-side")
        side_dev = f"sd{name[-6:]}"
        netns = info.node(NODE).netns
        faults.inject(
            F.veth_to_host(netns, side_dev, side_netns, f"{SIDE_NET}.1/24", f"{SIDE_NET}.5/24")
        )
        faults.inject(F.set_sysctl(netns, "net.ipv4.ip_forward", "1"))
        yield FaultLab(info, lab, faults, side_netns, side_dev)
    finally:
        problems = faults.undo_all()
        result = lab_down(name, root=root)
        assert not problems and not result.problems, (problems, result.problems)


@pytest.fixture
def fl(flab: FaultLab) -> Iterator[FaultLab]:
    """The lab, with whatever fault a test left behind undone after it; the node's rules,
    flows, links, forwarding entries and sysctls are then what they were before the test."""
    before = _configuration(flab)
    yield flab
    for fault in reversed(flab.active):
        flab.faults.undo(fault)
    flab.active.clear()
    assert _configuration(flab) == before


_STATS = re.compile(r"\[\d+:\d+\]|\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]*,?\s*")


def _configuration(fl: FaultLab) -> dict[str, list[str]]:
    """What a fault may change, without counters and run-time state (learned flows, FDB
    entries the bridges learn by themselves)."""
    ns, node = fl.netns, fl.info.node(NODE)
    ovs = {**os.environ, "OVS_RUNDIR": node.ovs_rundir}
    out = {
        "iptables": run([f"iptables-{fl.backend}-save"], netns=ns).stdout.splitlines(),
        "links": run(["ip", "-o", "link", "show"], netns=ns).stdout.splitlines(),
        "fdb": run(["bridge", "fdb", "show", "static"], netns=ns).stdout.splitlines(),
        "sysctl": run(
            ["sysctl", "-a", "-r", r"ip_forward|rp_filter|tcp_loose"], netns=ns
        ).stdout.splitlines(),
    }
    for bridge in (BR_INT, "br-tun", BR_PHYS):
        flows = run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge], env=ovs).stdout
        out[bridge] = [line for line in flows.splitlines() if "hard_timeout=" not in line]
    return {
        k: sorted(_STATS.sub("", line) for line in v if not line.startswith("#"))
        for k, v in out.items()
    }


def _verdict(trace: Trace) -> NetfilterStep:
    assert trace.verdict_step is not None, trace.reason
    step = trace.steps[trace.verdict_step]
    assert isinstance(step, NetfilterStep), step
    return step


def _rule_text(step: NetfilterStep) -> str:
    """The rule a TRACE record names: printed (nf_tables) or found by number (legacy)."""
    return step.rule_text or (step.rule.text if step.rule is not None else "")


def _said(d: Diagnosis) -> str:
    cause = f"{d.cause.id}: {d.cause.title}; evidence {list(d.cause.evidence)}" if d.cause else ""
    return (
        f"layer {d.layer.value}, location {d.location!r}, cause {cause}; divergence {d.divergence}"
    )


def _check(found: dict[str, Diagnosis], layer: Layer, cause: str, *named: str) -> None:
    """Every way of asking (``diagnose`` with the observed trace, ``diagnose_log`` on each
    captured format) names ``layer`` and ``cause``, at a location naming each of ``named``."""
    wrong = [
        f"{how}: {_said(d)}"
        for how, d in found.items()
        if d.cause is None
        or (d.layer, d.cause.id) != (layer, cause)
        or not all(n in d.location for n in named)
    ]
    assert not wrong, f"expected {layer.value}/{cause} at {named}; got:\n" + "\n".join(wrong)


def _lost_by_netfilter(diagnoses: list[Diagnosis]) -> Diagnosis:
    """The diagnosis of the logged pass that the node's netfilter dropped."""
    dropped = [
        d
        for d in diagnoses
        if d.observed is not None and d.observed.outcome in (Outcome.DROPPED, Outcome.REJECTED)
    ]
    assert len(dropped) == 1, [_said(d) for d in diagnoses]
    return dropped[0]


# --- netfilter ------------------------------------------------------------------------------


@pytest.mark.lab
def test_drop_rule_in_a_security_group_chain(fl: FaultLab, tmp_path: Path) -> None:
    chain = fl.chain(naming.ChainKind.INGRESS, "b")
    fault = fl.inject(F.drop_rule(fl.netns, fl.backend, chain, ["-p", "icmp"]))
    packet = fl.icmp("a", "b")
    qbr_b = fl.dev(K.QBR, "b")
    with fl.probe() as probe, ExitStack() as stack:
        nft_monitor = None
        if fl.backend == "nft":
            nft_monitor = stack.enter_context(TraceMonitor(fl.netns, tmp_path, "nft"))
        seen = probe.send(packet, "a")
        nft_lines = nft_monitor.stop() if nft_monitor is not None else []
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        again = probe.send(fl.fresh(packet), "a")
    # The kernel: b's bridge pass ends on the inserted rule; b never got the frame.
    assert seen.arrived == ()
    real = seen.bridge_pass(NODE, qbr_b)
    assert real is not None and real.outcome is Outcome.DROPPED, seen.trace_lines
    assert _verdict(real).chain == chain and fault.id in _rule_text(_verdict(real))
    assert again.arrived == ("b",)

    request = fl.between(packet, "a", "b")
    logs = {seen.trace_format: log_file(seen.trace_lines[NODE], tmp_path / "trace.log")}
    if nft_lines:
        logs["nft-monitor"] = log_file(nft_lines, tmp_path / "nft-monitor.log")
    found = {"diagnose": diagnose(snap, observed=real, request=request)}
    for fmt, path in logs.items():
        found[fmt] = _lost_by_netfilter(list(diagnose_log(snap, path)))
    _check(found, Layer.NETFILTER, "rule-drop", chain, fault.id)


@pytest.mark.lab
def test_conntrack_invalid_drops_a_reply_the_node_never_saw_begin(
    fl: FaultLab, tmp_path: Path
) -> None:
    """A connection the node's conntrack did not see start (it predates a conntrack flush, a
    reboot, a failover): with ``nf_conntrack_tcp_loose=0`` its packets are INVALID. a's ACK to
    b's port 22 still passes (the port rule comes before the INVALID one), but b's answer is
    dropped by the INVALID rule of a's ingress chain. With pickup allowed (the default), the
    first ACK creates the entry and the answer is ESTABLISHED."""
    fault = fl.inject(F.set_sysctl(fl.netns, "net.netfilter.nf_conntrack_tcp_loose", "0"))
    sport = fl.rng.randrange(33000, 60000)
    qbr_a = fl.dev(K.QBR, "a")
    invalid_rule = f"-A {fl.chain(naming.ChainKind.INGRESS, 'a')} -m state --state INVALID"
    with fl.probe() as probe:
        first = probe.send(fl.tcp_ack("a", "b", sport, 22), "a")
        answer = fl.tcp_ack("b", "a", 22, sport)
        seen = probe.send(answer, "b")
        snap = fl.snapshot(tmp_path, conntrack=True)
        fl.undo(fault)
        sport2 = sport + 1
        first_again = probe.send(fl.tcp_ack("a", "b", sport2, 22), "a")
        again = probe.send(fl.tcp_ack("b", "a", 22, sport2), "b")
    assert first.arrived == ("b",) and seen.arrived == ()
    real = seen.bridge_pass(NODE, qbr_a)
    assert real is not None and real.outcome is Outcome.DROPPED, seen.trace_lines
    assert _rule_text(_verdict(real)).startswith(invalid_rule), _verdict(real)
    assert first_again.arrived == ("b",) and again.arrived == ("a",)

    request = fl.between(answer, "b", "a")
    found = {
        "diagnose": diagnose(snap, observed=real, request=request),
        "diagnose_log": _lost_by_netfilter(
            list(diagnose_log(snap, log_file(seen.trace_lines[NODE], tmp_path / "trace.log")))
        ),
    }
    _check(
        found,
        Layer.CONNTRACK,
        "conntrack-invalid",
        "INVALID",
        fl.chain(naming.ChainKind.INGRESS, "a"),
    )


# --- Open vSwitch and the Linux bridge ------------------------------------------------------


def _vm_to_vm(
    fl: FaultLab, probe: LabProbe, packet: Packet, src: str, dst: str
) -> tuple[Observation, Trace, WalkRequest]:
    """Send ``packet`` from ``src`` to ``dst`` and return what the node was seen to do with it
    (the sender's bridge pass, Open vSwitch, the rest) and the walk request for it."""
    seen = probe.send(packet, src, wait=0.5)
    assert seen.arrived == (), f"{dst} got the frame although the fault is in place"
    observed = observed_trace(seen, NODE, before_ovs=[fl.dev(K.QBR, src)], target=dst)
    return seen, observed, fl.between(packet, src, dst)


@pytest.mark.lab
def test_missing_openflow_flow(fl: FaultLab, tmp_path: Path) -> None:
    # br-int table 60's only flow (NORMAL): without it every packet misses there.
    fault = fl.inject(F.delete_flow(fl.netns, fl.info.node(NODE).ovs_rundir, BR_INT, 60, 1))
    packet = fl.icmp("a", "b")
    fl.settle_ovs()
    with fl.probe() as probe:
        seen, observed, request = _vm_to_vm(fl, probe, packet, "a", "b")
        ofproto = seen.ofproto[NODE]
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        fl.settle_ovs()
        again = probe.send(fl.fresh(packet), "a")
    assert "60. No match." in ofproto and "Datapath actions: drop" in ofproto, ofproto
    # Back: b gets it (a copy may reach c too: with table 60 empty br-int learned no MACs,
    # so the first frame after the flow is back is flooded).
    assert "b" in again.arrived
    d = diagnose(snap, observed=observed, request=request)
    _check({"diagnose": d}, Layer.OPENFLOW, "flow-missing", BR_INT, "60")


@pytest.mark.lab
def test_stale_fdb_entry_on_the_vms_bridge(fl: FaultLab, tmp_path: Path) -> None:
    # b's MAC pinned to qvb, the port frames for b come in by: the bridge filters them.
    qbr_b, qvb_b = fl.dev(K.QBR, "b"), fl.dev(K.QVB, "b")
    fault = fl.inject(F.static_fdb(fl.netns, fl.info.vm("b").mac, qvb_b))
    packet = fl.icmp("a", "b")
    with fl.probe() as probe:
        _, observed, request = _vm_to_vm(fl, probe, packet, "a", "b")
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        again = probe.send(fl.fresh(packet), "a")
    # netfilter never saw the frame cross b's bridge: no FORWARD pass on it
    forwarded = [
        s
        for s in observed.steps
        if isinstance(s, NetfilterStep) and s.in_dev == qbr_b and s.chain == "FORWARD"
    ]
    assert forwarded == [] and observed.outcome is Outcome.ENDS, observed.reason
    assert again.arrived == ("b",)
    d = diagnose(snap, observed=observed, request=request)
    _check({"diagnose": d}, Layer.BRIDGE, "fdb-stale", qbr_b)


@pytest.mark.lab
def test_ovs_mac_learning_misled_by_a_frame_from_the_tunnel(fl: FaultLab, tmp_path: Path) -> None:
    """A frame from cmp2 carrying b's MAC as its source (a VM moved, a loop, a spoof): br-int
    learns b behind patch-tun and br-tun learns it behind the tunnel, so b's traffic from a
    now leaves for cmp2."""
    b_mac = fl.info.vm("b").mac
    node = fl.info.node(NODE)
    vlan = 1  # the local VLAN of network blue on br-int (its only network)
    learned_mac = F.learned_mac(
        fl.netns, node.ovs_rundir, BR_INT, vlan, b_mac, tunnel_bridge="br-tun"
    )
    fault = fl.inject(learned_mac)
    packet = fl.icmp("a", "b")
    misleading = replace(fl.icmp("c", "a"), dl_src=b_mac)
    tunnel = Tunnel(NetworkType.VXLAN, 1037, "cmp2", NODE)
    with fl.probe() as probe:
        # b's own announcement (the probe's) handled first, so it cannot undo the lie
        fl.settle_ovs()
        before = fl.mac_port(BR_INT, b_mac)
        assert probe.send(misleading, "underlay", tunnel=tunnel, ofproto=False).arrived == ("a",)
        fl.settle_ovs()
        learned = fl.mac_port(BR_INT, b_mac)
        assert learned == "patch-tun", f"br-int learned b's MAC on {learned} (before: {before})"
        seen, observed, request = _vm_to_vm(fl, probe, packet, "a", "b")
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        probe.announce_vms()
        fl.settle_ovs()
        again = probe.send(fl.fresh(packet), "a")
    # Open vSwitch's own account: b's MAC is behind the tunnel, so is the packet.
    ofproto = seen.ofproto[NODE]
    assert "output to native tunnel" in ofproto and "tnl_push" in ofproto, ofproto
    assert again.arrived == ("b",)
    d = diagnose(snap, observed=observed, request=request)
    _check({"diagnose": d}, Layer.BRIDGE, "fdb-stale", BR_INT, b_mac)


@pytest.mark.lab
def test_down_veth_end(fl: FaultLab, tmp_path: Path) -> None:
    qvb_b, qvo_b = fl.dev(K.QVB, "b"), fl.dev(K.QVO, "b")
    fault = fl.inject(F.link_down(fl.netns, qvb_b))
    packet = fl.icmp("a", "b")
    with fl.probe() as probe:
        before = _tx_dropped(fl.netns, qvo_b)
        _, observed, request = _vm_to_vm(fl, probe, packet, "a", "b")
        dropped = _tx_dropped(fl.netns, qvo_b) - before
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        again = probe.send(fl.fresh(packet), "a", wait=1.0)
    # Open vSwitch sent it to qvo (its flows are fine); the veth dropped it, peer down.
    assert "forwarding to learned port" in again.ofproto[NODE] or again.arrived
    assert dropped >= 1, "qvo's tx_dropped did not rise"
    assert again.arrived == ("b",)
    d = diagnose(snap, observed=observed, request=request)
    _check({"diagnose": d}, Layer.DEVICE, "link-down", qvb_b)


def _tx_dropped(netns: str, device: str) -> int:
    with netlink(netns) as nl:
        link = nl.get_links(nl.link_lookup(ifname=device)[0])[0]
        return int(link.get_attr("IFLA_STATS64")["tx_dropped"])


@pytest.mark.lab
def test_mtu_too_small_on_the_tunnel_path(fl: FaultLab, tmp_path: Path) -> None:
    # a's largest packet (its MTU, 1450) plus 50 bytes of VXLAN no longer fits und0.
    fault = fl.inject(F.set_mtu(fl.netns, UNDERLAY_NIC, 1400))
    packet = fl.icmp("a", "c", ip_df=True, ip_len=1450)
    with fl.probe() as probe:
        log_before = fl.ovs_log().count("Message too long")
        _, observed, request = _vm_to_vm(fl, probe, packet, "a", "c")
        log_after = fl.ovs_log()
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        fl.wait_ovs_mtu(UNDERLAY_NIC, 1500)
        again = probe.send(fl.fresh(packet), "a", wait=1.0)
        log_again = fl.ovs_log().count("Message too long") - log_after.count("Message too long")
    # Open vSwitch's own words: the send on und0 failed.
    assert log_after.count("Message too long") > log_before
    assert f"error sending Ethernet packet on {UNDERLAY_NIC}: Message too long" in log_after
    assert again.arrived == ("c",), f"{log_again} more 'Message too long' after the MTU was back"
    d = diagnose(snap, observed=observed, request=request)
    assert d.cause is not None and d.cause.id == "mtu", _said(d)
    assert d.layer in (Layer.DEVICE, Layer.TUNNEL) and UNDERLAY_NIC in d.location, _said(d)


# --- routing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Routed:
    """What one frame sent from the underlay to cmp1 did: its TRACE output, the kernel's
    counters before and after, and what the side host received."""

    packet: Packet
    lines: tuple[str, ...]
    passes: tuple[Trace, ...]
    counters: dict[str, int]
    side_got: tuple[Frame, ...]


def _send_routed(fl: FaultLab, probe: LabProbe, packet: Packet, workdir: Path) -> Routed:
    """Send ``packet`` from the underlay switch to cmp1's br-phys and watch what follows."""
    devices = {BR_PHYS, fl.side_dev}
    before = netstat(fl.netns)
    with ExitStack() as stack:
        side = stack.enter_context(Wire.open(_Host(fl.side_netns)))
        kernel = monitor = None
        if fl.backend == "legacy":
            kernel = stack.enter_context(KernelTraceLog(Resources(Ledger(fl.lab.ledger_path))))
        else:
            monitor = stack.enter_context(TraceMonitor(fl.netns, workdir, "xtables"))
        side.drain()
        with Wire.open(_Host(fl.info.underlay_netns, "underlay")) as wire:
            wire.send(frame_bytes(packet))
        got = tuple(side.receive(timeout=0.5))
        if kernel is not None:
            lines = kernel.lines(devices=devices, settle=0.05)
        else:
            assert monitor is not None
            lines = monitor.stop()
    mine = [
        p
        for p in read_passes(lines, fl.live_rules(), source="TRACE")
        if p.trace.packet is not None
        and (p.trace.packet.nw_src, p.trace.packet.ip_id) == (packet.nw_src, packet.ip_id)
    ]
    numbers = sorted({n for p in mine for n in range(p.first_line, p.last_line + 1)})
    after = netstat(fl.netns)
    return Routed(
        packet,
        tuple(lines[n - 1] for n in numbers),
        tuple(p.trace for p in mine),
        {k: after[k] - before.get(k, 0) for k in after},
        got,
    )


def _from_underlay(fl: FaultLab, src: str, dst: str, **extra: object) -> Packet:
    with netlink(fl.netns) as nl:
        mac = str(nl.get_links(nl.link_lookup(ifname=BR_PHYS)[0])[0].get_attr("IFLA_ADDRESS"))
    with netlink(fl.info.underlay_netns) as nl:
        own = str(nl.get_links(nl.link_lookup(ifname="underlay")[0])[0].get_attr("IFLA_ADDRESS"))
    fields: dict[str, object] = {
        "dl_src": own, "dl_dst": mac, "dl_type": ETH_TYPE_IPV4, "nw_src": ip_address(src),
        "nw_dst": ip_address(dst), "ip_id": fl.rng.randrange(1, 0x10000),
        "nw_proto": IPProto.ICMP, "icmp_type": 8, "icmp_code": 0,
        "icmp_id": fl.rng.randrange(1, 0x10000), "icmp_seq": 1,
    }  # fmt: skip
    return Packet(**(fields | extra))  # type: ignore[arg-type]


def _icmp_from(frames: tuple[Frame, ...], src: str, icmp_type: int) -> bool:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    for f in frames:
        eth = Ether(f.data)
        if eth.haslayer(ICMP) and eth[IP].src == src and eth[ICMP].type == icmp_type:
            return True
    return False


def _routing_diagnoses(
    fl: FaultLab, snap: Snapshot, routed: Routed, request: WalkRequest, workdir: Path
) -> dict[str, Diagnosis]:
    assert len(routed.passes) == 1, routed.lines
    log = log_file(routed.lines, workdir / "trace.log")
    logged = list(diagnose_log(snap, log))
    assert len(logged) == 1, [_said(d) for d in logged]
    return {
        "diagnose": diagnose(snap, observed=routed.passes[0], request=request),
        "diagnose_log": logged[0],
    }


@pytest.mark.lab
def test_rp_filter_drops_a_packet_whose_way_back_is_another_device(
    fl: FaultLab, tmp_path: Path
) -> None:
    # From the side network's address, but coming in on br-phys: the way back is the side veth.
    fault = fl.inject(F.set_sysctl(fl.netns, f"net.ipv4.conf.{BR_PHYS}.rp_filter", "1"))
    underlay_ip = fl.info.node(NODE).underlay_ip
    packet = _from_underlay(fl, f"{SIDE_NET}.5", underlay_ip)
    with fl.probe() as probe:
        seen = _send_routed(fl, probe, packet, tmp_path)
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        again = _send_routed(fl, probe, fl.fresh(packet), tmp_path)
    # The kernel: counted as a reverse-path drop, never reached INPUT, no answer.
    assert seen.counters["TcpExt.IPReversePathFilter"] == 1, seen.counters
    assert not any("INPUT" in line for line in seen.lines), seen.lines
    assert not _icmp_from(seen.side_got, underlay_ip, 0)
    # Without it the host answers, through the side veth.
    assert again.counters["TcpExt.IPReversePathFilter"] == 0
    assert _icmp_from(again.side_got, underlay_ip, 0)
    request = WalkRequest(packet, FromInterface(UNDERLAY_NIC), target=ToHost())
    _check(
        _routing_diagnoses(fl, snap, seen, request, tmp_path),
        Layer.ROUTING,
        "rp-filter",
        BR_PHYS,
        "rp_filter",
    )


@pytest.mark.lab
def test_ip_forward_off_on_a_routed_path(fl: FaultLab, tmp_path: Path) -> None:
    fault = fl.inject(F.set_sysctl(fl.netns, "net.ipv4.ip_forward", "0"))
    packet = _from_underlay(fl, fl.info.underlay_ip, f"{SIDE_NET}.5")
    with fl.probe() as probe:
        seen = _send_routed(fl, probe, packet, tmp_path)
        snap = fl.snapshot(tmp_path)
        fl.undo(fault)
        retry = fl.fresh(packet)
        again = _send_routed(fl, probe, retry, tmp_path)
    # The kernel: not forwarded (an address error, as ip_error counts it), no FORWARD pass.
    assert seen.counters["Ip.InAddrErrors"] == 1 and seen.counters["Ip.ForwDatagrams"] == 0
    assert not any("FORWARD" in line for line in seen.lines), seen.lines
    assert not any(f.key == packet.ip_id for f in seen.side_got)
    assert again.counters["Ip.ForwDatagrams"] >= 1  # the side host's answer is routed too
    assert any(f.key == retry.ip_id for f in again.side_got), "not forwarded to the side host"
    request = WalkRequest(packet, FromInterface(UNDERLAY_NIC), target=ToDevice(fl.side_dev))
    _check(
        _routing_diagnoses(fl, snap, seen, request, tmp_path),
        Layer.ROUTING,
        "ip-forward-off",
        BR_PHYS,
        "ip_forward",
    )
