"""Benchmark ``lab up`` and ``lab down`` for 2 nodes x 5 VMs against the bare floor, and the
scenario generator on a 500-port node.

The floor (baseline, measured in the same run) is what no lab can avoid: two namespaces, each
with its own ovsdb-server and ovs-vswitchd started, then stopped and removed. ``lab up``
additionally builds the underlay, 10 VM namespaces with hybrid plugging, three bridges per node,
the tunnels, and loads Neutron's flows, iptables rules and ipsets. Targets: up <= 5 s,
down <= 3 s. Needs root (except ``--generator-only``).

The generator makes a synthetic 500-port node (IPv4 and IPv6 rulesets, ipsets, flows of three
bridges); its baseline is reading the IPv4 ruleset it wrote back with nodetrace's own
``iptables-save`` parser.

Run::

    .venv/bin/python bench/bench_lab.py              # 5 rounds, iptables-nft
    .venv/bin/python bench/bench_lab.py --rounds 3 --iptables legacy
    .venv/bin/python bench/bench_lab.py --generator-only
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.ovs import start_ovs
from nodetrace.lab.resources import Resources
from nodetrace.neutron.scenario import parse_scenario


def scenario_text(vms_per_node: int = 5) -> str:
    lines = ['name = "bench"']
    for node in ("cmp1", "cmp2"):
        lines += ["[[nodes]]", f'name = "{node}"']
    lines += [
        "[[networks]]",
        'name = "net"',
        'type = "vxlan"',
        "segmentation_id = 1000",
        'cidr = "10.50.0.0/24"',
        "[[security_groups]]",
        'name = "sg"',
        'rules = [{ direction = "ingress", protocol = "tcp", port = 22 },'
        ' { direction = "ingress", remote_group = "sg" }, { direction = "egress" }]',
    ]
    for node in ("cmp1", "cmp2"):
        for i in range(vms_per_node):
            lines += [
                "[[ports]]",
                f'name = "{node}-vm{i}"',
                f'node = "{node}"',
                'network = "net"',
                'security_groups = ["sg"]',
            ]
    return "\n".join(lines) + "\n"


def floor_round(root: Path) -> tuple[float, float]:
    """Two namespaces with one OVS instance each: start, then remove (the baseline)."""
    tag = uuid.uuid4().hex[:6]
    res = Resources(Ledger(root / f"floor-{tag}.ledger"))
    start = time.perf_counter()
    for node in ("a", "b"):
        ns = res.add_netns(f"bf{tag}{node}")
        start_ovs(res, ns, root / f"floor-{tag}-{node}")
    up = time.perf_counter() - start
    start = time.perf_counter()
    problems = res.teardown()
    down = time.perf_counter() - start
    if problems:
        raise SystemExit(f"floor teardown: {problems}")
    return up, down


def lab_round(root: Path, text: str, backend: str) -> tuple[float, float]:
    scenario = parse_scenario(text, source="bench.toml")
    name = f"bench-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    info = lab_up(scenario, text, name=name, backend=backend, root=root)
    up = time.perf_counter() - start
    assert len(info.vms) == 10
    start = time.perf_counter()
    result = lab_down(name, root=root)
    down = time.perf_counter() - start
    if result.problems or not result.removed:
        raise SystemExit(f"lab down: {result.problems}")
    return up, down


def generator_round(ports: int) -> tuple[float, float, int]:
    from nodetrace.neutron.synthetic import synthetic_node
    from nodetrace.parsers.iptables_save import parse_iptables_save

    start = time.perf_counter()
    state = synthetic_node(ports=ports, seed=1)
    generate = time.perf_counter() - start
    start = time.perf_counter()
    parse_iptables_save(state.firewall.iptables_save, source="generated")
    parse = time.perf_counter() - start
    return generate, parse, len(state.firewall.iptables_save.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iptables", choices=("nft", "legacy"), default="nft")
    parser.add_argument("--generator-only", action="store_true")
    args = parser.parse_args()
    gens = [generator_round(500) for _ in range(args.rounds)]
    g = statistics.median(x[0] for x in gens)
    p = statistics.median(x[1] for x in gens)
    print(f"generator, 500-port node ({gens[0][2]} iptables-save lines + IPv6, ipsets, flows)")
    print(f"  generate: {g * 1000:.0f} ms   baseline (parse its IPv4 ruleset) {p * 1000:.0f} ms"
          f"   ratio {g / p:.2f}x")  # fmt: skip
    if args.generator_only:
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    text = scenario_text()
    ups, downs, fups, fdowns = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="nodetrace-bench-lab-") as tmp:
        root = Path(tmp)
        for _ in range(args.rounds):
            fu, fd = floor_round(root)
            u, d = lab_round(root, text, args.iptables)
            fups.append(fu)
            fdowns.append(fd)
            ups.append(u)
            downs.append(d)
    load = os.getloadavg()
    mu, md = statistics.median(ups), statistics.median(downs)
    fu, fd = statistics.median(fups), statistics.median(fdowns)
    print(f"lab 2 nodes x 5 VMs, iptables-{args.iptables}, {args.rounds} rounds (median, max)")
    print(f"  up:   {mu:.2f} s (max {max(ups):.2f})   floor {fu:.2f} s   ratio {mu / fu:.1f}x")
    print(f"  down: {md:.2f} s (max {max(downs):.2f})   floor {fd:.2f} s   ratio {md / fd:.1f}x")
    print(f"  load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 CPUs, shared)")
    ok = max(ups) <= 5.0 and max(downs) <= 3.0
    print("  targets up <= 5 s, down <= 3 s: " + ("met" if ok else "MISSED"))


if __name__ == "__main__":
    main()
