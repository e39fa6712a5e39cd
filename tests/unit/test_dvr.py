"""What the generator says Neutron's agents put on compute nodes for a distributed router:
which nodes get its namespace, the DVR MACs, the OVS agent's DVR flows, the L3 agent's permanent
ARP entries and iptables, and the scenario mistakes DVR reports. tests/lab/test_dvr_lab.py
checks the same flows and entries against what Open vSwitch and the kernel hold, and the walk
against real packets."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest

from nodetrace.errors import InputError
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.ovs_agent import BR_INT, BR_TUN, PATCH_INT, PATCH_TUN
from nodetrace.neutron.ovs_agent_dvr import DVR_BASE_MAC, dvr_macs
from nodetrace.neutron.scenario import load_scenario, parse_scenario

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/dvr.toml"

BASE = """
[[nodes]]
name = "cmp1"

[[nodes]]
name = "cmp2"

[[nodes]]
name = "cmp3"

[[networks]]
name = "blue"
type = "vxlan"
segmentation_id = 7
cidr = "10.0.0.0/24"

[[networks]]
name = "green"
type = "vxlan"
segmentation_id = 8
cidr = "10.1.0.0/24"

[[ports]]
name = "b1"
node = "cmp1"
network = "blue"
ip = "10.0.0.11"
allowed_address_pairs = [{ ip_address = "10.0.0.100", mac_address = "fa:16:3e:00:00:01" }]

