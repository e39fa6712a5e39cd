"""The node inventory: Neutron ports read back from devices, OVSDB, iptables and flows.

Three node shapes: a charm-deployed Focal node with the native OVS firewall and DVR (real
sosreport files of canonical/hotsos, tests/data/snapshot/hotsos-ovsfw), our lab's hybrid-firewall
node (golden-cmp1), and small folders written here in the shapes older releases print (Newton's
uncommented zone rules, DHCP ports as OVS internal taps, flows-only firewalls, provider VLANs).
Every expected value below was read by hand from the named files.
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron.inventory import Inventory, PortInfo, PortKind, inventory
from nodetrace.snapshot.load import load
from tests.conftest import DATA

HOTSOS = DATA / "snapshot" / "hotsos-ovsfw"
GOLDEN = DATA / "snapshot" / "golden-cmp1"
VM_PORT = "0e778df8-ca29-490b-8d54-e238b1e0be1c"


@pytest.fixture(scope="module")
def hotsos() -> Inventory:
    return inventory(load(HOTSOS))


def _port(inv: Inventory, prefix: str) -> PortInfo:
    found = [p for p in inv.ports if p.port_id.startswith(prefix)]
    assert len(found) == 1, [p.port_id for p in inv.ports]
    return found[0]


# --- native OVS firewall, DVR (hotsos) -------------------------------------------------------


def test_ovsfw_vm_port_has_its_uuid_mac_addresses_zone_and_network(hotsos: Inventory) -> None:
    vm = _port(hotsos, "0e778df8")
    assert vm.port_id == VM_PORT  # only `ovs-vsctl list interface` (text form) names it
    assert (vm.kind, vm.tap, vm.bridge, vm.ofport) == (PortKind.VM, "tap0e778df8-ca", "br-int", 9)
    assert vm.firewall == "openvswitch"
    assert vm.mac is not None and vm.mac.value == "fa:16:3e:a7:45:cb"
    assert "attached-mac" in vm.mac.source
    assert [str(i.value) for i in vm.ips] == ["192.168.21.18", "fe80::f816:3eff:fea7:45cb"]
    assert all("br-int table 71 flow" in i.source for i in vm.ips)
    assert vm.zone is not None and vm.zone.value == 3
    assert "table 60 flow in_port=9" in vm.zone.source
    assert vm.local_vlan is not None and vm.local_vlan.value == 3
    assert vm.local_vlan.source.startswith("OVSDB Port tap0e778df8-ca tag")
    assert vm.network_type is not None and vm.network_type.value == "vxlan"
    assert vm.segmentation_id is not None and vm.segmentation_id.value == 0x4D1
    assert "br-tun table 4 flow tun_id=0x4d1" in vm.segmentation_id.source


def test_router_and_dvr_ports_are_not_vms(hotsos: Inventory) -> None:
    kinds = {p.tap: (p.kind, p.namespace) for p in hotsos.ports}
    snat = "snat-984c22fd-64b3-4fa1-8ddd-87090f401ce5"
    fip = "fip-32981f34-497a-4fae-914a-8576055c8d0d"
    qrouter = "qrouter-984c22fd-64b3-4fa1-8ddd-87090f401ce5"
    assert kinds == {
        "tap0e778df8-ca": (PortKind.VM, None),
        "qr-3a70b31c-3f": (PortKind.ROUTER_INTERFACE, qrouter),
        "qg-14f81a43-69": (PortKind.ROUTER_GATEWAY, snat),
        "ha-550dc175-c0": (PortKind.HA, snat),
        "fg-c8dcce74-c4": (PortKind.FIP_GATEWAY, fip),
        "sg-189f4c40-9d": (PortKind.DVR_SNAT, snat),
        "rfp-984c22fd-6": (PortKind.ROUTER_LINK, qrouter),
    }
    # The DVR link is one entry with both ends (rfp- in the qrouter, fpr- in the fip
    # namespace); each end keeps its own address (ip address show of its namespace).
    (link,) = [p for p in hotsos.ports if p.kind is PortKind.ROUTER_LINK]
    assert (link.port_id, sorted(link.devices)) == (
        "984c22fd-6",
        ["fpr-984c22fd-6", "rfp-984c22fd-6"],
    )
    ips = {str(i.value): i.source for i in link.ips}
    assert "rfp-984c22fd-6 in namespace " + qrouter in ips["169.254.88.134"]
    assert "fpr-984c22fd-6 in namespace " + fip in ips["169.254.88.135"]
    qr = _port(hotsos, "3a70b31c")
    assert qr.mac is not None and qr.mac.value == "fa:16:3e:76:19:dd"
    assert "192.168.21.1" in [str(i.value) for i in qr.ips]
    # A trusted port: no firewall flows of its own, but table 60 loads its network's zone.
    assert qr.firewall == "openvswitch"
    assert qr.zone is not None and qr.zone.value == 3
    assert "table 60 flow in_port=6" in qr.zone.source and "trusted" in qr.zone.source


def test_networks_by_local_vlan_come_from_br_tun_and_the_provider_bridge(
    hotsos: Inventory,
) -> None:
    by_vlan = {
        s.local_vlan: (s.network_type.value, s.segmentation_id.value if s.segmentation_id else None)
        for s in hotsos.segments
    }
    assert by_vlan == {1: ("vxlan", 1001), 2: ("flat", None), 3: ("vxlan", 1233)}
    fg = _port(hotsos, "c8dcce74")
    assert fg.network_type is not None and fg.network_type.value == "flat"


def test_bridge_settings_the_snapshot_does_not_give_stay_unknown(hotsos: Inventory) -> None:
    bridges = {b.name: b for b in hotsos.ovs_bridges}
    assert (bridges["br-int"].fail_mode, bridges["br-int"].datapath_type) == ("secure", "system")
    assert bridges["br-ex"].fail_mode is None  # `ovs-vsctl show` prints no fail_mode for it
    assert hotsos.node.hostname is not None and hotsos.node.hostname.value == "compute4"


def test_namespaces_list_their_interfaces(hotsos: Inventory) -> None:
    spaces = {n.name: n.interfaces for n in hotsos.namespaces}
    assert spaces["qrouter-984c22fd-64b3-4fa1-8ddd-87090f401ce5"] == (
        "lo",
        "rfp-984c22fd-6",
        "qr-3a70b31c-3f",
    )


# --- hybrid firewall (our lab's node) --------------------------------------------------------


def test_hybrid_port_reads_its_addresses_from_the_spoofing_chain_and_zone_from_raw() -> None:
    vm = _port(inventory(load(GOLDEN)), "bd978bef")
    assert vm.port_id == "bd978bef-1a3e-5d0f-adb8-919cbf6bd238"
    assert vm.firewall == "iptables_hybrid"
    assert vm.devices == ("qbrbd978bef-1a", "qvbbd978bef-1a", "qvobd978bef-1a", "tapbd978bef-1a")
    assert [str(i.value) for i in vm.ips] == ["10.30.0.10", "fe80::f816:3eff:fe10:94fc"]
    assert vm.ips[0].source.startswith("iptables chain neutron-openvswi-sbd978bef-1 rule")
    assert "br-int table 24 flow icmp6,in_port=2,icmp_type=136" in vm.ips[1].source
    assert vm.zone is not None and vm.zone.value == 4099
    assert vm.zone.source.startswith("iptables raw neutron-openvswi-PREROUTING rule")
    assert vm.chains == (
        "neutron-openvswi-ibd978bef-1",
        "neutron-openvswi-obd978bef-1",
        "neutron-openvswi-sbd978bef-1",
    )


# --- older releases and partial captures, as folders -----------------------------------------

NEWTON_VSCTL = """\
0b6e2b3c-0000-4000-8000-000000000001
    Bridge br-int
        fail_mode: secure
        Port "qvo3b1f6a2c-8d"
            tag: 1
            Interface "qvo3b1f6a2c-8d"
        Port "tap7c5d9e01-aa"
            tag: 1
            Interface "tap7c5d9e01-aa"
                type: internal
        Port patch-tun
            Interface patch-tun
                type: patch
                options: {peer=patch-int}
        Port br-int
            Interface br-int
                type: internal
    Bridge br-tun
        fail_mode: secure
        Port patch-int
            Interface patch-int
                type: patch
                options: {peer=patch-tun}
        Port "vxlan-0a000032"
            Interface "vxlan-0a000032"
                type: vxlan
                options: {df_default="true", in_key=flow, local_ip="10.0.0.31", out_key=flow, remote_ip="10.0.0.50"}
        Port br-tun
            Interface br-tun
                type: internal
    ovs_version: "2.6.1"
