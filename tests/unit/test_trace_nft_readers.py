"""``xtables-monitor --trace`` and ``nft monitor trace`` readers on real lab output, quirks included."""

from __future__ import annotations

from nodetrace.model.packet import Family
from nodetrace.model.trace import StepKind
from nodetrace.parsers.trace_kernel_log import packet_from_dump
from nodetrace.parsers.trace_nft_events import NftEvent, NftPacket, NftReadResult, pad_mac
from nodetrace.parsers.trace_nft_monitor import (
    looks_like_nft_monitor,
    parse_packet_words,
    read_nft_monitor,
)
from nodetrace.parsers.trace_xtables_monitor import (
    looks_like_xtables_monitor,
    parse_packet_fields,
    read_xtables_monitor,
)
from tests.conftest import DATA

TRACELOG = DATA / "tracelog"
XT = (TRACELOG / "lab-nft-xtables-monitor.txt").read_text().splitlines(keepends=True)
NFT = (TRACELOG / "lab-nft-monitor-trace.txt").read_text().splitlines(keepends=True)


def test_xtables_monitor_lines_become_events_and_packets() -> None:
    result = NftReadResult()
    items = list(read_xtables_monitor(XT, result))
    assert result.counts.total == result.counts.parsed == len(XT) == 36
    packets = [i for i in items if isinstance(i, NftPacket)]
    events = [i for i in items if isinstance(i, NftEvent)]
    assert len(packets) == 6 and len(events) == 30
    assert {e.trace_id for e in events} == {"5efd2773", "49ffe6b1", "427d6c11"}
    first = events[0]
    assert (first.family, first.table, first.chain, first.kind) == (
        Family.IPV4,
        "raw",
        "PREROUTING",
        StepKind.RULE,
    )
    assert (first.handle, first.verdict) == (4, "CONTINUE")
    assert first.rule_text == "-A PREROUTING -p icmp -j TRACE"
    jump = events[1]
    assert (jump.verdict, jump.target_chain) == ("JUMP", "neutron-linuxbri-PREROUTING")
    policy = events[3]
    assert (policy.kind, policy.verdict, policy.handle) == (StepKind.POLICY, "ACCEPT", None)


def test_xtables_monitor_quirks_hex_return_and_unpadded_macs() -> None:
    result = NftReadResult()
    events = [i for i in read_xtables_monitor(XT, result) if isinstance(i, NftEvent)]
    ret = next(e for e in events if e.chain == "neutron-linuxbri-itapB")
    assert (ret.handle, ret.verdict) == (0x12, "RETURN")  # printed as 0xfffffffb
    packet = next(i for i in read_xtables_monitor(XT, NftReadResult()) if isinstance(i, NftPacket))
    assert packet.dump.get("MACDST") == "02:15:5f:94:76:0b"  # printed as 2:15:5f:94:76:b
    assert pad_mac("2:15:5f:94:76:b") == "02:15:5f:94:76:0b"


def test_xtables_monitor_id_glued_to_df() -> None:
    dump = parse_packet_fields(
        "IN=brq OUT=brq SRC=10.0.0.1 DST=10.0.0.2 LEN=60 TOS=0x0 TTL=64 ID=38349DF SPORT=40000 DPORT=22 SYN"
    )
    assert dump.get("ID") == "38349" and ("DF", "") in dump.fields
    p = packet_from_dump(dump)
    assert (p.ip_id, p.ip_df, p.tp_src, p.tp_dst) == (38349, True, 40000, 22)


def test_xtables_monitor_old_order_trace_before_packet() -> None:
    lines = [
        " TRACE: 2 0000abcd raw:PREROUTING:rule:0x4:CONTINUE  -4 -t raw -A PREROUTING -j TRACE\n",
        "PACKET: 2 0000abcd IN=br0 SRC=10.0.0.1 DST=10.0.0.2 LEN=84 TOS=0x0 TTL=64 ID=1 \n",
        " TRACE: 2 0000abcd raw:PREROUTING:policy:ACCEPT \n",
    ]
    assert looks_like_xtables_monitor(lines)
    items = list(read_xtables_monitor(lines, NftReadResult()))
    assert [type(i).__name__ for i in items] == ["NftEvent", "NftPacket", "NftEvent"]


