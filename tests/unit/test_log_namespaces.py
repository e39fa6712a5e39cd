"""A kernel log of a node with a router, explained namespace by namespace.

tests/data/tracelog/lab-legacy-router-namespaces.dmesg is a real kernel log (SOURCES.md) of
node aio1 of the legacy-router scenario: TRACE lines of the node's own namespace (the VM's
packets on its qbr bridge) and of the router's namespace (``nf_log_all_netns``), for a ping to
8.8.8.8 and a ping of the VM's floating IP from outside. The snapshot is the golden bundle of
the same scenario (tests/data/golden/SOURCES.md): its device names are the log's, its
namespace names another lab's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.model.netfilter import Ruleset, Table
from nodetrace.model.packet import Family
from nodetrace.tracelog.namespace_books import NamespaceBooks
from nodetrace.tracelog.rulebook import RuleBook
from tests.conftest import DATA

LOG = DATA / "tracelog" / "lab-legacy-router-namespaces.dmesg"
SNAPSHOT = DATA / "golden" / "legacy-router-aio1.snapshot.tar.gz"


def _packets(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    assert main(["log", str(LOG), "--rules", str(SNAPSHOT), *argv, "--format", "json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def _rule_steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in doc["steps"] if s["type"] == "netfilter" and s["kind"] == "rule"]


def test_router_packets_get_the_router_namespaces_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packets = _packets(capsys)
    routed = [p for p in packets if p["steps"][0]["in_dev"].startswith(("qr-", "qg-"))]
    bridged = [p for p in packets if p["steps"][0]["in_dev"].startswith("qbr")]
    assert len(routed) == 4 and len(bridged) == 4
    for doc in packets:
        assert all(s["rule"] for s in _rule_steps(doc)), doc["index"]
        assert not doc["warnings"], doc["warnings"]
    for doc in routed:
        (where,) = [a for a in doc["assumptions"] if "(namespace " in a]
        assert "-qrouter-cf9424df-9afc-5213-945c-a5ec2f14fd00)" in where
    # web1 has a floating IP: its ping to 8.8.8.8 leaves with it (float-snat, packet 2), and
    # the ping of the floating IP enters through its DNAT rule (packet 5)
    texts = [s["rule"] for doc in routed for s in _rule_steps(doc)]
    assert any("-s 10.0.0.11/32 -j SNAT --to-source 203.0.113.10" in t for t in texts)
    assert any("-d 203.0.113.10/32 -j DNAT --to-destination 10.0.0.11" in t for t in texts)


def test_with_the_hosts_rules_the_router_packets_are_not_placed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packets = _packets(capsys, "--netns", "")
    routed = [p for p in packets if p["steps"][0]["in_dev"].startswith(("qr-", "qg-"))]
    assert routed
    for doc in routed:
        assert any(not s["rule"] or s["misfit"] for s in _rule_steps(doc))


def _book(*chains: tuple[str, str]) -> RuleBook:
    tables: dict[str, Table] = {}
    for table, chain in chains:
        tables.setdefault(table, Table(table)).chains[chain] = None  # type: ignore[assignment]
    return RuleBook(rulesets={Family.IPV4: Ruleset(Family.IPV4, tables=tables)})


def test_devices_choose_before_chains_and_ambiguity_is_said() -> None:
    router_chains = (("nat", "PREROUTING"), ("nat", "neutron-l3-agent-PREROUTING"))
    books = NamespaceBooks(
        {
            "": _book(("raw", "PREROUTING"), ("filter", "neutron-openvswi-FORWARD")),
            "qrouter-a": _book(*router_chains),
            "qrouter-b": _book(*router_chains),
        },
        {
            "qr-a": frozenset({"qrouter-a"}),
            "qr-b": frozenset({"qrouter-b"}),
            "lo": frozenset({"", "qrouter-a", "qrouter-b"}),
        },
    )
    by_device = books.choose(["IN=qr-b OUT= "], [("nat", "neutron-l3-agent-PREROUTING")])
    assert by_device.netns == "qrouter-b" and not by_device.warning
    by_chain = books.choose(["IN=eth9 OUT= "], [("filter", "neutron-openvswi-FORWARD")])
    assert by_chain.netns == ""
    ambiguous = books.choose(["IN=lo OUT= "], [("nat", "neutron-l3-agent-PREROUTING")])
    assert ambiguous.book is None
    assert "2 namespaces fit (qrouter-a, qrouter-b)" in ambiguous.warning
    assert "--netns" in ambiguous.warning
