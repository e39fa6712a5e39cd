"""The native OVS firewall's flows as the generator writes them: checked against the driver's
rules flow family by flow family, read back by nodetrace's own dump-flows parser, and run
through the OpenFlow engine. tests/lab/test_ovs_firewall.py checks the same text against what a
real ovs-vswitchd holds, and the engine's verdicts against what it does."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.errors import InputError
from nodetrace.model.openflow_trace import OpenFlowTrace
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.trace import OpenFlowStep, Outcome
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.ovs_firewall import port_masks
from nodetrace.neutron.scenario import FirewallDriver, Scenario, load_scenario, parse_scenario
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/ovs-firewall.toml"
ZONE = "zone=NXM_NX_REG6[0..15]"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(SCENARIO)


@pytest.fixture(scope="module")
def cmp1(scenario: Scenario) -> NodeState:
    return generate_node(scenario, "cmp1")


def _flows(state: NodeState, table: int) -> list[str]:
    """``priority=P,match actions=A`` of one br-int table."""
    return [
        f"priority={f.priority}{''.join(',' + m for m in f.match)} actions={f.actions}"
        for f in state.bridge_flows("br-int")
        if f.table == table
    ]


def _ip(state: NodeState, vm: str) -> str:
    return str(state.scenario.port(vm).fixed_ips[0])


# --- the scenario key --------------------------------------------------------------------------


def test_the_driver_is_hybrid_unless_the_scenario_says_openvswitch(scenario: Scenario) -> None:
    text = SCENARIO.read_text()
    assert scenario.firewall_driver is FirewallDriver.OPENVSWITCH
    hybrid = parse_scenario(re.sub(r"(?m)^firewall_driver.*$", "", text))
    assert hybrid.firewall_driver is FirewallDriver.IPTABLES_HYBRID
    with pytest.raises(InputError) as err:
        parse_scenario(text.replace('"openvswitch"', '"ovs"'))
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith("firewall_driver"))
    assert (
        f"<scenario>:{line}: firewall_driver: 'ovs': expected iptables_hybrid or openvswitch"
        in (str(err.value))
    )


# --- the plug ----------------------------------------------------------------------------------


def test_taps_plug_straight_into_br_int_and_iptables_stays_empty(cmp1: NodeState) -> None:
    names = [p.name for p in cmp1.bridge_ports("br-int")]
    for vp in cmp1.vm_ports:
        assert vp.devices.tap in names and vp.devices.qvo not in names
        assert vp.zone == vp.local_vlan  # reg6: the zone is the network's local VLAN
    assert cmp1.firewall.iptables_save == cmp1.firewall.ip6tables_save == ""
    assert cmp1.firewall.ipsets == ()
    # No agent anti-spoofing tables per port: the firewall's table 71 does it.
    assert not [f for f in cmp1.bridge_flows("br-int") if f.table in (24, 25) and f.match]


def test_hybrid_scenarios_are_unchanged(scenario: Scenario) -> None:
    hybrid = generate_node(
        replace(scenario, firewall_driver=FirewallDriver.IPTABLES_HYBRID), "cmp1"
    )
    assert not [f for f in hybrid.bridge_flows("br-int") if f.table in (71, 72, 73, 81, 82)]
    assert all(p.name.startswith(("qvo", "patch")) for p in hybrid.bridge_ports("br-int"))
    assert "neutron-openvswi-sg-chain" in hybrid.firewall.iptables_save


# --- flow families -----------------------------------------------------------------------------


def test_every_flow_reads_back_through_the_dump_parser(cmp1: NodeState) -> None:
    expected = len(cmp1.bridge_flows("br-int"))
    for of13 in (False, True):
        dump = parse_ovs_ofctl_dump_flows(
            cmp1.dump_flows_text("br-int", openflow13=of13), source="br-int"
        )
        assert len(dump.flows) == expected
        tables = {f.table for f in dump.flows}
        assert {60, 71, 72, 73, 81, 82, 91, 92, 93, 94} <= tables
    keys = [(f.table, f.priority, f.match) for f in cmp1.bridge_flows("br-int")]
    assert len(keys) == len(set(keys)), "OVS would keep one flow per table, priority and match"


def test_port_identification_and_anti_spoofing(cmp1: NodeState) -> None:
    vp = cmp1.vm_port("app1")
    o, mac, ip = vp.ofport, vp.port.mac, _ip(cmp1, "app1")
    regs = f"set_field:{o:#x}->reg5,set_field:{vp.local_vlan:#x}->reg6"
    assert f"priority=100,in_port={o} actions={regs},resubmit(,71)" in _flows(cmp1, 60)
    assert (
        f"priority=90,dl_vlan={vp.local_vlan},dl_dst={mac} actions={regs},pop_vlan,resubmit(,81)"
        in _flows(cmp1, 60)
    )
    egress = _flows(cmp1, 71)
    mine = f"reg5={o:#x},in_port={o}"
    assert f"priority=65,ip,{mine},dl_src={mac},nw_src={ip} actions=ct(table=72,{ZONE})" in egress
    assert f"priority=95,arp,{mine},dl_src={mac},arp_spa={ip} actions=resubmit(,94)" in egress
    # DHCP: the client may ask (also from 0.0.0.0), a server in the VM may not answer.
    for src in (ip, "0.0.0.0"):
        assert (
            f"priority=80,udp,{mine},dl_src={mac},nw_src={src},tp_src=68,tp_dst=67 "
            "actions=resubmit(,73)"
        ) in egress
    assert f"priority=70,udp,{mine},tp_src=67,tp_dst=68 actions=resubmit(,93)" in egress
    assert f"priority=10,{mine} actions=ct_clear,resubmit(,93)" in egress
    assert "priority=110,ct_state=+trk actions=ct_clear,resubmit(,71)" in egress


def test_conntrack_commits_in_the_network_zone(cmp1: NodeState) -> None:
    o = cmp1.vm_port("db1").ofport
    assert (
        f"priority=90,ct_state=+new-est,ip,reg5={o:#x} actions=ct(commit,{ZONE}),resubmit(,91)"
        in _flows(cmp1, 73)
    )
    ingress = _flows(cmp1, 82)
    assert (
        f"priority=75,ct_state=+new-est,icmp,reg5={o:#x} "
        f"actions=ct(commit,{ZONE}),output:{o},resubmit(,92)"
    ) in ingress
    assert f"priority=75,ct_state=+est-rel-rpl,icmp,reg5={o:#x} actions=output:{o}" in ingress
    for state in ("+est-rel+rpl", "-new-est+rel-inv"):
        assert (
            f"priority=50,ct_state={state},ct_zone=1,ct_mark=0,reg5={o:#x} actions=output:{o}"
            in (ingress)
        )
    assert "priority=50,ct_state=+inv+trk actions=resubmit(,93)" in ingress
    assert f"priority=40,ct_state=-est,reg5={o:#x} actions=resubmit(,93)" in ingress


def test_remote_group_rules_become_conjunctions(scenario: Scenario, cmp1: NodeState) -> None:
    # db's "tcp 5432 from app": the first id block (16) plus 2 x priority offset 3.
    ingress = _flows(cmp1, 82)
    for vm in ("db1", "other1"):
        o = cmp1.vm_port(vm).ofport
        for i, state in enumerate(("+est-rel-rpl", "+new-est")):
            assert (
                f"priority=73,ct_state={state},tcp,reg5={o:#x},tp_dst=5432 "
                f"actions=conjunction({22 + i},2/2)"
            ) in ingress
        assert (
            f"priority=73,conj_id=23,ct_state=+new-est,ip,reg5={o:#x} actions=set_field:0x17->reg7,"
            f"ct(commit,{ZONE}),output:{o},resubmit(,92)"
        ) in ingress
    # The address half: every member of "app", on either node, and nobody else.
    members = sorted(
        line.split("nw_src=")[1].split()[0] for line in ingress if "conjunction(23,1/2)" in line
    )
    assert members == sorted(_ip(cmp1, vm) for vm in ("app1", "app2"))
    assert all(
        re.search(r"ct_state=\+(new-est|est-rel-rpl),ip,reg6=0x1,nw_src=", line)
        for line in ingress
        if "1/2)" in line
    )
    # app has no remote-group rule: its ports get no conjunction.
    o = cmp1.vm_port("app1").ofport
    assert not [line for line in ingress if f"reg5={o:#x}" in line and "conj" in line]


def test_overlapping_remote_rules_share_flows_with_both_ids() -> None:
    text = SCENARIO.read_text().replace(
        '{ direction = "ingress", protocol = "tcp", port = 5432, remote_group = "app" },',
        '{ direction = "ingress", protocol = "tcp", port_range_min = 1000, port_range_max = 2000,'
        ' remote_group = "app" },\n  { direction = "ingress", protocol = "tcp", port_range_min ='
        ' 1500, port_range_max = 3000, remote_group = "db" },',
    )
    state = generate_node(parse_scenario(text), "cmp1")
    o = state.vm_port("db1").ofport
    clauses: list[tuple[int, int, set[int]]] = []
    for line in _flows(state, 82):
        m = re.search(
            r"ct_state=\+new-est,tcp,reg5=" + f"{o:#x}" + r",tp_dst=(\d+)(?:/(0x\w+))?", line
        )
        if m and "2/2" in line:
            value, mask = int(m.group(1)), int(m.group(2) or "0xffff", 16)
            ids = {int(x) for x in re.findall(r"conjunction\((\d+),2/2\)", line)}
            clauses.append((value, mask, ids))
    app_id, db_id = 23, 31  # two blocks (16, 24), offset 3, the +new-est id

    def ids_for(port: int) -> set[int]:
        hits = [ids for value, mask, ids in clauses if port & mask == value]
        assert len(hits) <= 1, f"port {port} matches {len(hits)} flows of one priority"
        return hits[0] if hits else set()

    assert ids_for(999) == set() and ids_for(3001) == set()
    assert ids_for(1000) == ids_for(1499) == {app_id}
    assert ids_for(1500) == ids_for(2000) == {app_id, db_id}
    assert ids_for(2001) == ids_for(3000) == {db_id}


def test_port_without_port_security_passes_everything(scenario: Scenario) -> None:
    cmp2 = generate_node(scenario, "cmp2")
    vp = cmp2.vm_port("open2")
    o = vp.ofport
    assert vp.zone is None
    assert (
        f"priority=100,in_port={o} actions=set_field:{o:#x}->reg5,set_field:0x1->reg6,resubmit(,73)"
    ) in _flows(cmp2, 60)
    assert f"priority=80,reg5={o:#x} actions=resubmit(,94)" in _flows(cmp2, 73)
    assert not [line for line in _flows(cmp2, 71) if f"reg5={o:#x}" in line]


def test_allowed_address_pairs_may_send_and_receive(scenario: Scenario) -> None:
    text = SCENARIO.read_text().replace(
        'name = "app1"            # in the remote group: may reach the database',
        'name = "app1"\nallowed_address_pairs = [{ ip_address = "10.30.0.200",'
        ' mac_address = "fa:16:3e:00:00:c8" }]',
    )
    state = generate_node(parse_scenario(text), "cmp1")
    o = state.vm_port("app1").ofport
    assert (
        f"priority=65,ip,reg5={o:#x},in_port={o},dl_src=fa:16:3e:00:00:c8,nw_src=10.30.0.200 "
        f"actions=ct(table=72,{ZONE})"
    ) in _flows(state, 71)
    assert any("dl_dst=fa:16:3e:00:00:c8 " in line for line in _flows(state, 73))
    # The pair's address is a member of "app" for db's conjunction.
    assert any("nw_src=10.30.0.200 actions=conjunction(23,1/2)" in x for x in _flows(state, 82))


@pytest.mark.parametrize(
    ("low", "high"), [(22, 22), (1000, 2000), (1, 65535), (1024, 65535), (80, 81), (7, 9)]
)
def test_port_masks_cover_the_range_exactly(low: int, high: int) -> None:
    masks = [
        (int(v), int(m or "0xffff", 16))
        for v, _, m in (x.partition("/") for x in port_masks(low, high))
    ]
    covered = {p for p in range(65536) if any(p & m == v for v, m in masks)}
    assert covered == set(range(low, high + 1))
    assert len(covered) == sum(0x10000 - m for _, m in masks)  # the blocks do not overlap


# --- the OpenFlow engine on the generated pipeline ---------------------------------------------


def _switch(state: NodeState) -> OvsSwitch:
    lines = []
    for bridge in ("br-int", "br-tun"):
        lines += [f"    Bridge {bridge}", "        datapath_type: netdev"]
        for p in state.bridge_ports(bridge):
            lines.append(f"        Port {p.name}")
            if p.tag is not None:
                lines.append(f"            tag: {p.tag}")
            lines.append(f"            Interface {p.name}")
            if p.type:
                lines.append(f"                type: {p.type}")
            if p.options:
                opts = ", ".join(f'{k}="{v}"' if "." in v else f"{k}={v}" for k, v in p.options)
                lines.append(f"                options: {{{opts}}}")
    config = parse_ovs_vsctl_show("\n".join(lines) + "\n")
    numbers = {(p.bridge, p.name): p.ofport for p in state.ovs_ports}
    bridges = tuple(
        replace(
            b,
            ports=tuple(
                replace(
                    p,
                    interfaces=tuple(
                        replace(i, ofport=numbers.get((b.name, i.name))) for i in p.interfaces
                    ),
                )
                for p in b.ports
            ),
        )
        for b in config.bridges
    )
    dumps = {
        br: parse_ovs_ofctl_dump_flows(state.dump_flows_text(br), source=br)
        for br in ("br-int", "br-tun")
    }
    return OvsSwitch.build(dumps, ovsdb=replace(config, bridges=bridges))


def _trace(state: NodeState, src: str, flow: str) -> OpenFlowTrace:
    spec = parse_flow(flow)
    tap = state.vm_port(src).devices.tap
    return OpenFlowEngine(_switch(state)).trace(
        "br-int", tap, spec.packet, spec.metadata, given=spec.given
    )


def _tcp(state: NodeState, src: str, dst: str, port: int, *, nw_src: str | None = None) -> str:
    s, d = state.vm_port(src).port, state.vm_port(dst).port
    return (
        f"tcp,dl_src={s.mac},dl_dst={d.mac},nw_src={nw_src or s.fixed_ips[0]},"
        f"nw_dst={d.fixed_ips[0]},nw_ttl=64,tp_src=40000,tp_dst={port},tcp_flags=+syn"
    )


def test_the_engine_lets_a_member_in_through_the_conjunction(cmp1: NodeState) -> None:
    t = _trace(cmp1, "app1", _tcp(cmp1, "app1", "db1", 5432))
    assert [e.port for e in t.egress] == [cmp1.vm_port("db1").devices.tap]
    steps = [s for s in t.steps if isinstance(s, OpenFlowStep)]
    assert any(s.table == 82 and "conj_id=23" in s.match for s in steps)


@pytest.mark.parametrize(
    ("src", "dst", "port", "spoof", "last_rule_table"),
    [
        ("other1", "db1", 5432, None, 82),  # not a member of "app"
        ("app1", "other1", 22, None, 82),  # "db" has no rule for TCP 22
        ("app1", "db1", 5432, "10.30.0.99", 71),  # a source address that is not the port's
    ],
)
def test_the_engine_drops_in_table_93(
    cmp1: NodeState, src: str, dst: str, port: int, spoof: str | None, last_rule_table: int
) -> None:
    t = _trace(cmp1, src, _tcp(cmp1, src, dst, port, nw_src=spoof))
    assert not t.egress
    steps = [s for s in t.steps if isinstance(s, OpenFlowStep)]
    assert (steps[-1].table, steps[-1].actions) == (93, "drop")
    assert steps[-2].table == last_rule_table


def test_the_walks_engine_remembers_connections_as_the_datapath_does(cmp1: NodeState) -> None:
    """app1 lets in TCP 22 only: db1's SYN-ACK from 5432 passes only as the reply of app1's
    committed SYN (+est+rpl); a SYN-ACK that belongs to no connection is invalid, as OVS's
    tracker makes it. ofproto/trace's own default (trk|new) stays for the plain engine."""
    switch = _switch(cmp1)
    datapath = OpenFlowEngine(switch, remember_connections=True)

    def run(engine: OpenFlowEngine, src: str, flow: str) -> OpenFlowTrace:
        spec = parse_flow(flow)
        tap = cmp1.vm_port(src).devices.tap
        return engine.trace("br-int", tap, spec.packet, spec.metadata, given=spec.given)

    app1, db1 = cmp1.vm_port("app1").port, cmp1.vm_port("db1").port
    syn_ack = (
        f"tcp,dl_src={db1.mac},dl_dst={app1.mac},nw_src={db1.fixed_ips[0]},"
        f"nw_dst={app1.fixed_ips[0]},nw_ttl=64,tp_src=5432,tp_dst=40000,tcp_flags=+syn+ack"
    )
    invalid = run(datapath, "db1", syn_ack)
    assert not invalid.egress
    assert any(
        isinstance(s, OpenFlowStep) and s.table == 72 and "+inv+trk" in s.match
        for s in invalid.steps
    )
    assert [e.port for e in run(datapath, "app1", _tcp(cmp1, "app1", "db1", 5432)).egress] == [
        cmp1.vm_port("db1").devices.tap
    ]
    reply = run(datapath, "db1", syn_ack)
    # NORMAL switching, with no MAC learned here: flooded on the VLAN, app1 included.
    assert cmp1.vm_port("app1").devices.tap in [e.port for e in reply.egress]
    assert any(
        isinstance(s, OpenFlowStep) and s.table == 72 and "+est-rel+rpl" in s.match
        for s in reply.steps
    )
    plain = run(OpenFlowEngine(switch), "db1", syn_ack)
    assert any("ct_state=trk|new assumed" in a for a in plain.assumptions)


