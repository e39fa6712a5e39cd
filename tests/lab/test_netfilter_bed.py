"""The bridge test bed and its capture tools, as other lab tests use them: frames cross the
bridge (or are dropped), every TRACE form is captured, the global log switch is restored, and
everything the bed made is gone after teardown."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from nodetrace.lab.bridge_bed import HostSpec, build_bridge_bed, load_ipsets, load_ruleset
from nodetrace.lab.capture import NF_LOG_ALL_NETNS, KernelTraceLog, TraceMonitor
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources, netns_exists
from nodetrace.lab.run import run
from nodetrace.lab.send import Wire, frame_bytes, packet_from_frame
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import Packet
from tests.conftest import unique

pytestmark = pytest.mark.lab

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p udp -j TRACE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -p udp -m udp --dport 9 -j DROP
-A FORWARD -m set --match-set blocked src -j DROP
COMMIT
"""


def _udp(bed, dport: int, ip_id: int, src: str = "10.9.0.1") -> Packet:  # type: ignore[no-untyped-def]
    a, b = bed.host("a"), bed.host("b")
    return Packet(dl_src=a.mac, dl_dst=b.mac, nw_src=IPv4Address(src),
                  nw_dst=IPv4Address("10.9.0.2"), nw_proto=17, tp_src=1000, tp_dst=dport,
                  ip_id=ip_id)  # fmt: skip


@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
def test_frames_cross_the_bed_and_their_trace_is_captured(tmp_path: Path, backend: Backend) -> None:
    res = Resources(Ledger(tmp_path / "bed.ledger"))
    try:
        bed = build_bridge_bed(res, prefix=unique("nf"), hosts=[HostSpec("a"), HostSpec("b")])
        load_ipsets(bed, "create blocked hash:ip family inet\nadd blocked 10.9.0.7\n")
        load_ruleset(bed, RULES, backend=backend)
        with Wire.open(bed.host("a")) as a, Wire.open(bed.host("b")) as b:
            with TraceMonitor(bed.netns, tmp_path, "nft") as nft_mon, KernelTraceLog(res) as log:
                assert NF_LOG_ALL_NETNS.read_text().strip() == "1"
                a.send(frame_bytes(_udp(bed, 53, 101)))
                a.send(frame_bytes(_udp(bed, 9, 102)))
                a.send(frame_bytes(_udp(bed, 53, 103, src="10.9.0.7")))
                kernel = log.lines(devices=bed.devices, settle=0.05)
                nft = nft_mon.stop()
            arrived = b.receive(timeout=0.5)
        got = [packet_from_frame(f.data) for f in arrived]
        # Only our UDP frames count: a host's own chatter (IGMP, for one) may cross the bridge too.
        ours = [p for p in got if p is not None and p.nw_proto == 17 and p.tp_src == 1000]
        assert [p.ip_id for p in ours] == [101]
        if backend is Backend.LEGACY:
            assert [line.split()[1] for line in kernel if "filter:" in line] == [
                "filter:FORWARD:policy:3",
                "filter:FORWARD:rule:1",
                "filter:FORWARD:rule:2",
            ]
            assert all(line.endswith(" ") for line in kernel)
        else:
            assert kernel == []  # iptables-nft never writes TRACE to the kernel log
            forward = [line for line in nft if " ip filter FORWARD " in line]
            assert sum(line.endswith("policy accept ") for line in forward) == 1
            assert sum(line.endswith("(verdict drop)") for line in forward) == 2
    finally:
        problems = res.teardown()
    assert not problems
    assert not [e.id for e in res.ledger.entries() if e.kind == "netns" and netns_exists(e.id)]


def test_the_kernel_log_switch_is_restored_when_the_last_holder_leaves(tmp_path: Path) -> None:
    before = NF_LOG_ALL_NETNS.read_text().strip()
    res = Resources(Ledger(tmp_path / "l.ledger"))
    with KernelTraceLog(res):
        with KernelTraceLog(res):
            assert NF_LOG_ALL_NETNS.read_text().strip() == "1"
        assert NF_LOG_ALL_NETNS.read_text().strip() == "1"
    assert NF_LOG_ALL_NETNS.read_text().strip() == before
    assert [e.kind for e in res.ledger.entries()] == ["sysctl-holder", "sysctl-holder"]


def test_hosts_with_addresses_talk_through_the_bed(lab: Resources) -> None:
    hosts = [HostSpec("a", addresses=("10.9.0.1/24",)), HostSpec("b", addresses=("10.9.0.2/24",))]
    bed = build_bridge_bed(lab, prefix=unique("nf"), hosts=hosts)
    out = run(["ping", "-c", "1", "-W", "1", "10.9.0.2"], netns=bed.host("a").netns).stdout
    assert "1 received" in out
    assert run(["ip", "-n", bed.netns, "-br", "link", "show", bed.bridge]).stdout.split()[1] == "UP"
