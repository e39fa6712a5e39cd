"""``nodetrace live trace`` on a real kernel: it catches and explains real packets with the
rules the namespace holds (the wire decides what the right explanation is), for both iptables
back ends and for native nftables, and leaves every ruleset exactly as it found it."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from tests.lab.live_bed import (
    ACCEPT_ICMP,
    DROP_TELNET,
    FOREIGN_COMMENT,
    LiveRun,
    build_bed,
    deciding_rule,
    node_state,
    ping,
    tcp_connect,
)


@pytest.mark.lab
@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_live_trace_explains_what_the_wire_saw_and_leaves_the_rules_as_found(
    lab: Resources, tmp_path: Path, backend: str
) -> None:
    bed = build_bed(lab, backend)
    before = node_state(bed)
    live = LiveRun(bed, tmp_path, "--packet", f"ip,nw_src={bed.client_ip}", "--count", "2",
                   "--duration", "20")  # fmt: skip
    start = live.wait_for("start")
    assert start["backend"] == f"iptables-{backend}"
    assert all(f"nodetrace live trace {start['run']}" in r for r in start["inserted"])
    # Ours is the first rule of raw PREROUTING; the foreign look-alike is still there.
    raw = run([f"iptables-{backend}-save", "-t", "raw"], netns=bed.server).stdout
    prerouting = [ln for ln in raw.splitlines() if ln.startswith("-A PREROUTING")]
    assert start["run"] in prerouting[0] and "-j TRACE" in prerouting[0]
    assert any(FOREIGN_COMMENT in ln for ln in prerouting[1:])

    answered = ping(bed)
    telnet = tcp_connect(bed, 23)
    assert live.finish() == 0

    # What the wire saw: the ping was answered, the telnet SYN vanished.
    assert answered and telnet == "timeout"
    packets = live.of("packet")
    assert len(packets) == 2
    by_outcome = {p["outcome"]: p for p in packets}
    assert set(by_outcome) == {"accepted", "dropped"}, [p["reason"] for p in packets]
    assert deciding_rule(by_outcome["accepted"]) == ACCEPT_ICMP
    assert deciding_rule(by_outcome["dropped"]) == DROP_TELNET
    for p in packets:
        assert p["packet"]["nw_src"] == bed.client_ip and p["packet"]["nw_dst"] == bed.server_ip
    # Observed against predicted from the snapshot the run took: they agree, and the drop is
    # put down to the rule.
    assert all(p["diagnosis"]["agrees"] for p in packets)
    cause = by_outcome["dropped"]["diagnosis"]["cause"]
    assert cause["id"] == "rule-drop" and DROP_TELNET in cause["evidence"][0]
    assert by_outcome["accepted"]["diagnosis"]["cause"] is None
    summary = live.of("summary")[0]
    assert (summary["seen"], summary["explained"], summary["stopped_by"]) == (2, 2, "count")
    assert summary["divergent"] == 0
    assert summary["left"] == []
    assert node_state(bed) == before
    assert not list(tmp_path.glob("*.jsonl")), "the ledger of a clean run is removed"


@pytest.mark.lab
def test_live_trace_with_native_nftables_uses_a_table_of_its_own(
    lab: Resources, tmp_path: Path
) -> None:
    bed = build_bed(lab, "nftables")
    before = node_state(bed)
    live = LiveRun(bed, tmp_path, "--packet", f"icmp,nw_src={bed.client_ip}", "--count", "1",
                   "--duration", "20")  # fmt: skip
    start = live.wait_for("start")
    assert start["backend"] == "nftables"
    table = f"nodetrace_{start['run']}"
    listing = run(["nft", "list", "tables"], netns=bed.server).stdout
    assert f"table inet {table}" in listing
    assert ping(bed)
    assert live.finish() == 0
    (packet,) = live.of("packet")
    assert packet["log_format"] == "nft-monitor"
    assert packet["packet"]["nw_src"] == bed.client_ip
    assert node_state(bed) == before


@pytest.mark.lab
@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_a_rewritten_raw_table_gets_the_trace_rules_back_and_says_so(
    lab: Resources, tmp_path: Path, backend: str
) -> None:
    bed = build_bed(lab, backend)
    before = node_state(bed)
    raw_before = run([f"iptables-{backend}-save", "-t", "raw"], netns=bed.server).stdout
    live = LiveRun(bed, tmp_path, "--packet", f"icmp,nw_src={bed.client_ip}", "--duration", "20",
                   "--no-diagnose")  # fmt: skip
    start = live.wait_for("start")
    # The agent restores the raw table as it wants it: without our rule.
    run([f"iptables-{backend}-restore", "-T", "raw"], netns=bed.server, input=raw_before)
    assert start["run"] not in run([f"iptables-{backend}-save", "-t", "raw"],
                                   netns=bed.server).stdout  # fmt: skip
    notice = live.wait_for("notice", timeout=5)
    while notice["kind"] != "reinserted":
        live.events.remove(notice)
        notice = live.wait_for("notice", timeout=5)
    assert "re-inserted" in notice["message"]
    assert start["run"] in run([f"iptables-{backend}-save", "-t", "raw"],
                               netns=bed.server).stdout  # fmt: skip
    assert ping(bed)
    packet = live.wait_for("packet")
    assert packet["outcome"] == "accepted" and deciding_rule(packet) == ACCEPT_ICMP
    time.sleep(0.2)
    live.proc.send_signal(signal.SIGTERM)
    assert live.finish() == 0
    summary = live.of("summary")[0]
    assert summary["stopped_by"] == "terminated" and summary["reinserted"] >= 1
    assert node_state(bed) == before
