"""``nodetrace trace SNAPSHOT --packet FLOW``: follow one packet through the whole node.

Where it starts: ``--from IFACE`` (a VM's tap, a NIC, an OVS port; a bridge's own port such as
``br-int``: the host's frame enters the bridge from LOCAL, as ``ofproto/trace in_port=LOCAL``; a
frame given with ``tun_src``/``tun_dst``/``tun_id`` arrives encapsulated), ``--from-port UUID``
(the VM of that Neutron port sends it; for a DHCP or router port, its namespace sends it out of
the port's device), ``--from-host`` (the host sends it), or ``--to-port UUID`` alone (it arrives
over the tunnel of that port's network). ``--to-port`` also names what the packet is
meant to reach, so the verdict says whether it got there.

Arguments in, a call to :func:`nodetrace.api.trace` (the library's own entry, so a script gets
the same answer), the output ``render``'s.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nodetrace import api
from nodetrace.cli import ExamplesFormatter, add_format, add_levels
from nodetrace.model.topology import MAIN_NS
from nodetrace.render.json import dumps, trace_document
from nodetrace.render.kernel_trace import render_kernel_walk
from nodetrace.render.ofproto_trace import render_ofproto_walk
from nodetrace.render.screen import Screen
from nodetrace.render.text import Level, render_trace
from nodetrace.snapshot.load import load

EXAMPLES = """\
examples:
  (files of the bundled examples, in src/nodetrace/examples/)
  nodetrace trace two-nodes-cmp1.snapshot.tar.gz --from-port bf944fec --to-port 7eb6fb94 \\
      --packet tcp,tp_dst=5432,tcp_flags=+syn
      web1 to db1: each step, the rule or flow behind it, and the verdict
  nodetrace trace two-nodes-cmp1.snapshot.tar.gz --to-port 7eb6fb94 --packet icmp --summary
      a ping for db1 arriving over the tunnel: one line per hop
  nodetrace trace two-nodes-cmp1.snapshot.tar.gz --from tap7eb6fb94-79 --packet arp --detailed
      every field of every step, and the packet wherever it changed
  nodetrace trace two-nodes-cmp1.snapshot.tar.gz --from-port bf944fec --to-port 7eb6fb94 \\
      --packet tcp,tp_dst=5432,tcp_flags=+syn --format kernel
      the netfilter steps as the kernel's TRACE lines (--format ofproto: as ofproto/trace)
  nodetrace trace two-nodes-cmp1.snapshot.tar.gz --from-host --packet icmp,nw_dst=192.168.50.2
      the host pings the other node: OUTPUT, POSTROUTING, br-phys, out of the node
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="follow a packet through the whole node (OVS, veth, Linux bridge, iptables)",
        description="Simulate one packet through a node snapshot: OpenFlow pipelines, veth "
        "pairs, Linux bridges with br_netfilter and iptables, routing and tunnels, until it is "
        "delivered, dropped (by which flow or rule) or unknown (why). FLOW is OVS flow syntax, "
        "as ovs-appctl ofproto/trace takes it.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT")
    parser.add_argument("--packet", required=True, metavar="FLOW")
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
    add_format(
        parser,
        kernel="the netfilter steps as TRACE lines",
        ofproto="the OpenFlow steps as ofproto/trace prints them",
        json="docs/json.md",
        html="one page: the path over the node's diagram beside the steps; docs/pictures.md",
        svg="the node's diagram with the path alone",
    )
    add_levels(
        parser,
        summary="one line per hop (device, bridge, hook) with the rule or flow that decided it",
        detailed="every field of every step, and the packet wherever it changed",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    snap = load(args.snapshot)
    trace = api.trace(
        snap,
        args.packet,
        from_device=args.from_iface,
        netns=args.netns,
        from_port=args.from_port,
        from_host=args.from_host,
        to_port=args.to_port,
        ct_state=args.ct_state,
    )
    match args.format:
        case "json":
            sys.stdout.write(dumps(trace_document("trace", trace)) + "\n")
        case "kernel":
            text, marked = render_kernel_walk(trace)
            if not marked and text:
                print(
                    "nodetrace: no -j TRACE rule marks this packet: every netfilter step is "
                    "printed",
                    file=sys.stderr,
                )
            sys.stdout.write(text)
        case "ofproto":
            sys.stdout.write(render_ofproto_walk(trace))
        case "html" | "svg":
            from nodetrace.cli._pictures import trace_picture  # the diagram only when asked

            sys.stdout.write(trace_picture(args.format, snap, trace, args))
        case _:
            sys.stdout.write(render_trace(trace, Screen.of(sys.stdout), level=Level(args.level)))
    return 0
