"""A TripleO (Newton) compute node just after deployment, no instance yet, as a terminal
transcript shows it (see tripleo-newton-compute/README.md). Expected values were read by hand
from the files; the comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "tripleo-newton-compute"


def test_bridges_tunnel_and_no_ports(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: b for b in doc["ovs_bridges"]}
    assert set(bridges) == {"br-ex", "br-int", "br-tun"}  # ovs-vsctl show lines 5, 16, 31
    assert {b["fail_mode"] for b in bridges.values()} == {"secure"}
    # ovs-vsctl show prints no datapath_type line here: unknown, not "system"
    assert {b["datapath_type"] for b in bridges.values()} == {None}
    tun = {p["name"]: p for p in bridges["br-tun"]["ports"]}
    # ovs-vsctl show lines 39-42
    assert (tun["vxlan-c0a86a0b"]["type"], tun["vxlan-c0a86a0b"]["remote_ip"]) == (
        "vxlan",
        "192.168.106.11",
    )
    integ = {p["name"]: p for p in bridges["br-int"]["ports"]}
    assert integ["int-br-ex"]["peer"] == "phy-br-ex"  # line 30
    assert doc["ports"] == []
    # no brctl show / bridge link / ip link was published: Linux bridges are unknown, and said
    assert doc["linux_bridges"] == []
    missing = {m["what"] for m in doc["missing"]}
    assert missing & {"brctl-show", "bridge-link", "ip-link"}, missing


def test_a_tunnel_packet_needs_the_missing_flows(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "tun_id=0x1,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.0.1"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-c0a86a0b", "--packet", packet)
    assert doc["outcome"] == "unknown"
    assert "dump-flows br-tun" in doc["reason"]


def test_a_host_packet_needs_what_the_transcript_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    # ip r line 7: 192.168.106.0/24 dev eth2 ... src 192.168.106.15; no iptables-save, no ip addr
    packet = "icmp,nw_dst=192.168.106.11,icmp_type=8,icmp_code=0"
    doc = run_json(capsys, "trace", str(NODE), "--from-host", "--packet", packet)
    assert doc["outcome"] == "unknown"
    assert "iptables-save" in doc["reason"] or "ip route" in doc["reason"]
