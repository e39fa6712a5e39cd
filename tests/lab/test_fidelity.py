"""The fidelity suite in CI: random labs and at least 100 random packets; every engine that is
installed must agree with the real kernel and OVS on every packet it is asked about: the
observed and simulated traces step by step, and the packet's fate. The labs alternate between
iptables-legacy (kernel log TRACE lines) and iptables-nft (``xtables-monitor --trace`` lines).

The seed is printed (fixed by default; NODETRACE_FIDELITY_SEED=N replays a run, =random explores).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodetrace.lab.fidelity import format_report, run_fidelity
from tests.conftest import seed_from_env

CASES = 120


@pytest.mark.lab
def test_engines_agree_with_the_real_lab(tmp_path: Path) -> None:
    seed = seed_from_env("NODETRACE_FIDELITY_SEED")
    print(f"fidelity seed {seed}")
    report = run_fidelity(cases=CASES, seed=seed, root=tmp_path / "labs", per_scenario=40)
    text = format_report(report)
    print(text)

    assert len(report.cases) == CASES
    assert len(report.scenarios) == 3
    assert any('type = "vxlan"' in s for s in report.scenarios)
    assert any('type = "gre"' in s for s in report.scenarios)
    assert any('type = "vlan"' in s for s in report.scenarios)
    assert report.backends() == ["legacy", "nft"]
    kinds = {(c.kind, c.path) for c in report.cases}
    assert {("new", "same-node"), ("new", "cross-node"), ("underlay", "from-underlay")} <= kinds
    assert {k for k, _ in kinds} >= {"established", "spoofed", "arp"}
    delivered = [c for c in report.cases if c.arrived]
    assert 0 < len(delivered) < len(report.cases), "both allowed and denied packets are needed"
    assert all(c.arrived in ([], [c.target]) for c in report.cases), "a frame went astray"

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
