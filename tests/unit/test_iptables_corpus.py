"""Public rulesets written by others parse completely: every rule typed or explicitly unknown,
none lost, and every problem reported with its line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink
from nodetrace.model.netfilter import UnknownMatch, UnknownTarget
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.iptables_save import format_ruleset

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"

CORPUS = [
    "lingxiankong-havana-compute-filter.txt",
    "lingxiankong-havana-qrouter-fwaas-filter.txt",
    "tripleo-undercloud-ocata-iptables-save.txt",
    "tum-chair-iptables-save-2016.txt",
    "neutron-like-rules.iptables-restore.txt",
    "reference-compute-node-example.save",
]


def _rule_lines(text: str) -> list[int]:
    return [n for n, line in enumerate(text.splitlines(), 1) if line.lstrip().startswith("-A ")]


@pytest.mark.parametrize("name", CORPUS)
def test_every_rule_of_a_public_ruleset_is_kept_typed_or_unknown(name: str) -> None:
    text = (DATA / name).read_text()
    sink = DiagnosticSink()
    rs = parse_iptables_save(text, source=name, sink=sink)
    rules = list(rs.rules())
    assert sorted(r.pos.line for r in rules if r.pos) == _rule_lines(text)
    for rule in rules:
        unknown = [m for m in rule.matches if isinstance(m, UnknownMatch)]
        if isinstance(rule.target, UnknownTarget):
            unknown.append(rule.target)  # type: ignore[arg-type]
        for part in unknown:
            assert part.reason, rule.text  # an unknown part always says why
    # Formatting and re-parsing keeps every rule and its typed content.
    again = parse_iptables_save(format_ruleset(rs), source="formatted", sink=DiagnosticSink())
    assert [(r.chain, r.matches, r.target) for r in again.rules()] == [
        (r.chain, r.matches, r.target) for r in rules
    ]


def test_the_neutron_corpus_is_entirely_typed() -> None:
    for name in CORPUS[:3] + CORPUS[4:]:
        rs = parse_iptables_save((DATA / name).read_text(), source=name, sink=DiagnosticSink())
        assert [r.text for r in rs.rules() if r.unknown_parts] == [], name


def test_the_large_router_ruleset_reports_exactly_its_anonymised_macs() -> None:
    name = "tum-chair-iptables-save-2016.txt"
    text = (DATA / name).read_text()
    sink = DiagnosticSink()
    rs = parse_iptables_save(text, source=name, sink=sink)
    anonymised = [n for n, line in enumerate(text.splitlines(), 1) if "XX:XX:XX:XX:XX:XX" in line]
    assert [d.pos.line for d in sink.errors] == anonymised
    assert all("not a MAC address" in d.message for d in sink.errors)
    unknown_modules = Counter(
        m.module for r in rs.rules() for m in r.matches if isinstance(m, UnknownMatch)
    )
    # Only modules nodetrace does not model are left unknown, each named.
    assert set(unknown_modules) == {"recent", "mac"}
    assert sum(1 for _ in rs.rules()) == 5556


def test_a_table_without_commit_is_reported_and_still_kept() -> None:
    name = "lingxiankong-havana-qrouter-fwaas-filter.txt"
    sink = DiagnosticSink()
    rs = parse_iptables_save((DATA / name).read_text(), source=name, sink=sink)
    assert [d.message for d in sink.errors] == ["table 'filter' has no COMMIT"]
    assert "filter" in rs.tables
