"""The ledger of one live run: every object the run creates on the node, written to disk
*before* it is created, so that whatever happens to the run its objects can be removed.

One JSON-lines file per run in ``/run/nodetrace/live/`` (``NODETRACE_LIVE_DIR`` overrides):
the first line names the run and its owner (pid and start time), each further line one object.
Every line is flushed and fsynced before the object exists. A torn last line (the run was killed
while writing it) names an object that was never created, because creation waits for the write;
it is reported and skipped, as is any other malformed line (file, line, reason).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nodetrace.errors import DiagnosticSink, SourcePos
from nodetrace.live.process import ProcessId
from nodetrace.live.rules import IptablesRule

DEFAULT_DIR = Path("/run/nodetrace/live")
DIR_VARIABLE = "NODETRACE_LIVE_DIR"
SUFFIX = ".jsonl"
STAGING = ".staging"
"""A ledger being created (``.RUN.PID.staging``); a run killed right then leaves one."""


def ledger_dir() -> Path:
    return Path(os.environ.get(DIR_VARIABLE) or DEFAULT_DIR)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The first line: which run, and the process that owns it."""

    run_id: str
    owner: ProcessId
    netns: str
    backend: str
    started: str


@dataclass(frozen=True, slots=True)
class RuleRecord:
    netns: str
    rule: IptablesRule


@dataclass(frozen=True, slots=True)
class NftTableRecord:
    netns: str
    family: str
    name: str


@dataclass(frozen=True, slots=True)
class SysctlRecord:
    """A machine-wide sysctl this run holds through :class:`~nodetrace.live.sysctl_holders.SysctlHolders`."""

    path: str
    token: str
    wanted: str
    original: str


@dataclass(frozen=True, slots=True)
class NetnsSysctlRecord:
    """A sysctl of one namespace the run set (``sysctl -w``), with the value it found."""

    netns: str
    key: str
    original: str
    wanted: str


@dataclass(frozen=True, slots=True)
class MonitorRecord:
    """A trace monitor the run started (it also dies with the run: parent-death signal)."""

    netns: str
    process: ProcessId
    argv: tuple[str, ...]


Record = RunRecord | RuleRecord | NftTableRecord | SysctlRecord | NetnsSysctlRecord | MonitorRecord


def encode(record: Record) -> dict[str, Any]:
    match record:
        case RunRecord():
            return {"kind": "run", "run": record.run_id, "pid": record.owner.pid,
                    "start": record.owner.start, "netns": record.netns,
                    "backend": record.backend, "started": record.started}  # fmt: skip
        case RuleRecord():
            r = record.rule
            return {"kind": "iptables-rule", "netns": record.netns, "tool": r.tool,
                    "table": r.table, "chain": r.chain, "spec": list(r.spec)}  # fmt: skip
        case NftTableRecord():
            return {"kind": "nft-table", "netns": record.netns, "family": record.family,
                    "name": record.name}  # fmt: skip
        case SysctlRecord():
            return {"kind": "sysctl", "path": record.path, "token": record.token,
                    "wanted": record.wanted, "original": record.original}  # fmt: skip
        case NetnsSysctlRecord():
            return {"kind": "netns-sysctl", "netns": record.netns, "key": record.key,
                    "original": record.original, "wanted": record.wanted}  # fmt: skip
        case MonitorRecord():
            return {"kind": "monitor", "netns": record.netns, "pid": record.process.pid,
                    "start": record.process.start, "argv": list(record.argv)}  # fmt: skip


