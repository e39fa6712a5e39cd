"""A save cut where it was copied (an elision line, a table without its COMMIT) cannot decide:
a rule not shown may come before the one that matched. Built from a complete real save
(tests/data/iptables/lingxiankong-havana-compute-filter.txt, a Havana compute node's hybrid
firewall for the VM port tap6bc18a88-96, 10.10.10.2 / fa:16:3e:31:e3:11)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.errors import DiagnosticSink
from nodetrace.model.packet import Packet
from nodetrace.model.trace import Outcome
from nodetrace.model.verdict import Verdict
from nodetrace.parsers.iptables_save import parse_iptables_save

SAVE = Path(__file__).parents[1] / "data" / "iptables" / "lingxiankong-havana-compute-filter.txt"
LINES = SAVE.read_text().splitlines()
TAP = "tap6bc18a88-96"


def _from_the_vm(nw_src: str) -> Packet:
    return Packet(dl_src="fa:16:3e:31:e3:11", dl_dst="fa:16:3e:00:00:01",
                  nw_src=IPv4Address(nw_src), nw_dst=IPv4Address("10.10.10.9"), nw_proto=6,
                  tp_src=40000, tp_dst=22, tcp_flags=0x002)  # fmt: skip


def _verdict(text: str, packet: Packet) -> tuple[Outcome, str]:
    ruleset = parse_iptables_save(text, source="save", sink=DiagnosticSink())
    result = NetfilterEngine(ruleset).run(
        packet, bridge_path("qbr6bc18a88-96", physin=TAP, physout="qvb6bc18a88-96")
    )
    return result.trace.outcome, result.trace.reason


def test_the_complete_save_decides() -> None:
    # Line 38: the anti-spoofing chain drops any source but 10.10.10.2 (line 37).
    outcome, reason = _verdict(SAVE.read_text(), _from_the_vm("10.10.10.99"))
    assert outcome is Outcome.DROPPED
    assert "neutron-openvswi-s6bc18a88-9" in reason
    # Line 41: sg-chain accepts what the port's chains let through.
    outcome, _ = _verdict(SAVE.read_text(), _from_the_vm("10.10.10.2"))
    assert outcome is Outcome.ACCEPTED
    assert parse_iptables_save(SAVE.read_text(), source="save").incomplete == ""


def test_an_elided_save_makes_the_drop_unknown_with_the_reason() -> None:
    # Line 24 (an INVALID drop of the inbound chain) left out as a blog post would cut it.
    elided = "\n".join([*LINES[:23], "...", *LINES[24:]]) + "\n"
    outcome, reason = _verdict(elided, _from_the_vm("10.10.10.99"))
    assert outcome is Outcome.UNKNOWN
    assert "table 'filter' was elided at save:24" in reason
    assert "rules not shown may decide first" in reason
    assert "neutron-openvswi-s6bc18a88-9" in reason  # what the rules shown would do
    outcome, reason = _verdict(elided, _from_the_vm("10.10.10.2"))
    assert outcome is Outcome.UNKNOWN
    assert "accept" in reason


def test_a_save_cut_before_its_commit_is_incomplete() -> None:
    cut = "\n".join(LINES[:40]) + "\n"  # sg-chain ACCEPT, sg-fallback and COMMIT are gone
    ruleset = parse_iptables_save(cut, source="save", sink=DiagnosticSink())
    assert ruleset.incomplete.startswith("table 'filter' was cut before its COMMIT at save:")
    outcome, reason = _verdict(cut, _from_the_vm("10.10.10.99"))
    assert outcome is Outcome.UNKNOWN
    assert "cut before its COMMIT" in reason


def test_no_rule_of_an_elided_save_is_shown_as_deciding() -> None:
    elided = "\n".join([*LINES[:23], "...", *LINES[24:]]) + "\n"
    ruleset = parse_iptables_save(elided, source="save", sink=DiagnosticSink())
    result = NetfilterEngine(ruleset).run(
        _from_the_vm("10.10.10.99"),
        bridge_path("qbr6bc18a88-96", physin=TAP, physout="qvb6bc18a88-96"),
    )
    assert result.verdict is Verdict.UNKNOWN
    assert result.trace.verdict_step is None
    assert result.trace.steps  # the walk through the rules shown is still printed
