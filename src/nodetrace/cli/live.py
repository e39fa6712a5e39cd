"""``nodetrace live``: work on the running node (root).

``live trace`` inserts narrowly scoped, rate-limited trace rules for the traffic asked for,
explains each traced packet as it happens with the node's current rules, and removes exactly
what it inserted when it ends. ``live cleanup`` removes what runs killed before they could (a
ledger on disk names every object). ``live watch`` reads the counters along a packet's path.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import sys
from typing import Any, TextIO

from nodetrace.cli import ExamplesFormatter, add_format, add_levels
from nodetrace.errors import DiagnosticSink, UsageError
from nodetrace.live.report import LivePacket, LiveSummary, Notice, Reporter, RunInfo, Status
from nodetrace.model.diagnosis import Diagnosis
from nodetrace.render.json import document, dumps
from nodetrace.render.screen import Screen
from nodetrace.render.text import Level, describe_packet, render_trace

EXIT_OK = 0
EXIT_LEFT_BEHIND = 1
"""Some object could not be removed: its ledger is kept for ``nodetrace live cleanup``."""
WATCH_MODULE = "nodetrace.live.watch"

EXAMPLES = """\
examples:
  sudo nodetrace live trace --packet tcp,nw_dst=10.0.0.5,tp_dst=22 --duration 60
      trace SSH to 10.0.0.5 for a minute; each packet explained as it passes
  sudo nodetrace live trace --port 85f28c5a --packet icmp --count 5
      the first 5 ICMP packets from or to that Neutron port
  sudo nodetrace live trace --netns qrouter-1b2c... --packet udp,udp_dst=53 --format json
      in a router's namespace, one JSON object per line
  sudo nodetrace live cleanup
      remove what runs killed before they could clean up left behind
"""


def register(subparsers: Any) -> None:
    live = subparsers.add_parser(
        "live",
        help="trace packets on this running node, safely (root)",
        description="Work on the running node: trace packets with scoped trace rules that are "
        "always removed (trace, cleanup), or read the counters along a path (watch).",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    sub = live.add_subparsers(dest="live_command", metavar="ACTION", required=True)
    _register_trace(sub)
    _register_cleanup(sub)
    _register_watch(sub)


def _register_trace(sub: Any) -> None:
    p = sub.add_parser(
        "trace",
        help="trace the packets of a flow or a port as they pass, explained",
        description="Insert trace rules that match only the traffic asked for (raw table "
        "PREROUTING and OUTPUT, rate-limited, tagged with the run's id; with nftables a table "
        "of the run's own), explain every traced packet with the node's current rules, and "
        "remove exactly what was inserted at the end (Ctrl-C, SIGTERM, --duration, --count). "
        "A ledger in /run/nodetrace/live lets 'live cleanup' remove the rules of a run that "
        "was killed.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    p.add_argument(
        "--packet",
        metavar="FLOW",
        help="the traffic, in OVS flow syntax (tcp,nw_src=10.0.0.1,tp_dst=22); with --port "
        "it narrows the port's traffic",
    )
    p.add_argument(
        "--port",
        metavar="PORT",
        help="a Neutron port (UUID, prefix or device): its traffic, from and to its addresses "
        "(the node is read now to find them)",
    )
    p.add_argument(
        "--netns", default="", metavar="NS", help="the namespace to trace in (default: this one)"
    )
    p.add_argument(
        "--ovs-rundir",
        metavar="DIR",
        help="with --port: a private Open vSwitch run folder to read the ports from",
    )
    p.add_argument(
        "--backend",
        choices=("iptables-legacy", "iptables-nft", "nftables"),
        help="how to trace (default: found from the namespace's tables, and said)",
    )
    p.add_argument(
        "--rate",
        type=_positive_int,
        default=10,
        metavar="N",
        help="traced packets per second at most (-m limit; default 10)",
    )
    p.add_argument(
        "--burst",
        type=_positive_int,
        default=10,
        metavar="N",
        help="burst of the rate limit (default 10)",
    )
    p.add_argument("--duration", type=_seconds, metavar="SECONDS", help="stop after this long")
    p.add_argument("--count", type=_positive_int, metavar="N", help="stop after N packets")
    p.add_argument(
        "--no-diagnose",
        dest="diagnose",
        action="store_false",
        help="do not compare each packet with a prediction from a snapshot of the node taken "
        "at the start (and again when the rules change)",
    )
    add_levels(
        p,
        summary="no packets, only the summary at the end",
        detailed="each step with everything known of it",
    )
    add_format(p, json="JSON Lines: the start, notices, each packet, the summary; docs/json.md")
    p.set_defaults(func=run_trace)


def _register_cleanup(sub: Any) -> None:
    p = sub.add_parser(
        "cleanup",
        help="remove the trace rules that killed runs left behind",
        description="Remove exactly what the ledgers of ended runs name (each rule by its "
        "exact spec, each run's own nft table by name, each sysctl back to its value); a run "
        "still running is left alone unless --force. Never flushes, never touches other rules.",
    )
    p.add_argument("--force", action="store_true", help="also remove the objects of live runs")
    add_format(p, json="one JSON object; docs/json.md")
    p.set_defaults(func=run_cleanup)


def _register_watch(sub: Any) -> None:
    if importlib.util.find_spec(WATCH_MODULE) is not None:
        importlib.import_module(WATCH_MODULE).register(sub)
        return
    p = sub.add_parser("watch", help="read the counters along a packet's path (not available)")
    p.set_defaults(func=_watch_missing)


def _watch_missing(args: argparse.Namespace) -> int:
    raise UsageError("'nodetrace live watch' is not part of this installation")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive_int.__name__ = "whole number (1 or more)"


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds (more than 0)"


# --- live trace ----------------------------------------------------------------------------------


def run_trace(args: argparse.Namespace) -> int:
    from nodetrace.live.rules import Backend, Limit
    from nodetrace.live.selector import Selection, for_port, from_flow
    from nodetrace.live.session import LiveTrace, TraceOptions

    if not args.packet and not args.port:
        raise UsageError("say what to trace: --packet FLOW, --port PORT, or both")
    narrowing = from_flow(args.packet) if args.packet else None
    selection: Selection
    if args.port:
        from nodetrace.live.ports import port_addresses, read_node

        port, addresses = port_addresses(read_node(args.netns, args.ovs_rundir), args.port)
        selection = for_port(port.port_id, addresses, narrowing)
    else:
        assert narrowing is not None
        selection = narrowing
    options = TraceOptions(
        selection=selection,
        netns=args.netns,
        backend=Backend(args.backend) if args.backend else None,
        limit=Limit(args.rate, args.burst),
        duration=args.duration,
        count=args.count,
    )
    reporter = TextReporter(sys.stdout, sys.stderr, Level(args.level))
    out: Reporter = JsonReporter(sys.stdout, sys.stderr) if args.format == "json" else reporter
    diagnoser = None
    if args.diagnose and importlib.util.find_spec("nodetrace.diagnosis") is not None:
        from nodetrace.cli._live_diagnosis import LiveDiagnosis

        diagnoser = LiveDiagnosis(args.netns, args.ovs_rundir)
    summary = LiveTrace(options, out, diagnose=diagnoser).run()
    return EXIT_LEFT_BEHIND if summary.left else EXIT_OK


class _StatusLine:
    """The one status line on stderr, redrawn in place on a terminal only."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.shown = False

    def show(self, text: str) -> None:
        if self.tty:
            self.err.write(f"\r\x1b[K{text}")
            self.err.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.shown = False

    def say(self, text: str) -> None:
        self.clear()
        print(text, file=self.err, flush=True)


