"""The OpenFlow engine on small pipelines, one OVS rule per test (each rule is also exercised
against a real ovs-vswitchd by tests/lab/test_openflow_differential.py)."""

from __future__ import annotations

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.errors import UsageError
from nodetrace.model.openflow_trace import EgressKind, NodeKind, OpenFlowTrace
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.trace import DeviceAction, DeviceStep, OpenFlowStep, Outcome
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.parsers.ovs_appctl_dpctl_dump_conntrack import parse_ovs_appctl_dpctl_dump_conntrack
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show
from nodetrace.render.ofproto_trace import node_text, ofproto_lines

SHOW = """\
    Bridge br-int
        datapath_type: netdev
        Port patch-tun
            Interface patch-tun
                type: patch
                options: {peer=patch-int}
        Port vm1
            tag: 1
            Interface vm1
        Port vm2
            tag: 1
            Interface vm2
        Port vm3
            tag: 2
            Interface vm3
        Port trunk
            trunks: [1, 3]
            Interface trunk
        Port br-int
            Interface br-int
                type: internal
    Bridge br-tun
        datapath_type: netdev
        Port patch-int
            Interface patch-int
                type: patch
                options: {peer=patch-tun}
        Port vxlan-1
            Interface vxlan-1
                type: vxlan
                options: {key=flow, local_ip="10.0.0.11", remote_ip="10.0.0.50"}
        Port gre-1
            Interface gre-1
                type: gre
                options: {key="77", remote_ip="10.0.0.52"}
"""
PORTS = {
    "patch-tun": 1,
    "vm1": 2,
    "vm2": 3,
    "vm3": 4,
    "trunk": 5,
    "patch-int": 1,
    "vxlan-1": 2,
    "gre-1": 3,
}


def make_switch(
    flows: dict[str, str], fdb: dict[str, str] | None = None, conntrack: str | None = None
) -> OvsSwitch:
    config = parse_ovs_vsctl_show(SHOW)
    from dataclasses import replace

    bridges = []
    for b in config.bridges:
        ports = tuple(
            replace(p, interfaces=tuple(replace(i, ofport=PORTS.get(i.name)) for i in p.interfaces))
            for p in b.ports
        )
        bridges.append(replace(b, ports=ports))
    config = replace(config, bridges=tuple(bridges))
    dumps = {
        br: parse_ovs_ofctl_dump_flows(text, source=f"{br}.flows") for br, text in flows.items()
    }
    tables = {br: parse_ovs_appctl_fdb_show(text) for br, text in (fdb or {}).items()}
    ct = parse_ovs_appctl_dpctl_dump_conntrack(conntrack) if conntrack else None
    return OvsSwitch.build(dumps, ovsdb=config, fdb=tables, conntrack=ct)


def trace(switch: OvsSwitch, bridge: str, in_port: str, flow: str, **kw: object) -> OpenFlowTrace:
    spec = parse_flow(flow)
    return OpenFlowEngine(switch).trace(
        bridge, in_port, spec.packet, spec.metadata, given=spec.given, **kw
    )  # type: ignore[arg-type]


def tables(t: OpenFlowTrace) -> list[tuple[str, int, str]]:
    return [(s.bridge, s.table, s.match) for s in t.steps if isinstance(s, OpenFlowStep)]


IP = (
    "ip,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_ttl=64"
)


def test_equal_priority_is_decided_by_the_subtables_highest_flow() -> None:
    """Both priority-5 flows match; OVS visits the subtable that also holds a priority-100 flow
    first, so its flow wins even though the other is listed first. No assumption is needed."""
    flows = (
        "table=0, priority=5,ip actions=output:3\n"
        "table=0, priority=5,in_port=2 actions=output:4\n"
        "table=0, priority=100,in_port=9 actions=drop\n"
    )
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", IP)
    assert tables(t) == [("br-int", 0, "in_port=2")]
    assert not any("both match" in a for a in t.assumptions)


def test_a_true_tie_is_stated_not_hidden() -> None:
    flows = (
        "table=0, priority=5,ip actions=output:3\ntable=0, priority=5,in_port=2 actions=output:4\n"
    )
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", IP)
    assert tables(t) == [("br-int", 0, "ip")]
    assert any("br-int.flows:2 both match with priority 5" in a for a in t.assumptions)


