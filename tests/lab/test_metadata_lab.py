"""Metadata through a legacy router, end to end (examples/scenarios/legacy-router.toml).

The lab runs a metadata proxy in the router's namespace where Neutron's haproxy listens
(0.0.0.0:9697, ``nodetrace.lab.metadata``). A VM's own TCP stack opens a connection to
169.254.169.254:80 and must get an HTTP answer naming its instance; the kernel's TRACE lines for
that connection's SYN must be the rules the walk predicts from the node's snapshot: the REDIRECT
in the router's nat PREROUTING, then local delivery in the router's namespace, on the port the
proxy's socket listens on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address
from pathlib import Path

import pytest

from nodetrace.engine.walk import FromInterface, ToHost, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.metadata import INSTANCE_ID_PATH
from nodetrace.lab.resources import Resources, daemon_owned
from nodetrace.lab.router import router_netns
from nodetrace.lab.run import run
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.model.packet import ETH_TYPE_IPV4, IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import NetfilterStep, Outcome, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.l3_agent import METADATA_PORT, RouterState
from nodetrace.neutron.scenario import load_scenario
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, unique

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/legacy-router.toml"
NODE = "aio1"
METADATA = "169.254.169.254"


@dataclass
class MetadataLab:
    info: LabInfo
    state: NodeState
    router: RouterState
    router_ns: str
    snap: Snapshot
    log: KernelTraceLog
    rundir: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetadataLab]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("md")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="legacy", root=root)
    lab_dir = LabDir(name, root)
    proxies = [e for e in Ledger(lab_dir.ledger_path).entries() if "metadata-proxy" in e.extra]
    try:
        state = generate_node(scenario, NODE)
        router = state.routers[0]
        rns = router_netns(name, router)
        node = info.node(NODE)
        for vm in info.vms:  # neighbour caches and MAC tables, as a running cloud has them
            run(["ping", "-c1", "-W1", str(router.internal[0].interface.ip)], netns=vm.netns)
        run(["conntrack", "-F"], netns=rns, check=False)
        for netns in (node.netns, rns):
            run(
                ["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                netns=netns,
            )
        out = root / "snapshot"
        collect(str(out), Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=(rns,)))
        res = Resources(Ledger(lab_dir.ledger_path))
        with KernelTraceLog(res) as log:
            yield MetadataLab(info, state, router, rns, load(out), log, Path(node.ovs_rundir))
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems
        # `lab down` stopped the proxies it recorded.
        assert proxies, "lab up recorded no metadata proxy in its ledger"
        assert not [e.id for e in proxies if daemon_owned(int(e.id), e.path)]


def _http_get(netns: str, source_port: int) -> str:
    """GET the instance id from inside ``netns``, with the VM's own TCP stack."""
    code = (
        "import socket,sys\n"
        "s=socket.socket();s.settimeout(3)\n"
        f"s.bind(('0.0.0.0',{source_port}))\n"
        f"s.connect(('{METADATA}',80))\n"
        f"s.sendall(b'GET {INSTANCE_ID_PATH} HTTP/1.0\\r\\nHost: {METADATA}\\r\\n\\r\\n')\n"
        "d=b''\n"
        "while True:\n"
        " c=s.recv(4096)\n"
        " if not c: break\n"
        " d+=c\n"
        "sys.stdout.write(d.decode())\n"
    )
    return run(["python3", "-c", code], netns=netns, timeout=10).stdout


def _trace_head(line: str) -> str:
    """A TRACE line up to the packet's own fields: which rule, and the devices."""
    return re.split(r" (?:MAC|SRC)=", line, maxsplit=1)[0]


def _walk(lab: MetadataLab, packet: Packet, tap: str) -> Trace:
    request = WalkRequest(packet, FromInterface(tap), (), None, ToHost(lab.router_ns))
    return walk(lab.snap, request, engines_for(lab.snap), switch=lab.snap.ovs)


