"""The recorded table of packet specs against the real ``ovs-appctl ofproto/trace`` (Open vSwitch
3.1, userspace datapath): OVS still says what the table says, and nodetrace refuses exactly what
OVS refuses, with OVS's reason, apart from the listed deliberate differences."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.errors import UsageError
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import CommandError
from nodetrace.parsers.flow_syntax import parse_flow
from tests.conftest import unique
from tests.lab.openflow_harness import OvsLab, Pipeline, PortSpec
from tests.openflow_flow_syntax_cases import NODETRACE_DIFFERS, OFPROTO_TRACE_SAYS

pytestmark = pytest.mark.lab


def test_packet_syntax_matches_ofproto_trace(lab: Resources, tmp_path: Path) -> None:
    ovs = OvsLab(lab, unique("ofs"), tmp_path)
    ovs.load(Pipeline({"br-x": [PortSpec("p1")]}, {"br-x": ["priority=0,actions=drop"]}))
    problems = []
    for spec, recorded in OFPROTO_TRACE_SAYS.items():
        flow = "in_port=p1," + spec
        try:
            ovs.trace("br-x", flow)
            real = None
        except CommandError as err:
            line = str(err).split(": exit 2: ", 1)[-1].splitlines()[0]
            real = line.removeprefix(f"Bad openflow flow syntax: {flow}: ")
        if real != recorded:
            problems.append(f"{spec}: OVS now says {real!r}, the table {recorded!r}")
        try:
            parse_flow(flow)
            mine = None
        except UsageError as err:
            mine = str(err)
        if spec in NODETRACE_DIFFERS:
            continue
        if (mine is None) != (real is None) or (real is not None and real not in (mine or "")):
            problems.append(f"{spec}: OVS {real!r}, nodetrace {mine!r}")
    assert not problems, "\n".join(problems)
