"""Grouping TRACE records into packets: interleaving, retransmissions, second bridge passes,
routed and DNATed packets, time gaps, and nf_tables trace ids."""

from __future__ import annotations

import random

from nodetrace.parsers.trace_kernel_log import KernelLogReader
from nodetrace.parsers.trace_nft_events import NftReadResult
from nodetrace.parsers.trace_xtables_monitor import read_xtables_monitor
from nodetrace.tracelog.group_legacy import LegacyGrouper, LegacyPass
from nodetrace.tracelog.group_nft import NftGrouper
from tests.conftest import DATA

TRACELOG = DATA / "tracelog"
DMESG = (TRACELOG / "lab-legacy-dmesg.txt").read_text().splitlines(keepends=True)
# The three real packets of the lab capture: lines 1-13, 14-22, 23-34.
PACKETS = [DMESG[0:13], DMESG[13:22], DMESG[22:34]]


def group(lines: list[str], **kw: float) -> list[LegacyPass]:
    reader = KernelLogReader()
    return list(LegacyGrouper(**kw).passes(reader.records(lines)))  # type: ignore[arg-type]


def prefixes(p: LegacyPass) -> list[str]:
    return [r.prefix for r in p.records]


def test_the_lab_capture_groups_into_its_three_packets() -> None:
    passes = group(DMESG)
    assert [len(p.records) for p in passes] == [13, 9, 12]
    assert [prefixes(p) for p in passes] == [
        [line.split()[3] for line in packet] for packet in PACKETS
    ]


def test_interleaved_packets_separate_whatever_the_interleaving() -> None:
    rng = random.Random(5)
    for _ in range(20):
        queues = [list(p) for p in PACKETS]
        mixed: list[str] = []
        while any(queues):
            q = rng.choice([q for q in queues if q])
            mixed.append(q.pop(0))
        passes = group(mixed)
        assert sorted(prefixes(p) for p in passes) == sorted(
            [line.split()[3] for line in packet] for packet in PACKETS
        )


def test_a_packet_seen_again_through_the_same_ports_is_its_own_pass() -> None:
    passes = group(PACKETS[0] + PACKETS[0])
    assert [len(p.records) for p in passes] == [13, 13]
    assert [p.occurrence for p in passes] == [1, 2]
    assert passes[1].same_ports is True


def test_a_second_bridge_pass_is_its_own_pass_through_other_ports() -> None:
    # the same packet traced again on a second bridge after a veth (VM to VM on one host)
    second = [
        line.replace("IN=brq", "IN=qbr2").replace("OUT=brq", "OUT=qbr2")
        .replace("PHYSIN=tapA", "PHYSIN=qvb2").replace("PHYSOUT=tapB", "PHYSOUT=tap2")
        for line in PACKETS[0]
    ]  # fmt: skip
    passes = group(PACKETS[0] + second)
    assert len(passes) == 2
    assert passes[1].occurrence == 2 and passes[1].same_ports is False


def test_a_broadcast_copy_delivered_to_input_after_forward_is_its_own_pass() -> None:
    forward = PACKETS[0][:6]
    dump = "MAC=" + DMESG[0].split("MAC=", 1)[1]
    to_input = ["[  181.590600] TRACE: filter:INPUT:policy:1 IN=brq OUT= PHYSIN=tapA " + dump]
    passes = group(forward + to_input)
    assert [len(p.records) for p in passes] == [6, 1]


def test_routed_packet_losing_a_ttl_stays_one_packet() -> None:
    lines = (
        (TRACELOG / "corpus-libvirt-virbr0-forward-snat.txt").read_text().splitlines(keepends=True)
    )
    (p,) = group(lines)
    assert len(p.records) == 7


def test_dnat_rewriting_the_destination_stays_one_packet() -> None:
    dump = "SRC=10.0.0.1 DST={dst} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=4242 DF PROTO=TCP SPT=40000 DPT={dport} SEQ=1 ACK=0 WINDOW=64240 RES=0x00 SYN URGP=0 "
    before = dump.format(dst="203.0.113.10", dport=80)
    after = dump.format(dst="10.0.0.11", dport=8080)
    lines = [
        f"[ 10.000001] TRACE: raw:PREROUTING:policy:1 IN=eth0 OUT= MAC=02:00:00:00:00:01:02:00:00:00:00:02:08:00 {before}\n",
        f"[ 10.000002] TRACE: nat:PREROUTING:rule:1 IN=eth0 OUT= MAC=02:00:00:00:00:01:02:00:00:00:00:02:08:00 {before}\n",
        f"[ 10.000003] TRACE: filter:FORWARD:policy:1 IN=eth0 OUT=eth1 MAC=02:00:00:00:00:01:02:00:00:00:00:02:08:00 {after}\n",
        f"[ 10.000004] TRACE: nat:POSTROUTING:policy:1 IN= OUT=eth1 {after}\n",
    ]
    (p,) = group(lines)
    assert len(p.records) == 4


