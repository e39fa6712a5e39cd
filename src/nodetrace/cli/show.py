"""``nodetrace show SNAPSHOT``: what is on this node — bridges and their ports, the Neutron
ports (VMs first) with their devices, addresses, VLANs, zones, chains and flows, the
namespaces, and what the snapshot lacks.

Arguments in, ``neutron.inventory`` for the facts, ``render.show_text``/``show_json`` out.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nodetrace.cli import EXIT_NOTHING_USABLE
from nodetrace.neutron.inventory import inventory
from nodetrace.render.show_json import show_document
from nodetrace.render.show_text import render_show
from nodetrace.snapshot.load import load


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "show",
        help="summarise a node snapshot: bridges, ports, VMs, chains and flows",
        description="Read a snapshot (bundle, sosreport or folder of command outputs; folder "
        "or archive) and summarise the node: Open vSwitch and Linux bridges with their ports, "
        "the Neutron ports (VMs, DHCP, routers) with their devices, MAC and IP addresses, "
        "local VLAN and segment, conntrack zone, iptables chains and OpenFlow flows, the "
        "namespaces, and what the snapshot does not contain.",
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    snap = load(args.snapshot)
    inv = inventory(snap)
    if args.format == "json":
        print(json.dumps(show_document(inv), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render_show(inv))
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
