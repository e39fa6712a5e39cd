"""The ``Datapath actions:`` line against real ``ofproto/trace`` answers recorded from OVS 3.1
(tests/data/openflow/lab-*): where nodetrace derives it, it is OVS's exactly; where it does
not, it says why, and enough of the recorded traces are derived for the check to mean something.
"""

from __future__ import annotations

import re

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_ofproto_trace import parse_ovs_appctl_ofproto_trace
from nodetrace.render.ofproto_trace import render_ofproto
from tests.lab.openflow_harness import nodetrace_trace
from tests.unit.test_openflow_recorded import LABS, load_recorded, recorded_traces


@pytest.mark.parametrize("lab", ["lab-neutron", "lab-firewall"])
def test_derived_datapath_actions_are_ovs_own(lab: str) -> None:
    folder = LABS / lab
    dpif = parse_ovs_appctl_dpif_show((folder / "ovs-appctl-dpif-show.txt").read_text())
    engine = OpenFlowEngine(load_recorded(folder), dpif=dpif)
    derived = not_derived = 0
    wrong = []
    for bridge, flow, ct, ovs_text in recorded_traces(folder):
        observed = parse_ovs_appctl_ofproto_trace(ovs_text)
        nt = nodetrace_trace(engine, bridge, flow, ct)
        for o, p in zip(observed.passes, nt.passes, strict=False):
            assert p.datapath_actions is not None
            if p.datapath_actions.startswith("(not derived: "):
                not_derived += 1
                continue
            derived += 1
            if p.datapath_actions != o.datapath_actions:
                wrong.append(
                    f"{flow}: OVS {o.datapath_actions!r}, nodetrace {p.datapath_actions!r}"
                )
    assert not wrong, "\n".join(wrong)
    print(f"{lab}: {derived} derived, {not_derived} not")
    assert derived >= 20, (derived, not_derived)


def test_without_dpif_show_the_line_says_what_is_missing() -> None:
    folder = LABS / "lab-neutron"
    dpif = parse_ovs_appctl_dpif_show((folder / "ovs-appctl-dpif-show.txt").read_text())
    with_dpif = OpenFlowEngine(load_recorded(folder), dpif=dpif)
    bridge, flow, ct, _ = next(
        c
        for c in recorded_traces(folder)
        if re.search(r"^Datapath actions: push_vlan\(vid=\d+,pcp=0\),\d+$", c[3], re.M)
        and "push_vlan" in (nodetrace_trace(with_dpif, *c[:3]).passes[0].datapath_actions or "")
    )
    text = render_ofproto(nodetrace_trace(OpenFlowEngine(load_recorded(folder)), bridge, flow, ct))
    assert "Datapath actions: (not derived: datapath port numbers need ovs-appctl dpif/show)" in (
        text
    )
    assert "Megaflow: (not derived" in text
