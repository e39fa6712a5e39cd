"""Golden lab test: the real kernel's TRACE output, in all three formats, explains to exactly
what the hosts' wires saw (see tests/lab/log_scenario.py for the scenario)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink
from nodetrace.lab.resources import Resources
from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import open_bytes
from tests.conftest import unique
from tests.lab import log_nat_scenario as nat
from tests.lab.log_scenario import Capture, run_legacy, run_legacy6, run_nft

# What the ruleset does to each probe (by IP ID), and the step that decides it per backend:
# iptables-legacy logs the bare "-A s-a -j DROP" as return:2, nf_tables as rule 2.
EXPECTED = {
    40001: (Outcome.ACCEPTED, None),
    40002: (Outcome.DROPPED, {"kernel": "filter:s-a:return:2", "nft": "filter:s-a:rule:2"}),
    40003: (Outcome.ACCEPTED, None),
    40004: (
        Outcome.DROPPED,
        {"kernel": "filter:sg-fallback:rule:1", "nft": "filter:sg-fallback:rule:1"},
    ),
    40005: (Outcome.REJECTED, {"kernel": "filter:i-b:rule:4", "nft": "filter:i-b:rule:4"}),
    40006: (Outcome.ACCEPTED, None),
}


def explain(text: str, rules: str, name: str) -> list[ObservedPacket]:
    ruleset = parse_iptables_save(rules, source="iptables-save", sink=DiagnosticSink())
    analysis = Analysis(book=RuleBook({ruleset.family: ruleset}, sources=("iptables-save",)))
    packets = list(analysis.packets(open_bytes(name, text.encode(), analysis.sink)))
    lines = analysis.summary.lines
    assert lines.total > 0 and lines.malformed == 0 and lines.skipped == 0, (name, lines)
    assert not analysis.sink.items, [str(d) for d in analysis.sink.items]
    return packets


def check(
    capture: Capture, packets: list[ObservedPacket], kind: str, *, ambiguous_ok: bool = False
) -> None:
    seen: dict[tuple[str, str, int], ObservedPacket] = {}
    for obs in packets:
        packet = obs.trace.packet
        assert packet is not None
        key = (str(packet.nw_src), str(packet.nw_dst), packet.ip_id)
        assert key not in seen, f"{key} explained twice"
        seen[key] = obs
        # the explained outcome is what the wire saw: accepted exactly when it arrived
        arrived = key in capture.arrived
        assert (obs.trace.outcome is Outcome.ACCEPTED) == arrived, (key, obs.trace.reason)
        # and every step fits the ruleset the kernel held: the numbering is the kernel's
        for step in obs.trace.steps:
            assert isinstance(step, NetfilterStep)
            assert step.misfit is None, (key, step)
            if step.kind.value == "rule" and step.rule is None:
                # nft monitor prints "xt match physdev" without its options, so two rules that
                # differ only there cannot be told apart: that must be said, never guessed
                assert ambiguous_ok and "2 rules fit" in (step.note or ""), (key, step)
    for probe in capture.sent:
        p = probe.packet
        key = (str(p.nw_src), str(p.nw_dst), p.ip_id)
        assert key in seen, f"{probe.name}: not in the trace"
        outcome, deciding = EXPECTED[p.ip_id]
        obs = seen[key]
        assert obs.trace.outcome is outcome, (probe.name, obs.trace.reason)
        if deciding is not None:
            assert obs.conclusion.deciding == deciding[kind], probe.name
    # the replies host b's kernel sent back (echo replies, a TCP reset) were traced too
    replies = [k for k in seen if k[0] == "10.0.0.2"]
    assert len(replies) == 3 and all(seen[k].trace.outcome is Outcome.ACCEPTED for k in replies)


@pytest.mark.lab
def test_kernel_log_explains_what_the_wire_saw(lab: Resources) -> None:
    capture = run_legacy(lab, unique("lg"))
    for fmt in ("kernel", "dmesg"):
        packets = explain(capture.traces[fmt], capture.rules, fmt)
        check(capture, packets, "kernel")
        assert all(o.log_format == "kernel" for o in packets)


@pytest.mark.lab
def test_nft_monitors_explain_what_the_wire_saw(lab: Resources, tmp_path: Path) -> None:
    capture = run_nft(lab, unique("lg"), tmp_path)
    for fmt in ("xtables-monitor", "nft-monitor"):
        packets = explain(capture.traces[fmt], capture.rules, fmt)
        assert all(o.log_format == fmt and o.trace_id for o in packets)
        check(capture, packets, "nft", ambiguous_ok=fmt == "nft-monitor")


@pytest.mark.lab
def test_ipv6_kernel_log_explains_what_the_wire_saw(lab: Resources) -> None:
    capture = run_legacy6(lab, unique("lg"))
    packets = explain(capture.traces["dmesg"], capture.rules, "dmesg")
    expected = {
        50001: Outcome.ACCEPTED,
        50002: Outcome.DROPPED,
        50003: Outcome.ACCEPTED,
        50004: Outcome.DROPPED,
    }
    by_label = {}
    for obs in packets:
        packet = obs.trace.packet
        assert packet is not None and packet.nw_src is not None and packet.nw_src.version == 6
        key = (str(packet.nw_src), str(packet.nw_dst), packet.ipv6_label)
        if packet.nw_src == packet.nw_src.__class__("fc00::2"):
            continue  # host b's answers: traced only if TCP, checked through the wire below
        arrived = key in capture.arrived
        assert (obs.trace.outcome is Outcome.ACCEPTED) == arrived, (key, obs.trace.reason)
        assert all(isinstance(s, NetfilterStep) and s.misfit is None for s in obs.trace.steps)
        by_label[packet.ipv6_label] = obs.trace.outcome
    assert by_label == expected


def _packet_lines(text: str) -> int:
    """Packets the kernel traced: each logs its raw policy line exactly once in this scenario."""
    return sum(
        1
        for line in text.splitlines()
        if "raw:PREROUTING:policy:" in line or "raw:OUTPUT:policy:" in line
    )


def _check_nat(packets: list[ObservedPacket], expected: int) -> None:
    assert len(packets) == expected
    assert all(o.occurrence == 1 for o in packets)
    dropped = [o for o in packets if o.trace.outcome is not Outcome.ACCEPTED]
    # the echo reply to the 100-byte ping, dropped after conntrack undid the masquerade
    assert [(o.trace.outcome, o.trace.packet and o.trace.packet.ip_len) for o in dropped] == [
        (Outcome.DROPPED, 128)
    ]


@pytest.mark.lab
def test_nat_rewritten_packets_stay_one_packet_in_the_kernel_log(lab: Resources) -> None:
    capture = nat.run_legacy(lab, unique("ln"))
    packets = explain(capture.traces["dmesg"], capture.rules, "dmesg")
    _check_nat(packets, _packet_lines(capture.traces["dmesg"]))


@pytest.mark.lab
def test_nat_rewritten_packets_stay_one_packet_in_xtables_monitor(
    lab: Resources, tmp_path: Path
) -> None:
    capture = nat.run_nft(lab, unique("ln"), tmp_path)
    text = capture.traces["xtables-monitor"]
    packets = explain(text, capture.rules, "xtables-monitor")
    _check_nat(packets, _packet_lines(text))
