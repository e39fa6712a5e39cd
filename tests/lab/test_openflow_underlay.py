"""After a tunnel output on a userspace (netdev) switch, the OpenFlow engine follows the outer
packet into the underlay bridge exactly as a real Open vSwitch 3.1 ``ofproto/trace`` does.

One private ovs-vswitchd in a test namespace: br-int, br-tun with VXLAN/Geneve/GRE ports, and
br-phys holding the tunnel endpoint addresses (10.0.0.11 and 10.0.0.21 on its LOCAL port) and an
uplink. The snapshot is read back with nodetrace's parsers, including ``ovs/route/show`` and
``tnl/neigh/show``; every trace line (underlay bridge and OVS's routing/neighbour lines
included) must be OVS's, and the packet leaving the uplink must carry the outer addresses and
MACs OVS's ``tnl_push`` writes.
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from pathlib import Path

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.model.openflow_trace import OpenFlowTrace, TracePass
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.trace import Outcome
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree, parse_ovs_appctl_ofproto_trace
from nodetrace.parsers.ovs_appctl_tunnel_underlay import (
    parse_ovs_appctl_ovs_route_show,
    parse_ovs_appctl_tnl_neigh_show,
)
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list
from nodetrace.render.ofproto_trace import ofproto_lines
from tests.conftest import unique
from tests.lab.openflow_harness import OvsLab, Pipeline, PortSpec, nodetrace_trace

pytestmark = pytest.mark.lab

NEIGHBOUR_MAC = "aa:bb:cc:00:00:01"
"""The MAC ``OvsLab`` gives the first remote (10.0.0.12) in br-phys's tunnel neighbour cache."""

TUNNELS = {
    # port: OVSDB options (the test asserts what OVS does with each)
    "vx-local": {"remote_ip": "10.0.0.12", "local_ip": "10.0.0.21", "key": "flow"},
    "vx-route": {"remote_ip": "10.0.0.12", "key": "flow"},
    "vx-gw": {"remote_ip": "10.5.0.7", "key": "flow", "dst_port": "8472"},
    "vx-miss": {"remote_ip": "10.0.0.13", "key": "flow"},
    "vx-noroute": {"remote_ip": "10.9.9.9", "key": "flow"},
    "vx-badsrc": {"remote_ip": "10.0.0.12", "local_ip": "10.7.7.7", "key": "flow"},
    "gnv": {"remote_ip": "10.0.0.12", "key": "flow"},
    "gre1": {"remote_ip": "10.0.0.12", "key": "flow"},
}
_TYPES = {"gnv": "geneve", "gre1": "gre"}
MORE = {
    # dl_dst's last byte: actions of a tunnel output that is not the packet's last output, or is
    "tunnel-then-port": "set_field:0x70->tun_id,output:vx-route,output:local-x",
    "port-then-tunnel": "set_field:0x71->tun_id,output:local-x,output:vx-route",
}
CASES = [*TUNNELS, *MORE]


def _pipeline() -> Pipeline:
    ports = {
        "br-int": [PortSpec("vm1"), PortSpec("patch-tun", "patch", options={"peer": "patch-int"})],
        "br-tun": [PortSpec("patch-int", "patch", options={"peer": "patch-tun"})]
        + [PortSpec(n, _TYPES.get(n, "vxlan"), options=o) for n, o in TUNNELS.items()]
        + [PortSpec("local-x")],
    }
    tun = [
        f"table=0,priority=2,in_port=patch-int,dl_dst=fa:16:3e:00:01:{i:02x},"
        f"actions=set_field:{0x60 + i:#x}->tun_id,output:{name}"
        for i, name in enumerate(TUNNELS, start=1)
    ]
    tun += [
        f"table=0,priority=2,in_port=patch-int,dl_dst=fa:16:3e:00:01:{i:02x},actions={actions}"
        for i, actions in enumerate(MORE.values(), start=len(TUNNELS) + 1)
    ]
    flows = {"br-int": ["priority=0,actions=output:patch-tun"], "br-tun": tun}
    return Pipeline(ports, flows, remotes=("10.0.0.12",))


def _snapshot(lab: OvsLab) -> tuple[OvsSwitch, dict[str, str]]:
    """Every bridge, the underlay included, read as a node snapshot reads it."""
    o = lab.ovs
    flows, shows, fdbs = {}, {}, {}
    for br in lab.bridges:
        flows[br] = parse_ovs_ofctl_dump_flows(o.ofctl("-O", "OpenFlow13", "dump-flows", br))
        shows[br] = parse_ovs_ofctl_show(o.ofctl("show", br))
        fdbs[br] = parse_ovs_appctl_fdb_show(o.appctl("fdb/show", br))
    tables = [
        parse_ovs_vsctl_list(o.vsctl("--format=json", "list", t))
        for t in ("Bridge", "Port", "Interface")
    ]
    texts = {"route": o.appctl("ovs/route/show"), "neigh": o.appctl("tnl/neigh/show")}
    return OvsSwitch.build(flows, ovsdb=ovsdb_from_tables(tables), ofctl=shows, fdb=fdbs), texts


def _flow(i: int) -> str:
    return (
        "tcp,in_port=vm1,dl_src=fa:16:3e:00:00:09,"
        f"dl_dst=fa:16:3e:00:01:{i:02x},nw_src=10.1.0.1,nw_dst=10.1.0.2,nw_ttl=64,"
        "tcp_src=40000,tcp_dst=22"
    )


