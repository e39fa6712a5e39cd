"""Real-shaped node benchmark: the same generated 500-port node written as an older sosreport
(text outputs only: ``ip address``, ``brctl show``, ``ovs-vsctl -t 5 show``, ``dump-flows``,
``iptables-save``; with and without ``ovs-appctl fdb/show``) and as a ``nodetrace collect``
bundle; ``show`` and ``trace`` on each.

    .venv/bin/python bench/bench_realnode.py [--ports 500] [--traces 500] [--runs 3]

Targets (issue "Real nodes"): ``show`` and ``trace`` on the sosreport stay within the whole-node
benchmark's targets (load <= 2 s; one walk <= 2 ms median once loaded). Completing the packet
from the ports happens once per command and is shown apart. Baseline in the same
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
from nodetrace.api import trace_request
from nodetrace.cli import main as cli_main
from nodetrace.cli.trace import register
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


def _trace_median(root: Path, argv_tail: list[str], traces: int) -> tuple[float, float, str]:
    """Seconds to complete the packet from the ports (once per command, the inventory built
    beforehand), median seconds of one walk, and the walk's outcome."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["trace", str(root), *argv_tail])
    given = dict(
        packet=args.packet,
        from_device=args.from_iface,
        netns=args.netns,
        from_port=args.from_port,
        from_host=args.from_host,
        to_port=args.to_port,
    )
    snap = load(root)
    engines = engines_for(snap)  # compiled once per run of the command, as `nodetrace trace` does
    trace_request(snap, **given)  # the port inventory is built once per snapshot
    t0 = time.perf_counter()
    request, _notes = trace_request(snap, **given)
    complete = time.perf_counter() - t0
    times = []
    trace = None
    for _ in range(traces):
        t0 = time.perf_counter()
        trace = walk(snap, request, engines, switch=snap.ovs)
        times.append(time.perf_counter() - t0)
    assert trace is not None
    return complete, statistics.median(times), trace.outcome.value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=500)
    parser.add_argument("--traces", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    state = synthetic_node(ports=args.ports, seed=1)
    a = state.vm_ports[0]
    b = next(p for p in reversed(state.vm_ports) if p.network == a.network and p is not a)
    pair = ["--from-port", a.port.id, "--to-port", b.port.id, "--packet",
            "tcp,tp_dst=22,tcp_flags=+syn"]  # fmt: skip
    inbound = ["--to-port", b.port.id, "--packet", "tcp,tp_dst=22,tcp_flags=+syn"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        forms = {
            "bundle": write_bundle(state, Path(tmp) / "bundle"),
            "sosreport": write_sosreport(state, Path(tmp) / "sos", mac_tables=True),
            "sosreport, no MAC tables": write_sosreport(state, Path(tmp) / "sos-nofdb"),
        }
        for form, root in forms.items():
            loads = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                load(root)
                loads.append(time.perf_counter() - t0)
            shows = [_quiet(["show", str(root)]) for _ in range(args.runs)]
            pair_c, pair_t, pair_v = _trace_median(root, pair, args.traces)
            in_c, in_t, in_v = _trace_median(root, inbound, args.traces)
            rows.append((form, min(loads), min(shows), pair_c, pair_t, pair_v, in_c, in_t, in_v))

    print(f"{args.ports} ports; best of {args.runs} for load/show, median of {args.traces} walks")
    print(
        "| form | load s | show s | VM->VM: completion ms, walk ms (verdict) "
        "| tunnel->VM: completion ms, walk ms (verdict) |"
    )
    print("|---|---|---|---|---|")
    for form, ld, sh, pc, pt, pv, ic, it, iv in rows:
        print(
            f"| {form} | {ld:.2f} | {sh:.2f} | {pc * 1e3:.1f}, {pt * 1e3:.2f} ({pv}) "
            f"| {ic * 1e3:.1f}, {it * 1e3:.2f} ({iv}) |"
        )
    base = rows[0]
    for sos in rows[1:]:
        print(
            f"{sos[0]} / bundle: load {sos[1] / base[1]:.2f}x, show {sos[2] / base[2]:.2f}x, "
            f"walk VM->VM {sos[4] / base[4]:.2f}x, tunnel->VM {sos[7] / base[7]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
