"""The OpenFlow engine on what real nodes give: ports known only by the names their flows print,
dumps cut short, bridges whose flows were not captured, fields left out that a verdict rests on,
and OVS's underlay tables read from a snapshot. The node data is the real-world corpus
(tests/realworld, sources in its SOURCES.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.engine.walk_openflow import OpenFlowAdapter
from nodetrace.model.openflow_trace import UnsetField
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.trace import Outcome
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show

REAL = Path(__file__).parents[1] / "realworld"
RDO = REAL / "rdo-caracal-ovsfw-compute"
DHCP_CONTROLLER = REAL / "devstack-2022-hybrid-dhcp-controller"
UNDERLAY = Path(__file__).parents[1] / "data" / "openflow" / "lab-underlay"

# rdo-caracal-ovsfw-compute/ovs-ofctl dump-flows br-tun line 7: tun_id=0xef -> VLAN 3; br-int
# line 62 lets tcp/22 in; line 18 gives the VM's MAC fa:16:3e:61:21:c6.
SSH_FROM_TUNNEL = "tun_id=0xef,tcp,nw_dst=192.168.101.85,dl_dst=fa:16:3e:61:21:c6,tcp_dst=22"
_STAND_IN = re.compile(r"\b6528[0-9]\b|\b65[23][0-9][0-9]\b")


def _openflow(capsys: pytest.CaptureFixture[str], *argv: str, fmt: str = "text") -> str:
    code = main(["openflow", *argv, "--format", fmt])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_openflow(capsys, *argv, fmt="json"))
    return doc


# -- ports known only by name ----------------------------------------------------------------


def test_a_name_only_patch_port_keeps_its_peer(capsys: pytest.CaptureFixture[str]) -> None:
    """rdo-caracal has ``ovs-vsctl show`` (no ofport) and flows printing names: patch-int
    (ovs-vsctl show: type patch, peer patch-tun) must lead into br-int, not out of br-tun."""
    doc = _json(
        capsys, str(RDO), "--bridge", "br-tun", "--in-port", "vxlan-ac10000b",
        "--packet", SSH_FROM_TUNNEL,
    )  # fmt: skip
    trace = doc  # one --packet: one document
    assert trace["outcome"] == "delivered"
    assert [(e["bridge"], e["port"]) for e in trace["egress"]] == [("br-int", "tap648437e1-0d")]
    tables = [(s["bridge"], s["table"], s["priority"]) for s in trace["steps"] if "table" in s]
    assert ("br-int", 82, 77) in tables  # dump-flows br-int line 62


def test_stand_in_numbers_are_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    out = _openflow(
        capsys, str(RDO), "--bridge", "br-tun", "--in-port", "vxlan-ac10000b",
        "--packet", SSH_FROM_TUNNEL,
    )  # fmt: skip
    assert not _STAND_IN.search(out), _STAND_IN.findall(out)
    assert "in_port=vxlan-ac10000b," in out  # the packet, by the name the flows use
    assert 'output:"patch-int"' in out  # dump-flows br-tun line 10, as the dump wrote it
    # br-tun line 10 learns output:OXM_OF_IN_PORT[]: the learned flow names the tunnel port
    assert 'output:"vxlan-ac10000b"' in out
    ofproto = _openflow(
        capsys, str(RDO), "--bridge", "br-tun", "--in-port", "vxlan-ac10000b",
        "--packet", SSH_FROM_TUNNEL, fmt="ofproto",
    )  # fmt: skip
    assert not _STAND_IN.search(ofproto), _STAND_IN.findall(ofproto)


def test_normal_finds_the_input_bundle_of_a_name_only_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """br-int table 94 (dump-flows br-int) sends the VM's packet to NORMAL; the VM's port is
    known by name only and is an access port of VLAN 3 (ovs-vsctl show line 26)."""
    packet = "icmp,dl_src=fa:16:3e:61:21:c6,dl_dst=fa:16:3e:e9:26:5b,nw_src=192.168.101.85,"
    packet += "nw_dst=192.168.101.1,icmp_type=8,icmp_code=0"
    doc = _json(
        capsys, str(RDO), "--bridge", "br-int", "--in-port", "tap648437e1-0d",
        "--packet", packet,
    )  # fmt: skip
    trace = doc  # one --packet: one document
    assert "no input bundle" not in json.dumps(trace)
    # flooded on VLAN 3 into br-tun, where the learned flow of table 20 (dump-flows br-tun line
    # 11) sends it into the tunnel to 172.16.0.11
    tunnel = [e for e in trace["egress"] if e["port"] == "vxlan-ac10000b"]
    assert tunnel and tunnel[0]["encap"]["key"] == 0xEF


SHOW_WITHOUT_GHOST = """\
    Bridge br-x
        Port br-x
            Interface br-x
                type: internal
        Port eth9
            Interface eth9
