"""An Ubuntu 16.04 all-in-one node of December 2016 with the iptables hybrid firewall (see
xenial-2016-hybrid-aio/README.md): raw-table zones without comments, upper-case MACs in the
anti-spoofing chains, brctl show with tabs, no br-int flows. Expected values were read by hand
from the files; the comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "xenial-2016-hybrid-aio"
A, B = "0695f2ca-bf", "839737e6-15"


def _ports(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return {p["port_id"]: p for p in run_json(capsys, "show", str(NODE))["ports"]}


def _rules(doc: dict[str, Any]) -> list[tuple[str, int]]:
    return [(s["chain"], s["number"]) for s in doc["steps"] if s["type"] == "netfilter"]


def test_vm_ports_from_brctl_ovs_and_iptables(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _ports(capsys)
    a, b = ports[A], ports[B]
    assert (a["kind"], b["kind"]) == ("vm", "vm")
    # brctl show lines 2-3; ovs-vsctl show lines 45-47
    assert sorted(a["devices"]) == [
        "qbr0695f2ca-bf",
        "qvb0695f2ca-bf",
        "qvo0695f2ca-bf",
        "tap0695f2ca-bf",
    ]
    assert (a["tap"], a["ovs_port"], a["bridge"]) == ("tap0695f2ca-bf", "qvo0695f2ca-bf", "br-int")
    assert (a["firewall"], b["firewall"]) == ("iptables_hybrid", "iptables_hybrid")
    # iptables-save lines 9-12: -m physdev --physdev-in qvb0695f2ca-bf -j CT --zone 1 (no comment)
    assert (a["zone"], b["zone"]) == (1, 2)
    # lines 158 and 160: -s 172.24.220.12/32 -m mac --mac-source FA:16:3E:99:44:9E
    assert (a["mac"], b["mac"]) == ("fa:16:3e:99:44:9e", "fa:16:3e:80:e1:45")
    assert (a["ips"], b["ips"]) == (["172.24.220.12"], ["172.24.220.5"])
    assert set(a["chains"]) == {
        "neutron-openvswi-i0695f2ca-b",
        "neutron-openvswi-o0695f2ca-b",
        "neutron-openvswi-s0695f2ca-b",
    }
    # ovs-vsctl show lines 46 and 61: tag 3; dump-flows br-tun line 8: tun_id=0x1a -> VLAN 3
    assert (a["tag"], b["tag"]) == (3, 3)
    assert (a["network_type"], a["segmentation_id"]) == ("vxlan", 26)
    assert "CT --zone 1" in a["sources"]["zone"] or "PREROUTING" in a["sources"]["zone"]


def test_router_and_dhcp_ports_are_not_vms(capsys: pytest.CaptureFixture[str]) -> None:
    by_dev = {p["ovs_port"]: p for p in _ports(capsys).values()}
    kinds = {name: by_dev[name]["kind"] for name in by_dev if name}
    # ovs-vsctl show: qr-/qg- and tap "type: internal" ports on br-int
    assert kinds["qr-6a5ca1ea-74"] == kinds["qr-ce849b98-cb"] == "router_interface"
    assert kinds["qg-ea18c225-bd"] == kinds["qg-d4455c51-c5"] == "router_gateway"
    assert kinds["tap26593dc1-6e"] == kinds["tap175a3b0e-2f"] == "dhcp"
    # VLAN 1 <-> VXLAN 60: dump-flows br-tun line 7, tun_id=0x3c actions=mod_vlan_vid:1
    qr = by_dev["qr-ce849b98-cb"]
    assert (qr["tag"], qr["network_type"], qr["segmentation_id"]) == (1, "vxlan", 60)
    # VLAN 2 (qg ports): no br-int/br-ex flows published, its network is not known
    assert by_dev["qg-ea18c225-bd"]["network_type"] is None


def test_linux_bridges_from_brctl_show(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: sorted(b["ports"]) for b in doc["linux_bridges"]}
    # brctl show lines 2-5 (tab separated)
    assert bridges == {
        "qbr0695f2ca-bf": ["qvb0695f2ca-bf", "tap0695f2ca-bf"],
        "qbr839737e6-15": ["qvb839737e6-15", "tap839737e6-15"],
    }


def test_a_spoofed_source_is_dropped_by_the_s_chain(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "icmp,nw_src=10.0.0.99,nw_dst=172.24.220.5,icmp_type=8,icmp_code=0"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", A, "--packet", packet)
    assert doc["outcome"] == "dropped"
    step = doc["steps"][doc["verdict_step"]]
    # iptables-save line 159: -A neutron-openvswi-s0695f2ca-b ... -j DROP (rule 2 of the chain)
    assert (step["chain"], step["number"]) == ("neutron-openvswi-s0695f2ca-b", 2)
    # bridge-nf-call-iptables is not in the data: the verdict must say what it assumed
    assert any("bridge-nf-call" in a or "br_netfilter" in a for a in doc["assumptions"])


def test_ssh_from_br_int_to_b_is_accepted_by_its_i_chain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "tcp,nw_src=172.24.220.12,nw_dst=172.24.220.5,tp_src=40000,tp_dst=22,tcp_flags=+syn"
    doc = run_json(capsys, "trace", str(NODE), "--from", "qvb839737e6-15", "--packet", packet)
    assert doc["outcome"] == "delivered"
    rules = _rules(doc)
    # iptables-save line 138: -A neutron-openvswi-i839737e6-1 -p tcp -m tcp --dport 22 -j RETURN
    assert ("neutron-openvswi-i839737e6-1", 4) in rules
    # line 166: -A neutron-openvswi-sg-chain -j ACCEPT (rule 5 of sg-chain)
    assert ("neutron-openvswi-sg-chain", 5) in rules
    assert doc["steps"][doc["verdict_step"]]["device"] == "tap839737e6-15"


def test_dns_to_b_rests_on_the_ipset_nobody_listed(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "udp,nw_src=172.24.220.12,nw_dst=172.24.220.5,udp_src=40000,udp_dst=53"
    doc = run_json(capsys, "trace", str(NODE), "--from", "qvb839737e6-15", "--packet", packet)
    # line 139: -m set --match-set NIPv4e7b85005-a11b-405e-a60f- src -j RETURN; no ipset output
    assert doc["outcome"] == "unknown"
    assert "NIPv4e7b85005-a11b-405e-a60f-" in doc["reason"]


def test_vm_to_vm_needs_the_br_int_flows(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "tcp,tp_src=40000,tp_dst=22,tcp_flags=+syn"
    doc = run_json(capsys, "trace", str(NODE), "--from-port", A, "--to-port", B, "--packet", packet)
    # the egress chains pass it (o0695f2ca-b rule 6: -j RETURN, sg-chain rule 5: ACCEPT), then
    # br-int has no published flows: unknown, naming the command that would give them
    assert ("neutron-openvswi-o0695f2ca-b", 6) in _rules(doc)
    assert doc["outcome"] == "unknown"
    assert "dump-flows br-int" in doc["reason"]
