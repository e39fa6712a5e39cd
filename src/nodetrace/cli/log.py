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
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from nodetrace.cli import add_format, add_levels
from nodetrace.errors import Diagnostic, DiagnosticSink, UsageError
from nodetrace.model.trace import NetfilterStep, PacketDump, Trace
from nodetrace.parsers.trace_kernel_log import packet_from_dump
from nodetrace.render.screen import Screen
from nodetrace.render.summary import SummaryCounts, render_summary
from nodetrace.render.text import Level, describe_packet, render_trace
from nodetrace.tracelog.match import parse_match
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.source import STDIN, LogSource, open_log
from nodetrace.tracelog.summary import Summary

if TYPE_CHECKING:
    from nodetrace.diagnosis.replay import NamespaceReplay, Replay
    from nodetrace.tracelog.namespace_books import NamespaceBooks
    from nodetrace.tracelog.rulebook import RuleBook

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

EXAMPLES = """\
examples (the bundled example of a two-node lab, in src/nodetrace/examples/):
  nodetrace log two-nodes-cmp2.trace.log --rules two-nodes-cmp2.snapshot.tar.gz
      each packet's steps, the rule behind each and its fate
  nodetrace log two-nodes-cmp2.trace.log --rules two-nodes-cmp2.snapshot.tar.gz --match outcome=dropped
      only the dropped packets
  nodetrace log /var/log/kern.log.1.gz /var/log/kern.log --summary
      counts, top dropping rules, chains by hits (for huge logs)
  nodetrace log two-nodes-cmp1.trace.log --format json | jq .outcome
      one JSON object per packet (docs/json.md)
  journalctl -k -o short-monotonic | nodetrace log - --rules iptables-save.txt
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "log",
        help="explain netfilter TRACE logs",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        default=None,
        metavar="NS",
        help="with a snapshot as --rules: the namespace whose rules explain the log (default: "
        "each packet with the rules of the namespace its devices live in, e.g. a qrouter- "
        "namespace for IN=qr-...; the host's when the snapshot has no other rules)",
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
    add_levels(
        p,
        summary="counts instead of one story per packet",
        detailed="each step with everything known of it",
    )
    add_format(
        p,
        json="one object per packet per line, JSON Lines; docs/json.md",
        html="one page: timeline, drops per chain, every packet's steps; docs/pictures.md",
    )
    p.add_argument(
        "--json", dest="format", action="store_const", const="json", help="--format json"
    )
    p.add_argument(
        "--gap",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="lines of one packet further apart than this are two packets (default 1; 0: ignore time)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on large inputs")
    p.add_argument(
        "--no-replay",
        action="store_true",
        help="with --rules: do not replay each packet through the rules to flag the packets "
        "whose logged path contradicts them (the per-packet views replay by default; "
        "--summary never does)",
    )
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
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

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
    book = None
    if args.rules or args.ipsets or args.netns is not None:
        from nodetrace.api import log_rules

        book = log_rules(args.rules, args.ipsets, sink, netns=args.netns)
    reported = _print_diagnostics(sink.items, 0)
    analysis = Analysis(book=book, match=match, sink=sink, gap=args.gap)
    replay = _replay(book, args)
    screen = Screen.of(sys.stdout)
    show_progress = not args.no_progress and sys.stderr.isatty()
    files = args.files or [STDIN]
    # Every file is opened before any output: one that cannot be read is a mistake to report
    # alone (exit 2), not after minutes of another file's stories.
    sources = [open_log(name, sink) for name in files]
    if args.format == "html":
        from nodetrace.cli._log_html import run_html  # the page's modules only when asked

        return run_html(
            analysis,
            sources,
            files,
            reported=reported,
            rules=args.rules,
            replayed=lambda obs: _replayed(replay, obs),
        )
    # The parse loop allocates millions of short-lived tuples and no reference cycles: the
    # cycle collector would only spend time scanning them.
    gc.disable()
    try:
        for source in sources:
            try:
                with _progress(source, show_progress):
                    if args.level == "summary":
                        analysis.summarize(source)
                    else:
                        for obs in analysis.packets(source):
                            obs = _replayed(replay, obs)
                            if args.format == "json":
                                print(packet_json(obs), flush=False)
                            else:
                                text = render_trace(
                                    obs.trace,
                                    screen,
                                    level=Level(args.level),
                                    title=_title(obs),
                                    subtitle=_subtitle(obs),
                                    warnings=obs.warnings,
                                )
                                print(text, flush=False)
            finally:
                source.close()
            reported = _print_diagnostics(sink.items, reported)
    finally:
        gc.enable()
    summary = analysis.summary
    if summary.lines.parsed == 0:
        names = ", ".join("<stdin>" if f == STDIN else f for f in files)
        why = "holds no TRACE records" if len(files) == 1 else "hold no TRACE records"
        print(f"nodetrace: error: nothing usable: {names} {why}", file=sys.stderr)
        return EXIT_NOTHING_USABLE
    if args.level == "summary":
        if args.format == "json":
            from nodetrace.render.json import document, dumps

            print(dumps(document("log", summary=summary.as_json()), indent=None))
        else:
            sys.stdout.write(render_summary(_counts(summary), screen))
    elif args.format == "text":
        lines = summary.lines
        shown = (
            f"{analysis.emitted:,} packet(s) shown · {lines.total:,} lines: {lines.parsed:,} in "
            f"TRACE records, {lines.skipped:,} skipped, {lines.malformed:,} malformed"
        )
        if replay is not None:
            shown += (
                f" · {replay.contradicting:,} contradict the rules given "
                f"({replay.replayed:,} replayed)"
            )
        print(screen.paint(shown, "dim"))
    return EXIT_OK


def packet_json(obs: ObservedPacket) -> str:
    """One packet of a log as one line of JSON."""
    from nodetrace.render.json import dumps

    return dumps(packet_document(obs), indent=None)


def packet_document(obs: ObservedPacket) -> dict[str, Any]:
    """One packet of a log as the JSON schema spells it (docs/json.md)."""
    from nodetrace.render.json import trace_document

    return trace_document(
        "log",
        _with_rewrites(obs.trace),
        index=obs.index,
        source={"file": obs.source, "first_line": obs.first_line, "last_line": obs.last_line},
        log_format=obs.log_format,
        time=obs.time,
        trace_id=obs.trace_id,
        family=obs.family,
        fields=[[k, v] for k, v in obs.header.fields] if obs.header is not None else [],
        egress=obs.conclusion.egress,
        same_ports=obs.same_ports,
        warnings=obs.warnings,
        **{"pass": obs.occurrence},
    )


def _with_rewrites(trace: Trace) -> Trace:
    """The trace with the packet of each record that shows other header values than the record
    before it (NAT, a TTL decrement), so the JSON says at which step the packet changed."""
    steps = list(trace.steps)
    before = None
    rewritten = False
    for i, step in enumerate(steps):
        if not isinstance(step, NetfilterStep) or step.dump is None:
            continue
        if before is not None and _headers_differ(before, step.dump):
            steps[i] = replace(step, packet=packet_from_dump(step.dump))
            rewritten = True
        before = step.dump
    return replace(trace, steps=tuple(steps)) if rewritten else trace


_DEVICE_KEYS = frozenset({"IN", "OUT", "PHYSIN", "PHYSOUT"})
"""Keys of a record's dump that name devices, not packet headers (they are the step's own)."""


def _headers_differ(a: PacketDump, b: PacketDump) -> bool:
    if a.fields == b.fields:
        return False
    return [kv for kv in a.fields if kv[0] not in _DEVICE_KEYS] != [
        kv for kv in b.fields if kv[0] not in _DEVICE_KEYS
    ]


def _replay(
    book: RuleBook | NamespaceBooks | None, args: argparse.Namespace
) -> Replay | NamespaceReplay | None:
    """The replay of each packet through the rules given, in the per-packet views."""
    if book is None or args.no_replay or args.level == "summary":
        return None
    # the engine only when rules are given
    from nodetrace.diagnosis.replay import NamespaceReplay, Replay
    from nodetrace.tracelog.namespace_books import NamespaceBooks

    if isinstance(book, NamespaceBooks):
        return NamespaceReplay(book.books)
    return Replay(book)


def _replayed(replay: Replay | NamespaceReplay | None, obs: ObservedPacket) -> ObservedPacket:
    """``obs``, with one warning line when its logged path contradicts the rules given."""
    if replay is None:
        return obs
    found = replay.check(obs)
    if found is None:
        return obs
    return replace(obs, warnings=(*obs.warnings, f"{CONTRADICTS}: {found}"))


CONTRADICTS = "contradicts the rules given (changed since the log, or another node's)"
"""How a packet whose logged path the rules given do not produce is flagged."""


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