def test_same_headers_after_a_long_silence_are_another_packet() -> None:
    late = [
        line.replace("[  181.59", "[  185.59") for line in PACKETS[0][4:]
    ]  # FORWARD lines 4 s later, as if PREROUTING lines had been lost
    passes = group(PACKETS[0][:4] + late)
    assert [len(p.records) for p in passes] == [4, 9]
    (joined,) = group(PACKETS[0][:4] + late, gap=0)
    assert len(joined.records) == 13


def test_passes_come_out_in_order_of_their_first_line() -> None:
    mixed = [PACKETS[1][0], PACKETS[0][0], *PACKETS[1][1:], *PACKETS[0][1:]]
    passes = group(mixed)
    assert [p.records[0].first_line for p in passes] == [1, 2]


def test_open_passes_are_bounded_by_the_window() -> None:
    lines: list[str] = []
    for i in range(3000):
        lines.append(PACKETS[0][0].replace("ID=6699", f"ID={i + 1}"))
    grouper = LegacyGrouper(window=500)
    reader = KernelLogReader()
    count = 0
    most_open = 0
    for _ in grouper.passes(reader.records(lines)):
        count += 1
        most_open = max(most_open, len(grouper._open))
    assert count == 3000
    assert most_open <= 500 + 1024


def test_records_without_a_dump_group_by_order_or_by_a_leading_packet_id() -> None:
    firewalld = (
        (TRACELOG / "corpus-nftrace-firewalld-dns-reply.txt").read_text().splitlines(keepends=True)
    )
    assert [len(p.records) for p in group(firewalld)] == [39]
    ipv6 = (TRACELOG / "corpus-nftrace-ipv6-icmp-output.txt").read_text().splitlines(keepends=True)
    passes = group(ipv6)
    assert [p.key for p in passes] == ["id:97f031f9d7f1", "id:36c479892f1c"]


def test_nft_trace_ids_group_packets_across_hooks() -> None:
    lines = (TRACELOG / "lab-nft-xtables-monitor.txt").read_text().splitlines(keepends=True)
    passes = list(NftGrouper().passes(read_xtables_monitor(lines, NftReadResult())))
    assert [(p.trace_id, len(p.events), len(p.packets)) for p in passes] == [
        ("5efd2773", 12, 2),
        ("49ffe6b1", 7, 2),
        ("427d6c11", 11, 2),
    ]
    first = passes[0]
    assert first.hooks[0] == "PREROUTING" and first.hooks[-1] == "FORWARD"
    # each event knows the packet line of its base chain (PREROUTING: no OUT, FORWARD: OUT=brq)
    assert first.packets[first.packet_of[0]].dump.get("OUT") is None
    assert first.packets[first.packet_of[-1]].dump.get("OUT") == "brq"


def test_an_nft_trace_id_coming_back_for_another_packet_is_a_new_pass() -> None:
    lines = (TRACELOG / "lab-nft-xtables-monitor.txt").read_text().splitlines(keepends=True)
    again = lines[:14] + lines[:14]
    passes = list(NftGrouper().passes(read_xtables_monitor(again, NftReadResult())))
    assert [(p.trace_id, len(p.events), p.occurrence) for p in passes] == [
        ("5efd2773", 12, 1),
        ("5efd2773", 12, 2),
    ]


# A routed lab node (tests/lab/log_nat_scenario.py): a masqueraded client, a port-forward to
# another local address. TRACE is only in raw PREROUTING and raw OUTPUT, so each packet logs
# exactly one raw policy line: that count is the number of packets, told by the kernel.
NAT_DMESG = (TRACELOG / "lab-nat.dmesg").read_text().splitlines(keepends=True)
NAT_XTABLES = (TRACELOG / "lab-nat-nft.xtables-monitor").read_text().splitlines(keepends=True)


def kernel_packet_count(lines: list[str], marker: str) -> int:
    return sum(1 for line in lines if marker in line)


def dump_field(record_ident: str, key: str) -> str:
    return next(w.split("=", 1)[1] for w in record_ident.split() if w.startswith(key + "="))


def test_nat_capture_groups_into_as_many_packets_as_the_kernel_traced() -> None:
    passes = group(NAT_DMESG)
    truth = kernel_packet_count(NAT_DMESG, "raw:PREROUTING:policy:") + kernel_packet_count(
        NAT_DMESG, "raw:OUTPUT:policy:"
    )
    assert truth == 28
    assert len(passes) == truth
    # every pass starts at its raw policy line, and every line is in exactly one pass
    assert all(p.records[0].prefix.startswith("raw:") for p in passes)
    assert sum(len(p.records) for p in passes) == len(NAT_DMESG)
    assert all(p.occurrence == 1 for p in passes)


