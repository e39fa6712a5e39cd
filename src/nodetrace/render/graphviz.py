"""Graph layout by Graphviz's ``dot``: boxes of given sizes in, positions and edge curves out.

The diagram never computes coordinates itself: it hands ``dot`` a graph whose every identifier
is one we generated (``n1``, ``cluster_c1``) and whose nodes are empty boxes of a size we
measured, runs ``dot -Tjson0`` (an argv list, no shell, a timeout) and reads back where each
box, cluster and edge went. No text from a snapshot is ever written into the DOT source, so a
hostile interface name cannot change the graph or Graphviz's behaviour; labels stay on our side
and are drawn, escaped, by :mod:`nodetrace.render.diagram_svg`.

This is the one module of ``render/`` that starts a process.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nodetrace.errors import InputError

POINTS_PER_INCH = 72.0
DOT_TIMEOUT = 60.0
"""Seconds ``dot`` may take; a 500-port node takes well under one."""

_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_ATTRIBUTE_VALUE = re.compile(r"[A-Za-z0-9_.]*\Z")


@dataclass(frozen=True, slots=True)
class BoxSpec:
    """A node for ``dot``: our id and the size, in points, our drawing needs."""

    id: str
    width: float
    height: float
    cluster: str | None = None
    """The id of the cluster holding it (``None``: the top level)."""


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    id: str
    parent: str | None = None
    label_height: float = 0.0
    """Room, in points, kept free at the cluster's top for the label we draw there."""


@dataclass(frozen=True, slots=True)
class EdgeSpec:
    id: str
    tail: str
    head: str
    weight: int = 1
    """Higher: ``dot`` tries harder to keep this edge short and straight."""


