"""``nft -a list ruleset`` handles, read from real lab output (tests/data/iptables/SOURCES.md):
the parser, their attachment to an iptables-nft-save ruleset, and the engine's xtables-monitor
lines naming the real handles after ``iptables-nft -I`` inserted TRACE."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from nodetrace.engine.netfilter import NetfilterEngine, input_path
from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.packet import Family, Packet
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.nft_list_ruleset import attach_nft_handles, parse_nft_list_ruleset
from nodetrace.render.xtables_trace import render_xtables_trace

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"
LISTING = (DATA / "trace-inserted.nft-list-ruleset.txt").read_text()
SAVE4 = (DATA / "trace-inserted.nft.save").read_text()
SAVE6 = (DATA / "trace-inserted.nft6.save").read_text()


def _ruleset(text: str = SAVE4, family: Family = Family.IPV4):  # type: ignore[no-untyped-def]
    return parse_iptables_save(text, source="save", family=family)


def test_parser_reads_table_chain_and_rule_handles_in_order() -> None:
    listing = parse_nft_list_ruleset(LISTING, source="nft")
    assert set(listing.tables) == {("ip", "raw"), ("ip", "filter"), ("ip6", "filter")}
    raw = listing.tables[("ip", "raw")]
    assert raw.handle == 1
    assert raw.chains["PREROUTING"].handle == 1
    assert raw.chains["PREROUTING"].rule_handles == (5, 3, 4)  # TRACE inserted first, handle 5
    assert raw.chains["OUTPUT"].rule_handles == ()
    flt = listing.tables[("ip", "filter")]
    assert flt.chains["INPUT"].rule_handles == (5, 10, 6)
    assert flt.chains["my-chain"].handle == 4
    assert flt.chains["my-chain"].rule_handles == (8, 9)
    assert listing.tables[("ip6", "filter")].chains["INPUT"].rule_handles == (4,)


def test_parser_skips_sets_maps_and_anonymous_sets() -> None:
    text = (
        "table inet fw { # handle 7\n"
        "\tset blocked { # handle 2\n"
        "\t\ttype ipv4_addr\n"
        "\t\telements = { 10.0.0.1,\n\t\t\t     10.0.0.2 }\n"
        "\t}\n"
        "\tchain in { # handle 1\n"
        "\t\ttype filter hook input priority filter; policy drop;\n"
        '\t\ttcp dport { 22, 80 } comment "a # b" accept # handle 3\n'
        "\t\tip saddr @blocked drop # handle 4\n"
        "\t}\n"
        "}\n"
    )
    listing = parse_nft_list_ruleset(text, source="nft")
    table = listing.tables[("inet", "fw")]
    assert list(table.chains) == ["in"]
    assert table.chains["in"].rule_handles == (3, 4)


def test_listing_without_handles_is_an_error_naming_the_line() -> None:
    text = 'table ip filter {\n\tchain INPUT {\n\t\tiifname "lo" accept\n\t}\n}\n'
    with pytest.raises(ParseError, match="list it with nft -a"):
        parse_nft_list_ruleset(text, source="nft.txt")
    sink = DiagnosticSink()
    listing = parse_nft_list_ruleset(text, source="nft.txt", sink=sink)
    assert [(d.pos.line, "nft -a" in d.message) for d in sink.errors] == [(1, True), (3, True)]
    assert listing.tables[("ip", "filter")].chains["INPUT"].rule_handles == ()


def test_not_a_listing_is_reported() -> None:
    sink = DiagnosticSink()
    listing = parse_nft_list_ruleset("*filter\n:INPUT ACCEPT [0:0]\n", source="x", sink=sink)
    assert not listing.tables
    assert sink.errors and sink.errors[0].pos.line == 1


def test_handles_attach_by_order_per_family() -> None:
    listing = parse_nft_list_ruleset(LISTING, source="nft")
    v4 = attach_nft_handles(_ruleset(), listing)
    assert v4.notes == ()
    raw = v4.ruleset.chain("raw", "PREROUTING")
    assert raw is not None
    assert [(r.text, r.handle) for r in raw.rules] == [
        ("-A PREROUTING -j TRACE", 5),
        ("-A PREROUTING -p icmp -j CT --zone 4", 3),
        ("-A PREROUTING -i lo -j ACCEPT", 4),
    ]
    my_chain = v4.ruleset.chain("filter", "my-chain")
    assert my_chain is not None and [r.handle for r in my_chain.rules] == [8, 9]
    v6 = attach_nft_handles(_ruleset(SAVE6, Family.IPV6), listing)
    inp = v6.ruleset.chain("filter", "INPUT")
    assert inp is not None and [r.handle for r in inp.rules] == [4]


def test_a_table_whose_rule_counts_differ_keeps_no_handles_and_says_why() -> None:
    listing = parse_nft_list_ruleset(LISTING, source="nft.txt")
    edited = SAVE4.replace("-A my-chain -j RETURN\n", "")
    result = attach_nft_handles(_ruleset(edited), listing)
    assert result.tables_with_handles == ("raw",)
    assert len(result.notes) == 1
    assert "my-chain has 1 rules in the save but 2" in result.notes[0]
    assert all(r.handle is None for r in result.ruleset.tables["filter"].chains["INPUT"].rules)
    engine = NetfilterEngine(result.ruleset)
    [note] = [a for a in engine.base_assumptions if "fresh iptables-nft-restore" in a]
    assert "in table filter" in note and "my-chain has 1 rules" in note


UDP_53 = Packet(
    nw_src=IPv4Address("10.1.2.3"), nw_dst=IPv4Address("10.9.9.9"), nw_proto=17, tp_dst=53
)


def _handles_in(lines: list[str]) -> list[str]:
    return [line.split()[3] for line in lines if line.startswith(" TRACE:")]


def test_engine_names_rules_inserted_with_I_by_their_real_handles() -> None:
    listing = parse_nft_list_ruleset(LISTING, source="nft")
    path = input_path("br0", physin="tap1")
    real = NetfilterEngine(attach_nft_handles(_ruleset(), listing).ruleset).run(UDP_53, path)
    assert _handles_in(render_xtables_trace(real.trace.steps)) == [
        "raw:PREROUTING:rule:0x5:CONTINUE",  # the TRACE rule iptables-nft -I inserted
        "raw:PREROUTING:policy:ACCEPT",
        "filter:INPUT:rule:0x5:JUMP:my-chain",
        "filter:my-chain:rule:0x9:0xfffffffb",
        "filter:INPUT:rule:0xa:DROP",  # also inserted with -I, at position 2
    ]
    assert not any("fresh iptables-nft-restore" in a for a in real.trace.assumptions)
    # Without the listing the engine still assumes a fresh restore, and says so.
    assumed = NetfilterEngine(_ruleset()).run(UDP_53, path)
    assert _handles_in(render_xtables_trace(assumed.trace.steps))[0] == (
        "raw:PREROUTING:rule:0x3:CONTINUE"
    )
    assert any("no nft -a list ruleset" in a for a in assumed.trace.assumptions)


def test_rulebook_finds_nft_steps_by_handle_when_the_listing_is_a_rules_file(
    tmp_path: Path,
) -> None:
    from nodetrace.model.verdict import Effect
    from nodetrace.tracelog.rulebook import nft_resolve
    from nodetrace.tracelog.rules_input import load_rulebook

    save = tmp_path / "iptables-save.txt"
    # Two rules with the same text: only the handle tells which one a step names.
    save.write_text(SAVE4.replace("-A my-chain -j RETURN\n", "-A my-chain -j ACCEPT\n"))
    save.write_text(
        save.read_text().replace(
            "-A my-chain -m state --state RELATED,ESTABLISHED -j ACCEPT\n",
            "-A my-chain -j ACCEPT\n",
        )
    )
    listing = tmp_path / "nft.txt"
    listing.write_text(LISTING)
    sink = DiagnosticSink()
    book = load_rulebook([str(save), str(listing)], [], sink)
    assert book is not None and not sink.items
    assert book.sources == (str(save), str(listing))
    args = ("filter", "my-chain", "rule", "ACCEPT", None, "-A my-chain -j ACCEPT", 0)
    second = nft_resolve(book, Family.IPV4, *args, handle=9)
    assert second.how == "handle" and second.rule is not None and second.rule.position == 2
    assert second.effect is Effect.ACCEPT and second.misfit is None
    first = nft_resolve(book, Family.IPV4, *args, handle=8)
    assert first.rule is not None and first.rule.position == 1
    changed = nft_resolve(book, Family.IPV4, *args[:5], "-A my-chain -j DROP", 0, handle=9)
    assert changed.rule is second.rule and changed.misfit is not None
    assert "but the trace prints '-A my-chain -j DROP'" in changed.misfit
    unknown = nft_resolve(book, Family.IPV4, *args, handle=99)
    assert unknown.rule is None and unknown.misfit == "no rule of my-chain has handle 99"
    # Without the listing the text decides, and it names the first of the two.
    plain = load_rulebook([str(save)], [], DiagnosticSink())
    assert plain is not None
    assert nft_resolve(plain, Family.IPV4, *args, handle=9).rule.position == 1  # type: ignore[union-attr]


def test_a_listing_that_disagrees_with_the_rules_file_is_reported(tmp_path: Path) -> None:
    from nodetrace.tracelog.rules_input import load_rulebook

    save = tmp_path / "save"
    save.write_text(SAVE4.replace("-A FORWARD -j my-chain\n", ""))
    listing = tmp_path / "nft"
    listing.write_text(LISTING)
    sink = DiagnosticSink()
    book = load_rulebook([str(save), str(listing)], [], sink)
    assert book is not None
    [warning] = [d.message for d in sink.items]
    assert "table ip filter: chain FORWARD has 0 rules in the save but 1" in warning
    assert book.knows_handles(Family.IPV4, "raw")
    assert not book.knows_handles(Family.IPV4, "filter")


def test_iptables_cli_takes_nft_handles(capsys: pytest.CaptureFixture[str]) -> None:
    from nodetrace.cli import main

    argv = [
        "iptables",
        str(DATA / "trace-inserted.nft.save"),
        "--hook",
        "PREROUTING,INPUT",
        "--in",
        "br0",
        "--packet",
        "udp,nw_src=10.1.2.3,nw_dst=10.9.9.9,udp_dst=53",
        "--format",
        "xtables",
    ]
    assert main([*argv, "--nft-handles", str(DATA / "trace-inserted.nft-list-ruleset.txt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert _handles_in(lines)[0] == "raw:PREROUTING:rule:0x5:CONTINUE"
    assert _handles_in(lines)[-1] == "filter:INPUT:rule:0xa:DROP"
    assert main([*argv, "--nft-handles", str(DATA / "trace-inserted.nft.save")]) == 2
    assert "is it 'nft -a list ruleset' output?" in capsys.readouterr().err