def _status_text(status: Status) -> str:
    divergent = "-" if status.divergent is None else str(status.divergent)
    return (
        f"live trace · {status.seen} seen · {status.explained} explained · "
        f"{divergent} divergent · {status.elapsed:.0f}s"
    )


class TextReporter:
    """Packets as ``nodetrace log`` prints them, notices and the status line on stderr."""

    def __init__(self, out: TextIO, err: TextIO, level: Level) -> None:
        self.out = out
        self.line = _StatusLine(err)
        self.level = level
        self.screen = Screen.of(out)

    def started(self, info: RunInfo) -> None:
        ns = f" in namespace {info.netns}" if info.netns else ""
        lines = [
            f"live trace {info.run_id}{ns} · {info.backend} ({info.backend_reason})",
            *(f"  tracing {s}" for s in info.selectors),
            *(f"  inserted {r}" for r in info.inserted),
            f"  capture {info.capture}",
            f"  ledger {info.ledger}",
            *(f"  note: {n}" for n in info.notes),
        ]
        self.line.say("\n".join(lines))

    def notice(self, notice: Notice) -> None:
        self.line.say(f"nodetrace live: [{notice.kind}] {notice.message}")

    def status(self, status: Status) -> None:
        self.line.show(_status_text(status))

    def packet(self, packet: LivePacket) -> None:
        if self.level is Level.SUMMARY:
            return
        obs = packet.observed
        head = describe_packet(obs.trace.packet) if obs.trace.packet else "headers not logged"
        title = f"packet {packet.index} · {head} · +{packet.elapsed:.1f}s"
        subtitle = obs.log_format + (f" · trace id {obs.trace_id}" if obs.trace_id else "")
        self.line.clear()
        text = render_trace(
            obs.trace,
            self.screen,
            level=self.level,
            title=title,
            subtitle=subtitle,
            warnings=obs.warnings,
        )
        print(text, file=self.out, flush=True)
        if isinstance(packet.diagnosis, Diagnosis):
            from nodetrace.render.diagnosis import render_diagnosis

            text = render_diagnosis(
                packet.diagnosis,
                self.screen,
                level=self.level,
                subtitle="observed against predicted",
            )
            print(text, file=self.out, flush=True)

    def finished(self, summary: LiveSummary) -> None:
        self.line.clear()
        outcomes = ", ".join(f"{n} {k}" for k, n in sorted(summary.outcomes.items())) or "none"
        divergent = "-" if summary.divergent is None else str(summary.divergent)
        lines = [
            f"live trace {summary.run_id} ended ({summary.stopped_by or 'error'}) after "
            f"{summary.elapsed:.1f}s: {summary.seen} packet(s) seen, {summary.explained} "
            f"explained, {divergent} divergent; outcomes: {outcomes}",
        ]
        if summary.ignored:
            lines.append(f"  {summary.ignored} traced packet(s) of other tracers ignored")
        if summary.reinserted:
            lines.append(
                f"  the trace rules vanished {summary.reinserted} time(s) (table rewritten) "
                "and were re-inserted"
            )
        if summary.rules_read > 1:
            lines.append(f"  the ruleset changed {summary.rules_read - 1} time(s) and was re-read")
        lines += [f"  {r}" for r in summary.removed]
        lines += [f"  NOT removed {r}" for r in summary.left]
        if summary.left:
            lines.append("  run 'nodetrace live cleanup' once the cause is fixed")
        print("\n".join(lines), file=self.out, flush=True)


