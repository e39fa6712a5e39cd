"""``nodetrace explain LOG SNAPSHOT``: each packet of a TRACE log, observed against what the
node's snapshot predicts for it, and where and why it was lost.

Arguments in, :mod:`nodetrace.diagnosis` (the log read with the snapshot's own rules, each
packet walked from where the log saw it enter), the output :mod:`nodetrace.render.diagnosis`'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nodetrace.cli import ExamplesFormatter, add_format, add_levels
from nodetrace.diagnosis import diagnose_packets
from nodetrace.diagnosis.counters import device_growth
from nodetrace.diagnosis.from_log import observed_packets
from nodetrace.errors import DiagnosticSink, UsageError
from nodetrace.model.topology import MAIN_NS
from nodetrace.render.diagnosis import (
    ExplainCounts,
    diagnosis_fields,
    render_diagnosis,
    render_explain_summary,
)
from nodetrace.render.json import document, dumps
from nodetrace.render.screen import Screen
from nodetrace.render.text import Level, describe_packet
from nodetrace.snapshot.load import load
from nodetrace.snapshot.parts import is_snapshot
from nodetrace.tracelog.observed import ObservedPacket

EXIT_OK = 0
EXIT_NOTHING_USABLE = 1

HELP = "compare each packet of a TRACE log with the snapshot's prediction, and say why it was lost"

EXAMPLES = """\
examples:
  (files of the bundled examples, in src/nodetrace/examples/)
  nodetrace explain two-nodes-cmp2.trace.log two-nodes-cmp2.snapshot.tar.gz
      per packet: observed and predicted fate, where they part, the cause and its evidence
  nodetrace explain two-nodes-cmp2.trace.log two-nodes-cmp2.snapshot.tar.gz --detailed
      also the two paths side by side, and the whole predicted path
  nodetrace explain kern.log node.tar.gz --summary
      only the counts: agreeing, divergent, by cause
  nodetrace explain kern.log node.tar.gz --format json | jq 'select(.cause) | .cause.id'
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explain",
        help=HELP,
        description="For each packet of a TRACE log (kernel log, journal, xtables-monitor "
        "--trace, nft monitor trace), simulate the same packet on a snapshot of the node taken "
        "at the same time, from where the log saw it enter; compare the two step by step, and "
        "name where the packet was lost and the likely cause, from a documented catalogue "
        "(docs/explain.md), with the evidence and a read-only command to confirm it.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("log", metavar="LOG", help="the TRACE log ('-' for stdin)")
    parser.add_argument(
        "snapshot", metavar="SNAPSHOT", help="the node's snapshot (folder or archive)"
    )
    parser.add_argument(
        "--before",
        metavar="SNAPSHOT",
        help="a snapshot of the node taken before the log began: the device counters that "
        "grew from it to SNAPSHOT (both with `ip -s -s -j link`, as `nodetrace collect` "
        "takes it) name drops the snapshot alone cannot, such as a VM not reading its tap",
    )
    parser.add_argument(
        "--netns",
        default=MAIN_NS,
        metavar="NS",
        help="the namespace the log was captured in (default: the host's)",
    )
    add_levels(
        parser,
        summary="only the counts: packets, agreeing, divergent, by cause",
        detailed="also both paths side by side and the whole prediction",
    )
    add_format(parser, json="one object per packet per line, then a summary (docs/json.md)")
    parser.set_defaults(func=run)


def _title(obs: ObservedPacket) -> str:
    packet = obs.trace.packet
    text = describe_packet(packet) if packet is not None else "packet headers not logged"
    again = f" · pass {obs.occurrence}" if obs.occurrence > 1 else ""
    return f"packet {obs.index} · {text}{again}"


def _subtitle(obs: ObservedPacket) -> str:
    lines = f"{obs.source}:{obs.first_line}" + (
        f"-{obs.last_line}" if obs.last_line != obs.first_line else ""
    )
    return f"{lines} · {obs.log_format}"


def run(args: argparse.Namespace) -> int:
    if not is_snapshot(args.snapshot):
        raise UsageError(
            f"{args.snapshot}: not a snapshot (a folder or an archive, as `nodetrace collect` "
            "writes); give the log first, then the snapshot"
        )
    snapshot = load(args.snapshot)
    if snapshot.namespace(args.netns) is None:
        raise UsageError(f"--netns {args.netns}: the snapshot has no such namespace")
    growth = None
    if args.before is not None:
        if not is_snapshot(args.before):
            raise UsageError(f"--before {args.before}: not a snapshot (a folder or an archive)")
        growth, why = device_growth(load(args.before), snapshot, args.netns)
        if why:
            print(f"nodetrace: warning: --before: {why}", file=sys.stderr)
    sink = DiagnosticSink()
    screen = Screen.of(sys.stdout)
    counts = ExplainCounts()
    json_lines = args.format == "json"
    packets = observed_packets(snapshot, args.log, netns=args.netns, sink=sink)
    reported = 0
    found = diagnose_packets(snapshot, packets, netns=args.netns, device_counters=growth)
    for obs, diagnosis in found:
        counts.add(diagnosis)
        if args.level == "summary":
            continue
        if json_lines:
            doc = document(
                "explain",
                index=obs.index,
                source={
                    "file": obs.source,
                    "first_line": obs.first_line,
                    "last_line": obs.last_line,
                },
                log_format=obs.log_format,
                **diagnosis_fields(diagnosis),
            )
            print(dumps(doc, indent=None))
        else:
            text = render_diagnosis(
                diagnosis,
                screen,
                title=_title(obs),
                subtitle=_subtitle(obs),
                level=Level(args.level),
            )
            print(text)
        for item in sink.items[reported:]:
            print(f"nodetrace: {item}", file=sys.stderr)
        reported = len(sink.items)
    for item in sink.items[reported:]:
        print(f"nodetrace: {item}", file=sys.stderr)
    if counts.packets == 0:
        print(
            f"nodetrace: error: nothing usable: {args.log} holds no TRACE records", file=sys.stderr
        )
        return EXIT_NOTHING_USABLE
    if json_lines:
        print(dumps(document("explain", summary=counts.as_json()), indent=None))
    else:
        sys.stdout.write(render_explain_summary(counts, screen))
    return EXIT_OK
