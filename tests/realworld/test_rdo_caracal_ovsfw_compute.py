"""A CentOS Stream 9 / RDO 2024.1 compute node with the native OVS firewall (published in
9506hqwy/openstack_study_notes; see rdo-caracal-ovsfw-compute/README.md). Every expected value
was read by hand from the dataset's files; the comment beside it names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "rdo-caracal-ovsfw-compute"
VM = "648437e1-0d"


def _show(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return run_json(capsys, "show", str(NODE))


def _port(doc: dict[str, Any], port_id: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in doc["ports"] if p["port_id"] == port_id]
    assert len(found) == 1, [p["port_id"] for p in doc["ports"]]
    return found[0]


def _flows(doc: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    return [
        (s["bridge"], s["table"], s["priority"], s["actions"])
        for s in doc["steps"]
        if s["type"] == "openflow"
    ]


def test_bridges_and_tunnel(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _show(capsys)
    bridges = {b["name"]: b for b in doc["ovs_bridges"]}
    # ovs-vsctl show: four bridges, each "fail_mode: secure" and "datapath_type: system"
    assert set(bridges) == {"br-int", "br-tun", "br-provider", "br-mgmt"}
    assert {(b["fail_mode"], b["datapath_type"]) for b in bridges.values()} == {
        ("secure", "system")
    }
    tun = {p["name"]: p for p in bridges["br-tun"]["ports"]}
    # ovs-vsctl show lines 59-62: vxlan-ac10000b, remote_ip="172.16.0.11"
    assert (tun["vxlan-ac10000b"]["type"], tun["vxlan-ac10000b"]["remote_ip"]) == (
        "vxlan",
        "172.16.0.11",
    )
    integ = {p["name"]: p for p in bridges["br-int"]["ports"]}
    assert integ["patch-tun"]["peer"] == "patch-int"  # ovs-vsctl show line 24
    assert integ["tap648437e1-0d"]["tag"] == 3  # ovs-vsctl show line 26
    # No ovs-ofctl show and the flows print names (in_port="tap648437e1-0d"): no port numbers.
    assert integ["tap648437e1-0d"]["ofport"] is None


def test_the_vm_port_from_the_ovs_firewall_flows(capsys: pytest.CaptureFixture[str]) -> None:
    port = _port(_show(capsys), VM)
    assert port["kind"] == "vm"
    # ip -d link show lines 32-34: "tun type tap"; ovs-vsctl show line 25: on br-int, not internal
    assert port["devices"] == ["tap648437e1-0d"]
    assert (port["tap"], port["bridge"], port["ovs_port"]) == (
        "tap648437e1-0d",
        "br-int",
        "tap648437e1-0d",
    )
    assert port["namespace"] is None
    # br-int table 60/71 flows (ovs-ofctl dump-flows br-int lines 12-31): native OVS firewall
    assert port["firewall"] == "openvswitch"
    assert port["chains"] == []
    assert port["tag"] == 3  # ovs-vsctl show line 26
    # dump-flows br-int line 18: table=71 ...dl_src=fa:16:3e:61:21:c6,nw_src=192.168.101.85
    assert port["mac"] == "fa:16:3e:61:21:c6"
    # lines 18 and 30: nw_src=192.168.101.85, ipv6_src=fe80::f816:3eff:fe61:21c6
    assert set(port["ips"]) == {"192.168.101.85", "fe80::f816:3eff:fe61:21c6"}
    # line 12: table=60 in_port="tap648437e1-0d" ... load:0x3->NXM_NX_REG6[] (the zone)
    assert port["zone"] == 3
    # dump-flows br-tun line 7: table=4 tun_id=0xef actions=mod_vlan_vid:3
    assert (port["network_type"], port["segmentation_id"]) == ("vxlan", 239)
    # 31 flows of br-int name the tap or its MAC (grep -c in dump-flows br-int)
    assert port["flows"] >= 31
    assert "71" in port["sources"]["mac"] and "60" in port["sources"]["zone"]


def test_stale_ports_have_no_device_but_keep_their_networks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = _show(capsys)
    # ovs-vsctl show lines 28-31 and 39-42: 'could not open network device ... (No such device)'
    stale_a, stale_b = _port(doc, "0ab9a23c-99"), _port(doc, "635485ff-6c")
    assert (stale_a["devices"], stale_b["devices"]) == ([], [])
    assert (stale_a["tag"], stale_b["tag"]) == (1, 2)
    # dump-flows br-int line 2: in_port="int-br-provider",dl_vlan=100 actions=mod_vlan_vid:1
    assert (stale_a["network_type"], stale_a["segmentation_id"]) == ("vlan", 100)
    # line 3: in_port="int-br-provider",vlan_tci=0x0000/0x1fff actions=mod_vlan_vid:2 (flat)
    assert (stale_b["network_type"], stale_b["segmentation_id"]) == ("flat", None)


def test_what_the_folder_lacks_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _show(capsys)
    missing = {m["what"] for m in doc["missing"]}
    assert "iptables-save" in missing
    assert doc["node"]["hostname"] is None and doc["node"]["kernel"] is None
    assert doc["node"]["source_kind"] == "folder"


def test_ssh_from_the_tunnel_is_delivered_by_table_82(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(
        capsys, "trace", str(NODE), "--to-port", VM, "--packet", "tcp,tp_dst=22,tcp_flags=+syn"
    )
    assert doc["outcome"] == "delivered"
    verdict = doc["steps"][doc["verdict_step"]]
    assert verdict["type"] == "device" and verdict["device"] == "tap648437e1-0d"
    flows = _flows(doc)
    # dump-flows br-tun line 7: table=4, priority=1, tun_id=0xef actions=mod_vlan_vid:3,...
    assert ("br-tun", 4, 1) in [f[:3] for f in flows]
    # dump-flows br-int line 62: table=82 priority=77 ct_state=+new-est,tcp,reg5=0x4,tp_dst=22
    assert ("br-int", 82, 77) in [f[:3] for f in flows]


def test_dns_from_the_tunnel_is_dropped_by_table_93(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "trace", str(NODE), "--to-port", VM, "--packet", "udp,udp_dst=53")
    assert doc["outcome"] == "dropped"
    verdict = doc["steps"][doc["verdict_step"]]
    # dump-flows br-int line 75: table=93, priority=0 actions=drop, reached from line 69:
    # table=82, priority=40, ct_state=-est,reg5=0x4 actions=resubmit(,93)
    assert (verdict["bridge"], verdict["table"], verdict["priority"]) == ("br-int", 93, 0)
    assert ("br-int", 82, 40) in [f[:3] for f in _flows(doc)]


def test_the_vm_reaches_the_tunnel_to_its_gateway_then_needs_the_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the tcpdump in the source shows this very packet: 192.168.101.85 > 192.168.101.1
    packet = "icmp,nw_dst=192.168.101.1,dl_dst=fa:16:3e:e9:26:5b,icmp_type=8,icmp_code=0"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", VM, "--packet", packet)
    # The kernel datapath hands the VXLAN packet to the host's routing, and the node published
    # no routes: the trace follows the flows to the tunnel and then says what it lacks.
    assert doc["outcome"] == "unknown"
    encap = [s for s in doc["steps"] if s.get("action") == "encap"]
    # ovs-vsctl show: vxlan-ac10000b options local_ip="172.16.0.31", remote_ip="172.16.0.11"
    assert {s["device"] for s in encap} == {"vxlan-ac10000b"}
    assert any("172.16.0.31 → 172.16.0.11" in s["detail"] for s in encap)
    assert "ip route show table all" in doc["steps"][doc["verdict_step"]]["detail"]
    flows = [f[:3] for f in _flows(doc)]
    # dump-flows br-int line 18: table=71 priority=65 ip,...,nw_src=192.168.101.85 -> ct(72)
    assert ("br-int", 71, 65) in flows
    # line 46: table=73 priority=90 ct_state=+new-est,ip,reg5=0x4 -> ct(commit),resubmit(,91)
    assert ("br-int", 73, 90) in flows
    # dump-flows br-tun line 11: learned table=20 priority=1 dl_dst=fa:16:3e:e9:26:5b -> vxlan
    assert ("br-tun", 20, 1) in flows


def test_a_spoofed_source_is_dropped_by_table_71(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "icmp,nw_src=192.168.101.99,nw_dst=192.168.101.1,icmp_type=8,icmp_code=0"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", VM, "--packet", packet)
    assert doc["outcome"] == "dropped"
    # dump-flows br-int line 31: table=71 priority=10 reg5=0x4,in_port=... ct_clear,resubmit(,93)
    assert ("br-int", 71, 10) in [f[:3] for f in _flows(doc)]
    verdict = doc["steps"][doc["verdict_step"]]
    assert (verdict["table"], verdict["priority"]) == (93, 0)  # line 75: table=93 drop
