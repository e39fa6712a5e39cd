"""The page of a TRACE log: a timeline of its packets, counts per chain as bars, and each
packet's trace tree.

It is given plain data (:class:`LogReport`, built by the command from the log analysis), so
rendering knows nothing of log formats. Every bar carries the packets behind it (the page's
script lists them on a click), and every count is the summary's own, so the page says what
``nodetrace log --summary`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Outcome, Trace
from nodetrace.render.html_page import document, esc
from nodetrace.render.html_tree import trace_tree
from nodetrace.render.node_diagram import DIAGRAM_CSS, Diagram, node_diagram, path_marks

BAR_WIDTH = 360
"""Pixels of the longest bar."""
BAR_ROW = 20
TIMELINE_WIDTH = 900
TIMELINE_ROW = 26
DOT_STEP = 11
"""Pixels between stacked marks: packets too close in time to tell apart are stacked."""
MAX_LEVELS = 8


def _stacked(xs: list[float]) -> list[tuple[float, int]]:
    """(x, level) per mark: the lowest level where it does not overlap the mark before it
    (marks of more than ``MAX_LEVELS`` packets at one time overlap on the top level)."""
    last: list[float] = []
    out = []
    for x in xs:
        level = next((i for i, end in enumerate(last) if x - end >= DOT_STEP), None)
        if level is None:
            level = min(len(last), MAX_LEVELS - 1)
            if level == len(last):
                last.append(x)
        last[level] = x
        out.append((x, level))
    return out


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    """One packet of the log as the page shows it."""

    index: int
    """Its place in the log's output (from 1), as ``nodetrace log`` numbers it."""
    outcome: Outcome
    source: str
    """The file it was read from."""
    trace: Trace | None
    """Its explained trace; None past the page's limit (counted, not drawn)."""
    title: str = ""
    subtitle: str = ""
    warnings: tuple[str, ...] = ()
    seconds: float | None = None
    """Its log time stamp in seconds (comparable within one file only), None when the log
    printed none."""


@dataclass(frozen=True, slots=True)
class Count:
    """One bar or table row: what is counted, how many, and the packets behind it."""

    label: str
    count: int
    packets: tuple[int, ...] = ()
    detail: str = ""
    """A rule's text, for a dropping rule."""


@dataclass(frozen=True, slots=True)
class LogReport:
    """Everything the log page shows, as the summary counted it."""

    files: tuple[tuple[str, str], ...]
    """(file, format) per input."""
    packets: tuple[LoggedPacket, ...]
    total_packets: int
    by_outcome: tuple[Count, ...]
    chain_drops: tuple[Count, ...]
    """Packets dropped or rejected per ``table:chain`` of the deciding step."""
    chain_ends: tuple[Count, ...]
    """Packets whose trace ends without a verdict, per ``table:chain`` of their last step."""
    chain_hits: tuple[Count, ...]
    """Steps logged per ``table:chain`` (the summary's "chains by hits")."""
    dropping_rules: tuple[Count, ...]
    lines: tuple[tuple[str, int], ...]
    """Line counts by kind: total, parsed, skipped, malformed, not_text."""
    drawn_limit: int = 0
    """How many packets have their tree on the page (0: all)."""
    diagnostics: tuple[str, ...] = ()


def _bars(kind: str, title: str, counts: tuple[Count, ...], bars: dict[str, list[int]]) -> str:
    if not counts:
        return f'<div class="bars {kind}"><h3>{esc(title)}</h3><p class="note">None.</p></div>'
    top = max(c.count for c in counts) or 1
    label_width = 8 * min(60, max(len(c.label) for c in counts)) + 16
    height = BAR_ROW * len(counts) + 4
    rows = []
    for i, c in enumerate(counts):
        key = f"{kind}-{i}"
        bars[key] = list(c.packets)
        y = i * BAR_ROW
        width = max(1, round(BAR_WIDTH * c.count / top))
        rows.append(
            f'<g class="bar" data-bar="{key}" data-label="{esc(c.label)}" data-count="{c.count}">'
            f'<rect class="hit" x="0" y="{y}" width="{label_width + BAR_WIDTH + 60}" '
            f'height="{BAR_ROW}"></rect>'
            f'<text class="label" x="{label_width - 8}" y="{y + 14}" text-anchor="end">'
            f"{esc(c.label)}</text>"
            f'<rect class="fill" x="{label_width}" y="{y + 3}" width="{width}" height="{BAR_ROW - 6}">'
            f"</rect>"
            f'<text class="count" x="{label_width + width + 6}" y="{y + 14}">{c.count}</text></g>'
        )
    return (
        f'<div class="bars {kind}"><h3>{esc(title)}</h3>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + BAR_WIDTH + 60}" '
        f'height="{height}" role="img">{"".join(rows)}</svg></div>'
    )


