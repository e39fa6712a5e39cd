"""The golden traces, checked against reality (and rewritten on request).

For each scenario of ``tests/golden/cases.py`` this builds the lab, fills neighbour caches and
MAC tables as a running cloud has them, puts ``-j TRACE`` first in raw PREROUTING of the node and
its router namespaces, and collects the node's snapshot bundle as ``nodetrace collect`` does.
Then each case's packet (the ``nodetrace trace`` command's own packet, completed from the
snapshot, with an IP ID that identifies it) is sent for real: it must arrive where the case says
exactly when the case says "delivered", the walk of that packet must reach the same fate, and
its netfilter steps must be, line for line, the TRACE lines the kernel logged.

With ``NODETRACE_REGENERATE_GOLDEN=1`` the bundles and each case's ``nodetrace trace`` output
(the text view, from the stored bundle) are written to ``tests/data/golden/``, only after every
case of the scenario agreed with the lab.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodetrace import api
from nodetrace.cli import build_parser
from nodetrace.engine.walk import walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.node import netlink
from nodetrace.lab.observe import openflow_trace
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.resources import Resources
from nodetrace.lab.router import OUTSIDE_IFNAME, outside_netns, router_netns
from nodetrace.lab.run import run
from nodetrace.lab.send import Wire, frame_bytes, packet_from_frame
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.packet import IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import OpenFlowStep, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.ovs_agent import BR_INT
from nodetrace.neutron.scenario import Scenario, load_scenario
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, unique
from tests.golden.cases import (
    CASES,
    GOLDEN,
    REGENERATE,
    SCENARIOS,
    GoldenCase,
    read_golden,
    run_cli,
    write_golden,
)

pytestmark = pytest.mark.lab


@dataclass(frozen=True)
class _Host:
    netns: str
    ifname: str = "eth0"


@dataclass
class Bench:
    """One built scenario: its lab, the node's generated state and the collected bundle."""

    name: str
    """The lab's name."""
    stem: str
    """The scenario file's name, as the cases name it."""
    info: LabInfo
    scenario: Scenario
    state: NodeState
    bundle: Path
    snap: Snapshot
    log: KernelTraceLog
    facts: dict[str, str]

    def host(self, who: str) -> _Host:
        if who == "outside":
            return _Host(outside_netns(self.name, self.state.name), OUTSIDE_IFNAME)
        return _Host(self.info.vm(who).netns)


