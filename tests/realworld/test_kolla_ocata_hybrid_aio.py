"""A kolla-ansible (Ocata) all-in-one node from a 2018 blog post (see
kolla-ocata-hybrid-aio/README.md): container prompts inside the outputs, grep-filtered listings,
a one-table flow dump, an `ovs-vsctl show` cut after br-int. Expected values were read by hand
from the files; the comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "kolla-ocata-hybrid-aio"
QROUTER = "qrouter-ec37ce79-b992-4e37-b53d-7cb8889179ca"
QDHCP = "qdhcp-4a71fbfd-f1d7-44ba-9c9b-9815316243bd"


def _by_ovs_port(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return {p["ovs_port"]: p for p in run_json(capsys, "show", str(NODE))["ports"] if p["ovs_port"]}


def test_a_one_table_dump_is_not_a_bridge(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    # ovs-vsctl show line 3 (br-int); dump-flows br-ex and br-tun files; "br-tun table=4" is the
    # `table=4` filter of br-tun, never a bridge of its own
    assert {b["name"] for b in doc["ovs_bridges"]} == {"br-int", "br-ex", "br-tun"}


def test_the_vm_and_the_router(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _by_ovs_port(capsys)
    vm = ports["qvo7060060e-21"]
    assert (vm["kind"], vm["port_id"], vm["tag"]) == ("vm", "7060060e-21", 1)
    # brctl show lines 4-5 (spaces); ovs-vsctl show lines 22-24
    assert sorted(vm["devices"]) == [
        "qbr7060060e-21",
        "qvb7060060e-21",
        "qvo7060060e-21",
        "tap7060060e-21",
    ]
    # dump-flows br-tun line 9: table=4 priority=1,tun_id=0xf actions=mod_vlan_vid:1
    assert (vm["network_type"], vm["segmentation_id"]) == ("vxlan", 15)
    assert vm["mac"] is None  # only tcpdump (not copied) shows fa:16:3e:b6:be:42
    qr, qg = ports["qr-5bab859c-e3"], ports["qg-ed634bc6-87"]
    assert (qr["kind"], qg["kind"]) == ("router_interface", "router_gateway")
    # ip netns exec qrouter-... ip a lines 8-10 and 14-16
    assert (qr["namespace"], qr["mac"], qr["tag"]) == (QROUTER, "fa:16:3e:43:5c:90", 1)
    assert (qg["namespace"], qg["mac"], qg["tag"]) == (QROUTER, "fa:16:3e:15:99:dc", 2)
    assert "172.24.0.1" in qr["ips"] and "10.0.0.152" in qg["ips"]
    # ovs-vsctl show lines 25-28: internal tap on br-int, tag 1: the DHCP port
    assert ports["tapb9135624-f6"]["kind"] == "dhcp"


def test_namespaces_and_linux_bridges(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    # ip netns lines 2-3: both namespaces exist, even the one nobody listed the interfaces of
    assert {QROUTER, QDHCP} <= {n["name"] for n in doc["namespaces"]}
    bridges = {b["name"]: sorted(b["ports"]) for b in doc["linux_bridges"]}
    # brctl show lines 3-5
    assert bridges == {"docker0": [], "qbr7060060e-21": ["qvb7060060e-21", "tap7060060e-21"]}


def test_the_vm_packet_rests_on_the_missing_iptables_save(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "icmp,nw_src=172.24.0.10,nw_dst=8.8.8.8,icmp_type=8,icmp_code=0"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", "7060060e-21", "--packet", packet)
    # `iptables -S | grep tap7060060e-21` holds 5 of the rules: not a ruleset to decide with
    assert doc["outcome"] == "unknown"
    assert "iptables-save" in doc["reason"]


def test_the_routers_packet_rests_on_its_missing_route_and_rules(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "icmp,nw_dst=8.8.8.8,icmp_type=8,icmp_code=0"
    doc = run_json(
        capsys, "trace", str(NODE), "--from-host", "--netns", QROUTER, "--packet", packet
    )
    # no `ip route` of the namespace and only an `iptables -S -t nat` listing: unknown
    assert doc["outcome"] == "unknown"
    assert "ip route" in doc["reason"] or "iptables-save" in doc["reason"]