def _timeline(report: LogReport) -> str:
    timed = [p for p in report.packets if p.seconds is not None]
    head = "<h3>Timeline</h3>"
    if not report.packets:
        return head + '<p class="note">No packets.</p>'
    if not timed:
        return (
            head + '<p class="note">This log has no time stamps (lines without a logger '
            "prefix): the packets are shown in the order of the log.</p>"
        )
    note = ""
    if len(timed) < len(report.packets):
        note = (
            f'<p class="note">{len(report.packets) - len(timed)} packet(s) have no time stamp '
            "and are not on the timeline.</p>"
        )
    files = list(dict.fromkeys(p.source for p in timed))
    rows = []
    label_w = 10
    y = 0
    for name in files:
        mine = [p for p in timed if p.seconds is not None and p.source == name]
        start = min(p.seconds for p in mine if p.seconds is not None)
        end = max(p.seconds for p in mine if p.seconds is not None)
        span = end - start
        placed = _stacked(
            [
                label_w + (TIMELINE_WIDTH * ((p.seconds or start) - start) / span if span else 0)
                for p in mine
            ]
        )
        levels = max((level for _x, level in placed), default=0) + 1
        y += TIMELINE_ROW
        rows.append(
            f'<text x="{label_w}" y="{y - 10}">{esc(name)}: {span:.3f} s from the first packet '
            f"to the last</text>"
            f'<line x1="{label_w}" x2="{label_w + TIMELINE_WIDTH}" y1="{y + 6}" y2="{y + 6}" '
            'stroke="#c8ccd4"></line>'
        )
        for p, (x, level) in zip(mine, placed, strict=True):
            assert p.seconds is not None
            rows.append(
                f'<circle class="outcome-{esc(p.outcome.value)}" cx="{x:.1f}" '
                f'cy="{y + 6 + level * DOT_STEP}" r="5" data-packet="{p.index}">'
                f"<title>packet {p.index} · {esc(p.outcome.value)} · "
                f"+{p.seconds - start:.6f} s</title></circle>"
            )
        y += levels * DOT_STEP + TIMELINE_ROW // 2
    height = y + 4
    legend = (
        '<p class="legend timeline-legend"><span><span class="swatch passed"></span>accepted'
        '</span><span><span class="swatch dropped"></span>dropped or rejected</span><span>'
        '<span class="swatch unknown"></span>trace ends</span><span>click a mark for its '
        "packet</span></p>"
    )
    return (
        head + note + legend + f'<div class="timeline"><svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{TIMELINE_WIDTH + 2 * label_w}" height="{height}" role="img">'
        f"{''.join(rows)}</svg></div>"
    )


def _outcomes(report: LogReport, bars: dict[str, list[int]]) -> str:
    rows = "".join(
        f'<tr class="outcome-{esc(c.label)}"><th>{esc(c.label)}</th><td class="n">{c.count}</td></tr>'
        for c in report.by_outcome
    )
    lines = ", ".join(f"{n:,} {esc(kind)}" for kind, n in report.lines)
    return (
        f'<table class="counts outcomes"><tr><th>packets</th><td class="n">'
        f"{report.total_packets}</td></tr>{rows}</table>"
        f'<p class="note">Lines: {lines}.</p>'
    )


def _dropping_rules(report: LogReport) -> str:
    if not report.dropping_rules:
        return ""
    rows = "".join(
        f'<tr><td class="n">{c.count}</td><td><code>{esc(c.label)}</code></td>'
        f"<td><code>{esc(c.detail)}</code></td></tr>"
        for c in report.dropping_rules
    )
    return (
        '<h3>Dropping rules</h3><table class="counts dropping"><tr><th>packets</th><th>step</th>'
        f"<th>rule</th></tr>{rows}</table>"
    )


def _element_finder(diagram: Diagram) -> dict[str, str | None]:
    """Device name -> element, for names one element draws (a log names devices without
    their namespace)."""
    by_name: dict[str, str | None] = {}
    for (_netns, name), drawn in diagram.elements.items():
        by_name[name] = drawn if by_name.get(name, drawn) == drawn else None
    return by_name


