"""The golden traces, checked against reality (and rewritten on request).

For each scenario of ``tests/golden/cases.py`` this builds the lab, fills neighbour caches and
MAC tables as a running cloud has them, puts ``-j TRACE`` first in raw PREROUTING of the node and
its router namespaces, and collects the node's snapshot bundle as ``nodetrace collect`` does.
Then each case's packet (the ``nodetrace trace`` command's own packet, completed from the
snapshot, with an IP ID that identifies it) is sent for real: it must arrive where the case says
exactly when the case says "delivered", the walk of that packet must reach the same fate, and
its netfilter steps must be, line for line, the TRACE lines the kernel logged. A packet that
crosses nodes (DVR) is one case per node: the second node's case traces the frame the underlay
carried, so the packet is sent once from the VM, the frame that crossed must be the case's, and
each node's TRACE lines are told apart by the devices they name.

With ``NODETRACE_REGENERATE_GOLDEN=1`` the bundles and each case's ``nodetrace trace`` output
(the text view, from the stored bundle) are written to ``tests/data/golden/``, only after every
case of the scenario agreed with the lab.
"""

from __future__ import annotations

import contextlib
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
from nodetrace.lab.router import OUTSIDE_IFNAME, outside_netns
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
from tests.lab.router_bed import Host, TaggedListener

pytestmark = pytest.mark.lab

VXLAN_HEADERS = 14 + 20 + 8 + 8
"""Outer Ethernet, IPv4, UDP and VXLAN headers before the inner frame."""


@dataclass(frozen=True)
class _Host:
    netns: str
    ifname: str = "eth0"


@dataclass
class Bench:
    """One built scenario: its lab, and for each node the cases trace, its generated state and
    its collected bundle."""

    name: str
    """The lab's name."""
    stem: str
    """The scenario file's name, as the cases name it."""
    info: LabInfo
    scenario: Scenario
    states: dict[str, NodeState]
    bundles: dict[str, Path]
    snaps: dict[str, Snapshot]
    log: KernelTraceLog
    facts: dict[str, str]

    def host(self, who: str, node: str) -> _Host:
        """``who`` of a case traced on ``node``: a VM, or an outside namespace."""
        if who.startswith("outside"):
            _, _, other = who.partition(":")
            return _Host(outside_netns(self.name, other or node), OUTSIDE_IFNAME)
        return _Host(self.info.vm(who).netns)

    def node_of(self, who: str, node: str) -> str:
        if who.startswith("outside"):
            return who.partition(":")[2] or node
        return self.info.vm(who).node

    def devices(self, node: str) -> set[str]:
        return {i.name for i in self.snaps[node].topology.interfaces}


