"""The ledger of a live run and the cleanup that reads it: records round-trip, torn and
malformed lines are reported with file and line and skipped, a running owner's ledger is left
alone, and the machine-wide sysctl registry restores the value its first holder found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nodetrace.errors import DiagnosticSink, InputError
from nodetrace.live.cleanup import cleanup
from nodetrace.live.ledger import (
    LiveLedger,
    MonitorRecord,
    NetnsSysctlRecord,
    NftTableRecord,
    RuleRecord,
    RunRecord,
    SysctlRecord,
    read_ledger,
)
from nodetrace.live.process import ProcessId
from nodetrace.live.rules import IptablesRule
from nodetrace.live.sysctl_holders import SysctlHolders

RULE = IptablesRule("iptables-nft", "PREROUTING",
                    ("-s", "10.0.0.1", "-m", "comment", "--comment", "nodetrace live trace 0123456789ab",
                     "-j", "TRACE"))  # fmt: skip
GONE_NS = "nodetrace-test-no-such-ns"


def _dead_process() -> ProcessId:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    found = ProcessId.of(proc.pid)
    proc.wait()
    assert found is not None
    return found


def _run(run_id: str, owner: ProcessId) -> RunRecord:
    return RunRecord(run_id, owner, GONE_NS, "iptables-nft", "2026-12-05T16:00:00+00:00")


def test_records_round_trip(tmp_path: Path) -> None:
    run = _run("0123456789ab", ProcessId.me())
    ledger = LiveLedger.create(tmp_path, run)
    objects = [
        SysctlRecord("/proc/sys/net/netfilter/nf_log_all_netns", "1:x", "1", "0"),
        NetnsSysctlRecord(GONE_NS, "net.netfilter.nf_log.2", "NONE", "nf_log_ipv4"),
        MonitorRecord(GONE_NS, ProcessId(12, 34), ("xtables-monitor", "--trace")),
        RuleRecord(GONE_NS, RULE),
        NftTableRecord(GONE_NS, "inet", "nodetrace_0123456789ab"),
    ]
    for record in objects:
        ledger.record(record)
    sink = DiagnosticSink()
    contents = read_ledger(ledger.path, sink)
    assert contents.run == run and contents.objects == objects and not sink.items
    assert ledger.path == tmp_path / "0123456789ab.jsonl"


def test_torn_and_malformed_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    ledger = LiveLedger.create(tmp_path, _run("0123456789ab", ProcessId.me()))
    ledger.record(RuleRecord(GONE_NS, RULE))
    with open(ledger.path, "a") as f:
        f.write('{"kind": "iptables-rule", "netns": "x", "tool": 5}\n')
        f.write('{"kind": "iptables-rule", "netns": "x", "to')  # killed while writing
    sink = DiagnosticSink()
    contents = read_ledger(ledger.path, sink)
    assert contents.objects == [RuleRecord(GONE_NS, RULE)]
    messages = [(d.pos.line, d.message) for d in sink.items if d.pos is not None]
    assert messages[0][0] == 3 and "spec: a list of strings expected" in messages[0][1]
    assert messages[1][0] == 4 and "torn last line" in messages[1][1]
    assert all(d.pos is not None and d.pos.file == str(ledger.path) for d in sink.items)


def test_a_ledger_never_takes_over_another_runs_file(tmp_path: Path) -> None:
    run = _run("0123456789ab", ProcessId.me())
    LiveLedger.create(tmp_path, run)
    try:
        LiveLedger.create(tmp_path, run)
    except FileExistsError:
        return
    raise AssertionError("a second ledger of the same run was created")


def test_cleanup_leaves_a_running_owners_ledger_unless_forced(tmp_path: Path) -> None:
    ledger = LiveLedger.create(tmp_path, _run("0123456789ab", ProcessId.me()))
    ledger.record(RuleRecord(GONE_NS, RULE))
    report = cleanup(tmp_path, DiagnosticSink())
    (done,) = report.ledgers
    assert "still running" in done.skipped and done.removals == [] and ledger.path.exists()
    forced = cleanup(tmp_path, DiagnosticSink(), force=True)
    assert [r.result for r in forced.ledgers[0].removals] == ["gone"]
    assert not ledger.path.exists()


def test_cleanup_of_a_dead_run_removes_its_objects_newest_first(tmp_path: Path) -> None:
    ledger = LiveLedger.create(tmp_path, _run("0123456789ab", _dead_process()))
    ledger.record(RuleRecord(GONE_NS, RULE))
    ledger.record(NftTableRecord(GONE_NS, "inet", "nodetrace_0123456789ab"))
    report = cleanup(tmp_path, DiagnosticSink())
    removals = report.ledgers[0].removals
    assert [r.what.split()[0] for r in removals] == ["nft", "rule"]
    assert all(r.result == "gone" and "no longer exists" in r.detail for r in removals)
    assert not ledger.path.exists()


def test_a_recycled_pid_is_not_the_owner() -> None:
    me = ProcessId.me()
    assert me.alive()
    assert not ProcessId(me.pid, me.start + 1).alive()


def test_the_sysctl_registry_restores_what_its_first_holder_found(tmp_path: Path) -> None:
    sysctl = tmp_path / "nf_log_all_netns"
    sysctl.write_text("0\n")
    holders = SysctlHolders(sysctl, "1", registry=tmp_path / "registry")
    mine = f"{os.getpid()}:a"
    assert holders.acquire(mine) == "0" and sysctl.read_text() == "1"
    dead = f"{_dead_process().pid}:b"
    assert holders.acquire(dead) == "0"
    assert holders.holders() == [mine], "a dead holder is dropped"
    holders.release(mine)
    assert sysctl.read_text() == "0"
    # A holder killed before releasing: the next look restores the value.
    holders.acquire(dead)
    assert sysctl.read_text() == "1"
    assert holders.holders() == [] and sysctl.read_text() == "0"


def test_an_object_not_named_after_its_run_is_refused_not_removed(tmp_path: Path) -> None:
    ledger = LiveLedger.create(tmp_path, _run("0123456789ab", _dead_process()))
    foreign = IptablesRule("iptables-nft", "PREROUTING", ("-s", "10.0.0.1", "-j", "TRACE"))
    ledger.record(RuleRecord(GONE_NS, foreign))
    ledger.record(NftTableRecord(GONE_NS, "inet", "filter"))
    report = cleanup(tmp_path, DiagnosticSink())
    assert [r.result for r in report.ledgers[0].removals] == ["refused", "refused"]
    assert ledger.path.exists(), "kept for a person to read"


def test_a_ledger_folder_others_can_write_to_is_not_trusted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    try:
        cleanup(shared, DiagnosticSink())
    except InputError as err:
        assert "not trusted" in str(err)
        return
    raise AssertionError("a world-writable ledger folder was read")
