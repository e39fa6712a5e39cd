"""Create and remove the objects of a live run, each by its exact identity.

Creation always goes through the ledger first (:meth:`LiveLedger.record`), then the command.
Removal is by exact spec: ``iptables -D`` with the rule's whole spec (it carries the run's
comment, so no other rule can match it), ``nft delete table`` of the run's own table. An object
that is already gone (never created because the run died first, or removed by someone else)
is fine; any other failure is reported, and the ledger is kept so that a later cleanup retries.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from nodetrace.live.command import CommandError, run
from nodetrace.live.ledger import (
    LiveLedger,
    MonitorRecord,
    NetnsSysctlRecord,
    NftTableRecord,
    Record,
    RuleRecord,
    RunRecord,
    SysctlRecord,
)
from nodetrace.live.rules import IptablesRule, NftTable
from nodetrace.live.sysctl_holders import SysctlHolders

MAX_COPIES = 16
"""A rule re-inserted after a rewrite may exist twice at most; this bounds the delete loop."""


@dataclass(frozen=True, slots=True)
class Removal:
    """What removing one object did: ``removed``, ``released`` (a sysctl holder), ``restored``
    (a namespace's sysctl), ``gone``
    (nothing to remove), ``failed``, or ``refused`` (the ledger names something no run makes)."""

    what: str
    result: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.what}: {self.result}" + (f" ({self.detail})" if self.detail else "")


def netns_exists(netns: str) -> bool:
    return not netns or Path("/run/netns", netns).exists()


def where(netns: str) -> str:
    return f" in namespace {netns}" if netns else ""


# --- iptables rules ---------------------------------------------------------------------------


def insert_rule(ledger: LiveLedger, netns: str, rule: IptablesRule) -> None:
    ledger.record(RuleRecord(netns, rule))
    run(rule.insert_argv(), netns=netns)


def rule_present(netns: str, rule: IptablesRule) -> bool:
    """``iptables -C``: exit 0 present, 1 absent; anything else is an error."""
    proc = run(rule.check_argv(), netns=netns, check=False)
    if proc.returncode in (0, 1):
        return proc.returncode == 0
    raise CommandError(
        f"{' '.join(rule.check_argv())}: exit {proc.returncode}: {proc.stderr.strip()}"
    )


def remove_rule(netns: str, rule: IptablesRule) -> Removal:
    what = f"rule {rule.describe()}{where(netns)}"
    if not netns_exists(netns):
        return Removal(what, "gone", "the namespace no longer exists")
    removed = 0
    try:
        while removed < MAX_COPIES and rule_present(netns, rule):
            run(rule.delete_argv(), netns=netns)
            removed += 1
    except CommandError as err:
        return Removal(what, "failed", str(err))
    return Removal(what, "removed" if removed else "gone")


# --- the run's own nf_tables table ------------------------------------------------------------


def create_table(ledger: LiveLedger, netns: str, table: NftTable) -> None:
    ledger.record(NftTableRecord(netns, table.family, table.name))
    run(["nft", "-f", "-"], netns=netns, input=table.create_text())


def table_present(netns: str, family: str, name: str) -> bool:
    proc = run(["nft", "list", "table", family, name], netns=netns, check=False)
    if proc.returncode == 0:
        return True
    if "No such file or directory" in proc.stderr:
        return False
    raise CommandError(f"nft list table {family} {name}: {proc.stderr.strip()}")


def remove_table(netns: str, family: str, name: str) -> Removal:
    what = f"nft table {family} {name}{where(netns)}"
    if not netns_exists(netns):
        return Removal(what, "gone", "the namespace no longer exists")
    proc = run(["nft", "delete", "table", family, name], netns=netns, check=False)
    if proc.returncode == 0:
        return Removal(what, "removed")
    if "No such file or directory" in proc.stderr:
        return Removal(what, "gone")
    return Removal(what, "failed", proc.stderr.strip())


# --- sysctls and monitors ---------------------------------------------------------------------


def hold_sysctl(ledger: LiveLedger, path: Path, wanted: str, token: str) -> SysctlRecord:
    """Turn a machine-wide sysctl to ``wanted`` for as long as this run holds it.

    The value recorded is the one found now; the holders' registry restores the value found by
    its first holder, which is the node's own when other tools hold it too.
    """
    record = SysctlRecord(str(path), token, wanted, path.read_text().strip())
    ledger.record(record)
    SysctlHolders(path, wanted).acquire(token)
    return record


def release_sysctl(record: SysctlRecord) -> Removal:
    what = f"sysctl {record.path} (held at {record.wanted})"
    try:
        SysctlHolders(Path(record.path), record.wanted).release(record.token)
    except OSError as err:
        return Removal(what, "failed", str(err))
    return Removal(what, "released", f"restored to {record.original} when no other holder is left")


def read_sysctl(netns: str, key: str) -> str:
    return run(["sysctl", "-n", key], netns=netns).stdout.strip()


def set_sysctl(ledger: LiveLedger, netns: str, key: str, wanted: str) -> NetnsSysctlRecord:
    """Set a sysctl of namespace ``netns`` for the run, recording the value found first."""
    record = NetnsSysctlRecord(netns, key, read_sysctl(netns, key), wanted)
    ledger.record(record)
    run(["sysctl", "-qw", f"{key}={wanted}"], netns=netns)
    return record


def restore_sysctl(record: NetnsSysctlRecord) -> Removal:
    """Put back the value found, unless someone changed it since (then theirs stays)."""
    what = f"sysctl {record.key}{where(record.netns)}"
    if not netns_exists(record.netns):
        return Removal(what, "gone", "the namespace no longer exists")
    try:
        now = read_sysctl(record.netns, record.key)
        if now == record.original:
            return Removal(what, "gone", f"already {now}")
        if now != record.wanted:
            return Removal(what, "gone", f"changed to {now} since; left as it is")
        run(["sysctl", "-qw", f"{record.key}={record.original}"], netns=record.netns)
    except CommandError as err:
        return Removal(what, "failed", str(err))
    return Removal(what, "restored", f"back to {record.original}")


def stop_monitor(record: MonitorRecord) -> Removal:
    what = f"monitor pid {record.process.pid} ({' '.join(record.argv[-3:])})"
    if not record.process.alive():
        return Removal(what, "gone")
    try:
        os.kill(record.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return Removal(what, "gone")
    return Removal(what, "removed")


def remove(record: Record) -> Removal | None:
    """Remove one recorded object (``None`` for the run line, which is not an object)."""
    match record:
        case RunRecord():
            return None
        case RuleRecord():
            return remove_rule(record.netns, record.rule)
        case NftTableRecord():
            return remove_table(record.netns, record.family, record.name)
        case SysctlRecord():
            return release_sysctl(record)
        case NetnsSysctlRecord():
            return restore_sysctl(record)
        case MonitorRecord():
            return stop_monitor(record)