def test_conjunctive_match_needs_every_clause() -> None:
    flows = (
        "table=0, priority=20,in_port=2 actions=conjunction(7,1/2)\n"
        "table=0, priority=20,ip,nw_src=10.0.0.1 actions=conjunction(7,2/2)\n"
        "table=0, priority=20,conj_id=7 actions=output:3\n"
        "table=0, priority=1 actions=output:4\n"
    )
    sw = make_switch({"br-int": flows})
    both = trace(sw, "br-int", "vm1", IP)
    assert tables(both) == [("br-int", 0, "conj_id=7")]
    assert [e.port for e in both.egress] == ["vm2"]
    one = trace(sw, "br-int", "vm1", IP.replace("nw_src=10.0.0.1", "nw_src=10.0.0.9"))
    assert tables(one) == [("br-int", 0, "")] and [e.port for e in one.egress] == ["vm3"]


def test_flows_on_unmodelled_fields_make_the_answer_unknown_only_when_they_could_win() -> None:
    flows = "table=0, priority=50,tun_metadata0=0x5 actions=drop\ntable=0, priority=10,ip actions=output:3\n"
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", IP)
    assert t.outcome is Outcome.UNKNOWN and "tun_metadata0=0x5" in t.reason
    flows = "table=0, priority=5,tun_metadata0=0x5 actions=drop\ntable=0, priority=10,ip actions=output:3\n"
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", IP)
    assert t.outcome is Outcome.DELIVERED


def test_resubmit_loops_stop_at_ovs_depth_limit() -> None:
    t = trace(
        make_switch({"br-int": "table=0, priority=1 actions=output:3,resubmit(,0)\n"}),
        "br-int",
        "vm1",
        IP,
    )
    assert len(tables(t)) == 65
    errors = [node_text(n) for n in t.passes[0].nodes[0].walk() if n.kind is NodeKind.ERROR]
    assert errors == ["over max translation depth 64"]
    assert t.outcome is Outcome.DROPPED and "Recursion too deep" in t.verdict
    assert t.egress == ()


def test_normal_follows_access_and_trunk_vlans() -> None:
    sw = make_switch(
        {"br-int": "table=0, priority=0 actions=NORMAL\n", "br-tun": "priority=0 actions=drop\n"},
        fdb={
            "br-int": " port  VLAN  MAC                Age\n    3     1  fa:16:3e:00:00:02  static\n"
        },
    )
    known = trace(sw, "br-int", "vm1", IP)
    assert [(e.port, e.packet.dl_vlan) for e in known.egress] == [("vm2", None)]
    flood = trace(sw, "br-int", "vm1", IP.replace("fa:16:3e:00:00:02", "ff:ff:ff:ff:ff:ff"))
    ports = sorted((e.bridge, e.port, e.packet.dl_vlan) for e in flood.egress)
    # VLAN 1: the other access port untagged, the trunk (allows 1) and LOCAL tagged; patch-tun
    # carries it into br-tun, which drops it.
    assert ("br-tun", 0, "") in tables(flood)
    assert ("br-int", "vm2", None) in ports and ("br-int", "trunk", 1) in ports
    assert ("br-int", "br-int", 1) in ports and not any(p[1] == "vm3" for p in ports)
    tagged = trace(sw, "br-int", "vm1", IP.replace("ip,", "ip,dl_vlan=1,"))
    assert tagged.outcome is Outcome.DROPPED
    assert "configured as VLAN 1 access port" in tagged.verdict
    trunk_bad = trace(sw, "br-int", "trunk", IP.replace("ip,", "ip,dl_vlan=2,"))
    assert "not configured for trunking VLAN 2" in trunk_bad.verdict


def test_no_mac_table_means_flood_and_says_so() -> None:
    sw = make_switch(
        {"br-int": "table=0, priority=0 actions=NORMAL\n", "br-tun": "priority=0 actions=drop\n"}
    )
    t = trace(sw, "br-int", "vm1", IP)
    assert any("no MAC table in the snapshot, so NORMAL floods" in a for a in t.assumptions)


def test_patch_port_continues_in_the_peer_with_scrubbed_metadata() -> None:
    sw = make_switch(
        {
            "br-int": "table=0, priority=1 actions=load:0x5->NXM_NX_REG0[],output:1,output:3\n",
            "br-tun": "table=0, priority=1,reg0=0x5 actions=output:2\ntable=0, priority=0,in_port=1 actions=output:3\n",
        }
    )
    t = trace(sw, "br-int", "vm1", IP)
    assert tables(t) == [("br-int", 0, ""), ("br-tun", 0, "in_port=1")]
    patch = [s for s in t.steps if isinstance(s, DeviceStep) and s.action is DeviceAction.PATCH]
    assert patch == [DeviceStep(DeviceAction.PATCH, "patch-tun", "br-int -> br-tun via patch-int")]
    by_port = {e.port: e for e in t.egress}
    assert set(by_port) == {"gre-1", "vm2"}
    assert "reg0=0x5" in by_port["vm2"].flow  # restored after the peer bridge returned


