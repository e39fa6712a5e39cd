"""The legacy TRACE reader: every logger's prefix, wrapped and glued records, damage, fields."""

from __future__ import annotations

import json
from collections import Counter
from ipaddress import ip_address

import pytest

from nodetrace.model.packet import ETH_TYPE_IPV6, IPProto, TcpFlag
from nodetrace.parsers.trace_kernel_log import (
    KernelLogReader,
    LegacyRecord,
    envelope_time,
    journal_json_lines,
    packet_from_dump,
    parse_devs,
    parse_dump,
    parse_prefix,
    repair_spaces,
)
from tests.conftest import DATA

TRACELOG = DATA / "tracelog"
DMESG = (TRACELOG / "lab-legacy-dmesg.txt").read_text().splitlines(keepends=True)


def read(lines: list[str]) -> tuple[list[LegacyRecord], KernelLogReader]:
    reader = KernelLogReader()
    return list(reader.records(lines)), reader


def bare(line: str) -> str:
    """A dmesg line without its ``[uptime]`` bracket: what the kernel itself printed."""
    return line[line.index("TRACE: ") :]


def test_the_seeds_wrapped_and_glued_records_become_13_records() -> None:
    lines = (TRACELOG / "seed-kern.log").read_text().splitlines(keepends=True)
    records, reader = read(lines)
    assert len(records) == 13
    assert [r.prefix for r in records][8:12] == [
        "filter:neutron-openvswi-FORWARD:rule:55",
        "filter:neutron-openvswi-sg-chain:rule:55",
        "filter:neutron-openvswi-ie14aa959-d:rule:2",
        "filter:neutron-openvswi-sg-chain:return:77",
    ]
    # Every record carries the whole packet, wrapped or glued: one identity for all 13.
    assert len({r.ident for r in records}) == 1
    assert records[0].ident is not None and records[0].ident.endswith(
        "OPT (0101080AEA673046EA67B69E)"
    )
    # The glued record 9 starts on line 24, where record 8 ends, and has its own envelope.
    assert (records[7].first_line, records[7].last_line) == (22, 24)
    assert (records[8].first_line, records[8].last_line) == (24, 26)
    assert records[8].envelope == "<4>Nov 10 11:23:11 node-5 kernel: [11821685.049151] "
    assert reader.counts.total == reader.counts.parsed == 38
    assert not reader.malformed


def test_real_dmesg_lines_give_one_record_each_with_the_kernels_fields() -> None:
    records, reader = read(DMESG)
    assert len(records) == 34 and reader.counts.parsed == 34
    first = records[0]
    assert first.prefix == "raw:PREROUTING:rule:2"
    assert parse_devs(first.devs) == {"IN": "brq", "OUT": "", "PHYSIN": "tapA"}
    assert first.envelope == "[  181.590409] "
    assert envelope_time(first.envelope) == pytest.approx(181.590409)
    forward = records[4]
    assert parse_devs(forward.devs) == {
        "IN": "brq",
        "OUT": "brq",
        "PHYSIN": "tapA",
        "PHYSOUT": "tapB",
    }


ENVELOPES = {
    "kern.log with uptime": "Nov 26 05:39:20 node-1 kernel: [  181.590409] ",
    "kern.log without uptime": "Nov 26 05:39:20 node-1 kernel: ",
    "kern.log with priority": "<4>Nov 26 05:39:20 node-1 kernel: [  181.590409] ",
    "rfc3339 syslog": "2026-11-26T05:39:20.255052+00:00 node-1 kernel: [  181.590409] ",
    "rfc5424 syslog": "<4>1 2026-11-26T05:39:20.255052+00:00 node-1 kernel - - - ",
    "rfc5424 with structured data": '<4>1 2026-11-26T05:39:20.255052Z node-1 kernel - - [meta sequenceId="7"] ',
    "dmesg": "[  181.590409] ",
    "dmesg -T": "[Thu Nov 26 05:39:20 2026] ",
    "journalctl -k short": "Nov 26 05:39:20 node-1 kernel: ",
    "journalctl -k short-iso": "2026-11-26T05:39:20+0000 node-1 kernel: ",
    "journalctl -k short-precise": "Nov 26 05:39:20.255052 node-1 kernel: ",
    "journalctl -k short-monotonic": "[  181.590409] node-1 kernel: ",
    "bare (/dev/kmsg)": "",
}


