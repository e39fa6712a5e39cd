"""The counter readers on outputs captured from a lab node (tests/data/counters/SOURCES.md):
each value is checked against the raw text, independently of the reader, and every malformed
line is reported with file and line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.parsers.conntrack_stats import parse_conntrack_stats
from nodetrace.parsers.ip_stats import parse_ip_stats
from nodetrace.parsers.nstat import parse_nstat
from nodetrace.parsers.ovs_dpctl_show_stats import parse_ovs_dpctl_show_stats
from nodetrace.parsers.ovs_interface_statistics import parse_ovs_interface_statistics

DATA = Path(__file__).resolve().parents[1] / "data" / "counters"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_ip_stats_gives_every_device_its_rx_and_tx_counters() -> None:
    text = read("ip-s-s-j-link.json")
    stats = parse_ip_stats(text, source="ip-s-s-j-link.json")
    raw = json.loads(text)
    assert list(stats) == [link["ifname"] for link in raw]
    for link in raw:
        mine = stats[link["ifname"]]
        for way in ("rx", "tx"):
            for key in ("packets", "bytes", "dropped", "errors"):
                assert mine[f"{way}_{key}"] == link["stats64"][way][key]
    # the capture was taken after traffic from web1 (tapbf944fec-1e) to db1
    assert stats["tapbf944fec-1e"]["rx_packets"] > 0
    assert stats["qvbbf944fec-1e"]["tx_packets"] == stats["qvobf944fec-1e"]["rx_packets"]


def test_ip_stats_without_s_is_reported_not_read_as_zero() -> None:
    text = '[{"ifindex":1,"ifname":"lo","flags":["UP"]},{"ifname":"eth0","stats64":{"rx":{"packets":3}}}]'
    sink = DiagnosticSink()
    stats = parse_ip_stats(text, source="links.json", sink=sink)
    assert stats == {"eth0": {"rx_packets": 3}}
    assert [str(d) for d in sink.items] == [
        "links.json:1: error: entry 1: lo: no stats64 (was it run with -s?)"
    ]


def test_nstat_reads_every_counter_and_skips_the_header() -> None:
    text = read("nstat-asz.txt")
    counters = parse_nstat(text, source="nstat-asz.txt")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(counters) == len(lines)
    for line in lines:
        name, value = line.split()[:2]
        assert counters[name] == int(value)
    assert {"IpInDiscards", "IpOutNoRoutes", "IpInReceives"} <= set(counters)


def test_nstat_reports_a_malformed_line_with_its_number() -> None:
    sink = DiagnosticSink()
    counters = parse_nstat(
        "#kernel\nIpInReceives 5 0.0\nnot a counter line\n", source="n", sink=sink
    )
    assert counters == {"IpInReceives": 5}
    assert [d.pos.line for d in sink.items] == [3]
    with pytest.raises(ParseError):
        parse_nstat("garbage here\n", source="n")


def test_conntrack_stats_sums_every_cpu() -> None:
    text = read("conntrack-S.txt")
    stats = parse_conntrack_stats(text, source="conntrack-S.txt")
    names = re.findall(r"(\w+)=\d+", text.splitlines()[0])
    assert sorted(stats) == sorted(n for n in names if n != "cpu")
    for name in stats:
        assert stats[name] == sum(int(v) for v in re.findall(rf"\b{name}=(\d+)", text))
    summed = parse_conntrack_stats(
        "cpu=0 found=1 invalid=2 drop=0\ncpu=1 found=4 invalid=5 drop=1\n", source="s"
    )
    assert summed == {"found": 5, "invalid": 7, "drop": 1}


def test_dpctl_show_stats_reads_the_lookups_of_each_datapath() -> None:
    text = read("ovs-appctl-dpctl-show-s.txt")
    stats = parse_ovs_dpctl_show_stats(text, source="dpctl")
    m = re.search(r"^(\S+@\S+):\n\s+lookups: hit:(\d+) missed:(\d+) lost:(\d+)", text, re.M)
    assert m is not None
    assert stats == {
        m.group(1): {"hit": int(m.group(2)), "missed": int(m.group(3)), "lost": int(m.group(4))}
    }


def test_interface_statistics_name_every_port() -> None:
    text = read("ovs-vsctl-list-interface-statistics.json")
    stats = parse_ovs_interface_statistics(text, source="iface.json")
    doc = json.loads(text)
    assert list(stats) == [row[0] for row in doc["data"]]
    for name, (_, pairs) in ((row[0], row[1]) for row in doc["data"]):
        assert stats[name] == dict(pairs)
    assert stats["qvobf944fec-1e"]["rx_packets"] > 0


def test_interface_statistics_of_something_else_is_an_error() -> None:
    sink = DiagnosticSink()
    assert (
        parse_ovs_interface_statistics('{"data":[],"headings":["name"]}', source="x", sink=sink)
        == {}
    )
    assert len(sink.items) == 1 and "not an Interface listing" in str(sink.items[0])
