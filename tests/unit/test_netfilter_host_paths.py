"""Host paths and IPv6 details the lab found in the kernel's TRACE output: ICMPv6 errors dump
the packet they quote, socket-owned packets carry ``UID=``/``GID=``, xtables-monitor prints no
link-layer header for packets the node sends itself and prints an IPv6 iprange with its IPv4
printer. Expected lines are the kernel's own (captured in the lab, device names kept)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from nodetrace.engine.netfilter import (
    NetfilterEngine,
    NodeFacts,
    bridge_path,
    input_path,
    output_path,
)
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import ETH_TYPE_IPV6, Family, Packet, TcpFlag
from nodetrace.model.trace import Hook
from nodetrace.model.verdict import Verdict
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.kernel_trace import render_kernel_trace
from nodetrace.render.xtables_trace import render_xtables_trace

RAW_TRACE = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -j TRACE
-A OUTPUT -j TRACE
COMMIT
"""


def test_an_icmpv6_error_dumps_the_packet_it_quotes() -> None:
    a, b = IPv6Address("2001:db8::1"), IPv6Address("2001:db8::2")
    quoted = Packet(dl_type=ETH_TYPE_IPV6, nw_src=b, nw_dst=a, nw_proto=17, nw_tos=16,
                    nw_ttl=128, tp_src=53475, tp_dst=67)  # fmt: skip
    error = Packet(dl_type=ETH_TYPE_IPV6, dl_src="02:00:00:00:00:01", dl_dst="02:00:00:00:00:02",
                   nw_src=a, nw_dst=b, nw_proto=58, nw_ttl=128, icmp_type=1, icmp_code=4,
                   ipv6_label=1004, inner=quoted)  # fmt: skip
    engine = NetfilterEngine(parse_iptables_save(RAW_TRACE, source="r", family=Family.IPV6))
    lines = render_kernel_trace(engine.run(error, bridge_path("nt306e50br", physin="nt306e50a",
                                                              physout="nt306e50b")).trace.steps)  # fmt: skip
    assert lines[0] == (
        "TRACE: raw:PREROUTING:policy:2 IN=nt306e50br OUT= PHYSIN=nt306e50a "
        "MAC=02:00:00:00:00:02:02:00:00:00:00:01:86:dd "
        "SRC=2001:0db8:0000:0000:0000:0000:0000:0001 DST=2001:0db8:0000:0000:0000:0000:0000:0002 "
        "LEN=96 TC=0 HOPLIMIT=128 FLOWLBL=1004 PROTO=ICMPv6 TYPE=1 CODE=4 "
        "[SRC=2001:0db8:0000:0000:0000:0000:0000:0002 DST=2001:0db8:0000:0000:0000:0000:0000:0001 "
        "LEN=48 TC=16 HOPLIMIT=128 FLOWLBL=0 PROTO=UDP SPT=53475 DPT=67 LEN=8 ] "
    )


def _sent_by_the_node() -> Packet:
    return Packet(nw_src=IPv4Address("10.9.0.254"), nw_dst=IPv4Address("10.9.0.1"), nw_proto=1,
                  icmp_type=8, icmp_code=0, icmp_id=59722, icmp_seq=1, ip_id=3000, ip_df=True,
                  dl_src="02:00:00:00:fe:01", dl_dst="02:00:00:00:00:01")  # fmt: skip


def test_a_socket_owned_packet_is_logged_with_its_uid_and_gid() -> None:
    engine = NetfilterEngine(parse_iptables_save(RAW_TRACE, source="r"))
    result = engine.run(_sent_by_the_node(), output_path("ntdea3e8br"))
    assert [s.hook for s in result.trace.steps] == [Hook.OUTPUT, Hook.OUTPUT]
    assert render_kernel_trace(result.trace.steps, owner=(0, 0))[0] == (
        "TRACE: raw:OUTPUT:policy:2 IN= OUT=ntdea3e8br SRC=10.9.0.254 DST=10.9.0.1 LEN=28 "
        "TOS=0x00 PREC=0x00 TTL=64 ID=3000 DF PROTO=ICMP TYPE=8 CODE=0 ID=59722 SEQ=1 "
        "UID=0 GID=0 "
    )
    marked = replace(_sent_by_the_node(), skb_mark=5)
    line = render_kernel_trace(engine.run(marked, output_path("br")).trace.steps, owner=(7, 8))[0]
    assert line.endswith(" SEQ=1 UID=7 GID=8 MARK=0x5 ")


