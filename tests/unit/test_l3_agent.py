"""What the generator says Neutron's L3 agent puts on a legacy router's node: the scenario's
``[[routers]]``, the router's ports and br-ex, and the namespace's iptables, read back through
nodetrace's own iptables-save parser. tests/lab/test_router_lab.py checks the same rules against
what the kernel holds once loaded, and the walk against real packets."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from nodetrace.errors import InputError
from nodetrace.model.netfilter import (
    ConnmarkTarget,
    MarkTarget,
    NatTarget,
    Rule,
    Ruleset,
    UnknownMatch,
    UnknownTarget,
)
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.scenario import load_scenario, parse_scenario
from nodetrace.parsers.iptables_save import parse_iptables_save

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/legacy-router.toml"

BASE = """
[[nodes]]
name = "net1"

[[networks]]
name = "private"
type = "vxlan"
segmentation_id = 7
cidr = "10.0.0.0/24"

[[networks]]
name = "public"
type = "vlan"
segmentation_id = 100
cidr = "203.0.113.0/24"
external = true

[[ports]]
name = "web1"
node = "net1"
network = "private"
ip = "10.0.0.11"
"""


@pytest.fixture(scope="module")
def node() -> NodeState:
    return generate_node(load_scenario(SCENARIO), "aio1")


@pytest.fixture(scope="module")
def rules(node: NodeState) -> Ruleset:
    return parse_iptables_save(node.routers[0].iptables_save, source="router")


def _chain(ruleset: Ruleset, table: str, chain: str) -> tuple[Rule, ...]:
    found = ruleset.chain(table, chain)
    assert found is not None, f"{table} {chain} missing"
    return found.rules


def _targets(ruleset: Ruleset, table: str, chain: str) -> list[str]:
    return [r.target.name for r in _chain(ruleset, table, chain)]


def test_every_rule_parses_back_with_nothing_left_unmodelled(
    node: NodeState, rules: Ruleset
) -> None:
    all_rules = list(rules.rules())
    written = [line for line in node.routers[0].iptables_save.splitlines() if line[:3] == "-A "]
    assert [r.text for r in all_rules] == written
    for rule in all_rules:
        assert not isinstance(rule.target, UnknownTarget), rule.text
        assert not any(isinstance(m, UnknownMatch) for m in rule.matches), rule.text
    assert set(rules.tables) == {"raw", "mangle", "nat", "filter"}


def test_snat_for_the_internal_subnets_goes_to_the_gateway_address(
    node: NodeState, rules: Ruleset
) -> None:
    router = node.routers[0]
    assert router.gateway is not None
    qg, gw = router.gateway.device, IPv4Address("203.0.113.5")
    snat = _chain(rules, "nat", "neutron-l3-agent-snat")
    assert [r.target.name for r in snat] == ["neutron-l3-agent-float-snat", "SNAT", "SNAT"]
    out = snat[1]
    assert out.ip.out_iface is not None and out.ip.out_iface.value == qg
    assert isinstance(out.target, NatTarget)
    assert out.target.ranges[0].addr_lo == gw and out.target.random_fully
    # Replies to DNAT'ed traffic that did not come in from outside (mark 0x2) leave as the
    # gateway too (the hairpin to a floating IP).
    assert "-m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT" in snat[2].text
    # Only the shared bottom chain reaches snat, and it comes last in POSTROUTING.
    assert _targets(rules, "nat", "POSTROUTING") == [
        "neutron-l3-agent-POSTROUTING",
        "neutron-postrouting-bottom",
    ]
    (accept,) = _chain(rules, "nat", "neutron-l3-agent-POSTROUTING")
    assert accept.text.endswith(f"! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT")


def test_each_floating_ip_is_a_dnat_and_snat_pair(rules: Ruleset) -> None:
    fip, fixed = IPv4Address("203.0.113.10"), IPv4Address("10.0.0.11")
    for chain in ("neutron-l3-agent-PREROUTING", "neutron-l3-agent-OUTPUT"):
        dnat = _chain(rules, "nat", chain)[0]
        assert isinstance(dnat.target, NatTarget) and dnat.target.nat_type == "DNAT"
        assert dnat.target.ranges[0].addr_lo == fixed
        assert dnat.ip.dst is not None and str(dnat.ip.dst.value) == f"{fip}/32"
    (float_snat,) = _chain(rules, "nat", "neutron-l3-agent-float-snat")
    assert isinstance(float_snat.target, NatTarget)
    assert float_snat.target.ranges[0].addr_lo == fip
    assert float_snat.text.startswith(f"-A neutron-l3-agent-float-snat -s {fixed}/32")


def test_metadata_is_marked_redirected_and_accepted(rules: Ruleset) -> None:
    redirect = _chain(rules, "nat", "neutron-l3-agent-PREROUTING")[-1]
    assert isinstance(redirect.target, NatTarget) and redirect.target.nat_type == "REDIRECT"
    assert redirect.target.to_ports is not None
    assert "-d 169.254.169.254/32 -i qr-+ -p tcp -m tcp --dport 80" in redirect.text
    mark = _chain(rules, "mangle", "neutron-l3-agent-PREROUTING")[-1]
    assert isinstance(mark.target, MarkTarget) and (mark.target.value, mark.target.mask) == (
        0x1,
        0xFFFF,
    )
    inp = _chain(rules, "filter", "neutron-l3-agent-INPUT")
    assert [r.text.split(" ", 2)[2] for r in inp] == [
        "-m mark --mark 0x1/0xffff -j ACCEPT",
        "-p tcp -m tcp --dport 9697 -j DROP",
    ]


def test_address_scope_marks_and_drops(node: NodeState, rules: Ruleset) -> None:
    router = node.routers[0]
    devices = [p.device for p in router.ports]
    marks = _chain(rules, "mangle", "neutron-l3-agent-scope")
    assert [r.ip.in_iface.value for r in marks if r.ip.in_iface] == devices
    assert all(isinstance(r.target, MarkTarget) and r.target.value == 0x4000000 for r in marks)
    drops = _chain(rules, "filter", "neutron-l3-agent-scope")
    # SNAT on: no DROP towards the gateway port.
    assert [r.ip.out_iface.value for r in drops if r.ip.out_iface] == devices[:-1]
    pre = _chain(rules, "mangle", "neutron-l3-agent-PREROUTING")
    restore = pre[2].target
    assert isinstance(restore, ConnmarkTarget) and restore.mode == "restore"


def test_snat_off_keeps_the_floating_ip_rules_and_drops_to_the_gateway() -> None:
    text = (
        BASE
        + """