[[ports]]
name = "g2"
node = "cmp2"
network = "green"
ip = "10.1.0.12"
"""

ROUTER = """
[[routers]]
name = "r1"
distributed = true
interfaces = ["blue", "green"]
"""


@pytest.fixture(scope="module")
def cmp1() -> NodeState:
    return generate_node(load_scenario(SCENARIO), "cmp1")


def _flows(state: NodeState, bridge: str, table: int) -> list[tuple[int, tuple[str, ...], str]]:
    return sorted(
        (f.priority, f.match, f.actions)
        for f in state.flows
        if f.bridge == bridge and f.table == table
    )


def test_the_router_is_on_every_node_with_a_vm_on_its_networks_and_nowhere_else() -> None:
    scenario = parse_scenario(BASE + ROUTER)
    states = {n: generate_node(scenario, n) for n in ("cmp1", "cmp2", "cmp3")}
    assert [len(s.routers) for s in states.values()] == [1, 1, 0]
    one, two = states["cmp1"].routers[0], states["cmp2"].routers[0]
    assert one.namespace == two.namespace
    assert [(p.device, p.interface.mac, p.cidr) for p in one.internal] == [
        (p.device, p.interface.mac, p.cidr) for p in two.internal
    ]
    assert [p.cidr for p in one.internal] == ["10.0.0.1/24", "10.1.0.1/24"]
    # cmp3 hosts nothing of the router's, but its agent runs distributed all the same.
    assert states["cmp3"].dvr_mac is not None
    assert _flows(states["cmp3"], BR_INT, 1) == [(1, (), "drop")]


def test_dvr_macs_are_stable_distinct_and_under_the_base_mac() -> None:
    hosts = [f"cmp{i}" for i in range(200)]
    macs = dvr_macs("dvr", hosts)
    assert macs == dvr_macs("dvr", hosts)
    assert len(set(macs.values())) == len(hosts)
    assert all(m.startswith(DVR_BASE_MAC[:9]) for m in macs.values())


def test_permanent_arp_entries_cover_every_port_of_the_subnets_on_any_node() -> None:
    state = generate_node(parse_scenario(BASE + ROUTER), "cmp1")
    router = state.routers[0]
    qr_blue, qr_green = (p.device for p in router.internal)
    assert sorted((e.device, str(e.ip), e.mac) for e in router.neighbours) == sorted(
        [
            (qr_blue, "10.0.0.11", state.vm_port("b1").port.mac),
            (qr_blue, "10.0.0.100", "fa:16:3e:00:00:01"),
            (qr_green, "10.1.0.12", state.scenario.ports[1].mac),
        ]
    )


def test_br_tun_sends_br_int_traffic_through_dvr_process_and_tunnels_through_dvr_not_learn(
    cmp1: NodeState,
) -> None:
    patch_int = next(p.ofport for p in cmp1.bridge_ports(BR_TUN) if p.name == PATCH_INT)
    from_int = [f for f in _flows(cmp1, BR_TUN, 0) if f[1] == (f"in_port={patch_int}",)]
    assert from_int == [(1, (f"in_port={patch_int}",), "goto_table:1")]
    assert all(a.endswith("goto_table:9") for p, _, a in _flows(cmp1, BR_TUN, 4) if p == 1)
    assert (0, (), "goto_table:10") in _flows(cmp1, BR_TUN, 9)


def test_routed_frames_leave_with_the_nodes_dvr_mac_and_come_back_with_the_routers(
    cmp1: NodeState,
) -> None:
    cmp2 = generate_node(cmp1.scenario, "cmp2")
    router = cmp1.routers[0]
    blue = router.internal[0]
    vlan = f"dl_vlan={blue.local_vlan}"
    assert (
        1,
        (vlan, f"dl_src={blue.interface.mac}"),
        f"set_field:{cmp1.dvr_mac}->eth_src,goto_table:2",
    ) in _flows(cmp1, BR_TUN, 1)
    assert (2, (vlan, f"dl_dst={blue.interface.mac}"), "drop") in _flows(cmp1, BR_TUN, 1)
    assert (3, ("arp", vlan, f"arp_tpa={blue.interface.ip}"), "drop") in _flows(cmp1, BR_TUN, 22)
    # The other node's DVR MAC: no learning in br-tun, to table 1 in br-int.
    patch_tun = next(p.ofport for p in cmp1.bridge_ports(BR_INT) if p.name == PATCH_TUN)
    patch_int = next(p.ofport for p in cmp1.bridge_ports(BR_TUN) if p.name == PATCH_INT)
    assert (1, (f"dl_src={cmp2.dvr_mac}",), f"output:{patch_int}") in _flows(cmp1, BR_TUN, 9)
    assert (
        2,
        (f"in_port={patch_tun}", f"dl_src={cmp2.dvr_mac}"),
        "goto_table:1",
    ) in _flows(cmp1, BR_INT, 0)
    vm = cmp1.vm_port("blue1")
    match = (vlan, f"dl_dst={vm.port.mac}")
    assert (20, match, f"set_field:{blue.interface.mac}->eth_src,goto_table:58") in _flows(
        cmp1, BR_INT, 1
    )
    assert (20, match, f"pop_vlan,output:{vm.ofport}") in _flows(cmp1, BR_INT, 60)


def test_a_router_without_gateway_has_no_nat_rules() -> None:
    """``DvrLocalRouter._handle_router_snat_rules`` empties the chains and, with no gateway,
    adds nothing back; a legacy router keeps its jump to ``float-snat``."""
    state = generate_node(parse_scenario(BASE + ROUTER), "cmp1")
    dvr = state.routers[0].iptables_save.splitlines()
    assert ":neutron-l3-agent-snat - [0:0]" in dvr
    assert not [
        line
        for line in dvr
        if line.startswith(("-A neutron-l3-agent-snat ", "-A neutron-l3-agent-POSTROUTING "))
    ]
    legacy = parse_scenario(BASE + ROUTER.replace("distributed = true", 'node = "cmp1"'))
    rules = generate_node(legacy, "cmp1").routers[0].iptables_save.splitlines()
    assert "-A neutron-l3-agent-snat -j neutron-l3-agent-float-snat" in rules


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ('node = "cmp1"', "node: a distributed router runs on every node"),
        ("enable_snat = false", "enable_snat = false is not modelled for distributed"),
    ],
)
def test_what_distributed_routers_do_not_model_yet_is_reported(extra: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_scenario(BASE + ROUTER + extra + "\n")


def test_distributed_routers_need_tunnel_or_vlan_networks_and_the_hybrid_firewall() -> None:
    flat = BASE.replace('type = "vxlan"\nsegmentation_id = 8', 'type = "flat"')
    with pytest.raises(InputError, match="'green' is flat: distributed routers"):
        parse_scenario(flat + ROUTER)
    with pytest.raises(InputError, match="firewall_driver = iptables_hybrid only"):
        parse_scenario('firewall_driver = "openvswitch"\n' + BASE + ROUTER)


def test_a_floating_ip_lives_on_its_vms_node_behind_the_fip_namespace(cmp1: NodeState) -> None:
    cmp2 = generate_node(cmp1.scenario, "cmp2")
    router = cmp1.routers[0]
    fip = router.router.floating_ips[0]
    link = router.fip_link
    assert link is not None
    # The /31 of 169.254.64.0/18: the even address in the router, the odd one in fip-.
    assert int(link.rfp_ip) % 2 == 0 and link.fpr_ip == link.rfp_ip + 1
    assert link.rfp_ip in ip_network("169.254.64.0/18")
    fip_rules = [(r.src, r.src_len, r.priority) for r in router.rules if r.table == 16]
    assert fip_rules == [(fip.fixed_ip, 32, 32768)]
    assert not [r for r in cmp2.routers[0].rules if r.table == 16]  # blue1 is not on cmp2
    [ns] = cmp1.fip_namespaces
    table = int(link.fpr_ip)
    assert [(r.iif, r.table, r.priority) for r in ns.rules] == [(link.fpr, table, table)]
    assert {(r.dst, str(r.via), r.device, r.table) for r in ns.routes} == {
        ("default", "203.0.113.1", ns.device, table),
        (f"{fip.address}/32", str(link.rfp_ip), link.fpr, None),
    }
    assert f"net.ipv4.conf.{ns.device}.proxy_arp=1" in ns.sysctls
    # One agent gateway port per node, each with its own address.
    [other] = cmp2.fip_namespaces
    assert (str(ns.gateway.ip), str(other.gateway.ip)) == ("203.0.113.2", "203.0.113.3")


def test_the_routers_nat_is_only_for_its_nodes_floating_ips(cmp1: NodeState) -> None:
    cmp2 = generate_node(cmp1.scenario, "cmp2")
    link = cmp1.routers[0].fip_link
    assert link is not None
    fip = cmp1.routers[0].router.floating_ips[0]
    one = cmp1.routers[0].iptables_save.splitlines()
    assert (
        f"-A neutron-l3-agent-PREROUTING -d {fip.address}/32 -i {link.rfp} -j DNAT "
        f"--to-destination {fip.fixed_ip}"
    ) in one
    assert (
        f"-A neutron-l3-agent-POSTROUTING ! -o {link.rfp} -m conntrack ! --ctstate DNAT -j ACCEPT"
        in one
    )
    assert (
        f"-A neutron-l3-agent-scope -o {link.rfp} -m mark ! --mark 0x4000000/0xffff0000 -j DROP"
        in one
    )
    two = cmp2.routers[0].iptables_save.splitlines()
    assert not [
        line for line in two if "DNAT" in line or line.startswith("-A neutron-l3-agent-snat")
    ]
    assert "-A neutron-l3-agent-PREROUTING -j CT --notrack" in cmp1.fip_namespaces[0].iptables_save


def test_br_ex_gets_the_physical_bridges_dvr_tables(cmp1: NodeState) -> None:
    flows = sorted(
        (f.table, f.priority, f.match, f.actions) for f in cmp1.flows if f.bridge == "br-ex"
    )
    phy = next(p.ofport for p in cmp1.bridge_ports("br-ex") if p.name.startswith("phy-"))
    assert (0, 2, (f"in_port={phy}",), "goto_table:1") in flows
    assert (0, 2, (f"in_port={phy}",), "drop") not in flows
    assert (2, 2, (f"in_port={phy}",), "drop") in flows
    assert [f for f in flows if f[1] == 4 and f[0] != 2] == []  # VLAN rewrite moved to table 2


def test_the_dvr_snat_node_holds_the_snat_namespace_and_every_copy_redirects_to_it(
    cmp1: NodeState,
) -> None:
    net1 = generate_node(cmp1.scenario, "net1")
    assert cmp1.snat_routers == ()
    [snat] = net1.snat_routers
    assert snat.namespace == "snat-" + snat.router.id
    assert net1.routers[0].namespace == cmp1.routers[0].namespace  # net1 hosts a copy too
    assert [p.device[:3] for p in snat.ports] == ["sg-"] * len(snat.router.interfaces) + ["qg-"]
    assert snat.default_route is not None
    assert "net.netfilter.nf_conntrack_tcp_loose=0" in snat.sysctls
    sg = {p.network.id: p for p in snat.internal}
    router = cmp1.routers[0]
    for qr in router.internal:
        idx = int(qr.interface.ip)
        rule = next(r for r in router.rules if r.table == idx)
        assert (rule.src, rule.src_len, rule.priority) == (qr.interface.ip, 24, idx)
        route = next(r for r in router.routes if r.table == idx)
        assert (route.dst, route.via, route.device) == (
            "default",
            sg[qr.network.id].interface.ip,
            qr.device,
        )
        assert (qr.device, sg[qr.network.id].interface.ip, sg[qr.network.id].interface.mac) in {
            (e.device, e.ip, e.mac) for e in router.neighbours
        }
    rules = snat.iptables_save.splitlines()
    gw = snat.gateway
    assert gw is not None
    assert (
        f"-A neutron-l3-agent-snat -o {gw.device} -j SNAT --to-source {gw.interface.ip} --random-fully"
        in rules
    )
    assert not [line for line in rules if "9697" in line]  # the metadata proxy is the qrouter's
    # The sg- ports get the VM ports' DVR_TO_SRC_MAC flows on net1.
    blue_sg = snat.internal[0]
    assert (
        20,
        (f"dl_vlan={blue_sg.local_vlan}", f"dl_dst={blue_sg.interface.mac}"),
        f"pop_vlan,output:{blue_sg.ofport}",
    ) in _flows(net1, BR_INT, 60)


def test_agent_mode_is_checked() -> None:
    with pytest.raises(InputError, match="agent_mode = 'legacy': expected dvr or dvr_snat"):
        parse_scenario(
            BASE.replace('name = "cmp3"', 'name = "cmp3"\nagent_mode = "legacy"') + ROUTER
        )


def test_on_a_vlan_network_dvr_process_is_the_physical_bridges_and_br_int_matches_the_provider_vlan() -> (
    None
):
    vlan = BASE.replace('type = "vxlan"\nsegmentation_id = 8', 'type = "vlan"\nsegmentation_id = 8')
    cmp2 = generate_node(parse_scenario(vlan + ROUTER), "cmp2")
    green = next(p for p in cmp2.routers[0].internal if p.network.name == "green")
    local, mac = f"dl_vlan={green.local_vlan}", green.interface.mac
    assert (
        1,
        (local, f"dl_src={mac}"),
        f"set_field:{cmp2.dvr_mac}->eth_src,goto_table:2",
    ) in _flows(cmp2, "br-phys", 1)
    assert (2, (local, f"dl_dst={mac}"), "drop") in _flows(cmp2, "br-phys", 1)
    vm = cmp2.vm_port("g2")
    provider = ("dl_vlan=8", f"dl_dst={vm.port.mac}")
    assert (20, provider, f"set_field:{mac}->eth_src,goto_table:58") in _flows(cmp2, BR_INT, 2)
    assert (20, provider, f"pop_vlan,output:{vm.ofport}") in _flows(cmp2, BR_INT, 60)
    assert not [f for f in _flows(cmp2, BR_TUN, 1) if f"dl_src={mac}" in f[1]]
