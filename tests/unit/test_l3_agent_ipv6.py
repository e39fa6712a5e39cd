"""What the generator says Neutron's L3 agent adds for IPv6 on a legacy router: the ``::1``
address of each IPv6 subnet on its ``qr-`` port, IPv6 forwarding, and the ip6tables of the
agent's ``IptablesManager`` (no IPv6 NAT), read back through nodetrace's own parser; and the
IPv6 shapes refused. tests/lab/test_router_ipv6_lab.py checks the rules against the kernel."""

from __future__ import annotations

from ipaddress import IPv6Address
from pathlib import Path

import pytest

from nodetrace.errors import InputError
from nodetrace.model.netfilter import Ruleset
from nodetrace.model.packet import Family
from nodetrace.neutron.generate import generate_node
from nodetrace.neutron.l3_agent import IPV6_FORWARDING, RouterState, describe
from nodetrace.neutron.scenario import load_scenario, parse_scenario
from nodetrace.parsers.iptables_save import parse_iptables_save

EXAMPLES = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios"

DUAL = """
[[nodes]]
name = "net1"

[[networks]]
name = "a"
type = "vxlan"
segmentation_id = 7
cidr = "10.0.0.0/24"
ipv6_cidr = "fd00:7::/64"

[[networks]]
name = "b"
type = "vxlan"
segmentation_id = 8
cidr = "10.1.0.0/24"

[[ports]]
name = "vm1"
node = "net1"
network = "a"
ips = ["10.0.0.11", "fd00:7::11"]
"""


@pytest.fixture(scope="module")
def router() -> RouterState:
    return generate_node(load_scenario(EXAMPLES / "legacy-router-ipv6.toml"), "aio1").routers[0]


@pytest.fixture(scope="module")
def rules6(router: RouterState) -> Ruleset:
    return parse_iptables_save(router.ip6tables_save, source="ip6tables", family=Family.IPV6)


def _chain(rules: Ruleset, table: str, chain: str) -> list[str]:
    found = rules.chain(table, chain)
    assert found is not None, f"{table} {chain}"
    return [r.text.removeprefix(f"-A {chain} ") for r in found.rules]


def _chains(rules: Ruleset, table: str) -> set[str]:
    return set(rules.tables[table].chains)


def test_each_internal_port_gets_its_ipv6_subnets_first_host(router: RouterState) -> None:
    got = {p.network.name: (p.interface.ip6, p.interface.prefixlen6) for p in router.internal}
    assert got == {
        "private": (IPv6Address("fd00:10::1"), 64),
        "db": (IPv6Address("fd00:11::1"), 64),
    }
    assert all("first host" in p.interface.ip6_derived for p in router.internal)
    assert set(router.addresses6) == {(p.device, p.cidr6) for p in router.internal}


def test_ipv6_forwarding_is_on_beside_the_ipv4_sysctls(router: RouterState) -> None:
    assert router.sysctls[-1] == IPV6_FORWARDING == "net.ipv6.conf.all.forwarding=1"
    assert "net.ipv4.ip_forward=1" in router.sysctls


def test_the_ipv6_nat_table_holds_only_the_metadata_redirect(rules6: Ruleset) -> None:
    chains = _chains(rules6, "nat")
    assert chains == {
        "PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "neutron-l3-agent-PREROUTING",
    }  # fmt: skip
    assert _chain(rules6, "nat", "neutron-l3-agent-PREROUTING") == [
        "-d fe80::a9fe:a9fe/128 -i qr-+ -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697"
    ]
    assert not any("NAT" in r for c in chains for r in _chain(rules6, "nat", c))


def test_each_ipv6_port_gets_the_address_scope_mark_and_drop(
    router: RouterState, rules6: Ruleset
) -> None:
    devices = [p.device for p in router.internal]
    assert _chain(rules6, "mangle", "neutron-l3-agent-scope") == [
        f"-i {d} -j MARK --set-xmark 0x4000000/0xffff0000" for d in devices
    ]
    assert _chain(rules6, "filter", "neutron-l3-agent-scope") == [
        f"-o {d} -m mark ! --mark 0x4000000/0xffff0000 -j DROP" for d in devices
    ]
    assert _chain(rules6, "filter", "neutron-l3-agent-FORWARD") == ["-j neutron-l3-agent-scope"]
    # No "mark" chain for IPv6: the gateway's ingress mark is IPv4 only in the manager.
    assert "neutron-l3-agent-mark" not in _chains(rules6, "mangle")


def test_the_ipv6_metadata_address_is_marked_and_its_proxy_port_guarded(rules6: Ruleset) -> None:
    assert (
        "-d fe80::a9fe:a9fe/128 -i qr-+ -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x1/0xffff"
        in _chain(rules6, "mangle", "neutron-l3-agent-PREROUTING")
    )
    assert _chain(rules6, "filter", "neutron-l3-agent-INPUT") == [
        "-m mark --mark 0x1/0xffff -j ACCEPT",
        "-p tcp -m tcp --dport 9697 -j DROP",
    ]


def test_describe_says_how_the_ipv6_address_was_derived(router: RouterState) -> None:
    text = describe(router)
    assert "fd00:10::1/64 (the IPv6 gateway address of private (fd00:10::/64's first host))" in text
    assert "# ip6tables-save (no IPv6 NAT in Neutron" in text


def test_a_router_without_ipv6_ports_gets_no_ip6tables() -> None:
    state = generate_node(load_scenario(EXAMPLES / "legacy-router.toml"), "aio1").routers[0]
    assert state.ip6tables_save == ""
    assert IPV6_FORWARDING not in state.sysctls
    assert state.addresses6 == ()


def test_only_the_networks_with_an_ipv6_subnet_get_an_ipv6_address() -> None:
    text = DUAL + '[[routers]]\nname = "r1"\nnode = "net1"\ninterfaces = ["a", "b"]\n'
    state = generate_node(parse_scenario(text), "net1").routers[0]
    assert [(p.network.name, p.cidr6) for p in state.internal] == [
        ("a", "fd00:7::1/64"),
        ("b", None),
    ]
    rules6 = parse_iptables_save(state.ip6tables_save, source="x", family=Family.IPV6)
    assert len(_chain(rules6, "mangle", "neutron-l3-agent-scope")) == 1


def test_a_vm_holding_the_ipv6_gateway_address_is_reported() -> None:
    text = DUAL.replace('"fd00:7::11"', '"fd00:7::1"')
    text += '[[routers]]\nname = "r1"\nnode = "net1"\ninterfaces = ["a"]\n'
    with pytest.raises(InputError, match=r"IPv6 gateway address fd00:7::1 is used by port 'vm1'"):
        parse_scenario(text)


def test_ipv6_on_a_distributed_router_is_refused() -> None:
    text = DUAL + '[[routers]]\nname = "r1"\ndistributed = true\ninterfaces = ["a"]\n'
    with pytest.raises(InputError, match="IPv6 through distributed routers is not modelled"):
        parse_scenario(text)


def test_an_ipv6_external_gateway_is_refused() -> None:
    text = DUAL + (
        '[[networks]]\nname = "pub"\ntype = "vlan"\nsegmentation_id = 100\n'
        'cidr = "203.0.113.0/24"\nipv6_cidr = "2001:db8::/64"\nexternal = true\n'
        '[[routers]]\nname = "r1"\nnode = "net1"\ninterfaces = ["a"]\n'
        'external_gateway = "pub"\n'
    )
    with pytest.raises(InputError, match="an IPv6 external gateway is not modelled"):
        parse_scenario(text)
