"""``ovs-vsctl list`` in its text form (what sosreports keep) reads as its JSON form would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.ovsdb import OvsdbMap, OvsdbSet, OvsdbUuid
from nodetrace.parsers.ovs_vsctl_list_text import parse_ovs_vsctl_list_text
from nodetrace.snapshot.load import load
from tests.conftest import DATA

HOTSOS = DATA / "snapshot" / "hotsos-ovs"


def test_hotsos_interface_table() -> None:
    table = parse_ovs_vsctl_list_text(
        (HOTSOS / "ovs-vsctl_-t_5_list_interface").read_text(), source="list"
    )
    assert table.name == "Interface" and len(table.rows) == 17  # 17 "name" lines
    tap = next(r for r in table.rows if r.get("name") == "tap0e778df8-ca")
    ids = tap.get("external_ids")
    assert isinstance(ids, OvsdbMap)
    assert dict(ids.pairs)["iface-id"] == "0e778df8-ca29-490b-8d54-e238b1e0be1c"
    assert dict(ids.pairs)["attached-mac"] == "fa:16:3e:a7:45:cb"
    assert tap.get("mac_in_use") == "fe:16:3e:a7:45:cb"
    assert tap.get("error") == OvsdbSet(())
    assert isinstance(tap.get("_uuid"), OvsdbUuid)


def test_hotsos_bridge_table() -> None:
    table = parse_ovs_vsctl_list_text(
        (HOTSOS / "ovs-vsctl_-t_5_list_bridge").read_text(), source="list"
    )
    assert table.name == "Bridge"
    assert sorted(str(r.get("name")) for r in table.rows) == [
        "br-data",
        "br-ex",
        "br-int",
        "br-tun",
    ]
    br_int = next(r for r in table.rows if r.get("name") == "br-int")
    ports = br_int.get("ports")
    assert isinstance(ports, OvsdbSet) and all(isinstance(p, OvsdbUuid) for p in ports.items)
    assert br_int.get("fail_mode") == "secure"


def test_text_list_completes_ovs_vsctl_show(tmp_path: Path) -> None:
    ovs = tmp_path / "sos_commands" / "openvswitch"
    ovs.mkdir(parents=True)
    for name in (
        "ovs-vsctl_-t_5_show",
        "ovs-vsctl_-t_5_list_interface",
        "ovs-vsctl_-t_5_list_bridge",
    ):
        shutil.copy(HOTSOS / name, ovs)
    snap = load(tmp_path)
    assert snap.ovs is not None and snap.ovs.ovsdb is not None
    br_int = next(b for b in snap.ovs.ovsdb.bridges if b.name == "br-int")
    # The Bridge table names ports by uuid and there is no Port table: `show` places them.
    assert len(br_int.ports) == 9
    tap = next(p for p in br_int.ports if p.name == "tap0e778df8-ca")
    assert tap.tag == 3 and tap.interfaces[0].ofport == 9
    assert dict(tap.interfaces[0].external_ids)["attached-mac"] == "fa:16:3e:a7:45:cb"


def test_bad_values_are_reported() -> None:
    text = 'name : "a"\nexternal_ids : {a=1, b}\nstatus : [x\n\n'
    sink = DiagnosticSink()
    table = parse_ovs_vsctl_list_text(text, source="t", sink=sink)
    assert [d.pos.line for d in sink.items] == [2, 3]
    assert table.rows[0].get("name") == "a"
    with pytest.raises(ParseError):
        parse_ovs_vsctl_list_text(text, source="t")
