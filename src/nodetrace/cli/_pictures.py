"""``--format html`` and ``--format svg`` of ``show`` and ``trace``: the node's inventory is
computed here (``render/`` does not read OpenStack's conventions) and handed to the pages of
``render/html.py``. Imported only when a picture is asked for."""

from __future__ import annotations

import argparse

from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Trace
from nodetrace.neutron.inventory import inventory
from nodetrace.render.html import diagram_svg, show_page, trace_page


def show_picture(fmt: str, snap: Snapshot, inv: Inventory) -> str:
    """The ``show`` page, or its diagram alone."""
    return show_page(snap, inv) if fmt == "html" else diagram_svg(snap, inv)


def trace_title(args: argparse.Namespace) -> str:
    """The page's title: the packet and where it was sent from and to, as the user gave them."""
    start = (
        f"from {args.from_iface}"
        if args.from_iface
        else f"from port {args.from_port}"
        if args.from_port
        else "from the host"
        if args.from_host
        else ""
    )
    to = f"to port {args.to_port}" if args.to_port else ""
    return " ".join(x for x in ("nodetrace trace ·", args.packet, start, to) if x)


def trace_picture(fmt: str, snap: Snapshot, trace: Trace, args: argparse.Namespace) -> str:
    """The ``trace`` page (the path over the node beside the steps), or the diagram alone."""
    inv = inventory(snap)
    if fmt == "html":
        return trace_page(snap, inv, trace, title=trace_title(args))
    return diagram_svg(snap, inv, trace)
