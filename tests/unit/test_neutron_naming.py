"""Neutron's naming rules, checked against the names a real node shows (compute-node reference
§1.1, §2.1, §2.5, §2.7; values copied into the expectations below)."""

from __future__ import annotations

import pytest

from nodetrace.neutron import naming as n

PORT = "3b1f6a2c-8d4e-4f7a-9b2c-1d5e6f7a8b9c"
SG = "9d8c7b6a-5e4f-4a3b-2c1d-0e9f8a7b6c5d"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (n.DeviceKind.TAP, "tap3b1f6a2c-8d"),
        (n.DeviceKind.QBR, "qbr3b1f6a2c-8d"),
        (n.DeviceKind.QVB, "qvb3b1f6a2c-8d"),
        (n.DeviceKind.QVO, "qvo3b1f6a2c-8d"),
    ],
    ids=lambda v: str(v),
)
def test_device_names_are_prefix_plus_eleven_uuid_characters(
    kind: n.DeviceKind, expected: str
) -> None:
    assert n.device_name(kind, PORT) == expected
    assert len(expected) == 14
    parsed = n.parse_device_name(expected)
    assert parsed == n.DeviceName(kind, "3b1f6a2c-8d")


def test_port_devices_bundle_all_four_names() -> None:
    d = n.PortDevices.for_port(PORT)
    assert (d.tap, d.qbr, d.qvb, d.qvo) == (
        "tap3b1f6a2c-8d",
        "qbr3b1f6a2c-8d",
        "qvb3b1f6a2c-8d",
        "qvo3b1f6a2c-8d",
    )


@pytest.mark.parametrize(
    ("kind", "wrap", "expected"),
    [
        (n.ChainKind.INGRESS, n.OPENVSWITCH_WRAP, "neutron-openvswi-i3b1f6a2c-8"),
        (n.ChainKind.EGRESS, n.OPENVSWITCH_WRAP, "neutron-openvswi-o3b1f6a2c-8"),
        (n.ChainKind.SPOOF, n.OPENVSWITCH_WRAP, "neutron-openvswi-s3b1f6a2c-8"),
        (n.ChainKind.INGRESS, n.LINUXBRIDGE_WRAP, "neutron-linuxbri-i3b1f6a2c-8"),
    ],
    ids=["ingress", "egress", "spoof", "linuxbridge"],
)
def test_port_chain_names_fit_iptables_28_characters(
    kind: n.ChainKind, wrap: str, expected: str
) -> None:
    name = n.chain_name(kind, PORT, wrap)
    assert name == expected
    assert len(name) == 28
    assert n.parse_chain_name(name) == n.ChainName(wrap, kind, "3b1f6a2c-8")


def test_shared_chain_names() -> None:
    assert n.sg_chain() == "neutron-openvswi-sg-chain"
    assert n.sg_fallback_chain(n.LINUXBRIDGE_WRAP) == "neutron-linuxbri-sg-fallback"
    assert n.wrapped("PREROUTING") == "neutron-openvswi-PREROUTING"


def test_ipset_name_is_cut_to_29_characters() -> None:
    assert n.ipset_name(SG) == "NIPv49d8c7b6a-5e4f-4a3b-2c1d-"
    assert n.ipset_name(SG, "IPv6") == "NIPv69d8c7b6a-5e4f-4a3b-2c1d-"
    assert n.parse_ipset_name("NIPv49d8c7b6a-5e4f-4a3b-2c1d-") == n.IpsetName(
        "IPv4", "9d8c7b6a-5e4f-4a3b-2c1d-"
    )
    with pytest.raises(ValueError):
        n.ipset_name(SG, "ipv4")


def test_tunnel_port_name_is_remote_ip_in_hex() -> None:
    assert n.tunnel_port_name("vxlan", "10.0.0.50") == "vxlan-0a000032"
    assert n.tunnel_port_name("gre", "10.0.0.50") == "gre-0a000032"
    parsed = n.parse_tunnel_port_name("gre-0a000032")
    assert parsed is not None and str(parsed.remote_ip) == "10.0.0.50"
    with pytest.raises(ValueError):
        n.tunnel_port_name("vxlan", "fd00::1")