def test_tunnel_egress_records_the_encapsulation() -> None:
    sw = make_switch({"br-tun": "table=0, priority=1 actions=set_tunnel:0x40d,output:2,output:3\n"})
    t = trace(sw, "br-tun", "patch-int", IP.replace("nw_ttl=64", "nw_ttl=64,nw_ecn=3"))
    vx, gre = t.egress
    assert vx.kind is EgressKind.TUNNEL and vx.encap is not None
    assert (
        vx.encap.type,
        vx.encap.key,
        str(vx.encap.src),
        str(vx.encap.dst),
        vx.encap.dst_port,
    ) == ("vxlan", 0x40D, "10.0.0.11", "10.0.0.50", 4789)
    assert vx.encap.tos == 2  # ECN CE is sent as ECT(0)
    assert gre.encap is not None and (gre.encap.type, gre.encap.key, gre.encap.src) == (
        "gre",
        77,
        None,
    )
    assert any("gre-1: no local_ip" in a for a in t.assumptions)
    # A packet that arrived for 10.0.0.52 is not sent to 10.0.0.52 (OVS: our own address), nor
    # back out of its input port.
    ingress = trace(
        sw, "br-tun", "vxlan-1", IP + ",tun_id=0x40d,tun_src=10.0.0.50,tun_dst=10.0.0.52"
    )
    warnings = [node_text(n) for n in ingress.passes[0].nodes[0].walk() if n.kind is NodeKind.WARN]
    assert warnings == ["skipping output to input port", "Not tunneling to our own address"]
    assert ingress.egress == ()


CT_FLOWS = (
    "table=0, priority=10,ct_state=-trk,ip actions=ct(table=1,zone=5)\n"
    "table=1, priority=10,ct_state=+new+trk,ip actions=ct(commit,zone=5),output:3\n"
    "table=1, priority=10,ct_state=+est+trk,ip actions=output:4\n"
)
TCP = "tcp,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=40000,tp_dst=22"


def test_ct_recirculation_states_default_given_and_from_the_tracker() -> None:
    sw = make_switch({"br-int": CT_FLOWS})
    default = trace(sw, "br-int", "vm1", TCP)
    assert len(default.passes) == 2 and default.passes[1].ct_state_default
    assert [e.port for e in default.egress] == ["vm2"]
    assert any("trk|new assumed" in a for a in default.assumptions)
    given = trace(sw, "br-int", "vm1", TCP, ct_states=["trk,est"])
    assert [e.port for e in given.egress] == ["vm3"] and given.passes[1].ct_state == "est|trk"
    table = (
        "tcp,orig=(src=10.0.0.2,dst=10.0.0.1,sport=22,dport=40000),reply=(src=10.0.0.1,"
        "dst=10.0.0.2,sport=40000,dport=22),zone=5,protoinfo=(state=ESTABLISHED)\n"
    )
    tracked = trace(make_switch({"br-int": CT_FLOWS}, conntrack=table), "br-int", "vm1", TCP)
    assert tracked.passes[1].ct_state == "est|rpl|trk"
    assert [e.port for e in tracked.egress] == ["vm3"]
    with pytest.raises(UsageError, match='"new" and "est" are mutually exclusive'):
        trace(sw, "br-int", "vm1", TCP, ct_states=["trk,new,est"])


def test_learn_is_recorded_and_applied_only_to_later_packets() -> None:
    flows = (
        "table=0, priority=1 actions=learn(table=1,priority=5,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
        "output:NXM_OF_IN_PORT[]),resubmit(,1)\n"
        "table=1, priority=0 actions=drop\n"
    )
    sw = make_switch({"br-int": flows})
    engine = OpenFlowEngine(sw, apply_side_effects=True)
    first = parse_flow(IP)
    t1 = engine.trace("br-int", "vm1", first.packet)
    assert [f.text() for f in t1.learned] == [
        "table=1 dl_dst=fa:16:3e:00:00:01 priority=5 actions=output:2"
    ]
    assert t1.outcome is Outcome.DROPPED  # the learned flow is not visible to its own packet
    back = parse_flow(
        IP.replace("00:00:01,dl_dst=fa:16:3e:00:00:02", "00:00:02,dl_dst=fa:16:3e:00:00:01")
    )
    t2 = engine.trace("br-int", "vm2", back.packet)
    assert [e.port for e in t2.egress] == ["vm1"]
    plain = trace(sw, "br-int", "vm1", IP)
    assert plain.learned and not plain.learned[0].applied


