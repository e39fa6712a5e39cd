"""Benchmark and cross-check of ``nodetrace audit --exposure``: every VM port of a generated
500-port node, symbolically, on one core; then 10,000 packets per node through the netfilter
engine, each compared with the class it falls in (0 disagreements expected).

Baseline, measured in the same run: the same node's 10,000 random packets through the
netfilter engine alone (``engine/netfilter.py``, the packet simulator ``nodetrace iptables``
uses), so the ratio says what answering for *every* packet of every port costs against
sampling 10,000 of them.

    .venv/bin/python bench/bench_exposure.py [--ports 500] [--packets 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic_bundle import write_bundle
from nodetrace.audit.exposure import NodeExposure, hybrid_paths
from nodetrace.audit.exposure_check import cross_check, packet_of, random_point
from nodetrace.engine.conntrack import CtState
from nodetrace.engine.netfilter import CtFacts, NetfilterEngine
from nodetrace.model.exposure import Direction
from nodetrace.model.packet import Family
from nodetrace.neutron import synthetic_node
from nodetrace.snapshot.load import load

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "nodetrace" / "examples"
REAL_NODE = Path(__file__).resolve().parents[1] / "tests" / "realworld" / "xenial-2016-hybrid-aio"


def _engine_baseline(node: NodeExposure, packets: int, seed: int) -> float:
    """Seconds for ``packets`` random packets of the node's ports through the engine."""
    rng = random.Random(seed)
    ports = node.ports()
    ns = node.ns
    assert ns is not None and ns.iptables is not None
    engine = NetfilterEngine(ns.iptables, ipsets=ns.ipsets)
    work = []
    for _ in range(packets):
        paths = hybrid_paths(rng.choice(ports))
        assert paths is not None
        point = random_point(Family.IPV4, rng, 0)
        packet, state = packet_of(Family.IPV4, point, rng)
        if state is CtState.UNTRACKED or packet.ip_frag_offset:
            state = CtState.NEW
        work.append((packet, paths.of(rng.choice(list(Direction))), state))
    t0 = time.perf_counter()
    for packet, path, state in work:
        engine.run(packet, path, ct=CtFacts(state=state))
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=500)
    parser.add_argument("--packets", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        root = write_bundle(synthetic_node(ports=args.ports, seed=args.seed), Path(tmp) / "node")
        snap = load(str(root))
        node = NodeExposure(snap)
        ports = node.ports()
        per_port = []
        t0 = time.perf_counter()
        classes = 0
        for port in ports:
            t = time.perf_counter()
            exp = node.exposure(port)
            per_port.append(time.perf_counter() - t)
            classes += sum(len(d.classes) for d in exp.directions)
        total = time.perf_counter() - t0
        baseline = _engine_baseline(node, args.packets, args.seed)
        print(f"{len(ports)} VM ports, every one: {total:.1f} s on one core "
              f"({statistics.median(per_port) * 1000:.0f} ms median per port, "
              f"max {max(per_port) * 1000:.0f} ms; {classes} classes)")  # fmt: skip
        print(f"baseline: {args.packets} random packets through the engine: {baseline:.2f} s; "
              f"ratio exposure/baseline = {total / baseline:.1f}")  # fmt: skip
        nodes = [(f"synthetic {args.ports}-port node (seed {args.seed})", node)]
        for name in ("two-nodes-cmp1.snapshot.tar.gz", "two-nodes-cmp2.snapshot.tar.gz"):
            nodes.append((name, NodeExposure(load(str(EXAMPLES / name)))))
        if REAL_NODE.is_dir():  # a real node's saved rules (tests/realworld/SOURCES.md)
            nodes.append((REAL_NODE.name, NodeExposure(load(str(REAL_NODE)))))
        for name, n in nodes:
            t = time.perf_counter()
            r = cross_check(n, args.packets, seed=args.seed)
            print(f"cross-check {name}: {r.packets} packets, {r.agreed} agree, "
                  f"{len(r.disagreements)} disagree, {r.unknown} in unknown classes, "
                  f"{r.atoms} in ipset-atom classes, {r.impossible} impossible "
                  f"(UNTRACKED without NOTRACK, later fragments) ({time.perf_counter() - t:.1f} s)")  # fmt: skip
            for line in r.disagreements[:5]:
                print("  ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