def test_xtables_monitor_prints_no_link_header_for_the_nodes_own_packets() -> None:
    rules = RAW_TRACE.replace("-A PREROUTING -j TRACE\n", "") + (
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
        ":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
    )
    engine = NetfilterEngine(
        parse_iptables_save(rules, source="r"), facts=NodeFacts(backend=Backend.NFT)
    )
    syn = Packet(nw_src=IPv4Address("10.9.0.254"), nw_dst=IPv4Address("10.9.0.1"), nw_proto=6,
                 tp_src=24159, tp_dst=80, tcp_flags=int(TcpFlag.SYN), ip_id=3000, ip_df=True,
                 nw_ttl=1)  # fmt: skip
    lines = render_xtables_trace(engine.run(syn, output_path("nt055421br")).trace.steps, local=True)
    packet_lines = [line for line in lines if line.startswith("PACKET:")]
    assert len(packet_lines) == 3  # raw OUTPUT, mangle OUTPUT, mangle POSTROUTING
    assert all(
        line == "PACKET: 2 00000000 OUT=nt055421br SRC=10.9.0.254 DST=10.9.0.1 LEN=40 TOS=0x0 "
        "TTL=1 ID=3000 DF SPORT=24159 DPORT=80 SYN "
        for line in packet_lines
    )


def test_xtables_monitor_prints_an_ipv6_iprange_as_ipv4() -> None:
    rules = (
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j TRACE\n"
        "-A PREROUTING -m iprange ! --src-range 2001:db8::1-2001:db8::1 -j ACCEPT\nCOMMIT\n"
    )
    engine = NetfilterEngine(
        parse_iptables_save(rules, source="r", family=Family.IPV6),
        facts=NodeFacts(backend=Backend.NFT),
    )
    packet = Packet(dl_type=ETH_TYPE_IPV6, nw_src=IPv6Address("2001:db8::2"),
                    nw_dst=IPv6Address("2001:db8::1"), nw_proto=17, tp_src=1, tp_dst=2)  # fmt: skip
    lines = render_xtables_trace(
        engine.run(packet, bridge_path("br", physin="a", physout="b")).trace.steps
    )
    assert lines[-1].endswith(
        "-A PREROUTING -m iprange ! --src-range 32.1.13.184-32.1.13.184 -j ACCEPT"
    )


