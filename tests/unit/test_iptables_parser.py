"""iptables-save parsing: typed matches and targets, both backends, errors with positions, and
the parse -> format -> parse round trip."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_network
from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.netfilter import (
    AddrtypeMatch,
    Backend,
    CommentMatch,
    ConnmarkTarget,
    ConntrackMatch,
    CtTarget,
    IcmpMatch,
    JumpTarget,
    MarkTarget,
    MultiportMatch,
    NatTarget,
    Neg,
    PhysdevMatch,
    PortRange,
    RejectTarget,
    SetMatch,
    StandardTarget,
    StateMatch,
    TcpFlags,
    TcpMatch,
    UnknownMatch,
    UnknownTarget,
)
from nodetrace.model.packet import Family
from nodetrace.parsers.iptables_save import parse_iptables_save, tokenize
from nodetrace.render.iptables_save import format_rule, format_ruleset

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"


def _parse(body: str, *, header: str = "", sink: DiagnosticSink | None = None, family=None):  # type: ignore[no-untyped-def]
    text = header + "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    text += ":u1 - [0:0]\n" + body + "COMMIT\n"
    return parse_iptables_save(text, source="t.save", sink=sink, family=family)


def _rule(line: str):  # type: ignore[no-untyped-def]
    rs = _parse(line + "\n")
    chain = rs.chain("filter", line.split()[1])
    assert chain is not None
    return chain.rules[0]


def _typed_key(rs):  # type: ignore[no-untyped-def]
    return [(r.table, r.chain, r.position, r.ip, r.matches, r.target) for r in rs.rules()]


@pytest.mark.parametrize("name", ["all-matches.legacy.save", "all-matches.nft.save"])
def test_saved_rulesets_parse_fully_typed_and_format_back_unchanged(name: str) -> None:
    text = (DATA / name).read_text()
    rs = parse_iptables_save(text, source=name)
    rules = list(rs.rules())
    assert len(rules) == text.count("\n-A ")
    assert [r.text for r in rules if r.unknown_parts] == []
    for rule in rules:
        assert format_rule(rule) == rule.text
    again = parse_iptables_save(format_ruleset(rs), source="formatted")
    assert _typed_key(again) == _typed_key(rs)


def test_the_backend_comes_from_the_header() -> None:
    legacy = parse_iptables_save((DATA / "all-matches.legacy.save").read_text(), source="l")
    nft = parse_iptables_save((DATA / "all-matches.nft.save").read_text(), source="n")
    bare = parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", source="b")
    assert (legacy.backend, nft.backend, bare.backend) == (
        Backend.LEGACY,
        Backend.NFT,
        Backend.UNKNOWN,
    )


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (
            "-A INPUT -p tcp -m tcp ! --sport 1024:65535 --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN",
            TcpMatch(
                sport=Neg(PortRange(1024, 65535), True),
                dport=Neg(PortRange(22, 22)),
                flags=Neg(TcpFlags(0x17, 0x02)),
            ),
        ),
        (
            "-A INPUT -p tcp -m tcp ! --syn",
            TcpMatch(flags=Neg(TcpFlags(0x17, 0x02), True)),
        ),
        (
            "-A INPUT -p tcp -m multiport ! --dports 53,67:68",
            MultiportMatch(
                direction="dports", ports=(PortRange(53, 53), PortRange(67, 68)), negated=True
            ),
        ),
        ("-A INPUT -p icmp -m icmp --icmp-type echo-request", IcmpMatch(icmp_type=8)),
        (
            "-A INPUT -p icmp -m icmp --icmp-type 3/4",
            IcmpMatch(icmp_type=3, code_min=4, code_max=4),
        ),
        ("-A INPUT -p icmp -m icmp ! --icmp-type any", IcmpMatch(icmp_type=None, negated=True)),
        (
            "-A INPUT -m state --state ESTABLISHED,RELATED",
            StateMatch(states=("RELATED", "ESTABLISHED")),
        ),
        (
            "-A INPUT -m conntrack ! --ctstate NEW --ctorigsrc 10.0.0.1 --ctdir REPLY",
            ConntrackMatch(
                ctstate=Neg(("NEW",), True), ctorigsrc=Neg(ip_network("10.0.0.1/32")), ctdir="REPLY"
            ),
        ),
        (
            "-A FORWARD -m physdev ! --physdev-is-in --physdev-out tap1 --physdev-is-bridged",
            PhysdevMatch(is_in=Neg(True, True), physdev_out=Neg("tap1"), is_bridged=Neg(True)),
        ),
        (
            "-A INPUT -m set ! --match-set NIPv4sg src,dst --return-nomatch",
            SetMatch(
                set_name="NIPv4sg", directions=("src", "dst"), negated=True, return_nomatch=True
            ),
        ),
        (
            '-A INPUT -m comment --comment "say \\"hi\\" \\\\ now"',
            CommentMatch(comment='say "hi" \\ now'),
        ),
        (
            "-A INPUT -m addrtype --dst-type BROADCAST,LOCAL",
            AddrtypeMatch(dst_type=Neg(("LOCAL", "BROADCAST"))),
        ),
    ],
    ids=[
        "tcp",
        "syn",
        "multiport",
        "icmp-name",
        "icmp-code",
        "icmp-any",
        "state",
        "conntrack",
        "physdev",
        "set",
        "comment-escapes",
        "addrtype",
    ],
)
def test_matches_are_typed(line: str, match: object) -> None:
    assert _rule(line).matches == (match,)


@pytest.mark.parametrize(
    ("line", "target"),
    [
        ("-A INPUT -j MARK --set-mark 0x5", MarkTarget(0x5, 0xFFFFFFFF)),
        ("-A INPUT -j MARK --and-mark 0xf0", MarkTarget(0, 0xFFFFFF0F)),
        ("-A INPUT -j MARK --or-mark 0x3", MarkTarget(3, 3)),
        ("-A INPUT -j CONNMARK --save-mark", ConnmarkTarget(mode="save")),
        ("-A INPUT -j REJECT", RejectTarget("icmp-port-unreachable")),
        ("-A INPUT -j u1", JumpTarget("u1")),
        ("-A INPUT -g u1", JumpTarget("u1", goto=True)),
        ("-A INPUT -j RETURN", StandardTarget("RETURN")),
    ],
    ids=[
        "set-mark",
        "and-mark",
        "or-mark",
        "connmark-save",
        "reject-default",
        "jump",
        "goto",
        "return",
    ],
)
def test_targets_are_typed(line: str, target: object) -> None:
    assert _rule(line).target == target


def test_nat_and_ct_targets() -> None:
    text = (
        "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j CT --zone 4097\nCOMMIT\n"
        "*nat\n:POSTROUTING ACCEPT [0:0]\n"
        "-A POSTROUTING -p udp -j SNAT --to-source 1.2.3.4-1.2.3.6:1000-2000 --random\nCOMMIT\n"
    )
    rs = parse_iptables_save(text, source="t")
    ct = rs.chain("raw", "PREROUTING").rules[0].target  # type: ignore[union-attr]
    snat = rs.chain("nat", "POSTROUTING").rules[0].target  # type: ignore[union-attr]
    assert ct == CtTarget(zone=4097)
    assert isinstance(snat, NatTarget)
    assert snat.nat_type == "SNAT" and snat.random
    assert snat.ranges[0].addr_lo == IPv4Address("1.2.3.4")
    assert snat.ranges[0].ports == PortRange(1000, 2000)


def test_negation_in_every_position_iptables_accepts() -> None:
    rule = _rule("-A INPUT ! -s 10.0.0.0/8 ! -d 10.1.0.0/16 ! -i eth+ ! -p tcp ! -f")
    ip = rule.ip
    assert ip.src == Neg(ip_network("10.0.0.0/8"), True)
    assert ip.dst == Neg(ip_network("10.1.0.0/16"), True)
    assert ip.in_iface == Neg("eth+", True)
    assert ip.proto == Neg("tcp", True)
    assert ip.fragment == Neg(True, True)
    # iptables 1.4 wrote the "!" after the option.
    old = _rule("-A INPUT -s ! 10.0.0.0/8 -p tcp -m tcp --dport ! 22")
    assert old.ip.src == Neg(ip_network("10.0.0.0/8"), True)
    assert old.matches == (TcpMatch(dport=Neg(PortRange(22, 22), True)),)


def test_counters_on_chains_and_rules() -> None:
    text = "*filter\n:INPUT DROP [5:300]\n[7:420] -A INPUT -j ACCEPT\n-A INPUT -c 1 2 -j DROP\nCOMMIT\n"
    rs = parse_iptables_save(text, source="c")
    chain = rs.chain("filter", "INPUT")
    assert chain is not None and chain.counters == (5, 300) and chain.policy == "DROP"
    assert [r.counters for r in chain.rules] == [(7, 420), (1, 2)]
    assert chain.rules[0].text == "-A INPUT -j ACCEPT"


def test_unmodelled_modules_and_targets_are_kept_verbatim() -> None:
    rule = _rule("-A INPUT -m recent --rcheck --seconds 60 --name ssh -j SECMARK --selctx x")
    assert rule.matches == (
        UnknownMatch(
            "recent",
            rule.matches[0].options,  # type: ignore[union-attr]
            "match module -m recent is not modelled",
        ),
    )
    assert [o.name for o in rule.matches[0].options] == ["rcheck", "seconds", "name"]  # type: ignore[union-attr]
    assert isinstance(rule.target, UnknownTarget) and rule.target.target == "SECMARK"
    assert rule.unknown_parts == ("-m recent", "-j SECMARK")
    assert format_rule(rule) == rule.text


def test_an_unmodelled_option_of_a_known_module_makes_it_unknown() -> None:
    rule = _rule("-A INPUT -m set --match-set s1 src --packets-gt 5")
    assert isinstance(rule.matches[0], SetMatch)
    assert rule.matches[0].counter_conditions[0].name == "packets-gt"
    rule = _rule("-A INPUT -p sctp -m sctp --chunk-types any INIT")
    assert rule.matches[0].chunk_types == ("any", "INIT")  # type: ignore[union-attr]


def test_a_bad_value_is_an_error_with_file_line_token_and_expectation() -> None:
    with pytest.raises(ParseError) as err:
        _parse("-A INPUT -p tcp -m tcp --dport http\n")
    assert str(err.value) == (
        "t.save:6: -m tcp: not a port number at 'http' (expected a port number)"
    )


def test_a_lenient_parse_keeps_unreadable_rules_in_place_so_numbers_stay_right() -> None:
    sink = DiagnosticSink()
    rs = _parse(
        "-A INPUT -j ACCEPT\n-A INPUT -p tcp -m tcp --dport nope -j DROP\n"
        '-A INPUT -m comment --comment "open\n-A INPUT -s 300.1.1.1 -j DROP\n-A INPUT -j DROP\n',
        sink=sink,
    )
    chain = rs.chain("filter", "INPUT")
    assert chain is not None
    assert [r.position for r in chain.rules] == [1, 2, 3, 4, 5]
    assert [bool(r.unknown_parts) for r in chain.rules] == [False, True, True, True, False]
    messages = [str(d) for d in sink.errors]
    assert messages == [
        "t.save:7: error: -m tcp: not a port number at 'nope' (expected a port number)",
        "t.save:8: error: unterminated quoted string at '\"open' (expected a closing \")",
        "t.save:9: error: not an address or network at '300.1.1.1' (expected ADDRESS[/PREFIX])",
    ]


def test_structural_errors_name_what_was_expected() -> None:
    sink = DiagnosticSink()
    parse_iptables_save(
        "-A INPUT -j ACCEPT\n*filter\n:INPUT MAYBE [0:0]\nbogus line\n-A INPUT -j nochain\n",
        source="s",
        sink=sink,
    )
    assert [str(d) for d in sink.items] == [
        "s:1: error: rule outside a table at '-A' (expected *TABLE first)",
        "s:3: error: bad chain policy at 'MAYBE' (expected ACCEPT, DROP or -)",
        "s:4: error: unexpected line at 'bogus' (expected -A CHAIN ..., :CHAIN, COMMIT or *TABLE)",
        "s:5: warning: rule for undeclared chain 'INPUT'",
        "s:6: error: table 'filter' has no COMMIT",
    ]


def test_goto_to_an_undeclared_chain_is_an_error() -> None:
    sink = DiagnosticSink()
    rs = _parse("-A INPUT -g nowhere\n", sink=sink)
    assert [str(d) for d in sink.errors] == [
        "t.save:6: error: jump to a chain this table does not declare at 'nowhere' "
        "(expected a ':nowhere - [0:0]' line)"
    ]
    assert isinstance(rs.chain("filter", "INPUT").rules[0].target, UnknownTarget)  # type: ignore[union-attr]


def test_tokenizer_handles_quotes_escapes_and_plain_words() -> None:
    from nodetrace.errors import SourcePos

    tokens = tokenize('-m comment --comment "a \\"b\\" c" -j X', SourcePos("t", 1))
    assert [(t.text, t.quoted) for t in tokens] == [
        ("-m", False),
        ("comment", False),
        ("--comment", False),
        ('a "b" c', True),
        ("-j", False),
        ("X", False),
    ]


def test_ipv6_rulesets() -> None:
    text = (
        "# Generated by ip6tables-save v1.8.9 on Thu Nov 26 06:01:12 2026\n*filter\n"
        ":INPUT ACCEPT [0:0]\n-A INPUT -s fe80::/64 -p ipv6-icmp -m icmp6 --icmpv6-type 134 -j DROP\n"
        "COMMIT\n"
    )
    rs = parse_iptables_save(text, source="v6")
    rule = rs.chain("filter", "INPUT").rules[0]  # type: ignore[union-attr]
    assert rs.family is Family.IPV6
    assert rule.matches == (IcmpMatch(module="icmp6", icmp_type=134),)
    assert format_rule(rule) == rule.text
    with pytest.raises(ParseError, match="address family"):
        parse_iptables_save(text.replace("fe80::/64", "10.0.0.0/8"), source="v6")


def test_unconditional_means_no_match_no_address_and_a_standard_verdict() -> None:
    assert _rule("-A u1 -j RETURN").is_unconditional
    assert _rule("-A u1 -s 0.0.0.0/0 -j ACCEPT").is_unconditional
    assert not _rule('-A u1 -m comment --comment "x" -j DROP').is_unconditional
    assert not _rule("-A u1 -j u1").is_unconditional
    assert not _rule("-A u1 -p all -j LOG").is_unconditional


def test_a_runaway_word_is_quoted_short_in_the_error() -> None:
    from nodetrace.errors import MAX_TOKEN_SHOWN, ParseError, SourcePos

    err = ParseError(SourcePos("f", 3), "unexpected word", token="x" * 5000, expected="-j")
    assert len(str(err)) < MAX_TOKEN_SHOWN + 80
    assert str(err) == f"f:3: unexpected word at '{'x' * MAX_TOKEN_SHOWN}…' (expected -j)"
    assert err.as_diagnostic().message == str(err).removeprefix("f:3: ")
