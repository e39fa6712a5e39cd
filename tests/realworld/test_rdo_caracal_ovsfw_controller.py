"""The CentOS Stream 9 / RDO 2024.1 controller (network) node of 9506hqwy/openstack_study_notes
with the native OVS firewall, a legacy router and three DHCP ports (see
rdo-caracal-ovsfw-controller/README.md). Expected values were read by hand from the files; the
comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "rdo-caracal-ovsfw-controller"
QROUTER = "qrouter-e6efd80e-9468-4787-a6f8-1648486cc1d6"


def _ports(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    doc = run_json(capsys, "show", str(NODE))
    return {p["ovs_port"] or p["port_id"]: p for p in doc["ports"]}


def _flows(doc: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [
        (s["bridge"], s["table"], s["priority"]) for s in doc["steps"] if s["type"] == "openflow"
    ]


def test_router_ports_live_in_the_qrouter_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _ports(capsys)
    qr, qg = ports["qr-13e6e8ff-d7"], ports["qg-ca92be94-79"]
    assert (qr["kind"], qg["kind"]) == ("router_interface", "router_gateway")
    # ip netns exec qrouter-... ip addr show lines 7-9 and 13-15
    assert (qr["namespace"], qg["namespace"]) == (QROUTER, QROUTER)
    assert (qr["mac"], qg["mac"]) == ("fa:16:3e:38:32:fe", "fa:16:3e:a6:11:48")
    assert "192.168.101.254" in qr["ips"] and "172.16.0.188" in qg["ips"]
    # ovs-vsctl show lines 56-57 (qr tag 2) and 80-81 (qg tag 3)
    assert (qr["tag"], qg["tag"]) == (2, 3)
    # dump-flows br-tun line 7: tun_id=0xef -> mod_vlan_vid:2; br-int line 3: untagged
    # provider traffic -> mod_vlan_vid:3 (flat)
    assert (qr["network_type"], qr["segmentation_id"]) == ("vxlan", 239)
    assert (qg["network_type"], qg["segmentation_id"]) == ("flat", None)
    # dump-flows br-int lines 15-16 and 25-26: the OVS firewall treats both as trusted ports
    # (table 60 -> 73 -> 94, no ct()); the test does not ask for a zone they never use
    assert (qr["firewall"], qg["firewall"]) == ("openvswitch", "openvswitch")


def test_dhcp_ports_are_not_vms(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _ports(capsys)
    assert not [p for p in ports.values() if p["kind"] == "vm"]
    # ovs-vsctl show lines 52-66: tap ports of "type: internal" on br-int (dhcp agent's ports)
    dhcp = {name: ports[name] for name in ("tap52b1b85b-8e", "tap2dac2cf0-61", "tap183c56bb-b2")}
    assert {p["kind"] for p in dhcp.values()} == {"dhcp"}
    assert [dhcp[n]["tag"] for n in sorted(dhcp)] == [3, 2, 1]  # sorted: tap18.., tap2d.., tap52..
    # br-int line 2: int-br-provider dl_vlan=100 -> mod_vlan_vid:1 (VLAN 100 is local VLAN 1)
    assert (dhcp["tap52b1b85b-8e"]["network_type"], dhcp["tap52b1b85b-8e"]["segmentation_id"]) == (
        "vlan",
        100,
    )


def test_the_router_namespace_and_its_interfaces(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    spaces = {n["name"]: n for n in doc["namespaces"]}
    assert QROUTER in spaces  # ip netns line 3
    assert {"qr-13e6e8ff-d7", "qg-ca92be94-79"} <= set(spaces[QROUTER]["interfaces"])
    assert "iptables-save" in {m["what"] for m in doc["missing"]}


def test_an_unknown_vni_is_dropped_in_br_tun_table_4(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "tun_id=0x64,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=192.168.101.254"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-ac10001f", "--packet", packet)
    assert doc["outcome"] == "dropped"
    verdict = doc["steps"][doc["verdict_step"]]
    # dump-flows br-tun line 8: table=4, priority=0 actions=drop (only tun_id=0xef is mapped)
    assert (verdict["bridge"], verdict["table"], verdict["priority"]) == ("br-tun", 4, 0)


def test_an_arp_request_from_the_tunnel_reaches_the_router(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = (
        "tun_id=0xef,arp,dl_src=fa:16:3e:61:21:c6,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,"
        "arp_spa=192.168.101.85,arp_tpa=192.168.101.254"
    )
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-ac10001f", "--packet", packet)
    assert doc["outcome"] == "delivered"
    flows = _flows(doc)
    # br-tun line 7: table=4 tun_id=0xef -> VLAN 2; br-int line 17: table=60 priority=3 NORMAL
    assert ("br-tun", 4, 1) in flows and ("br-int", 60, 3) in flows
    delivered = {s.get("device") for s in doc["steps"] if s.get("action") == "deliver"}
    assert any("qr-13e6e8ff-d7" in (d or "") for d in delivered)


def test_the_routers_own_packet_rests_on_its_missing_iptables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 192.168.101.85 is the VM of the compute node (rdo-caracal-ovsfw-compute). The route is
    # known (ip netns exec qrouter-... ip route show line 3: 192.168.101.0/24 dev
    # qr-13e6e8ff-d7), the namespace's iptables (neutron-l3-agent chains) are not published.
    packet = "icmp,dl_dst=fa:16:3e:61:21:c6,nw_dst=192.168.101.85,icmp_type=8,icmp_code=0"
    doc = run_json(
        capsys,
        "trace",
        str(NODE),
        "--from-host",
        "--netns",
        QROUTER,
        "--packet",
        packet,
    )
    assert doc["outcome"] == "unknown"
    assert f"ip netns exec {QROUTER} iptables-save" in doc["reason"]
