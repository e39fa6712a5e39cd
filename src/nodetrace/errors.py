"""Exceptions and diagnostics shared by every layer.

Input comes from other machines and is often damaged: parsers report each problem as a
:class:`Diagnostic` with its file and line, keep going, and raise :class:`InputError` only
when nothing usable is left. The CLI turns an :class:`NodetraceError` into a one-line message
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class SourcePos:
    """Where a piece of input came from: a file name (or ``<stdin>``) and a 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Severity(StrEnum):
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in the input: where, how bad, and why."""

    pos: SourcePos
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.pos}: {self.severity}: {self.message}"


class NodetraceError(Exception):
    """Base of every error nodetrace raises on purpose (bad input, bad usage)."""


class InputError(NodetraceError):
    """The input could not be used at all (missing file, unreadable archive, nothing parsed)."""


MAX_TOKEN_SHOWN = 60
"""How much of an offending word an error message quotes."""


class ParseError(NodetraceError):
    """A line of input does not have the expected form.

    ``token`` is the offending word (if one can be named) and ``expected`` says what would have
    been accepted there, so the message can point at the exact spot.
    """

    def __init__(
        self, pos: SourcePos, reason: str, *, token: str | None = None, expected: str | None = None
    ) -> None:
        self.pos = pos
        self.reason = reason
        self.token = token
        self.expected = expected
        detail = reason
        if token is not None:
            # A word of binary junk or a runaway line would otherwise fill the terminal.
            shown = token if len(token) <= MAX_TOKEN_SHOWN else token[:MAX_TOKEN_SHOWN] + "…"
            detail += f" at {shown!r}"
        if expected is not None:
            detail += f" (expected {expected})"
        self.detail = detail
        super().__init__(f"{pos}: {detail}")

    def as_diagnostic(self) -> Diagnostic:
        return Diagnostic(self.pos, Severity.ERROR, self.detail)


class UsageError(NodetraceError):
    """The command line asks for something impossible (unknown hook, bad flow syntax...)."""


class DiagnosticSink:
    """Collects diagnostics from a lenient parse; with ``strict`` it raises on the first error.

    Parsers take an optional sink: none means strict (tests, round trips), a sink means
    "report and go on" (the CLI, where partial input must still yield what it can).
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.items: list[Diagnostic] = []

    def error(self, err: ParseError) -> None:
        if self.strict:
            raise err
        self.items.append(err.as_diagnostic())

    def warn(self, pos: SourcePos, message: str) -> None:
        self.items.append(Diagnostic(pos, Severity.WARNING, message))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]


def report(sink: DiagnosticSink | None, err: ParseError) -> None:
    """Raise ``err`` in a strict parse (no sink), else record it and let the parser go on."""
    if sink is None:
        raise err
    sink.error(err)


def report_line(
    sink: DiagnosticSink | None,
    source: str,
    line: int,
    reason: str,
    token: str | None = None,
    expected: str | None = None,
) -> None:
    """:func:`report` that line ``line`` of ``source`` is malformed, and why."""
    report(sink, ParseError(SourcePos(source, line), reason, token=token, expected=expected))
