"""The fidelity suite's node shapes without a lab: random router scenarios are valid and varied,
routed packets say how the router forwards them, and the engine's conntrack follows a floating
IP's ICMP echo back out (the reply of a DNATed echo was once taken for an invalid packet)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, ip_network

import pytest

from nodetrace.cli import main
from nodetrace.engine.netfilter import NetfilterEngine
from nodetrace.engine.walk import ToDevice, ToHost
from nodetrace.errors import UsageError
from nodetrace.lab.fidelity_engines import ScenarioContext
from nodetrace.lab.fidelity_plan import PlanContext, Routed, Send
from nodetrace.lab.fidelity_routed import netfilter_passes, routed_legs, router_path
from nodetrace.lab.fidelity_router import INTERNET, METADATA, plan_router_packets, router_scenario
from nodetrace.lab.fidelity_shapes import SHAPES, parse_shapes
from nodetrace.lab.observe import outside_endpoint
from nodetrace.model.packet import ETH_TYPE_IPV4, IPProto, Packet
from nodetrace.neutron.generate import generate_node
from nodetrace.neutron.scenario import NetworkType, Scenario, parse_scenario
from nodetrace.parsers.iptables_save import parse_iptables_save
from tests.unit.fidelity_fakes import fake_lab_info

OUTSIDE_MAC = "02:00:00:00:00:99"


def _context(scenario: Scenario) -> PlanContext:
    states = {n.name: generate_node(scenario, n.name) for n in scenario.nodes}
    info = fake_lab_info(scenario, "legacy")
    router = scenario.routers[0]
    (state,) = states[router.node].routers
    netns = f"f-{state.namespace}"
    return PlanContext(
        scenario,
        info,
        states,
        {outside_endpoint(router.node): OUTSIDE_MAC},
        {netns: (router.node, state)},
        {netns: router.node},
    )


@pytest.mark.parametrize("kind", [NetworkType.VXLAN, NetworkType.GRE, NetworkType.VLAN])
def test_random_router_scenarios_put_every_network_on_both_nodes(kind: NetworkType) -> None:
    for index in range(6):
        scenario = parse_scenario(router_scenario(random.Random(index), index, kind))
        tenant = [n for n in scenario.networks if not n.external]
        (external,) = [n for n in scenario.networks if n.external]
        assert {n.type for n in tenant} == {kind} and 2 <= len(tenant) <= 3
        assert external.type is NetworkType.VLAN
        (router,) = scenario.routers
        assert router.gateway is not None and router.floating_ips
        assert {i.network for i in router.interfaces} == {n.id for n in tenant}
        for net in tenant:
            nodes = {p.node for p in scenario.ports if p.network == net.id}
            assert nodes == {"cmp1", "cmp2"}, net.name


def test_router_plans_cross_the_router_every_way() -> None:
    rng = random.Random(3)
    scenario = parse_scenario(router_scenario(rng, 4, NetworkType.VXLAN))
    ctx = _context(scenario)
    plan = plan_router_packets(rng, ctx, 120)
    assert len(plan) == 120
    assert {s.kind for s in plan} >= {"east-west", "snat", "floating-ip", "metadata",
                                      "established"}  # fmt: skip
    router = next(r for st in ctx.states.values() for r in st.routers)
    macs = {p.interface.mac for p in router.ports}
    gateway = router.gateway
    assert gateway is not None
    fips = {f.address: f.fixed_ip for f in router.router.floating_ips}
    for send in plan:
        if not send.hops:
            continue
        (routed,) = send.hops
        packet, after = send.packet, routed.after
        assert routed.node == router.router.node
        assert packet.dl_dst in macs, "a routed packet is sent to the router's MAC"
        assert send.trace_at and len({p.node for p in send.trace_at}) == len(send.trace_at)
        if send.kind == "metadata":
            assert packet.nw_dst == METADATA and packet.tp_dst == 80 and routed.out_dev is None
            continue
        assert after.nw_ttl == packet.nw_ttl - 1 and after.dl_src in macs
        if send.kind == "floating-ip":
            assert (
                packet.nw_src == INTERNET and after.nw_dst == fips[IPv4Address(str(packet.nw_dst))]
            )
            assert routed.in_dev == gateway.device
        if send.target.startswith("outside:"):
            assert routed.out_dev == gateway.device and after.dl_dst == OUTSIDE_MAC
            vm = ctx.info.vm(send.source)
            fip = next((a for a, fixed in fips.items() if str(fixed) in vm.ips[0]), None)
            if fip is not None:
                assert after.nw_src == fip
            elif router.router.enable_snat:
                assert after.nw_src == gateway.interface.ip


def test_the_walk_follows_a_routed_packet_over_every_node_it_crosses() -> None:
    rng = random.Random(8)
    scenario = parse_scenario(router_scenario(rng, 2, NetworkType.VLAN))
    ctx = _context(scenario)
    where = scenario.routers[0].node
    other = next(n.name for n in scenario.nodes if n.name != where)
    engines_ctx = ScenarioContext(scenario, ctx.info, ctx.states, {})
    plan = plan_router_packets(rng, ctx, 200)
    east_west = [s for s in plan if s.kind == "east-west"]
    far = [s for s in east_west
           if ctx.info.vm(s.source).node == other == ctx.info.vm(s.target).node]  # fmt: skip
    assert far, "a packet between two VMs on the node without the router"
    legs = routed_legs(engines_ctx, far[0])
    # There, to the router's node across the provider VLAN, and back.
    assert [leg.node for leg in legs] == [other, where, other]
    assert legs[1].packet.dl_vlan is not None and legs[2].packet.dl_vlan is not None
    assert [leg.target is None for leg in legs] == [True, True, False]
    assert legs[2].packet.nw_ttl == far[0].packet.nw_ttl - 1
    metadata = next(s for s in plan if s.kind == "metadata")
    assert isinstance(routed_legs(engines_ctx, metadata)[-1].target, ToHost)


def test_a_packet_through_two_router_namespaces_is_walked_on_each_of_their_nodes() -> None:
    """What a distributed router's centralised SNAT does: the VM's own node routes it to the
    SNAT namespace on another node, which sends it out of that node's br-ex."""
    scenario = parse_scenario(router_scenario(random.Random(2), 2, NetworkType.GRE))
    ctx = _context(scenario)
    engines_ctx = ScenarioContext(scenario, ctx.info, ctx.states, {})
    vm = next(v for v in ctx.info.vms if v.node == "cmp1")
    net = next(n for n in scenario.networks if n.name == vm.network)
    packet = Packet(dl_type=ETH_TYPE_IPV4, nw_src=IPv4Address(vm.ips[0].split("/")[0]),
                    nw_dst=INTERNET, nw_proto=IPProto.ICMP, icmp_type=8, icmp_code=0)  # fmt: skip
    first = Routed("cmp1", "f-cmp1-qrouter", "qr-a", "qr-a", packet, "cmp2", net.id)
    second = Routed("cmp2", "f-snat", "sg-a", "qg-a", packet)
    send = Send(packet, vm.name, "snat", "north-south", "outside:cmp2", hops=(first, second))
    legs = routed_legs(engines_ctx, send)
    assert [(leg.node, leg.start) for leg in legs] == [
        ("cmp1", ctx.states["cmp1"].vm_port(vm.name).devices.tap),
        ("cmp2", "und0"),
    ]
    assert dict(legs[1].metadata)["tun_id"] == str(net.segmentation_id)
    assert legs[1].target == ToDevice("ext0")
    passes = netfilter_passes(engines_ctx, send)
    assert [p.where for p in passes] == ["cmp1", "f-cmp1-qrouter", "f-snat"]


