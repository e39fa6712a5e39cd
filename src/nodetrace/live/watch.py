"""``nodetrace live watch``: the counters along one packet's predicted path on a running node,
read twice (or every interval until Ctrl-C), and where their count falls off. Read-only.

The path is predicted on a fresh read of the node by the collector's own code (or on a snapshot
given with ``--snapshot``), with :func:`nodetrace.api.trace`; ``model/path_counters.py`` names
the counters of each hop; ``live/counters.py`` reads them; the comparison is pure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nodetrace.api import trace as trace_packet
from nodetrace.errors import UsageError
from nodetrace.live.counters import DEFAULT_TIMEOUT, CounterReader, NodeAccess
from nodetrace.model.path_counters import WatchPlan, WatchResult, compare, plan_counters
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.render.counters_json import watch_document
from nodetrace.render.json import dumps
from nodetrace.render.watch_text import render_watch
from nodetrace.snapshot import collect as collector
from nodetrace.snapshot.load import load

EXAMPLES = """\
examples:
  sudo nodetrace live watch --from-port bf944fec --to-port 7eb6fb94 \\
      --packet tcp,tp_dst=5432,tcp_flags=+syn
      read the counters of web1 -> db1's path, wait 5 s, read again: where the count stops
  sudo nodetrace live watch --from-port bf944fec --to-port 7eb6fb94 --packet icmp \\
      --interval 2 --count 0
      every 2 s until Ctrl-C (each block: what rose during that interval)
  sudo nodetrace live watch --snapshot before.tar.gz --from-port bf944fec --packet icmp
      the path as it was predicted on a snapshot; the counters of the node as it is now
"""


def register(subparsers: Any) -> None:
    """Add ``watch`` to ``nodetrace live``'s subcommands."""
    parser = subparsers.add_parser(
        "watch",
        help="counters along a packet's predicted path, read twice: where the count falls off",
        description="Predict the packet's path on this node, then read the counters that move "
        "when it passes or dies at each hop (iptables rule counters, OpenFlow n_packets, Open "
        "vSwitch interface and datapath drops, ip -s link, conntrack -S, nstat), wait, read "
        "again, and show per hop what rose and where the count falls off. Read-only; run as "
        "root.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _packet_arguments(parser)
    parser.add_argument("--snapshot", metavar="PATH",
                        help="predict on this snapshot instead of a fresh read of the node")  # fmt: skip
    parser.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                        help="time between two readings (default 5)")  # fmt: skip
    parser.add_argument("--count", type=int, default=1, metavar="N",
                        help="intervals to watch (default 1: two readings; 0: until Ctrl-C)")  # fmt: skip
    parser.add_argument("--node-netns", metavar="NS",
                        help="the node lives in this network namespace (a lab node)")  # fmt: skip
    parser.add_argument("--ovs-rundir", metavar="DIR",
                        help="Open vSwitch run folder (db.sock, ovs-vswitchd.ctl, BRIDGE.mgmt)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"per-command time limit (default {DEFAULT_TIMEOUT:g})")  # fmt: skip
    parser.add_argument("--detailed", action="store_true",
                        help="every counter of every hop, drop counters that did not move too")  # fmt: skip
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default: for people), json (one document per interval, "
                        "one per line: docs/json.md)")  # fmt: skip
    parser.set_defaults(func=run)


def _packet_arguments(parser: argparse.ArgumentParser) -> None:
    """The packet and its ends, as ``nodetrace trace`` takes them."""
    parser.add_argument("--packet", required=True, metavar="FLOW",
                        help="the packet, in OVS flow syntax as ofproto/trace takes it")  # fmt: skip
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from", dest="from_iface", metavar="IFACE", help="enters on this device")
    start.add_argument("--from-port", metavar="UUID", help="sent by the VM of this Neutron port")
    start.add_argument("--from-host", action="store_true", help="sent by the host (OUTPUT)")
    parser.add_argument(
        "--to-port",
        metavar="UUID",
        help="meant for the VM of this Neutron port; alone: arrives over its network's tunnel",
    )
    parser.add_argument("--netns", default=MAIN_NS, metavar="NS",
                        help="namespace of --from, as the snapshot names it")  # fmt: skip
    parser.add_argument("--ct-state", metavar="S", help="conntrack state (default: NEW, said)")


def check(args: argparse.Namespace) -> None:
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    if args.count < 0:
        raise UsageError("--count must be 0 or more")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if os.geteuid() != 0:
        raise UsageError("live watch reads iptables and Open vSwitch counters: run it as root")
    options = collector.Options(netns=args.node_netns, ovs_rundir=args.ovs_rundir)
    problem = collector.option_problem(options)
    if problem is not None:
        raise UsageError(problem)


def node_snapshot(args: argparse.Namespace) -> Snapshot:
    """The node as it is now, read by the collector (into a folder removed afterwards), or
    the snapshot the user gave."""
    if args.snapshot:
        return load(args.snapshot)
    options = collector.Options(
        netns=args.node_netns, ovs_rundir=args.ovs_rundir, timeout=args.timeout
    )
    with tempfile.TemporaryDirectory(prefix="nodetrace-watch-") as tmp:
        root = Path(tmp) / "snapshot"
        root.mkdir()
        collector.collect_into(root, options)
        return load(root)


def watch(
    plan: WatchPlan,
    reader: CounterReader,
    *,
    interval: float,
    count: int,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[WatchResult]:
    """Each interval's result; ``count`` 0 goes on until the caller stops."""
    before = reader.read()
    started = time.monotonic()
    done = 0
    while count == 0 or done < count:
        sleep(interval)
        after = reader.read()
        now = time.monotonic()
        yield compare(plan, before, after, seconds=now - started)
        before, started, done = after, now, done + 1


def run(args: argparse.Namespace) -> int:
    check(args)
    snapshot = node_snapshot(args)
    trace = trace_packet(
        snapshot, args.packet, from_device=args.from_iface, netns=args.netns,
        from_port=args.from_port, from_host=args.from_host, to_port=args.to_port,
        ct_state=args.ct_state,
    )  # fmt: skip
    plan = plan_counters(snapshot, trace, start_netns=args.netns or MAIN_NS)
    access = NodeAccess(args.node_netns, args.ovs_rundir, args.timeout)
    reader = CounterReader(plan, snapshot, access)
    try:
        for number, result in enumerate(
            watch(plan, reader, interval=args.interval, count=args.count), start=1
        ):
            if args.format == "json":
                doc = watch_document(result, interval=number, packet=args.packet)
                sys.stdout.write(dumps(doc, indent=None) + "\n")
            else:
                if number > 1:
                    sys.stdout.write("\n")
                sys.stdout.write(render_watch(result, packet=args.packet, detailed=args.detailed))
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("nodetrace: stopped", file=sys.stderr)
    return 0
