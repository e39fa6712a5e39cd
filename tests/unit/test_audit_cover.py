"""Whether one iptables rule takes every packet of another (the proof behind
``shadowed-rule``), on rules as iptables-save prints them."""

from __future__ import annotations

import pytest

from nodetrace.audit.rule_cover import covers
from nodetrace.model.netfilter import Rule
from nodetrace.parsers.iptables_save import parse_iptables_save


def rules(*lines: str) -> list[Rule]:
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n"
        + "".join(f"-A INPUT {line}\n" for line in lines)
        + "COMMIT\n"
    )
    return list(parse_iptables_save(text, source="test").rules())


@pytest.mark.parametrize(
    ("first", "later", "expected"),
    [
        ("-j DROP", "-s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT", True),
        ("-s 10.0.0.0/8 -j DROP", "-s 10.1.0.0/16 -j ACCEPT", True),
        ("-s 10.1.0.0/16 -j DROP", "-s 10.0.0.0/8 -j ACCEPT", False),
        ("! -s 10.0.0.0/8 -j DROP", "-s 192.168.0.0/16 -j ACCEPT", True),
        ("! -s 10.0.0.0/8 -j DROP", "-s 10.1.0.0/16 -j ACCEPT", False),
        ("-i tap+ -j DROP", "-i tap1234 -j ACCEPT", True),
        ("-i tap1234 -j DROP", "-i tap+ -j ACCEPT", False),
        ("! -i qvb+ -j DROP", "-i tap1 -j ACCEPT", True),
        ("-p tcp -m tcp --dport 1:1024 -j DROP", "-p tcp -m tcp --dport 22 -j ACCEPT", True),
        ("-p tcp -m tcp --dport 22 -j DROP", "-p udp -m udp --dport 22 -j ACCEPT", False),
        (
            "-p tcp -m multiport --dports 22,80,443 -j DROP",
            "-p tcp -m tcp --dport 80 -j ACCEPT",
            True,
        ),
        (
            "-p tcp -m multiport --dports 22,443 -j DROP",
            "-p tcp -m tcp --dport 80 -j ACCEPT",
            False,
        ),
        (
            "-m state --state RELATED,ESTABLISHED -j RETURN",
            "-m conntrack --ctstate ESTABLISHED -j DROP",
            True,
        ),
        ("-m state --state INVALID -j DROP", "-m state --state NEW -j ACCEPT", False),
        ("-p icmp -j RETURN", "-p icmp -m icmp --icmp-type 8/0 -j DROP", True),
        ("-p icmp -m icmp --icmp-type 8 -j RETURN", "-p icmp -j DROP", False),
        (
            "-m physdev --physdev-in tap1 -j RETURN",
            "-m physdev --physdev-in tap1 --physdev-is-bridged -j DROP",
            True,
        ),
        (
            "-m physdev --physdev-in tap1 --physdev-is-bridged -j RETURN",
            "-m physdev --physdev-in tap1 -j DROP",
            False,
        ),
        ("-m set --match-set s1 src -j RETURN", "-p tcp -m set --match-set s1 src -j DROP", True),
        ("-m set --match-set s1 src -j RETURN", "-m set --match-set s2 src -j DROP", False),
        ("-m comment --comment x -j DROP", "-p udp -j ACCEPT", True),
        ("-m limit --limit 5/s -j ACCEPT", "-j DROP", False),
        ("-m time --timestart 09:00 -j DROP", "-j ACCEPT", None),
    ],
)
def test_covers(first: str, later: str, expected: bool | None) -> None:
    a, b = rules(first, later)
    assert covers(a, b) is expected


def test_an_unknown_match_in_the_later_rule_does_not_hide_a_cover() -> None:
    """A match of the later rule only narrows it: the earlier rule still takes all it matches."""
    a, b = rules("-p tcp -j DROP", "-p tcp -m time --timestart 09:00 -j ACCEPT")
    assert covers(a, b) is True
