"""compute4: an Ubuntu 20.04 node deployed by Juju charms with OpenStack Ussuri (neutron 16.4.1),
ML2/OVS with the native OVS firewall, DVR in dvr_snat mode, kernel datapath. The sosreport is the
test data of canonical/hotsos (see SOURCES.md); it has no iptables-save of the host, only
``iptables -vnxL`` listings, and its namespace files sit flat in ``sos_commands/networking``.

Every expected value was read by hand from the dataset's files; the comment beside it names the
file (under ``sos_commands/``) and line. ``dump-flows br-int`` below is
``openvswitch/ovs-ofctl_dump-flows_br-int``, ``dump-flows br-tun`` is
``openvswitch/ovs-ofctl_dump-flows_br-tun``, ``list_interface`` is
``openvswitch/ovs-vsctl_-t_5_list_interface`` and ``vsctl show`` is
``openvswitch/ovs-vsctl_-t_5_show``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "hotsos-focal-ussuri-dvr-ovsfw"
VM = "0e778df8-ca29-490b-8d54-e238b1e0be1c"  # list_interface line 469: iface-id of tap0e778df8-ca
QROUTER = "qrouter-984c22fd-64b3-4fa1-8ddd-87090f401ce5"  # networking/ip_netns line 2
SNAT = "snat-984c22fd-64b3-4fa1-8ddd-87090f401ce5"  # networking/ip_netns line 3
FIP = "fip-32981f34-497a-4fae-914a-8576055c8d0d"  # networking/ip_netns line 1
# The -O OpenFlow13 dumps are read (actions spelled as ofproto/trace prints them); they list
# the same flows on the same lines as the plain dumps.
BR_INT_FLOWS = "ovs-ofctl_-O_OpenFlow13_dump-flows_br-int"
BR_TUN_FLOWS = "ovs-ofctl_-O_OpenFlow13_dump-flows_br-tun"


def _show(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return run_json(capsys, "show", str(NODE))


def _trace(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    return run_json(capsys, "trace", str(NODE), *argv)


def _port_with(doc: dict[str, Any], device: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in doc["ports"] if device in p["devices"]]
    assert len(found) == 1, [(p["port_id"], p["devices"]) for p in doc["ports"]]
    return found[0]


def _flow_steps(doc: dict[str, Any]) -> list[tuple[str, int, int, str, int]]:
    """(bridge, table, priority, file name, line) of every OpenFlow step of a trace."""
    return [
        (
            s["bridge"],
            s["table"],
            s["priority"],
            Path(s["source"]["file"]).name,
            s["source"]["first_line"],
        )
        for s in doc["steps"]
        if s["type"] == "openflow"
    ]


def test_node_identity(capsys: pytest.CaptureFixture[str]) -> None:
    node = _show(capsys)["node"]
    assert node["hostname"] == "compute4"  # host/hostname line 1
    assert node["kernel"] == "5.4.0-97-generic"  # kernel/uname_-a line 1
    assert node["source_kind"] == "sosreport"


def test_bridges_as_ovsdb_tells_them(capsys: pytest.CaptureFixture[str]) -> None:
    bridges = {b["name"]: b for b in _show(capsys)["ovs_bridges"]}
    assert set(bridges) == {"br-data", "br-tun", "br-ex", "br-int"}  # vsctl show lines 4-43
    # vsctl show lines 44-47: br-int has a controller, "fail_mode: secure", "datapath_type: system"
    assert (bridges["br-int"]["fail_mode"], bridges["br-int"]["datapath_type"]) == (
        "secure",
        "system",
    )
    # vsctl show lines 38-42 print no fail_mode for br-ex and ovs-vsctl_-t_5_list_bridge_br-ex
    # line 8 has "fail_mode : []": the column is empty, so no fail mode is a fact of this node.
    assert bridges["br-ex"]["fail_mode"] is None
    tun = {p["name"]: p for p in bridges["br-tun"]["ports"]}
    # vsctl show lines 23-26 and ovs-ofctl_show_br-tun line 13: "3(vxlan-0a000085)"
    assert (tun["vxlan-0a000085"]["type"], tun["vxlan-0a000085"]["ofport"]) == ("vxlan", 3)
    assert tun["vxlan-0a000085"]["remote_ip"] == "10.0.0.133"  # vsctl show line 26
    assert tun["vxlan-0a000072"]["remote_ip"] == "10.0.0.114"  # vsctl show line 34
    integ = {p["name"]: p for p in bridges["br-int"]["ports"]}
    assert integ["patch-tun"]["peer"] == "patch-int"  # vsctl show line 74
    assert integ["int-br-data"]["peer"] == "phy-br-data"  # vsctl show line 62
    # vsctl show tags (lines 49-80) and ovs-ofctl_show_br-int port numbers (lines 5-33)
    assert {n: (p["ofport"], p["tag"]) for n, p in integ.items() if n != "br-int"} == {
        "int-br-data": (1, None),
        "patch-tun": (2, None),
        "ha-550dc175-c0": (3, 1),
        "fg-c8dcce74-c4": (4, 2),
        "qg-14f81a43-69": (5, 2),
        "qr-3a70b31c-3f": (6, 3),
        "sg-189f4c40-9d": (7, 3),
        "tap0e778df8-ca": (9, 3),
    }


def test_the_vm_port_from_ovsdb_and_the_ovs_firewall_flows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = _show(capsys)
    assert [p["port_id"] for p in doc["ports"] if p["kind"] == "vm"] == [VM]
    port = _port_with(doc, "tap0e778df8-ca")
    assert port["port_id"] == VM  # list_interface line 469: iface-id
    assert port["devices"] == ["tap0e778df8-ca"]  # no qbr/qvb/qvo: networking/ip_-d_address 96
    assert (port["tap"], port["bridge"], port["ovs_port"], port["ofport"]) == (
        "tap0e778df8-ca",
        "br-int",
        "tap0e778df8-ca",
        9,  # ovs-ofctl_show_br-int line 33: "9(tap0e778df8-ca)"
    )
    assert port["namespace"] is None
    # dump-flows br-int lines 19-111: tables 60/71/72/73/81/82 of the native OVS firewall;
    # no neutron-openvswi chains in firewall_tables/iptables_-vnxL
    assert port["firewall"] == "openvswitch"
    assert port["chains"] == []
    assert port["tag"] == 3  # vsctl show line 53
    # dump-flows br-int line 24: table 60 in_port=9 load:0x3->NXM_NX_REG6[] (the ct zone)
    assert port["zone"] == 3
    assert port["sources"]["zone"]
    # list_interface line 469 attached-mac; dump-flows br-int line 32 dl_src=fa:16:3e:a7:45:cb
    assert port["mac"] == "fa:16:3e:a7:45:cb"
    # dump-flows br-int line 32: table 71 priority 65 ip,...,nw_src=192.168.21.18; line 43 the
    # link-local ipv6_src=fe80::f816:3eff:fea7:45cb
    assert "192.168.21.18" in port["ips"]
    assert set(port["ips"]) <= {"192.168.21.18", "fe80::f816:3eff:fea7:45cb"}
    # dump-flows br-tun line 14: table 4 tun_id=0x4d1 actions=mod_vlan_vid:3 (VNI 1233 <-> VLAN 3)
    assert (port["network_type"], port["segmentation_id"]) == ("vxlan", 1233)
    assert port["flows"] > 0


def test_router_and_dvr_ports_are_not_vms(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _show(capsys)
    qr = _port_with(doc, "qr-3a70b31c-3f")
    assert qr["kind"] == "router_interface"
    assert qr["port_id"] == "3a70b31c-3f61-492f-bf2f-aee9f64d5eff"  # list_interface line 539
    # networking/ip_netns_exec_qrouter-..._ip_address_show lines 13-15
    assert qr["namespace"] == QROUTER
    assert (qr["mac"], qr["tag"]) == ("fa:16:3e:76:19:dd", 3)
    assert set(qr["ips"]) == {"192.168.21.1", "fe80::f816:3eff:fe76:19dd"}  # lines 15 and 17
    assert (qr["network_type"], qr["segmentation_id"]) == ("vxlan", 1233)  # br-tun line 14

    sg = _port_with(doc, "sg-189f4c40-9d")
    assert sg["kind"] == "dvr_snat"
    assert sg["namespace"] == SNAT  # ip_netns_exec_snat-..._ip_address_show line 15
    assert sg["mac"] == "fa:16:3e:87:45:fc"  # list_interface line 14
    # The snat namespace shows no inet line for sg-189f4c40-9d; only the qrouter's neighbour
    # table (ip_netns_exec_qrouter-..._ip_-s_-s_neigh_show line 3) ties 192.168.21.109 to its MAC.
    assert set(sg["ips"]) <= {"192.168.21.109"}
    assert sg["tag"] == 3  # vsctl show line 49

    ha = _port_with(doc, "ha-550dc175-c0")
    assert ha["kind"] == "ha"
    assert ha["namespace"] == SNAT  # ip_netns_exec_snat-..._ip_address_show lines 7-9
    assert ha["tag"] == 1  # vsctl show line 64
    assert set(ha["ips"]) == {"169.254.194.79", "fe80::f816:3eff:fead:2590"}  # lines 9 and 11
    # dump-flows br-tun line 13: table 4 tun_id=0x3e9 actions=mod_vlan_vid:1
    assert (ha["network_type"], ha["segmentation_id"]) == ("vxlan", 1001)

    qg = _port_with(doc, "qg-14f81a43-69")
    assert qg["kind"] == "router_gateway"
    assert qg["namespace"] == SNAT  # ip_netns_exec_snat-..._ip_address_show line 13 (DOWN)
    assert (qg["ips"], qg["tag"]) == ([], 2)  # no inet/inet6 line; vsctl show line 68

    fg = _port_with(doc, "fg-c8dcce74-c4")
    assert fg["kind"] == "fip_gateway"
    assert fg["namespace"] == FIP  # ip_netns_exec_fip-..._ip_address_show lines 13-15
    assert fg["tag"] == 2  # vsctl show line 79
    assert set(fg["ips"]) == {"10.100.0.206", "fe80::f816:3eff:fe89:399e"}  # lines 15 and 17
    # dump-flows br-int line 9: in_port=1 (int-br-data),vlan_tci=0x0000 -> mod_vlan_vid:2, and
    # ovs-ofctl_dump-flows_br-data line 6: dl_vlan=2 -> strip_vlan: VLAN 2 is the flat physnet1.
    assert (fg["network_type"], fg["segmentation_id"]) == ("flat", None)

    # rfp-/fpr- veth pair: ip_netns_exec_qrouter-... line 7 and ip_netns_exec_fip-... line 7
    rfp = _port_with(doc, "rfp-984c22fd-6")
    fpr = _port_with(doc, "fpr-984c22fd-6")
    assert rfp["kind"] == fpr["kind"] == "router_link"
    assert rfp["bridge"] is None and fpr["bridge"] is None


def test_namespaces_and_their_interfaces(capsys: pytest.CaptureFixture[str]) -> None:
    spaces = {n["name"]: set(n["interfaces"]) - {"lo"} for n in _show(capsys)["namespaces"]}
    assert spaces == {
        QROUTER: {"rfp-984c22fd-6", "qr-3a70b31c-3f"},
        SNAT: {"ha-550dc175-c0", "qg-14f81a43-69", "sg-189f4c40-9d"},
        FIP: {"fpr-984c22fd-6", "fg-c8dcce74-c4"},
    }


def test_linux_bridges_from_bridge_link_show(capsys: pytest.CaptureFixture[str]) -> None:
    bridges = {b["name"]: set(b["ports"]) for b in _show(capsys)["linux_bridges"]}
    # networking/bridge_-s_-s_-d_link_show lines 1-17: ens3 and seven LXD veths in br-ens3
    assert bridges["br-ens3"] == {
        "ens3",
        "veth1883dceb",
        "veth5cc250bc",
        "veth396824c3",
        "vethe7aaf6c3",
        "veth59e22e6f",
        "veth8aa19e05",
        "veth0d284c32",
    }
    assert bridges["lxdbr0"] == set()  # line 4: the bridge itself, no port


def test_vm_ssh_to_a_vm_on_another_node_leaves_over_vxlan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the destination address is given: the VM's own MAC/IP come from its anti-spoofing
    flow, the destination MAC from br-tun's ARP responder (dump-flows br-tun line 35:
    arp_tpa=192.168.21.4 -> fa:16:3e:06:b5:50) or the qrouter's neighbour table."""
    doc = _trace(
        capsys,
        "--from-port",
        VM[:8],
        "--packet",
        "tcp,nw_dst=192.168.21.4,tp_dst=22,tcp_flags=+syn",
    )
    assert doc["outcome"] == "delivered"
    flows = _flow_steps(doc)
    # table 71 priority 65 ip,reg5=0x9,in_port=9,dl_src=fa:16:3e:a7:45:cb,nw_src=192.168.21.18
    assert ("br-int", 71, 65, BR_INT_FLOWS, 32) in flows
    # table 73 priority 90 ct_state=+new-est,ip,reg5=0x9 actions=ct(commit,...),resubmit(,91)
    assert ("br-int", 73, 90, BR_INT_FLOWS, 59) in flows
    # br-tun table 20 priority 2 dl_vlan=3,dl_dst=fa:16:3e:06:b5:50 -> tun_id 0x4d1, output:3
    assert ("br-tun", 20, 2, BR_TUN_FLOWS, 24) in flows
    encap = [s for s in doc["steps"] if s["type"] == "device" and s["action"] == "encap"]
    assert encap and encap[0]["device"] == "vxlan-0a000085"  # ofport 3 of br-tun
    # The underlay: networking/ip_route_show_table_all "10.0.0.0/24 dev br-ens3"; 10.0.0.133 is
    # at 1a:22:68:c4:5b:3b (ip_-s_-s_neigh_show line 10), which br-ens3 learned on ens3
    # (bridge_-s_-s_-d_-t_fdb_show line 11).
    verdict = doc["steps"][doc["verdict_step"]]
    assert (verdict["type"], verdict["device"]) == ("device", "ens3")


