"""A kernel log from a node with a router: every packet explained with its own namespace's rules.

One lab of src/nodetrace/examples/scenarios/legacy-router.toml (iptables-legacy): ``-j TRACE``
first in raw PREROUTING of the node and of the router's namespace, ``nf_log_all_netns`` on, so
the kernel logs TRACE lines of both namespaces into one log, as on a network node. A VM pings
8.8.8.8 (its packet crosses the node's security-group chains on its qbr bridge, then the
router's SNAT) and the outside pings the VM's floating IP (the router's DNAT). ``nodetrace log
LOG --rules SNAPSHOT`` must explain each packet with the rules of the namespace that logged it:
every rule step names a rule and no step contradicts the rules; the same log read with the
host's rules only (``--netns ''``) cannot place the router's packets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.capture import KernelTraceLog
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources
from nodetrace.lab.router import outside_netns, router_netns
from nodetrace.lab.run import run
from nodetrace.lab.state import LabDir
from nodetrace.neutron.generate import generate_node
from nodetrace.neutron.scenario import load_scenario
from nodetrace.snapshot.collect import Options, collect
from tests.conftest import lab_unavailable, unique

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/legacy-router.toml"
NODE = "aio1"
FLOATING_IP = "203.0.113.10"  # web1's, in the scenario

pytestmark = pytest.mark.lab


@dataclass
class Logged:
    log: Path
    bundle: Path
    router_ns: str


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("ln")
    scenario = load_scenario(SCENARIO)
    info = lab_up(scenario, SCENARIO.read_text(), name=name, backend="legacy", root=root)
    try:
        state = generate_node(scenario, NODE)
        router_ns = router_netns(name, state.routers[0])
        web1 = info.vm("web1").netns
        run(["ping", "-c1", "-W1", "8.8.8.8"], netns=web1)  # neighbours and MAC tables
        node_ns = info.node(NODE).netns
        for netns in (node_ns, router_ns):
            run(
                ["iptables-legacy", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"],
                netns=netns,
            )
        bundle = root / "aio1.snapshot.tar.gz"
        collect(
            str(bundle),
            Options(netns=node_ns, ovs_rundir=info.node(NODE).ovs_rundir, namespaces=(router_ns,)),
        )
        res = Resources(Ledger(LabDir(name, root).ledger_path))
        with KernelTraceLog(res) as kernel:
            run(["conntrack", "-F"], netns=router_ns, check=False)
            run(["ping", "-c1", "-W1", "8.8.8.8"], netns=web1)
            run(["ping", "-c1", "-W1", FLOATING_IP], netns=outside_netns(name, NODE))
            records = [r for r in kernel.records() if r.text.startswith("TRACE: ")]
        log = root / "kern.log"  # as dmesg prints it
        log.write_text(
            "".join(f"[{r.usec // 10**6:5d}.{r.usec % 10**6:06d}] {r.text}\n" for r in records)
        )
        yield Logged(log, bundle, router_ns)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


def _packets(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["log", *argv, "--format", "json", "--no-progress"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def _router_packet(doc: dict[str, Any]) -> bool:
    return any(s.get("in_dev", "").startswith(("qr-", "qg-")) for s in doc["steps"])


def test_each_packet_is_explained_with_its_namespaces_rules(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    packets = _packets(capsys, str(logged.log), "--rules", str(logged.bundle))
    routed = [p for p in packets if _router_packet(p)]
    bridged = [p for p in packets if not _router_packet(p)]
    assert routed and bridged, [p["steps"][0].get("in_dev") for p in packets]
    for doc in packets:
        rule_steps = [s for s in doc["steps"] if s["type"] == "netfilter" and s["kind"] == "rule"]
        assert rule_steps and all(s["rule"] for s in rule_steps), doc["steps"]
        assert not [s for s in doc["steps"] if s.get("misfit")]
        assert not doc["warnings"], doc["warnings"]
    for doc in routed:
        assert any(f"(namespace {logged.router_ns})" in a for a in doc["assumptions"])
        chains = {s["chain"] for s in doc["steps"] if s["type"] == "netfilter"}
        assert any(c.startswith("neutron-l3-agent-") for c in chains)
    snat = [
        s["rule"]
        for p in routed
        for s in p["steps"]
        if s["type"] == "netfilter" and s["kind"] == "rule" and "SNAT" in (s["rule"] or "")
    ]
    dnat = [
        s["rule"]
        for p in routed
        for s in p["steps"]
        if s["type"] == "netfilter" and s["kind"] == "rule" and "DNAT" in (s["rule"] or "")
    ]
    assert snat and dnat, (snat, dnat)
    for doc in bridged:
        assert not any("(namespace " in a for a in doc["assumptions"])


def test_the_hosts_rules_alone_cannot_place_the_routers_packets(
    logged: Logged, capsys: pytest.CaptureFixture[str]
) -> None:
    packets = _packets(capsys, str(logged.log), "--rules", str(logged.bundle), "--netns", "")
    routed = [p for p in packets if _router_packet(p)]
    assert routed
    for doc in routed:
        rule_steps = [s for s in doc["steps"] if s["type"] == "netfilter" and s["kind"] == "rule"]
        assert any(not s["rule"] or s.get("misfit") for s in rule_steps), doc["steps"]
