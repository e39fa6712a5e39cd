"""``iptables -L -n -v`` listings rebuilt into rulesets: each rule must read exactly as the
``iptables-save`` taken at the same moment reads, and what a listing cannot show is unknown."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink, ParseError, Severity
from nodetrace.model.netfilter import (
    CommentMatch,
    CtTarget,
    JumpTarget,
    LimitMatch,
    MacMatch,
    Neg,
    PhysdevMatch,
    Ruleset,
    StandardTarget,
    UnknownMatch,
)
from nodetrace.model.packet import Family
from nodetrace.parsers.iptables_list import parse_iptables_list
from nodetrace.parsers.iptables_save import parse_iptables_save

DATA = Path(__file__).parent.parent / "data" / "iptables" / "listings"


def _listing(name: str, table: str, family: Family = Family.IPV4) -> tuple[Ruleset, list[str]]:
    sink = DiagnosticSink()
    ruleset = parse_iptables_list(
        (DATA / name).read_text(), source=name, table=table, family=family, sink=sink
    )
    return ruleset, [str(d) for d in sink.items]


def _save(name: str, family: Family = Family.IPV4) -> Ruleset:
    return parse_iptables_save((DATA / name).read_text(), source=name, family=family)


PAIRS = [
    ("all-matches.legacy.iptables_-t_raw_-nvL", "raw", "all-matches.legacy.iptables-save"),
    ("all-matches.legacy.iptables_-t_mangle_-nvL", "mangle", "all-matches.legacy.iptables-save"),
    ("all-matches.legacy.iptables_-t_nat_-nvL", "nat", "all-matches.legacy.iptables-save"),
    ("all-matches.legacy.iptables_-t_filter_-nvL", "filter", "all-matches.legacy.iptables-save"),
    ("all-matches.legacy.iptables_-vnxL", "filter", "all-matches.legacy.iptables-save"),
    ("compute-node.nft.iptables_-t_raw_-nvL", "raw", "compute-node.nft.iptables-save"),
    ("compute-node.nft.iptables_-t_filter_-nvL", "filter", "compute-node.nft.iptables-save"),
    ("neutron-v6.legacy.ip6tables_-vnxL", "filter", "neutron-v6.legacy.ip6tables-save"),
    ("neutron-v6.legacy.ip6tables_-t_raw_-nvL", "raw", "neutron-v6.legacy.ip6tables-save"),
    ("havana.nft.iptables_-L_-n_-v_--line-numbers", "filter", "havana.nft.iptables-save"),
]


@pytest.mark.parametrize(("listing", "table", "save"), PAIRS)
def test_listing_reads_as_the_save_taken_with_it(listing: str, table: str, save: str) -> None:
    family = Family.IPV6 if listing.startswith("neutron-v6") else Family.IPV4
    got, _ = _listing(listing, table, family)
    want = _save(save, family).tables[table]
    have = got.tables[table]
    assert set(have.chains) == set(want.chains)
    for name, chain in want.chains.items():
        mine = have.chains[name]
        assert (mine.builtin, mine.policy) == (chain.builtin, chain.policy), name
        assert len(mine.rules) == len(chain.rules), name
        for a, b in zip(chain.rules, mine.rules, strict=True):
            if any(isinstance(m, LimitMatch) and m.module == "hashlimit" for m in a.matches):
                # hashlimit does not print its name: that rule's match is unknown, said so.
                assert any(isinstance(m, UnknownMatch) for m in b.matches)
                assert b.target == a.target
                continue
            assert (b.ip, b.matches, b.target) == (a.ip, a.matches, a.target), (a.text, b.text)


def test_neutron_rules_field_by_field() -> None:
    raw, _ = _listing("compute-node.nft.iptables_-t_raw_-nvL", "raw")
    zones = [
        r
        for r in raw.rules()
        if r.chain == "neutron-openvswi-PREROUTING" and isinstance(r.target, CtTarget)
    ]
    assert zones, "the Neutron zone rules are in the raw listing"
    first = zones[0]
    physdev = next(m for m in first.matches if isinstance(m, PhysdevMatch))
    assert physdev.physdev_in is not None and physdev.physdev_in.value.startswith("qvb")
    assert isinstance(first.target, CtTarget) and first.target.zone is not None
    comment = next(m for m in first.matches if isinstance(m, CommentMatch))
    assert comment.comment.startswith("Set zone for ")

    v6, _ = _listing("neutron-v6.legacy.ip6tables_-vnxL", "filter", Family.IPV6)
    spoof = v6.tables["filter"].chains["neutron-openvswi-s3b1f6a2c-8"].rules[0]
    assert str(spoof.ip.src.value) == "fe80::f816:3eff:fe12:3456/128"  # type: ignore[union-attr]
    assert spoof.matches[0] == MacMatch(source=Neg("fa:16:3e:12:34:56"))
    assert spoof.target == StandardTarget("RETURN")
    goto = v6.tables["filter"].chains["neutron-openvswi-o3b1f6a2c-8"].rules[-1]
    assert goto.target == JumpTarget("neutron-openvswi-s3b1f6a2c-8", goto=True)
    assert goto.ip.out_iface is not None and goto.ip.out_iface.value == "eth0"
    assert spoof.pos is not None and spoof.pos.file == "neutron-v6.legacy.ip6tables_-vnxL"


def test_hotsos_listings_chains_rules_and_counters() -> None:
    # Counted by hand in the files: the native OVS firewall leaves the host tables empty.
    expected = {
        "iptables_-t_raw_-nvL": ("raw", ["PREROUTING", "OUTPUT"]),
        "iptables_-t_mangle_-nvL": (
            "mangle",
            ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        ),
        "iptables_-t_nat_-nvL": ("nat", ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
        "iptables_-t_filter_-nvL": ("filter", ["INPUT", "FORWARD", "OUTPUT"]),
        "iptables_-vnxL": ("filter", ["INPUT", "FORWARD", "OUTPUT"]),
    }
    for name, (table, chains) in expected.items():
        ruleset, problems = _listing(f"hotsos-openstack/{name}", table)
        assert problems == []
        t = ruleset.tables[table]
        assert list(t.chains) == chains
        assert all(c.policy == "ACCEPT" and not c.rules for c in t.chains.values())
    exact, _ = _listing("hotsos-openstack/iptables_-vnxL", "filter")
    assert exact.tables["filter"].chains["INPUT"].counters == (2146966, 16720463859)
    rounded, _ = _listing("hotsos-openstack/iptables_-t_raw_-nvL", "raw")
    # "54M packets" is not a count: no counters rather than a made-up number.
    assert rounded.tables["raw"].chains["PREROUTING"].counters is None


def test_listing_without_v_says_interfaces_are_unknown() -> None:
    ruleset, _ = _listing("compute-node.nft.iptables_-L_-n", "filter")
    rules = list(ruleset.rules())
    assert rules
    for rule in rules:
        assert any(isinstance(m, UnknownMatch) and "-v" in m.reason for m in rule.matches), (
            rule.text
        )


# Written after the print format of iptables 1.4-1.8.7 (protocol names, not numbers) and of
# ip6tables before 1.6 (a blank `opt` column); the unknown `foo` text is invented on purpose.
OLD_V4 = """\
Chain INPUT (policy DROP 10 packets, 600 bytes)
    pkts      bytes target     prot opt in     out     source               destination
      12      900 ACCEPT     all  --  lo     *       0.0.0.0/0            0.0.0.0/0
       3      180            tcp  --  *      *       10.0.0.0/8           0.0.0.0/0            tcp dpt:22
       1       60 DROP       udp  --  *      *       0.0.0.0/0            0.0.0.0/0            foo bar:1
