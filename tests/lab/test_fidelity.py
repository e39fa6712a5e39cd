"""The fidelity suite in CI: random labs of every node shape (the hybrid iptables firewall, the
native OVS firewall, a legacy router with SNAT and floating IPs behind either, a distributed
router on iptables-nft) and random packets; every
engine that is installed must agree with the real kernel and OVS on every packet it is asked
about: the observed and simulated traces step by step, and the packet's fate. The labs
alternate between iptables-legacy (kernel log TRACE lines) and iptables-nft
(``xtables-monitor --trace`` lines), and rotate VXLAN, GRE and provider VLAN networks.

The seed is printed (fixed by default; NODETRACE_FIDELITY_SEED=N replays a run, =random explores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodetrace.lab.fidelity import format_report, run_fidelity
from nodetrace.neutron.scenario import parse_scenario
from tests.conftest import seed_from_env

CASES = 216
PER_LAB = 24
SHAPES = ["hybrid", "ovs-firewall", "legacy-router", "ovs-firewall-router", "dvr"]
ROUTED = ("legacy-router", "ovs-firewall-router", "dvr")


@pytest.mark.lab
def test_engines_agree_with_the_real_lab(tmp_path: Path) -> None:
    seed = seed_from_env("NODETRACE_FIDELITY_SEED")
    print(f"fidelity seed {seed}")
    report = run_fidelity(cases=CASES, seed=seed, root=tmp_path / "labs", per_scenario=PER_LAB)
    text = format_report(report)
    print(text)

    assert len(report.cases) == CASES
    assert len(report.scenarios) == CASES // PER_LAB
    assert report.shapes() == SHAPES
    assert any('type = "vxlan"' in s for s in report.scenarios)
    assert any('type = "gre"' in s for s in report.scenarios)
    assert any('type = "vlan"' in s and "external" not in s for s in report.scenarios)
    assert sum("[[routers]]" in s for s in report.scenarios) == 5
    # The distributed router's lab runs on iptables-nft only: its copies share qr- names.
    assert {c.backend for c in report.cases if c.shape == "dvr"} == {"nft"}
    assert {"floating-ip-out", "snat"} <= {c.kind for c in report.cases if c.shape == "dvr"}
    assert sum('firewall_driver = "openvswitch"' in s for s in report.scenarios) == 4
    assert report.backends() == ["legacy", "nft"]
    kinds = {(c.kind, c.path) for c in report.cases}
    assert {("new", "same-node"), ("new", "cross-node"), ("underlay", "from-underlay")} <= kinds
    assert {k for k, _ in kinds} >= {"established", "spoofed", "arp"}
    # Through the router: east-west on one node and across nodes, out through SNAT or a
    # floating IP, in to a floating IP, and to the metadata address.
    assert {("east-west", "same-node"), ("east-west", "cross-node")} <= kinds
    assert {k for k, _ in kinds} >= {"snat", "floating-ip", "metadata"}
    vms = _vm_nodes(report.scenarios)
    delivered = [c for c in report.cases if c.arrived]
    assert 0 < len(delivered) < len(report.cases), "both allowed and denied packets are needed"
    for c in report.cases:
        astray = set(c.arrived) - {c.target}
        nodes = vms[c.scenario]
        if c.shape == "ovs-firewall-router" and c.source in nodes:
            # With the native firewall a VM's frame to its router, whose MAC br-int never
            # learns on the VM's node (the router's answers go straight to the VM's port, not
            # through NORMAL), is flooded to the VMs next to it too: Open vSwitch's own doing.
            astray -= {vm for vm, node in nodes.items() if node == nodes[c.source]}
        assert not astray, f"{c.id}: a frame went astray to {astray}"
    routed = [c for c in report.cases if c.shape in ROUTED]
    assert any(c.target.startswith("outside:") and c.arrived for c in routed)
    assert any(c.source.startswith("outside:") for c in routed)
    router_lines = [k for c in routed for k, lines in c.trace.items() if "qrouter-" in k and lines]
    assert router_lines, "no TRACE line was read from a router's namespace"

    path = tmp_path / "report.json"
    path.write_text(report.to_json())
    data = json.loads(path.read_text())
    assert len(data["cases"]) == CASES

    compared = report.agreement()
    assert set(report.engines) == {"netfilter", "openflow", "walk"}
    for engine in report.engines:
        agree, total = compared.get(engine, (0, 0))
        assert total >= CASES // 2, f"{engine}: only {total} packets compared\n{text}"
        assert agree == total, f"seed {seed}: {engine} disagrees\n{text}"
        for backend in ("legacy", "nft"):
            _, on_backend = report.agreement(backend).get(engine, (0, 0))
            assert on_backend >= 20, f"{engine}: {on_backend} packets on iptables-{backend}"
        errors = [c.id for c in report.cases if c.engines[engine]["status"] == "error"]
        assert not errors, f"seed {seed}: {engine} failed on {errors}\n{text}"
    for shape in SHAPES:
        on_shape = report.agreement(shape=shape)
        packets = sum(c.shape == shape for c in report.cases)
        for engine in ("openflow", "walk"):
            assert on_shape[engine] == (packets, packets), f"{shape}: {engine}\n{text}"
    # The native firewall has no Linux bridge: netfilter has nothing to compare there, and
    # the router's namespace is compared on its own.
    assert "netfilter" not in report.agreement(shape="ovs-firewall")
    for shape in ROUTED:
        _, nf_routed = report.agreement(shape=shape)["netfilter"]
        assert nf_routed >= PER_LAB // 2, f"{shape}: {nf_routed} netfilter passes compared"


def _vm_nodes(scenarios: list[str]) -> dict[str, dict[str, str]]:
    """Each random lab's VMs and their nodes, by the lab's scenario name."""
    out: dict[str, dict[str, str]] = {}
    for text in scenarios:
        scenario = parse_scenario(text)
        out[scenario.name] = {p.name: p.node for p in scenario.ports}
    return out
