"""``nodetrace show SNAPSHOT``: what is on this node — bridges and their ports, the Neutron
ports (VMs first) with their devices, addresses, VLANs, zones, chains and flows, the
namespaces, and what the snapshot lacks.

Arguments in, ``neutron.inventory`` for the facts, ``render.show_text``/``show_json`` out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nodetrace.cli import EXIT_NOTHING_USABLE, ExamplesFormatter, add_format
from nodetrace.neutron.inventory import inventory
from nodetrace.render.json import dumps
from nodetrace.render.screen import Screen
from nodetrace.render.show_json import show_document
from nodetrace.render.show_text import render_show
from nodetrace.snapshot.load import load

EXAMPLES = """\
examples:
  (files of the bundled examples, in src/nodetrace/examples/)
  nodetrace show two-nodes-cmp1.snapshot.tar.gz
      bridges, Neutron ports with their devices, addresses and chains, what is missing
  nodetrace show two-nodes-cmp1.snapshot.tar.gz --format json | jq '.ports[] | {port_id, tap, ips}'
      the same as data, with where each value was read (docs/json.md)
  nodetrace show sosreport-compute1-2024-05-02.tar.xz
      a sosreport or a folder of saved command outputs works too
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "show",
        help="summarise a node snapshot: bridges, ports, VMs, chains and flows",
        description="Read a snapshot (bundle, sosreport or folder of command outputs; folder "
        "or archive) and summarise the node: Open vSwitch and Linux bridges with their ports, "
        "the Neutron ports (VMs, DHCP, routers) with their devices, MAC and IP addresses, "
        "local VLAN and segment, conntrack zone, iptables chains and OpenFlow flows, the "
        "namespaces, and what the snapshot does not contain.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT")
    add_format(
        parser,
        json="docs/json.md",
        html="one page: the node's diagram with search, and its inventory; docs/pictures.md",
        svg="the node's diagram alone",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    snap = load(args.snapshot)
    inv = inventory(snap)
    if args.format == "json":
        print(dumps(show_document(inv)))
    elif args.format in ("html", "svg"):
        from nodetrace.cli._pictures import show_picture  # the diagram's modules only when asked

        sys.stdout.write(show_picture(args.format, snap, inv))
    else:
        sys.stdout.write(render_show(inv, Screen.of(sys.stdout)))
    if (
        not snap.raw
        and snap.ovs is None
        and not snap.topology.interfaces
        and not any(ns.iptables is not None for ns in snap.namespaces)
    ):
        print(f"nodetrace: error: nothing usable: {args.snapshot} holds no known command output",
              file=sys.stderr)  # fmt: skip
        return EXIT_NOTHING_USABLE
    return 0