def _packet_paths(report: LogReport, diagram: Diagram) -> dict[str, Any]:
    """Per drawn packet, its hops as the diagram's elements (the page draws one at a time)."""
    by_name = _element_finder(diagram)
    out: dict[str, Any] = {}
    for p in report.packets:
        if p.trace is None:
            continue
        marks = path_marks(p.trace)
        out[str(p.index)] = {
            "observed": True,
            "hops": [
                {
                    "index": h.index,
                    "device": h.device,
                    "netns": h.netns,
                    "steps": list(h.steps),
                    "state": h.state,
                    "element": diagram.elements.get((h.netns, h.device)) or by_name.get(h.device),
                }
                for h in marks.hops
            ],
        }
    return out


def _packets(report: LogReport, paths: dict[str, Any]) -> str:
    out = ['<div class="packet-list"><h2>Packets</h2>']
    drawn = [p for p in report.packets if p.trace is not None]
    if len(drawn) < report.total_packets:
        out.append(
            f'<p class="note">The first {len(drawn)} of {report.total_packets} packets are '
            "drawn; every packet is counted above. Use nodetrace log --match to narrow the "
            "log.</p>"
        )
    for p in drawn:
        assert p.trace is not None
        path = paths.get(str(p.index))
        hop_of_step = {s: h["index"] for h in path["hops"] for s in h["steps"]} if path else {}
        button = (
            f'<button type="button" class="draw-path" data-draw="{p.index}">'
            "draw its path on the node</button>"
            if path
            else ""
        )
        out.append(
            f'<div class="packet" id="packet-{p.index}">{button}'
            + trace_tree(
                p.trace,
                hop_of_step=hop_of_step,
                path=p.index,
                heading=p.title,
                subtitle=p.subtitle,
                warnings=p.warnings,
                packet_line=not p.title,
            )
            + "</div>"
        )
    out.append("</div>")
    return "".join(out)


def log_page(
    report: LogReport,
    *,
    title: str = "",
    snapshot: Snapshot | None = None,
    inventory: Inventory | None = None,
) -> str:
    """The whole page of a log; with the node's ``snapshot`` (the one the log is explained
    with), its diagram too, on which a packet's path is drawn when one is chosen."""
    bars: dict[str, list[int]] = {}
    diagram = node_diagram(snapshot, inventory=inventory) if snapshot is not None else None
    paths = _packet_paths(report, diagram) if diagram is not None else {}
    # The diagram is a child of <main> so that it stays in view over the packets (sticky).
    node = (
        '<h2>The node</h2><p class="note">Click a packet\'s step, or "draw its path on the '
        'node", to see where it went.</p>'
        f'<div class="diagram-pane log-diagram">{diagram.svg}</div>'
        if diagram is not None
        else ""
    )
    names = ", ".join(f"{name} ({fmt})" for name, fmt in report.files)
    page_title = title or f"nodetrace log · {names}"
    diagnostics = "".join(f"<li>{esc(d)}</li>" for d in report.diagnostics)
    body = (
        f'<header class="page"><h1>{esc(page_title)}</h1>'
        f"<p>{report.total_packets} packet(s) · {esc(names)}</p></header>"
        '<main class="single">'
        '<section class="summary"><h2>Summary</h2>'
        + _outcomes(report, bars)
        + _timeline(report)
        + _bars(
            "drops", "Packets dropped, per chain of the deciding rule", report.chain_drops, bars
        )
        + _bars(
            "ends",
            "Traces ending without a verdict, per chain of their last step",
            report.chain_ends,
            bars,
        )
        + _bars("hits", "Steps logged, per chain", report.chain_hits, bars)
        + '<div id="bar-packets" hidden></div>'
        + _dropping_rules(report)
        + (
            f'<details class="diagnostics"><summary>Reported while reading</summary><ul>'
            f"{diagnostics}</ul></details>"
            if diagnostics
            else ""
        )
        + "</section>"
        + node
        + _packets(report, paths)
        + "</main>"
    )
    data: dict[str, Any] = {"view": "log", "bars": bars, "paths": {}, "packetPaths": paths}
    css = DIAGRAM_CSS if diagram is not None else ""
    return document(title=page_title, view="log", body=body, data=data, css=css)
