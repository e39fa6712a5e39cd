"""nodetrace against real ``ofproto/trace`` answers recorded from OVS 3.1 (tests/data/openflow/
lab-*, see SOURCES.md): the snapshot is read with nodetrace's own parsers, every recorded packet
is traced offline, and the bridge/table/flow tree and the packets leaving must be OVS's.

The same comparison runs live against a fresh ovs-vswitchd in tests/lab; this one needs no root.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list
from tests.conftest import DATA
from tests.lab.openflow_harness import differences, nodetrace_trace

LABS = DATA / "openflow"


def load_recorded(folder: Path, form: str | None = None) -> OvsSwitch:
    bridges = sorted(p.name.split(".")[1] for p in folder.glob("ovs-ofctl-dump-flows.*.txt"))
    flows, shows, fdbs = {}, {}, {}
    for br in bridges:
        dump = folder / (f"forms.{br}.{form}.txt" if form else f"ovs-ofctl-dump-flows.{br}.txt")
        flows[br] = parse_ovs_ofctl_dump_flows(dump.read_text(), source=dump.name)
        show = folder / f"ovs-ofctl-show.{br}.txt"
        shows[br] = parse_ovs_ofctl_show(show.read_text(), source=show.name)
        fdb = folder / f"ovs-appctl-fdb-show.{br}.txt"
        fdbs[br] = parse_ovs_appctl_fdb_show(fdb.read_text(), source=fdb.name)
    tables = [
        parse_ovs_vsctl_list((folder / f"ovs-vsctl-list-{t}.json").read_text(), source=t)
        for t in ("bridge", "port", "interface")
    ]
    db = ovsdb_from_tables(tables)
    db = type(db)(tuple(b for b in db.bridges if b.name in bridges), db.ovs_version, db.source)
    return OvsSwitch.build(flows, ovsdb=db, ofctl=shows, fdb=fdbs)


def recorded_traces(folder: Path) -> list[tuple[str, str, tuple[str, ...], str]]:
    out = []
    for chunk in (folder / "traces.txt").read_text().split("##### ")[1:]:
        head, _, text = chunk.partition("\n")
        words = head.split()
        ct = tuple(words[i + 1] for i, w in enumerate(words) if w == "--ct-next")
        out.append((words[0], words[1], ct, text))
    return out


CASES = [
    pytest.param(lab, form, id=f"{lab}-{form or 'snapshot'}")
    for lab, forms in (
        ("lab-neutron", (None, "of13", "of15", "names", "nostats")),
        ("lab-firewall", (None, "of10", "names")),
    )
    for form in forms
]


@pytest.mark.parametrize(("lab", "form"), CASES)
def test_offline_traces_equal_recorded_ofproto_trace(lab: str, form: str | None) -> None:
    folder = LABS / lab
    engine = OpenFlowEngine(load_recorded(folder, form))
    dpif = parse_ovs_appctl_dpif_show((folder / "ovs-appctl-dpif-show.txt").read_text())
    cases = recorded_traces(folder)
    assert len(cases) >= 40
    failures = []
    for bridge, flow, ct, ovs_text in cases:
        nt = nodetrace_trace(engine, bridge, flow, ct)
        problems = differences(ovs_text, nt, dpif)
        if problems:
            failures.append(f"{bridge} {flow} {ct}:\n" + "\n".join(problems))
    assert not failures, "\n\n".join(failures[:3])
