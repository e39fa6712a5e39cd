"""Reading scenario files: what a valid file yields, and how every kind of mistake is reported."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from nodetrace.errors import InputError
from nodetrace.neutron.scenario import (
    Direction,
    Ethertype,
    NetworkType,
    load_scenario,
    parse_scenario,
    stable_uuid,
)

DATA = Path(__file__).parents[1] / "data" / "lab"

MINIMAL = """
[[nodes]]
name = "cmp1"

[[networks]]
name = "net"
type = "vxlan"
segmentation_id = 100
cidr = "10.0.0.0/24"

[[ports]]
name = "vm1"
node = "cmp1"
network = "net"
"""


def test_reference_scenario_reads_as_written() -> None:
    s = load_scenario(DATA / "reference-node.toml")
    assert s.name == "reference"
    assert [n.name for n in s.nodes] == ["compute-01", "compute-02", "compute-03"]
    assert str(s.node("compute-02").underlay_ip) == "10.0.0.50"
    vm1 = s.port("vm1")
    assert vm1.id == "3b1f6a2c-8d4e-4f7a-9b2c-1d5e6f7a8b9c"
    assert vm1.fixed_ips == (ip_address("10.0.0.11"),)
    assert s.security_group(vm1.security_groups[0]).name == "sg-web"
    net = s.network(vm1.network)
    assert (net.type, net.segmentation_id, net.mtu) == (NetworkType.VXLAN, 1037, 1450)
    default = s.security_group("9d8c7b6a-5e4f-4a3b-2c1d-0e9f8a7b6c5d")
    assert default.rules[0].remote_group == default.id
    web = s.security_group("5f0c7d2e-1a2b-4c3d-8e9f-0a1b2c3d4e5f")
    assert web.rules[0].port_min == web.rules[0].port_max == 22
    assert web.rules[0].remote_ip_prefix == ip_network("0.0.0.0/0")
    assert [p.name for p in s.ports_on("compute-01")] == ["vm1", "vm2"]
    assert s.tunnel_types == (NetworkType.VXLAN,)


def test_missing_identities_are_filled_in_deterministically() -> None:
    a, b = parse_scenario(MINIMAL), parse_scenario(MINIMAL)
    assert a.port("vm1") == b.port("vm1")
    port = a.port("vm1")
    assert port.id == stable_uuid("port", "vm1")
    assert port.mac.startswith("fa:16:3e:")
    assert port.fixed_ips == (ip_address("10.0.0.10"),)
    assert str(a.nodes[0].underlay_ip) == "192.168.50.1"
    assert a.network(port.network).mtu == 1450


def test_rule_forms_become_neutron_fields() -> None:
    text = (
        MINIMAL
        + """
[[security_groups]]
name = "sg"
rules = [
  { direction = "ingress", protocol = "tcp", port_range_min = 1000, port_range_max = 2000 },
  { direction = "ingress", protocol = "icmp", icmp_type = 8, icmp_code = 0 },
  { direction = "egress", ethertype = "IPv6", protocol = 58 },
  { direction = "ingress", protocol = "udp", port = 53, remote_ip_prefix = "192.168.1.7" },
]
"""
    )
    rules = parse_scenario(text).security_groups[0].rules
    assert (rules[0].protocol, rules[0].port_min, rules[0].port_max) == ("tcp", 1000, 2000)
    assert (rules[1].port_min, rules[1].port_max) == (8, 0)
    assert (rules[2].direction, rules[2].ethertype, rules[2].protocol) == (
        Direction.EGRESS,
        Ethertype.IPV6,
        "58",
    )
    assert rules[3].remote_ip_prefix == ip_network("192.168.1.7/32")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('type = "vxlan"', 'type = "geneve"'), "type 'geneve': expected vxlan, gre, vlan or flat"),
        (
            ("segmentation_id = 100", "segmentation_id = 0"),
            "segmentation_id 0: a vxlan id must be in",
        ),
        (('node = "cmp1"', 'node = "cmp9"'), "node 'cmp9': no such node"),
        (('network = "net"', 'network = "other"'), "network 'other': no such network"),
        (('name = "vm1"', 'name = "VM 1"'), "name 'VM 1': use 1-20 lower-case"),
        (('name = "vm1"', 'name = "vm1"\nsecgroups = []'), "unknown key 'secgroups'"),
        (
            ('name = "vm1"', 'name = "vm1"\nip = "10.0.1.5"'),
            "ip 10.0.1.5 is outside the network's subnet",
        ),
        (('name = "vm1"', 'name = "vm1"\nmac = "01:00:5e:00:00:01"'), "a port needs a unicast MAC"),
    ],
    ids=["net-type", "segment", "node", "network", "name", "typo", "cidr", "mac"],
)
def test_mistakes_are_reported_with_file_line_and_reason(
    change: tuple[str, str], message: str
) -> None:
    text = MINIMAL.replace(*change)
    with pytest.raises(InputError) as err:
        parse_scenario(text, source="lab.toml")
    assert message in str(err.value)
    assert "lab.toml:" in str(err.value)


def test_every_mistake_is_reported_at_once_with_its_entry_line() -> None:
    text = MINIMAL.replace('node = "cmp1"', 'node = "nope"').replace(
        'type = "vxlan"', 'type = "ipip"'
    )
    with pytest.raises(InputError) as err:
        parse_scenario(text, source="s.toml")
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 2
    assert lines[0].strip().startswith("s.toml:5: networks[0]:")
    assert lines[1].strip().startswith("s.toml:11: ports[0]:")


def test_cross_references_and_conflicts() -> None:
    text = (
        MINIMAL
        + """
[[security_groups]]
name = "sg"
rules = [{ direction = "ingress", remote_group = "missing" }]

[[ports]]
name = "vm2"
node = "cmp1"
network = "net"
ip = "10.0.0.10"
port_security = false
security_groups = ["sg"]
"""
    )
    with pytest.raises(InputError) as err:
        parse_scenario(text)
    msg = str(err.value)
    assert "remote_group 'missing': no security group" in msg
    assert "ip 10.0.0.10 is already used by port 'vm1'" in msg
    assert "port_security = false cannot have security groups" in msg


def test_toml_syntax_errors_name_the_file() -> None:
    with pytest.raises(InputError, match=r"^bad\.toml: not valid TOML: .*line 2"):
        parse_scenario("[[nodes]]\nname = \n", source="bad.toml")


def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        load_scenario(tmp_path / "missing.toml")
