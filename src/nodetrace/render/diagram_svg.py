"""Draw a laid-out node graph as SVG: boxes where ``dot`` put them, text we measured, every
string from the node escaped.

Element ids are the graph's generated ones (``n1``, ``b2``, ``g3``, ``c4``, ``e5``); names,
addresses and comments from the snapshot only ever appear as escaped text or escaped attribute
values (``data-*``, ``<title>``), never as markup, ids, classes or URLs. Styling is by class:
the page brings its stylesheet; :data:`DIAGRAM_CSS` is the same rules for an SVG opened alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

from nodetrace.render.diagram_graph import Box, DeviceRow, DiagramGraph
from nodetrace.render.graphviz import (
    BoxSpec,
    ClusterSpec,
    EdgeSpec,
    GraphSpec,
    Layout,
    Rect,
)

FONT_SIZE = 11.0
CHAR_WIDTH = 6.7
"""Width of one character of the monospace font at :data:`FONT_SIZE` (0.6 em, rounded up)."""
LINE = 14.0
PAD = 5.0
ROW_GAP = 3.0
MAX_CHARS = 44
"""Longer lines are cut with an ellipsis (44 fits "port" and a UUID); the whole text is in
the element's tooltip."""
MAX_HEADING = 72
MIN_WIDTH = 64.0
CLUSTER_HEADING = 16.0

DIAGRAM_CSS = """\
svg.node-diagram{font-family:ui-monospace,Menlo,Consolas,'DejaVu Sans Mono',monospace;\
font-size:11px;background:#fff}
.node-diagram text{fill:#1d2733}
.node-diagram .name{font-weight:bold}
.node-diagram .detail{fill:#4a5563}
.node-diagram .node>rect{fill:#f5f7fa;stroke:#8793a3;stroke-width:1}
.node-diagram .ovs-bridge>rect{fill:#dbe9fb;stroke:#3c6fb0;stroke-width:1.6}
.node-diagram .ovs-port>rect{fill:#eef4fd;stroke:#6f93c4}
.node-diagram .linux-bridge>rect{fill:#e0f3e4;stroke:#3f8a52;stroke-width:1.4}
.node-diagram .veth>rect{fill:#f7f2e4;stroke:#a68a3c}
.node-diagram .tap>rect{fill:#fbeee4;stroke:#b0703c}
.node-diagram .tunnel>rect{fill:#efe6f8;stroke:#7a4fb0;stroke-width:1.4}
.node-diagram .uplink>rect{fill:#e4e7eb;stroke:#2f3a46;stroke-width:1.8}
.node-diagram .router-port>rect{fill:#e2f4f4;stroke:#2e8a8a}
.node-diagram .other>rect{fill:#f3f3f3;stroke:#999;stroke-dasharray:3 2}
.node-diagram .chain>rect,.node-diagram .group>rect{fill:#fff;stroke:#8793a3;stroke-width:1}
.node-diagram .group>rect{fill:#f0f2f5;stroke-dasharray:5 3}
.node-diagram .heading{fill:#30404f}
.node-diagram .cluster>rect{fill:none;stroke:#b5bec9;stroke-dasharray:4 3}
.node-diagram .cluster.netns>rect{fill:#fafbfc;stroke:#7d8894;stroke-dasharray:none}
.node-diagram .edge path{fill:none;stroke:#8793a3;stroke-width:1.2}
.node-diagram .edge.patch path{stroke:#3c6fb0;stroke-dasharray:6 3}
.node-diagram .edge.veth path{stroke:#a68a3c;stroke-width:2}
.node-diagram .edge.underlay path{stroke:#7a4fb0;stroke-dasharray:2 3}
.node-diagram .edge.path path{stroke:#e07b00;stroke-width:3.5;stroke-dasharray:none}
.node-diagram .edge.path.observed path{stroke:#1a7fc1}
.node-diagram .hop>rect{stroke:#e07b00;stroke-width:3}
.node-diagram .hop.observed>rect{stroke:#1a7fc1}
.node-diagram .hop-decided>rect{stroke-width:4.5}
.node-diagram .hop-dropped>rect{stroke:#c62828;stroke-width:4.5;fill:#fde4e4}
.node-diagram .hop-unknown>rect{stroke:#666;stroke-width:3.5;stroke-dasharray:4 3}
"""