@pytest.mark.parametrize("envelope", ENVELOPES.values(), ids=ENVELOPES.keys())
def test_every_loggers_prefix_gives_the_same_records(envelope: str) -> None:
    reference, _ = read(DMESG)
    lines = [envelope + bare(line) for line in DMESG]
    records, reader = read(lines)
    assert [(r.prefix, r.devs, r.ident) for r in records] == [
        (r.prefix, r.devs, r.ident) for r in reference
    ]
    assert reader.counts.parsed == len(lines)
    assert records[0].envelope == envelope


def test_journalctl_json_is_unwrapped_into_message_lines() -> None:
    entries = [
        json.dumps(
            {
                "__REALTIME_TIMESTAMP": str(1795000000000000 + i),
                "__MONOTONIC_TIMESTAMP": str(181590409 + i),
                "_HOSTNAME": "node-1",
                "SYSLOG_IDENTIFIER": "kernel",
                "PRIORITY": "4",
                "MESSAGE": bare(line).rstrip("\n"),
            }
        )
        + "\n"
        for i, line in enumerate(DMESG)
    ]
    # journald stores a message that is not UTF-8 as an array of bytes
    entries[3] = json.dumps({"MESSAGE": list(bare(DMESG[3]).rstrip("\n").encode())}) + "\n"
    records, reader = read(list(journal_json_lines(entries)))
    reference, _ = read(DMESG)
    assert [r.ident for r in records] == [r.ident for r in reference]
    assert reader.counts.parsed == len(entries)


def test_crlf_line_ends_and_trailing_spaces_do_not_change_the_packet() -> None:
    crlf = [line.rstrip("\n").rstrip() + "\r\n" for line in DMESG]
    records, _ = read(crlf)
    reference, _ = read(DMESG)
    assert [r.ident for r in records] == [r.ident for r in reference]


def test_mangled_web_copy_is_repaired_and_flagged() -> None:
    lines = (
        (TRACELOG / "corpus-quantum-network-node-mangled.txt").read_text().splitlines(keepends=True)
    )
    records, reader = read(lines)
    assert len(records) == 13
    assert all(r.repaired for r in records)
    assert reader.repaired_lines[:2] == [1, 2]
    assert records[0].prefix == "raw:PREROUTING:policy:2"
    dump = parse_dump(records[0].dump_text)
    assert dump.get("LEN") == "84" and dump.get("TOS") == "0x00" and dump.get("TTL") == "64"
    packet = packet_from_dump(dump)
    assert (packet.icmp_type, packet.icmp_code, packet.icmp_id, packet.icmp_seq) == (8, 0, 28976, 1)


def test_records_without_a_packet_dump_are_kept_by_their_prefix() -> None:
    lines = (
        (TRACELOG / "corpus-nftrace-firewalld-dns-reply.txt").read_text().splitlines(keepends=True)
    )
    records, reader = read(lines)
    assert len(records) == 39 and all(r.ident is None for r in records)
    assert reader.counts.skipped == 6 and reader.counts.parsed == 39
    assert records[5].prefix == "raw:PRE_internal_pre:return:1"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[  1.0] TRACE: nonsense here\n", "prefix"),
        ("[  1.0] TRACE: raw:PREROUTING:rule:2 IN=brq OUT= PHYSIN=tapA MAC=aa:bb\n", "SRC="),
        ("TRACE: filter:FORWARD:rule:x IN=a OUT=b SRC=1.2.3.4 DST=1.2.3.5 LEN=1\n", "prefix"),
    ],
    ids=["no-prefix", "cut-short", "number-not-a-number"],
)
def test_malformed_trace_lines_are_reported_with_line_and_reason(line: str, reason: str) -> None:
    lines = [DMESG[0], line, DMESG[1]]
    records, reader = read(lines)
    assert len(records) == 2
    assert reader.counts.malformed == 1 and reader.counts.parsed == 2
    (bad,) = reader.malformed
    assert bad.line == 2 and reason in bad.reason


