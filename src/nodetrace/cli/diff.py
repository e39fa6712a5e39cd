"""``nodetrace diff SNAP_A SNAP_B``: what changed on a node between two snapshots, offline.

Arguments in; the snapshots' counters (``snapshot/counters.py``), the comparison
(``model/snapshot_diff.py``) and, with ``--packet``, the packet traced on both by
:func:`nodetrace.api.trace`; the output ``render``'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nodetrace import api
from nodetrace.cli import ExamplesFormatter, add_format
from nodetrace.model.snapshot_diff import diff_snapshots
from nodetrace.model.topology import MAIN_NS
from nodetrace.render.counters_json import diff_document
from nodetrace.render.json import dumps
from nodetrace.render.snapshot_diff_text import render_snapshot_diff
from nodetrace.snapshot.counters import snapshot_counters
from nodetrace.snapshot.load import load

EXAMPLES = """\
examples:
  nodetrace diff before.tar.gz after.tar.gz
      rules, flows, ipsets and devices that changed; counters that grew
  nodetrace diff before.tar.gz after.tar.gz --from-port bf944fec --to-port 7eb6fb94 \\
      --packet tcp,tp_dst=5432,tcp_flags=+syn
      and how that packet's fate differs between the two
"""


def add_packet_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """The packet and its ends, as ``nodetrace trace`` takes them."""
    parser.add_argument("--packet", required=required, metavar="FLOW",
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
    parser.add_argument("--netns", default=MAIN_NS, metavar="NS", help="namespace of --from")
    parser.add_argument("--ct-state", metavar="S", help="conntrack state (default: NEW, said)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare two snapshots of a node: changes, counters, a packet's fate",
        description="Compare two snapshots of one node (bundles, sosreports or folders): "
        "rules and flows added, removed or changed (flows matched by cookie, table, priority "
        "and match, never by position), ipset members, devices, and the counters that grew. "
        "With --packet, trace it on both and say where the two paths part.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("snapshot_a", metavar="SNAP_A")
    parser.add_argument("snapshot_b", metavar="SNAP_B")
    add_packet_arguments(parser, required=False)
    parser.add_argument("--all", action="store_true", help="list every counter that grew")
    add_format(parser, json="docs/json.md")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    a, b = load(args.snapshot_a), load(args.snapshot_b)
    fate = None
    if args.packet:
        traces = [
            api.trace(
                snap,
                args.packet,
                from_device=args.from_iface,
                netns=args.netns,
                from_port=args.from_port,
                from_host=args.from_host,
                to_port=args.to_port,
                ct_state=args.ct_state,
            )
            for snap in (a, b)
        ]
        fate = (args.packet, traces[0], traces[1])
    result = diff_snapshots(a, b, snapshot_counters(a), snapshot_counters(b), fate=fate)
    if args.format == "json":
        sys.stdout.write(dumps(diff_document(result)) + "\n")
    else:
        sys.stdout.write(render_snapshot_diff(result, limit=None if args.all else 50))
    return 0
