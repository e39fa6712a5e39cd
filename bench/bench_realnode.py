"""Real-shaped node benchmark: the same generated 500-port node written as an older sosreport
(text outputs only: ``ip address``, ``brctl show``, ``ovs-vsctl -t 5 show``, ``dump-flows``,
``iptables-save``) and as a ``nodetrace collect`` bundle; ``show`` and ``trace`` on both.

    .venv/bin/python bench/bench_realnode.py [--ports 500] [--traces 500] [--runs 3]

Targets (issue "Real nodes"): ``show`` and ``trace`` on the sosreport stay within the whole-node
benchmark's targets (load <= 2 s; one trace <= 2 ms median once loaded). Baseline in the same
run: the same node as a bundle, the form those targets were first measured on; the ratios say
what the text readers and the inference cost on top.
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
from nodetrace.cli.trace import build_request, register
from nodetrace.engine.walk import walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.neutron import synthetic_node
from nodetrace.snapshot.load import load


def _quiet(argv: list[str]) -> float:
    """Seconds one in-process CLI run takes, its output discarded."""
    sink = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(io.StringIO()):
        code = cli_main(argv)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {code}")
    return elapsed


def _trace_median(root: Path, argv_tail: list[str], traces: int) -> tuple[float, str]:
    """Median seconds of one trace on a loaded snapshot, and the verdict line."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["trace", str(root), *argv_tail])
    snap = load(root)
    times = []
    trace = None
    for _ in range(traces):
        t0 = time.perf_counter()
        request, _notes = build_request(snap, args)
        trace = walk(snap, request, engines_for(snap), switch=snap.ovs)
        times.append(time.perf_counter() - t0)
    assert trace is not None
    return statistics.median(times), trace.outcome.value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=500)
    parser.add_argument("--traces", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    state = synthetic_node(ports=args.ports, seed=1)
    a, b = state.vm_ports[0], state.vm_ports[-1]
    pair = ["--from-port", a.port.id, "--to-port", b.port.id, "--packet",
            "tcp,tp_dst=22,tcp_flags=+syn"]  # fmt: skip
    inbound = ["--to-port", b.port.id, "--packet", "tcp,tp_dst=22,tcp_flags=+syn"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        forms = {
            "bundle": write_bundle(state, Path(tmp) / "bundle"),
            "sosreport": write_sosreport(state, Path(tmp) / "sos"),
        }
        for form, root in forms.items():
            loads = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                load(root)
                loads.append(time.perf_counter() - t0)
            shows = [_quiet(["show", str(root)]) for _ in range(args.runs)]
            pair_t, pair_v = _trace_median(root, pair, args.traces)
            in_t, in_v = _trace_median(root, inbound, args.traces)
            rows.append((form, min(loads), min(shows), pair_t, pair_v, in_t, in_v))

    print(f"{args.ports} ports; best of {args.runs} for load/show, median of {args.traces} traces")
    print("| form | load s | show s | trace VM->VM ms (verdict) | trace tunnel->VM ms (verdict) |")
    print("|---|---|---|---|---|")
    for form, ld, sh, pt, pv, it, iv in rows:
        print(f"| {form} | {ld:.2f} | {sh:.2f} | {pt * 1e3:.2f} ({pv}) | {it * 1e3:.2f} ({iv}) |")
    base, sos = rows[0], rows[1]
    print(
        f"sosreport / bundle: load {sos[1] / base[1]:.2f}x, show {sos[2] / base[2]:.2f}x, "
        f"trace VM->VM {sos[3] / base[3]:.2f}x, tunnel->VM {sos[5] / base[5]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