@dataclass(frozen=True, slots=True)
class Mark:
    """What the drawn paths say of one element."""

    classes: tuple[str, ...]
    hops: tuple[int, ...]
    """The hop indexes of the first path that visits the element."""


def _cut(text: str, limit: int = MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _width(lines: Iterable[str]) -> float:
    longest = max((len(_cut(s)) for s in lines), default=0)
    return max(MIN_WIDTH, longest * CHAR_WIDTH + 2 * PAD)


def _row_height(row: DeviceRow) -> float:
    return LINE * (1 + len(row.details)) + 2 * PAD


def _compact_lines(row: DeviceRow) -> list[str]:
    return [row.name, *row.details[:1]]


def _compact_widths(box: Box) -> list[float]:
    return [_width(_compact_lines(r)) for r in box.rows]


def _heading_width(lines: Iterable[str]) -> float:
    return max((len(_cut(s, MAX_HEADING)) for s in lines), default=0) * CHAR_WIDTH


def box_size(box: Box) -> tuple[float, float]:
    """The size our drawing of ``box`` needs (``dot`` lays boxes of exactly this size)."""
    if box.compact:
        rows = sum(_compact_widths(box)) + ROW_GAP * (len(box.rows) - 1)
        width = max(rows, _heading_width(box.heading)) + 2 * PAD
        return width, LINE * (len(box.heading) + 2) + 4 * PAD
    if len(box.rows) == 1 and not box.heading:
        row = box.rows[0]
        return _width([row.name, *row.details]), _row_height(row)
    lines = [*box.heading, *(s for r in box.rows for s in (r.name, *r.details))]
    width = _width(lines) + 2 * PAD
    height = LINE * len(box.heading) + 2 * PAD
    height += sum(_row_height(r) + ROW_GAP for r in box.rows)
    return width, height


def graph_spec(graph: DiagramGraph) -> GraphSpec:
    """What ``dot`` needs: our ids, sizes, regions and links; no text."""
    boxes = tuple(BoxSpec(b.id, *box_size(b), cluster=b.cluster) for b in graph.boxes)
    clusters = tuple(
        ClusterSpec(c.id, c.parent, CLUSTER_HEADING * len(c.heading)) for c in graph.clusters
    )
    edges = tuple(
        EdgeSpec(link.id, link.tail_box, link.head_box, weight=2 if link.kind != "port" else 1)
        for link in graph.links
    )
    return GraphSpec(boxes, clusters, edges)


def _attr(value: str) -> str:
    return escape(value, quote=True)


def _classes(base: str, mark: Mark | None) -> str:
    return base if mark is None else f"{base} {' '.join(mark.classes)}"


def _hop_attrs(mark: Mark | None) -> str:
    if mark is None or not mark.hops:
        return ""
    hops = " ".join(map(str, mark.hops))
    return f' data-hop="{mark.hops[0]}" data-hops="{hops}"'


def _text(x: float, y: float, text: str, cls: str, limit: int = MAX_CHARS) -> str:
    shown = escape(_cut(text, limit), quote=True)
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{cls}">{shown}</text>'


def _rect(r: Rect, radius: float = 3.0) -> str:
    return (
        f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.width:.1f}" height="{r.height:.1f}" '
        f'rx="{radius:.0f}"/>'
    )


def _row(row: DeviceRow, area: Rect, marks: Mapping[str, Mark], *, compact: bool = False) -> str:
    mark = marks.get(row.element)
    lines = _compact_lines(row) if compact else [row.name, *row.details]
    title = escape("\n".join([row.name, *row.details]), quote=True)
    parts = [
        f'<g class="{_classes("node " + row.kind.value, mark)}" id="{row.element}" '
        f'data-device="{_attr(row.name)}" data-netns="{_attr(row.netns)}" '
        f'data-search="{_attr(" ".join(row.search))}"{_hop_attrs(mark)}>',
        _rect(area),  # first: the page's styles outline a node's first child
        f"<title>{title}</title>",
    ]
    y = area.y + PAD + FONT_SIZE
    for i, line in enumerate(lines):
        parts.append(_text(area.x + PAD, y, line, "name" if i == 0 else "detail"))
        y += LINE
    parts.append("</g>")
    return "".join(parts)