"""

NEWTON_IPTABLES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-openvswi-OUTPUT - [0:0]
:neutron-openvswi-PREROUTING - [0:0]
-A PREROUTING -j neutron-openvswi-PREROUTING
-A OUTPUT -j neutron-openvswi-OUTPUT
-A neutron-openvswi-PREROUTING -m physdev --physdev-in qvb3b1f6a2c-8d -j CT --zone 1
-A neutron-openvswi-PREROUTING -i qvb3b1f6a2c-8d -j CT --zone 1
-A neutron-openvswi-PREROUTING -m physdev --physdev-in tap3b1f6a2c-8d -j CT --zone 1
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-openvswi-i3b1f6a2c-8 - [0:0]
:neutron-openvswi-o3b1f6a2c-8 - [0:0]
:neutron-openvswi-s3b1f6a2c-8 - [0:0]
-A neutron-openvswi-i3b1f6a2c-8 -m state --state RELATED,ESTABLISHED -j RETURN
-A neutron-openvswi-o3b1f6a2c-8 -j neutron-openvswi-s3b1f6a2c-8
-A neutron-openvswi-s3b1f6a2c-8 -s 10.1.0.5/32 -m mac --mac-source FA:16:3E:11:22:33 -j RETURN
-A neutron-openvswi-s3b1f6a2c-8 -j DROP
COMMIT
"""

