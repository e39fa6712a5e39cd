"""The words of an audit: a finding, how bad it is, the lines that prove it, and the checks
that could not run.

Every finding quotes the node's own text (a rule, a flow, a sysctl, an output line) with the
file and line it was read from, and gives a read-only command an operator can run to see the
same fact on the node. A check whose input the snapshot lacks does not guess: it becomes a
:class:`NotRun` naming the command that would let it run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    """How soon someone should look: ``critical`` breaks or bypasses a path now, ``warning``
    is wrong but not (yet) losing packets everywhere, ``info`` is worth knowing."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
"""Most urgent first, for sorting."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """One line of the node's data that a finding rests on."""

    text: str
    """The rule / flow / sysctl / output line as written."""
    source: str
    """Where it was read: ``file:line``, or the snapshot member when no line is known."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found on the node."""

    check: str
    """The catalogue id (docs/audit.md), e.g. ``host-through-neutron-chains``."""
    severity: Severity
    title: str
    """One line for people."""
    subject: str
    """The port / chain / flow / device it is about."""
    evidence: tuple[Evidence, ...]
    confirm: str
    """A read-only command to confirm it on the node."""


@dataclass(frozen=True, slots=True)
class NotRun:
    """A check the snapshot does not hold the data for (or holds only in part)."""

    check: str
    reason: str
    command: str = ""
    """The command whose output would let the check run (empty when none would)."""


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Every finding of one snapshot, most severe first, and the checks that could not run."""

    source: str
    findings: tuple[Finding, ...]
    not_run: tuple[NotRun, ...]
    checks: tuple[str, ...]
    """Every check that was attempted, in catalogue order."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one family of checks returns: its findings and what it could not look at."""

    findings: tuple[Finding, ...] = ()
    not_run: tuple[NotRun, ...] = ()

    def __add__(self, other: CheckResult) -> CheckResult:
        return CheckResult(self.findings + other.findings, self.not_run + other.not_run)