@pytest.mark.lab
def test_a_vm_gets_its_instance_id_from_the_routers_proxy(lab: MetadataLab) -> None:
    vm = lab.info.vm("db1")
    port = lab.state.vm_port("db1").port
    vm_ip = port.fixed_ips[0]
    assert isinstance(vm_ip, IPv4Address)
    source_port = 41000 + os.getpid() % 1000
    lab.log.records()
    answer = _http_get(vm.netns, source_port)
    head, _, body = answer.partition("\n\n")  # the text mode read turned CRLF into LF
    assert head.startswith("HTTP/1.0 200"), answer
    assert body == port.device_id
    assert f"X-Neutron-Router-ID: {lab.router.router.id}" in head.splitlines()

    # The proxy saw the VM's own address: REDIRECT changes the destination only.
    log = (lab.rundir / f"metadata-proxy-{lab.router.router.id}.log").read_text()
    assert f'{vm_ip} "GET {INSTANCE_ID_PATH} HTTP/1.0" 200' in log

    devices = {i.name for i in lab.snap.topology.interfaces}
    syn = re.compile(rf" SPT={source_port} DPT=\d+ .* SYN URGP=")  # 80, then 9697
    real = [
        _trace_head(line)
        for line in lab.log.lines(devices=devices, settle=0.2)
        if syn.search(line) and " ACK " not in line
    ]
    qr = next(p for p in lab.router.internal if p.network.id == port.network)
    packet = Packet(
        dl_src=port.mac, dl_dst=qr.interface.mac, dl_type=ETH_TYPE_IPV4, nw_src=vm_ip,
        nw_dst=ip_address(METADATA), nw_proto=IPProto.TCP, nw_ttl=64, tp_src=source_port,
        tp_dst=80, tcp_flags=0x002, tcp_window=64240,
    )  # fmt: skip
    trace = _walk(lab, packet, naming.tap_name(port.id))
    predicted = [_trace_head(line) for line in render_kernel_walk(trace)[0].splitlines()]
    assert real, "the kernel logged no TRACE line for the connection's SYN"
    assert predicted == real

    assert trace.outcome is Outcome.DELIVERED, trace.reason
    assert trace.reason.startswith(f"delivered to the host's TCP port {METADATA_PORT} (socket)")
    redirects = [
        s
        for s in trace.steps
        if isinstance(s, NetfilterStep)
        and s.rule is not None
        and s.rule.text.endswith(f"-j REDIRECT --to-ports {METADATA_PORT}")
    ]
    assert [(s.table, s.chain, s.in_dev) for s in redirects] == [
        ("nat", "neutron-l3-agent-PREROUTING", qr.device)
    ]
    # What the walk delivers to is a socket that really listens there.
    listening = run(["ss", "-Hltn"], netns=lab.router_ns).stdout.split()
    assert f"0.0.0.0:{METADATA_PORT}" in listening


@pytest.mark.lab
def test_the_proxy_port_is_reachable_only_through_the_redirect(lab: MetadataLab) -> None:
    """The metadata driver's filter rules drop what reaches 9697 without the metadata mark."""
    port = lab.state.vm_port("db1").port
    vm_ip = port.fixed_ips[0]
    assert isinstance(vm_ip, IPv4Address)
    qr = next(p for p in lab.router.internal if p.network.id == port.network)
    source_port = 42000 + os.getpid() % 1000
    code = (
        "import socket\n"
        "s=socket.socket();s.settimeout(1)\n"
        f"s.bind(('0.0.0.0',{source_port}))\n"
        "try:\n"
        f" s.connect(('{qr.interface.ip}',{METADATA_PORT}));print('connected')\n"
        "except OSError as e:\n"
        " print(type(e).__name__)\n"
    )
    lab.log.records()
    out = run(["python3", "-c", code], netns=lab.info.vm("db1").netns, timeout=10).stdout
    assert out == "TimeoutError\n"  # dropped, not refused: no answer at all

    devices = {i.name for i in lab.snap.topology.interfaces}
    syn = re.compile(rf" SPT={source_port} DPT={METADATA_PORT} .* SYN URGP=")
    real = [
        _trace_head(line)
        for line in lab.log.lines(devices=devices, settle=0.2)
        if syn.search(line) and " ACK " not in line
    ]
    packet = Packet(
        dl_src=port.mac, dl_dst=qr.interface.mac, dl_type=ETH_TYPE_IPV4, nw_src=vm_ip,
        nw_dst=qr.interface.ip, nw_proto=IPProto.TCP, nw_ttl=64, tp_src=source_port,
        tp_dst=METADATA_PORT, tcp_flags=0x002, tcp_window=64240,
    )  # fmt: skip
    trace = _walk(lab, packet, naming.tap_name(port.id))
    assert trace.outcome is Outcome.DROPPED, trace.reason
    # The SYN is retransmitted while the client waits: compare the first attempt.
    predicted = [_trace_head(line) for line in render_kernel_walk(trace)[0].splitlines()]
    assert real[: len(predicted)] == predicted
    assert trace.verdict_step is not None
    drop = trace.steps[trace.verdict_step]
    assert isinstance(drop, NetfilterStep) and drop.rule is not None
    assert drop.rule.text == (
        f"-A neutron-l3-agent-INPUT -p tcp -m tcp --dport {METADATA_PORT} -j DROP"
    )