NEWTON_BR_TUN = """\
NXST_FLOW reply (xid=0x4):
 cookie=0x0, duration=10.0s, table=4, n_packets=0, n_bytes=0, idle_age=10, priority=1,tun_id=0x3f2 actions=mod_vlan_vid:1,resubmit(,10)
 cookie=0x0, duration=10.0s, table=22, n_packets=0, n_bytes=0, idle_age=10, priority=1,dl_vlan=1 actions=strip_vlan,set_tunnel:0x3f2,output:2
"""

NEWTON_BR_TUN_SHOW = """\
OFPT_FEATURES_REPLY (xid=0x2): dpid:0000a2b3c4d5e6f7
n_tables:254, n_buffers:256
 1(patch-int): addr:aa:bb:cc:dd:ee:01
     config:     0
     state:      0
 2(vxlan-0a000032): addr:aa:bb:cc:dd:ee:02
     config:     0
     state:      0
 LOCAL(br-tun): addr:aa:bb:cc:dd:ee:03
     config:     PORT_DOWN
     state:      LINK_DOWN
"""


def _folder(tmp_path: Path, files: dict[str, str]) -> Snapshot:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return load(tmp_path)


def test_newton_node_dhcp_tap_is_not_a_vm_and_uncommented_zone_rules_count(
    tmp_path: Path,
) -> None:
    snap = _folder(
        tmp_path,
        {
            "ovs-vsctl show": NEWTON_VSCTL,
            "iptables-save": NEWTON_IPTABLES,
            "ovs-ofctl dump-flows br-tun": NEWTON_BR_TUN,
            "ovs-ofctl show br-tun": NEWTON_BR_TUN_SHOW,
        },
    )
    inv = inventory(snap)
    vm, dhcp = _port(inv, "3b1f6a2c"), _port(inv, "7c5d9e01")
    assert dhcp.kind is PortKind.DHCP
    assert vm.kind is PortKind.VM and vm.firewall == "iptables_hybrid"
    assert vm.port_id == "3b1f6a2c-8d"  # no iface-id, no comment: the node tells 11 characters
    assert vm.zone is not None and vm.zone.value == 1
    assert "neutron-openvswi-PREROUTING rule 1" in vm.zone.source
    assert vm.mac is not None and vm.mac.value == "fa:16:3e:11:22:33"
    assert [i.value for i in vm.ips] == [ip_address("10.1.0.5")]
    assert vm.local_vlan is not None and vm.local_vlan.value == 1
    assert vm.network_type is not None and vm.network_type.value == "vxlan"
    assert vm.segmentation_id is not None and vm.segmentation_id.value == 0x3F2
    # No `ip link` in this capture: the VM's tap is not known to exist, and that is said.
    assert vm.tap is None
    assert any("no tap3b1f6a2c-8d device" in n for n in vm.notes)


