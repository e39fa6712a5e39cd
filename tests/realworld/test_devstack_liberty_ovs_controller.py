"""The control/network node of DevStack's own two-node networking example (October 2015, OVS
2.0.2): `ovs-vsctl show` alone, with a DHCP tap, two router interfaces and a gateway port on
br-int and a tunnel port whose name does not encode its remote (see
devstack-liberty-ovs-controller/README.md). Expected values were read by hand from the file;
the comment beside each names the line of `ovs-vsctl show`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "devstack-liberty-ovs-controller"


def test_the_neutron_ports_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    kinds = {p["port_id"]: (p["kind"], p["ovs_port"], p["tag"]) for p in doc["ports"]}
    assert kinds == {
        "ce66332d-ea": ("dhcp", "tapce66332d-ea", 1),  # lines 28-31: internal tap, tag 1
        "65e5a4b9-15": ("router_gateway", "qg-65e5a4b9-15", 2),  # lines 32-35
        "33e5e471-88": ("router_interface", "qr-33e5e471-88", 1),  # lines 36-39
        "acbe9951-70": ("router_interface", "qr-acbe9951-70", 1),  # lines 40-43
    }
    assert {p["bridge"] for p in doc["ports"]} == {"br-int"}  # Bridge br-int, line 26


def test_bridges_and_the_tunnel_remote_from_its_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: {p["name"]: p for p in b["ports"]} for b in doc["ovs_bridges"]}
    assert set(bridges) == {"br-tun", "br-ex", "br-int"}  # lines 3, 16, 26
    vxlan = bridges["br-tun"]["vxlan-c0a801d8"]
    # line 15: remote_ip="172.18.161.7" (the name's c0a801d8 would be 192.168.1.216)
    assert (vxlan["remote_ip"], vxlan["local_ip"]) == ("172.18.161.7", "172.18.161.6")
    assert "eth0" in bridges["br-ex"]  # lines 21-22
    assert bridges["br-ex"]["phy-br-ex"]["peer"] == "int-br-ex"  # line 20
    assert bridges["br-int"]["int-br-ex"]["peer"] == "phy-br-ex"  # line 54


def test_a_frame_from_eth0_needs_br_ex_flows(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=172.18.161.250"
    doc = run_json(capsys, "trace", str(NODE), "--from", "eth0", "--packet", packet)
    assert doc["outcome"] == "unknown"  # no flow dump published
    assert "dump-flows br-ex" in doc["reason"]


def test_what_the_dhcp_port_sends_enters_br_int_whose_flows_are_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """dnsmasq's ARP leaves its namespace through tapce66332d-ea into br-int (tag 1); with no
    br-int flows and no address of the namespace published, nothing can be decided."""
    packet = "arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.0.1"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", "ce66332d-ea", "--packet", packet)
    assert doc["outcome"] == "unknown"
    assert "dump-flows br-int" in doc["reason"]
