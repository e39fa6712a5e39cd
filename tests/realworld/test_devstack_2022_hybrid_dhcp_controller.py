"""The all-in-one controller of the same DevStack lab (January 2022) while it served DHCP for the
VXLAN network: its DHCP namespace and complete br-tun/br-int dumps whose flows name ports, but
no `ovs-vsctl show` or `ovs-ofctl show` (see devstack-2022-hybrid-dhcp-controller/README.md).
Expected values were read by hand from the files; the comment beside each names the file and
line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "devstack-2022-hybrid-dhcp-controller"
QDHCP = "qdhcp-5d90176f-d6e4-461e-94c1-c0f44e7cc52b"
IP_A = f"ip netns exec {QDHCP} ip a"


def test_the_dhcp_port_in_its_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    assert [p["port_id"] for p in doc["ports"]] == ["dcb8a7b0-69"]  # ip a:8, the only port
    port = doc["ports"][0]
    assert port["kind"] == "dhcp"
    assert (port["tap"], port["namespace"]) == ("tapdcb8a7b0-69", QDHCP)  # ip a:1,8
    assert port["mac"] == "fa:16:3e:65:83:63"  # ip a:9
    # ip a:10, :12, :14
    assert set(port["ips"]) == {
        "10.0.0.2",
        "fdba:b3c4:c275:0:f816:3eff:fe65:8363",
        "fe80::f816:3eff:fe65:8363",
    }
    namespaces = {n["name"]: sorted(n["interfaces"]) for n in doc["namespaces"]}
    assert namespaces == {QDHCP: ["lo", "tapdcb8a7b0-69"]}  # ip netns:2; ip a:2,8


def test_vni_1707_is_local_vlan_1_here(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    segments = {(s["local_vlan"], s["network_type"], s["segmentation_id"]) for s in doc["segments"]}
    # dump-flows br-tun:9: table=4 tun_id=0x6ab actions=mod_vlan_vid:1 (VLAN 2 on compute-1)
    assert segments == {(1, "vxlan", 1707)}
    bridges = {b["name"]: b for b in doc["ovs_bridges"]}
    assert bridges["br-tun"]["flows"] == 17  # dump-flows br-tun:2-18
    assert bridges["br-int"]["flows"] == 9  # dump-flows br-int:2-10
    # no ovs-vsctl output: nothing about the bridges' settings may be stated as read
    assert bridges["br-tun"]["fail_mode"] is None
    assert bridges["br-int"]["datapath_type"] is None


def test_the_prompt_lines_are_reported_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    said = "\n".join(doc["diagnostics"])
    assert "ip netns:1" in said  # "$ ip netns"
    assert f"{IP_A}:1" in said  # "$ sudo ip netns exec ... ip a"
    assert "ovs-ofctl dump-flows br-tun:1" in said  # "sudo ovs-ofctl dump-flows br-tun"


def test_the_namespace_cannot_route_without_its_routes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "udp,nw_src=10.0.0.2,nw_dst=10.0.0.57,udp_src=67,udp_dst=68"
    doc = run_json(capsys, "trace", str(NODE), "--from-host", "--netns", QDHCP, "--packet", packet)
    # no `ip route` of the namespace was published: unknown, naming what would tell
    assert doc["outcome"] == "unknown"
    assert "ip route" in doc["reason"] and QDHCP in doc["reason"]


def test_an_unknown_vni_from_compute_1_is_dropped_by_table_4(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The tunnel port is known by the name the flows print (OVS >= 2.8), as ofproto/trace
    knows it; no port number is needed to match in_port="vxlan-0a780065"."""
    packet = "tun_id=0x64,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.0.2"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-0a780065", "--packet", packet)
    assert doc["outcome"] == "dropped"
    verdict = doc["steps"][doc["verdict_step"]]
    # dump-flows br-tun:3 in_port="vxlan-0a780065" -> table 4; :10 table=4 priority=0 drop
    assert (verdict["bridge"], verdict["table"], verdict["priority"]) == ("br-tun", 4, 0)


def test_a_reply_to_vm1_follows_the_learned_flow(capsys: pytest.CaptureFixture[str]) -> None:
    packet = (
        "dl_vlan=1,udp,dl_src=fa:16:3e:65:83:63,dl_dst=fa:16:3e:3d:0f:f6,nw_src=10.0.0.2,"
        "nw_dst=10.0.0.57,udp_src=67,udp_dst=68"
    )
    doc = run_json(
        capsys,
        "openflow",
        str(NODE),
        "--bridge",
        "br-tun",
        "--in-port",
        "patch-int",
        "--packet",
        packet,
    )
    trace = doc["traces"][0]
    # dump-flows br-tun:2 (patch-int -> table 2), :6 (unicast -> table 20), :13 (learned:
    # dl_dst=fa:16:3e:3d:0f:f6 -> VLAN stripped, tun_id 0x6ab, output:"vxlan-0a780065")
    lines = [s["source"]["first_line"] for s in trace["steps"] if s["type"] == "openflow"]
    assert lines == [2, 6, 13]
    assert [e["port"] for e in trace["egress"]] == ["vxlan-0a780065"]
    assert trace["egress"][0]["packet"]["dl_vlan"] is None  # load:0->NXM_OF_VLAN_TCI[]
    assert "tun_id=0x6ab" in trace["egress"][0]["flow"]