OVSFW_BR_INT = """\
OFPST_FLOW reply (OF1.3) (xid=0x2):
 cookie=0x1, table=0, priority=100,in_port=5 actions=set_field:0x5->reg5,set_field:0x7->reg6,goto_table:60
 cookie=0x1, table=60, priority=100,in_port=5 actions=set_field:0x5->reg5,set_field:0x7->reg6,resubmit(,71)
 cookie=0x1, table=60, priority=90,dl_vlan=7,dl_dst=fa:16:3e:aa:bb:01 actions=set_field:0x5->reg5,set_field:0x7->reg6,pop_vlan,resubmit(,81)
 cookie=0x1, table=71, priority=95,arp,reg5=0x5,in_port=5,dl_src=fa:16:3e:aa:bb:01,arp_spa=10.9.0.5 actions=resubmit(,94)
 cookie=0x1, table=71, priority=95,arp,reg5=0x5,in_port=5,dl_src=fa:16:3e:aa:bb:02,arp_spa=10.9.0.99 actions=resubmit(,94)
 cookie=0x1, table=71, priority=65,ip,reg5=0x5,in_port=5,dl_src=fa:16:3e:aa:bb:01,nw_src=10.9.0.5 actions=ct(table=72,zone=NXM_NX_REG6[0..15])
 cookie=0x1, table=71, priority=80,udp,reg5=0x5,in_port=5,dl_src=fa:16:3e:aa:bb:01,nw_src=0.0.0.0,tp_src=68,tp_dst=67 actions=resubmit(,73)
 cookie=0x1, table=0, priority=3,in_port=1,dl_vlan=100 actions=set_field:4100->vlan_vid,goto_table:60
"""

OVSFW_BR_INT_SHOW = """\
OFPT_FEATURES_REPLY (xid=0x2): dpid:0000a2b3c4d5e6f8
n_tables:254, n_buffers:0
 1(int-br-ex): addr:aa:bb:cc:dd:ee:11
     config:     0
     state:      0
 5(tapaabb0011-22): addr:fe:16:3e:aa:bb:01
     config:     0
     state:      0
"""


