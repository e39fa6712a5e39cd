"""The pages (``--format html``) and diagrams (``--format svg``) of ``show``, ``trace`` and
``log``: pictures an operator opens offline and pastes into a ticket.

A page is one self-contained file (``render/html_page.py``: inline style, script, SVG and data
under a strict Content-Security-Policy). ``show`` draws the node (``render/node_diagram.py``)
beside a panel of its bridges, ports and VMs, with search, filters and zoom; ``trace`` draws the
packet's path over the node beside its trace tree (``render/html_tree.py``), linked both ways
by hop and step numbers, and an observed trace as a second path in a second colour; ``log``
is ``render/html_log.py``. The caller computes the Neutron inventory (``render/`` does not read
OpenStack's conventions itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Trace
from nodetrace.render.html_inventory import inventory_panel
from nodetrace.render.html_log import Count, LoggedPacket, LogReport, log_page
from nodetrace.render.html_page import document, esc
from nodetrace.render.html_tree import trace_tree
from nodetrace.render.node_diagram import (
    DIAGRAM_CSS,
    Diagram,
    PathMarks,
    node_diagram,
    path_marks,
    standalone_svg,
)

__all__ = [
    "Count",
    "LogReport",
    "LoggedPacket",
    "diagram_svg",
    "log_page",
    "show_page",
    "trace_page",
]

KINDS = (
    "ovs-bridge",
    "ovs-port",
    "linux-bridge",
    "veth",
    "tap",
    "tunnel",
    "uplink",
    "router-port",
    "other",
)
"""The node kinds of the diagram, in the filter's order."""
FIT_ABOVE_NODES = 60
"""A diagram with more nodes than this opens zoomed to fit its pane."""

_NODE_CLASS = re.compile(r'<g class="node ([a-z-]+)')


def _marks(trace: Trace | None, observed: Trace | None) -> list[PathMarks]:
    marks = [path_marks(trace)] if trace is not None else []
    if observed is not None:
        marks.append(replace(path_marks(observed), observed=True))
    return marks


def diagram_svg(
    snapshot: Snapshot,
    inventory: Inventory | None = None,
    trace: Trace | None = None,
    *,
    observed: Trace | None = None,
) -> str:
    """``--format svg``: the diagram alone, with its own stylesheet (and the path when a trace
    is given)."""
    return standalone_svg(snapshot, inventory=inventory, paths=_marks(trace, observed))


def _toolbar(svg: str) -> str:
    present = set(_NODE_CLASS.findall(svg))
    boxes = "".join(
        f'<label><input type="checkbox" class="kind-filter" data-kind="{kind}" checked> '
        f"{kind}</label>"
        for kind in KINDS
        if kind in present
    )
    # Only a node with namespaces drawn as regions has something to collapse.
    collapse = (
        '<label><input type="checkbox" id="collapse-netns"> collapse namespaces</label>'
        if 'class="cluster netns' in svg
        else ""
    )
    return (
        '<div class="toolbar">'
        '<input type="search" id="search" placeholder="search: port id, IP, MAC, device" '
        'aria-label="search the diagram"> <span id="search-count" class="count"></span>'
        '<button id="zoom-out" type="button" title="zoom out">−</button>'
        '<button id="zoom-fit" type="button" title="fit">fit</button>'
        '<button id="zoom-in" type="button" title="zoom in">+</button>'
        f'<span class="filters">{boxes}</span>' + collapse + "</div>"
    )


def _legend(observed: bool) -> str:
    items = [
        ("path", "the packet's path"),
        ("decided", "decided here"),
        ("dropped", "dropped"),
        ("unknown", "unknown"),
    ]
    if observed:
        items[0] = ("path", "predicted path")
        items.append(("observed", "observed path"))
    return (
        '<div class="legend">'
        + "".join(f'<span><span class="swatch {c}"></span>{esc(t)}</span>' for c, t in items)
        + "</div>"
    )


