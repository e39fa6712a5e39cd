"""The node diagram: a snapshot's namespaces, bridges, ports, veths, taps, tunnels and uplink
as one SVG laid out by Graphviz, with packets' paths drawn over it.

The steps are kept apart so each can be read alone: :mod:`.diagram_graph` decides what is drawn
(and what is folded on a large node), :mod:`.graphviz` asks ``dot`` where it goes,
:mod:`.diagram_svg` draws it with every input string escaped, and :mod:`.diagram_path` turns a
trace into the hops marked here. The SVG's classes, ids and ``data-*`` attributes are the
interface the HTML page's script relies on (``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.render.diagram_devices import Key
from nodetrace.render.diagram_graph import DiagramGraph, build_graph
from nodetrace.render.diagram_path import Hop, HopState, PathMarks, path_marks
from nodetrace.render.diagram_svg import DIAGRAM_CSS, Mark, draw, graph_spec
from nodetrace.render.graphviz import layout

__all__ = [
    "DIAGRAM_CSS",
    "Diagram",
    "Hop",
    "PathMarks",
    "node_diagram",
    "path_marks",
    "standalone_svg",
]

_STATE_RANK: dict[HopState, int] = {"passed": 0, "decided": 1, "unknown": 2, "dropped": 3}


@dataclass(frozen=True, slots=True)
class Diagram:
    svg: str
    """One ``<svg>`` element, every input string escaped."""
    elements: Mapping[tuple[str, str], str]
    """(namespace, device) → the SVG element id drawing it (a folded device: its group's)."""


def _element_of(hop: Hop, elements: Mapping[Key, str], by_name: Mapping[str, str]) -> str | None:
    """The element of a hop: by namespace and name, else by a name only one namespace has (a
    trace does not always say which namespace a device is in)."""
    return elements.get((hop.netns, hop.device)) or by_name.get(hop.device)


def _unique_names(elements: Mapping[Key, str]) -> dict[str, str]:
    seen: dict[str, str | None] = {}
    for (_, name), element in elements.items():
        seen[name] = element if name not in seen or seen[name] == element else None
    return {name: e for name, e in seen.items() if e is not None}


def _marks(
    graph: DiagramGraph, paths: Sequence[PathMarks]
) -> tuple[dict[str, Mark], dict[str, tuple[str, ...]]]:
    by_name = _unique_names(graph.elements)
    links: dict[tuple[str, str], str] = {}
    for link in graph.links:
        links[(link.tail, link.head)] = link.id
        links[(link.head, link.tail)] = link.id
    states: dict[str, HopState] = {}
    observed: dict[str, bool] = {}
    hops_of: dict[str, tuple[int, ...]] = {}
    edges: dict[str, set[str]] = {}
    for marks in paths:
        visited: dict[str, list[int]] = {}
        previous: str | None = None
        for hop in marks.hops:
            element = _element_of(hop, graph.elements, by_name)
            if element is None:
                previous = None
                continue
            visited.setdefault(element, []).append(hop.index)
            old = states.get(element, "passed")
            states[element] = hop.state if _STATE_RANK[hop.state] > _STATE_RANK[old] else old
            observed[element] = observed.get(element, False) or marks.observed
            if previous is not None and previous != element:
                link_id = links.get((previous, element))
                if link_id is not None:
                    edges.setdefault(link_id, set()).update(
                        ("path", "observed") if marks.observed else ("path",)
                    )
            previous = element
        for element, indexes in visited.items():
            hops_of.setdefault(element, tuple(indexes))
    result = {}
    for element, state in states.items():
        classes = ["hop", f"hop-{state}"] + (["observed"] if observed[element] else [])
        result[element] = Mark(tuple(classes), hops_of.get(element, ()))
    return result, {k: tuple(sorted(v)) for k, v in edges.items()}


def node_diagram(
    snapshot: Snapshot,
    *,
    inventory: Inventory | None = None,
    paths: Sequence[PathMarks] = (),
    focus: Collection[str] = (),
    css: str | None = None,
) -> Diagram:
    """The diagram of ``snapshot`` with ``paths`` marked.

    ``inventory`` (``nodetrace.neutron.inventory.inventory(snapshot)``) groups devices by
    Neutron port with its ID, MAC and addresses. ``focus``: device names, port IDs (or their
    first 8+ characters), MACs or addresses whose ports stay drawn device by device on a large
    node; the paths' hops always do. ``css``: a stylesheet to embed (see
    :func:`standalone_svg`); a page brings its own.
    """
    keep = set(focus) | {hop.device for marks in paths for hop in marks.hops}
    graph = build_graph(snapshot, inventory=inventory, focus=keep)
    placed = layout(graph_spec(graph))
    marks, edge_marks = _marks(graph, paths)
    svg = draw(graph, placed, marks=marks, edge_marks=edge_marks, css=css)
    return Diagram(svg, dict(graph.elements))


def standalone_svg(
    snapshot: Snapshot,
    *,
    inventory: Inventory | None = None,
    paths: Sequence[PathMarks] = (),
    focus: Collection[str] = (),
) -> str:
    """An SVG file's text: the diagram with its own stylesheet (``--format svg``)."""
    diagram = node_diagram(snapshot, inventory=inventory, paths=paths, focus=focus, css=DIAGRAM_CSS)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + diagram.svg + "\n"
