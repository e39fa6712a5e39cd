"""nodetrace as a library: load a node, trace a packet through it, explain a TRACE log, render.

These calls are what the ``trace`` and ``log`` commands themselves run, so a script gets
exactly the answers the command line gives. Each imports its engines when first called: a
script (or ``nodetrace log``) that only explains logs never loads the OpenFlow grammar or the
whole-node walk. Everything they return is a frozen model type
(:class:`~nodetrace.model.trace.Trace` above all), which the renderers print and
:func:`~nodetrace.model.trace_diff.diff` compares. ``docs/api.md`` shows them in use.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Sequence
from ipaddress import ip_address
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nodetrace.errors import DiagnosticSink, InputError, UsageError
from nodetrace.model.topology import MAIN_NS
from nodetrace.snapshot.parts import is_snapshot, snapshot_ipsets, snapshot_rulesets
from nodetrace.tracelog.namespace_books import NamespaceBooks
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rules_input import load_rulebook
from nodetrace.tracelog.source import open_log

if TYPE_CHECKING:
    from nodetrace.engine.walk import Start, Target, WalkRequest
    from nodetrace.model.node_inventory import PortInfo
    from nodetrace.model.snapshot import Snapshot
    from nodetrace.model.trace import Trace
    from nodetrace.tracelog.observed import ObservedPacket
    from nodetrace.tracelog.rulebook import RuleBook

Format = Literal["text", "json", "kernel", "ofproto"]


def load_snapshot(path: str | Path) -> Snapshot:
    """A node's state from a ``collect`` bundle, a sosreport or a folder of command outputs
    (folder or archive). What the source lacks is listed in ``Snapshot.missing``."""
    from nodetrace.snapshot.load import load

    return load(path)


def trace(
    snapshot: Snapshot,
    packet: str,
    *,
    from_device: str | None = None,
    netns: str = MAIN_NS,
    from_port: str | None = None,
    from_host: bool = False,
    to_port: str | None = None,
    ct_state: str | None = None,
) -> Trace:
    """Follow ``packet`` (OVS flow syntax, as ``ofproto/trace`` takes it) through the node.

    Say where it starts: ``from_device`` (in ``netns``), ``from_port`` (a Neutron port's UUID,
    a prefix of it or its device: that port's VM or namespace sends it), ``from_host``, or
    ``to_port`` alone (it arrives over the tunnel of that port's network). ``to_port`` also
    names what the packet is meant to reach. Fields the packet leaves out are completed from
    the node and said in ``Trace.flow``; anything assumed is in ``Trace.assumptions``.
    Raises :class:`~nodetrace.errors.UsageError` for a start the node does not have.
    """
    from nodetrace.engine.walk import walk
    from nodetrace.engine.walk_adapters import engines_for

    request, notes = trace_request(
        snapshot,
        packet,
        from_device=from_device,
        netns=netns,
        from_port=from_port,
        from_host=from_host,
        to_port=to_port,
        ct_state=ct_state,
    )
    result = walk(snapshot, request, engines_for(snapshot, ct_state=ct_state), switch=snapshot.ovs)
    if notes:
        result = dataclasses.replace(result, assumptions=(*notes, *result.assumptions))
    return result


def trace_request(
    snapshot: Snapshot,
    packet: str,
    *,
    from_device: str | None = None,
    netns: str = MAIN_NS,
    from_port: str | None = None,
    from_host: bool = False,
    to_port: str | None = None,
    ct_state: str | None = None,
) -> tuple[WalkRequest, list[str]]:
    """What :func:`trace` hands the walk: where the packet starts, what it is for, and the
    packet completed field by field (each field's origin travels with it); and the notes on
    how the start was found."""
    from nodetrace.engine.walk import (
        FromHost,
        FromInterface,
        FromNamespaceDevice,
        FromOvsPort,
        PeerHint,
        WalkRequest,
    )
    from nodetrace.model.packet_origin import FieldOrigin, Origin
    from nodetrace.neutron.inventory import inventory
    from nodetrace.neutron.packet_completion import Ends, complete_packet
    from nodetrace.neutron.ports import find_port
    from nodetrace.neutron.trace_ends import device_ends, hybrid_veth_pairs, sender, tunnel_arrival
    from nodetrace.parsers.flow_syntax import parse_flow

    spec = parse_flow(packet)
    meta = dict(spec.metadata)
    notes: list[str] = []
    target_port = find_port(snapshot, to_port) if to_port else None
    sent_by: PortInfo | None = None
    start: Start
    if from_device:
        start, note = _device_start(snapshot, from_device, netns)
        notes += [note] if note else []
        sent_by, receiver = device_ends(snapshot, from_device, netns)
        target_port = target_port or receiver
    elif from_port:
        sent_by = find_port(snapshot, from_port)
        who = sender(sent_by)
        if who.namespace is None:
            start = FromInterface(who.device)
        else:
            start = FromNamespaceDevice(who.device, who.namespace, who.who)
    elif from_host:
        start = FromHost(netns)
    elif target_port is not None:
        arrival = tunnel_arrival(snapshot, target_port, meta)
        start, meta = FromOvsPort(arrival.bridge, arrival.port), dict(arrival.metadata)
        notes += [arrival.note] if arrival.note else []
    else:
        raise UsageError(
            "say where the packet starts: --from, --from-port, --from-host or --to-port"
        )
    for key in ("tun_src", "tun_dst"):
        if key in meta:
            try:
                ip_address(meta[key])
            except ValueError:
                raise UsageError(f"{key}={meta[key]}: not an IP address") from None
    ports = tuple(inventory(snapshot).ports)
    over_tunnel = not (from_device or from_port or from_host)
    ends = Ends(sent_by, target_port, ports, over_tunnel, from_host)
    given = dict(spec.metadata)
    done = complete_packet(snapshot, spec.packet, spec.given or frozenset(), ends, given.items())
    derived = tuple(
        FieldOrigin(k, v, Origin.DERIVED, f"the tunnel of port {target_port.port_id}'s network")
        for k, v in meta.items()
        if k not in given and target_port is not None
    )
    hints = tuple(PeerHint(a, b, source) for a, b, source in hybrid_veth_pairs(ports))
    request = WalkRequest(
        done.packet, start, tuple(meta.items()), ct_state, _target(target_port),
        flow=done.flow + derived, peer_hints=hints,
    )  # fmt: skip
    return request, notes


def explain_log(
    paths: Sequence[str | Path],
    *,
    rules: Sequence[str | Path] = (),
    ipsets: Sequence[str | Path] = (),
    sink: DiagnosticSink | None = None,
) -> Iterator[ObservedPacket]:
    """Every packet of the TRACE logs ``paths`` (kernel log, journal, ``xtables-monitor
    --trace``, ``nft monitor trace``; plain or compressed), explained with the rules of
    ``rules`` (``iptables-save`` output or ``nft -a list ruleset``) and ``ipsets``.

    Malformed lines and unusable rule files are reported to ``sink`` (file, line, reason) and
    skipped; an unreadable file raises :class:`~nodetrace.errors.InputError`.
    """
    sink = sink if sink is not None else DiagnosticSink()
    book = log_rules(rules, ipsets, sink)
    analysis = Analysis(book=book, sink=sink)
    for path in paths:
        source = open_log(str(path), sink)
        try:
            yield from analysis.packets(source)
        finally:
            source.close()


def _namespace_books(snap: Snapshot, name: str, sink: DiagnosticSink) -> NamespaceBooks | None:
    """Every namespace's rules, when more than the host's namespace has some."""
    books = {}
    for state in snap.namespaces:
        taken = snapshot_rulesets(snap, state.name)
        if taken:
            where = name if state.name == MAIN_NS else f"{name} (namespace {state.name})"
            book = load_rulebook(
                (), (), sink, taken=taken, taken_ipsets=state.ipsets, taken_from=where
            )
            if book is not None:
                books[state.name] = book
    if len(books) < 2:
        return None
    homes: dict[str, set[str]] = {}
    for iface in snap.topology.interfaces:
        homes.setdefault(iface.name, set()).add(iface.netns)
    return NamespaceBooks(books, {n: frozenset(ns) for n, ns in homes.items()})


def log_rules(
    rules: Sequence[str | Path],
    ipsets: Sequence[str | Path],
    sink: DiagnosticSink,
    *,
    netns: str | None = None,
) -> RuleBook | NamespaceBooks | None:
    """The rules a log is explained with: ``iptables-save``/``nft -a list ruleset`` files and
    ipset saves, and the rulesets and ipsets of at most one snapshot (folder or archive) among
    ``rules``: of namespace ``netns``, or with ``None`` of each namespace that has rules, each
    packet then explained with its own namespace's (:mod:`nodetrace.tracelog.namespace_books`)
    unless files are given beside the snapshot (they are the host's)."""
    names = [str(r) for r in rules]
    snapshots = [r for r in names if is_snapshot(r)]
    if len(snapshots) > 1:
        raise UsageError("--rules: give one snapshot (its rulesets are the node's)")
    files = [r for r in names if r not in snapshots]
    set_files = [str(i) for i in ipsets]
    if not snapshots:
        if netns is not None and netns != MAIN_NS:
            raise UsageError("--netns chooses a namespace of a snapshot given with --rules")
        return load_rulebook(files, set_files, sink)
    from nodetrace.snapshot.load import load

    name = snapshots[0]
    snap = load(name)
    if netns is None and not files and not set_files:
        books = _namespace_books(snap, name, sink)
        if books is not None:
            return books
    netns = MAIN_NS if netns is None else netns
    taken = snapshot_rulesets(snap, netns)
    if not taken:
        where = f" of namespace {netns}" if netns != MAIN_NS else ""
        run = "iptables-save" if netns == MAIN_NS else f"ip netns exec {netns} iptables-save"
        raise InputError(
            f"{name}: the snapshot has no iptables-save or ip6tables-save output{where}; "
            f"collect it with `{run}`"
        )
    return load_rulebook(
        files,
        set_files,
        sink,
        taken=taken,
        taken_ipsets=snapshot_ipsets(snap, netns),
        taken_from=name,
    )


def render_trace(
    result: Trace,
    format: Format = "text",
    *,
    level: Literal["summary", "default", "detailed"] = "default",
    width: int | None = None,
) -> str:
    """``result`` as the commands print it: ``text`` (at ``level``, wrapped at ``width``;
    ``None``: never wrapped), ``json`` (docs/json.md), ``kernel`` (the netfilter steps as the
    kernel's TRACE lines) or ``ofproto`` (the OpenFlow steps as ``ofproto/trace``)."""
    from nodetrace.render.json import dumps, trace_document
    from nodetrace.render.kernel_trace import render_kernel_walk
    from nodetrace.render.ofproto_trace import render_ofproto_walk
    from nodetrace.render.screen import Screen
    from nodetrace.render.text import Level
    from nodetrace.render.text import render_trace as render_text

    match format:
        case "text":
            return render_text(result, Screen(width), level=Level(level))
        case "json":
            return dumps(trace_document("trace", result)) + "\n"
        case "kernel":
            return render_kernel_walk(result)[0]
        case "ofproto":
            return render_ofproto_walk(result)
    raise UsageError(f"format {format!r}: choose text, json, kernel or ofproto")


def _target(port: PortInfo | None) -> Target | None:
    from nodetrace.engine.walk import ToDevice

    if port is None or port.tap is None:
        return None
    return ToDevice(port.tap, label=f"the VM of port {port.port_id} ({port.tap})")


def _device_start(snap: Snapshot, name: str, netns: str) -> tuple[Start, str | None]:
    """A start device must be one of the snapshot's; a typo gets the names close to it.

    A port that only a bridge's flows name (a dump taken with names, no port listing) starts
    in that bridge's pipeline, said.
    """
    from nodetrace.engine.walk import FromInterface, FromOvsPort
    from nodetrace.neutron.ports import listing_cut

    if snap.topology.interface(name, netns) is not None:
        return FromInterface(name, netns), None
    bridges = snap.ovs.bridges if snap.ovs else ()
    ovs_names = [p.name for b in bridges for p in b.ports]
    if netns == MAIN_NS and name in ovs_names:
        return FromInterface(name, netns), None
    named = {b.name: b.ports_named_by_flows() for b in bridges} if netns == MAIN_NS else {}
    for bridge, names in named.items():
        if name in names:
            note = (
                f"--from {name}: known only as a port that {bridge}'s flows name: the packet "
                "enters that bridge's pipeline on it"
            )
            return FromOvsPort(bridge, name), note
    known = [i.name for i in snap.topology.in_namespace(netns)]
    if netns == MAIN_NS:
        known += ovs_names + [n for names in named.values() for n in names]
    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    ns = f" in namespace {netns}" if netns != MAIN_NS else ""
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    cut = listing_cut(snap) if netns == MAIN_NS else ""
    raise UsageError(f"--from {name}: no such device{ns} in the snapshot{hint}{cut}")
