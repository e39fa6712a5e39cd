"""A TripleO (Newton) controller just after deployment, no router or network yet: only its
`ovs-vsctl show` with the prompt lines (see tripleo-newton-controller/README.md). Expected values
were read by hand from the file; the comment beside each names the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "tripleo-newton-controller"


def test_bridges_uplink_and_tunnel(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: {p["name"]: p for p in b["ports"]} for b in doc["ovs_bridges"]}
    assert set(bridges) == {"br-ex", "br-int", "br-tun"}  # ovs-vsctl show lines 5, 18, 33
    assert "eth1" in bridges["br-ex"]  # lines 16-17: Port "eth1"
    assert bridges["br-ex"]["phy-br-ex"]["peer"] == "int-br-ex"  # line 12
    # lines 44-47: vxlan-c0a86a0f, remote_ip="192.168.106.15"
    assert bridges["br-tun"]["vxlan-c0a86a0f"]["remote_ip"] == "192.168.106.15"
    assert doc["ports"] == []
    assert doc["node"]["hostname"] is None  # only the prompt names the host


def test_a_frame_from_eth1_needs_the_missing_flows(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=192.168.101.13"
    doc = run_json(capsys, "trace", str(NODE), "--from", "eth1", "--packet", packet)
    # br-ex is fail_mode secure (line 8) and its flows are not published: unknown
    assert doc["outcome"] == "unknown"
    assert "dump-flows br-ex" in doc["reason"]
