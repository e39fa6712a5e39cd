"""The empty compute node of DevStack's own two-node networking example (October 2015, OVS
2.0.2): `ovs-vsctl show` alone (see devstack-liberty-ovs-compute/README.md). Expected values
were read by hand from the file; the comment beside each names the line of `ovs-vsctl show`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "devstack-liberty-ovs-compute"


def test_bridges_and_tunnel(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: {p["name"]: p for p in b["ports"]} for b in doc["ovs_bridges"]}
    assert set(bridges) == {"br-int", "br-tun"}  # lines 3 and 12
    assert bridges["br-int"]["patch-tun"]["peer"] == "patch-int"  # line 11
    vxlan = bridges["br-tun"]["vxlan-c0a801f6"]
    # line 17: remote_ip="172.18.161.6" (the name's c0a801f6 would be 192.168.1.246)
    assert (vxlan["remote_ip"], vxlan["local_ip"]) == ("172.18.161.6", "172.18.161.7")
    assert doc["ports"] == []  # no instance, no Neutron port


def test_a_tunnelled_frame_needs_br_tun_flows(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "tun_id=0x3e9,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.0.3"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-c0a801f6", "--packet", packet)
    assert doc["outcome"] == "unknown"  # br-tun is fail_mode secure (line 13), no dump
    assert "dump-flows br-tun" in doc["reason"]


def test_the_host_cannot_send_without_its_routes(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "icmp,nw_src=172.18.161.7,nw_dst=172.18.161.6,icmp_type=8,icmp_code=0"
    doc = run_json(capsys, "trace", str(NODE), "--from-host", "--packet", packet)
    assert doc["outcome"] == "unknown"
    assert "ip route" in doc["reason"]
