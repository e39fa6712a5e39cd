"""An OpenStack-Ansible infrastructure host (Rocky/Stein, OVS 2.10.0) running the Open vSwitch
agent and two DHCP ports, as the os_neutron role's documentation shows it: `ovs-vsctl show`
alone, with a patch pair whose peers do not name each other (see
osa-stein-ovs-infra01/README.md). Expected values were read by hand from the file; the comment
beside each names the line of `ovs-vsctl show`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "osa-stein-ovs-infra01"


def _bridges(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    return {b["name"]: {p["name"]: p for p in b["ports"]} for b in doc["ovs_bridges"]}


def test_the_two_dhcp_ports(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    ports = {p["port_id"]: p for p in doc["ports"]}
    assert set(ports) == {"2e7e0507-e4", "7796ab3d-e9"}  # lines 9 and 20
    # OVS internal taps (lines 12, 23) on br-int: DHCP ports, not VMs
    assert {p["kind"] for p in ports.values()} == {"dhcp"}
    assert ports["2e7e0507-e4"]["tag"] == 2  # line 10
    assert ports["7796ab3d-e9"]["tag"] == 5  # line 21
    assert {p["bridge"] for p in ports.values()} == {"br-int"}
    # nothing published tells their MAC or addresses
    assert all(p["mac"] is None and p["ips"] == [] for p in ports.values())


def test_bridges_tunnels_and_uplink(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = _bridges(doc)
    assert set(bridges) == {"br-int", "br-tun", "br-provider"}  # lines 5, 28, 47
    tun = bridges["br-tun"]
    assert tun["vxlan-ac1df015"]["remote_ip"] == "172.29.240.21"  # line 35
    assert tun["vxlan-ac1df017"]["remote_ip"] == "172.29.240.23"  # line 43
    assert tun["vxlan-ac1df015"]["local_ip"] == "172.29.240.20"  # line 35
    assert "ens192" in bridges["br-provider"]  # lines 51-52
    fail_modes = {b["name"]: b["fail_mode"] for b in doc["ovs_bridges"]}
    assert fail_modes == {"br-int": "secure", "br-tun": "secure", "br-provider": "secure"}


def test_the_patch_peers_as_published(capsys: pytest.CaptureFixture[str]) -> None:
    bridges = _bridges(run_json(capsys, "show", str(NODE)))
    assert bridges["br-int"]["int-br-vlan"]["peer"] == "phy-br-provider"  # line 16
    # line 59: phy-br-provider names int-br-provider, which no bridge has
    assert bridges["br-provider"]["phy-br-provider"]["peer"] == "int-br-provider"
    assert all("int-br-provider" not in ports for ports in bridges.values())


def test_the_prompt_line_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    assert any("ovs-vsctl show:1" in d for d in doc["diagnostics"])  # "root@infra01:~# ..."


def test_a_frame_from_the_uplink_needs_br_provider_flows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=172.29.248.10"
    doc = run_json(capsys, "trace", str(NODE), "--from", "ens192", "--packet", packet)
    # br-provider is fail_mode secure (line 50) and no flow dump is published
    assert doc["outcome"] == "unknown"
    assert "dump-flows br-provider" in doc["reason"]


def test_what_a_dhcp_port_sends_enters_br_int_whose_flows_are_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """dnsmasq's frames leave its namespace through the internal port into br-int: the
    verdict needs br-int's flows, which are not published; nothing is known about the
    namespace's addresses either, so no drop may be claimed."""
    packet = "arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.0.1"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", "2e7e0507-e4", "--packet", packet)
    assert doc["outcome"] == "unknown"
    assert "dump-flows br-int" in doc["reason"]
