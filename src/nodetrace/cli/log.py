"""``nodetrace log``: explain netfilter TRACE logs, one story per packet, or summarise them."""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from nodetrace.cli._snapshot_input import (
    is_snapshot,
    load_snapshot,
    snapshot_ipsets,
    snapshot_rulesets,
)
from nodetrace.errors import Diagnostic, DiagnosticSink, InputError, UsageError
from nodetrace.model.topology import MAIN_NS
from nodetrace.render.summary import SummaryCounts, summary_renderable
from nodetrace.render.text import StdoutConsole, describe_packet, print_trace
from nodetrace.tracelog.jsonout import dumps_packet
from nodetrace.tracelog.match import parse_match
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.rules_input import load_rulebook
from nodetrace.tracelog.source import STDIN, LogSource, open_log
from nodetrace.tracelog.summary import Summary

EXIT_OK = 0
EXIT_NOTHING_USABLE = 1
PROGRESS_MIN_BYTES = 16 << 20
"""Inputs smaller than this finish before a progress bar would help."""

DESCRIPTION = """\
Explain netfilter TRACE logs: group the lines into packets, show each packet's steps with the
rule behind every number, and say where it went (accepted, dropped by which rule, or where its
trace ends). Reads kernel logs (kern.log, syslog, dmesg, journalctl, plain or .gz, or - for
stdin), xtables-monitor --trace and nft monitor trace output.
"""


