"""Explaining packets: the seed story, the kernel's numbering, outcomes, misfits, nf_tables rules."""

from __future__ import annotations

import pytest

from nodetrace.errors import DiagnosticSink
from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.trace_kernel_log import KernelLogReader
from nodetrace.parsers.trace_nft_events import NftReadResult
from nodetrace.parsers.trace_nft_monitor import read_nft_monitor
from nodetrace.parsers.trace_xtables_monitor import read_xtables_monitor
from nodetrace.tracelog.explain import conclude_legacy, observe_legacy, observe_nft
from nodetrace.tracelog.group_legacy import LegacyGrouper
from nodetrace.tracelog.group_nft import NftGrouper
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.rulebook import RuleBook
from tests.conftest import DATA

TRACELOG = DATA / "tracelog"


def book_of(text: str, source: str = "rules") -> RuleBook:
    ruleset = parse_iptables_save(text, source=source, sink=DiagnosticSink())
    return RuleBook({ruleset.family: ruleset}, sources=(source,))


LAB_BOOK = book_of((TRACELOG / "lab-rules.iptables-save").read_text(), "lab-rules.iptables-save")


def legacy(lines: list[str], book: RuleBook | None = None) -> list[ObservedPacket]:
    reader = KernelLogReader()
    passes = LegacyGrouper().passes(reader.records(lines))
    return [observe_legacy(p, book, index=i, source="log") for i, p in enumerate(passes, 1)]


def nft(name: str, book: RuleBook | None = None) -> list[ObservedPacket]:
    lines = (TRACELOG / name).read_text().splitlines(keepends=True)
    read = read_nft_monitor if "monitor-trace" in name else read_xtables_monitor
    passes = NftGrouper().passes(read(lines, NftReadResult()))
    fmt = "nft-monitor" if "monitor-trace" in name else "xtables-monitor"
    return [
        observe_nft(p, book, index=i, source=name, log_format=fmt) for i, p in enumerate(passes, 1)
    ]


def steps(obs: ObservedPacket) -> list[NetfilterStep]:
    return [s for s in obs.trace.steps if isinstance(s, NetfilterStep)]


def test_seed_one_packet_13_steps_accepted_out_through_the_vms_tap() -> None:
    (obs,) = legacy((TRACELOG / "seed-kern.log").read_text().splitlines(keepends=True))
    s = steps(obs)
    assert len(s) == 13
    assert obs.trace.outcome is Outcome.ACCEPTED
    assert obs.conclusion.egress == "tape14aa959-d6"
    assert "tape14aa959-d6" in obs.trace.reason
    step12 = s[11]
    assert (step12.table, step12.chain, step12.kind.value, step12.number) == (
        "filter",
        "neutron-openvswi-sg-chain",
        "return",
        77,
    )
    assert obs.trace.verdict_step == 11
    note = step12.note or ""
    # explained as the chain's end or an unconditional ACCEPT/DROP/RETURN, and, since the next
    # line is in POSTROUTING, as the ACCEPT that let the packet go
    assert "end of neutron-openvswi-sg-chain" in note
    assert "ACCEPT/DROP/RETURN at position 77" in note
    assert "unconditional ACCEPT" in note
    hooks = [x.hook.value if x.hook else None for x in s]
    assert hooks == ["PREROUTING"] * 2 + ["FORWARD"] * 10 + ["POSTROUTING"]
    assert (s[3].in_dev, s[3].out_dev, s[3].physin, s[3].physout) == (
        "qbre14aa959-d6",
        "qbre14aa959-d6",
        "qvbe14aa959-d6",
        "tape14aa959-d6",
    )
    assert s[8].note == "matched: jump to neutron-openvswi-sg-chain"
    assert s[10].note == "matched: RETURN to neutron-openvswi-sg-chain"
    packet = obs.trace.packet
    assert packet is not None and packet.ip_id == 10770 and packet.tp_src == 5672


def test_lab_capture_without_rules_ends_with_the_ambiguity_explained() -> None:
    obs = legacy((TRACELOG / "lab-legacy-dmesg.txt").read_text().splitlines(keepends=True))
    assert [o.trace.outcome for o in obs] == [Outcome.ENDS] * 3
    assert "Give --rules" in obs[2].trace.reason
    assert "neutron-linuxbri-otapA:rule:2 matched last" in obs[2].trace.reason


