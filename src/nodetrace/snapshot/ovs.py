"""Turn a snapshot's Open vSwitch outputs into the OpenFlow model's :class:`OvsSwitch`.

The parsers belong to the OpenFlow layer; this module only picks the outputs a source has and
feeds them in: the JSON ``list`` tables when present (they carry OpenFlow numbers, VLAN modes
and external_ids), ``ovs-vsctl show`` otherwise (sosreports), per bridge the flows, port
numbers and MAC table, and the userspace datapath's connection table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.conntrack import ConntrackDump
from nodetrace.model.openflow import FlowDump
from nodetrace.model.ovs_runtime import MacTable, OfctlShow
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.ovsdb import OvsdbConfig, OvsdbTable
from nodetrace.model.snapshot import RawOutput
from nodetrace.parsers.ovs_appctl_bridge_dump_flows import parse_ovs_appctl_bridge_dump_flows
from nodetrace.parsers.ovs_appctl_dpctl_dump_conntrack import (
    parse_ovs_appctl_dpctl_dump_conntrack,
)
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list
from nodetrace.parsers.ovs_vsctl_list_text import parse_ovs_vsctl_list_text
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show

T = TypeVar("T")

LIST_KINDS = ("ovs-vsctl-list-bridge", "ovs-vsctl-list-port", "ovs-vsctl-list-interface")


def _parse(raw: RawOutput, parser: Callable[..., T], sink: DiagnosticSink) -> T | None:
    try:
        return parser(raw.text, source=raw.source, sink=sink)
    except ParseError as err:
        sink.error(err)
        return None


def build_switch(
    raw: tuple[RawOutput, ...], sink: DiagnosticSink, notes: list[str] | None = None
) -> OvsSwitch | None:
    """The node's Open vSwitch from its raw outputs, or ``None`` when it has none at all.

    Per bridge the flows come from ``ovs-ofctl dump-flows`` (the reader of the snapshot
    already kept the best of its spellings); ``ovs-appctl bridge/dump-flows`` is read only
    for a bridge without one, and ``notes`` says so, as it says which port listing was read.
    """
    main = [r for r in raw if r.netns == ""]
    if not any(r.kind.startswith("ovs-") for r in main):
        return None
    show: OvsdbConfig | None = None
    tables: list[OvsdbTable] = []
    flows: dict[str, FlowDump] = {}
    ofctl: dict[str, OfctlShow] = {}
    fdb: dict[str, MacTable] = {}
    conntrack: ConntrackDump | None = None
    appctl_flows: dict[str, RawOutput] = {}
    said = notes if notes is not None else []
    for r in main:
        if r.kind == "ovs-vsctl-show":
            show = _parse(r, parse_ovs_vsctl_show, sink)
        elif r.kind in LIST_KINDS:
            # sosreports keep `list` in its text form: the same columns, another syntax.
            json_form = r.text.lstrip().startswith("{")
            table = _parse(
                r, parse_ovs_vsctl_list if json_form else parse_ovs_vsctl_list_text, sink
            )
            if table is not None and table.rows:
                tables.append(table)
        elif r.kind == "ovs-appctl-dpctl-dump-conntrack":
            conntrack = _parse(r, parse_ovs_appctl_dpctl_dump_conntrack, sink)
        elif r.bridge is None:
            continue
        elif r.kind == "ovs-ofctl-dump-flows":
            dump = _parse(r, parse_ovs_ofctl_dump_flows, sink)
            if dump is not None and r.flow_filter:
                dump = dataclasses.replace(
                    dump,
                    complete=False,
                    incomplete_reason=f"only the flows of `{r.flow_filter}` were dumped",
                )
            if dump is not None:
                flows[r.bridge] = dump
                if "OpenFlow1" in r.source.rsplit("/", 1)[-1]:
                    said.append(f"{r.bridge} flows read from {r.source} (no plain dump-flows)")
        elif r.kind == "ovs-appctl-bridge-dump-flows":
            appctl_flows[r.bridge] = r
        elif r.kind == "ovs-ofctl-show":
            shown = _parse(r, parse_ovs_ofctl_show, sink)
            if shown is not None:
                ofctl[r.bridge] = shown
                if "dump-ports-desc" in r.source.rsplit("/", 1)[-1]:
                    said.append(f"{r.bridge} port numbers read from {r.source} (no ofctl show)")
                if r.flow_filter:
                    said.append(
                        f"{r.bridge} port numbers read from {r.source}, a filtered output "
                        f"(`{r.flow_filter}`): the numbers of ports it does not list are unknown"
                    )
        elif r.kind == "ovs-appctl-fdb-show":
            table_ = _parse(r, parse_ovs_appctl_fdb_show, sink)
            if table_ is not None:
                fdb[r.bridge] = table_
    for bridge, r in appctl_flows.items():
        if bridge in flows:
            continue
        dump = _parse(r, parse_ovs_appctl_bridge_dump_flows, sink)
        if dump is not None:
            flows[bridge] = dump
            said.append(
                f"{bridge} flows read from {r.source} (no ovs-ofctl dump-flows): it lists hidden "
                "flows too (table 254, in-band control), and its flows have no cookies"
            )
    ovsdb = show
    names = {t.name for t in tables}
    if "Bridge" in names and "Port" not in names:
        # Bridges name their ports by Port uuid: without the Port table they would lose them.
        tables = [t for t in tables if t.name != "Bridge"]
    if tables and show is None and "Bridge" not in names:
        said.append(
            "ovs-vsctl list Interface/Port without `ovs-vsctl show` or list Bridge: not read"
        )
        tables = []
    if tables:
        names = {t.name for t in tables}
        source = tables[0].source
        if "Bridge" not in names and show is not None:
            # Bridges, ports and tags come from `show`; the tables complete them.
            source = f"{show.source} with {', '.join(t.source for t in tables)}"
        ovsdb = ovsdb_from_tables(tables, show=show, source=source)
    if show is not None and show.incomplete and ovsdb is not None:
        if "Bridge" in {t.name for t in tables}:
            said.append(f"{show.incomplete}; the bridges and ports come from list Bridge/Port")
        else:
            ovsdb = dataclasses.replace(ovsdb, incomplete=show.incomplete)
            said.append(show.incomplete)
    return OvsSwitch.build(flows, ovsdb=ovsdb, ofctl=ofctl, fdb=fdb, conntrack=conntrack)