def test_flows_alone_give_an_ovsfw_port_its_vlan_mac_addresses_and_zone(tmp_path: Path) -> None:
    """No OVSDB output at all: the port is known from `ofctl show`, the rest from its flows."""
    snap = _folder(
        tmp_path,
        {"ovs-ofctl dump-flows br-int": OVSFW_BR_INT, "ovs-ofctl show br-int": OVSFW_BR_INT_SHOW},
    )
    vm = _port(inventory(snap), "aabb0011")
    assert (vm.kind, vm.firewall) == (PortKind.VM, "openvswitch")
    assert vm.local_vlan is not None and vm.local_vlan.value == 7
    assert "table 60 flow dl_vlan=7,dl_dst=fa:16:3e:aa:bb:01" in vm.local_vlan.source
    assert vm.zone is not None and vm.zone.value == 7
    assert [m.value for m in vm.macs] == ["fa:16:3e:aa:bb:01", "fa:16:3e:aa:bb:02"]
    assert any("2 MACs may send from this port" in n for n in vm.notes)
    assert [str(i.value) for i in vm.ips] == ["10.9.0.5", "10.9.0.99"]  # 0.0.0.0 is DHCP's
    assert vm.network_type is None  # nothing maps VLAN 7 to a segment
    assert any("network of local VLAN 7 unknown" in n for n in vm.notes)


PROVIDER_VSCTL = """\
0b6e2b3c-0000-4000-8000-000000000002
    Bridge br-int
        Port int-br-ex
            Interface int-br-ex
                type: patch
                options: {peer=phy-br-ex}
        Port "tapaabb0011-22"
            tag: 4
            Interface "tapaabb0011-22"
    Bridge br-ex
        Port phy-br-ex
            Interface phy-br-ex
                type: patch
                options: {peer=int-br-ex}
"""

PROVIDER_BR_INT = """\
 table=0, priority=3,in_port=1,dl_vlan=100 actions=mod_vlan_vid:4,resubmit(,60)
"""
PROVIDER_SHOW = """\
OFPT_FEATURES_REPLY (xid=0x2): dpid:0000a2b3c4d5e6f8
 1(int-br-ex): addr:aa:bb:cc:dd:ee:11
     config:     0
     state:      0
 2(tapaabb0011-22): addr:fe:16:3e:aa:bb:01
     config:     0
     state:      0
"""


def test_provider_vlan_network_is_read_from_br_int_table_0(tmp_path: Path) -> None:
    snap = _folder(
        tmp_path,
        {
            "ovs-vsctl show": PROVIDER_VSCTL,
            "ovs-ofctl dump-flows br-int": PROVIDER_BR_INT,
            "ovs-ofctl show br-int": PROVIDER_SHOW,
        },
    )
    vm = _port(inventory(snap), "aabb0011")
    assert vm.local_vlan is not None and vm.local_vlan.value == 4
    assert vm.network_type is not None and vm.network_type.value == "vlan"
    assert vm.segmentation_id is not None and vm.segmentation_id.value == 100
    assert vm.firewall is None and vm.zone is None
    bridges = {b.name: b for b in inventory(snap).ovs_bridges}
    assert (bridges["br-int"].fail_mode, bridges["br-int"].datapath_type) == (None, None)


ARP_SPOOF_BR_INT = """\
NXST_FLOW reply (xid=0x4):
 cookie=0x0, table=0, priority=10,arp,in_port=5 actions=resubmit(,24)
 cookie=0x0, table=24, priority=2,arp,in_port=5,arp_spa=10.1.0.5 actions=resubmit(,25)
 cookie=0x0, table=24, priority=2,icmp6,in_port=5,icmp_type=136,nd_target=fe80::f816:3eff:fe11:2233 actions=NORMAL
 cookie=0x0, table=25, priority=2,in_port=5,dl_src=fa:16:3e:11:22:33 actions=NORMAL
"""

ARP_SPOOF_SHOW = """\
OFPT_FEATURES_REPLY (xid=0x2): dpid:0000a2b3c4d5e6f9
 5(qvo3b1f6a2c-8d): addr:aa:bb:cc:dd:ee:05
     config:     0
     state:      0
"""