def decode(d: dict[str, Any]) -> Record:
    """A record from its JSON object; a missing or ill-typed key raises ``ValueError``."""
    kind = d.get("kind")
    if kind == "run":
        return RunRecord(_str(d, "run"), ProcessId(_int(d, "pid"), _int(d, "start")),
                         _str(d, "netns"), _str(d, "backend"), _str(d, "started"))  # fmt: skip
    if kind == "iptables-rule":
        spec = d.get("spec")
        if not isinstance(spec, list) or not all(isinstance(s, str) for s in spec):
            raise ValueError("spec: a list of strings expected")
        rule = IptablesRule(_str(d, "tool"), _str(d, "chain"), tuple(spec), _str(d, "table"))
        return RuleRecord(_str(d, "netns"), rule)
    if kind == "nft-table":
        return NftTableRecord(_str(d, "netns"), _str(d, "family"), _str(d, "name"))
    if kind == "sysctl":
        return SysctlRecord(_str(d, "path"), _str(d, "token"), _str(d, "wanted"),
                            _str(d, "original"))  # fmt: skip
    if kind == "netns-sysctl":
        return NetnsSysctlRecord(_str(d, "netns"), _str(d, "key"), _str(d, "original"),
                                 _str(d, "wanted"))  # fmt: skip
    if kind == "monitor":
        argv = d.get("argv")
        if not isinstance(argv, list):
            raise ValueError("argv: a list expected")
        return MonitorRecord(_str(d, "netns"), ProcessId(_int(d, "pid"), _int(d, "start")),
                             tuple(str(a) for a in argv))  # fmt: skip
    raise ValueError(f"unknown kind {kind!r}")


def _str(d: dict[str, Any], key: str) -> str:
    value = d.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key}: a string expected")
    return value


def _int(d: dict[str, Any], key: str) -> int:
    value = d.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key}: a number expected")
    return value


def _line(record: Record) -> bytes:
    return (json.dumps(encode(record), separators=(",", ":")) + "\n").encode()


class LiveLedger:
    """The ledger file of one run, written by that run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, directory: Path, run: RunRecord) -> LiveLedger:
        """The run's ledger, which appears whole with its first line: it is written to a
        temporary name and linked into place, so another run's cleanup never sees a ledger
        without its owner (it would take it for a dead run's)."""
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ledger = cls(directory / f"{run.run_id}{SUFFIX}")
        staging = directory / f".{run.run_id}.{os.getpid()}{STAGING}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, _line(run))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(staging, ledger.path)  # fails if the name exists: never another run's file
        finally:
            staging.unlink()
        return ledger

    def record(self, record: Record) -> None:
        """Append ``record`` and wait until it is on disk; only then may the object be created."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, _line(record))
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class LedgerContents:
    """What one ledger file says, read leniently."""

    path: Path
    run: RunRecord | None = None
    objects: list[Record] = field(default_factory=list)


def read_ledger(path: Path, sink: DiagnosticSink) -> LedgerContents:
    """The run and objects of ledger ``path``; every bad line is reported to ``sink`` and skipped."""
    out = LedgerContents(path)
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        sink.warn(SourcePos(name, 0), f"cannot read ({err.strerror or err})")
        return out
    lines = data.split(b"\n")
    torn_last = bool(lines) and lines[-1] != b""
    for lineno, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        last = lineno == len(lines)
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            record = decode(obj)
        except (ValueError, UnicodeDecodeError) as err:
            why = (
                "torn last line (the run was killed while writing it; its object was never created)"
                if last and torn_last
                else f"malformed ledger line skipped: {err}"
            )
            sink.warn(SourcePos(name, lineno), why)
            continue
        if isinstance(record, RunRecord):
            if out.run is not None:
                sink.warn(SourcePos(name, lineno), "a second run line skipped")
                continue
            out.run = record
        else:
            out.objects.append(record)
    return out


def stale_staging(directory: Path) -> Iterator[Path]:
    """Ledgers a killed run was creating: they name no object (the run line comes first), and
    their process (in the name) no longer runs."""
    if not directory.is_dir():
        return
    for path in directory.glob(f".*{STAGING}"):
        pid = path.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            yield path


def ledgers(directory: Path) -> Iterator[Path]:
    """The ledger files of ``directory``, oldest first (none if it does not exist)."""
    if not directory.is_dir():
        return iter(())
    files = [p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file()]
    return iter(sorted(files, key=lambda p: (p.stat().st_mtime, p.name)))
