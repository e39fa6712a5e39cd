"""``nodetrace audit`` on a generated 500-port node (a ``collect`` bundle and an older-style
sosreport of the same node), end to end through the CLI, against ``nodetrace show`` on the same
snapshot in the same run (both load the snapshot and build the port inventory; the ratio is
what the checks cost on top).

    .venv/bin/python bench/bench_audit.py [--ports 500] [--runs 3]

Target (issue 14): ``nodetrace audit`` on the 500-port node under 10 s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic_bundle import write_bundle
from bench.synthetic_sosreport import write_sosreport
from nodetrace.cli import main as cli_main
from nodetrace.neutron import inventory as inventory_module
from nodetrace.neutron import synthetic_node


def _run(argv: list[str]) -> tuple[float, str]:
    """Seconds one in-process CLI run takes (caches cleared first), and its output."""
    inventory_module._cache.clear()
    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli_main(argv)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {code}")
    return elapsed, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ports", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state = synthetic_node(ports=args.ports, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        roots = {
            "bundle": write_bundle(state, Path(tmp) / "bundle"),
            "sosreport": write_sosreport(state, Path(tmp) / "sos"),
        }
        print(f"{args.ports}-port node, median of {args.runs} runs (seconds)")
        print(f"{'snapshot':<10} {'show':>7} {'audit':>7} {'ratio':>6}  findings")
        for name, root in roots.items():
            show = statistics.median(_run(["show", str(root)])[0] for _ in range(args.runs))
            runs = [_run(["audit", str(root)]) for _ in range(args.runs)]
            audit = statistics.median(t for t, _ in runs)
            head = runs[0][1].splitlines()[0].split(": ", 1)[-1]
            print(f"{name:<10} {show:7.2f} {audit:7.2f} {audit / show:6.2f}  {head}")


if __name__ == "__main__":
    main()