# --- recorded ofproto/trace of the lab, read back and replayed ---------------------------------

DATA = Path(__file__).parents[1] / "data" / "lab"


_FROM_CMP2 = "in_port=2,tun_id=0x7d1,tun_src=192.168.50.2,tun_dst=192.168.50.1"


@pytest.mark.parametrize(
    ("recorded", "bridge", "flow", "ct_states", "delivered"),
    [
        (
            "ovs-firewall.tunnel-to-db1.ofproto-trace.txt",
            "br-tun",
            f"{_FROM_CMP2},{{app2}}>{{db1}},tcp_src=40000,tcp_dst=5432,tcp_flags=0x2",
            (),
            True,
        ),
        (
            "ovs-firewall.established-unallowed.ofproto-trace.txt",
            "br-int",
            "in_port=4,{other1}>{db1},tcp_src=40001,tcp_dst=22,tcp_flags=0x10",
            ("+trk+est",),
            False,
        ),
    ],
)
def test_recorded_traces_read_back_and_the_engine_takes_the_same_lookups(
    cmp1: NodeState,
    recorded: str,
    bridge: str,
    flow: str,
    ct_states: tuple[str, ...],
    delivered: bool,
) -> None:
    """What real OVS printed for two packets of the lab, against the engine on the generated
    flows: the same (bridge, table, priority) lookups and the same actions, ct() included
    (OVS prints what a ct() runs inside on lines of its own, and heads a pass resumed after
    ct() with the bridge the trace began on)."""
    from nodetrace.lab.observe import openflow_trace

    text = (DATA / recorded).read_text()
    observed = openflow_trace(text)
    lookups = [s for s in observed.steps if isinstance(s, OpenFlowStep)]
    assert all(s.bridge == "br-int" for s in lookups if s.table >= 60)
    ct_lookups = [s for s in lookups if "ct(" in s.actions]
    assert ct_lookups and all("drop" not in s.actions.split(",") for s in ct_lookups)
    assert (observed.outcome is Outcome.DELIVERED) is delivered, observed.reason
    ends: dict[str, tuple[str, object]] = {}
    for vm in ("app2", "db1", "other1"):
        port = cmp1.scenario.port(vm)
        ends[vm] = (port.mac, port.fixed_ips[0])
    flow = re.sub(
        r"\{(\w+)\}>\{(\w+)\}",
        lambda m: (
            f"dl_src={ends[m[1]][0]},dl_dst={ends[m[2]][0]},"
            f"nw_src={ends[m[1]][1]},nw_dst={ends[m[2]][1]},nw_ttl=64"
        ),
        "tcp," + flow,
    )
    spec = parse_flow(flow)
    in_port = spec.get("in_port")
    assert in_port is not None
    metadata = [(k, v) for k, v in spec.metadata if k != "in_port"]
    simulated = OpenFlowEngine(_switch(cmp1)).trace(
        bridge, in_port, spec.packet, metadata, ct_states=ct_states
    )
    difference = observed.diff(simulated.as_trace())
    assert difference.same, str(difference)