class JsonReporter:
    """JSON Lines on stdout (docs/json.md, command ``live``); the status line stays on stderr."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.line = _StatusLine(err)
        self.run_id = ""

    def _emit(self, doc: dict[str, Any]) -> None:
        self.line.clear()
        print(dumps(doc, indent=None), file=self.out, flush=True)

    def started(self, info: RunInfo) -> None:
        self.run_id = info.run_id
        self._emit(
            document(
                "live",
                event="start",
                run=info.run_id,
                netns=info.netns,
                backend=info.backend,
                backend_reason=info.backend_reason,
                selectors=info.selectors,
                inserted=info.inserted,
                capture=info.capture,
                ledger=info.ledger,
                notes=info.notes,
            )
        )

    def notice(self, notice: Notice) -> None:
        self._emit(
            document(
                "live",
                event="notice",
                run=self.run_id,
                kind=notice.kind,
                message=notice.message,
                elapsed=round(notice.elapsed, 3),
            )
        )

    def status(self, status: Status) -> None:
        self.line.show(_status_text(status))

    def packet(self, packet: LivePacket) -> None:
        from nodetrace.cli.log import packet_document

        doc = packet_document(packet.observed)
        head = document("live", event="packet", run=self.run_id, elapsed=round(packet.elapsed, 3))
        body = {k: v for k, v in doc.items() if k not in ("schema", "command")}
        extra = {}
        if isinstance(packet.diagnosis, Diagnosis):
            from nodetrace.render.diagnosis import diagnosis_fields

            extra["diagnosis"] = diagnosis_fields(packet.diagnosis)
        self._emit({**head, **body, **extra})

    def finished(self, summary: LiveSummary) -> None:
        self._emit(
            document(
                "live",
                event="summary",
                run=summary.run_id,
                stopped_by=summary.stopped_by,
                elapsed=round(summary.elapsed, 3),
                seen=summary.seen,
                explained=summary.explained,
                divergent=summary.divergent,
                outcomes=dict(summary.outcomes),
                ignored=summary.ignored,
                reinserted=summary.reinserted,
                rules_read=summary.rules_read,
                removed=summary.removed,
                left=summary.left,
            )
        )


# --- live cleanup --------------------------------------------------------------------------------


def run_cleanup(args: argparse.Namespace) -> int:
    from nodetrace.live.cleanup import cleanup
    from nodetrace.live.ledger import ledger_dir

    sink = DiagnosticSink()
    directory = ledger_dir()
    report = cleanup(directory, sink, force=args.force)
    if args.format == "json":
        ledgers = [
            {
                "ledger": str(c.path),
                "run": c.run_id,
                "owner_pid": c.owner_pid,
                "skipped": c.skipped or None,
                "objects": [
                    {"object": r.what, "result": r.result, "detail": r.detail or None}
                    for r in c.removals
                ],
            }
            for c in report.ledgers
        ]
        doc = document(
            "live",
            event="cleanup",
            directory=str(directory),
            ledgers=ledgers,
            problems=[str(d) for d in sink.items],
        )
        print(dumps(doc, indent=None))
    else:
        for d in sink.items:
            print(f"nodetrace: {d}", file=sys.stderr)
        if not report.ledgers:
            print(f"nothing to clean up: no ledger in {directory}")
        for c in report.ledgers:
            if c.skipped:
                print(f"{c.path}: left alone: {c.skipped}")
                continue
            print(f"{c.path}: run {c.run_id}" + ("" if c.removals else ": nothing was created"))
            for r in c.removals:
                print(f"  {r}")
            if c.failed:
                print("  the ledger is kept: run 'nodetrace live cleanup' again once fixed")
    return EXIT_LEFT_BEHIND if report.failed else EXIT_OK