def test_replies_to_a_masqueraded_client_keep_their_forward_lines() -> None:
    replies = [
        p
        for p in group(NAT_DMESG)
        if p.records[0].ident is not None
        and dump_field(p.records[0].ident, "DST") == "192.168.0.1"
        and dump_field(p.records[0].ident, "SRC") == "192.168.0.2"
        and "DPT=8080" not in p.records[0].ident
    ]
    # 3 echo replies and 5 TCP segments from the server
    assert len(replies) == 8
    for p in replies:
        assert [r.prefix for r in p.records] == ["raw:PREROUTING:policy:3", p.records[1].prefix]
        assert p.records[1].prefix.startswith("filter:FORWARD:rule:")
        assert dump_field(p.records[1].ident or "", "DST") == "10.0.0.2"
        assert dump_field(p.records[1].ident or "", "ID") == dump_field(
            p.records[0].ident or "", "ID"
        )


def test_port_forwarded_packets_keep_their_input_lines_with_and_without_the_nat_line() -> None:
    forwarded = [
        p
        for p in group(NAT_DMESG)
        if p.records[0].ident is not None and "DPT=8080" in p.records[0].ident
    ]
    assert len(forwarded) == 6
    first, *later = forwarded
    assert [r.prefix for r in first.records] == [
        "raw:PREROUTING:policy:3",
        "nat:PREROUTING:rule:1",
        "filter:INPUT:policy:1",
        "nat:INPUT:policy:1",
    ]
    for p in later:
        assert [r.prefix for r in p.records] == ["raw:PREROUTING:policy:3", "filter:INPUT:policy:1"]
        assert "DST=10.0.0.1" in (p.records[1].ident or "")
        assert "DPT=80 " in (p.records[1].ident or "")


def test_a_changed_destination_does_not_join_a_packet_that_differs_elsewhere() -> None:
    # The reply's FORWARD line with another TCP sequence number is another packet: only what
    # NAT rewrites (destination address and port) may differ.
    pre = next(line for line in NAT_DMESG if "DST=192.168.0.1" in line and "SEQ=860913579 " in line)
    fwd = next(
        line
        for line in NAT_DMESG
        if "filter:FORWARD" in line and "DST=10.0.0.2" in line and "SEQ=860913579 " in line
    )
    assert len(group([pre, fwd])) == 1
    assert len(group([pre, fwd.replace("SEQ=860913579 ", "SEQ=860913580 ")])) == 2
    assert len(group([pre, fwd.replace("SRC=192.168.0.2 ", "SRC=192.168.0.3 ")])) == 2
    # nor a line that comes before conntrack's NAT point (raw or mangle in PREROUTING)
    assert len(group([pre, pre.replace("DST=192.168.0.1", "DST=10.0.0.2")])) == 2


def test_nat_capture_from_xtables_monitor_groups_by_trace_id_without_false_repeats() -> None:
    passes = list(NftGrouper().passes(read_xtables_monitor(NAT_XTABLES, NftReadResult())))
    truth = kernel_packet_count(NAT_XTABLES, "raw:PREROUTING:policy:") + kernel_packet_count(
        NAT_XTABLES, "raw:OUTPUT:policy:"
    )
    assert len(passes) == truth == 28
    # trace ids come back for other packets (two here): that is not a packet seen again
    ids = [p.trace_id for p in passes]
    assert len(set(ids)) < len(ids)
    assert all(p.occurrence == 1 for p in passes)


def test_of_two_candidates_the_one_with_a_known_nat_mapping_is_taken() -> None:
    # Two UDP replies from one DNS server port with IP ID 0 (unconnected sockets send DF
    # packets with ID 0), to two masqueraded clients, on two CPUs: equal but for the
    # destination. A's mapping is known from its first reply, so A's FORWARD line joins A's
    # pass although B's started later.
    def line(t: int, prefix: str, devs: str, dst: str, dpt: int, ttl: int) -> str:
        return (
            f"[ 5.{t:06d}] TRACE: {prefix} {devs} SRC=192.0.2.53 DST={dst} LEN=61 TOS=0x00 "
            f"PREC=0x00 TTL={ttl} ID=0 DF PROTO=UDP SPT=53 DPT={dpt} LEN=41 \n"
        )

    pre, fwd = "IN=up OUT=", "IN=up OUT=down"
    lines = [
        line(1, "raw:PREROUTING:policy:2", pre, "198.51.100.1", 40001, 64),
        line(2, "filter:FORWARD:rule:1", fwd, "10.0.0.2", 5353, 63),
        line(3, "raw:PREROUTING:policy:2", pre, "198.51.100.1", 40001, 64),
        line(4, "raw:PREROUTING:policy:2", pre, "198.51.100.1", 40002, 64),
        line(5, "filter:FORWARD:rule:1", fwd, "10.0.0.2", 5353, 63),
        line(6, "filter:FORWARD:rule:1", fwd, "10.0.0.3", 5353, 63),
    ]
    passes = group(lines)
    assert [[r.first_line for r in p.records] for p in passes] == [[1, 2], [3, 5], [4, 6]]