def test_xtables_monitor_ipv6_family_and_malformed_line() -> None:
    lines = [
        "PACKET: 10 12345678 IN=br0 SRC=2001:db8::1 DST=2001:db8::2 LEN=104 TC=0 HOPLIMIT=64 \n",
        " TRACE: 10 12345678 filter:FORWARD:policy:DROP \n",
        " TRACE: 10 nothexhere raw:PREROUTING:rule:zz:CONTINUE\n",
        "some unrelated line\n",
    ]
    result = NftReadResult()
    items = list(read_xtables_monitor(lines, result))
    assert [getattr(i, "family", None) for i in items] == [Family.IPV6, Family.IPV6]
    assert result.counts.malformed == 1 and result.malformed[0].line == 3
    assert result.counts.skipped == 1
    assert result.counts.parsed + result.counts.skipped + result.counts.malformed == 4


def test_nft_monitor_lines_become_events_with_nft_rule_text() -> None:
    assert looks_like_nft_monitor(NFT) and not looks_like_nft_monitor(XT)
    result = NftReadResult()
    items = list(read_nft_monitor(NFT, result))
    assert result.counts.parsed == result.counts.total == 36
    events = [i for i in items if isinstance(i, NftEvent)]
    drop = events[-1]
    assert (drop.chain, drop.kind, drop.verdict) == (
        "neutron-linuxbri-otapA",
        StepKind.RULE,
        "DROP",
    )
    assert drop.rule_text == "counter packets 0 bytes 0 drop"
    jump = next(e for e in events if e.verdict == "JUMP")
    assert jump.target_chain == "neutron-linuxbri-PREROUTING"
    policy = next(e for e in events if e.kind is StepKind.POLICY)
    assert policy.verdict == "ACCEPT"


def test_nft_monitor_packet_line_in_kernel_log_keys() -> None:
    first = next(i for i in read_nft_monitor(NFT, NftReadResult()) if isinstance(i, NftPacket))
    assert (first.table, first.chain) == ("raw", "PREROUTING")
    p = packet_from_dump(first.dump)
    assert str(p.nw_src) == "10.0.0.1" and str(p.nw_dst) == "10.0.0.2"
    assert (p.nw_proto, p.icmp_type, p.icmp_code, p.icmp_id, p.icmp_seq) == (1, 8, 0, 6874, 1)
    assert (p.ip_id, p.ip_len, p.nw_ttl) == (12970, 84, 64)
    assert p.dl_dst == "02:15:5f:94:76:0b"


def test_nft_monitor_tcp_and_ipv6_packet_words() -> None:
    dump = parse_packet_words(
        'iif "qbr1" oif "qbr1" ip6 saddr 2001:db8::1 ip6 daddr 2001:db8::2 ip6 hoplimit 63 '
        "ip6 flowlabel 5 ip6 length 80 tcp sport 40000 tcp dport 22 tcp flags == syn tcp window 64240"
    )
    p = packet_from_dump(dump)
    assert (str(p.nw_src), p.nw_ttl, p.ipv6_label, p.tp_src, p.tp_dst, p.tcp_window) == (
        "2001:db8::1",
        63,
        5,
        40000,
        22,
        64240,
    )
    assert p.tcp_flags == 0x002 and p.nw_proto == 6


def test_nft_monitor_counts_every_line() -> None:
    lines = [
        *NFT[:3],
        "trace id zz\n",
        "Nov 10 something else\n",
        "trace id 1234abcd ip filter FORWARD conntrack: ct state new\n",
    ]
    result = NftReadResult()
    items = list(read_nft_monitor(lines, result))
    c = result.counts
    assert c.parsed + c.skipped + c.malformed == c.total == 6
    assert c.malformed == 1 and result.malformed[0].line == 4
    assert len(items) == 3  # the conntrack line is read but is no step