"""


def _switch(flows: str, show: str = SHOW_WITHOUT_GHOST, bridge: str = "br-x") -> OvsSwitch:
    return OvsSwitch.build(
        {bridge: parse_ovs_ofctl_dump_flows(flows, source="flows")},
        ovsdb=parse_ovs_vsctl_show(show, source="show"),
    )


def test_normal_from_a_port_no_listing_has_is_unknown_not_dropped() -> None:
    switch = _switch('table=0, priority=1,in_port="ghost" actions=NORMAL\n')
    t = OpenFlowEngine(switch).trace("br-x", "ghost", parse_flow("arp").packet)
    assert t.outcome is Outcome.UNKNOWN
    assert "ghost" in t.reason and "not in the snapshot's port list" in t.reason


def test_a_patch_peer_cut_from_the_listing_is_unknown_not_dropped() -> None:
    show = SHOW_WITHOUT_GHOST + (
        "        Port patch-y\n"
        "            Interface patch-y\n"
        "                type: patch\n"
        "                options: {peer=patch-x}\n"
    )
    switch = _switch("table=0, priority=1 actions=output:patch-y\n", show)
    t = OpenFlowEngine(switch).trace("br-x", "LOCAL", parse_flow("arp").packet)
    assert t.outcome is Outcome.UNKNOWN
    assert "patch-x" in t.reason and "ovs-vsctl show" in t.reason


def test_numbered_flows_and_unnumbered_ports_do_not_make_a_drop() -> None:
    """ovs-vsctl show without ofport and a dump without --names: which port is 1 is unknown."""
    flows = "table=0, priority=5,in_port=1 actions=output:2\ntable=0, priority=0 actions=drop\n"
    switch = _switch(flows)
    t = OpenFlowEngine(switch).trace("br-x", "eth9", parse_flow("arp").packet)
    assert t.outcome is Outcome.UNKNOWN
    assert "eth9" in t.reason and "`ovs-ofctl show br-x`" in t.reason
    out = OpenFlowEngine(_switch("table=0, priority=0 actions=output:7\n"))
    t = out.trace("br-x", "LOCAL", parse_flow("arp").packet)
    assert t.outcome is Outcome.UNKNOWN and "output to port 7" in t.reason


# -- what a dump does not show ---------------------------------------------------------------


def test_a_miss_in_an_elided_dump_is_unknown() -> None:
    flows = "table=0, priority=5,arp actions=NORMAL\n(...)\ntable=0, priority=1,ip actions=drop\n"
    switch = _switch(flows)
    dump = switch.bridges[0].flows
    assert dump is not None and not dump.complete  # the parser's flag
    t = OpenFlowEngine(switch).trace("br-x", "LOCAL", parse_flow("ipv6").packet)
    assert t.outcome is Outcome.UNKNOWN
    assert "br-x table 0" in t.reason and "incomplete" in t.reason
    assert "a flow not shown may match" in t.reason
    # a flow that is shown and matches is followed, and what that rests on is said
    arp = OpenFlowEngine(switch).trace("br-x", "LOCAL", parse_flow("arp").packet)
    assert arp.outcome is Outcome.DELIVERED
    assert any("br-x: its flow dump is incomplete" in a for a in arp.assumptions)


def test_the_same_miss_in_a_complete_dump_is_a_drop() -> None:
    switch = _switch("table=0, priority=5,arp actions=NORMAL\n")
    t = OpenFlowEngine(switch).trace("br-x", "LOCAL", parse_flow("ipv6").packet)
    assert t.outcome is Outcome.DROPPED
    assert "no flow matched in br-x table 0" in t.reason


def test_a_bridge_without_flows_names_the_missing_dump() -> None:
    show = SHOW_WITHOUT_GHOST + (
        "        Port patch-y\n"
        "            Interface patch-y\n"
        "                type: patch\n"
        "                options: {peer=patch-x}\n"
        "    Bridge br-y\n"
        "        Port patch-x\n"
        "            Interface patch-x\n"
        "                type: patch\n"
        "                options: {peer=patch-y}\n"
    )
    switch = _switch("table=0, priority=1 actions=output:patch-y\n", show)
    t = OpenFlowEngine(switch).trace("br-x", "LOCAL", parse_flow("arp").packet)
    assert t.outcome is Outcome.UNKNOWN
    assert "`ovs-ofctl dump-flows br-y`" in t.reason and "ofctl show" not in t.reason


def test_openflow_on_a_node_without_flow_dumps_names_the_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """tripleo-newton-compute published ovs-vsctl show and ip r only."""
    node = REAL / "tripleo-newton-compute"
    code = main(
        ["openflow", str(node), "--bridge", "br-tun", "--in-port", "vxlan-c0a86a0b",
         "--packet", "arp"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "`ovs-ofctl dump-flows br-tun`" in err and "ofctl show" not in err


# -- --in-port and the underlay from a snapshot ----------------------------------------------


def test_in_port_may_be_a_port_only_the_flows_name(capsys: pytest.CaptureFixture[str]) -> None:
    """devstack-2022-hybrid-dhcp-controller has no ovs-vsctl/ofctl show; its br-tun flows name
    patch-int (dump-flows br-tun, table 0 in_port="patch-int" actions=resubmit(,2))."""
    doc = _json(
        capsys, str(DHCP_CONTROLLER), "--bridge", "br-tun", "--in-port", "patch-int",
        "--packet", "arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1",
    )  # fmt: skip
    steps = doc["steps"]
    assert steps[0]["table"] == 0 and 'in_port="patch-int"' in steps[0]["match"]


def test_a_port_only_an_action_names_can_be_the_in_port() -> None:
    switch = _switch('table=0, priority=1,in_port=LOCAL actions=output:"tnl9"\n')
    t = OpenFlowEngine(switch).trace("br-x", "tnl9", parse_flow("arp").packet)
    # the table-0 flow wants LOCAL: from tnl9 nothing matches, a drop the dump shows
    assert t.outcome is Outcome.DROPPED and t.in_port == "tnl9"


def test_in_port_nobody_names_is_still_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["openflow", str(DHCP_CONTROLLER), "--bridge", "br-tun", "--in-port", "patch-intt",
         "--packet", "arp"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "did you mean patch-int" in err


def test_the_snapshot_underlay_tables_reach_the_engine(capsys: pytest.CaptureFixture[str]) -> None:
    """The lab-underlay snapshot holds ovs/route/show and tnl/neigh/show: the native tunnel's
    outer packet is followed through br-phys to the uplink, as traces.txt shows OVS doing."""
    packet = "tcp,dl_src=fa:16:3e:00:00:09,dl_dst=fa:16:3e:00:01:01,nw_src=10.1.0.1,"
    packet += "nw_dst=10.1.0.2,nw_ttl=64,tcp_src=40000,tcp_dst=22"
    argv = [str(UNDERLAY), "--bridge", "br-int", "--in-port", "vm1", "--packet", packet]
    out = _openflow(capsys, *argv, fmt="ofproto")
    assert "-> tunneling to 10.0.0.12 via br-phys" in out
    assert 'bridge("br-phys")' in out
    recorded = (UNDERLAY / "traces.txt").read_text()
    datapath = next(line for line in recorded.splitlines() if line.startswith("Datapath"))
    with_dpif = _openflow(
        capsys, *argv[:1], str(UNDERLAY / "ovs-appctl-dpif-show.txt"), *argv[1:], fmt="ofproto"
    )
    assert datapath in with_dpif.splitlines()


# -- fields left out, as data ----------------------------------------------------------------


def test_fields_left_out_are_given_as_data_and_said_the_same() -> None:
    switch = _switch("table=0, priority=5,ip,nw_src=10.0.0.1 actions=NORMAL\n")
    spec = parse_flow("ip,nw_dst=10.0.0.2")
    given = frozenset(spec.given or ())
    t = OpenFlowEngine(switch).trace("br-x", "LOCAL", spec.packet, given=given)
    assert UnsetField("nw_src", ("nw_src", "arp_spa"), "br-x", 0) in t.unset
    note = "nw_src/arp_spa was not given: taken as 0, as ofproto/trace does (br-x table 0 looked at it)"
    assert note in t.assumptions
    result = OpenFlowAdapter(switch).run("br-x", "LOCAL", spec.packet, (), given)
    assert ("nw_src", "br-x table 0") in result.consulted
    assert ("arp_spa", "br-x table 0") in result.consulted
    assert note not in result.assumptions  # the walk states it with the value it gave