@dataclass(frozen=True, slots=True)
class GraphSpec:
    boxes: tuple[BoxSpec, ...]
    clusters: tuple[ClusterSpec, ...] = ()
    edges: tuple[EdgeSpec, ...] = ()
    rankdir: str = "LR"
    nodesep: float = 0.12
    """Inches between boxes of one rank."""
    ranksep: float = 0.45
    """Inches between ranks."""


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class Rect:
    """A box in the drawing's coordinates (points, y growing downwards as in SVG)."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class EdgeCurve:
    id: str
    points: tuple[Point, ...]
    """A cubic Bézier spline as ``dot`` routed it: a start point and three points per piece."""


@dataclass(frozen=True, slots=True)
class Layout:
    width: float
    height: float
    boxes: dict[str, Rect]
    clusters: dict[str, Rect]
    edges: dict[str, EdgeCurve]


def dot_source(graph: GraphSpec) -> str:
    """The DOT text of ``graph``: only our ids and numbers, no label, nothing from inputs."""
    for ident in (
        *(b.id for b in graph.boxes),
        *(c.id for c in graph.clusters),
        *(e.id for e in graph.edges),
    ):
        if not _ID.match(ident):
            raise ValueError(f"not a generated identifier: {ident!r}")
    if not _ATTRIBUTE_VALUE.match(graph.rankdir):
        raise ValueError(f"bad rankdir {graph.rankdir!r}")
    children: dict[str | None, list[ClusterSpec]] = {}
    for c in graph.clusters:
        children.setdefault(c.parent, []).append(c)
    boxes: dict[str | None, list[BoxSpec]] = {}
    for b in graph.boxes:
        boxes.setdefault(b.cluster, []).append(b)

    lines = [
        "digraph G {",
        f"graph [rankdir={graph.rankdir}, nodesep={graph.nodesep:.3f}, "
        f"ranksep={graph.ranksep:.3f}, outputorder=edgesfirst, splines=true];",
        'node [shape=box, fixedsize=true, label=""];',
        "edge [dir=none];",
    ]

    def emit(parent: str | None, indent: str) -> None:
        for c in children.get(parent, []):
            lines.append(f"{indent}subgraph cluster_{c.id} {{")
            # A blank label of the heading's font size keeps room for the heading we draw.
            label = (
                f'label=" ", labelloc=t, fontsize={c.label_height:.1f}'
                if c.label_height > 0
                else 'label=""'
            )
            lines.append(f"{indent}  graph [{label}, margin=8];")
            emit(c.id, indent + "  ")
            lines.append(f"{indent}}}")
        for b in boxes.get(parent, []):
            lines.append(
                f"{indent}{b.id} [width={b.width / POINTS_PER_INCH:.4f}, "
                f"height={b.height / POINTS_PER_INCH:.4f}];"
            )

    emit(None, "")
    for e in graph.edges:
        lines.append(f"{e.tail} -> {e.head} [id={e.id}, weight={e.weight}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_program() -> str:
    """The path of ``dot``, or the one-line error saying how to get it."""
    found = shutil.which("dot")
    if found is None:
        raise InputError("Graphviz's dot is needed for diagrams: apt install graphviz")
    return found


def run_dot(source: str, *, timeout: float = DOT_TIMEOUT) -> dict[str, Any]:
    """``dot -Tjson0`` on ``source``: the graph as Graphviz's JSON."""
    program = dot_program()
    try:
        done = subprocess.run(
            [program, "-Tjson0"],
            input=source.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise InputError(
            f"Graphviz's dot took more than {timeout:g} s to lay out the diagram"
        ) from err
    except OSError as err:
        raise InputError(f"Graphviz's dot could not be run: {err}") from err
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise InputError(
            f"Graphviz's dot failed (exit {done.returncode}): {message[0] if message else ''}"
        )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def layout(graph: GraphSpec, *, timeout: float = DOT_TIMEOUT) -> Layout:
    """Lay ``graph`` out with ``dot``."""
    return parse_layout(run_dot(dot_source(graph), timeout=timeout), graph)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def parse_layout(data: dict[str, Any], graph: GraphSpec) -> Layout:
    """Read ``dot``'s JSON: positions flipped so that y grows downwards."""
    x0, y0, x1, y1 = _floats(str(data["bb"]))
    height = y1 - y0

    def point(x: float, y: float) -> Point:
        return Point(x - x0, height - (y - y0))

    known_boxes = {b.id for b in graph.boxes}
    known_clusters = {f"cluster_{c.id}": c.id for c in graph.clusters}
    boxes: dict[str, Rect] = {}
    clusters: dict[str, Rect] = {}
    by_gvid: dict[int, str] = {}
    for obj in data.get("objects", ()):
        name = str(obj.get("name", ""))
        if name in known_clusters and "bb" in obj:
            bx0, by0, bx1, by1 = _floats(str(obj["bb"]))
            top = point(bx0, by1)
            clusters[known_clusters[name]] = Rect(top.x, top.y, bx1 - bx0, by1 - by0)
        elif "pos" in obj:
            by_gvid[int(obj["_gvid"])] = name
            if name in known_boxes:
                cx, cy = _floats(str(obj["pos"]))
                w = float(obj["width"]) * POINTS_PER_INCH
                h = float(obj["height"]) * POINTS_PER_INCH
                centre = point(cx, cy)
                boxes[name] = Rect(centre.x - w / 2, centre.y - h / 2, w, h)
    edges: dict[str, EdgeCurve] = {}
    for edge in data.get("edges", ()):
        ident = str(edge.get("id", ""))
        pos = edge.get("pos")
        if not ident or not isinstance(pos, str):
            continue
        edges[ident] = EdgeCurve(ident, tuple(point(*xy) for xy in _spline(pos)))
    missing = known_boxes - boxes.keys()
    if missing:
        raise InputError(f"Graphviz's dot placed no box for {len(missing)} of the diagram's nodes")
    return Layout(x1 - x0, height, boxes, clusters, edges)


def _spline(pos: str) -> Sequence[tuple[float, float]]:
    """The control points of an edge's ``pos`` (``e,x,y`` and ``s,x,y`` name arrow ends,
    which undirected drawing does not use)."""
    points: list[tuple[float, float]] = []
    for token in pos.split():
        if token.startswith(("e,", "s,")):
            continue
        x, y = _floats(token)[:2]
        points.append((x, y))
    return points