[[routers]]
name = "r1"
node = "net1"
interfaces = ["private"]
external_gateway = { network = "public" }
enable_snat = false
floating_ips = [{ port = "web1", address = "203.0.113.10" }]
"""
    )
    state = generate_node(parse_scenario(text), "net1")
    router = state.routers[0]
    assert router.gateway is not None
    # No ip given: the first free external address from .2 up (.1 is the upstream gateway).
    assert router.gateway.interface.ip == IPv4Address("203.0.113.2")
    assert "first free address" in router.gateway.interface.ip_derived
    assert router.default_route == (IPv4Address("203.0.113.1"), router.gateway.device)
    rules = parse_iptables_save(router.iptables_save, source="router")
    snat = _chain(rules, "nat", "neutron-l3-agent-snat")
    assert "-o " not in " ".join(r.text for r in snat)  # no SNAT of the subnets
    assert len(_chain(rules, "nat", "neutron-l3-agent-float-snat")) == 1
    drops = _chain(rules, "filter", "neutron-l3-agent-scope")
    assert drops[-1].ip.out_iface is not None
    assert drops[-1].ip.out_iface.value == router.gateway.device
    assert _chain(rules, "mangle", "neutron-l3-agent-POSTROUTING") == ()


def test_router_ports_and_br_ex_as_the_agents_plug_them(node: NodeState) -> None:
    router = node.routers[0]
    assert router.namespace == f"qrouter-{router.router.id}"
    assert [p.device[:3] for p in router.ports] == ["qr-", "qr-", "qg-"]
    assert all(len(p.device) == 14 for p in router.ports)
    ports = {p.name: p for p in node.ovs_ports}
    for rp in router.ports:
        ovs = ports[rp.device]
        assert (ovs.bridge, ovs.type, ovs.tag) == ("br-int", "internal", rp.local_vlan)
        assert ("iface-id", rp.interface.port_id) in ovs.external_ids
    # The interfaces took their networks' gateway addresses (.1), and said so.
    assert [p.cidr for p in router.internal] == ["10.0.0.1/24", "10.1.0.1/24"]
    assert all("first host" in p.interface.ip_derived for p in router.internal)
    assert router.addresses[-1] == (router.ports[-1].device, "203.0.113.10/32")
    assert "net.ipv4.ip_forward=1" in router.sysctls
    assert node.bridges == ("br-int", "br-tun", "br-phys", "br-ex")
    # The external VLAN: its local VLAN on br-int, the provider VLAN on br-ex.
    gw = router.gateway
    assert gw is not None
    int_ex, phy_ex = ports["int-br-ex"].ofport, ports["phy-br-ex"].ofport
    ex_flows = node.add_flows_text("br-ex")
    assert f"in_port={phy_ex},dl_vlan={gw.local_vlan},actions=set_field:4196->vlan_vid" in ex_flows
    int_flows = node.add_flows_text("br-int")
    assert (
        f"in_port={int_ex},dl_vlan=100,actions=set_field:{0x1000 | gw.local_vlan}->vlan_vid"
        in int_flows
    )
    # The external network is not a VLAN of br-phys.
    assert "int-br-phys" not in ports and "dl_vlan=100" not in node.add_flows_text("br-phys")


def test_a_router_brings_its_networks_to_a_node_without_vms() -> None:
    text = (
        BASE.replace('node = "net1"\nnetwork', 'node = "cmp1"\nnetwork')
        + """
