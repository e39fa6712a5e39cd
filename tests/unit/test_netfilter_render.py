"""Kernel-format rendering against TRACE output the kernel really printed: the packets of
tests/lab/test_netfilter_formats.py, captured once (tests/data/iptables/formats-*.trace; see
SOURCES.md), so the formats stay checked on machines without root or namespaces."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from nodetrace.engine.netfilter import NetfilterEngine, NodeFacts, bridge_path
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import ETH_TYPE_IPV6, Family, Packet, TcpFlag
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.kernel_trace import render_kernel_trace
from nodetrace.render.xtables_trace import render_xtables_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j TRACE
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A FORWARD -p tcp -j MARK --set-xmark 0x2a/0xffffffff
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""

A, B = IPv4Address("10.9.0.1"), IPv4Address("10.9.0.2")
OPTIONS = bytes.fromhex(
    "020405b40402080a0001e24000000000010303070101050a"
)  # MSS SACK TS WS NOP SACK
OPTIONS = OPTIONS[:20]


def _tcp(**kw: object) -> Packet:
    base = Packet(
        nw_src=A, nw_dst=B, nw_proto=6, tp_src=40000, tp_dst=22, tcp_seq=1, tcp_window=500
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def v4_packets() -> list[Packet]:
    udp = Packet(nw_src=A, nw_dst=B, nw_proto=17, tp_src=5353, tp_dst=53, ip_len=120)
    inner_tcp = _tcp(tcp_flags=int(TcpFlag.SYN), ip_df=True)
    icmp = Packet(nw_src=B, nw_dst=A, nw_proto=1, icmp_type=3, icmp_code=3)
    packets = [
        _tcp(
            tcp_flags=int(TcpFlag.SYN | TcpFlag.ECE | TcpFlag.CWR), tcp_options=OPTIONS, nw_tos=0xFF
        ),
        _tcp(
            tcp_flags=int(TcpFlag.ACK | TcpFlag.PSH | TcpFlag.URG | TcpFlag.FIN),
            tcp_urgent=7,
            ip_len=200,
            tcp_ack=99,
            nw_tos=0x03,
        ),
        _tcp(tcp_flags=int(TcpFlag.RST), tcp_reserved=5),
        _tcp(tcp_flags=int(TcpFlag.ACK | TcpFlag.AE)),
        udp,
        Packet(
            nw_src=A,
            nw_dst=B,
            nw_proto=1,
            icmp_type=8,
            icmp_code=0,
            icmp_id=9,
            icmp_seq=4,
            ip_len=84,
            ip_df=True,
        ),
        replace(icmp, inner=udp),
        replace(icmp, icmp_code=4, icmp_seq=1400, inner=udp),
        replace(icmp, icmp_type=11, icmp_code=0, inner=inner_tcp),
        replace(icmp, icmp_type=12, icmp_id=0x1400, inner=udp),
        replace(icmp, icmp_type=5, icmp_code=1, icmp_gateway=IPv4Address("10.9.0.254"), inner=udp),
        replace(icmp, icmp_type=4, inner=udp),
        replace(icmp, icmp_type=13),
        Packet(nw_src=A, nw_dst=B, nw_proto=17, tp_src=1, tp_dst=2, ip_mf=True, ip_len=64),
        Packet(nw_src=A, nw_dst=B, nw_proto=17, ip_frag_offset=8, ip_len=64),
        Packet(nw_src=A, nw_dst=B, nw_proto=47, ip_len=40, nw_ttl=3),
        Packet(nw_src=A, nw_dst=B, nw_proto=132, tp_src=9, tp_dst=10),
    ]
    return [replace(p, ip_id=3000 + i) for i, p in enumerate(packets)]


def v6_packets() -> list[Packet]:
    a, b = IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2")
    base = Packet(dl_type=ETH_TYPE_IPV6, nw_src=a, nw_dst=b, nw_ttl=61, nw_tos=0x28)
    packets = [
        replace(base, nw_proto=58, icmp_type=128, icmp_code=0, icmp_id=5, icmp_seq=6),
        replace(
            base,
            nw_proto=6,
            tp_src=1000,
            tp_dst=443,
            tcp_flags=int(TcpFlag.SYN),
            tcp_seq=77,
            tcp_window=1000,
            tcp_options=OPTIONS[:4],
        ),
        replace(base, nw_proto=17, tp_src=546, tp_dst=547, ip_len=140),
    ]
    return [replace(p, ipv6_label=0x1000 + i) for i, p in enumerate(packets)]


@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["v4", "v6"])
def test_rendered_lines_equal_the_captured_ones(backend: Backend, family: Family) -> None:
    name = f"formats-{backend.value}-{'v4' if family is Family.IPV4 else 'v6'}.trace"
    captured = (DATA / name).read_text().splitlines()
    ruleset = parse_iptables_save(RULES, source="rules", family=family)
    engine = NetfilterEngine(ruleset, facts=NodeFacts(backend=backend))
    packets = v4_packets() if family is Family.IPV4 else v6_packets()
    rendered: list[str] = []
    for packet in packets:
        packet = replace(packet, dl_src="fa:16:3e:8c:aa:01", dl_dst="fa:16:3e:91:7b:f2")
        result = engine.run(packet, bridge_path("br0", physin="porta", physout="portb"))
        if backend is Backend.LEGACY:
            rendered += render_kernel_trace(result.trace.steps)
        else:
            rendered += render_xtables_trace(result.trace.steps, trace_id=0)
    assert rendered == captured
