"""The layout by Graphviz's dot: only our ids reach it, the sizes we ask for come back, and a
node without Graphviz gets one line saying what to install."""

from __future__ import annotations

import os
import shutil

import pytest

from nodetrace.errors import InputError
from nodetrace.render.graphviz import (
    BoxSpec,
    ClusterSpec,
    EdgeSpec,
    GraphSpec,
    Rect,
    dot_source,
    layout,
)

# Skipped only on a developer machine without Graphviz; on CI (which installs it) never.
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("CI"), reason="Graphviz's dot"
)

GRAPH = GraphSpec(
    boxes=(
        BoxSpec("n1", 120, 40),
        BoxSpec("n2", 80, 30, cluster="c1"),
        BoxSpec("n3", 90, 60, cluster="c1"),
        BoxSpec("n4", 70, 20),
    ),
    clusters=(ClusterSpec("c1", label_height=16),),
    edges=(EdgeSpec("e1", "n1", "n2"), EdgeSpec("e2", "n1", "n3"), EdgeSpec("e3", "n3", "n4")),
)


def _inside(inner: Rect, outer: Rect) -> bool:
    return (
        outer.x <= inner.x + 0.5
        and outer.y <= inner.y + 0.5
        and inner.x + inner.width <= outer.x + outer.width + 0.5
        and inner.y + inner.height <= outer.y + outer.height + 0.5
    )


def _overlap(a: Rect, b: Rect) -> bool:
    return (
        a.x < b.x + b.width
        and b.x < a.x + a.width
        and a.y < b.y + b.height
        and b.y < a.y + a.height
    )


def test_the_dot_text_holds_only_generated_ids_and_numbers() -> None:
    text = dot_source(GRAPH)
    assert "subgraph cluster_c1" in text
    assert "n1 -> n2 [id=e1" in text
    assert '"' not in text.replace('label=""', "").replace('label=" "', "")


@pytest.mark.parametrize("bad", ['n1"; evil', "br-int", "<script>", "1n", ""])
def test_an_identifier_that_we_did_not_generate_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        dot_source(GraphSpec(boxes=(BoxSpec(bad, 10, 10),)))


@needs_dot
def test_dot_places_every_box_at_the_size_asked_without_overlap() -> None:
    placed = layout(GRAPH)
    for box in GRAPH.boxes:
        r = placed.boxes[box.id]
        assert (round(r.width), round(r.height)) == (box.width, box.height)
        assert _inside(r, Rect(0, 0, placed.width, placed.height))
    rects = list(placed.boxes.values())
    assert not any(_overlap(a, b) for i, a in enumerate(rects) for b in rects[i + 1 :])


@needs_dot
def test_a_cluster_encloses_its_boxes_and_edges_join_their_ends() -> None:
    placed = layout(GRAPH)
    region = placed.clusters["c1"]
    assert _inside(placed.boxes["n2"], region) and _inside(placed.boxes["n3"], region)
    assert not _inside(placed.boxes["n1"], region)
    for edge in GRAPH.edges:
        curve = placed.edges[edge.id].points
        assert len(curve) >= 4 and (len(curve) - 1) % 3 == 0  # a cubic Bézier spline
        tail, head = placed.boxes[edge.tail], placed.boxes[edge.head]
        start, end = curve[0], curve[-1]
        near = Rect(tail.x - 2, tail.y - 2, tail.width + 4, tail.height + 4)
        far = Rect(head.x - 2, head.y - 2, head.width + 4, head.height + 4)
        assert _inside(Rect(start.x, start.y, 0, 0), near)
        assert _inside(Rect(end.x, end.y, 0, 0), far)


@needs_dot
def test_left_to_right_ranks_follow_the_edges() -> None:
    placed = layout(GRAPH)
    assert placed.boxes["n1"].x < placed.boxes["n2"].x < placed.boxes["n4"].x


def test_without_graphviz_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(InputError, match="apt install graphviz") as raised:
        layout(GRAPH)
    assert "\n" not in str(raised.value)