def test_udp_from_outside_the_security_group_is_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """192.168.21.2 (fa:16:3e:50:61:70 behind vxlan-0a000072: dump-flows br-tun lines 34 and 23)
    is not a member of the port's remote group (table 82 lines 96-99 list only .4 and .18) and no
    rule opens UDP 5000."""
    doc = _trace(
        capsys,
        "--to-port",
        VM,
        "--packet",
        "udp,nw_src=192.168.21.2,udp_src=40000,udp_dst=5000",
    )
    assert doc["outcome"] == "dropped"
    flows = _flow_steps(doc)
    # table 60 priority 90 dl_vlan=3,dl_dst=fa:16:3e:a7:45:cb -> reg5=9, reg6=3, resubmit(,81)
    assert ("br-int", 60, 90, BR_INT_FLOWS, 27) in flows
    # table 82 priority 40 ct_state=-est,reg5=0x9 actions=resubmit(,93): nothing allowed it
    assert ("br-int", 82, 40, BR_INT_FLOWS, 104) in flows
    verdict = doc["steps"][doc["verdict_step"]]
    # table 93 priority 0 actions=drop
    assert (verdict["bridge"], verdict["table"], verdict["source"]["first_line"]) == (
        "br-int",
        93,
        110,
    )


def test_ssh_to_the_vm_is_allowed_by_its_security_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = _trace(
        capsys,
        "--to-port",
        VM,
        "--packet",
        "tcp,nw_src=192.168.21.2,tp_src=40000,tp_dst=22,tcp_flags=+syn",
    )
    assert doc["outcome"] == "delivered"
    # table 82 priority 77 ct_state=+new-est,tcp,reg5=0x9,tp_dst=22 -> ct(commit),output:9
    assert ("br-int", 82, 77, BR_INT_FLOWS, 82) in _flow_steps(doc)
    verdict = doc["steps"][doc["verdict_step"]]
    assert (verdict["type"], verdict["device"]) == ("device", "tap0e778df8-ca")