def test_binary_junk_is_skipped_and_counted_as_not_text() -> None:
    junk = "\x00\x01\ufffd\ufffdELF\x02\n"
    records, reader = read([junk, DMESG[0], junk])
    assert len(records) == 1
    assert reader.counts.skipped == 2 and reader.counts.not_text == 2
    assert reader.counts.first_not_text == 1


def test_ipv6_record_fields() -> None:
    line = (
        "[  512.000001] TRACE: raw:PREROUTING:rule:1 IN=br0 OUT= PHYSIN=tapA "
        "MAC=02:00:00:00:00:02:02:00:00:00:00:01:86:dd SRC=2001:db8::1 DST=2001:db8::2 LEN=104 "
        "TC=0 HOPLIMIT=64 FLOWLBL=731482 PROTO=ICMPv6 TYPE=128 CODE=0 ID=9 SEQ=3 \n"
    )
    (record,), _ = read([line])
    packet = packet_from_dump(parse_dump(record.dump_text))
    assert packet.dl_type == ETH_TYPE_IPV6
    assert packet.nw_src == ip_address("2001:db8::1") and packet.nw_dst == ip_address("2001:db8::2")
    assert (packet.nw_ttl, packet.ipv6_label, packet.ip_len) == (64, 731482, 104)
    assert packet.nw_proto == IPProto.ICMPV6
    assert (packet.icmp_type, packet.icmp_id, packet.icmp_seq) == (128, 9, 3)


def test_every_field_of_a_tcp_dump() -> None:
    text = (
        "IN=qbr OUT=qbr PHYSIN=qvb PHYSOUT=tap MAC=fa:16:3e:cf:81:aa:fa:16:3e:23:c4:5f:08:00 "
        "SRC=192.168.113.4 DST=192.168.113.2 LEN=52 TOS=0x10 PREC=0x20 TTL=63 ID=10770 DF "
        "PROTO=TCP SPT=5672 DPT=41943 SEQ=1808903081 ACK=2600615076 WINDOW=1450 RES=0x00 ACK PSH "
        "URGP=0 OPT (0101080AEA673046EA67B69E) UID=1000 GID=1000 MARK=0x1f "
    )
    dump = parse_dump(text)
    keys = [k for k, _ in dump.fields]
    assert keys == [
        "IN", "OUT", "PHYSIN", "PHYSOUT", "MAC", "SRC", "DST", "LEN", "TOS", "PREC", "TTL", "ID",
        "DF", "PROTO", "SPT", "DPT", "SEQ", "ACK", "WINDOW", "RES", "ACK", "PSH", "URGP", "OPT",
        "UID", "GID", "MARK",
    ]  # fmt: skip
    assert dump.get("OPT") == "0101080AEA673046EA67B69E"
    p = packet_from_dump(dump)
    assert (p.dl_dst, p.dl_src, p.dl_type) == ("fa:16:3e:cf:81:aa", "fa:16:3e:23:c4:5f", 0x0800)
    assert (p.nw_tos, p.nw_ttl, p.ip_id, p.ip_df, p.ip_len) == (0x30, 63, 10770, True, 52)
    assert (p.tp_src, p.tp_dst, p.tcp_seq, p.tcp_ack, p.tcp_window) == (
        5672,
        41943,
        1808903081,
        2600615076,
        1450,
    )
    assert p.tcp_flags == TcpFlag.ACK | TcpFlag.PSH
    assert p.skb_mark == 0x1F


def test_udp_length_icmp_error_and_fragment_fields() -> None:
    udp = parse_dump(
        "IN=a OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=76 TOS=0x00 PREC=0x00 TTL=64 ID=1 PROTO=UDP SPT=68 DPT=67 LEN=56 "
    )
    assert [v for k, v in udp.fields if k == "LEN"] == ["76", "56"]
    err = parse_dump(
        "IN=a OUT= SRC=10.0.0.2 DST=10.0.0.1 LEN=112 TOS=0x00 PREC=0xC0 TTL=64 ID=7 PROTO=ICMP TYPE=3 "
        "CODE=3 [SRC=10.0.0.1 DST=10.0.0.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=5 PROTO=UDP SPT=1 DPT=2 LEN=64 ] "
    )
    inner = err.get("INNER")
    assert inner is not None and inner.startswith("SRC=10.0.0.1 DST=10.0.0.2")
    assert packet_from_dump(err).icmp_type == 3
    frag = packet_from_dump(
        parse_dump(
            "IN=a OUT= SRC=10.0.0.1 DST=10.0.0.2 LEN=1500 TOS=0x00 PREC=0x00 TTL=64 ID=9 MF FRAG:185 PROTO=UDP "
        )
    )
    assert (frag.ip_mf, frag.ip_frag_offset) == (True, 185)