def _mac(netns: str, ifname: str) -> str:
    with netlink(netns) as nl:
        return str(nl.get_links(nl.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS"))


def _facts(lab: str, scenario: Scenario, states: dict[str, NodeState]) -> dict[str, str]:
    """What the cases' placeholders stand for in this lab (``NAME:NODE`` for what differs
    from node to node)."""
    facts: dict[str, str] = {}
    for port in scenario.ports:
        facts[f"tap:{port.name}"] = naming.tap_name(port.id)
        facts[f"mac:{port.name}"] = port.mac
        facts[f"ip:{port.name}"] = str(port.fixed_ips[0])
        facts[f"port:{port.name}"] = port.id
    for node, state in states.items():
        facts[f"underlay:{node}"] = str(state.node.underlay_ip)
        if state.dvr_mac is not None:
            facts[f"dvr_mac:{node}"] = state.dvr_mac
        for fip_ns in state.fip_namespaces:
            facts[f"fg:{node}"] = fip_ns.gateway.mac
            facts[f"outside_mac:{node}"] = _mac(outside_netns(lab, node), OUTSIDE_IFNAME)
        for router in (*state.routers, *state.snat_routers):
            for qr in router.internal:
                key = "sg" if router in state.snat_routers else "qr"
                for port in scenario.ports:
                    if port.network == qr.network.id:
                        facts[f"{key}:{port.name}"] = qr.interface.mac
            if router.gateway is not None and router not in state.snat_routers:
                facts["qg"] = router.gateway.interface.mac
                facts["outside_mac"] = _mac(outside_netns(lab, node), OUTSIDE_IFNAME)
            for fip in router.router.floating_ips:
                facts[f"fip:{scenario.port(fip.port).name}"] = str(fip.address)
    return facts


def _warm_up(info: LabInfo, states: dict[str, NodeState], lab: str) -> dict[str, tuple[str, ...]]:
    """Neighbour caches and MAC tables as a running cloud has them; each node's own
    namespaces (routers, fip, snat; then their connections forgotten, so each case opens a
    new one)."""
    own = {n: info.node(n).namespaces for n in states}
    if any(own.values()):
        for vm in info.vms:
            run(["ping", "-c1", "-W1", "8.8.8.8"], netns=vm.netns, check=False)
        for node, state in states.items():
            gateways = [r.gateway for r in (*state.routers, *state.snat_routers)]
            for gw in [g for g in gateways if g is not None]:
                run(["ping", "-c1", "-W1", str(gw.interface.ip)],
                    netns=outside_netns(lab, node), check=False)  # fmt: skip
            for router in state.routers if state.fip_namespaces else ():
                for fip in router.router.floating_ips:
                    run(["ping", "-c1", "-W1", str(fip.address)],
                        netns=outside_netns(lab, node), check=False)  # fmt: skip
        for vm in info.vms:  # routed across nodes: the peer's router port and MAC learned
            peers = [v for v in info.vms if v.node != vm.node]
            if peers and any(state.dvr_mac for state in states.values()):
                run(["ping", "-c1", "-W1", peers[0].ips[0].split("/")[0]], netns=vm.netns,
                    check=False)  # fmt: skip
    else:
        for node in states:
            vms = [v for v in info.vms if v.node == node]
            for vm in vms:  # ARP is let through by any firewall: every MAC gets learned
                peer = next(v for v in vms if v is not vm)
                run(["ping", "-c1", "-W1", peer.ips[0].split("/")[0]], netns=vm.netns,
                    check=False)  # fmt: skip
    for netns in (ns for names in own.values() for ns in names):
        run(["conntrack", "-F"], netns=netns, check=False)
    return own


@pytest.fixture(params=sorted({c.scenario for c in CASES}))
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    path = SCENARIOS / f"{request.param}.toml"
    scenario = load_scenario(path)
    nodes = sorted({c.node for c in CASES if c.scenario == request.param})
    name = unique("gd")
    root = tmp_path / "labs"
    info = lab_up(scenario, path.read_text(), name=name, backend="legacy", root=root)
    try:
        every = {n.name: generate_node(scenario, n.name) for n in info.nodes}
        own = _warm_up(info, every, name)
        bundles, snaps = {}, {}
        for node in every:
            node_info = info.node(node)
            for netns in (node_info.netns, *own[node]):
                run(
                    ["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                    netns=netns,
                )
        for node in nodes:
            node_info = info.node(node)
            bundles[node] = tmp_path / f"{request.param}-{node}.snapshot.tar.gz"
            options = Options(netns=node_info.netns, ovs_rundir=node_info.ovs_rundir,
                              namespaces=own[node])  # fmt: skip
            collect(str(bundles[node]), options)
            snaps[node] = load(bundles[node])
        facts = _facts(name, scenario, every)
        states = {n: every[n] for n in nodes}
        res = Resources(Ledger(LabDir(name, root).ledger_path))
        with KernelTraceLog(res) as log:
            yield Bench(name, request.param, info, scenario, states, bundles, snaps, log, facts)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _walk(bench: Bench, case: GoldenCase, ident: int) -> tuple[Packet, Trace]:
    """The packet ``nodetrace trace`` would walk for ``case`` (same parser, same completion),
    identified by ``ident`` as IP ID (and ICMP id), and its walk."""
    snap, bundle = bench.snaps[case.node], bench.bundles[case.node]
    args = build_parser("trace").parse_args(["trace", str(bundle), *case.argv(bench.facts)])
    request, _ = api.trace_request(
        snap, args.packet, from_device=args.from_iface, netns=args.netns,
        from_port=args.from_port, from_host=args.from_host, to_port=args.to_port,
        ct_state=args.ct_state,
    )  # fmt: skip
    extra = {"icmp_id": ident, "icmp_seq": 1} if request.packet.nw_proto == IPProto.ICMP else {}
    packet = dataclasses.replace(request.packet, ip_id=ident, **extra)  # type: ignore[arg-type]
    walked = dataclasses.replace(request, packet=packet)
    return packet, walk(snap, walked, engines_for(snap), switch=snap.ovs)


def _arrival(case: GoldenCase, packet: Packet) -> Callable[[Packet], bool]:
    if case.receiver == "answer":  # the destination's SYN-ACK: a socket accepted it
        return lambda p: (
            p.nw_dst == packet.nw_src
            and p.tp_dst == packet.tp_src
            and p.tcp_flags is not None
            and p.tcp_flags & 0x12 == 0x12
        )
    return lambda p: p.ip_id == packet.ip_id


@dataclass(frozen=True)
class _Sent:
    arrived: Packet | None
    """What reached the case's receiver (``None``: nothing)."""
    lines: list[str]
    """The TRACE lines the case's node logged for it."""
    crossed: list[Packet]
    """With ``crossed_from``: the frames carrying it on that node's underlay cable."""


def _underlay(bench: Bench, node: str) -> Host:
    """The node's cable into the underlay switch: what it sends arrives there."""
    index = [n.name for n in bench.info.nodes].index(node)
    return Host(bench.info.underlay_netns, f"u{index}")


def _inner(data: bytes, vlan: int | None, ip_id: int, to: str) -> Packet | None:
    """The probe in an underlay frame: VXLAN's inner frame (to the tunnel endpoint ``to``;
    br-tun floods unknown unicast to every other node too), or the tagged frame itself."""
    if vlan is None:
        outer = packet_from_frame(data)
        if outer is None or outer.tp_dst != 4789 or len(data) <= VXLAN_HEADERS:
            return None
        if str(outer.nw_dst) != to:
            return None
        data = data[VXLAN_HEADERS:]
    p = packet_from_frame(data)
    if p is None or p.ip_id != ip_id:
        return None
    return p if vlan is None else dataclasses.replace(p, dl_vlan=vlan)


def _send(bench: Bench, case: GoldenCase, packet: Packet, sent: Packet) -> _Sent:
    """Send ``sent`` from the case's sender (``packet`` itself, or with ``crossed_from`` what
    the sender's VM sends for it): what arrived where the case says, the TRACE lines of the
    case's node (a line is another node's when it names a device that node alone has, or
    names only devices the sender's node has too), and what crossed the underlay."""
    receiver = case.sender if case.receiver == "answer" else case.receiver
    arrived = _arrival(case, packet)
    bench.log.records()
    seen: Packet | None = None
    crossed: list[Packet] = []
    with contextlib.ExitStack() as stack:
        tx = stack.enter_context(Wire.open(bench.host(case.sender, case.node)))
        rx = stack.enter_context(Wire.open(bench.host(receiver, case.node)))
        under = None
        if case.crossed_from:
            under = stack.enter_context(TaggedListener(_underlay(bench, case.crossed_from)))
            under.drain()
        rx.drain()
        tx.send(frame_bytes(sent))
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and seen is None:
            for frame in rx.receive(timeout=0.2):
                p = packet_from_frame(frame.data)
                if p is not None and arrived(p) and seen is None:
                    seen = p
        if under is not None:
            to = str(bench.info.node(case.node).underlay_ip)
            found = (_inner(d, v, packet.ip_id or 0, to) for d, v in under.receive(timeout=0.3))
            crossed = [p for p in found if p is not None]
    everywhere = {d for n in bench.snaps for d in bench.devices(n)}
    mine = re.compile(rf"^[^\[]* TTL=\d+ ID={packet.ip_id} ")  # its own header, not a quote
    first = bench.node_of(case.sender, case.node)
    here = bench.devices(case.node)
    there = bench.devices(first) if first in bench.snaps else set()
    lines = []
    for line in bench.log.lines(devices=everywhere, settle=0.1):
        devs = set(re.findall(r"\b(?:IN|OUT|PHYSIN|PHYSOUT)=(\S+)", line))
        if not mine.search(line) or not devs <= here:
            continue
        if first != case.node and devs <= there:
            continue
        lines.append(line)
    return _Sent(seen, lines, crossed)


def _ofproto(bench: Bench, case: GoldenCase, packet: Packet) -> Trace:
    """Open vSwitch's own ``ofproto/trace`` of the packet, from the sender's br-int port."""
    node = bench.info.node(case.node)
    ovs = OvsInstance(node.netns, Path(node.ovs_rundir))
    ofport = bench.states[case.node].vm_port(case.sender).ofport
    return openflow_trace(ovs.appctl("ofproto/trace", BR_INT, packet.flow_text(in_port=ofport)))


def _of_tables(trace: Trace) -> list[tuple[str, int]]:
    return [(s.bridge, s.table) for s in trace.steps if isinstance(s, OpenFlowStep)]


def _sender_packet(bench: Bench, case: GoldenCase, ident: int) -> Packet:
    """What the sender's VM sends for a case walked on the node the packet crossed to: the
    case of the same scenario traced on ``crossed_from`` from that sender."""
    [origin] = [
        c
        for c in CASES
        if c.scenario == case.scenario
        and c.node == case.crossed_from
        and c.sender == case.sender
        and bench.host(c.receiver, c.node) == bench.host(case.receiver, case.node)
    ]
    return _walk(bench, origin, ident)[0]


def _same_frame(a: Packet, b: Packet) -> bool:
    keys = ("dl_src", "dl_dst", "dl_vlan", "nw_src", "nw_dst", "nw_ttl", "nw_proto", "icmp_type")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _renumbered(predicted: list[str], arrived: Packet | None, packet: Packet) -> list[str]:
    """``--random-fully`` SNAT gives an echo a new id as it gives TCP/UDP a new port: the
    lines logged after the SNAT (from the new address) carry the id the receiver got."""
    if arrived is None or arrived.icmp_id == packet.icmp_id or arrived.nw_src == packet.nw_src:
        return predicted
    return [
        re.sub(r" ID=\d+ SEQ=", f" ID={arrived.icmp_id} SEQ=", line)
        if f"SRC={arrived.nw_src} " in line
        else line
        for line in predicted
    ]


def test_golden_cases_are_what_the_lab_does(bench: Bench) -> None:
    cases = [c for c in CASES if c.scenario == bench.stem]
    assert cases
    problems: list[str] = []
    for i, case in enumerate(cases):
        ident = (os.getpid() * 7 + i * 101 + int(time.monotonic())) % 60000 + 1
        packet, trace = _walk(bench, case, ident)
        sent = _sender_packet(bench, case, ident) if case.crossed_from else packet
        result = _send(bench, case, packet, sent)
        arrived, lines = result.arrived is not None, result.lines
        if arrived != (case.fate == "delivered"):
            problems.append(f"{case.name}: the lab {'delivered' if arrived else 'dropped'} it")
        if case.crossed_from and [_same_frame(p, packet) for p in result.crossed] != [True]:
            problems.append(f"{case.name}: the underlay carried {result.crossed}, not {packet}")
        if trace.outcome.value != case.fate:
            problems.append(f"{case.name}: the walk says {trace.outcome.value}: {trace.reason}")
        predicted = render_kernel_walk(trace)[0].splitlines()
        predicted = _renumbered(predicted, result.arrived, packet)
        if lines != predicted:
            problems.append(f"{case.name}: TRACE lines differ:\n  lab  {lines}\n  walk {predicted}")
        state = bench.states[case.node]
        if state.firewall.iptables_save and not lines:
            problems.append(f"{case.name}: the kernel logged no TRACE line for it")
        if not state.firewall.iptables_save and not case.crossed_from:  # native firewall
            real = _of_tables(_ofproto(bench, case, packet))
            if _of_tables(trace) != real:
                problems.append(f"{case.name}: OpenFlow tables differ:\n  ovs  {real}")
    assert not problems, "\n".join(problems)

    if os.environ.get(REGENERATE) == "1":
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for bundle in bench.bundles.values():
            shutil.copyfile(bundle, GOLDEN / bundle.name)
        for case in cases:
            argv = ["trace", bench.bundles[case.node].name, *case.argv(bench.facts)]
            status, out, err = run_cli(argv, cwd=GOLDEN)
            assert status == 0, err
            write_golden(case, argv, out)
    for case in cases:  # the stored files name the fate the lab just showed
        assert read_golden(case).title.endswith(f"(fate: {case.fate})")
