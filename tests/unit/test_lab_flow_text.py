"""The lab writes each packet it sends as ``ofproto/trace`` flow text: that text must be one OVS
accepts (its packet parser refuses ``tp_src`` on UDP/SCTP and ``icmp_type`` on ICMPv6) and must
read back as the same packet."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from nodetrace.model.packet import ETH_TYPE_IPV6, IPProto, Packet
from nodetrace.parsers.flow_syntax import parse_flow

V4 = {"nw_src": ip_address("10.0.0.1"), "nw_dst": ip_address("10.0.0.2")}
V6 = {"dl_type": ETH_TYPE_IPV6, "nw_src": ip_address("fd00::1"), "nw_dst": ip_address("fd00::2")}


@pytest.mark.parametrize(
    ("addresses", "proto", "l4", "expected"),
    [
        (V4, IPProto.TCP, {"tp_src": 40000, "tp_dst": 22}, "tcp_src=40000,tcp_dst=22"),
        (V6, IPProto.UDP, {"tp_src": 546, "tp_dst": 547}, "udp_src=546,udp_dst=547"),
        (V4, IPProto.SCTP, {"tp_src": 5000, "tp_dst": 3868}, "sctp_src=5000,sctp_dst=3868"),
        (V4, IPProto.ICMP, {"icmp_type": 8, "icmp_code": 0}, "icmp_type=8,icmp_code=0"),
        (V6, IPProto.ICMPV6, {"icmp_type": 128, "icmp_code": 0}, "icmpv6_type=128,icmpv6_code=0"),
    ],
)
def test_flow_text_is_what_ovs_accepts_and_reads_back(
    addresses: dict[str, object], proto: IPProto, l4: dict[str, int], expected: str
) -> None:
    packet = Packet(nw_proto=int(proto), nw_ttl=64, **addresses, **l4)  # type: ignore[arg-type]
    text = packet.flow_text(in_port=3)
    assert expected in text
    back = parse_flow(text).packet  # refused (UsageError) if OVS would refuse it
    assert (back.nw_proto, back.nw_src, back.nw_dst) == (proto, packet.nw_src, packet.nw_dst)
    for name, value in l4.items():
        assert getattr(back, name) == value