def test_prefix_parsing() -> None:
    assert parse_prefix("filter:neutron-openvswi-sg-chain:return:77") == (
        "filter",
        "neutron-openvswi-sg-chain",
        "return",
        77,
    )
    assert parse_prefix("filter:FORWARD:jump:1") is None


@pytest.mark.parametrize(
    ("envelope", "expected"),
    [
        ("[  181.590409] ", 181.590409),
        ("Nov 10 11:23:11 node-5 kernel: [11821685.049025] ", 11821685.049025),
        ("[86541.123456] compute-01 kernel: ", 86541.123456),
        ("", None),
    ],
)
def test_envelope_times(envelope: str, expected: float | None) -> None:
    assert envelope_time(envelope) == (pytest.approx(expected) if expected is not None else None)


def test_wall_clock_envelopes_order_correctly() -> None:
    a = envelope_time("Nov 10 11:23:11 node kernel: ")
    b = envelope_time("Nov 10 11:23:12.5 node kernel: ")
    c = envelope_time("2025-11-10T11:23:11.250000+00:00 node kernel: ")
    d = envelope_time("2025-11-10T11:23:13+00:00 node kernel: ")
    assert a is not None and b is not None and b - a == pytest.approx(1.5)
    assert c is not None and d is not None and d - c == pytest.approx(1.75)


def test_prefix_counts_count_each_record_once_even_when_wrapped_or_glued() -> None:
    seed = (TRACELOG / "seed-kern.log").read_text().splitlines(keepends=True)
    lines = DMESG + seed + ["unrelated kernel line\n", "TRACE: not-a-prefix IN=x\n"] + DMESG
    records, reader = read(lines)
    assert reader.prefix_counts == Counter(r.prefix for r in records)
    assert reader.counts.malformed == 1


# Real captures whose spaces are removed below: IPv4 ICMP and TCP with options, UID/GID, IPv6.
REAL_CAPTURES = ["lab-nat.dmesg", "lab-capture-legacy6.dmesg", "lab-legacy-dmesg.txt"]


def real_lines() -> list[str]:
    out = []
    for name in REAL_CAPTURES:
        out += (TRACELOG / name).read_text().splitlines()
    return out


def fields_of(record: LegacyRecord) -> tuple[str, str, str | None]:
    return record.prefix, record.devs.strip(), record.ident


def test_real_records_are_never_taken_for_web_copies() -> None:
    lines = real_lines()
    assert all(repair_spaces(line) == (line, ()) for line in lines)
    records, reader = read([line + "\n" for line in lines])
    assert (
        len(records) == len(lines) and not reader.repairs and not any(r.repaired for r in records)
    )


@pytest.mark.parametrize("name", REAL_CAPTURES)
def test_any_one_lost_space_of_a_real_record_is_put_back(name: str) -> None:
    for line in (TRACELOG / name).read_text().splitlines()[:12]:
        (original,), _ = read([line + "\n"])
        start = line.index("TRACE: ") + len("TRACE:")
        spaces = [i for i in range(start, len(line.rstrip())) if line[i] == " "]
        assert len(spaces) > 15
        for i in spaces:
            glued = line[:i] + line[i + 1 :]
            records, reader = read([glued + "\n"])
            assert [fields_of(r) for r in records] == [fields_of(original)], glued
            assert records[0].repaired and [r.line for r in reader.repairs] == [1]


@pytest.mark.parametrize("name", REAL_CAPTURES)
def test_a_real_record_with_every_space_lost_is_put_back(name: str) -> None:
    lines = (TRACELOG / name).read_text().splitlines()
    glued = []
    for line in lines:
        start = line.index("TRACE: ") + len("TRACE:")
        glued.append(line[:start] + line[start:].replace(" ", "") + "\n")
    records, reader = read(glued)
    originals, _ = read([line + "\n" for line in lines])
    assert [fields_of(r) for r in records] == [fields_of(r) for r in originals]
    assert [r.line for r in reader.repairs] == list(range(1, len(lines) + 1))