def _mac(netns: str, ifname: str) -> str:
    with netlink(netns) as nl:
        return str(nl.get_links(nl.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS"))


def _facts(lab: str, scenario: Scenario, state: NodeState) -> dict[str, str]:
    """What the cases' placeholders stand for in this lab."""
    facts: dict[str, str] = {}
    for port in scenario.ports:
        facts[f"tap:{port.name}"] = naming.tap_name(port.id)
        facts[f"mac:{port.name}"] = port.mac
        facts[f"ip:{port.name}"] = str(port.fixed_ips[0])
        facts[f"port:{port.name}"] = port.id
    for router in state.routers:
        for qr in router.internal:
            for port in scenario.ports:
                if port.network == qr.network.id:
                    facts[f"qr:{port.name}"] = qr.interface.mac
        if router.gateway is not None:
            facts["qg"] = router.gateway.interface.mac
            facts["outside_mac"] = _mac(outside_netns(lab, state.name), OUTSIDE_IFNAME)
        for fip in router.router.floating_ips:
            facts[f"fip:{scenario.port(fip.port).name}"] = str(fip.address)
    return facts


def _warm_up(info: LabInfo, state: NodeState, lab: str) -> tuple[str, ...]:
    """Neighbour caches and MAC tables as a running cloud has them; the router namespaces
    (then their connections forgotten, so each case opens a new one)."""
    routers = tuple(router_netns(lab, r) for r in state.routers)
    vms = [v for v in info.vms if v.node == state.name]
    if routers:
        for vm in vms:
            run(["ping", "-c1", "-W1", "8.8.8.8"], netns=vm.netns, check=False)
        for r in state.routers:
            if r.gateway is not None:
                gateway = str(r.gateway.interface.ip)
                run(["ping", "-c1", "-W1", gateway], netns=outside_netns(lab, state.name))
    else:
        for vm in vms:  # ARP is let through by any firewall: every MAC gets learned
            peer = next(v for v in vms if v is not vm)
            run(["ping", "-c1", "-W1", peer.ips[0].split("/")[0]], netns=vm.netns, check=False)
    for netns in routers:
        run(["conntrack", "-F"], netns=netns, check=False)
    return routers


@pytest.fixture(params=sorted({c.scenario for c in CASES}))
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    path = SCENARIOS / f"{request.param}.toml"
    scenario = load_scenario(path)
    node = next(c.node for c in CASES if c.scenario == request.param)
    name = unique("gd")
    root = tmp_path / "labs"
    info = lab_up(scenario, path.read_text(), name=name, backend="legacy", root=root)
    try:
        state = generate_node(scenario, node)
        routers = _warm_up(info, state, name)
        node_info = info.node(node)
        for netns in (node_info.netns, *routers):
            run(
                ["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                netns=netns,
            )
        bundle = tmp_path / f"{request.param}-{node}.snapshot.tar.gz"
        options = Options(netns=node_info.netns, ovs_rundir=node_info.ovs_rundir,
                          namespaces=routers)  # fmt: skip
        collect(str(bundle), options)
        facts = _facts(name, scenario, state)
        res = Resources(Ledger(LabDir(name, root).ledger_path))
        with KernelTraceLog(res) as log:
            yield Bench(
                name, request.param, info, scenario, state, bundle, load(bundle), log, facts
            )
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _walk(bench: Bench, case: GoldenCase, ident: int) -> tuple[Packet, Trace]:
    """The packet ``nodetrace trace`` would walk for ``case`` (same parser, same completion),
    identified by ``ident`` as IP ID (and ICMP id), and its walk."""
    args = build_parser("trace").parse_args(["trace", str(bench.bundle), *case.argv(bench.facts)])
    request, _ = api.trace_request(
        bench.snap, args.packet, from_device=args.from_iface, netns=args.netns,
        from_port=args.from_port, from_host=args.from_host, to_port=args.to_port,
        ct_state=args.ct_state,
    )  # fmt: skip
    extra = {"icmp_id": ident, "icmp_seq": 1} if request.packet.nw_proto == IPProto.ICMP else {}
    packet = dataclasses.replace(request.packet, ip_id=ident, **extra)  # type: ignore[arg-type]
    walked = dataclasses.replace(request, packet=packet)
    return packet, walk(bench.snap, walked, engines_for(bench.snap), switch=bench.snap.ovs)


def _arrival(case: GoldenCase, packet: Packet) -> Callable[[Packet], bool]:
    if case.receiver == "answer":  # the destination's SYN-ACK: a socket accepted it
        return lambda p: (
            p.nw_dst == packet.nw_src
            and p.tp_dst == packet.tp_src
            and p.tcp_flags is not None
            and p.tcp_flags & 0x12 == 0x12
        )
    return lambda p: p.ip_id == packet.ip_id


def _send(bench: Bench, case: GoldenCase, packet: Packet) -> tuple[bool, list[str]]:
    """Send ``packet`` from the case's sender: did it arrive where the case says, and the TRACE
    lines the node and its routers logged for it."""
    receiver = case.sender if case.receiver == "answer" else case.receiver
    arrived = _arrival(case, packet)
    bench.log.records()
    seen = False
    with Wire.open(bench.host(case.sender)) as tx, Wire.open(bench.host(receiver)) as rx:
        rx.drain()
        tx.send(frame_bytes(packet))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not seen:
            for frame in rx.receive(timeout=0.2):
                p = packet_from_frame(frame.data)
                seen = seen or (p is not None and arrived(p))
    devices = {i.name for i in bench.snap.topology.interfaces}
    mine = re.compile(rf"^[^\[]* TTL=\d+ ID={packet.ip_id} ")  # its own header, not a quote
    lines = [line for line in bench.log.lines(devices=devices, settle=0.1) if mine.search(line)]
    return seen, lines


def _ofproto(bench: Bench, case: GoldenCase, packet: Packet) -> Trace:
    """Open vSwitch's own ``ofproto/trace`` of the packet, from the sender's br-int port."""
    node = bench.info.node(bench.state.name)
    ovs = OvsInstance(node.netns, Path(node.ovs_rundir))
    ofport = bench.state.vm_port(case.sender).ofport
    return openflow_trace(ovs.appctl("ofproto/trace", BR_INT, packet.flow_text(in_port=ofport)))


def _of_tables(trace: Trace) -> list[tuple[str, int]]:
    return [(s.bridge, s.table) for s in trace.steps if isinstance(s, OpenFlowStep)]


def test_golden_cases_are_what_the_lab_does(bench: Bench) -> None:
    cases = [c for c in CASES if c.scenario == bench.stem]
    assert cases
    problems: list[str] = []
    for i, case in enumerate(cases):
        ident = (os.getpid() * 7 + i * 101 + int(time.monotonic())) % 60000 + 1
        packet, trace = _walk(bench, case, ident)
        arrived, lines = _send(bench, case, packet)
        if arrived != (case.fate == "delivered"):
            problems.append(f"{case.name}: the lab {'delivered' if arrived else 'dropped'} it")
        if trace.outcome.value != case.fate:
            problems.append(f"{case.name}: the walk says {trace.outcome.value}: {trace.reason}")
        predicted = render_kernel_walk(trace)[0].splitlines()
        if lines != predicted:
            problems.append(f"{case.name}: TRACE lines differ:\n  lab  {lines}\n  walk {predicted}")
        if bench.state.firewall.iptables_save and not lines:
            problems.append(f"{case.name}: the kernel logged no TRACE line for it")
        if not bench.state.firewall.iptables_save:  # the native firewall: OVS alone decides
            real = _of_tables(_ofproto(bench, case, packet))
            if _of_tables(trace) != real:
                problems.append(f"{case.name}: OpenFlow tables differ:\n  ovs  {real}")
    assert not problems, "\n".join(problems)

    if os.environ.get(REGENERATE) == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bench.bundle, GOLDEN / bench.bundle.name)
        for case in cases:
            argv = ["trace", bench.bundle.name, *case.argv(bench.facts)]
            status, out, err = run_cli(argv, cwd=GOLDEN)
            assert status == 0, err
            write_golden(case, argv, out)
    for case in cases:  # the stored files name the fate the lab just showed
        assert read_golden(case).title.endswith(f"(fate: {case.fate})")
