"""``nodetrace live trace``: one run, from inserting its trace rules to removing them.

The order is what makes it safe: leftovers of dead runs are removed first; the ledger is
created; the capture starts (so no traced packet is missed); each object is recorded, then
created; the rules are read for explaining. While the run goes on it checks, every second, that
its rules are still there (a Neutron agent restoring the raw table removes them) and puts them
back, saying so. Whatever ends the run (the duration, the packet count, Ctrl-C, SIGTERM, an
error), the ``finally`` removes what the ledger names with further signals ignored; kill -9
leaves the ledger for ``nodetrace live cleanup`` and the next run.
"""

from __future__ import annotations

import os
import select
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Protocol

from nodetrace.errors import DiagnosticSink, InputError, NodetraceError, UsageError
from nodetrace.live.backend import Detected, detect
from nodetrace.live.capture import KernelLog, Monitor
from nodetrace.live.cleanup import cleanup
from nodetrace.live.command import CommandError, run
from nodetrace.live.explain import LiveRules, explain_lines
from nodetrace.live.ledger import (
    LiveLedger,
    MonitorRecord,
    NftTableRecord,
    Record,
    RuleRecord,
    RunRecord,
    ledger_dir,
)
from nodetrace.live.objects import (
    create_table,
    hold_sysctl,
    insert_rule,
    netns_exists,
    read_sysctl,
    remove,
    rule_present,
    set_sysctl,
    table_present,
)
from nodetrace.live.process import ProcessId
from nodetrace.live.report import LivePacket, LiveSummary, Notice, Reporter, RunInfo, Status
from nodetrace.live.rules import Backend, IptablesRule, Limit, NftTable, iptables_rules, nft_table
from nodetrace.live.selector import Selection
from nodetrace.model.packet import Family
from nodetrace.model.trace import Outcome
from nodetrace.tracelog.observed import ObservedPacket

NF_LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")
STATUS_EVERY = 0.5
MAX_BATCH = 5000
"""Lines explained at once at most, when traced packets keep coming without a pause."""


@dataclass(frozen=True, slots=True)
class TraceOptions:
    selection: Selection
    netns: str = ""
    backend: Backend | None = None
    """``None``: detected from the namespace's tables."""
    limit: Limit = field(default_factory=Limit)
    duration: float | None = None
    count: int | None = None
    directory: Path | None = None
    """The ledger folder (``None``: ``NODETRACE_LIVE_DIR`` or ``/run/nodetrace/live``)."""
    check_every: float = 1.0
    reread_every: float = 2.0
    quiet: float = 0.3
    """A batch of lines is explained once no new line came for this long."""


class Diagnoser(Protocol):
    """Compares an observed packet with a prediction (``nodetrace.cli._live_diagnosis.LiveDiagnosis``)."""

    def refresh(self) -> str:
        """Read the node again for predictions; return where that snapshot is kept."""
        ...

    def __call__(self, obs: ObservedPacket) -> object | None: ...


