"""A snapshot's counters as one :class:`~nodetrace.model.counters.CounterTables`.

Rules and flows carry their counters already (``iptables-save -c``, ``dump-flows``); the
counter-only outputs (``ip -s -j link``, ``nstat``, ``conntrack -S``, ``dpctl/show -s``, the
``statistics`` of ``ovs-vsctl list Interface``) are kept as text by the loader and parsed here,
so loading a snapshot for a trace never pays for them. What the snapshot lacks is named in
``unreadable`` with the command that would collect it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.counters import CounterSource, CounterTables, Stats
from nodetrace.model.netfilter import Ruleset
from nodetrace.model.openflow import FlowDump
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import RawOutput, Snapshot
from nodetrace.parsers.conntrack_stats import parse_conntrack_stats
from nodetrace.parsers.ip_stats import parse_ip_stats
from nodetrace.parsers.nstat import parse_nstat
from nodetrace.parsers.ovs_dpctl_show_stats import parse_ovs_dpctl_show_stats
from nodetrace.parsers.ovs_interface_statistics import parse_ovs_interface_statistics

T = TypeVar("T")

_NOT_COLLECTED = "not in the snapshot (collect with `{}`)"


def snapshot_counters(snapshot: Snapshot, sink: DiagnosticSink | None = None) -> CounterTables:
    """Every counter ``snapshot`` holds; malformed lines go to ``sink``."""
    sink = sink if sink is not None else DiagnosticSink()
    unreadable: dict[tuple[CounterSource, str], str] = {}
    rulesets: dict[tuple[str, Family], Ruleset] = {}
    link_tables: dict[str, Mapping[str, Stats]] = {}
    nstat: dict[str, Stats] = {}
    conntrack: dict[str, Stats] = {}
    for state in snapshot.namespaces:
        ns = state.name
        for family in Family:
            ruleset = state.ruleset(family)
            if ruleset is not None:
                rulesets[(ns, family)] = ruleset
        if (CounterSource.IPTABLES, ns) not in unreadable and state.iptables is None:
            unreadable[(CounterSource.IPTABLES, ns)] = _NOT_COLLECTED.format("iptables-save -c")
        found = _parsed(snapshot, "ip-link-stats", ns, parse_ip_stats, sink)
        if found is None:
            unreadable[(CounterSource.DEVICE, ns)] = _NOT_COLLECTED.format("ip -s -s -j link")
        else:
            link_tables[ns] = dict(found)
        table = _parsed(snapshot, "nstat", ns, parse_nstat, sink)
        if table is None:
            unreadable[(CounterSource.NSTAT, ns)] = _NOT_COLLECTED.format("nstat -asz")
        else:
            nstat[ns] = table
        table = _parsed(snapshot, "conntrack-stats", ns, parse_conntrack_stats, sink)
        if table is None:
            unreadable[(CounterSource.CONNTRACK, ns)] = _NOT_COLLECTED.format("conntrack -S")
        else:
            conntrack[ns] = table
    flows: dict[str, FlowDump] = {}
    for bridge in snapshot.ovs.bridges if snapshot.ovs else ():
        if bridge.flows is not None:
            flows[bridge.name] = bridge.flows
        else:
            why = _NOT_COLLECTED.format(f"ovs-ofctl dump-flows {bridge.name}")
            unreadable[(CounterSource.OPENFLOW, bridge.name)] = why
    interfaces = _parsed(
        snapshot, "ovs-vsctl-list-interface", "", parse_ovs_interface_statistics, sink
    )
    if interfaces is None:
        why = _NOT_COLLECTED.format("ovs-vsctl --format=json list Interface")
        unreadable[(CounterSource.OVS_INTERFACE, "")] = why
    datapaths = _parsed(
        snapshot, "ovs-appctl-dpctl-show-stats", "", parse_ovs_dpctl_show_stats, sink
    )
    if datapaths is None:
        unreadable[(CounterSource.DATAPATH, "")] = _NOT_COLLECTED.format("ovs-appctl dpctl/show -s")
    return CounterTables(
        rulesets=rulesets,
        flows=flows,
        links=link_tables,
        ovs_interfaces=interfaces or {},
        datapaths=datapaths or {},
        conntrack=conntrack,
        nstat=nstat,
        unreadable=unreadable,
        taken_at=snapshot.collected_at,
    )


def _parsed(
    snapshot: Snapshot,
    kind: str,
    netns: str,
    parser: Callable[..., T],
    sink: DiagnosticSink,
) -> T | None:
    outputs: tuple[RawOutput, ...] = snapshot.raw_outputs(kind, netns=netns)
    if not outputs:
        return None
    raw = outputs[0]
    try:
        return parser(raw.text, source=raw.source, sink=sink)
    except ParseError as err:
        sink.error(err)
        return None