def test_flags_glued_to_hex_looking_values_are_split_where_the_kernel_put_them() -> None:
    line = (
        "TRACE: raw:PREROUTING:policy:3 IN=brq OUT=tap3b1f6a2c-d6MAC=fa:16:3e:00:00:01:fa:16:3e:"
        "00:00:02:08:00 SRC=10.0.0.1 DST=10.0.0.2 LEN=52 TOS=0x00 PREC=0x00 TTL=64 ID=10770DF "
        "PROTO=TCP SPT=1 DPT=2 SEQ=1 ACK=2 WINDOW=3 RES=0x00ACKPSH URGP=0 OPT (0101080AEA6700DF)\n"
    )
    (record,), reader = read([line])
    # the fast path's pattern fits this line, but OUT would hold the MAC: it is repaired
    assert parse_devs(record.devs) == {"IN": "brq", "OUT": "tap3b1f6a2c-d6"}
    dump = parse_dump(record.dump_text)
    packet = packet_from_dump(dump)
    # IP IDs are decimal: "10770DF" is ID 10770 and DF; RES has two hex digits: "0x00ACK" is
    # RES 0x00 and ACK; the hex of the TCP options is left alone even where it ends in "DF"
    assert (packet.ip_id, packet.ip_df) == (10770, True)
    assert packet.tcp_flags == TcpFlag.ACK | TcpFlag.PSH
    assert dump.get("OPT") == "0101080AEA6700DF"
    (repair,) = reader.repairs
    assert set(repair.before) == {"MAC=", "DF", "ACK", "PSH"}


def test_the_mangled_corpus_says_what_was_put_back_in_each_record() -> None:
    lines = (
        (TRACELOG / "corpus-quantum-network-node-mangled.txt").read_text().splitlines(keepends=True)
    )
    records, reader = read(lines)
    assert [r.line for r in reader.repairs] == list(range(1, 14))
    assert reader.repairs[0].before == ("the time", "IN=", "TOS=", "ID=", "CODE=", "ID=", "SEQ=")
    # "Apr 1811:50:23" is 18 April, 11:50:23 (hours have two digits)
    assert records[0].envelope.startswith("Apr 18 11:50:23 openstack-network")
    assert envelope_time("Apr 1811:50:23 h kernel: ") == envelope_time("Apr 18 11:50:23 h kernel: ")
    packet = packet_from_dump(parse_dump(records[4].dump_text))
    assert (packet.ip_id, packet.ip_df, packet.nw_ttl, packet.icmp_id) == (0, True, 63, 28976)


def test_a_web_copy_is_checked_to_its_end_and_a_kernel_log_only_at_its_start() -> None:
    clean = (TRACELOG / "lab-nat.dmesg").read_text().splitlines(keepends=True)
    glued_line = clean[0].replace("LEN=84 TOS", "LEN=84TOS")
    assert "LEN=84TOS" in glued_line
    # a glued record at the start: every later one is checked too
    _, reader = read([glued_line] + clean * 5 + [glued_line])
    assert [r.line for r in reader.repairs] == [1, 2 + 5 * len(clean)]
    # a kernel-written log: the first 200 records are checked, then the fast path is trusted
    records, reader = read(clean * 5 + [glued_line])
    assert not reader.repairs and records[-1].ident is not None
    assert "LEN=84TOS" in records[-1].ident


def test_a_wrapped_record_whose_wrap_also_lost_a_space_is_put_together() -> None:
    line = (TRACELOG / "lab-nat.dmesg").read_text().splitlines()[0]
    (original,), _ = read([line + "\n"])
    head, tail = line.split(" DF PROTO=")
    # a web page wrapped the record after the IP ID and lost the space between DF and PROTO=
    records, reader = read([head + "\n", "DFPROTO=" + tail + "\n"])
    assert [fields_of(r) for r in records] == [fields_of(original)]
    assert reader.counts.parsed == 2 and [r.before for r in reader.repairs] == [("PROTO=",)]
