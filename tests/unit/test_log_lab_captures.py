"""The lab's captured traces (tests/data/tracelog/lab-capture-*, see SOURCES.md) explain to what
the hosts' wires received, in every format, without root: the golden lab test replayed."""

from __future__ import annotations

import pytest

from nodetrace.errors import DiagnosticSink
from nodetrace.model.packet import Family
from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import open_bytes
from tests.conftest import DATA

TRACELOG = DATA / "tracelog"
WIRE = {
    (src, dst, int(ident))
    for src, dst, ident in (
        line.split() for line in (TRACELOG / "lab-capture-wire.txt").read_text().splitlines()
    )
}
SENT_V4 = {
    40001: "accepted",
    40002: "dropped",
    40003: "accepted",
    40004: "dropped",
    40005: "rejected",
    40006: "accepted",
}
SENT_V6 = {50001: "accepted", 50002: "dropped", 50003: "accepted", 50004: "dropped"}


def explain(log: str, rules: str, family: Family) -> list[ObservedPacket]:
    ruleset = parse_iptables_save(
        (TRACELOG / rules).read_text(), source=rules, family=family, sink=DiagnosticSink()
    )
    analysis = Analysis(book=RuleBook({family: ruleset}, sources=(rules,)))
    packets = list(analysis.packets(open_bytes(log, (TRACELOG / log).read_bytes(), analysis.sink)))
    assert analysis.summary.lines.malformed == 0 and not analysis.sink.items
    return packets


@pytest.mark.parametrize(
    ("log", "rules"),
    [
        ("lab-capture-legacy.kmsg", "lab-capture-legacy.iptables-save"),
        ("lab-capture-legacy.dmesg", "lab-capture-legacy.iptables-save"),
        ("lab-capture-legacy.dmesg-T", "lab-capture-legacy.iptables-save"),
        ("lab-capture-nft.xtables-monitor", "lab-capture-nft.iptables-save"),
        ("lab-capture-nft.nft-monitor", "lab-capture-nft.iptables-save"),
    ],
)
def test_ipv4_captures_explain_to_the_wire(log: str, rules: str) -> None:
    packets = explain(log, rules, Family.IPV4)
    outcomes = {}
    for obs in packets:
        p = obs.trace.packet
        assert p is not None
        key = (str(p.nw_src), str(p.nw_dst), p.ip_id)
        assert (obs.trace.outcome is Outcome.ACCEPTED) == (key in WIRE), (
            log,
            key,
            obs.trace.reason,
        )
        for step in obs.trace.steps:
            assert isinstance(step, NetfilterStep) and step.misfit is None
        if p.nw_src is not None and str(p.nw_src) in ("10.0.0.1", "10.0.0.5"):
            outcomes[p.ip_id] = obs.trace.outcome.value
    assert outcomes == SENT_V4
    assert len(packets) == len(SENT_V4) + 3  # plus b's two echo replies and its TCP reset


def test_ipv6_capture_explains_to_the_wire() -> None:
    packets = explain(
        "lab-capture-legacy6.dmesg", "lab-capture-legacy6.ip6tables-save", Family.IPV6
    )
    outcomes = {}
    for obs in packets:
        p = obs.trace.packet
        assert p is not None and p.nw_src is not None and p.nw_src.version == 6
        key = (str(p.nw_src), str(p.nw_dst), p.ipv6_label)
        assert (obs.trace.outcome is Outcome.ACCEPTED) == (key in WIRE), key
        outcomes[p.ipv6_label] = obs.trace.outcome.value
    assert outcomes == SENT_V6


def test_bare_drop_in_a_user_chain_is_logged_as_return_and_explained() -> None:
    packets = explain("lab-capture-legacy.dmesg", "lab-capture-legacy.iptables-save", Family.IPV4)
    spoofed = next(
        o for o in packets if o.trace.packet is not None and o.trace.packet.ip_id == 40002
    )
    last = spoofed.trace.steps[-1]
    assert isinstance(last, NetfilterStep)
    assert (last.chain, last.kind.value, last.number) == ("s-a", "return", 2)
    assert last.rule is not None and last.rule.text == "-A s-a -j DROP"
    assert spoofed.trace.reason == "dropped by filter:s-a:return:2: -A s-a -j DROP"