def test_lab_capture_with_its_rules_gives_what_the_wire_saw() -> None:
    # the capture's README: ping A->B allowed (request and reply), spoofed ping dropped
    obs = legacy(
        (TRACELOG / "lab-legacy-dmesg.txt").read_text().splitlines(keepends=True), LAB_BOOK
    )
    assert [o.trace.outcome for o in obs] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DROPPED]
    assert [o.conclusion.egress for o in obs[:2]] == ["tapB", "tapA"]
    drop = obs[2]
    assert drop.conclusion.deciding == "filter:neutron-linuxbri-otapA:rule:2"
    decided = steps(drop)[drop.trace.verdict_step or 0]
    assert decided.rule is not None and decided.rule.text.endswith("-j DROP")
    # every step of the real capture resolves to a rule or a chain end, none is a misfit
    for o in obs:
        for s in steps(o):
            assert s.misfit is None
            assert s.rule is not None or s.kind.value in ("return", "policy")
    accept = steps(obs[0])[-1]
    assert accept.rule is not None and accept.rule.text == "-A neutron-linuxbri-sg-chain -j ACCEPT"
    assert accept.kind.value == "return"  # the kernel logs a bare ACCEPT in a user chain as return


NUMBERING = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:user - [0:0]
:empty - [0:0]
-A FORWARD -j user
-A FORWARD -p tcp -j ACCEPT
-A FORWARD -j ACCEPT
-A user -j empty
-A user -p icmp -j RETURN
-A user -m comment --comment "still a match" -j RETURN
-A user -j RETURN
-A user -j DROP
COMMIT
"""


def trace_line(prefix: str, n: int) -> str:
    return (
        f"[  10.{n:06d}] TRACE: {prefix} IN=br0 OUT=br0 PHYSIN=a PHYSOUT=b "
        "MAC=02:00:00:00:00:02:02:00:00:00:00:01:08:00 SRC=10.0.0.1 DST=10.0.0.2 LEN=84 "
        "TOS=0x00 PREC=0x00 TTL=64 ID=77 DF PROTO=ICMP TYPE=8 CODE=0 ID=1 SEQ=1 \n"
    )


def explain(prefixes: list[str], book: RuleBook | None) -> ObservedPacket:
    (obs,) = legacy([trace_line(p, i) for i, p in enumerate(prefixes)], book)
    return obs


NUMBERING_BOOK = book_of(NUMBERING)


@pytest.mark.parametrize(
    ("prefixes", "outcome", "deciding_text"),
    [
        # the user chain's bare -j RETURN at 4 is logged return:4 and resumes FORWARD, whose
        # bare -j ACCEPT at 3 is logged policy:3
        (
            [
                "filter:FORWARD:rule:1",
                "filter:user:rule:1",
                "filter:empty:return:1",
                "filter:user:return:4",
                "filter:FORWARD:policy:3",
            ],
            Outcome.ACCEPTED,
            "-A FORWARD -j ACCEPT",
        ),
        # the chain's end (rule count + 1) of a built-in chain is its policy: DROP here
        (
            ["filter:FORWARD:rule:1", "filter:user:rule:2", "filter:FORWARD:policy:4"],
            Outcome.DROPPED,
            None,
        ),
        # a bare -j DROP in a user chain is logged return:5
        (["filter:FORWARD:rule:1", "filter:user:return:5"], Outcome.DROPPED, "-A user -j DROP"),
    ],
    ids=["bare-return-and-bare-accept", "builtin-end-is-policy", "bare-drop-in-user-chain"],
)
def test_the_kernels_numbering(
    prefixes: list[str], outcome: Outcome, deciding_text: str | None
) -> None:
    obs = explain(prefixes, NUMBERING_BOOK)
    assert obs.trace.outcome is outcome
    assert all(s.misfit is None for s in steps(obs))
    decided = steps(obs)[-1]
    assert (decided.rule.text if decided.rule is not None else None) == deciding_text
    if outcome is Outcome.DROPPED and deciding_text is None:
        assert obs.trace.reason.startswith("dropped by the policy of filter FORWARD")


@pytest.mark.parametrize(
    ("prefix", "fragment"),
    [
        ("filter:nosuch:rule:1", "chain nosuch is not in table filter"),
        ("filter:user:rule:9", "past the chain's end"),
        ("filter:user:rule:4", "the kernel logs it as return:4"),
        ("filter:user:return:3", "needs rule 3 to be a bare ACCEPT/DROP/RETURN"),
        ("filter:user:policy:6", "the kernel would log return"),
        ("filter:user:rule:6", "names the chain's end"),
        ("mangle:POSTROUTING:policy:1", "table mangle is not in the ruleset"),
    ],
)
def test_steps_that_do_not_fit_the_ruleset_are_flagged_not_fatal(
    prefix: str, fragment: str
) -> None:
    obs = explain(["filter:FORWARD:rule:1", prefix], NUMBERING_BOOK)
    misfit = steps(obs)[1].misfit
    assert misfit is not None and fragment in misfit
    assert steps(obs)[0].misfit is None


def test_a_dropped_packet_names_its_rule_and_hook() -> None:
    obs = explain(["filter:FORWARD:rule:1", "filter:user:return:5"], NUMBERING_BOOK)
    assert obs.trace.reason == "dropped by filter:user:return:5: -A user -j DROP"
    assert obs.conclusion.deciding_rule == "-A user -j DROP"


def test_xtables_monitor_rules_are_found_by_their_reprinted_text() -> None:
    obs = nft("lab-nft-xtables-monitor.txt", LAB_BOOK)
    assert [o.trace.outcome for o in obs] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DROPPED]
    for o in obs:
        for s in steps(o):
            assert s.misfit is None
            if s.kind.value == "rule":
                assert s.rule is not None and s.rule_text is not None
                assert " ".join(s.rule.text.split()) == " ".join(s.rule_text.split())
                assert s.number == s.rule.position
    drop = obs[2]
    assert drop.conclusion.deciding == "filter:neutron-linuxbri-otapA:rule:2"
    first = steps(obs[0])[0]
    assert first.rule is not None and first.rule.target.name == "TRACE"  # nf_tables logs it


def test_nft_monitor_rules_are_found_when_one_rule_fits() -> None:
    obs = nft("lab-nft-monitor-trace.txt", LAB_BOOK)
    assert [o.trace.outcome for o in obs] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DROPPED]
    drop = steps(obs[2])
    assert drop[-1].rule is not None and drop[-1].rule.position == 2
    assert drop[-1].rule.chain == "neutron-linuxbri-otapA"
    # the two physdev rules of neutron-linuxbri-FORWARD look the same in nft syntax: not guessed
    fwd = next(s for s in drop if s.chain == "neutron-linuxbri-FORWARD")
    assert fwd.rule is None and fwd.note is not None and "2 rules fit" in fwd.note
    icmp_return = next(s for s in drop if s.chain == "neutron-linuxbri-itapB")
    assert icmp_return.rule is not None and icmp_return.rule.position == 2


def test_nft_verdicts_decide_without_rules() -> None:
    obs = nft("lab-nft-monitor-trace.txt")
    assert [o.trace.outcome for o in obs] == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DROPPED]
    hybrid = nft("lab-nft-monitor-trace-ovs-hybrid.txt")
    assert [o.trace.outcome for o in hybrid] == [Outcome.ACCEPTED] * 4
    assert {o.trace_id for o in hybrid} == {"7b84a7bc", "21240614", "30713497", "ef1ec878"}


def test_routed_forward_and_snat_sample() -> None:
    (obs,) = legacy(
        (TRACELOG / "corpus-libvirt-virbr0-forward-snat.txt").read_text().splitlines(keepends=True)
    )
    assert obs.trace.outcome is Outcome.ACCEPTED
    assert obs.conclusion.egress == "bond0"


SET_RULES = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:i-b - [0:0]
-A FORWARD -j i-b
-A i-b -m set --match-set NIPv4sg1 src -j RETURN
-A i-b -p tcp -m set --match-set webports dst,dst -j RETURN
-A i-b -j DROP
COMMIT
"""
SETS = """\
create NIPv4sg1 hash:net family inet hashsize 1024 maxelem 65536
add NIPv4sg1 10.0.0.0/24
add NIPv4sg1 10.0.0.1 nomatch
create webports hash:ip,port family inet
add webports 10.0.0.2,tcp:443
"""


