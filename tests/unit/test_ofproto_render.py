"""The OpenFlow trace tree carries typed fields; ``render/ofproto_trace.py`` alone words them,
as ``ofproto/trace`` does, for one bridge's trace and for a whole-node walk."""

from __future__ import annotations

from ipaddress import ip_address

from nodetrace.model.openflow_trace import (
    ActionRun,
    Bridge,
    ConntrackCleared,
    Encapsulated,
    Leaves,
    Message,
    NodeKind,
    ObservedLine,
    ObservedPass,
    Recirculate,
    TableLookup,
    TracePass,
    TunnelEncap,
    TunnelHeaders,
    TunnelRoute,
)
from nodetrace.model.trace import DeviceAction, DeviceStep, OpenFlowStep, Outcome, Trace
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree
from nodetrace.render.ofproto_trace import node_text, ofproto_lines, render_ofproto_walk

VXLAN = TunnelEncap("vxlan", 0x40D, ip_address("10.0.0.11"), ip_address("10.0.0.50"), dst_port=4789)


def test_each_kind_is_worded_as_ofproto_trace_words_it() -> None:
    nexthop = ip_address("10.0.0.1")
    assert (
        node_text(TableLookup(3, "in_port=2", 10, 0x1F))
        == " 3. in_port=2, priority 10, cookie 0x1f"
    )
    assert node_text(TableLookup(24, "", None)) == "24. No match."
    assert node_text(Recirculate(72)).endswith("resumed at table 72.")
    assert node_text(ConntrackCleared()).startswith("Sets the packet to an untracked state")
    assert node_text(TunnelRoute(nexthop, "br-phys")) == "tunneling to 10.0.0.1 via br-phys"
    assert (
        node_text(TunnelHeaders(None, ip_address("10.0.0.11"), "aa:bb:cc:00:00:01", nexthop))
        == "tunneling from (unknown MAC) 10.0.0.11 to aa:bb:cc:00:00:01 10.0.0.1"
    )
    assert node_text(Encapsulated("vxlan-0a000032", VXLAN)) == (
        "tunnel vxlan-0a000032: vxlan VNI 0x40d 10.0.0.11 -> 10.0.0.50 port 4789"
    )


def test_the_layout_indents_by_kind_and_hides_what_ovs_does_not_print() -> None:
    leaves = Leaves("br-int", "tap1", 5, DeviceStep(DeviceAction.OUTPUT, "tap1", "br-int, VLAN 5"))
    learned = Message(NodeKind.DETAIL, "forwarding to learned port")
    table = TableLookup(0, "in_port=2", 10, children=(ActionRun("NORMAL"), learned, leaves))
    assert ofproto_lines(TracePass("", (Bridge("br-int", (table,)),), None)) == [
        "",
        'bridge("br-int")',
        "----------------",
        " 0. in_port=2, priority 10",
        "    NORMAL",
        "     -> forwarding to learned port",
    ]
    assert leaves.extra and not learned.extra


def test_an_observed_tree_reads_back_to_the_same_lines() -> None:
    printed = [
        'bridge("br-int")',
        "----------------",
        " 0. in_port=2, priority 10, cookie 0x5",
        "    resubmit(,24)",
        "24. priority 0",
        "    drop",
        "     >> no input bundle, dropping",
        "     >>>> over 4096 resubmit actions <<<<",
    ]
    lines = tuple(
        ObservedLine(len(t) - len(t.lstrip(" ")), t.strip(), n) for n, t in enumerate(printed, 1)
    )
    nodes = observed_tree(ObservedPass("", lines, None))
    table = nodes[0].children[0]
    assert isinstance(table, TableLookup) and (table.table, table.cookie) == (0, 5)
    assert [x for x in ofproto_lines(TracePass("", nodes, None)) if x] == printed


def test_a_whole_node_walk_prints_its_tables_per_bridge() -> None:
    steps = (
        OpenFlowStep("br-int", 0, 10, "in_port=2", "resubmit(,24)", 0x1F),
        OpenFlowStep("br-int", 24, None, "", "drop"),
        DeviceStep(DeviceAction.PATCH, "patch-tun", "br-int -> br-tun"),
        OpenFlowStep("br-tun", 0, 1, "", "resubmit(,2)"),
    )
    assert render_ofproto_walk(Trace(steps, Outcome.DROPPED)) == (
        'bridge("br-int")\n'
        "----------------\n"
        " 0. in_port=2, priority 10, cookie 0x1f\n"
        "    resubmit(,24)\n"
        " 24. No match.\n"
        "    drop\n"
        'bridge("br-tun")\n'
        "----------------\n"
        " 0. priority 1\n"
        "    resubmit(,2)\n"
    )
    assert render_ofproto_walk(Trace((), Outcome.UNKNOWN)) == ""
