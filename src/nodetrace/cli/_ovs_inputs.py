"""Gather a switch (:class:`OvsSwitch`) from what the user names: a node snapshot (bundle folder,
archive, sosreport, plain folder of command outputs) and/or single files.

A single file is recognised by its name when it is named after its command
(``ovs-ofctl_dump-flows_br-int``, ``ovs-ofctl-dump-flows.br-int.txt``) and otherwise by its
content; ``BRIDGE=FILE`` says which bridge a per-bridge file (flows, ``ofctl show``, ``fdb/show``)
belongs to. A lone flow dump with no bridge in its name is the ``--bridge`` one.

Besides the switch, OVS's own routes (``ovs/route/show``), its tunnel neighbour cache
(``tnl/neigh/show``) and ``dpif/show`` are gathered when given: with them a tunnel's outer
packet is followed through the underlay bridge, and ``Datapath actions`` name datapath ports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nodetrace.errors import DiagnosticSink, InputError, ParseError, SourcePos
from nodetrace.model.conntrack import ConntrackDump
from nodetrace.model.openflow import FlowDump
from nodetrace.model.ovs_runtime import DpifShow, MacTable, OfctlShow
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.ovsdb import OvsdbConfig, OvsdbTable
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import OvsRoute, OvsTunnelNeighbour
from nodetrace.parsers.ovs_appctl_dpctl_dump_conntrack import parse_ovs_appctl_dpctl_dump_conntrack
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_appctl_tunnel_underlay import (
    parse_ovs_appctl_ovs_route_show,
    parse_ovs_appctl_tnl_neigh_show,
)
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show
from nodetrace.snapshot.parts import is_snapshot
from nodetrace.tracelog.source import read_text

PER_BRIDGE = frozenset({"ovs-ofctl-dump-flows", "ovs-ofctl-show", "ovs-appctl-fdb-show"})
ARCHIVES = (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar", ".zip")

_UUID_LINE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\s*$")


def sniff(text: str) -> str | None:
    """The kind of OVS output ``text`` is, from its content."""
    stripped = text.lstrip()
    if stripped.startswith("{") and '"headings"' in text:
        return "ovs-vsctl-list"
    first = stripped.splitlines()[0] if stripped else ""
    if first.startswith(("OFPT_FEATURES_REPLY", "OFPST_PORT_DESC")):
        return "ovs-ofctl-show"
    if re.match(r"^port\s+VLAN\s+MAC\s+Age", first):
        return "ovs-appctl-fdb-show"
    if _UUID_LINE.match(first) or first.startswith("Bridge "):
        return "ovs-vsctl-show"
    if first.startswith("Route Table:"):
        return ROUTES
    if re.match(r"^IP\s+MAC\s+Bridge", first):
        return NEIGHBOURS
    if re.match(r"^\S+@\S+: hit:\d+ missed:\d+", first):
        return DPIF
    if "orig=(" in text and "reply=(" in text:
        return "ovs-appctl-dpctl-dump-conntrack"
    if "actions=" in text:
        return "ovs-ofctl-dump-flows"
    return None


@dataclass
class Collected:
    flows: dict[str, FlowDump]
    ofctl: dict[str, OfctlShow]
    fdb: dict[str, MacTable]
    show: OvsdbConfig | None = None
    tables: list[OvsdbTable] | None = None
    conntrack: ConntrackDump | None = None
    routes: tuple[OvsRoute, ...] | None = None
    neighbours: tuple[OvsTunnelNeighbour, ...] | None = None
    dpif: DpifShow | None = None


ROUTES = "ovs-appctl-ovs-route-show"
NEIGHBOURS = "ovs-appctl-tnl-neigh-show"
DPIF = "ovs-appctl-dpif-show"


@dataclass(frozen=True, slots=True)
class OvsInputs:
    """What the OpenFlow engine is given: the switch, and OVS's underlay tables when present
    (``None``: not among the inputs)."""

    switch: OvsSwitch
    routes: tuple[OvsRoute, ...] | None = None
    neighbours: tuple[OvsTunnelNeighbour, ...] | None = None
    dpif: DpifShow | None = None


def _kind_and_bridge(path: Path, text: str, bridge: str | None) -> tuple[str | None, str | None]:
    from nodetrace.snapshot.commands import recognise

    found = recognise(path.name)
    kind = found.kind if found is not None else None
    if kind is not None and kind.startswith("ovs-vsctl-list-"):
        kind = "ovs-vsctl-list"
    if kind is None or not kind.startswith("ovs-"):
        kind = sniff(text)
    name_bridge = found.bridge if found is not None else None
    return kind, bridge or name_bridge


def load_ovs_inputs(inputs: list[str], default_bridge: str, sink: DiagnosticSink) -> OvsInputs:
    c = Collected({}, {}, {})
    base: OvsSwitch | None = None
    for item in inputs:
        bridge: str | None = None
        path_text = item
        if "=" in item and not Path(item).exists():
            bridge, path_text = item.split("=", 1)
        path = Path(path_text)
        if not path.exists():
            raise InputError(f"{path_text}: no such file or folder")
        if path.is_dir() or path.name.endswith(ARCHIVES) or is_snapshot(path_text):
            if base is not None:
                raise InputError(
                    "give one snapshot (folder or archive); add single files beside it"
                )
            snap = _from_snapshot(path, sink)
            assert snap.ovs is not None
            base = snap.ovs
            _underlay_from_snapshot(c, snap)
            continue
        text = read_text(str(path))
        kind, bridge = _kind_and_bridge(path, text, bridge)
        _add(c, kind, bridge, text, str(path), default_bridge, sink)
    if base is not None:
        _merge_base(c, base)
    if not c.flows:
        raise InputError(
            "no ovs-ofctl dump-flows output among the inputs: the OpenFlow tables are unknown "
            f"(collect them with `ovs-ofctl dump-flows {default_bridge}`)"
        )
    ovsdb = c.show
    if c.tables:
        try:
            ovsdb = ovsdb_from_tables(c.tables, show=c.show, source=c.tables[0].source)
        except InputError as err:
            sink.warn(SourcePos(c.tables[0].source, 1), str(err))
    if base is not None and ovsdb is None:
        ovsdb = base.ovsdb
    conntrack = c.conntrack or (base.conntrack if base is not None else None)
    switch = OvsSwitch.build(c.flows, ovsdb=ovsdb, ofctl=c.ofctl, fdb=c.fdb, conntrack=conntrack)
    return OvsInputs(switch, c.routes, c.neighbours, c.dpif)


def _from_snapshot(path: Path, sink: DiagnosticSink) -> Snapshot:
    from nodetrace.snapshot.load import load

    snap = load(path)
    for d in snap.diagnostics:
        sink.items.append(d)
    if snap.ovs is None:
        raise InputError(f"{path}: the snapshot has no Open vSwitch output")
    return snap


def _underlay_from_snapshot(c: Collected, snap: Snapshot) -> None:
    """OVS's routes, tunnel neighbours and dpif/show as the snapshot read them."""
    c.routes = snap.ovs_routes if snap.ovs_routes is not None else c.routes
    c.neighbours = (
        snap.ovs_tunnel_neighbours if snap.ovs_tunnel_neighbours is not None else c.neighbours
    )
    c.dpif = snap.ovs_dpif or c.dpif


