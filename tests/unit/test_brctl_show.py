"""``brctl show`` with its real tab layout, continuation lines and port-less bridges."""

from __future__ import annotations

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.parsers.brctl_show import parse_brctl_show
from tests.conftest import DATA


def test_insights_sample() -> None:
    text = (DATA / "snapshot" / "insights-brctl-show-tabs.txt").read_text()
    got = parse_brctl_show(text, source="brctl")
    assert [(b.name, b.bridge_id, b.stp, b.ports) for b in got] == [
        ("br0", "8000.2047478aa2e8", False, ("em1", "vnet0", "vnet1")),
        ("virbr9", "8000.525400263a23", True, ("virbr9-nic",)),
    ]


def test_bridge_without_ports() -> None:
    text = (DATA / "snapshot" / "newton-like" / "brctl_show").read_text()
    got = {b.name: b.ports for b in parse_brctl_show(text, source="brctl")}
    assert got == {"qbr3b1f6a2c-8d": ("qvb3b1f6a2c-8d", "tap3b1f6a2c-8d"), "qbrempty": ()}


def test_malformed_lines_are_reported() -> None:
    text = "bridge name\tbridge id\tSTP enabled\tinterfaces\n\t\t\tvnet0\nbr0 notanid no\n"
    sink = DiagnosticSink()
    assert parse_brctl_show(text, source="b", sink=sink) == ()
    assert [d.pos.line for d in sink.items] == [2, 3]
    with pytest.raises(ParseError):
        parse_brctl_show(text, source="b")