@pytest.mark.parametrize(
    "name",
    ["eth0", "tap3b1f6a2c", "qvo3b1f6a2c-8dx", "neutron-openvswi-sg-chain", "br-int"],
)
def test_foreign_names_are_not_taken_for_port_names(name: str) -> None:
    assert n.parse_device_name(name) is None
    assert n.parse_chain_name(name) is None


def test_names_lead_back_to_their_port_only_when_unambiguous() -> None:
    ports = [PORT, "a7e9c4d1-2b3f-4e5a-8c6d-7f8e9a0b1c2d"]
    assert n.port_for_name("qvb3b1f6a2c-8d", ports) == PORT
    assert n.port_for_name("neutron-openvswi-o3b1f6a2c-8", ports) == PORT
    assert n.port_for_name("tapffffffff-ff", ports) is None
    twins = [PORT, "3b1f6a2c-8d00-0000-0000-000000000000"]
    assert n.port_for_name("tap3b1f6a2c-8d", twins) is None


def test_zone_map_is_read_back_from_raw_rules() -> None:
    rules = [
        "-A neutron-openvswi-PREROUTING -m physdev --physdev-in qvb3b1f6a2c-8d -m comment "
        f'--comment "Set zone for {PORT}" -j CT --zone 4097',
        f'-A neutron-openvswi-PREROUTING -i qvb3b1f6a2c-8d -m comment --comment "Set zone for {PORT}" -j CT --zone 4097',
        "-A PREROUTING -j neutron-openvswi-PREROUTING",
    ]
    zones = n.zones_from_rule_texts(rules)
    assert [(z.device, z.zone) for z in zones] == [
        ("qvb3b1f6a2c-8d", 4097),
        ("qvb3b1f6a2c-8d", 4097),
    ]
    assert {z.port_id for z in zones} == {PORT}


def test_local_vlans_are_read_from_tunnel_flows_in_both_openflow_dialects() -> None:
    lines = [
        " cookie=0x1, duration=3500.9s, table=4, n_packets=0, n_bytes=0, priority=1,tun_id=0x40d actions=mod_vlan_vid:1,resubmit(,10)",
        " cookie=0x1, table=3, priority=1,tun_id=0x2a actions=push_vlan:0x8100,set_field:4098->vlan_vid,goto_table:10",
        " cookie=0x1, table=4, priority=0 actions=drop",
    ]
    assert n.local_vlans_from_tunnel_flows(lines) == (
        n.LocalVlan(1037, 1),
        n.LocalVlan(42, 2),
    )
    provider = [" table=0, priority=3,in_port=2,dl_vlan=100 actions=mod_vlan_vid:3,resubmit(,58)"]
    assert n.local_vlans_from_provider_flows(provider) == (n.LocalVlan(100, 3),)


def test_port_addresses_come_from_the_anti_spoofing_chain() -> None:
    from ipaddress import ip_address

    from nodetrace.neutron.addresses import port_addresses
    from nodetrace.parsers.iptables_save import parse_iptables_save

    port = "3b1f6a2c-8d4e-4f7a-9b2c-1d5e6f7a8b9c"
    chain = "neutron-openvswi-s3b1f6a2c-8"
    text = f"""*filter
:{chain} - [0:0]
-A {chain} -s 10.0.0.11/32 -m mac --mac-source fa:16:3e:4c:2a:11 -j RETURN
-A {chain} -s 10.0.1.0/24 -m mac --mac-source fa:16:3e:4c:2a:11 -j RETURN
-A {chain} -s 10.0.0.12/32 -j RETURN
-A {chain} -s 10.0.0.13/32 -m mac --mac-source fa:16:3e:4c:2a:11 -j DROP
-A {chain} -m comment --comment "Drop traffic without an IP/MAC allow rule." -j DROP
COMMIT
"""
    ruleset = parse_iptables_save(text, source="t")
    # Only single addresses paired with a MAC and allowed: not the /24 pair, not the bare -s
    # rule, not a DROP.
    assert port_addresses((ruleset, None), port) == (ip_address("10.0.0.11"),)
    assert port_addresses((ruleset,), "a7e9c4d1-2b3f-4e5a-8c6d-7f8e9a0b1c2d") == ()
