"""Turn a snapshot's Open vSwitch outputs into the OpenFlow model's :class:`OvsSwitch`.

The parsers belong to the OpenFlow layer; this module only picks the outputs a source has and
feeds them in: the JSON ``list`` tables when present (they carry OpenFlow numbers, VLAN modes
and external_ids), ``ovs-vsctl show`` otherwise (sosreports), per bridge the flows, port
numbers and MAC table, and the userspace datapath's connection table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.openflow import FlowDump
from nodetrace.model.ovs_runtime import ConntrackTable, MacTable, OfctlShow
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.ovsdb import OvsdbConfig, OvsdbTable
from nodetrace.model.snapshot import RawOutput
from nodetrace.parsers.ovs_appctl_dpctl_dump_conntrack import (
    parse_ovs_appctl_dpctl_dump_conntrack,
)
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show

T = TypeVar("T")

LIST_KINDS = ("ovs-vsctl-list-bridge", "ovs-vsctl-list-port", "ovs-vsctl-list-interface")


def _parse(raw: RawOutput, parser: Callable[..., T], sink: DiagnosticSink) -> T | None:
    try:
        return parser(raw.text, source=raw.source, sink=sink)
    except ParseError as err:
        sink.error(err)
        return None


def build_switch(raw: tuple[RawOutput, ...], sink: DiagnosticSink) -> OvsSwitch | None:
    """The node's Open vSwitch from its raw outputs, or ``None`` when it has none at all."""
    main = [r for r in raw if r.netns == ""]
    if not any(r.kind.startswith("ovs-") for r in main):
        return None
    show: OvsdbConfig | None = None
    tables: list[OvsdbTable] = []
    flows: dict[str, FlowDump] = {}
    ofctl: dict[str, OfctlShow] = {}
    fdb: dict[str, MacTable] = {}
    conntrack: ConntrackTable | None = None
    for r in main:
        if r.kind == "ovs-vsctl-show":
            show = _parse(r, parse_ovs_vsctl_show, sink)
        elif r.kind in LIST_KINDS and r.text.lstrip().startswith("{"):
            # sosreports keep `list` in its text form; `show` covers what it says then.
            table = _parse(r, parse_ovs_vsctl_list, sink)
            if table is not None:
                tables.append(table)
        elif r.kind == "ovs-appctl-dpctl-dump-conntrack":
            conntrack = _parse(r, parse_ovs_appctl_dpctl_dump_conntrack, sink)
        elif r.bridge is None:
            continue
        elif r.kind == "ovs-ofctl-dump-flows":
            dump = _parse(r, parse_ovs_ofctl_dump_flows, sink)
            if dump is not None:
                flows[r.bridge] = dump
        elif r.kind == "ovs-ofctl-show":
            shown = _parse(r, parse_ovs_ofctl_show, sink)
            if shown is not None:
                ofctl[r.bridge] = shown
        elif r.kind == "ovs-appctl-fdb-show":
            table_ = _parse(r, parse_ovs_appctl_fdb_show, sink)
            if table_ is not None:
                fdb[r.bridge] = table_
    ovsdb = show
    if tables:
        ovsdb = ovsdb_from_tables(tables, show=show, source=tables[0].source)
    return OvsSwitch.build(flows, ovsdb=ovsdb, ofctl=ofctl, fdb=fdb, conntrack=conntrack)
