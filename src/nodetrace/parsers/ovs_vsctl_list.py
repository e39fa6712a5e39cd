"""Read ``ovs-vsctl --format=json list Bridge|Port|Interface`` and merge the tables into
:class:`~nodetrace.model.ovsdb.OvsdbConfig`.

A real sample (OVS 3.1, ``list Port``, shortened to two of its 23 columns' worth)::

    {"data":[[["uuid","5d39faf9-6f1f-438e-ac55-b4dc36cf9ee2"],["set",[]],0,false,["set",[]],0,
      ["set",[]],["map",[]],false,["uuid","4aff0aff-0626-4730-9bef-6635dc35a0ae"],["set",[]],
      ["set",[]],"qvo2",["map",[]],false,["set",[]],["map",[]],["map",[]],["map",[]],["map",[]],
      2,["set",[]],["set",[]]]],
     "headings":["_uuid","bond_active_slave","bond_downdelay","bond_fake_iface","bond_mode",
      "bond_updelay","cvlans","external_ids","fake_bridge","interfaces","lacp","mac","name",
      "other_config","protected","qos","rstp_statistics","rstp_status","statistics","status",
      "tag","trunks","vlan_mode"]}

Values use OVSDB's JSON encoding: ``["uuid", U]``, ``["set", [...]]``, ``["map", [[k, v]...]]``,
and a set of one element written as the bare element.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from nodetrace.errors import DiagnosticSink, InputError, ParseError, SourcePos
from nodetrace.model.ovsdb import (
    Atom,
    Bridge,
    Interface,
    OvsdbConfig,
    OvsdbMap,
    OvsdbRow,
    OvsdbSet,
    OvsdbTable,
    OvsdbUuid,
    OvsdbValue,
    Pairs,
    Port,
    VlanMode,
)

_SIGNATURES = (
    ("Open_vSwitch", {"bridges", "ovs_version"}),
    ("Bridge", {"datapath_type", "ports", "fail_mode"}),
    ("Port", {"interfaces", "tag", "trunks"}),
    ("Interface", {"ofport", "type", "options"}),
)


def parse_ovs_vsctl_list(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> OvsdbTable:
    """Parse one ``--format=json list`` output; the table is recognised by its columns."""
    try:
        doc = json.loads(text)
        headings = [str(h) for h in doc["headings"]]
        data = doc["data"]
    except (ValueError, KeyError, TypeError) as err:
        raise ParseError(
            SourcePos(source, 1), f"not ovs-vsctl --format=json list output ({err})"
        ) from None
    name = table_name(set(headings))
    rows: list[OvsdbRow] = []
    for index, row in enumerate(data, start=1):
        try:
            if len(row) != len(headings):
                raise ValueError(f"{len(row)} values for {len(headings)} columns")
            rows.append(OvsdbRow(tuple((h, _value(v)) for h, v in zip(headings, row, strict=True))))
        except (ValueError, TypeError) as err:
            error = ParseError(SourcePos(source, 1), f"row {index}: {err}")
            if sink is None:
                raise error from None
            sink.error(error)
    return OvsdbTable(name, tuple(rows), source)


def table_name(headings: set[str]) -> str:
    """Which table a ``list`` output shows, from its columns (empty when none fits)."""
    return next((n for n, cols in _SIGNATURES if cols <= headings), "")


def _atom(v: Any) -> Atom:
    if isinstance(v, list) and len(v) == 2 and v[0] in ("uuid", "named-uuid"):
        return OvsdbUuid(str(v[1]))
    if isinstance(v, str | int | float | bool):
        return v
    raise ValueError(f"unexpected OVSDB atom {v!r}")


def _value(v: Any) -> OvsdbValue:
    if isinstance(v, list) and len(v) == 2 and v[0] == "set":
        return OvsdbSet(tuple(_atom(x) for x in v[1]))
    if isinstance(v, list) and len(v) == 2 and v[0] == "map":
        return OvsdbMap(tuple((_atom(k), _atom(x)) for k, x in v[1]))
    return _atom(v)


def _items(value: OvsdbValue | None) -> tuple[Atom, ...]:
    if value is None:
        return ()
    if isinstance(value, OvsdbSet):
        return value.items
    if isinstance(value, OvsdbMap):
        return ()
    return (value,)


def _pairs(value: OvsdbValue | None) -> Pairs:
    if isinstance(value, OvsdbMap):
        return tuple((str(k), str(v)) for k, v in value.pairs)
    return ()


def _one(value: OvsdbValue | None) -> Atom | None:
    items = _items(value)
    return items[0] if items else None


def _uuid(row: OvsdbRow) -> str:
    value = row.get("_uuid")
    return value.uuid if isinstance(value, OvsdbUuid) else ""


def interface_from_row(row: OvsdbRow) -> Interface:
    ofport = _one(row.get("ofport"))
    error = _one(row.get("error"))
    mac = _one(row.get("mac_in_use"))
    return Interface(
        str(row.get("name") or ""),
        type=str(row.get("type") or ""),
        ofport=ofport if isinstance(ofport, int) and not isinstance(ofport, bool) else None,
        options=_pairs(row.get("options")),
        external_ids=_pairs(row.get("external_ids")),
        mac_in_use=str(mac) if mac is not None else None,
        error=str(error) if error is not None else None,
    )


def port_from_row(row: OvsdbRow, interfaces: Iterable[Interface]) -> Port:
    tag = _one(row.get("tag"))
    mode = _one(row.get("vlan_mode"))
    return Port(
        str(row.get("name") or ""),
        tuple(interfaces),
        tag=tag if isinstance(tag, int) and not isinstance(tag, bool) else None,
        trunks=tuple(sorted(t for t in _items(row.get("trunks")) if isinstance(t, int))),
        vlan_mode=VlanMode(mode) if mode in {m.value for m in VlanMode} else None,
        external_ids=_pairs(row.get("external_ids")),
        other_config=_pairs(row.get("other_config")),
    )


def ovsdb_from_tables(
    tables: Iterable[OvsdbTable], *, show: OvsdbConfig | None = None, source: str = ""
) -> OvsdbConfig:
    """Merge Bridge/Port/Interface tables (and ``ovs-vsctl show``, if given) into one config.

    With a Bridge table the tables alone decide which port is where. Without one, the bridges
    of ``show`` are kept and their ports and interfaces are completed from the Port and
    Interface tables (vlan_mode, OpenFlow numbers, external_ids).
    """
    by_name = {t.name: t for t in tables}
    iface_rows = {_uuid(r): r for r in by_name["Interface"].rows} if "Interface" in by_name else {}
    port_rows = {_uuid(r): r for r in by_name["Port"].rows} if "Port" in by_name else {}
    ifaces = {u: interface_from_row(r) for u, r in iface_rows.items()}
    if "Bridge" in by_name:
        bridges = []
        for row in by_name["Bridge"].rows:
            ports = []
            for pu in _items(row.get("ports")):
                if isinstance(pu, OvsdbUuid) and pu.uuid in port_rows:
                    prow = port_rows[pu.uuid]
                    members = [
                        ifaces[i.uuid]
                        for i in _items(prow.get("interfaces"))
                        if isinstance(i, OvsdbUuid) and i.uuid in ifaces
                    ]
                    ports.append(port_from_row(prow, members))
            other = _pairs(row.get("other_config"))
            snoop = row.get("mcast_snooping_enable")
            bridges.append(
                Bridge(
                    str(row.get("name") or ""),
                    tuple(sorted(ports, key=lambda p: p.name)),
                    datapath_type=str(row.get("datapath_type") or ""),
                    fail_mode=str(_one(row.get("fail_mode")) or ""),
                    external_ids=_pairs(row.get("external_ids")),
                    other_config=other,
                    mcast_snooping_enable=snoop is True,
                )
            )
        version = None
        if "Open_vSwitch" in by_name and by_name["Open_vSwitch"].rows:
            v = _one(by_name["Open_vSwitch"].rows[0].get("ovs_version"))
            version = str(v) if v is not None else None
        return OvsdbConfig(tuple(bridges), version or (show.ovs_version if show else None), source)
    if show is None:
        raise InputError(
            "ovs-vsctl list Port/Interface alone cannot place ports in bridges: "
            "add `ovs-vsctl --format=json list Bridge` or `ovs-vsctl show`"
        )
    iface_by_name = {i.name: i for i in ifaces.values()}
    port_by_name = {str(r.get("name")): r for r in port_rows.values()}
    bridges = []
    for b in show.bridges:
        ports = []
        for p in b.ports:
            merged = tuple(_merge_iface(i, iface_by_name.get(i.name)) for i in p.interfaces)
            port_row = port_by_name.get(p.name)
            ports.append(
                port_from_row(port_row, merged)
                if port_row is not None
                else replace(p, interfaces=merged)
            )
        bridges.append(replace(b, ports=tuple(ports)))
    return OvsdbConfig(tuple(bridges), show.ovs_version, source or show.source)


def _merge_iface(shown: Interface, row: Interface | None) -> Interface:
    if row is None:
        return shown
    return Interface(
        shown.name,
        row.type or shown.type,
        row.ofport,
        row.options or shown.options,
        row.external_ids,
        row.mac_in_use,
        row.error or shown.error,
    )