class Stop(Exception):
    """The run is asked to end (SIGTERM); ``reason`` goes into the summary."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LiveTrace:
    def __init__(
        self, options: TraceOptions, reporter: Reporter, *, diagnose: Diagnoser | None = None
    ) -> None:
        self.options = options
        self.reporter = reporter
        self.diagnose = diagnose
        self.run_id = uuid.uuid4().hex[:12]
        self.summary = LiveSummary(self.run_id)
        if diagnose is not None:
            self.summary.divergent = 0
        self._t0 = time.monotonic()
        self._ledger: LiveLedger | None = None
        self._created: list[Record] = []
        self._rules: tuple[IptablesRule, ...] = ()
        self._table: NftTable | None = None
        self._kmsg: KernelLog | None = None
        self._monitor: Monitor | None = None
        self._explainer: LiveRules | None = None
        self._pending: list[str] = []
        self._last_line = 0.0

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> LiveSummary:
        opts = self.options
        if opts.netns and not netns_exists(opts.netns):
            raise UsageError(f"--netns {opts.netns}: no such namespace (ip netns list)")
        if os.geteuid() != 0:
            raise InputError("live trace inserts netfilter trace rules: run it as root")
        directory = opts.directory or ledger_dir()
        self._clean_leftovers(directory)
        detected = (
            Detected(opts.backend, "chosen with --backend") if opts.backend else detect(opts.netns)
        )
        failure: NodetraceError | None = None
        with _signals_stop():
            try:
                self._start(directory, detected)
                self._loop()
            except KeyboardInterrupt:
                self.summary.stopped_by = "interrupted"
            except Stop as stop:
                self.summary.stopped_by = stop.reason
            except NodetraceError as err:
                # Said after the summary, which tells what was removed on the way out.
                self.summary.stopped_by = "error"
                failure = err
            finally:
                with _signals_ignored():
                    try:
                        self._flush()
                    except Stop:
                        pass  # --count reached by the last lines: the run ends anyway
                    finally:
                        self._teardown()
        self.summary.elapsed = self._elapsed()
        self.reporter.finished(self.summary)
        if failure is not None:
            raise failure
        return self.summary

    def _clean_leftovers(self, directory: Path) -> None:
        sink = DiagnosticSink()
        report = cleanup(directory, sink)
        for done in report.ledgers:
            if done.skipped:
                continue
            for removal in done.removals:
                self._notice("cleanup", f"left by dead run {done.run_id}: {removal}")
        for d in sink.items:
            self._notice("cleanup", str(d))

    def _start(self, directory: Path, detected: Detected) -> None:
        opts = self.options
        backend = detected.backend
        notes = list(opts.selection.notes)
        if backend is Backend.NFTABLES:
            self._table, more = nft_table(opts.selection, self.run_id, opts.limit)
            inserted = tuple(
                f"nft table inet {self._table.name}: {r}" for _, r in self._table.rules
            )
        else:
            self._rules, more = iptables_rules(opts.selection, backend, self.run_id, opts.limit)
            inserted = tuple(r.describe() for r in self._rules)
        notes += more
        started = datetime.now(UTC).isoformat(timespec="seconds")
        run = RunRecord(self.run_id, ProcessId.me(), opts.netns, backend.value, started)
        self._ledger = LiveLedger.create(directory, run)
        notes += _raw_tables_created(self._rules, opts.netns)
        capture = self._start_capture(backend, notes)
        self._insert()
        self._explainer = LiveRules(opts.netns, backend, opts.selection.families)
        self._explainer.read()
        self.summary.rules_read = 1
        # Said once the rules are in: from now on, matching packets are traced.
        self.reporter.started(
            RunInfo(
                run_id=self.run_id,
                netns=opts.netns,
                backend=backend.value,
                backend_reason=detected.reason,
                selectors=tuple(s.describe() for s in opts.selection.selectors),
                inserted=inserted,
                capture=capture,
                ledger=str(self._ledger.path),
                notes=tuple(notes),
            )
        )
        self._refresh_diagnosis()

    def _start_capture(self, backend: Backend, notes: list[str]) -> str:
        ledger = self._own_ledger()
        netns = self.options.netns
        if backend is Backend.LEGACY:
            if netns:
                token = f"{os.getpid()}:{self.run_id}"
                self._created.append(hold_sysctl(ledger, NF_LOG_ALL_NETNS, "1", token))
                notes.append(
                    "the kernel logs TRACE records of a namespace only while "
                    "net.netfilter.nf_log_all_netns is 1 (machine-wide); it is set for this run "
                    "and restored after it"
                )
            self._bind_kernel_logger(notes)
            self._kmsg = KernelLog()
            notes.append(
                "kernel log records do not say which rule started a trace, nor (outside the "
                "main namespace) which namespace logged them: packets are kept by their fields "
                "and time, so another tracer's records of the same traffic would show too"
            )
            return "/dev/kmsg (iptables-legacy TRACE records)"
        kind = "xtables" if backend is Backend.NFT else "nft"
        self._monitor = self._new_monitor(kind)
        return " ".join(self._monitor.argv)

    def _bind_kernel_logger(self, notes: list[str]) -> None:
        """Legacy TRACE goes to the logger bound to the family in the namespace
        (``net.netfilter.nf_log.2``/``.10``): with none bound nothing is logged, so the kernel
        log one is bound for the run and the binding found is put back after it."""
        netns = self.options.netns
        for family in self.options.selection.families:
            key = f"net.netfilter.nf_log.{family.nfproto}"
            wanted = "nf_log_ipv4" if family is Family.IPV4 else "nf_log_ipv6"
            found = read_sysctl(netns, key)
            if found == wanted:
                continue
            if found == "nfnetlink_log":
                where = f" in namespace {netns}" if netns else ""
                raise InputError(
                    f"{key} is nfnetlink_log{where}: legacy TRACE records go to an NFLOG group "
                    "there (ulogd?), not to the kernel log live trace reads; it is left as it is"
                )
            self._created.append(set_sysctl(self._own_ledger(), netns, key, wanted))
            notes.append(
                f"{key} was {found}: TRACE records go nowhere without a logger, so it is "
                f"{wanted} for this run and {found} again after it"
            )

    def _new_monitor(self, kind: str) -> Monitor:
        monitor = Monitor(self.options.netns, kind)
        monitor.start()
        # Recorded once it has a pid (a process cannot be named before it exists); should
        # the run die before this line, the parent-death signal has already stopped it.
        record = MonitorRecord(self.options.netns, _process(monitor.pid), monitor.argv)
        self._own_ledger().record(record)
        self._created.append(record)
        return monitor

    def _insert(self) -> None:
        ledger = self._own_ledger()
        netns = self.options.netns
        if self._table is not None:
            self._created.append(NftTableRecord(netns, self._table.family, self._table.name))
            create_table(ledger, netns, self._table)
            return
        # Inserted at position 1 one after another: the last ends up on top, so insert in
        # reverse to keep the order in which they were built.
        for rule in reversed(self._rules):
            self._created.append(RuleRecord(netns, rule))
            insert_rule(ledger, netns, rule)

    def _loop(self) -> None:
        opts = self.options
        next_check = time.monotonic() + opts.check_every
        next_read = time.monotonic() + opts.reread_every
        next_status = time.monotonic()
        while True:
            now = time.monotonic()
            if opts.duration is not None and now - self._t0 >= opts.duration:
                raise Stop("duration")
            source = self._kmsg or self._monitor
            assert source is not None
            ready, _, _ = select.select([source.fileno()], [], [], 0.1)
            lines = source.read() if ready else []
            if lines:
                self._pending += lines
                self._last_line = time.monotonic()
            now = time.monotonic()
            if self._pending and (
                now - self._last_line >= opts.quiet or len(self._pending) >= MAX_BATCH
            ):
                self._flush()
            if self._monitor is not None and self._monitor.exited() is not None:
                self._restart_monitor()
            if self._kmsg is not None and self._kmsg.lost:
                self._notice("lost", f"{self._kmsg.lost} kernel log read(s) lost records")
                self._kmsg.lost = 0
            if now >= next_check:
                next_check = now + opts.check_every
                if self._put_back():
                    next_read = now
            if now >= next_read:
                next_read = now + opts.reread_every
                self._reread()
            if now >= next_status:
                next_status = now + STATUS_EVERY
                self.reporter.status(self._status())

    # --- steps of the loop -------------------------------------------------------------------

    def _flush(self) -> None:
        if not self._pending or self._explainer is None:
            return
        lines, self._pending = self._pending, []
        packets, problems = explain_lines(lines, self._explainer.book, "live")
        for problem in problems:
            self._notice("problem", str(problem))
        for obs in packets:
            if not self.options.selection.matches(obs.trace.packet):
                self.summary.ignored += 1
                continue
            self._count(obs)

    def _count(self, obs: ObservedPacket) -> None:
        s = self.summary
        s.seen += 1
        obs = replace(obs, index=s.seen)
        s.outcomes[obs.trace.outcome.value] += 1
        if obs.trace.outcome is not Outcome.UNKNOWN:
            s.explained += 1
        diagnosis = self._diagnosis(obs)
        divergence = getattr(diagnosis, "divergence", None)
        if divergence is not None and not divergence.same:
            s.divergent = (s.divergent or 0) + 1
        self.reporter.packet(LivePacket(s.seen, obs, self._elapsed(), diagnosis))
        if self.options.count is not None and s.seen >= self.options.count:
            raise Stop("count")

    def _put_back(self) -> bool:
        """Re-insert trace rules that vanished; True when some had."""
        netns = self.options.netns
        try:
            if self._table is not None:
                if table_present(netns, self._table.family, self._table.name):
                    return False
                create_table(self._own_ledger(), netns, self._table)
                what = f"nft table inet {self._table.name}"
            else:
                missing = [r for r in self._rules if not rule_present(netns, r)]
                if not missing:
                    return False
                for rule in reversed(missing):
                    # Already in the ledger: the same spec is removed however often it was put in.
                    run(rule.insert_argv(), netns=netns)
                what = f"{len(missing)} trace rule(s)"
        except CommandError as err:
            self._notice("problem", f"checking the trace rules failed: {err}")
            return False
        self.summary.reinserted += 1
        self._notice(
            "reinserted",
            f"{what} vanished (the table was rewritten, e.g. by the Neutron agent); re-inserted",
        )
        return True

    def _reread(self) -> None:
        if self._explainer is None:
            return
        try:
            changed = self._explainer.read()
        except CommandError as err:
            self._notice("problem", f"reading the rules failed: {err}")
            return
        if changed:
            self.summary.rules_read += 1
            self._notice(
                "rules-changed",
                "the ruleset changed; packets from now on are explained with the new one",
            )
        for problem in self._explainer.problems:
            self._notice("problem", problem)
        self._explainer.problems.clear()

    def _restart_monitor(self) -> None:
        assert self._monitor is not None
        old = self._monitor
        status = old.exited()
        old.read()
        said = " ".join(old.output_tail).strip()
        old.stop()
        self._notice(
            "monitor",
            f"{old.argv[-2]} stopped (exit {status}: {said}); events may be lost; restarted",
        )
        self._monitor = self._new_monitor(old.kind)

    def _teardown(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        if self._kmsg is not None:
            self._kmsg.close()
            self._kmsg = None
        for record in reversed(self._created):
            removal = remove(record)
            if removal is None:
                continue
            (self.summary.left if removal.result == "failed" else self.summary.removed).append(
                str(removal)
            )
        if self._ledger is not None and not self.summary.left:
            self._ledger.remove()

    def _refresh_diagnosis(self) -> None:
        if self.diagnose is None:
            return
        try:
            kept = self.diagnose.refresh()
        except Exception as err:  # a diagnosis must never cost the run its clean exit
            self._diagnosis_failed(err)
            return
        self._notice("snapshot", f"the node was read for predictions; snapshot kept in {kept}")

    def _diagnosis(self, obs: ObservedPacket) -> object | None:
        if self.diagnose is None:
            return None
        try:
            return self.diagnose(obs)
        except Exception as err:  # a diagnosis must never cost the run its clean exit
            self._diagnosis_failed(err)
            return None

    def _diagnosis_failed(self, err: Exception) -> None:
        self._notice(
            "problem",
            f"the comparison with a prediction failed ({type(err).__name__}: {err}); "
            "packets are explained without it from now on",
        )
        self.diagnose = None
        self.summary.divergent = None

    # --- helpers -----------------------------------------------------------------------------

    def _own_ledger(self) -> LiveLedger:
        assert self._ledger is not None
        return self._ledger

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _status(self) -> Status:
        s = self.summary
        return Status(s.seen, s.explained, s.divergent, self._elapsed())

    def _notice(self, kind: str, message: str) -> None:
        notice = Notice(kind, message, self._elapsed())
        self.summary.notices.append(notice)
        self.reporter.notice(notice)


def _raw_tables_created(rules: tuple[IptablesRule, ...], netns: str) -> list[str]:
    """A note for each iptables whose raw table does not exist yet: inserting creates it (its
    chains empty, policy ACCEPT), and it stays after the run, as every iptables command leaves
    a table it loaded (legacy kernels cannot unload a namespace's table at all)."""
    notes = []
    for tool in dict.fromkeys(r.tool for r in rules):
        try:
            save = run([f"{tool}-save"], netns=netns).stdout
        except CommandError:
            continue
        if "*raw" not in save.splitlines():
            notes.append(
                f"{tool}: the raw table does not exist yet; inserting creates it, and it stays "
                "after the run with empty chains (policy ACCEPT)"
            )
    return notes


def _process(pid: int) -> ProcessId:
    found = ProcessId.of(pid)
    return found if found is not None else ProcessId(pid, -1)


@contextmanager
def _signals_stop() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does: through the ``finally`` that removes the rules."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stop("terminated")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """While removing the rules, a second Ctrl-C or SIGTERM must not cut the removal short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