def _box(box: Box, r: Rect, marks: Mapping[str, Mark]) -> str:
    if len(box.rows) == 1 and not box.heading:
        return _row(box.rows[0], r, marks)
    kind = "group folded" if box.folded_count else "chain compact" if box.compact else "chain"
    mark = marks.get(box.id)
    count = f' data-count="{box.folded_count}"' if box.folded_count else ""
    title = "\n".join(box.heading) if box.heading else ""
    parts = [
        f'<g class="{_classes(kind, mark)}" id="{box.id}"{count} '
        f'data-search="{_attr(" ".join(box.search))}"{_hop_attrs(mark)}>',
        _rect(r, 5.0),
        f"<title>{escape(title, quote=True)}</title>" if title else "",
    ]
    y = r.y + PAD + FONT_SIZE
    for line in box.heading:
        parts.append(_text(r.x + PAD, y, line, "heading", MAX_HEADING))
        y += LINE
    y += PAD - FONT_SIZE
    if box.compact:
        x = r.x + PAD
        for row, w in zip(box.rows, _compact_widths(box), strict=True):
            area = Rect(x, y, w, 2 * LINE + 2 * PAD)
            parts.append(_row(row, area, marks, compact=True))
            x += w + ROW_GAP
        parts.append("</g>")
        return "".join(parts)
    for row in box.rows:
        h = _row_height(row)
        parts.append(_row(row, Rect(r.x + PAD, y, r.width - 2 * PAD, h), marks))
        y += h + ROW_GAP
    parts.append("</g>")
    return "".join(parts)


def _path(points: Iterable[tuple[float, float]]) -> str:
    pts = list(points)
    if not pts:
        return ""
    d = [f"M{pts[0][0]:.1f},{pts[0][1]:.1f}"]
    rest = pts[1:]
    if len(rest) % 3 == 0 and rest:
        for i in range(0, len(rest), 3):
            (x1, y1), (x2, y2), (x3, y3) = rest[i : i + 3]
            d.append(f"C{x1:.1f},{y1:.1f} {x2:.1f},{y2:.1f} {x3:.1f},{y3:.1f}")
    else:
        d.extend(f"L{x:.1f},{y:.1f}" for x, y in rest)
    return " ".join(d)


def draw(
    graph: DiagramGraph,
    layout: Layout,
    *,
    marks: Mapping[str, Mark] | None = None,
    edge_marks: Mapping[str, tuple[str, ...]] | None = None,
    css: str | None = None,
) -> str:
    """One ``<svg>`` element; ``css`` is embedded as a ``<style>`` when given (an SVG opened
    on its own has no page to style it)."""
    marks = marks or {}
    edge_marks = edge_marks or {}
    margin = 4.0
    width, height = layout.width + 2 * margin, layout.height + 2 * margin
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="node-diagram" '
        f'viewBox="{-margin:.1f} {-margin:.1f} {width:.1f} {height:.1f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img">'
    ]
    if css:
        out.append(f"<style>{escape(css, quote=False)}</style>")
    out.append('<g class="clusters">')
    for c in graph.clusters:
        r = layout.clusters.get(c.id)
        if r is None:
            continue
        out.append(
            f'<g class="cluster {c.kind}" id="{c.id}" data-netns="{_attr(c.netns)}" '
            f'data-search="{_attr(" ".join(c.search))}">'
            f"{_rect(r, 6.0)}<title>{escape(chr(10).join(c.heading), quote=True)}</title>"
        )
        y = r.y + FONT_SIZE + 3
        for line in c.heading:
            out.append(_text(r.x + 6, y, line, "heading", MAX_HEADING))
            y += CLUSTER_HEADING
        out.append("</g>")
    out.append('</g><g class="edges">')
    for link in graph.links:
        curve = layout.edges.get(link.id)
        if curve is None:
            continue
        extra = edge_marks.get(link.id, ())
        cls = " ".join(("edge", link.kind.value, *extra))
        d = _path((p.x, p.y) for p in curve.points)
        out.append(
            f'<g class="{cls}" id="{link.id}" data-from="{link.tail}" data-to="{link.head}">'
            f'<path d="{d}"/></g>'
        )
    out.append('</g><g class="nodes">')
    for box in graph.boxes:
        out.append(_box(box, layout.boxes[box.id], marks))
    out.append("</g></svg>")
    return "".join(out)
