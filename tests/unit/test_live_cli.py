"""``nodetrace live``'s command line: mistakes are one line, cleanup with nothing to do says so,
and its JSON names the ledgers it read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.live.ledger import LiveLedger, RuleRecord, RunRecord
from nodetrace.live.process import ProcessId
from nodetrace.live.rules import IptablesRule


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        assert isinstance(exit_.code, int)
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["live", "trace"], "say what to trace"),
        (["live", "trace", "--packet", "arp"], "TRACE follows IPv4 and IPv6 packets only"),
        (["live", "trace", "--packet", "tcp,tp_dst=22", "--rate", "0"], "--rate"),
        (["live", "trace", "--packet", "tcp", "--netns", "no-such-ns-x1"], "no such namespace"),
    ],
    ids=["nothing-to-trace", "arp", "zero-rate", "missing-namespace"],
)
def test_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("NODETRACE_LIVE_DIR", str(tmp_path))
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and words in err


def test_cleanup_with_no_ledger_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODETRACE_LIVE_DIR", str(tmp_path / "none"))
    code, out, _ = _run(capsys, "live", "cleanup")
    assert code == 0 and "nothing to clean up" in out


def test_cleanup_json_leaves_a_running_run_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunRecord("0123456789ab", ProcessId.me(), "ns-gone-x", "iptables-nft", "t")
    ledger = LiveLedger.create(tmp_path, run)
    rule = IptablesRule("iptables-nft", "OUTPUT",
                        ("-m", "comment", "--comment", "nodetrace live trace 0123456789ab",
                         "-j", "TRACE"))  # fmt: skip
    ledger.record(RuleRecord("ns-gone-x", rule))
    monkeypatch.setenv("NODETRACE_LIVE_DIR", str(tmp_path))
    code, out, _ = _run(capsys, "live", "cleanup", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and (doc["command"], doc["event"]) == ("live", "cleanup")
    (entry,) = doc["ledgers"]
    assert entry["run"] == "0123456789ab" and "still running" in entry["skipped"]
    assert entry["objects"] == [] and ledger.path.exists()