def _tree_lines(ovs_text: str, nt: OpenFlowTrace) -> tuple[list[str], list[str]]:
    observed = parse_ovs_appctl_ofproto_trace(ovs_text)
    ovs = [x for x in ofproto_lines(TracePass("", observed_tree(observed.passes[0]), None))]
    mine = ofproto_lines(nt.passes[0])
    return [x for x in ovs if x.strip()], [x for x in mine if x.strip()]


_PUSH = re.compile(
    r"tnl_push\(.*eth\(dst=(?P<dmac>[0-9a-f:]+),src=(?P<smac>[0-9a-f:]+).*"
    r"ipv4\(src=(?P<src>[\d.]+),dst=(?P<dst>[\d.]+),proto=(?P<proto>\d+)"
)


def test_native_tunnel_continues_into_the_underlay_bridge(lab: Resources, tmp_path: Path) -> None:
    ovs = OvsLab(lab, unique("ofu"), tmp_path)
    ovs.load(_pipeline())
    ns, o = ovs.netns, ovs.ovs
    # A second endpoint address on br-phys (for a tunnel with its own local_ip), a route through
    # a gateway (added to OVS's router), the neighbour learned on the uplink, and a br-phys flow
    # that only the Geneve outer packet (UDP 6081 from LOCAL) matches.
    run(["ip", "addr", "add", "10.0.0.21/24", "dev", "br-phys"], netns=ns)
    o.appctl("ovs/route/add", "10.5.0.0/24", "br-phys", "10.0.0.12")
    o.appctl("fdb/add", "br-phys", "uplink", "0", NEIGHBOUR_MAC)
    o.ofctl("add-flow", "br-phys", "priority=5,in_port=LOCAL,udp,tp_dst=6081,actions=drop")
    switch, texts = _snapshot(ovs)
    routes = parse_ovs_appctl_ovs_route_show(texts["route"], source="ovs/route/show")
    neighbours = parse_ovs_appctl_tnl_neigh_show(texts["neigh"], source="tnl/neigh/show")
    assert any(r.dev == "br-phys" and r.local for r in routes), texts["route"]
    dpif = parse_ovs_appctl_dpif_show(o.appctl("dpif/show"))
    engine = OpenFlowEngine(switch, routes=routes, neighbours=neighbours, dpif=dpif)

    failures = []
    derived_count = 0
    for i, name in enumerate(CASES, start=1):
        ovs_text = ovs.trace("br-int", _flow(i))
        nt = nodetrace_trace(engine, "br-int", _flow(i))
        want, got = _tree_lines(ovs_text, nt)
        if want != got:
            failures.append(
                f"{name}:\nOVS:\n" + "\n".join(want) + "\nnodetrace:\n" + "\n".join(got)
            )
            continue
        actions = parse_ovs_appctl_ofproto_trace(ovs_text).passes[0].datapath_actions or ""
        derived = nt.passes[0].datapath_actions or ""
        if not derived.startswith("(not derived") and derived != actions:
            failures.append(f"{name}: datapath actions OVS {actions}\nnodetrace {derived}")
        push = _PUSH.search(actions)
        leaving = [e for e in nt.egress if e.carries is not None]
        if push is None:
            assert not leaving, f"{name}: OVS sends nothing ({actions}), nodetrace {nt.egress}"
            continue
        assert [e.port for e in leaving] == ["uplink"], (name, nt.egress)
        derived_count += not derived.startswith("(not derived")
        outer = leaving[0].packet
        assert (outer.dl_src, outer.dl_dst) == (push["smac"], push["dmac"]), (name, actions)
        assert (str(outer.nw_src), str(outer.nw_dst)) == (push["src"], push["dst"]), name
        assert outer.nw_proto == int(push["proto"]), name
    assert not failures, "\n\n".join(failures)
    assert derived_count == 6  # every case that leaves the uplink, clone() or not

    # What each case showed, in words a user reads.
    by_name = {n: nodetrace_trace(engine, "br-int", _flow(i)) for i, n in enumerate(TUNNELS, 1)}
    assert by_name["vx-miss"].outcome is Outcome.UNKNOWN
    assert "sends an ARP request" in by_name["vx-miss"].verdict
    assert by_name["vx-noroute"].outcome is Outcome.DROPPED
    assert "no route to 10.9.9.9" in by_name["vx-noroute"].verdict
    assert "10.7.7.7 is not a local address" in by_name["vx-badsrc"].verdict
    assert by_name["gnv"].outcome is Outcome.DROPPED  # br-phys's flow drops the Geneve packet
    gw = by_name["vx-gw"].egress[0]
    assert (gw.packet.nw_dst, gw.packet.tp_dst, gw.packet.dl_dst) == (
        ip_address("10.5.0.7"),
        8472,
        NEIGHBOUR_MAC,
    )


def test_without_neighbour_cache_the_outer_mac_is_stated_unknown(
    lab: Resources, tmp_path: Path
) -> None:
    """No ``tnl/neigh/show`` in the snapshot: nodetrace stops at the encapsulation and says
    why, instead of inventing an outer MAC."""
    ovs = OvsLab(lab, unique("ofv"), tmp_path)
    ovs.load(_pipeline())
    switch, texts = _snapshot(ovs)
    routes = parse_ovs_appctl_ovs_route_show(texts["route"], source="ovs/route/show")
    nt = nodetrace_trace(OpenFlowEngine(switch, routes=routes), "br-int", _flow(2))
    assert [e.port for e in nt.egress] == ["vx-route"]
    assert nt.egress[0].encap is not None
    assert any("(ovs-appctl tnl/neigh/show) was not given" in a for a in nt.assumptions)
    nt = nodetrace_trace(OpenFlowEngine(switch), "br-int", _flow(2))
    assert any("(ovs-appctl ovs/route/show) were not given" in a for a in nt.assumptions)
