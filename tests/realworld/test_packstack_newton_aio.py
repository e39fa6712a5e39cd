"""A Packstack (RDO Newton) all-in-one node from a 2017 blog post (see
packstack-newton-aio/README.md): grep-filtered `ip` outputs, `brctl show` without tabs,
`ovs-vsctl show` with trailing blanks, namespaces, no flows and no iptables-save. Expected values
were read by hand from the files; the comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "packstack-newton-aio"
QROUTER = "qrouter-a8f68832-ba0f-4176-9536-86fa6fd6ef1e"
QDHCP = "qdhcp-1ced55ea-d30f-4c1d-ba97-6a7bbbd9ecca"


def _by_ovs_port(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return {p["ovs_port"]: p for p in run_json(capsys, "show", str(NODE))["ports"] if p["ovs_port"]}


def test_vm_ports(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _by_ovs_port(capsys)
    vm = ports["qvoaa048a76-f7"]
    assert vm["kind"] == "vm"
    assert vm["port_id"] == "aa048a76-f7"
    # brctl show lines 4-5 (spaces, not tabs); ovs-vsctl show lines 33-35
    assert sorted(vm["devices"]) == [
        "qbraa048a76-f7",
        "qvbaa048a76-f7",
        "qvoaa048a76-f7",
        "tapaa048a76-f7",
    ]
    assert (vm["tap"], vm["bridge"], vm["tag"]) == ("tapaa048a76-f7", "br-int", 1)
    assert vm["firewall"] == "iptables_hybrid"
    # nothing read from the node gives the VM's MAC, address or zone (no iptables-save, no flows)
    assert (vm["mac"], vm["ips"], vm["zone"]) == (None, [], None)
    assert ports["qvo55e885f5-93"]["kind"] == "vm"  # ovs-vsctl show lines 15-17


def test_dhcp_and_router_ports_in_their_namespaces(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _by_ovs_port(capsys)
    dhcp, qr, qg = ports["tapbe7511c5-68"], ports["qr-af6b8f51-46"], ports["qg-9395e4c9-54"]
    assert (dhcp["kind"], qr["kind"], qg["kind"]) == ("dhcp", "router_interface", "router_gateway")
    # ip netns exec qdhcp-... ip a lines 7-9
    assert (dhcp["namespace"], dhcp["mac"], dhcp["tag"]) == (QDHCP, "fa:16:3e:e3:eb:66", 1)
    assert "10.0.0.2" in dhcp["ips"]
    # ip netns exec qrouter-... ip a lines 7-9 and 13-15
    assert (qr["namespace"], qr["mac"]) == (QROUTER, "fa:16:3e:f7:d8:ef")
    assert "10.0.0.1" in qr["ips"] and "172.24.4.229" in qg["ips"]
    # ovs-vsctl show lines 5-7: qg- on br-ex without a tag (legacy external bridge)
    assert (qg["bridge"], qg["tag"]) == ("br-ex", None)


def test_bridges_namespaces_and_what_is_missing(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    linux = {b["name"]: sorted(b["ports"]) for b in doc["linux_bridges"]}
    # brctl show lines 2-5
    assert linux == {
        "qbr55e885f5-93": ["qvb55e885f5-93", "tap55e885f5-93"],
        "qbraa048a76-f7": ["qvbaa048a76-f7", "tapaa048a76-f7"],
    }
    spaces = {n["name"]: set(n["interfaces"]) for n in doc["namespaces"]}
    assert {"qr-af6b8f51-46", "qg-9395e4c9-54"} <= spaces[QROUTER]  # ip netns list line 1
    assert "tapbe7511c5-68" in spaces[QDHCP]  # ip netns list line 2
    tun = next(b for b in doc["ovs_bridges"] if b["name"] == "br-tun")
    assert {p["type"] for p in tun["ports"]} <= {"patch", "internal"}  # no tunnel port
    assert "iptables-save" in {m["what"] for m in doc["missing"]}


def test_a_vm_packet_rests_on_the_missing_iptables_save(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "icmp,nw_src=10.0.0.5,nw_dst=10.0.0.1,icmp_type=8,icmp_code=0"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", "aa048a76-f7", "--packet", packet)
    # tapaa048a76-f7 sits on qbraa048a76-f7: the filter table decides, and it is not published
    assert doc["outcome"] == "unknown"
    assert "iptables-save" in doc["reason"]


def test_the_router_namespace_rests_on_its_missing_iptables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "icmp,nw_src=10.0.0.5,nw_dst=8.8.8.8,icmp_type=8,icmp_code=0"
    doc = run_json(
        capsys,
        "trace",
        str(NODE),
        "--from",
        "qr-af6b8f51-46",
        "--netns",
        QROUTER,
        "--packet",
        packet,
    )
    # ip netns exec qrouter-... ip route line 1: default via 172.24.4.225 dev qg-9395e4c9-54;
    # the namespace's nat/filter rules (SNAT) are not published: unknown, never delivered
    assert doc["outcome"] == "unknown"
    assert "iptables" in doc["reason"]
