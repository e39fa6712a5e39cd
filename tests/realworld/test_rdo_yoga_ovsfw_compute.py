"""The CentOS Stream 8 / RDO Yoga compute node of 9506hqwy/openstack_study_notes with the native
OVS firewall, as first published with an elided br-int dump (see rdo-yoga-ovsfw-compute/README.md).
Expected values were read by hand from the files; the comment beside each names the file and
line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "rdo-yoga-ovsfw-compute"
VM = "8811e933-5c"


def _vm(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    doc = run_json(capsys, "show", str(NODE))
    found: list[dict[str, Any]] = [p for p in doc["ports"] if p["port_id"] == VM]
    assert len(found) == 1, [p["port_id"] for p in doc["ports"]]
    return found[0]


def test_the_vm_port(capsys: pytest.CaptureFixture[str]) -> None:
    port = _vm(capsys)
    assert port["kind"] == "vm"
    assert (port["tap"], port["bridge"], port["ovs_port"]) == (
        "tap8811e933-5c",
        "br-int",
        "tap8811e933-5c",
    )
    assert port["ofport"] == 3  # ovs-ofctl show br-int line 13: " 3(tap8811e933-5c): ..."
    assert port["tag"] == 3  # ovs-vsctl show line 49
    assert port["firewall"] == "openvswitch"  # dump-flows br-int lines 3-36: tables 60-82
    # dump-flows br-int line 6: table=71 ...dl_src=fa:16:3e:55:18:7a,nw_src=192.168.101.19
    assert port["mac"] == "fa:16:3e:55:18:7a"
    # lines 6 and 17: nw_src=192.168.101.19, ipv6_src=fe80::f816:3eff:fe55:187a
    assert set(port["ips"]) == {"192.168.101.19", "fe80::f816:3eff:fe55:187a"}
    assert port["zone"] == 3  # line 3: table=60 ... load:0x3->NXM_NX_REG6[]
    # dump-flows br-tun line 7: table=4 priority=1,tun_id=0xcb actions=mod_vlan_vid:3
    assert (port["network_type"], port["segmentation_id"]) == ("vxlan", 203)


def test_bridges_and_ports(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: {p["name"]: p for p in b["ports"]} for b in doc["ovs_bridges"]}
    assert set(bridges) == {"br-int", "br-tun", "br-provider"}  # ovs-vsctl show lines 4, 20, 35
    # ovs-ofctl show br-tun: 1(patch-int), 2(vxlan-ac10000b); br-int: 1(int-br-provider),
    # 2(patch-tun), 3(tap8811e933-5c)
    assert bridges["br-tun"]["vxlan-ac10000b"]["ofport"] == 2
    assert bridges["br-tun"]["vxlan-ac10000b"]["remote_ip"] == "172.16.0.11"  # line 16
    assert bridges["br-int"]["int-br-provider"]["ofport"] == 1
    assert bridges["br-int"]["patch-tun"]["peer"] == "patch-int"  # ovs-vsctl show line 43


def test_the_elided_flow_dump_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["show", str(NODE)])
    out, err = capsys.readouterr()
    assert code == 0
    # dump-flows br-int line 1 is "(...)": not a flow; said with its file and line
    assert "ovs-ofctl dump-flows br-int:1" in out + err


def test_an_unknown_vni_is_dropped_by_br_tun_table_4(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "tun_id=0x64,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=192.168.101.19"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-ac10000b", "--packet", packet)
    assert doc["outcome"] == "dropped"
    verdict = doc["steps"][doc["verdict_step"]]
    # dump-flows br-tun line 8: table=4, priority=0 actions=drop (only tun_id=0xcb is known)
    assert (verdict["bridge"], verdict["table"], verdict["priority"]) == ("br-tun", 4, 0)


def test_ssh_into_br_int_is_unknown_not_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    """br-int's table 0 is elided in the source: the walk must not call it a table miss."""
    doc = run_json(
        capsys, "trace", str(NODE), "--to-port", VM, "--packet", "tcp,tp_dst=22,tcp_flags=+syn"
    )
    flows = [(s["bridge"], s["table"]) for s in doc["steps"] if s["type"] == "openflow"]
    assert ("br-tun", 4) in flows  # dump-flows br-tun line 7: tun_id=0xcb -> VLAN 3
    assert doc["outcome"] == "unknown"
