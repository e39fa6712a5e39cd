"""Every line of the trace tree, actions included, as the real ``ofproto/trace`` printed it
(recorded from OVS 3.1, tests/data/openflow/lab-*): exact when the snapshot's dump speaks the
OpenFlow version the flows were added with (OpenFlow 1.3 for Neutron's agent), and ports by
number even from a ``--names`` dump."""

from __future__ import annotations

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from tests.lab.openflow_harness import line_differences, nodetrace_trace
from tests.unit.test_openflow_recorded import LABS, load_recorded, recorded_traces


def _differing(lab: str, form: str) -> list[str]:
    engine = OpenFlowEngine(load_recorded(LABS / lab, form))
    out = []
    for bridge, flow, ct, text in recorded_traces(LABS / lab):
        out += line_differences(text, nodetrace_trace(engine, bridge, flow, ct))
    return out


@pytest.mark.parametrize(("lab", "form"), [("lab-neutron", "of13"), ("lab-firewall", "of13")])
def test_openflow13_dump_gives_ovs_own_lines(lab: str, form: str) -> None:
    assert _differing(lab, form) == []


def test_a_names_dump_still_prints_port_numbers_as_ofproto_trace_does() -> None:
    lines = _differing("lab-neutron", "names")
    assert not [x for x in lines if x.startswith("+") and 'output:"' in x]
    assert not [x for x in lines if x.startswith("-") and x.strip("- ").startswith("output:")]
