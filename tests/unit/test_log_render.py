"""The terminal view serves observed and simulated traces alike."""

from __future__ import annotations

import re
from ipaddress import ip_address

from nodetrace.model.netfilter import IpSpec, Rule, StandardTarget
from nodetrace.model.packet import Family, IPProto, Packet, TcpFlag
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    Hook,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    StepKind,
    Trace,
)
from nodetrace.render.screen import Screen
from nodetrace.render.summary import SummaryCounts, render_summary
from nodetrace.render.text import describe_packet, render_trace

WIDE = Screen(width=150)


DROP = Rule(
    table="filter",
    chain="neutron-openvswi-sg-fallback",
    position=1,
    ip=IpSpec(),
    matches=(),
    target=StandardTarget("DROP"),
    text="-A neutron-openvswi-sg-fallback -j DROP",
)


def step(chain: str, kind: StepKind, number: int, **kw: object) -> NetfilterStep:
    return NetfilterStep(
        family=Family.IPV4,
        table="filter",
        chain=chain,
        kind=kind,
        number=number,
        hook=Hook.FORWARD,
        in_dev="qbr1",
        out_dev="qbr1",
        physin="qvb1",
        physout="tap1",
        **kw,  # type: ignore[arg-type]
    )


def test_a_simulated_trace_with_devices_flows_and_a_drop() -> None:
    trace = Trace(
        steps=(
            DeviceStep(DeviceAction.VETH, "qvo1", "to qvb1"),
            OpenFlowStep("br-int", 0, 9, "in_port=5", "resubmit(,25)"),
            step("FORWARD", StepKind.RULE, 2, note="jump to neutron-openvswi-sg-chain"),
            step("neutron-openvswi-sg-chain", StepKind.RULE, 1),
            step("neutron-openvswi-sg-fallback", StepKind.RULE, 1, rule=DROP, note="DROP"),
        ),
        outcome=Outcome.DROPPED,
        verdict_step=4,
        reason="dropped by filter:neutron-openvswi-sg-fallback:rule:1",
        assumptions=("ct_state assumed new",),
    )
    text = render_trace(trace, WIDE, title="packet 1", subtitle="simulated")
    assert "packet 1" in text and "simulated" in text
    assert re.search(r"FORWARD\s+in qbr1 \(port qvb1\) → out qbr1 \(port tap1\)", text)
    assert "br-int table 0 priority 9" in text and "actions=resubmit(,25)" in text
    assert "veth" in text and "qvo1" in text
    # chains nest: the fallback chain is two levels below FORWARD
    assert "    neutron-openvswi-sg-fallback rule 1" in text
    assert "-A neutron-openvswi-sg-fallback -j DROP" in text
    assert "◀ decided here" in text
    assert "Verdict: DROPPED: dropped by filter:neutron-openvswi-sg-fallback:rule:1" in text
    assert "Assumed:\n  - ct_state assumed new" in text


def test_misfits_and_nft_steps_without_numbers() -> None:
    trace = Trace(
        steps=(
            step("FORWARD", StepKind.RULE, 9, misfit="rule:9 is past the chain's end"),
            NetfilterStep(
                family=Family.IPV4,
                table="filter",
                chain="FORWARD",
                kind=StepKind.POLICY,
                number=None,
                hook=Hook.FORWARD,
                verdict="ACCEPT",
                in_dev="brq",
                out_dev="brq",
            ),
        ),
        outcome=Outcome.ACCEPTED,
        verdict_step=1,
    )
    text = render_trace(trace, WIDE)
    assert "⚠ does not fit the ruleset: rule:9 is past the chain's end" in text
    assert "FORWARD policy ACCEPT" in text
    assert "ACCEPTED" in text


def test_describe_packet() -> None:
    tcp = Packet(
        nw_src=ip_address("10.0.0.1"),
        nw_dst=ip_address("10.0.0.2"),
        nw_proto=IPProto.TCP,
        tp_src=40000,
        tp_dst=22,
        tcp_flags=TcpFlag.SYN,
        ip_id=7,
        ip_len=60,
    )
    assert describe_packet(tcp) == "TCP 10.0.0.1:40000 → 10.0.0.2:22 [SYN] · IP ID 7 · 60 bytes"
    ping = Packet(
        nw_src=ip_address("2001:db8::1"),
        nw_dst=ip_address("2001:db8::2"),
        nw_proto=IPProto.ICMPV6,
        icmp_type=128,
        icmp_code=0,
        icmp_id=3,
        icmp_seq=9,
    )
    assert describe_packet(ping) == "ICMPv6 2001:db8::1 → 2001:db8::2 echo-request id 3 seq 9"


def test_summary_view() -> None:
    counts = SummaryCounts(
        packets=3,
        seen_again=1,
        by_outcome={"accepted": 2, "dropped": 1},
        dropping=[("filter:x:rule:2", "-A x -j DROP", 1)],
        chains=[("filter:FORWARD", 6)],
        lines={"total": 40, "parsed": 34, "skipped": 5, "malformed": 1, "not_text": 2},
        files=[("kern.log", "kernel")],
    )
    text = render_summary(counts, WIDE)
    assert "3 packets" in text and "1 of them a packet seen again" in text
    assert "filter:x:rule:2" in text and "-A x -j DROP" in text
    assert "40 read, 34 in TRACE records, 5 skipped (not TRACE), 1 malformed" in text
    assert "2 of the skipped are not text" in text


def test_simulated_steps_the_kernel_would_not_log_are_marked() -> None:
    trace = Trace(
        steps=(
            step("FORWARD", StepKind.RULE, 1, traced=False, note="jump to x"),
            step("x", StepKind.RETURN, 1),
        ),
        outcome=Outcome.ACCEPTED,
    )
    text = render_trace(trace, WIDE)
    assert "(not logged by TRACE)" in text
    assert text.count("(not logged by TRACE)") == 1