def test_shapes_are_named_and_checked() -> None:
    assert [s.name for s in parse_shapes("all")] == list(SHAPES)
    assert list(SHAPES) == ["hybrid", "ovs-firewall", "legacy-router", "ovs-firewall-router", "dvr"]
    assert [s.name for s in parse_shapes("legacy-router,hybrid")] == ["legacy-router", "hybrid"]
    with pytest.raises(UsageError, match="hybrid,metadata"):
        parse_shapes("hybrid,metadata")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shapes", "hybrid,nat"], "--shapes 'hybrid,nat': expected a comma-separated list"),
        (["--shapes", "hybrid", "--firewall", "both"], "give --shapes or --firewall, not both"),
    ],
)
def test_lab_fidelity_refuses_unknown_shapes_in_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lab", "fidelity", "--cases", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_reply_to_a_floating_ips_echo_leaves_from_the_floating_ip() -> None:
    scenario = parse_scenario(router_scenario(random.Random(1), 1, NetworkType.GRE))
    router = generate_node(scenario, scenario.routers[0].node).routers[0]
    gateway = router.gateway
    assert gateway is not None
    fip = router.router.floating_ips[0]
    inside = next(
        p.device for p in router.internal if fip.fixed_ip in ip_network(p.cidr, strict=False)
    )
    engine = NetfilterEngine(parse_iptables_save(router.iptables_save, source="router"))

    def echo(src: IPv4Address, dst: IPv4Address, icmp_type: int) -> Packet:
        return Packet(dl_type=ETH_TYPE_IPV4, nw_src=src, nw_dst=dst, nw_proto=IPProto.ICMP,
                      icmp_type=icmp_type, icmp_code=0, icmp_id=77, icmp_seq=1)  # fmt: skip

    inbound = echo(INTERNET, fip.address, 8)
    first = engine.run(inbound, router_path(Routed("n", "r", gateway.device, inside, inbound)),
                       routed=True)  # fmt: skip
    assert (first.ct_state, first.packet.nw_dst) == ("NEW", fip.fixed_ip)
    reply = echo(fip.fixed_ip, INTERNET, 0)
    back = engine.run(reply, router_path(Routed("n", "r", inside, gateway.device, reply)),
                      routed=True)  # fmt: skip
    assert back.ct_state == "ESTABLISHED"
    assert back.packet.nw_src == fip.address