def _rulebook(args: argparse.Namespace, sink: DiagnosticSink) -> RuleBook | None:
    """The rules the log is explained with: files, and the rulesets of one snapshot."""
    snapshots = [r for r in args.rules if is_snapshot(r)]
    if len(snapshots) > 1:
        raise UsageError("--rules: give one snapshot (its rulesets are the node's)")
    files = [r for r in args.rules if r not in snapshots]
    if not snapshots:
        if args.netns != MAIN_NS:
            raise UsageError("--netns chooses a namespace of a snapshot given with --rules")
        return load_rulebook(files, args.ipsets, sink)
    name = snapshots[0]
    snap = load_snapshot(name)
    taken = snapshot_rulesets(snap, args.netns)
    if not taken:
        where = f" of namespace {args.netns}" if args.netns != MAIN_NS else ""
        run = (
            "iptables-save"
            if args.netns == MAIN_NS
            else f"ip netns exec {args.netns} iptables-save"
        )
        raise InputError(
            f"{name}: the snapshot has no iptables-save or ip6tables-save output{where}; "
            f"collect it with `{run}`"
        )
    ipsets = snapshot_ipsets(snap, args.netns)
    return load_rulebook(
        files, args.ipsets, sink, taken=taken, taken_ipsets=ipsets, taken_from=name
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("log", help="explain netfilter TRACE logs", description=DESCRIPTION)
    p.add_argument("files", nargs="*", metavar="FILE", help="log files ('-' or none: stdin)")
    p.add_argument(
        "--rules",
        action="append",
        default=[],
        metavar="F",
        help="iptables-save / ip6tables-save output of the node, or its 'nft -a list ruleset' "
        "(nf_tables steps are then found by rule handle), or a node snapshot (folder or "
        "archive: its rulesets and ipsets of --netns are used); may repeat",
    )
    p.add_argument(
        "--netns",
        default=MAIN_NS,
        metavar="NS",
        help="with a snapshot as --rules: the namespace whose rules explain the log "
        "(default: the host's)",
    )
    p.add_argument(
        "--ipsets",
        action="append",
        default=[],
        metavar="F",
        help="ipset save (or ipset list) output",
    )
    p.add_argument(
        "--match",
        metavar="EXPR",
        help="only packets matching EXPR, e.g. tcp,nw_dst=10.0.0.11,tp_dst=22 or outcome=dropped,"
        "dev=tap3b1f*",
    )
    p.add_argument("--summary", action="store_true", help="counts instead of one story per packet")
    p.add_argument("--json", action="store_true", help="JSON: one object per packet per line")
    p.add_argument(
        "--gap",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="lines of one packet further apart than this are two packets (default 1; 0: ignore time)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on large inputs")
    p.set_defaults(func=run)


def _seconds(text: str) -> float:
    """A --gap value: a finite number of seconds, 0 or more (argparse reports a ValueError)."""
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds (0 or more)"  # argparse names the type in its message


def _print_diagnostics(items: list[Diagnostic], start: int) -> int:
    for d in items[start:]:
        print(f"nodetrace: {d}", file=sys.stderr)
    return len(items)


def _title(obs: ObservedPacket) -> str:
    packet = (
        describe_packet(obs.trace.packet)
        if obs.trace.packet is not None
        else "packet headers not logged"
    )
    head = f"packet {obs.index} · {packet}"
    if obs.occurrence > 1:
        again = (
            "again through the same ports (retransmission or copy)"
            if obs.same_ports
            else "again, through other ports (a second bridge pass)"
            if obs.same_ports is False
            else "again"
        )
        head += f" · pass {obs.occurrence}: {again}"
    return head


def _subtitle(obs: ObservedPacket) -> str:
    lines = f"{obs.source}:{obs.first_line}" + (
        f"-{obs.last_line}" if obs.last_line != obs.first_line else ""
    )
    parts = [lines, obs.log_format]
    if obs.trace_id:
        parts.append(f"trace id {obs.trace_id}")
    if obs.time:
        parts.append(obs.time)
    return " · ".join(parts)


@contextmanager
def _progress(source: LogSource, enabled: bool) -> Iterator[None]:
    """A progress bar on stderr fed by a timer thread, so the parsing loop pays nothing for it."""
    if not enabled or source.size is None or source.size < PROGRESS_MIN_BYTES:
        yield
        return
    done = threading.Event()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(os.path.basename(source.name), total=source.size)

        def tick() -> None:
            while not done.wait(0.2):
                bar.update(task, completed=source.bytes_read)

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def run(args: argparse.Namespace) -> int:
    if not args.files and sys.stdin.isatty():
        raise UsageError(
            "give a log file (or '-' and pipe one in), e.g. nodetrace log /var/log/kern.log"
        )
    sink = DiagnosticSink()
    match = parse_match(args.match) if args.match is not None else None
    book = _rulebook(args, sink)
    reported = _print_diagnostics(sink.items, 0)
    analysis = Analysis(book=book, match=match, sink=sink, gap=args.gap)
    out = StdoutConsole(
        highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 130
    )
    show_progress = not args.no_progress and sys.stderr.isatty()
    files = args.files or [STDIN]
    unreadable = 0
    # The parse loop allocates millions of short-lived tuples and no reference cycles: the
    # cycle collector would only spend time scanning them.
    gc.disable()
    try:
        for name in files:
            try:
                source = open_log(name, sink)
            except InputError as err:
                print(f"nodetrace: error: {err}", file=sys.stderr)
                unreadable += 1
                continue
            try:
                with _progress(source, show_progress):
                    if args.summary:
                        analysis.summarize(source)
                    else:
                        for obs in analysis.packets(source):
                            if args.json:
                                print(dumps_packet(obs), flush=False)
                            else:
                                print_trace(
                                    obs.trace,
                                    console=out,
                                    title=_title(obs),
                                    subtitle=_subtitle(obs),
                                    warnings=obs.warnings,
                                )
                                out.print()
            finally:
                source.close()
            reported = _print_diagnostics(sink.items, reported)
    finally:
        gc.enable()
    summary = analysis.summary
    if summary.lines.parsed == 0:
        names = ", ".join("<stdin>" if f == STDIN else f for f in files)
        if unreadable == len(files):
            why = "could not be read"
        else:
            why = "holds no TRACE records" if len(files) == 1 else "hold no TRACE records"
        print(f"nodetrace: error: nothing usable: {names} {why}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    if args.summary:
        if args.json:
            import json

            print(json.dumps(summary.as_json(), ensure_ascii=False))
        else:
            out.print(summary_renderable(_counts(summary)))
    elif not args.json:
        lines = summary.lines
        out.print(
            f"[dim]{analysis.emitted:,} packet(s) shown · {lines.total:,} lines: {lines.parsed:,} in TRACE records, "
            f"{lines.skipped:,} skipped, {lines.malformed:,} malformed[/dim]"
        )
    return EXIT_OK


def _counts(summary: Summary) -> SummaryCounts:
    data = summary.as_json()
    return SummaryCounts(
        packets=summary.packets,
        seen_again=summary.again,
        by_outcome=data["by_outcome"],
        dropping=[(d["step"], d["rule"] or "", d["packets"]) for d in data["top_dropping_rules"]],
        chains=[(c["chain"], c["hits"]) for c in data["chains_by_hits"]],
        lines=data["lines"],
        files=[(f["file"], f["format"]) for f in data["files"]],
        ends_at=[(d["step"], d["rule"] or "", d["packets"]) for d in data["traces_end_at"]],
    )