def test_a_packet_for_the_bridge_itself_keeps_its_port_at_input() -> None:
    rules = (
        RAW_TRACE
        + "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    )
    engine = NetfilterEngine(parse_iptables_save(rules, source="r"))
    packet = Packet(nw_src=IPv4Address("10.9.0.2"), nw_dst=IPv4Address("10.9.0.254"), nw_proto=17,
                    tp_src=41155, tp_dst=5353, dl_src="02:00:00:00:00:02",
                    dl_dst="02:00:00:00:fe:01")  # fmt: skip
    result = engine.run(packet, input_path("br0", physin="porta"))
    assert result.verdict is Verdict.DROP
    assert render_kernel_trace(result.trace.steps)[-1].startswith(
        "TRACE: filter:INPUT:policy:1 IN=br0 OUT= PHYSIN=porta MAC=02:00:00:00:fe:01:"
    )


def test_xtables_monitor_prints_ipv6_conntrack_addresses_and_snat_with_ipv4_printers() -> None:
    rules = (
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n"
        "-A PREROUTING -j TRACE\n"
        "-A POSTROUTING -m conntrack ! --ctorigsrc 2001:db8:1::7 -j CONNMARK --restore-mark "
        "--nfmask 0xffffffff --ctmask 0xffffffff\n"
        "-A POSTROUTING -p udp -j SNAT --to-source 2001:db8:3::2\nCOMMIT\n"
    ).replace("-A PREROUTING -j TRACE\n", "")
    rules = (
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j TRACE\nCOMMIT\n"
        + rules
    )
    engine = NetfilterEngine(
        parse_iptables_save(rules, source="r", family=Family.IPV6),
        facts=NodeFacts(backend=Backend.NFT),
    )
    packet = Packet(dl_type=ETH_TYPE_IPV6, nw_src=IPv6Address("2001:db8::1"),
                    nw_dst=IPv6Address("2001:db8::2"), nw_proto=17, tp_src=47861, tp_dst=53)  # fmt: skip
    steps = engine.run(packet, bridge_path("br", physin="a", physout="b")).trace.steps
    rule_lines = [line for line in render_xtables_trace(steps) if ":POSTROUTING:rule:" in line]
    assert rule_lines[0].endswith("-m conntrack ! --ctorigsrc 32.1.13.184 -j CONNMARK "
                                  "--restore-mark --nfmask 0xffffffff --ctmask 0xffffffff")  # fmt: skip
    assert rule_lines[1].endswith("-A POSTROUTING -p udp -j SNAT")


def test_xtables_monitor_names_an_ipv6_reject_type_by_its_ipv4_number() -> None:
    for given, printed in (
        ("icmp6-adm-prohibited", "icmp-host-unreachable"),
        ("icmp6-port-unreachable", "(null)"),
    ):
        rules = (
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -j TRACE\nCOMMIT\n"
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            f"-A FORWARD -p udp -j REJECT --reject-with {given}\nCOMMIT\n"
        )
        engine = NetfilterEngine(
            parse_iptables_save(rules, source="r", family=Family.IPV6),
            facts=NodeFacts(backend=Backend.NFT),
        )
        packet = Packet(dl_type=ETH_TYPE_IPV6, nw_src=IPv6Address("2001:db8::1"),
                        nw_dst=IPv6Address("2001:db8::2"), nw_proto=17, tp_src=1, tp_dst=2)  # fmt: skip
        steps = engine.run(packet, bridge_path("br", physin="a", physout="b")).trace.steps
        assert render_xtables_trace(steps)[-1].endswith(
            f":DROP  -6 -t filter -A FORWARD -p udp -j REJECT --reject-with {printed}"
        )


def test_iptables_nft_runs_security_after_nat_at_input() -> None:
    rules = (
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n-A INPUT -m state --state NEW -j ACCEPT\nCOMMIT\n"
        "*security\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A INPUT -m comment --comment x\nCOMMIT\n"
    )
    packet = Packet(nw_src=IPv4Address("10.9.0.1"), nw_dst=IPv4Address("10.9.0.254"), nw_proto=17,
                    tp_src=1000, tp_dst=5353)  # fmt: skip
    order = {}
    for backend in (Backend.LEGACY, Backend.NFT):
        engine = NetfilterEngine(
            parse_iptables_save(rules, source="r"), facts=NodeFacts(backend=backend)
        )
        steps = engine.run(packet, input_path("br0", physin="porta")).trace.steps
        order[backend] = [s.table for s in steps if s.hook is Hook.INPUT]
    assert order[Backend.LEGACY] == ["security", "security", "nat"]
    assert order[Backend.NFT] == ["nat", "security", "security"]


def test_a_reply_to_the_pre_nat_address_does_not_take_over_the_connection() -> None:
    rules = (
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j SNAT --to-source 10.9.3.2\nCOMMIT\n"
    )
    engine = NetfilterEngine(parse_iptables_save(rules, source="r"))
    me, peer = IPv4Address("10.9.0.254"), IPv4Address("10.9.0.1")
    out = Packet(nw_src=me, nw_dst=peer, nw_proto=17, tp_src=5353, tp_dst=4000)
    back = Packet(nw_src=peer, nw_dst=me, nw_proto=17, tp_src=4000, tp_dst=5353)
    first = engine.run(out, output_path("br0"))
    assert first.packet.nw_src == IPv4Address("10.9.3.2")
    # The answer goes to 10.9.0.254, not to the NAT address: a connection of its own.
    assert engine.run(back, input_path("br0", physin="porta")).ct_state == "NEW"
    again = engine.run(out, output_path("br0"))
    assert again.ct_state == "NEW"  # still unreplied, in its ORIGINAL direction
    assert again.packet.nw_src == IPv4Address("10.9.3.2")