def test_hybrid_port_without_a_ruleset_takes_mac_and_address_from_arp_spoofing_flows(
    tmp_path: Path,
) -> None:
    """prevent_arp_spoofing: br-int table 24 lists the port's addresses, table 25 its MACs."""
    snap = _folder(
        tmp_path,
        {"ovs-ofctl dump-flows br-int": ARP_SPOOF_BR_INT, "ovs-ofctl show br-int": ARP_SPOOF_SHOW},
    )
    vm = _port(inventory(snap), "3b1f6a2c")
    assert (vm.kind, vm.firewall) == (PortKind.VM, "iptables_hybrid")
    assert any("derived from the hybrid plugging" in n for n in vm.notes)
    assert vm.mac is not None and vm.mac.value == "fa:16:3e:11:22:33"
    assert "br-int table 25 flow" in vm.mac.source
    assert [str(i.value) for i in vm.ips] == ["10.1.0.5", "fe80::f816:3eff:fe11:2233"]
    assert "br-int table 24 flow arp,in_port=5,arp_spa=10.1.0.5" in vm.ips[0].source


NAMED_VSCTL = """\
0b6e2b3c-0000-4000-8000-000000000004
    Bridge br-int
        Port "tap648437e1-0d"
            tag: 3
            Interface "tap648437e1-0d"
        Port "tap0ab9a23c-99"
            tag: 1
            Interface "tap0ab9a23c-99"
                error: "could not open network device tap0ab9a23c-99 (No such device)"
"""

NAMED_BR_INT = """\
 cookie=0x9b, table=60, priority=100,in_port="tap648437e1-0d" actions=load:0x4->NXM_NX_REG5[],load:0x3->NXM_NX_REG6[],resubmit(,71)
 cookie=0x9b, table=71, priority=95,arp,reg5=0x4,in_port="tap648437e1-0d",dl_src=fa:16:3e:61:21:c6,arp_spa=192.168.101.85 actions=resubmit(,94)
"""


def test_a_dump_with_port_names_numbers_the_port_and_a_stale_port_has_no_device(
    tmp_path: Path,
) -> None:
    """No `ovs-ofctl show`: the firewall's reg5 load gives the OpenFlow number (said)."""
    snap = _folder(
        tmp_path, {"ovs-vsctl show": NAMED_VSCTL, "ovs-ofctl dump-flows br-int": NAMED_BR_INT}
    )
    inv = inventory(snap)
    vm, stale = _port(inv, "648437e1"), _port(inv, "0ab9a23c")
    assert (vm.ofport, vm.firewall, vm.flows) == (4, "openvswitch", 2)
    assert any("OpenFlow port number 4 of tap648437e1-0d read from" in n for n in vm.notes)
    assert vm.mac is not None and vm.mac.value == "fa:16:3e:61:21:c6"
    assert (stale.devices, stale.tap) == ((), None)
    assert stale.local_vlan is not None and stale.local_vlan.value == 1
    assert any("its device is gone" in n and "No such device" in n for n in stale.notes)


HYBRID_WITH_PLAIN_TAP = """\
0b6e2b3c-0000-4000-8000-000000000005
    Bridge br-int
        Port "tape3b1974f-d6"
            tag: 1
            Interface "tape3b1974f-d6"
        Port "qvob6c9a70b-e1"
            tag: 2
            Interface "qvob6c9a70b-e1"
"""


def test_a_plain_tap_on_a_hybrid_node_is_not_taken_for_a_vm(tmp_path: Path) -> None:
    """Instances of a hybrid node sit behind qvo; a plain tap is an agent's veth (DHCP with
    ovs_use_veth), which nothing here can confirm: unknown, and said."""
    inv = inventory(_folder(tmp_path, {"ovs-vsctl show": HYBRID_WITH_PLAIN_TAP}))
    tap, vm = _port(inv, "e3b1974f"), _port(inv, "b6c9a70b")
    assert (vm.kind, tap.kind) == (PortKind.VM, PortKind.UNKNOWN)
    assert any("ovs_use_veth" in n for n in tap.notes)