def _elements_of(diagram: Diagram) -> Callable[[str, str], str | None]:
    """The element drawing a hop's device: by namespace and name, else by a name only one
    element has (a trace does not always say which namespace a device is in)."""
    by_name: dict[str, str | None] = {}
    for (_netns, name), drawn in diagram.elements.items():
        by_name[name] = drawn if by_name.get(name, drawn) == drawn else None

    def element(netns: str, device: str) -> str | None:
        return diagram.elements.get((netns, device)) or by_name.get(device)

    return element


def _paths_data(diagram: Diagram, marks: Sequence[PathMarks]) -> list[dict[str, Any]]:
    element = _elements_of(diagram)
    return [
        {
            "observed": m.observed,
            "hops": [
                {
                    "index": h.index,
                    "device": h.device,
                    "netns": h.netns,
                    "steps": list(h.steps),
                    "state": h.state,
                    "element": element(h.netns, h.device),
                }
                for h in m.hops
            ],
        }
        for m in marks
    ]


def _node_count(svg: str) -> int:
    return len(_NODE_CLASS.findall(svg))


def _header(title: str, subtitle: str) -> str:
    return f'<header class="page"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>'


def show_page(snapshot: Snapshot, inventory: Inventory, *, title: str = "") -> str:
    """The node: its diagram with search, filters and zoom, beside its inventory."""
    diagram = node_diagram(snapshot, inventory=inventory)
    node = inventory.node
    host = node.hostname.value if node.hostname is not None else "(hostname unknown)"
    page_title = title or f"nodetrace show · {host}"
    subtitle = (
        f"{len(inventory.ovs_bridges)} OVS bridge(s), {len(inventory.linux_bridges)} Linux "
        f"bridge(s), {len(inventory.ports)} Neutron port(s) · {node.source}"
    )
    body = (
        _header(page_title, subtitle)
        + _toolbar(diagram.svg)
        + '<main class="split"><div class="diagram-pane">'
        + diagram.svg
        + '</div><aside class="side-pane">'
        + inventory_panel(inventory, diagram.elements)
        + "</aside></main>"
    )
    data = {"view": "show", "paths": [], "fit": _node_count(diagram.svg) > FIT_ABOVE_NODES}
    return document(title=page_title, view="show", body=body, data=data, css=DIAGRAM_CSS)


def trace_page(
    snapshot: Snapshot,
    inventory: Inventory | None,
    trace: Trace,
    *,
    title: str,
    observed: Trace | None = None,
) -> str:
    """A packet's path over the node, beside its trace tree; ``observed`` (what a log or the
    node showed) is drawn as a second path with its own tree."""
    marks = _marks(trace, observed)
    diagram = node_diagram(snapshot, inventory=inventory, paths=marks)
    trees = []
    labelled = observed is not None
    for path, (t, m) in enumerate(zip((trace, observed), marks, strict=False)):
        if t is None:
            continue
        hop_of_step = {s: h.index for h in m.hops for s in h.steps}
        heading = ("Observed" if m.observed else "Predicted") if labelled else ""
        trees.append(
            trace_tree(
                t,
                hop_of_step=hop_of_step,
                path=path,
                heading=heading,
                css_class="observed" if m.observed else "predicted",
            )
        )
    body = (
        _header(title, _snapshot_line(snapshot))
        + _toolbar(diagram.svg)
        + _legend(observed is not None)
        + '<main class="split"><div class="diagram-pane">'
        + diagram.svg
        + '</div><aside class="side-pane">'
        + '<div id="hop-detail" hidden></div>'
        + "".join(trees)
        + "</aside></main>"
    )
    data = {
        "view": "trace",
        "paths": _paths_data(diagram, marks),
        "fit": _node_count(diagram.svg) > FIT_ABOVE_NODES,
    }
    return document(title=title, view="trace", body=body, data=data, css=DIAGRAM_CSS)


def _snapshot_line(snapshot: Snapshot) -> str:
    """Which node and where it was read from, for the page's header."""
    host = snapshot.host or "(hostname unknown)"
    when = f" · collected {snapshot.collected_at}" if snapshot.collected_at else ""
    return f"{host}{when} · {snapshot.source}"
