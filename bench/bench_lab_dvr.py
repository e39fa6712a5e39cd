"""Benchmark ``lab up`` of a 2-node DVR scenario (5 VMs per node) against the same scenario
without its router, measured in the same run.

The DVR scenario: two VXLAN networks, 5 VMs per node spread over them, one distributed router
joining them with a gateway on an external VLAN network and a floating IP per node; ``cmp1``
runs ``agent_mode = "dvr_snat"``. ``lab up`` then also builds, per node, the router's
``qrouter-`` namespace (ports, permanent ARP entries, iptables, policy rules), the ``fip-``
namespace with its ``fg-`` port and ``rfp-``/``fpr-`` veth, br-ex with the outside namespace,
the OVS agent's DVR flows, and on cmp1 the ``snat-`` namespace. The baseline drops
``[[routers]]``: the same nodes, networks and VMs. Target: up <= 5 s. Needs root.

Run::

    .venv/bin/python bench/bench_lab_dvr.py              # 5 rounds, iptables-nft
    .venv/bin/python bench/bench_lab_dvr.py --rounds 3 --iptables legacy
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from nodetrace.lab.build import lab_down, lab_up
from nodetrace.neutron.scenario import parse_scenario

NODES = ("cmp1", "cmp2")


def scenario_text(vms_per_node: int = 5, *, router: bool = True) -> str:
    lines = ['name = "bench-dvr"']
    for node in NODES:
        lines += ["[[nodes]]", f'name = "{node}"']
        if node == "cmp1":
            lines.append('agent_mode = "dvr_snat"')
    for i, net in enumerate(("blue", "green")):
        lines += [
            "[[networks]]",
            f'name = "{net}"',
            'type = "vxlan"',
            f"segmentation_id = {3000 + i}",
            f'cidr = "10.{60 + i}.0.0/24"',
        ]
    lines += [
        "[[networks]]",
        'name = "public"',
        'type = "vlan"',
        "segmentation_id = 100",
        'cidr = "203.0.113.0/24"',
        "external = true",
        "[[security_groups]]",
        'name = "sg"',
        'rules = [{ direction = "ingress", protocol = "icmp" },'
        ' { direction = "ingress", remote_group = "sg" }, { direction = "egress" }]',
    ]
    for node in NODES:
        for i in range(vms_per_node):
            lines += [
                "[[ports]]",
                f'name = "{node}-vm{i}"',
                f'node = "{node}"',
                f'network = "{("blue", "green")[i % 2]}"',
                'security_groups = ["sg"]',
            ]
    if router:
        fips = ", ".join(
            f'{{ port = "{node}-vm0", address = "203.0.113.{10 + n}" }}'
            for n, node in enumerate(NODES)
        )
        lines += [
            "[[routers]]",
            'name = "r1"',
            "distributed = true",
            'interfaces = ["blue", "green"]',
            'external_gateway = { network = "public" }',
            f"floating_ips = [{fips}]",
        ]
    return "\n".join(lines) + "\n"


def up_round(root: Path, text: str, backend: str) -> float:
    scenario = parse_scenario(text, source="bench-dvr.toml")
    name = f"bdvr-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    info = lab_up(scenario, text, name=name, backend=backend, root=root)
    up = time.perf_counter() - start
    assert len(info.vms) == 2 * 5
    result = lab_down(name, root=root)
    if result.problems or not result.removed:
        raise SystemExit(f"lab down: {result.problems}")
    return up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iptables", choices=("nft", "legacy"), default="nft")
    args = parser.parse_args()
    dvr_text, base_text = scenario_text(), scenario_text(router=False)
    dvr: list[float] = []
    base: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-lab-dvr-") as tmp:
        root = Path(tmp)
        for _ in range(args.rounds):  # interleaved, so both see the same machine load
            base.append(up_round(root, base_text, args.iptables))
            dvr.append(up_round(root, dvr_text, args.iptables))
    d, b = statistics.median(dvr), statistics.median(base)
    print(f"lab up, 2 nodes x 5 VMs, {args.rounds} rounds, iptables-{args.iptables} (median, max)")
    print(f"  DVR (router, fip-, snat- namespaces, DVR flows): {d:.2f} s (max {max(dvr):.2f})")
    print(f"  baseline, the same without [[routers]]:          {b:.2f} s (max {max(base):.2f})")
    print(f"  ratio: {d / b:.2f}x   target: DVR up <= 5 s: {'met' if max(dvr) <= 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
