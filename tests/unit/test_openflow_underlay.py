"""Native tunnels (userspace datapath) followed into the underlay bridge, against real
``ofproto/trace`` answers recorded from OVS 3.1 (tests/data/openflow/lab-underlay, see
SOURCES.md): every printed line is OVS's -- the routing and neighbour lines, the underlay bridge
and its NORMAL -- and a snapshot without OVS's routes or neighbour cache says what it lacks."""

from __future__ import annotations

import dataclasses

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.model.openflow_trace import OpenFlowTrace, TracePass
from nodetrace.model.trace import Outcome
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree, parse_ovs_appctl_ofproto_trace
from nodetrace.parsers.ovs_appctl_tunnel_underlay import (
    parse_ovs_appctl_ovs_route_show,
    parse_ovs_appctl_tnl_neigh_show,
)
from nodetrace.render.ofproto_trace import ofproto_lines, render_ofproto
from tests.lab.openflow_harness import nodetrace_trace
from tests.unit.test_openflow_recorded import LABS, load_recorded, recorded_traces

FOLDER = LABS / "lab-underlay"
ROUTES = parse_ovs_appctl_ovs_route_show((FOLDER / "ovs-appctl-ovs-route-show.txt").read_text())
NEIGHBOURS = parse_ovs_appctl_tnl_neigh_show((FOLDER / "ovs-appctl-tnl-neigh-show.txt").read_text())
DPIF = parse_ovs_appctl_dpif_show((FOLDER / "ovs-appctl-dpif-show.txt").read_text())
CASES = recorded_traces(FOLDER)


def _engine(**kw: object) -> OpenFlowEngine:
    args: dict[str, object] = {"routes": ROUTES, "neighbours": NEIGHBOURS, "dpif": DPIF}
    args.update(kw)
    return OpenFlowEngine(load_recorded(FOLDER), **args)  # type: ignore[arg-type]


def _by_dst(last_byte: int) -> tuple[str, str, str]:
    bridge, flow, _, text = next(
        c for c in CASES if f"dl_dst=fa:16:3e:00:01:{last_byte:02x}" in c[1]
    )
    return bridge, flow, text


@pytest.mark.parametrize(("bridge", "flow", "text"), [(c[0], c[1], c[3]) for c in CASES])
def test_every_line_is_ofproto_trace_own(bridge: str, flow: str, text: str) -> None:
    observed = parse_ovs_appctl_ofproto_trace(text).passes[0]
    nt = nodetrace_trace(_engine(), bridge, flow)
    want = ofproto_lines(TracePass("", observed_tree(observed), None))
    assert [x for x in ofproto_lines(nt.passes[0]) if x.strip()] == [x for x in want if x.strip()]


def _leaving(nt: OpenFlowTrace) -> list[tuple[str, str, str, str, str, int | None]]:
    return [
        (e.port, e.packet.dl_src, e.packet.dl_dst, str(e.packet.nw_src), str(e.packet.nw_dst),
         e.packet.tp_dst)
        for e in nt.egress
    ]  # fmt: skip


def test_the_outer_packet_leaves_the_uplink_as_tnl_push_writes_it() -> None:
    bridge, flow, text = _by_dst(1)  # vx-local: local_ip 10.0.0.21, remote 10.0.0.12
    assert "src=10.0.0.21,dst=10.0.0.12,proto=17" in text
    nt = nodetrace_trace(_engine(), bridge, flow)
    smac = text.split("tunneling from ")[1].split()[0]
    assert _leaving(nt) == [("uplink", smac, "aa:bb:cc:00:00:01", "10.0.0.21", "10.0.0.12", 4789)]
    assert nt.outcome is Outcome.DELIVERED
    assert nt.egress[0].carries is not None and nt.egress[0].carries.encap.key == 0x61


def test_a_gateway_route_takes_the_gateway_mac_and_keeps_the_remote_address() -> None:
    bridge, flow, text = _by_dst(3)  # vx-gw: 10.5.0.7 via 10.0.0.12, dst_port 8472
    assert "-> tunneling to 10.0.0.12 via br-phys" in text
    nt = nodetrace_trace(_engine(), bridge, flow)
    assert _leaving(nt)[0][2:] == ("aa:bb:cc:00:00:01", "10.0.0.11", "10.5.0.7", 8472)


def test_failures_are_ovs_own_and_the_verdict_says_which_table_was_missing_what() -> None:
    miss = nodetrace_trace(_engine(), *_by_dst(4)[:2])
    assert miss.outcome is Outcome.UNKNOWN and "no tunnel neighbour entry for 10.0.0.13" in (
        miss.verdict
    )
    noroute = nodetrace_trace(_engine(), *_by_dst(5)[:2])
    assert noroute.outcome is Outcome.DROPPED and "no route to 10.9.9.9" in noroute.verdict
    badsrc = nodetrace_trace(_engine(), *_by_dst(6)[:2])
    assert "local_ip 10.7.7.7 is not a local address" in badsrc.verdict


def test_a_route_through_a_device_that_is_not_an_ovs_bridge_fails_as_ovs_says() -> None:
    routes = tuple(
        dataclasses.replace(r, dev="eth9") if r.prefix.prefixlen == 24 and r.dev == "br-phys" else r
        for r in ROUTES
    )
    nt = nodetrace_trace(_engine(routes=routes), *_by_dst(2)[:2])
    assert ">> native tunnel routing failed" in render_ofproto(nt)
    assert "leaves by eth9, which is not an OVS bridge" in nt.verdict


def test_without_the_neighbour_cache_the_outer_mac_is_unknown_and_said() -> None:
    nt = nodetrace_trace(_engine(neighbours=None), *_by_dst(2)[:2])
    assert [e.port for e in nt.egress] == ["vx-route"] and nt.egress[0].encap is not None
    assert any("(ovs-appctl tnl/neigh/show) was not given" in a for a in nt.assumptions)
    assert "aa:bb:cc" not in render_ofproto(nt)


def test_without_ovs_routes_the_underlay_is_not_followed_and_said() -> None:
    nt = nodetrace_trace(_engine(routes=None), *_by_dst(2)[:2])
    assert [e.port for e in nt.egress] == ["vx-route"]
    assert any("(ovs-appctl ovs/route/show) were not given" in a for a in nt.assumptions)


def test_a_stale_neighbour_entry_is_used_and_said() -> None:
    stale = tuple(dataclasses.replace(n, stale=True) for n in NEIGHBOURS)
    nt = nodetrace_trace(_engine(neighbours=stale), *_by_dst(2)[:2])
    assert nt.egress[0].packet.dl_dst == "aa:bb:cc:00:00:01"
    assert any("stale" in a for a in nt.assumptions)


def test_datapath_actions_are_ovs_own_tnl_push_and_clone_included() -> None:
    derived = []
    for bridge, flow, ct, text in CASES:
        ovs = parse_ovs_appctl_ofproto_trace(text).passes[0].datapath_actions
        mine = nodetrace_trace(_engine(), bridge, flow, ct).passes[0].datapath_actions or ""
        if not mine.startswith("(not derived"):
            assert mine == ovs, flow
            derived.append(mine)
    assert len(derived) == len(CASES) - 1  # all but the neighbour-cache miss
    assert any(d.startswith("clone(tnl_push(") for d in derived)
    assert any(",tnl_push(" in d for d in derived)
