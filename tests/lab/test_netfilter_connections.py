"""Conntrack states from real connections: kernel sockets in two host namespaces talk through
a bridge with a stateful ruleset (TCP handshakes, data, teardown, UDP exchanges, pings, a
refused port). Every frame that enters the bridge is captured in order and replayed through the
engine, whose conntrack must reach the same states: the predicted TRACE lines of the whole
exchange equal the kernel's, and every frame the engine accepts is one the kernel forwarded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.lab.bridge_bed import HostSpec, build_bridge_bed, load_ruleset, save_ruleset
from nodetrace.lab.capture import KernelTraceLog, TraceMonitor
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.lab.send import Sniffer, packet_from_frame, tcp_connect, udp_exchange
from nodetrace.model.netfilter import Backend
from nodetrace.model.verdict import Verdict
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.kernel_trace import render_kernel_trace
from nodetrace.render.xtables_trace import render_xtables_trace
from tests.conftest import unique

pytestmark = pytest.mark.lab

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j TRACE
-A PREROUTING -m physdev --physdev-in {a} -j CT --zone 4097
-A PREROUTING -m physdev --physdev-in {b} -j CT --zone 4097
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:sg - [0:0]
-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -m state --state INVALID -j DROP
-A FORWARD -m physdev --physdev-out {b} --physdev-is-bridged -j sg
-A FORWARD -p icmp -j ACCEPT
-A sg -p tcp -m tcp --dport 5000 --tcp-flags FIN,SYN,RST,ACK SYN -j ACCEPT
-A sg -p udp -m udp --dport 5001 -j ACCEPT
-A sg -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A sg -j RETURN
COMMIT
"""

_TRACE_ID = re.compile(r"^(PACKET: \d+ | TRACE: \d+ )[0-9a-f]{8} ")


@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
def test_real_connections_reach_the_same_conntrack_states(
    lab: Resources, tmp_path: Path, backend: Backend
) -> None:
    hosts = [HostSpec("a", addresses=("10.9.0.1/24",)), HostSpec("b", addresses=("10.9.0.2/24",))]
    bed = build_bridge_bed(lab, prefix=unique("nf"), hosts=hosts)
    a, b = bed.host("a"), bed.host("b")
    load_ruleset(bed, RULES.format(a=a.port, b=b.port), backend=backend)
    saved = save_ruleset(bed, backend=backend)
    monitor = TraceMonitor(bed.netns, tmp_path) if backend is Backend.NFT else None
    with Sniffer(bed.netns) as sniffer, KernelTraceLog(lab) as log:
        if monitor is not None:
            monitor.start()
        assert tcp_connect(a, b, "10.9.0.2", 5000, message=b"x" * 300)
        assert udp_exchange(a, b, "10.9.0.2", 5001)
        assert not tcp_connect(a, b, "10.9.0.2", 5002, timeout=0.3)
        run(["ping", "-c", "2", "-i", "0.2", "-W", "1", "10.9.0.2"], netns=a.netns)
        assert not udp_exchange(b, a, "10.9.0.1", 5003, timeout=0.3)  # new b -> a: policy DROP
        frames = sniffer.frames()
        kernel = log.lines(devices=bed.devices, settle=0.05)
        if monitor is not None:
            kernel = monitor.stop()
    engine = NetfilterEngine(parse_iptables_save(saved, source="saved"))
    port_of_mac = {h.mac: h.port for h in bed.hosts}
    predicted: list[str] = []
    forwarded = 0
    for ifname, frame in frames:
        packet = packet_from_frame(frame.data)
        if packet is None:
            continue  # ARP: not IPv4, never seen by iptables
        result = engine.run(
            packet, bridge_path(bed.bridge, physin=ifname, physout=port_of_mac[packet.dl_dst])
        )
        forwarded += result.verdict is Verdict.ACCEPT
        if backend is Backend.LEGACY:
            predicted += render_kernel_trace(result.trace.steps)
        else:
            predicted += render_xtables_trace(result.trace.steps)
    if backend is Backend.NFT:
        kernel = [_TRACE_ID.sub(r"\g<1>00000000 ", line) for line in kernel]
    assert len(predicted) > 30
    assert predicted == kernel
    states = engine.conntrack.connections()[0].status
    assert "ASSURED" in states
    assert forwarded < len([f for _, f in frames if f.ip_id is not None])