def test_ipsets_tell_which_member_let_the_packet_through() -> None:
    from nodetrace.parsers.ipset_save import parse_ipset_save

    book = book_of(SET_RULES)
    book.ipsets = parse_ipset_save(SETS, source="sets")
    obs = explain(["filter:FORWARD:rule:1", "filter:i-b:rule:1", "filter:FORWARD:policy:2"], book)
    note = steps(obs)[1].note or ""
    # trace_line's packet comes from 10.0.0.1, which the set excludes with nomatch: the log
    # shows the rule matched anyway, so the note says what the set holds and that it disagrees
    assert "set NIPv4sg1 (hash:net, 2 members)" in note
    assert "is not a member (excluded by nomatch 10.0.0.1)" in note
    line = trace_line("filter:i-b:rule:1", 1).replace("SRC=10.0.0.1", "SRC=10.0.0.9")
    (obs,) = legacy(
        [trace_line("filter:FORWARD:rule:1", 0).replace("SRC=10.0.0.1", "SRC=10.0.0.9"), line], book
    )
    assert "the packet's src is a member (10.0.0.0/24)" in (steps(obs)[1].note or "")


KERNEL_LOGS = [
    "seed-kern.log",
    "lab-legacy-dmesg.txt",
    "lab-capture-legacy.dmesg",
    "lab-capture-legacy6.dmesg",
    "corpus-quantum-network-node-mangled.txt",
]


