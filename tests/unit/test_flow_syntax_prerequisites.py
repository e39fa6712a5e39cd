"""The packet syntax refuses what ``ofproto/trace`` refuses, with OVS's own reason, and accepts
what it accepts (the table was recorded from a real Open vSwitch 3.1; the lab test replays it)."""

from __future__ import annotations

import pytest

from nodetrace.errors import UsageError
from nodetrace.parsers.flow_syntax import parse_flow
from tests.openflow_flow_syntax_cases import NODETRACE_DIFFERS, OFPROTO_TRACE_SAYS

_SAME = [(s, r) for s, r in OFPROTO_TRACE_SAYS.items() if s not in NODETRACE_DIFFERS]


def _nodetrace_says(spec: str) -> str | None:
    try:
        parse_flow("in_port=p1," + spec)
    except UsageError as err:
        return str(err)
    return None


@pytest.mark.parametrize(("spec", "ovs_reason"), _SAME)
def test_accepted_and_refused_as_ofproto_trace(spec: str, ovs_reason: str | None) -> None:
    said = _nodetrace_says(spec)
    if ovs_reason is None:
        assert said is None
    else:
        assert said is not None and ovs_reason in said
        assert "\n" not in said


@pytest.mark.parametrize("spec", sorted(NODETRACE_DIFFERS))
def test_deliberate_differences_are_the_listed_ones(spec: str) -> None:
    """Each listed difference really is one (a stale entry would hide a regression)."""
    said = _nodetrace_says(spec)
    assert (said is None) != (OFPROTO_TRACE_SAYS[spec] is None)


def test_the_refusal_tells_what_to_write_instead() -> None:
    assert "use udp_src/udp_dst" in (_nodetrace_says("udp,tp_dst=53") or "")
    assert "icmp6" in (_nodetrace_says("icmp,icmpv6_type=128") or "")
    assert "give ip" in (_nodetrace_says("nw_src=10.0.0.1,ip") or "")


def test_a_field_given_as_zero_may_be_given_again_as_ofproto_trace_allows() -> None:
    spec = parse_flow("tcp,tcp_src=0,tp_src=5")
    assert spec.packet.tp_src == 5
