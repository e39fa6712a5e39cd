"""``nodetrace log --rules`` replays each logged packet through the rules given and flags the
packets whose logged path they do not produce: real kernel captures with the rules they were
taken with (nothing flagged), the bundled example with its rules changed since (flagged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodetrace.api import explain_log, log_rules
from nodetrace.cli import main
from nodetrace.diagnosis.replay import Replay
from nodetrace.errors import DiagnosticSink
from tests.conftest import DATA
from tests.unit.diagnosis_faults import CMP2, CMP2_LOG, EXAMPLES, insert_rule, node

TRACELOG = DATA / "tracelog"
FLAG = "contradicts the rules given"


def flagged(log: Path, rules: Path) -> tuple[list[int], Replay]:
    replay = Replay(log_rules([str(rules)], [], DiagnosticSink()))  # type: ignore[arg-type]
    found = [obs.index for obs in explain_log([log], rules=[rules]) if replay.check(obs)]
    return found, replay


@pytest.mark.parametrize(
    ("log", "rules", "replayed"),
    [
        ("lab-capture-legacy.dmesg", "lab-capture-legacy.iptables-save", 9),
        ("lab-capture-legacy6.dmesg", "lab-capture-legacy6.ip6tables-save", 4),
        # NAT: the packets the log shows rewritten are not replayed (the connection is needed).
        ("lab-nat.dmesg", "lab-nat.iptables-save", 14),
    ],
)
def test_real_captures_with_their_own_rules_contradict_nothing(
    log: str, rules: str, replayed: int
) -> None:
    found, replay = flagged(TRACELOG / log, TRACELOG / rules)
    assert found == []
    assert replay.replayed == replayed


def test_the_example_with_its_own_snapshot_contradicts_nothing() -> None:
    found, replay = flagged(CMP2_LOG, CMP2)
    assert found == [] and replay.replayed == 3


def test_rules_changed_since_the_log_flag_the_packets_they_change(tmp_path: Path) -> None:
    folder = node(tmp_path)
    insert_rule(folder, "neutron-openvswi-i79645311-2", "-p tcp -m tcp --dport 5432 -j DROP")
    found, _ = flagged(CMP2_LOG, folder)
    assert found == [1]  # only the TCP 5432 packet to db2 meets the new rule


def test_another_nodes_log_is_flagged() -> None:
    found, _ = flagged(EXAMPLES / "two-nodes-cmp1.trace.log", CMP2)
    assert found == [1, 2, 3]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["log", *args])
    out, _ = capsys.readouterr()
    return code, out


def test_the_text_view_flags_each_packet_in_one_line_and_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = node(tmp_path)
    insert_rule(folder, "neutron-openvswi-i79645311-2", "-p tcp -m tcp --dport 5432 -j DROP")
    code, out = run(capsys, str(CMP2_LOG), "--rules", str(folder))
    assert code == 0
    lines = [x for x in out.splitlines() if FLAG in x]
    assert len(lines) == 1
    assert "step 15: the log shows filter:neutron-openvswi-i79645311-2:rule:4, the rules give " \
        "filter:neutron-openvswi-i79645311-2:rule:1" in lines[0]  # fmt: skip
    assert out.rstrip().splitlines()[-1].endswith("· 1 contradict the rules given (3 replayed)")
    _, quiet = run(capsys, str(CMP2_LOG), "--rules", str(folder), "--no-replay")
    assert FLAG not in quiet


def test_json_carries_the_flag_among_the_packets_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = node(tmp_path)
    insert_rule(folder, "neutron-openvswi-i79645311-2", "-p tcp -m tcp --dport 5432 -j DROP")
    _, out = run(capsys, str(CMP2_LOG), "--rules", str(folder), "--format", "json")
    docs = [json.loads(x) for x in out.splitlines()]
    assert [any(FLAG in w for w in d["warnings"]) for d in docs] == [True, False, False]


def test_without_rules_nothing_is_replayed(capsys: pytest.CaptureFixture[str]) -> None:
    _, out = run(capsys, str(CMP2_LOG))
    assert FLAG not in out
