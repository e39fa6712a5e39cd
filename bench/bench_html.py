"""Benchmark: the HTML pages of a 500-port node, made and opened in headless Chromium.

For a generated 500-port node (``nodetrace.neutron.synthetic``, written as a bundle by
``bench/synthetic_bundle.py``) and, in the same run as the reference, the bundled two-node
example (cmp2, two VM ports), it measures:

- generation: ``show_page`` (the diagram laid out by ``dot``, the side panel, the page) and
  ``trace_page`` (a packet arriving over the tunnel for one VM), best of ``--runs``;
- size of each page (target < 5 MB);
- rendering in headless Chromium (``/usr/bin/chromium`` through Playwright): from the start of
  the navigation to the load event, and to the first frame drawn after the page's script has
  run (the diagram on screen), median of ``--runs`` fresh pages (target < 3 s).

    .venv/bin/python bench/bench_html.py [--ports 500] [--runs 5] [--out /tmp/s13/bench-html.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic_bundle import write_bundle
from nodetrace import api
from nodetrace.errors import NodetraceError
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Trace
from nodetrace.neutron.inventory import inventory
from nodetrace.neutron.synthetic import synthetic_node
from nodetrace.render.html import show_page, trace_page

EXAMPLE = (
    Path(__file__).resolve().parents[1] / "src/nodetrace/examples/two-nodes-cmp2.snapshot.tar.gz"
)
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FRAME_AFTER_READY = """() => new Promise(resolve => {
  const ready = () => requestAnimationFrame(() => requestAnimationFrame(() => resolve({
    load: performance.getEntriesByType("navigation")[0].loadEventEnd,
    drawn: performance.now(),
    nodes: document.querySelectorAll("svg g.node, svg g.group.folded").length,
  })));
  if (document.documentElement.dataset.ready) ready();
  else addEventListener("load", ready);
})"""


@dataclass(frozen=True)
class Figures:
    name: str
    nodes: int
    generation: float
    size: int
    load_ms: float
    drawn_ms: float


def _best(runs: int, make: Callable[[], str]) -> tuple[float, str]:
    times, page = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        page = make()
        times.append(time.perf_counter() - t0)
    return min(times), page


def _render(browser: object, path: Path, runs: int) -> tuple[float, float, int]:
    loads, drawn, nodes = [], [], 0
    errors: list[str] = []
    for _ in range(runs):
        context = browser.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri(), wait_until="load", timeout=60_000)
        result = page.evaluate(FRAME_AFTER_READY)
        context.close()
        if errors:
            raise SystemExit(f"{path.name}: {errors[0]}")
        loads.append(result["load"])
        drawn.append(result["drawn"])
        nodes = result["nodes"]
    return statistics.median(loads), statistics.median(drawn), nodes


def _tunnel_trace(snap: Snapshot, inv: Inventory) -> Trace:
    """A ping for the first VM port on a tunnel network that the walk delivers to."""
    last: Trace | None = None
    for port in inv.ports:
        if port.kind.value != "vm" or not port.ips:
            continue
        try:
            last = api.trace(snap, "icmp", to_port=port.port_id)
        except NodetraceError:  # a VLAN network's port: no tunnel to arrive over
            continue
        if last.outcome.value == "delivered":
            return last
    assert last is not None, "no VM port"
    return last


def measure(name: str, snap: Snapshot, runs: int, browser: object, out: Path) -> list[Figures]:
    inv = inventory(snap)
    trace = _tunnel_trace(snap, inv)
    figures = []
    for kind, make in (
        ("show", lambda: show_page(snap, inv)),
        ("trace", lambda: trace_page(snap, inv, trace, title=f"{name} trace")),
    ):
        generation, page = _best(runs, make)
        path = out / f"{name}-{kind}.html"
        path.write_text(page, encoding="utf-8")
        load, drawn, nodes = _render(browser, path, runs)
        figures.append(
            Figures(f"{name} {kind}", nodes, generation, len(page.encode()), load, drawn)
        )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/s13/bench-html.md"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        root = write_bundle(synthetic_node(ports=args.ports, seed=1), Path(tmp) / "bundle")
        big = api.load_snapshot(root)
        small = api.load_snapshot(EXAMPLE)
        rows = measure("two-node example (cmp2)", small, args.runs, browser, Path(tmp))
        rows += measure(f"{args.ports}-port node", big, args.runs, browser, Path(tmp))
        browser.close()
    lines = [
        "| page | diagram boxes | generation (best) | size | load event (median) | "
        "drawn (median) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for f in rows:
        lines.append(
            f"| {f.name} | {f.nodes} | {f.generation:.2f} s | {f.size / 1e6:.2f} MB | "
            f"{f.load_ms / 1e3:.2f} s | {f.drawn_ms / 1e3:.2f} s |"
        )
    big_show = next(f for f in rows if f.name.endswith("port node show"))
    ref_show = rows[0]
    summary = (
        f"Targets (issue 13): a {args.ports}-port page < 5 MB (it weighs "
        f"{big_show.size / 1e6:.2f} MB) and drawn in < 3 s in headless Chromium (it is drawn "
        f"{big_show.drawn_ms / 1e3:.2f} s after navigation starts). Against the two-node "
        f"example's page in the same run: {big_show.size / ref_show.size:.0f}x the size, "
        f"{big_show.drawn_ms / ref_show.drawn_ms:.1f}x the time to draw, "
        f"{big_show.generation / ref_show.generation:.1f}x the generation time."
    )
    text = "\n".join(
        [
            "## HTML pages (issue 13)",
            "",
            f"    .venv/bin/python bench/bench_html.py --ports {args.ports} --runs {args.runs}",
            "",
            *lines,
            "",
            summary,
            "",
            "Diagram boxes: devices drawn one by one plus folded groups (a large node's ports "
            "are folded by local VLAN, the traced packet's kept apart). Generation includes the "
            f"layout by Graphviz `dot`. Chromium {CHROMIUM} headless, "
            f"viewport 1400x900; load average {os.getloadavg()[0]:.2f} (2 cores, shared).",
            "",
        ]
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0 if big_show.size < 5e6 and big_show.drawn_ms < 3000 else 1


if __name__ == "__main__":
    sys.exit(main())
