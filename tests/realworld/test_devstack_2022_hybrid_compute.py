"""vm1's compute node of a three-node DevStack lab (January 2022, iptables_hybrid) as its
author published it: complete br-int/br-tun dumps whose flows name ports, a one-line
`ovs-ofctl show br-int | grep ...`, a grep-filtered `ovs-vsctl list port`, and an
`ovs-vsctl show` cut to br-tun (see devstack-2022-hybrid-compute/README.md). Expected values
were read by hand from the files; the comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "devstack-2022-hybrid-compute"
VM = "3e399bf2-31"
QVO = "qvo3e399bf2-31"
BR_INT = "ovs-ofctl dump-flows br-int"
BR_TUN = "ovs-ofctl dump-flows br-tun"


def _vm(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    doc = run_json(capsys, "show", str(NODE))
    found: list[dict[str, Any]] = [p for p in doc["ports"] if p["port_id"] == VM]
    assert len(found) == 1, [p["port_id"] for p in doc["ports"]]
    return found[0]


def _verdict(doc: dict[str, Any]) -> dict[str, Any]:
    step: dict[str, Any] = doc["steps"][doc["verdict_step"]]
    return step


def test_the_bridges_are_those_of_the_commands_not_of_the_filters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = run_json(capsys, "show", str(NODE))
    # `ovs-ofctl show br-int | grep 3e399bf2-31` is br-int's show, filtered: no bridge of its own
    assert {b["name"] for b in doc["ovs_bridges"]} == {"br-int", "br-tun"}


def test_the_vm_port_on_br_int(capsys: pytest.CaptureFixture[str]) -> None:
    port = _vm(capsys)
    assert port["kind"] == "vm"
    assert (port["bridge"], port["ovs_port"]) == ("br-int", QVO)
    assert port["ofport"] == 7  # ovs-ofctl show br-int | grep ...:2 " 7(qvo3e399bf2-31)"
    assert port["firewall"] == "iptables_hybrid"  # qvo plugging; no ovsfw table in br-int
    # dump-flows br-int:3,4,6,10,11,12,14 name in_port="qvo3e399bf2-31"
    assert port["flows"] == 7


def test_the_vm_mac_and_addresses_from_the_anti_spoofing_flows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _vm(capsys)
    # dump-flows br-int:14: table=25 ...in_port="qvo3e399bf2-31",dl_src=fa:16:3e:3d:0f:f6
    assert port["mac"] == "fa:16:3e:3d:0f:f6"
    # :12 arp_spa=10.0.0.57; :10 and :11 nd_target=fdba:...:ff6 and fe80::...:ff6
    assert set(port["ips"]) == {
        "10.0.0.57",
        "fdba:b3c4:c275:0:f816:3eff:fe3d:ff6",
        "fe80::f816:3eff:fe3d:ff6",
    }
    assert "table 25" in port["sources"]["mac"]


def test_the_vm_local_vlan_as_ovsdb_gives_it(capsys: pytest.CaptureFixture[str]) -> None:
    port = _vm(capsys)
    # ovs-vsctl list port qvo3e399bf2-31 | grep tag:3 "tag : 2" (the command names the port)
    assert port["tag"] == 2
    # dump-flows br-tun:9: table=4 tun_id=0x6ab actions=mod_vlan_vid:2
    assert (port["network_type"], port["segmentation_id"]) == ("vxlan", 1707)


def test_br_tun_tunnels_and_segment(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: b for b in doc["ovs_bridges"]}
    tun = bridges["br-tun"]
    ports = {p["name"]: p for p in tun["ports"]}
    assert (tun["datapath_type"], tun["fail_mode"]) == ("system", "secure")  # show:9-10
    assert ports["vxlan-0a780064"]["remote_ip"] == "10.120.0.100"  # ovs-vsctl show:25
    assert ports["vxlan-0a780066"]["remote_ip"] == "10.120.0.102"  # :21
    assert ports["vxlan-0a780066"]["local_ip"] == "10.120.0.101"  # :21
    assert (ports["gre-0a780066"]["type"], ports["gre-0a780066"]["remote_ip"]) == (
        "gre",
        "10.120.0.102",
    )  # :13-14
    assert ports["patch-int"]["peer"] == "patch-tun"  # :29
    assert tun["flows"] == 15  # dump-flows br-tun:2-16
    assert bridges["br-int"]["flows"] == 17  # dump-flows br-int:2-18
    # br-int's settings were cut from ovs-vsctl show (:5 and :30 are "..."): not made up
    assert bridges["br-int"]["datapath_type"] is None
    assert bridges["br-int"]["fail_mode"] is None
    segments = {(s["local_vlan"], s["network_type"], s["segmentation_id"]) for s in doc["segments"]}
    assert (2, "vxlan", 1707) in segments  # dump-flows br-tun:9


def test_the_cut_lines_are_reported_with_file_and_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = run_json(capsys, "show", str(NODE))
    said = "\n".join(doc["diagnostics"])
    assert "ovs-vsctl show:5" in said and "ovs-vsctl show:30" in said  # the two "..." lines


def test_a_spoofed_arp_of_the_vm_is_dropped_by_table_24(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = (
        "arp,dl_src=fa:16:3e:3d:0f:f6,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_spa=10.0.0.99,"
        "arp_sha=fa:16:3e:3d:0f:f6,arp_tpa=10.0.0.1"
    )
    doc = run_json(capsys, "trace", str(NODE), "--from", QVO, "--packet", packet)
    assert doc["outcome"] == "dropped"
    verdict = _verdict(doc)
    # dump-flows br-int:4 (arp,in_port=qvo -> table 24); only arp_spa=10.0.0.57 passes (:12);
    # :13 table=24 priority=0 actions=drop
    assert (verdict["bridge"], verdict["table"], verdict["priority"]) == ("br-int", 24, 0)


def test_a_frame_with_another_mac_misses_table_25(capsys: pytest.CaptureFixture[str]) -> None:
    packet = (
        "tcp,dl_src=fa:16:3e:00:00:99,dl_dst=fa:16:3e:4a:97:e2,nw_src=10.0.0.57,"
        "nw_dst=10.0.0.50,tp_dst=22,tcp_flags=+syn"
    )
    doc = run_json(capsys, "trace", str(NODE), "--from", QVO, "--packet", packet)
    assert doc["outcome"] == "dropped"
    verdict = _verdict(doc)
    # dump-flows br-int:6 sends it to table 25, whose only flow (:14) wants dl_src of the VM
    assert (verdict["bridge"], verdict["table"]) == ("br-int", 25)
    assert verdict["note"] == "no match"


def test_an_unknown_vni_is_dropped_by_br_tun_table_4(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "tun_id=0x64,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.0.57"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-0a780064", "--packet", packet)
    assert doc["outcome"] == "dropped"
    # dump-flows br-tun:3 in_port="vxlan-0a780064" -> table 4; :10 table=4 priority=0 drop
    assert (_verdict(doc)["bridge"], _verdict(doc)["table"], _verdict(doc)["priority"]) == (
        "br-tun",
        4,
        0,
    )


def test_vni_1707_reaches_br_int_only_as_far_as_the_snapshot_tells(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = (
        "tun_id=0x6ab,tcp,dl_src=fa:16:3e:65:83:63,dl_dst=fa:16:3e:3d:0f:f6,nw_src=10.0.0.2,"
        "nw_dst=10.0.0.57,tp_dst=22,tcp_flags=+syn"
    )
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-0a780064", "--packet", packet)
    flows = [
        (s["bridge"], s["table"], s["priority"]) for s in doc["steps"] if s["type"] == "openflow"
    ]
    # dump-flows br-tun:9 (VNI 1707 -> VLAN 2) and :12 (learn, output to patch-int)
    assert ("br-tun", 4, 1) in flows and ("br-tun", 10, 1) in flows
    # patch-int's peer patch-tun is on br-int, whose ports were cut from ovs-vsctl show
    assert doc["outcome"] == "unknown"
