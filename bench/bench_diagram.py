"""Node diagram benchmark: choose the boxes, lay them out with Graphviz's ``dot``, draw the SVG,
for generated nodes of 2, 50 and 500 VM ports, with a traced packet's path marked.

    .venv/bin/python bench/bench_diagram.py [--ports 2 50 500] [--runs 3] [--out FILE]

Targets (issue "Pictures"): a 500-port node's page renders in under 3 s and weighs under 5 MB,
so the diagram in it must be laid out and drawn well under that. Baseline measured in the same
run: the same node drawn device by device (every tap, qbr, qvb and qvo its own box, nothing
folded), the drawing a diagram without folding would make; the ratio says what folding saves.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic_bundle import write_bundle
from nodetrace.api import trace
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron import synthetic_node
from nodetrace.neutron.inventory import inventory
from nodetrace.render.diagram_graph import build_graph
from nodetrace.render.diagram_svg import draw, graph_spec
from nodetrace.render.graphviz import layout
from nodetrace.render.node_diagram import PathMarks, path_marks
from nodetrace.snapshot.load import load


def _median(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _one(
    snap: Snapshot, inv: Inventory, marks: PathMarks, *, fold: bool, runs: int
) -> tuple[float, float, float, int, int]:
    """Median seconds of graph, layout and drawing; the SVG's bytes; boxes laid out."""
    focus = {h.device for h in marks.hops}
    graph = build_graph(snap, inventory=inv, focus=focus, fold=fold)
    spec = graph_spec(graph)
    placed = layout(spec)
    svg = draw(graph, placed)
    t_graph = _median(runs, lambda: build_graph(snap, inventory=inv, focus=focus, fold=fold))
    t_layout = _median(runs, lambda: layout(spec))
    t_draw = _median(runs, lambda: draw(graph, placed))
    return t_graph, t_layout, t_draw, len(svg.encode()), len(spec.boxes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, nargs="+", default=[2, 50, 500])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = parser.parse_args()

    rows = []
    for ports in args.ports:
        state = synthetic_node(ports=ports, seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            snap = load(write_bundle(state, Path(tmp) / "bundle"))
        inv = inventory(snap)
        first = inv.ports[0]
        vlan = first.local_vlan.value if first.local_vlan is not None else None
        last = next(
            (p for p in inv.ports[1:] if p.local_vlan and p.local_vlan.value == vlan), first
        )
        walked = trace(snap, "icmp", from_port=first.port_id, to_port=last.port_id)
        marks = path_marks(walked)
        print(f"{ports:>4} ports: path of {len(marks.hops)} hops ({walked.outcome.value})")
        ours = _one(snap, inv, marks, fold=True, runs=args.runs)
        base = _one(snap, inv, marks, fold=False, runs=args.runs)
        rows.append((ports, ours, base))
        total, base_total = sum(ours[:3]), sum(base[:3])
        print(
            f"{ports:>4} ports: {ours[4]:>5} boxes, graph {ours[0] * 1e3:7.1f} ms, dot "
            f"{ours[1] * 1e3:7.1f} ms, draw {ours[2] * 1e3:6.1f} ms, total {total:6.3f} s, "
            f"SVG {ours[3] / 1e3:8.1f} kB | device by device: {base[4]:>5} boxes, "
            f"{base_total:6.3f} s, {base[3] / 1e3:8.1f} kB | ratio {base_total / total:5.1f}x"
        )
    if args.out is not None:
        lines = [
            "| ports | boxes | graph | dot layout | SVG drawing | total | SVG size "
            "| device by device: boxes, total, size | time ratio |",
            "|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for ports, ours, base in rows:
            total, base_total = sum(ours[:3]), sum(base[:3])
            lines.append(
                f"| {ports} | {ours[4]} | {ours[0] * 1e3:.1f} ms | {ours[1] * 1e3:.1f} ms "
                f"| {ours[2] * 1e3:.1f} ms | {total:.3f} s | {ours[3] / 1e3:.0f} kB "
                f"| {base[4]}, {base_total:.3f} s, {base[3] / 1e3:.0f} kB "
                f"| {base_total / total:.1f}x |"
            )
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