def _merge_base(c: Collected, base: OvsSwitch) -> None:
    for b in base.bridges:
        if b.flows is not None:
            c.flows.setdefault(b.name, b.flows)
        if b.ofctl is not None:
            c.ofctl.setdefault(b.name, b.ofctl)
        if b.fdb is not None:
            c.fdb.setdefault(b.name, b.fdb)


def _add(
    c: Collected,
    kind: str | None,
    bridge: str | None,
    text: str,
    source: str,
    default_bridge: str,
    sink: DiagnosticSink,
) -> None:
    if kind is None:
        sink.warn(SourcePos(source, 1), "not an Open vSwitch output nodetrace reads; ignored")
        return
    if kind in PER_BRIDGE and bridge is None:
        if kind == "ovs-ofctl-dump-flows" and default_bridge not in c.flows:
            bridge = default_bridge
        else:
            raise InputError(f"{source}: which bridge is this {kind} of? Name it BRIDGE={source}")
    try:
        if kind == "ovs-ofctl-dump-flows":
            assert bridge is not None
            c.flows[bridge] = parse_ovs_ofctl_dump_flows(text, source=source, sink=sink)
        elif kind == "ovs-ofctl-show":
            assert bridge is not None
            c.ofctl[bridge] = parse_ovs_ofctl_show(text, source=source, sink=sink)
        elif kind == "ovs-appctl-fdb-show":
            assert bridge is not None
            c.fdb[bridge] = parse_ovs_appctl_fdb_show(text, source=source, sink=sink)
        elif kind == "ovs-vsctl-show":
            c.show = parse_ovs_vsctl_show(text, source=source, sink=sink)
        elif kind == "ovs-vsctl-list":
            c.tables = [*(c.tables or []), parse_ovs_vsctl_list(text, source=source, sink=sink)]
        elif kind == "ovs-appctl-dpctl-dump-conntrack":
            c.conntrack = parse_ovs_appctl_dpctl_dump_conntrack(text, source=source, sink=sink)
        elif kind == ROUTES:
            c.routes = parse_ovs_appctl_ovs_route_show(text, source=source, sink=sink)
        elif kind == NEIGHBOURS:
            c.neighbours = parse_ovs_appctl_tnl_neigh_show(text, source=source, sink=sink)
        elif kind == DPIF:
            c.dpif = parse_ovs_appctl_dpif_show(text, source=source, sink=sink)
        else:
            sink.warn(SourcePos(source, 1), f"{kind} is not used by the OpenFlow trace; ignored")
    except ParseError as err:
        sink.error(err)
