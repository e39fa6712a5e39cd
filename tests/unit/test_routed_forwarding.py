"""A routed packet's TTL as netfilter sees it: ``ip_forward`` lowers it before the FORWARD hook
(the kernel's TRACE lines of a router's namespace show it already lowered in FORWARD and
POSTROUTING, tests/lab/test_router_lab.py), while a bridged packet keeps it."""

from __future__ import annotations

from ipaddress import IPv4Address

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.model.netfilter import HookDevices
from nodetrace.model.packet import ETH_TYPE_IPV4, IPProto, Packet
from nodetrace.model.trace import Hook
from nodetrace.model.verdict import Verdict
from nodetrace.parsers.iptables_save import parse_iptables_save

RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m ttl --ttl-eq 63 -j DROP
COMMIT
"""

PACKET = Packet(
    dl_src="fa:16:3e:00:00:01", dl_dst="fa:16:3e:00:00:02", dl_type=ETH_TYPE_IPV4,
    nw_src=IPv4Address("10.0.0.11"), nw_dst=IPv4Address("8.8.8.8"), nw_proto=IPProto.ICMP,
    nw_ttl=64, icmp_type=8, icmp_code=0,
)  # fmt: skip

ROUTED = (
    (Hook.PREROUTING, HookDevices(in_dev="qr-1")),
    (Hook.FORWARD, HookDevices(in_dev="qr-1", out_dev="qg-1")),
    (Hook.POSTROUTING, HookDevices(in_dev="qr-1", out_dev="qg-1")),
)


def _engine() -> NetfilterEngine:
    return NetfilterEngine(parse_iptables_save(RULES, source="rules"))


def test_a_routed_packet_reaches_forward_with_its_ttl_lowered() -> None:
    result = _engine().run(PACKET, ROUTED, routed=True)
    assert result.verdict is Verdict.DROP
    assert result.packet.nw_ttl == 63


def test_a_bridged_packet_keeps_its_ttl() -> None:
    path = bridge_path("qbr1", physin="tap1", physout="qvb1")
    result = _engine().run(PACKET, path)
    assert result.verdict is Verdict.ACCEPT
    assert result.packet.nw_ttl == 64