@pytest.mark.parametrize("name", KERNEL_LOGS)
def test_the_summarys_lean_passes_conclude_like_the_full_ones(name: str) -> None:
    """The summary groups without keeping records; its outcomes must be the detailed view's."""
    lines = (TRACELOG / name).read_text(errors="replace").splitlines(keepends=True)
    full = list(LegacyGrouper().passes(KernelLogReader().records(lines)))
    lean = list(LegacyGrouper(keep_records=False).passes(KernelLogReader().records(lines)))
    assert full and all(not p.records for p in lean)
    assert [p.devs for p in lean] == [[r.devs for r in p.records] for p in full]
    for book in (None, LAB_BOOK):
        assert [conclude_legacy(p, book) for p in lean] == [
            observe_legacy(p, book, index=1, source="log").conclusion for p in full
        ]


# A routed lab node with a masqueraded client and a port-forward (tests/lab/log_nat_scenario.py).
NAT_BOOK = book_of((TRACELOG / "lab-nat.iptables-save").read_text(), "lab-nat.iptables-save")
NAT_NFT_BOOK = book_of(
    (TRACELOG / "lab-nat-nft.iptables-save").read_text(), "lab-nat-nft.iptables-save"
)


def test_nat_capture_outcomes_match_what_the_client_received() -> None:
    lines = (TRACELOG / "lab-nat.dmesg").read_text().splitlines(keepends=True)
    packets = legacy(lines, NAT_BOOK)
    assert len(packets) == 28
    dropped = [o for o in packets if o.trace.outcome is not Outcome.ACCEPTED]
    # only the echo reply to the 100-byte ping: dropped in FORWARD by a rule that matches the
    # client's address, which the reply carries only after conntrack undid the masquerade
    (drop,) = dropped
    assert drop.trace.outcome is Outcome.DROPPED
    assert drop.conclusion.deciding == "filter:FORWARD:rule:1"
    packet = drop.trace.packet
    assert packet is not None
    assert (str(packet.nw_dst), packet.ip_len, packet.icmp_type) == ("192.168.0.1", 128, 0)
    deciding = steps(drop)[-1]
    assert deciding.rule is not None and "--length 128 -j DROP" in deciding.rule.text
    assert deciding.note is not None and "destination rewritten 192.168.0.1 -> 10.0.0.2" in (
        deciding.note
    )
    assert "by conntrack" in deciding.note


def test_a_port_forwards_first_packet_names_the_nat_rule_and_later_ones_conntrack() -> None:
    lines = (TRACELOG / "lab-nat.dmesg").read_text().splitlines(keepends=True)
    forwarded = [
        o
        for o in legacy(lines, NAT_BOOK)
        if o.trace.packet is not None and o.trace.packet.tp_dst == 8080
    ]
    assert len(forwarded) == 6 and all(o.trace.outcome is Outcome.ACCEPTED for o in forwarded)
    notes = [
        next(s.note for s in steps(o) if s.note and "destination rewritten" in s.note)
        for o in forwarded
    ]
    assert "192.168.0.1:8080 -> 10.0.0.1:80 by the nat table's rule" in notes[0]
    assert all("192.168.0.1:8080 -> 10.0.0.1:80 by conntrack" in n for n in notes[1:])


def test_nat_capture_from_xtables_monitor_has_the_same_outcomes() -> None:
    packets = nft("lab-nat-nft.xtables-monitor", NAT_NFT_BOOK)
    assert len(packets) == 28
    outcomes = [o.trace.outcome for o in packets]
    assert outcomes.count(Outcome.ACCEPTED) == 27 and outcomes.count(Outcome.DROPPED) == 1