[[nodes]]
name = "cmp1"

[[routers]]
name = "r1"
node = "net1"
interfaces = ["private"]
"""
    )
    state = generate_node(parse_scenario(text), "net1")
    assert state.vm_ports == ()
    assert [n.segmentation_id for n in state.networks] == [7]
    assert "tun_id=0x7" in state.add_flows_text("br-tun")
    assert state.routers[0].gateway is None
    assert state.bridges == ("br-int", "br-tun", "br-phys")


@pytest.mark.parametrize(
    ("router", "message"),
    [
        ('interfaces = ["nope"]', "network 'nope': no such network"),
        ('interfaces = ["public"]', "is an external network: use external_gateway"),
        ('interfaces = [{ network = "private", ip = "10.0.0.11" }]', "already used by port"),
        ('interfaces = [{ network = "private", ip = "10.9.0.1" }]', "outside the network's"),
        ('external_gateway = { network = "private" }', "is not external"),
        ('floating_ips = [{ port = "web1", address = "203.0.113.9" }]', "need an external"),
        ("enable_snat = false", "enable_snat = false needs an external_gateway"),
        ('node = "elsewhere"', "node 'elsewhere': no such node"),
    ],
)
def test_router_mistakes_are_reported_with_their_line(router: str, message: str) -> None:
    lines = ["[[routers]]", 'name = "r1"']
    if not router.startswith("node"):
        lines.append('node = "net1"')
    lines.append(router)
    text = BASE + "\n" + "\n".join(lines) + "\n"
    line = text.splitlines().index("[[routers]]") + 1
    with pytest.raises(InputError) as err:
        parse_scenario(text, source="lab.toml")
    assert f"lab.toml:{line}: routers[0]: " in str(err.value)
    assert message in str(err.value)


def test_a_floating_ip_must_be_for_a_port_behind_the_router() -> None:
    text = (
        BASE.replace('name = "private"', 'name = "other"', 1)
        + """
[[networks]]
name = "private"
type = "vxlan"
segmentation_id = 8
cidr = "10.5.0.0/24"

[[routers]]
name = "r1"
node = "net1"
interfaces = ["private"]
external_gateway = { network = "public", ip = "203.0.113.1" }
floating_ips = [{ port = "web1", address = "203.0.113.10" }]
"""
    )
    text = text.replace(
        'network = "private"\nip = "10.0.0.11"', 'network = "other"\nip = "10.0.0.11"'
    )
    with pytest.raises(InputError) as err:
        parse_scenario(text)
    assert "already used by the external network's gateway" in str(err.value)
    assert "on a network the router has no interface on" in str(err.value)


def test_an_external_network_must_be_a_vlan() -> None:
    text = BASE.replace(
        'type = "vlan"\nsegmentation_id = 100', 'type = "vxlan"\nsegmentation_id = 100'
    )
    with pytest.raises(InputError, match="an external network must be of type vlan"):
        parse_scenario(text)


def test_vm_ports_on_an_external_network_are_refused() -> None:
    text = BASE + '\n[[ports]]\nname = "edge"\nnode = "net1"\nnetwork = "public"\n'
    with pytest.raises(InputError, match="port 'edge' is on the external network 'public'"):
        parse_scenario(text)
