"""The one text view's layout: width, wrapping, colour and levels, whatever the trace's source."""

from __future__ import annotations

import io
import os
import re
from dataclasses import replace
from ipaddress import ip_address

import pytest

from nodetrace.cli import main
from nodetrace.model.packet import Family, IPProto, Packet
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
from nodetrace.render.screen import PLAIN, Screen
from nodetrace.render.text import Level, render_trace
from tests.conftest import DATA

SYN = Packet(
    nw_src=ip_address("192.0.2.7"), nw_dst=ip_address("10.0.0.11"), nw_proto=IPProto.TCP,
    tp_src=40000, tp_dst=22,
)  # fmt: skip
LONG_RULE = (
    "-A neutron-openvswi-i3b1f6a2c-8 -s 10.0.0.0/24 -p tcp -m tcp --dport 22 -m comment "
    '--comment "Allow SSH from the project network, as the security group says" -j RETURN'
)


def nf(chain: str, number: int, **kw: object) -> NetfilterStep:
    base = NetfilterStep(
        family=Family.IPV4, table="filter", chain=chain, kind=StepKind.RULE, number=number,
        hook=Hook.FORWARD, in_dev="qbr3b1f6a2c-8d", out_dev="qbr3b1f6a2c-8d",
        physin="qvb3b1f6a2c-8d", physout="tap3b1f6a2c-8d", packet=SYN,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


TRACE = Trace(
    steps=(
        DeviceStep(DeviceAction.VETH, "qvo3b1f6a2c-8d", "to qvb3b1f6a2c-8d"),
        OpenFlowStep("br-int", 0, 9, "in_port=5", "resubmit(,60)"),
        OpenFlowStep("br-int", 60, 3, "", "NORMAL"),
        nf("FORWARD", 1, note="jump to neutron-openvswi-sg-chain"),
        nf("neutron-openvswi-sg-chain", 4, note="jump to neutron-openvswi-i3b1f6a2c-8"),
        nf("neutron-openvswi-i3b1f6a2c-8", 3, rule_text=LONG_RULE, note="RETURN"),
        nf("neutron-openvswi-sg-chain", 9, kind=StepKind.RETURN),
        DeviceStep(DeviceAction.DELIVER, "tap3b1f6a2c-8d", "to the VM"),
    ),
    outcome=Outcome.DELIVERED,
    verdict_step=7,
    reason="delivered to the VM behind tap3b1f6a2c-8d",
    assumptions=("conntrack state not given: NEW, as for a first packet",),
)


def test_lines_break_only_at_spaces_indented_and_never_end_in_spaces() -> None:
    for width in (40, 60, 80, 120):
        text = render_trace(TRACE, Screen(width=width))
        lines = text.splitlines()
        assert all(line == line.rstrip() for line in lines)
        # every line fits, unless it holds a single word longer than the line
        assert all(len(x) <= width or " " not in x.strip() for x in lines), width
        # wrapping only moved words to the next line: none was cut
        assert text.split() == render_trace(TRACE).split()
        assert len(lines) > len(render_trace(TRACE).splitlines())  # it did wrap


def test_a_word_longer_than_the_line_stays_whole() -> None:
    word = "neutron-openvswi-" * 5
    assert Screen(width=30).wrap(f"rule {word} matched", 4) == [
        "rule",
        f"    {word}",
        "    matched",
    ]


def test_piped_output_is_not_wrapped_unless_columns_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert Screen.of(io.StringIO()) == Screen(width=None, colour=False)
    monkeypatch.setenv("COLUMNS", "72")
    assert Screen.of(io.StringIO()) == Screen(width=72, colour=False)
    assert max(len(x) for x in render_trace(TRACE, Screen.of(io.StringIO())).splitlines()) <= 72
    unwrapped = render_trace(TRACE, PLAIN)
    assert any(LONG_RULE in line for line in unwrapped.splitlines())


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    leader, follower = os.openpty()
    with open(follower, "w") as tty:
        try:
            assert Screen.of(tty).colour
            monkeypatch.setenv("NO_COLOR", "1")
            assert not Screen.of(tty).colour
        finally:
            os.close(leader)
    assert "\x1b[" in render_trace(TRACE, Screen(colour=True))
    assert "\x1b[" not in render_trace(TRACE, PLAIN)


def test_default_numbers_every_step_from_one() -> None:
    text = render_trace(TRACE)
    numbers = [int(m.group(1)) for m in re.finditer(r"^\s*(\d+)  \S", text, re.M)]
    assert numbers == list(range(1, len(TRACE.steps) + 1))
    assert re.search(r"^8  deliver +✓ tap3b1f6a2c-8d +to the VM  ◀ decided here$", text, re.M)


def test_summary_is_one_line_per_hop_with_what_decided_it() -> None:
    text = render_trace(TRACE, level=Level.SUMMARY)
    hops = text.splitlines()[: text.splitlines().index(next(x for x in text.splitlines() if x.startswith("Verdict:")))]  # fmt: skip
    assert hops == [
        "1  ⇄ qvo3b1f6a2c-8d  to qvb3b1f6a2c-8d",
        "3  br-int table 60 priority 3  actions=NORMAL",
        "7  FORWARD in qbr3b1f6a2c-8d (port qvb3b1f6a2c-8d) → out qbr3b1f6a2c-8d "
        "(port tap3b1f6a2c-8d): filter neutron-openvswi-sg-chain return 9  "
        "end of neutron-openvswi-sg-chain: back to the calling chain",
        "8  ✓ tap3b1f6a2c-8d  to the VM  ◀ decided here",
    ]


def test_detailed_shows_every_field_and_the_packet_where_it_changed() -> None:
    dnat = replace(SYN, nw_dst=ip_address("10.0.0.12"))
    steps = list(TRACE.steps)
    steps[6] = nf("neutron-openvswi-sg-chain", 9, kind=StepKind.RETURN, packet=dnat, handle=12)
    text = render_trace(replace(TRACE, steps=tuple(steps)), level=Level.DETAILED)
    packets = [x.strip() for x in text.splitlines() if x.strip().startswith("packet: ")]
    assert packets == ["packet: " + SYN.flow_text(), "packet: " + dnat.flow_text()]
    assert "nw_dst=10.0.0.12" in packets[1]
    assert text.count("devices: IN=qbr3b1f6a2c-8d OUT=qbr3b1f6a2c-8d PHYSIN=qvb3b1f6a2c-8d") == 4
    assert "handle 12" in text
    assert "packet: " not in render_trace(TRACE)


def test_show_follows_the_same_width_policy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = str(DATA / "snapshot" / "golden-cmp1")
    monkeypatch.delenv("COLUMNS", raising=False)
    assert main(["show", snapshot]) == 0
    piped = capsys.readouterr().out
    monkeypatch.setenv("COLUMNS", "60")
    assert main(["show", snapshot]) == 0
    narrow = capsys.readouterr().out
    assert max(len(x) for x in piped.splitlines()) > 60
    assert all(len(x) <= 60 or " " not in x.strip() for x in narrow.splitlines())
    assert all(x == x.rstrip() for x in narrow.splitlines())
    assert narrow.split() == piped.split()
