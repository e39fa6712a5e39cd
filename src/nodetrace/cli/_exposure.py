"""``nodetrace audit SNAPSHOT --exposure [--port P] [--intended FILE]``: each VM port's exact
exposure, and how it differs from the intended security groups.

``cli/audit.py`` owns the command and its arguments and hands over here with the loaded
snapshot; this module chooses the ports, computes (``audit/exposure*.py``) and prints (text
or JSON, ``render/exposure_*.py``). It lives in ``cli/`` because it does both.
"""

from __future__ import annotations

import argparse
import sys

from nodetrace.audit.exposure import NodeExposure
from nodetrace.audit.exposure_intended import compare, load_intended
from nodetrace.errors import UsageError
from nodetrace.model.exposure import IntendedComparison, PortExposure
from nodetrace.model.node_inventory import PortInfo, PortKind
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron.ports import find_port


def _ports(
    node: NodeExposure, snapshot: Snapshot, wanted: list[str] | str | None
) -> list[PortInfo]:
    if not wanted:
        return list(node.ports())
    names = [wanted] if isinstance(wanted, str) else wanted
    out = []
    for name in names:
        port = find_port(snapshot, name)
        if port.kind is not PortKind.VM:
            raise UsageError(
                f"port {name}: a {port.kind.value} port, not a VM's: it has no exposure"
            )
        out.append(port)
    return out


def run(args: argparse.Namespace, snapshot: Snapshot) -> int:
    node = NodeExposure(snapshot)
    ports = _ports(node, snapshot, getattr(args, "port", None))
    intended = None
    problems: list[str] = []
    if getattr(args, "intended", None):
        intended, problems = load_intended(args.intended)
    for line in problems:
        print(f"nodetrace: {line}", file=sys.stderr)
    results: list[tuple[PortExposure, IntendedComparison | None]] = []
    for port in ports:
        exp = node.exposure(port)
        cmp = compare(snapshot, port, exp, intended) if intended is not None else None
        results.append((exp, cmp))
    if getattr(args, "format", "text") == "json":
        from nodetrace.render.exposure_json import exposure_document
        from nodetrace.render.json import dumps

        print(dumps(exposure_document(results, problems)))
        return 0
    from nodetrace.render.exposure_text import render_comparison, render_exposure

    if not results:
        print("no VM port on this node")
    for exp, cmp in results:
        sys.stdout.write(render_exposure(exp))
        if cmp is not None:
            sys.stdout.write(render_comparison(cmp, exp.atoms))
    return 0
