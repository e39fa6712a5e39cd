"""``nodetrace live cleanup``, and the same at the start of every ``live trace``: remove what the
ledgers of runs that are no longer running name, exactly that, and nothing else.

A ledger whose owner still runs (same pid, same start time) is left alone unless ``force``: that
run removes its own objects when it ends. Objects are removed newest first (the monitor and the
rules before the sysctl the monitor needed). A ledger is deleted only when every object in it
is gone; otherwise it stays, with the failures reported, for a later cleanup. Ledgers are read
as root, so only a folder no one else can write to is trusted, and an object that does not
carry its run's own name (a rule without the run's comment, a table not named after the run)
is refused, never removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nodetrace.errors import DiagnosticSink, InputError
from nodetrace.live.ledger import (
    MonitorRecord,
    NetnsSysctlRecord,
    NftTableRecord,
    Record,
    RuleRecord,
    RunRecord,
    SysctlRecord,
    ledgers,
    read_ledger,
    stale_staging,
)
from nodetrace.live.objects import Removal, remove
from nodetrace.live.rules import HOOK_CHAINS, TRACE_TABLE, comment, nft_table_name

TOOLS = frozenset({"iptables-legacy", "ip6tables-legacy", "iptables-nft", "ip6tables-nft"})
SYSCTLS = frozenset({"/proc/sys/net/netfilter/nf_log_all_netns"})
MONITORS = frozenset({"xtables-monitor", "nft"})
NETNS_SYSCTLS = {"net.netfilter.nf_log.2": "nf_log_ipv4", "net.netfilter.nf_log.10": "nf_log_ipv6"}
"""The per-namespace sysctls a run sets, and the only value it sets each to."""


@dataclass
class LedgerCleanup:
    path: Path
    run_id: str
    owner_pid: int | None
    removals: list[Removal] = field(default_factory=list)
    skipped: str = ""
    """Why the ledger was left alone (its run still runs), or ``""``."""

    @property
    def failed(self) -> list[Removal]:
        """Objects not removed: the ledger is kept (a refused one too, for a person to read)."""
        return [r for r in self.removals if r.result in ("failed", "refused")]


@dataclass
class CleanupReport:
    ledgers: list[LedgerCleanup] = field(default_factory=list)

    @property
    def failed(self) -> list[Removal]:
        return [r for c in self.ledgers for r in c.failed]

    @property
    def removed(self) -> list[Removal]:
        done = ("removed", "released", "restored")
        return [r for c in self.ledgers for r in c.removals if r.result in done]


def check_directory(directory: Path) -> None:
    """Ledgers direct what root removes: only a folder no one else can write to is read."""
    try:
        st = directory.stat()
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise InputError(
            f"{directory}: owned by uid {st.st_uid} or writable by others; ledgers there are "
            "not trusted (chmod go-w, chown to the user running nodetrace)"
        )


def _foreign(record: Record, run_id: str) -> str:
    """Why ``record`` is not an object a live run can have created (``""``: it is one).

    A ledger is only ever written by a run, but it is read as root: an object that does not
    carry the run's own name is refused rather than removed.
    """
    match record:
        case RunRecord():
            return ""
        case RuleRecord():
            rule = record.rule
            ok = (
                rule.tool in TOOLS
                and rule.table == TRACE_TABLE
                and rule.chain in HOOK_CHAINS
                and comment(run_id) in rule.spec
                and rule.spec[-2:] == ("-j", "TRACE")
            )
            return "" if ok else f"not a trace rule of run {run_id}: left alone"
        case NftTableRecord():
            ok = record.family == "inet" and record.name == nft_table_name(run_id)
            return "" if ok else f"not the nft table of run {run_id}: left alone"
        case SysctlRecord():
            return "" if record.path in SYSCTLS else f"{record.path}: not a sysctl a run holds"
        case NetnsSysctlRecord():
            ok = NETNS_SYSCTLS.get(record.key) == record.wanted
            return "" if ok else f"{record.key}={record.wanted}: not a sysctl a run sets"
        case MonitorRecord():
            ok = any(word in MONITORS for word in record.argv)
            return "" if ok else "not a trace monitor: left alone"


def _what(record: Record) -> str:
    match record:
        case RuleRecord():
            return f"rule {record.rule.describe()}"
        case NftTableRecord():
            return f"nft table {record.family} {record.name}"
        case SysctlRecord():
            return f"sysctl {record.path}"
        case NetnsSysctlRecord():
            return f"sysctl {record.key} in {record.netns or 'the main namespace'}"
        case MonitorRecord():
            return f"process {record.process.pid}"
        case RunRecord():
            return f"run {record.run_id}"


def cleanup(
    directory: Path, sink: DiagnosticSink, *, force: bool = False, skip: Path | None = None
) -> CleanupReport:
    """Remove the objects of every ledger in ``directory`` (but ``skip``, the caller's own)."""
    report = CleanupReport()
    check_directory(directory)
    for staging in stale_staging(directory):
        staging.unlink(missing_ok=True)
    for path in ledgers(directory):
        if skip is not None and path == skip:
            continue
        contents = read_ledger(path, sink)
        run = contents.run
        done = LedgerCleanup(path, run.run_id if run else path.stem, run.owner.pid if run else None)
        report.ledgers.append(done)
        if run is not None and run.owner.alive() and not force:
            done.skipped = (
                f"run {run.run_id} is still running (pid {run.owner.pid}); it removes its own "
                "objects when it ends (--force removes them now)"
            )
            continue
        for record in reversed(contents.objects):
            refused = _foreign(record, done.run_id)
            removal = Removal(_what(record), "refused", refused) if refused else remove(record)
            if removal is not None:
                done.removals.append(removal)
        if not done.failed:
            path.unlink(missing_ok=True)
    return report