def test_fields_a_flow_looked_at_but_the_user_did_not_give_are_assumptions() -> None:
    flows = "table=0, priority=5,ip,dl_src=fa:16:3e:00:00:01 actions=output:3\n"
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", "ip,nw_src=10.0.0.1,nw_dst=10.0.0.2")
    assert any(
        a.startswith("dl_src was not given: taken as 0") and "br-int table 0" in a
        for a in t.assumptions
    )
    assert t.outcome is Outcome.DROPPED


def test_fields_not_given_are_mentioned_only_when_they_decided_the_lookup() -> None:
    flows = (
        "table=0, priority=20,icmp6,icmp_type=135 actions=drop\n"
        "table=0, priority=20,tcp,tp_dst=22 actions=drop\n"
        "table=0, priority=10,ip,nw_tos=0 actions=output:3\n"
        "table=0, priority=5,ip actions=output:2\n"
    )
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", "icmp,nw_src=10.0.0.1")
    notes = [a for a in t.assumptions if "was not given" in a]
    # tp_dst, icmp_type belong to flows another protocol's packet never matches; nw_tos chose.
    assert len(notes) == 1 and notes[0].startswith("nw_tos was not given"), t.assumptions
    assert [e.port for e in t.egress] == ["vm2"]  # output:3


def test_unmodelled_actions_give_unknown_never_a_guess() -> None:
    flows = (
        "table=0, priority=5 actions=multipath(eth_src,50,hrw,12,0,NXM_NX_REG0[0..3]),output:3\n"
    )
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", IP)
    assert t.outcome is Outcome.UNKNOWN and "multipath" in t.verdict and t.egress == ()


def test_dec_ttl_at_one_goes_to_the_controller_only() -> None:
    t = trace(
        make_switch({"br-int": "table=0, priority=5,ip actions=dec_ttl,output:3\n"}),
        "br-int",
        "vm1",
        IP.replace("nw_ttl=64", "nw_ttl=1"),
    )
    assert t.outcome is Outcome.ENDS and [e.kind for e in t.egress] == [EgressKind.CONTROLLER]
    assert any(node_text(n) == "IPv4 decrement TTL exception" for n in t.passes[0].nodes[0].walk())


def test_output_to_the_input_port_and_to_a_missing_port() -> None:
    t = trace(
        make_switch({"br-int": "table=0, priority=5 actions=output:2,output:99,IN_PORT\n"}),
        "br-int",
        "vm1",
        IP,
    )
    texts = [node_text(n) for n in t.passes[0].nodes[0].walk() if n.kind is NodeKind.WARN]
    assert texts == ["skipping output to input port", "Nonexistent output port"]
    assert [e.port for e in t.egress] == ["vm1"]


def test_ofproto_layout_of_nested_and_tail_resubmits() -> None:
    """A resubmit that is not the last action nests its table; the last one does not."""
    flows = (
        "table=0, priority=1 actions=resubmit(,1),resubmit(,2)\n"
        "table=1, priority=1 actions=load:0x1->NXM_NX_REG0[]\n"
        "table=2, priority=1 actions=output:3\n"
    )
    t = trace(make_switch({"br-int": flows}), "br-int", "vm1", IP)
    assert [line for line in ofproto_lines(t.passes[0]) if line] == [
        'bridge("br-int")',
        "----------------",
        " 0. priority 1",
        "    resubmit(,1)",
        "     1. priority 1",
        "            load:0x1->NXM_NX_REG0[]",
        "    resubmit(,2)",
        " 2. priority 1",
        "    output:3",
    ]


def test_as_trace_gives_the_shared_step_sequence() -> None:
    sw = make_switch(
        {
            "br-int": "table=0, priority=1 actions=output:1\n",
            "br-tun": "priority=1 actions=output:2\n",
        }
    )
    shared = trace(sw, "br-int", "vm1", IP).as_trace()
    kinds = [
        type(s).__name__ + (f":{s.action.value}" if isinstance(s, DeviceStep) else "")
        for s in shared.steps
    ]
    assert kinds == ["OpenFlowStep", "DeviceStep:patch", "OpenFlowStep", "DeviceStep:encap"]
    assert shared.outcome is Outcome.DELIVERED