"""

OLD_V6 = """\
Chain FORWARD (policy ACCEPT 0 packets, 0 bytes)
    pkts      bytes target     prot opt in     out     source               destination
       0        0 RETURN     all      *      *       ::/0                 ::/0                 ctstate RELATED,ESTABLISHED
"""


def test_old_listing_formats() -> None:
    sink = DiagnosticSink()
    v4 = parse_iptables_list(OLD_V4, source="old", sink=sink)
    rules = v4.tables["filter"].chains["INPUT"].rules
    assert v4.tables["filter"].chains["INPUT"].policy == "DROP"
    assert rules[0].ip.in_iface is not None and rules[0].ip.in_iface.value == "lo"
    assert rules[0].ip.proto is None and rules[0].counters == (12, 900)
    assert rules[1].target.name == "" and rules[1].ip.proto is not None
    assert str(rules[1].ip.src.value) == "10.0.0.0/8"  # type: ignore[union-attr]
    assert any(isinstance(m, UnknownMatch) for m in rules[2].matches)
    warning = [d for d in sink.items if d.severity is Severity.WARNING]
    assert len(warning) == 1 and warning[0].pos.line == 5 and "foo bar:1" in str(warning[0])
    v6 = parse_iptables_list(OLD_V6, source="old6", family=Family.IPV6)
    rule = v6.tables["filter"].chains["FORWARD"].rules[0]
    assert rule.target == StandardTarget("RETURN") and rule.matches[0].module == "conntrack"


def test_unreadable_line_keeps_its_place_and_is_reported() -> None:
    text = OLD_V4.replace("10.0.0.0/8", "not-an-address")
    sink = DiagnosticSink()
    ruleset = parse_iptables_list(text, source="bad", sink=sink)
    assert len(ruleset.tables["filter"].chains["INPUT"].rules) == 3
    assert any(d.pos.line == 4 and d.severity is Severity.ERROR for d in sink.items)
    with pytest.raises(ParseError):
        parse_iptables_list(text, source="bad")
