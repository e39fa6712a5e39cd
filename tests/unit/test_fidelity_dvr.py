"""The fidelity suite's DVR shape without a lab: random distributed-router scenarios follow
dvr.toml's layout, and each planned packet is routed by its own node's router copy, crosses
the underlay with that node's DVR MAC, leaves through the snat namespace on the dvr_snat node
or through its node's fip namespace, and is walked on every node it crosses."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from nodetrace.errors import UsageError
from nodetrace.lab.fidelity import run_fidelity
from nodetrace.lab.fidelity_dvr import SNAT_NODE, dvr_scenario, plan_with
from nodetrace.lab.fidelity_engines import ScenarioContext
from nodetrace.lab.fidelity_plan import PlanContext, Send
from nodetrace.lab.fidelity_routed import netfilter_passes, routed_legs
from nodetrace.lab.fidelity_shapes import SHAPES
from nodetrace.lab.observe import outside_endpoint
from nodetrace.model.openflow_spelling import of10_actions
from nodetrace.neutron.generate import generate_node
from nodetrace.neutron.ovs_agent import UNDERLAY_NIC
from nodetrace.neutron.scenario import NetworkType, Scenario, parse_scenario
from tests.unit.fidelity_fakes import fake_lab_info


def _fake_mac(netns: str, device: str) -> str:
    """A stand-in for the MAC the kernel picks for a veth end."""
    n = sum(map(ord, netns + device)) % 256
    return f"02:00:00:00:{'01' if device.startswith('rfp-') else '02'}:{n:02x}"


def _context(scenario: Scenario) -> PlanContext:
    states = {n.name: generate_node(scenario, n.name) for n in scenario.nodes}
    info = fake_lab_info(scenario, "nft")
    routers = {
        f"f-{node}-{r.namespace}": (node, r) for node, s in states.items() for r in s.routers
    }
    namespaces = {ns: node for ns, (node, _) in routers.items()}
    for node, state in states.items():
        namespaces |= {f"f-{node}-{fip.namespace}": node for fip in state.fip_namespaces}
        namespaces |= {f"f-{snat.namespace}": node for snat in state.snat_routers}
    outsides = {outside_endpoint(n): f"02:00:00:00:99:0{i}" for i, n in enumerate(states)}
    return PlanContext(scenario, info, states, outsides, routers, namespaces)


def _plan(seed: int, kind: NetworkType, count: int = 200) -> tuple[PlanContext, list[Send]]:
    rng = random.Random(seed)
    ctx = _context(parse_scenario(dvr_scenario(rng, seed, kind)))
    return ctx, plan_with(rng, ctx, count, _fake_mac)


@pytest.mark.parametrize("kind", [NetworkType.VXLAN, NetworkType.GRE, NetworkType.VLAN])
def test_random_dvr_scenarios_follow_the_example_layout(kind: NetworkType) -> None:
    for seed in range(10):
        scenario = parse_scenario(dvr_scenario(random.Random(seed), seed, kind))
        (router,) = scenario.routers
        assert router.distributed and router.gateway is not None
        assert {n.name for n in scenario.nodes} == {"cmp1", "cmp2", SNAT_NODE}
        tenant = [n for n in scenario.networks if not n.external]
        assert {n.type for n in tenant} == {kind}
        for net in tenant:
            assert {p.node for p in scenario.ports if p.network == net.id} == {"cmp1", "cmp2"}
        with_fip = {f.port for f in router.floating_ips}
        assert 0 < len(with_fip) < len(scenario.ports), "VMs with and without a floating IP"
        assert SNAT_NODE not in {p.node for p in scenario.ports}


def test_dvr_plans_cover_every_way_across_the_router() -> None:
    ctx, plan = _plan(3, NetworkType.VXLAN)
    assert len(plan) == 200
    kinds = Counter((s.kind, s.path) for s in plan)
    assert {("east-west", "same-node"), ("east-west", "cross-node"), ("snat", "north-south"),
            ("floating-ip-out", "north-south"), ("floating-ip", "from-outside"),
            ("established", "north-south")} <= set(kinds)  # fmt: skip
    vms = {vm.name: vm for vm in ctx.info.vms}
    for send in plan:
        first = send.hops[0]
        if send.source in vms:
            # Always routed first by the copy on the sender's own node.
            assert first.node == vms[send.source].node
            assert first.netns == f"f-{first.node}-{ctx.states[first.node].routers[0].namespace}"
        if send.kind == "snat":
            assert [h.in_dev[:3] for h in send.hops] == ["qr-", "sg-"]
            assert send.hops[1].node == SNAT_NODE
            assert (send.hops[1].out_dev or "").startswith("qg-")
            assert send.target == outside_endpoint(SNAT_NODE)
        if send.kind == "floating-ip":
            assert [(h.in_dev[:3], (h.out_dev or "")[:3]) for h in send.hops] == [
                ("fg-", "fpr"), ("rfp", "qr-")]  # fmt: skip
            vm = vms[send.target]
            assert str(send.hops[-1].after.nw_dst) == vm.ips[0].split("/")[0]


def test_a_cross_node_packet_arrives_with_the_source_nodes_dvr_mac() -> None:
    ctx, plan = _plan(5, NetworkType.GRE)
    engines_ctx = ScenarioContext(ctx.scenario, ctx.info, ctx.states, {})
    cross = next(s for s in plan if s.kind == "east-west" and s.path == "cross-node")
    src, dst = ctx.info.vm(cross.source), ctx.info.vm(cross.target)
    legs = routed_legs(engines_ctx, cross)
    assert [(leg.node, leg.start) for leg in legs][1:] == [(dst.node, UNDERLAY_NIC)]
    assert legs[1].packet.dl_src == ctx.states[src.node].dvr_mac
    assert legs[1].packet.dl_dst == dst.mac
    # The receiving node's br-int gives the frame the router's MAC back before the VM's bridge.
    passes = netfilter_passes(engines_ctx, cross)
    assert passes[-1].packet.dl_src == cross.hops[0].after.dl_src != legs[1].packet.dl_src

    snat = next(s for s in plan if s.kind == "snat" and ctx.info.vm(s.source).node != SNAT_NODE)
    legs = routed_legs(engines_ctx, snat)
    assert [leg.node for leg in legs] == [ctx.info.vm(snat.source).node, SNAT_NODE]
    assert legs[1].packet.dl_src == ctx.states[ctx.info.vm(snat.source).node].dvr_mac


def test_the_dvr_shape_runs_on_iptables_nft_only() -> None:
    assert SHAPES["dvr"].backends == ("nft",)
    with pytest.raises(UsageError, match="iptables-nft only"):
        run_fidelity(cases=1, seed=1, backends=("legacy",), shapes=[SHAPES["dvr"]])


def test_a_dvr_mac_rewrite_is_compared_in_the_dumps_spelling() -> None:
    """ofproto/trace prints the agent's set_field; ovs-ofctl dump-flows (OpenFlow 1.0) prints
    mod_dl_src/mod_dl_dst, as the lab's snapshots hold it."""
    traced = "set_field:fa:16:3f:00:00:01->eth_src,goto_table:58"
    assert of10_actions(traced) == "mod_dl_src:fa:16:3f:00:00:01,resubmit(,58)"
    assert of10_actions("set_field:fa:16:3e:00:00:02->eth_dst,output:3") == (
        "mod_dl_dst:fa:16:3e:00:00:02,output:3"
    )
