"""IPv6 through a legacy Neutron router, built for real and walked
(examples/scenarios/legacy-router-ipv6.toml).

The router's namespace gets IPv6 on, each ``qr-`` port its subnet's ``::1``, the agent's
ip6tables and ``net.ipv6.conf.all.forwarding=1``; each VM a static IPv6 default route via its
``::1`` (no router advertisements in the lab). The real kernel answers with ``ping -6`` and TCP
connects from inside the VMs; the walk of the same packet through a ``collect`` snapshot of the
node and the router's namespace must end the same way.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

import pytest

from nodetrace.engine.walk import FromInterface, ToDevice, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources
from nodetrace.lab.router import router_netns
from nodetrace.lab.run import run
from nodetrace.lab.send import Wire, frame_bytes
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.packet import ETH_TYPE_IPV6, IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import DeviceStep, NetfilterStep, Outcome, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.l3_agent import RouterState
from nodetrace.neutron.scenario import load_scenario
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, unique
from tests.lab.router_bed import Host, save_tables

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/legacy-router-ipv6.toml"
NODE = "aio1"


@dataclass
class Ipv6RouterLab:
    info: LabInfo
    state: NodeState
    router: RouterState
    router_ns: str
    snap: Snapshot
    loaded_rules: str
    """``ip6tables-legacy-save`` in the router's namespace, as ``lab up`` left it."""
    log: KernelTraceLog

    def ip6(self, vm: str) -> IPv6Address:
        return next(
            ip for ip in self.state.vm_port(vm).port.fixed_ips if isinstance(ip, IPv6Address)
        )

    def qr_mac(self, vm: str) -> str:
        net = self.state.vm_port(vm).network.id
        return next(p.interface.mac for p in self.router.internal if p.network.id == net)

    def tap(self, vm: str) -> str:
        return naming.tap_name(self.state.vm_port(vm).port.id)

    def packet(self, sender: str, receiver: str, **fields: Any) -> Packet:
        """An IPv6 packet from ``sender`` to ``receiver``, sent to its gateway's MAC."""
        base = Packet(
            dl_src=self.info.vm(sender).mac, dl_dst=self.qr_mac(sender), dl_type=ETH_TYPE_IPV6,
            nw_src=self.ip6(sender), nw_dst=self.ip6(receiver),
        )  # fmt: skip
        return dataclasses.replace(base, **fields)

    def walk(self, sender: str, receiver: str, **fields: Any) -> Trace:
        """The walk of :meth:`packet` from ``sender``'s tap."""
        return self.walk_packet(self.packet(sender, receiver, **fields), sender, receiver)

    def walk_packet(self, packet: Packet, sender: str, receiver: str) -> Trace:
        request = WalkRequest(packet, FromInterface(self.tap(sender)), (), None,
                              ToDevice(self.tap(receiver)))  # fmt: skip
        return walk(self.snap, request, engines_for(self.snap), switch=self.snap.ovs)

    def trace_lines(self, sender: str, packet: Packet, mine: str) -> list[str]:
        """Send ``packet`` from ``sender``'s eth0; the TRACE lines the node and the router's
        namespace logged for it (those matching the regex ``mine``)."""
        self.log.records()
        with Wire.open(Host(self.info.vm(sender).netns)) as tx:
            tx.send(frame_bytes(packet))
        devices = {i.name for i in self.snap.topology.interfaces}
        # Its own header, not one quoted inside an ICMPv6 error ("[SRC=... ]").
        found = re.compile(rf"^[^\[]*{mine}")
        return [ln for ln in self.log.lines(devices=devices, settle=0.3) if found.search(ln)]

    def tcp_connect(self, sender: str, receiver: str, port: int) -> str:
        """What the real kernel of ``sender`` says to a TCP connect: "connected", "refused"
        (the SYN reached the receiver's stack, which has no listener) or "timeout"."""
        code = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_INET6);s.settimeout(1.5)\n"
            "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('connected')\n"
            "except ConnectionRefusedError: print('refused')\n"
            "except (TimeoutError, socket.timeout): print('timeout')\n"
        )
        argv = [sys.executable, "-c", code, str(self.ip6(receiver)), str(port)]
        return run(argv, netns=self.info.vm(sender).netns).stdout.strip()

    def ping6(self, sender: str, receiver: str) -> subprocess.CompletedProcess[str]:
        argv = ["ping", "-6", "-c1", "-W1", str(self.ip6(receiver))]
        return run(argv, netns=self.info.vm(sender).netns, check=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ipv6RouterLab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("r6")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="legacy", root=root)
    try:
        state = generate_node(scenario, NODE)
        router = state.routers[0]
        rns = router_netns(name, router)
        # Fill the neighbour caches and br-int's MAC table, as a running cloud has them.
        for vm in info.vms:
            for other in info.vms:
                if other.name != vm.name:
                    ip = next(i for i in other.ips if ":" in i).split("/")[0]
                    run(["ping", "-6", "-c1", "-W1", ip], netns=vm.netns, check=False)
        run(["conntrack", "-F"], netns=rns, check=False)
        loaded = run(["ip6tables-legacy-save"], netns=rns).stdout
        node = info.node(NODE)
        # TRACE everything from where it enters each stack; the snapshot holds these rules too.
        for netns in (node.netns, rns):
            run(
                ["ip6tables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                netns=netns,
            )
        out = root / "snapshot"
        collect(str(out), Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=(rns,)))
        res = Resources(Ledger(LabDir(name, root).ledger_path))
        with KernelTraceLog(res) as log:
            yield Ipv6RouterLab(info, state, router, rns, load(out), loaded, log)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _devices(trace: Trace) -> list[str]:
    return [s.device for s in trace.steps if isinstance(s, DeviceStep)]