def test_floating_ip_ssh_is_dnatted_in_the_qrouter_and_reaches_the_vm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """DVR north-south: fip namespace route "10.100.0.203 via 169.254.88.134 dev fpr-984c22fd-6"
    (ip_netns_exec_fip-..._ip_route_show_table_all line 3), the veth to rfp-984c22fd-6 in the
    qrouter, its DNAT rule to 192.168.21.18 (ip_netns_exec_qrouter-..._iptables-save line 29),
    out of qr-3a70b31c-3f (neighbour 192.168.21.18 at fa:16:3e:a7:45:cb, ..._neigh_show line 5)
    into br-int, where the security group allows SSH."""
    doc = _trace(
        capsys,
        "--from",
        "fg-c8dcce74-c4",
        "--netns",
        FIP,
        "--packet",
        "tcp,nw_src=10.100.0.2,dl_src=52:54:00:bf:b2:60,dl_dst=fa:16:3e:89:39:9e,"
        "nw_dst=10.100.0.203,tp_src=40000,tp_dst=22,tcp_flags=+syn",
    )
    assert doc["outcome"] == "delivered"
    dnat = [
        s
        for s in doc["steps"]
        if s["type"] == "netfilter"
        and s["kind"] == "rule"
        and (s["table"], s["chain"]) == ("nat", "neutron-l3-agent-PREROUTING")
        and s["number"] == 2  # the second rule of that chain in the nat table (line 29)
    ]
    assert dnat
    # in_port=6 (qr-) reaches table 73 priority 100 reg6=0x3,dl_dst=fa:16:3e:a7:45:cb (line 58)
    assert ("br-int", 73, 100, BR_INT_FLOWS, 58) in _flow_steps(doc)
    verdict = doc["steps"][doc["verdict_step"]]
    assert (verdict["type"], verdict["device"]) == ("device", "tap0e778df8-ca")


def test_a_spoofed_source_address_is_dropped_by_the_anti_spoofing_flows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The VM's MAC with another address: table 71 allows IPv4 only from 192.168.21.18 (line
    32), so the packet falls to "priority=10,reg5=0x9,in_port=9 actions=ct_clear,resubmit(,93)"
    (line 44) and table 93's drop (line 110)."""
    doc = _trace(
        capsys,
        "--from",
        "tap0e778df8-ca",
        "--packet",
        "tcp,dl_src=fa:16:3e:a7:45:cb,dl_dst=fa:16:3e:06:b5:50,nw_src=192.168.21.99,"
        "nw_dst=192.168.21.4,tp_src=40000,tp_dst=22,tcp_flags=+syn",
    )
    assert doc["outcome"] == "dropped"
    assert ("br-int", 71, 10, BR_INT_FLOWS, 44) in _flow_steps(doc)
    verdict = doc["steps"][doc["verdict_step"]]
    assert (verdict["bridge"], verdict["table"], verdict["source"]["first_line"]) == (
        "br-int",
        93,
        110,
    )