@pytest.mark.lab
def test_the_generated_ip6tables_are_what_the_kernel_holds(lab: Ipv6RouterLab) -> None:
    assert lab.router.ip6tables_save, "a router with IPv6 ports has ip6tables"
    assert save_tables(lab.loaded_rules) == save_tables(lab.router.ip6tables_save)


@pytest.mark.lab
def test_the_router_forwards_ipv6(lab: Ipv6RouterLab) -> None:
    out = run(["sysctl", "-n", "net.ipv6.conf.all.forwarding"], netns=lab.router_ns).stdout
    assert out.strip() == "1"


@pytest.mark.lab
def test_icmpv6_echo_crosses_the_router_with_the_hop_limit_decremented(
    lab: Ipv6RouterLab,
) -> None:
    real = lab.ping6("web1", "db1")
    assert real.returncode == 0, real.stdout + real.stderr
    # The reply crossed the router once: db1 sent it with 64, web1 saw 63.
    assert re.search(r"\bttl=63\b", real.stdout), real.stdout
    ident = int(time.monotonic_ns() % 60000) + 1
    packet = lab.packet("web1", "db1", nw_proto=IPProto.ICMPV6, icmp_type=128, icmp_code=0,
                        icmp_id=ident, icmp_seq=1, nw_ttl=64)  # fmt: skip
    trace = lab.walk_packet(packet, "web1", "db1")
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    devices = _devices(trace)
    assert devices[-1] == lab.tap("db1")
    assert any(d.startswith("qr-") for d in devices), devices
    last = [s for s in trace.steps if isinstance(s, NetfilterStep) and s.packet is not None][-1]
    assert last.packet is not None and last.packet.nw_ttl == 63
    lines = lab.trace_lines("web1", packet, rf" TYPE=128 CODE=0 ID={ident} SEQ=1\b")
    assert len(lines) > 10, lines  # the node's bridges and the router's namespace
    assert lines == render_kernel_walk(trace)[0].splitlines()


@pytest.mark.lab
def test_hop_limit_1_dies_in_the_router(lab: Ipv6RouterLab) -> None:
    argv = ["ping", "-6", "-c1", "-W1", "-t", "1", str(lab.ip6("db1"))]
    real = run(argv, netns=lab.info.vm("web1").netns, check=False)
    # The router answers from its address on web1's network.
    router_ip = next(p.interface.ip6 for p in lab.router.internal if p.network.name == "private")
    assert re.search(rf"From {router_ip}\b.*Time exceeded", real.stdout), real.stdout
    ident = int(time.monotonic_ns() % 60000) + 1
    packet = lab.packet("web1", "db1", nw_proto=IPProto.ICMPV6, icmp_type=128, icmp_code=0,
                        icmp_id=ident, icmp_seq=1, nw_ttl=1)  # fmt: skip
    trace = lab.walk_packet(packet, "web1", "db1")
    assert trace.outcome is Outcome.DROPPED, trace.reason
    assert "ICMPv6 time-exceeded" in trace.reason
    assert lab.tap("db1") not in _devices(trace)
    lines = lab.trace_lines("web1", packet, rf" TYPE=128 CODE=0 ID={ident} SEQ=1\b")
    assert lines == render_kernel_walk(trace)[0].splitlines()


@pytest.mark.lab
def test_tcp_crosses_the_router_to_an_allowed_port(lab: Ipv6RouterLab) -> None:
    # No listener on db1: a refusal means the SYN reached db1's own stack.
    assert lab.tcp_connect("web1", "db1", 22) == "refused"
    sport = 40000 + int(time.monotonic_ns() % 20000)
    packet = lab.packet("web1", "db1", nw_proto=IPProto.TCP, tp_src=sport, tp_dst=22,
                        tcp_flags=0x002, nw_ttl=64)  # fmt: skip
    trace = lab.walk_packet(packet, "web1", "db1")
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert _devices(trace)[-1] == lab.tap("db1")
    lines = lab.trace_lines("web1", packet, rf" SPT={sport} DPT=22 ")
    assert len(lines) > 10, lines
    assert lines == render_kernel_walk(trace)[0].splitlines()


@pytest.mark.lab
def test_tcp_across_the_router_is_dropped_by_the_receivers_security_group(
    lab: Ipv6RouterLab,
) -> None:
    assert lab.tcp_connect("web1", "db2", 22) == "timeout"
    sport = 40000 + int(time.monotonic_ns() % 20000)
    packet = lab.packet("web1", "db2", nw_proto=IPProto.TCP, tp_src=sport, tp_dst=22,
                        tcp_flags=0x002, nw_ttl=64)  # fmt: skip
    trace = lab.walk_packet(packet, "web1", "db2")
    assert trace.outcome is Outcome.DROPPED, trace.reason
    lines = lab.trace_lines("web1", packet, rf" SPT={sport} DPT=22 ")
    assert len(lines) > 10, lines
    assert lines == render_kernel_walk(trace)[0].splitlines()
    assert trace.verdict_step is not None
    step = trace.steps[trace.verdict_step]
    # The receiver's security group: its ip6tables chain on the node, past the router.
    assert isinstance(step, NetfilterStep) and step.family == "ipv6", step
    assert step.chain.startswith("neutron-openvswi-"), step.chain
    assert not step.out_dev.startswith("qr-")
