"""Checks on a node's OpenFlow tables: flows that name OpenFlow ports the bridge no longer
has (a match on such an ``in_port`` never happens, an output to it goes nowhere), and flows
that can never match because a higher-priority flow of the same table matches all their
packets.

Matches are compared as OVS's classifier stores them (value/mask per storage field), so a
cover is proven bit by bit; a term nodetrace does not model makes the pair *cannot tell*.
"""

from __future__ import annotations

from collections.abc import Iterator

from nodetrace.audit.evidence import capped, flow_evidence
from nodetrace.audit.findings import CheckResult, Evidence, Finding, NotRun, Severity
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.openflow import (
    Action,
    Clone,
    Enqueue,
    Flow,
    Output,
    PortName,
    PortNumber,
    PortRef,
    Resubmit,
)
from nodetrace.model.ovs_switch import BridgeState
from nodetrace.model.snapshot import Snapshot

FIRST_RESERVED_PORT = 0xFF00
"""OpenFlow 1.0 numbers from here up are reserved ports (LOCAL, NORMAL...), never a missing port."""


def _no_flows(check: str, snap: Snapshot) -> NotRun | None:
    if snap.ovs is not None and any(b.flows is not None for b in snap.ovs.bridges):
        return None
    if snap.ovs is None and not snap.ovs_evidence:
        return NotRun(check, "the node shows no Open vSwitch")
    return NotRun(check, "the snapshot has no flow dump", "ovs-ofctl dump-flows BRIDGE")


# --- flow-missing-ofport --------------------------------------------------------------------------


def flows_to_missing_ports(snap: Snapshot, inv: Inventory) -> CheckResult:
    missing = _no_flows("flow-missing-ofport", snap)
    if missing is not None or snap.ovs is None:
        return CheckResult(not_run=(missing,) if missing else ())
    findings: list[Finding] = []
    not_run: list[NotRun] = []
    for bridge in snap.ovs.bridges:
        if bridge.flows is None:
            continue
        if bridge.ofctl is None and bridge.ovsdb is None:
            not_run.append(
                NotRun(
                    "flow-missing-ofport",
                    f"{bridge.name}: no port listing, so a port's absence cannot be told",
                    f"ovs-ofctl show {bridge.name}",
                )
            )
            continue
        unnumbered = [p.name for p in bridge.ports if p.ofport is None]
        numbers = {p.ofport for p in bridge.ports if p.ofport is not None}
        names = {p.name for p in bridge.ports}
        by_port: dict[str, list[Flow]] = {}
        for flow in bridge.flows.flows:
            for ref, role in _port_refs(flow):
                absent = _absent(ref, numbers, names, bool(unnumbered))
                if absent is not None:
                    by_port.setdefault(f"{absent} ({role})", []).append(flow)
        if unnumbered:
            not_run.append(
                NotRun(
                    "flow-missing-ofport",
                    f"{bridge.name}: OpenFlow numbers unknown for {', '.join(unnumbered)}; "
                    "flows naming a port by number were not checked",
                    f"ovs-ofctl show {bridge.name}",
                )
            )
        for what, flows in sorted(by_port.items()):
            findings.append(_missing_port_finding(bridge, what, flows))
    return CheckResult(tuple(findings), tuple(not_run))


def _actions(actions: tuple[Action, ...]) -> Iterator[Action]:
    for a in actions:
        yield a
        if isinstance(a, Clone):
            yield from _actions(a.actions)


def _port_refs(flow: Flow) -> Iterator[tuple[PortRef, str]]:
    if flow.in_port is not None:
        yield flow.in_port, "in_port"
    for a in _actions(flow.actions):
        if isinstance(a, Output | Enqueue):
            yield a.port, "output"
        elif isinstance(a, Resubmit) and a.port is not None:
            yield a.port, "resubmit in_port"


def _absent(ref: PortRef, numbers: set[int], names: set[str], unnumbered: bool) -> str | None:
    match ref:
        case PortNumber(number):
            if number >= FIRST_RESERVED_PORT or number in numbers or unnumbered:
                return None
            return f"port {number}"
        case PortName(name):
            return None if name in names else f'port "{name}"'
        case _:
            return None


def _missing_port_finding(bridge: BridgeState, what: str, flows: list[Flow]) -> Finding:
    source = bridge.flows.source if bridge.flows is not None else ""
    listing = bridge.ofctl.source if bridge.ofctl is not None else "ovs-vsctl"
    evidence = [flow_evidence(bridge.name, f, source) for f in flows]
    evidence.append(Evidence(f"{bridge.name} has no such OpenFlow port", listing))
    port = what.split(" (")[0]
    outputs = "output" in what
    return Finding(
        check="flow-missing-ofport",
        severity=Severity.WARNING,
        title=(
            f"{len(flows)} flows of {bridge.name} "
            + ("send packets to" if outputs else "match packets from")
            + f" {port}, which the bridge does not have"
            + (": those packets are lost" if outputs else ": the flows never match")
        ),
        subject=f"{bridge.name} {port}",
        evidence=capped(evidence, "flows"),
        confirm=f"ovs-ofctl show {bridge.name}; ovs-ofctl dump-flows {bridge.name}",
    )


# --- shadowed-flow ---------------------------------------------------------------------------------


def shadowed_flows(snap: Snapshot, inv: Inventory) -> CheckResult:
    missing = _no_flows("shadowed-flow", snap)
    if missing is not None or snap.ovs is None:
        return CheckResult(not_run=(missing,) if missing else ())
    findings: list[Finding] = []
    undecided: list[tuple[Flow, Flow]] = []
    for bridge in snap.ovs.bridges:
        if bridge.flows is None:
            continue
        source = bridge.flows.source
        for table in bridge.flows.tables:
            # One finding per covering flow, with every flow it hides.
            hidden: dict[int, tuple[Flow, list[Flow]]] = {}
            for first, later in _shadows(bridge.flows.table(table), undecided):
                hidden.setdefault(id(first), (first, []))[1].append(later)
            for first, laters in hidden.values():
                findings.append(_shadow_finding(bridge.name, source, first, laters))
    not_run: tuple[NotRun, ...] = ()
    if undecided:
        first, later = undecided[0]
        not_run = (
            NotRun(
                "shadowed-flow",
                f"{len(undecided)} flow pairs cannot be told: the higher-priority flow matches "
                f"on {', '.join(first.unsupported)}, which nodetrace does not model (first: "
                f"{first.span} over {later.span})",
            ),
        )
    return CheckResult(tuple(findings), not_run)


def flow_covers(first: Flow, later: Flow) -> bool | None:
    """Whether every packet ``later`` matches is matched by ``first`` (bit by bit)."""
    if first.in_port is not None and first.in_port != later.in_port:
        return False
    theirs = {m.field: m for m in later.matches}
    for m in first.matches:
        other = theirs.get(m.field)
        if m.mask == 0:
            continue
        if other is None or other.mask & m.mask != m.mask:
            return False
        if other.value & m.mask != m.value & m.mask:
            return False
    return None if first.unsupported else True


def _shadows(
    flows: tuple[Flow, ...], undecided: list[tuple[Flow, Flow]]
) -> Iterator[tuple[Flow, Flow]]:
    ordered = sorted(flows, key=lambda f: -f.priority)
    for j, later in enumerate(ordered):
        for first in ordered[:j]:
            if first.priority <= later.priority:
                break
            if first.conjunctions:
                continue  # a conjunction clause alone does not end the lookup
            verdict = flow_covers(first, later)
            if verdict is True:
                yield first, later
                break
            if verdict is None:
                undecided.append((first, later))


def _shadow_finding(bridge: str, source: str, first: Flow, laters: list[Flow]) -> Finding:
    same = all(first.actions_text == later.actions_text for later in laters)
    evidence = [flow_evidence(bridge, first, source)]
    for later in laters:
        evidence.append(flow_evidence(bridge, later, source))
        evidence += _counter_evidence(first, later)
    later = laters[0]
    what = (
        f"flow priority={later.priority},{later.match_text or '(all)'} can never match"
        if len(laters) == 1
        else f"{len(laters)} flows of {bridge} table {later.table} can never match"
    )
    return Finding(
        check="shadowed-flow",
        severity=Severity.INFO if same else Severity.WARNING,
        title=(
            f"{bridge} table {later.table}: {what}: the priority={first.priority}"
            f"{',' + first.match_text if first.match_text else ''} flow matches all their "
            "packets first"
        ),
        subject=f"{bridge} table {later.table}",
        evidence=capped(evidence, "lines"),
        confirm=f"ovs-ofctl dump-flows {bridge} table={later.table}",
    )


def _counter_evidence(first: Flow, later: Flow) -> list[Evidence]:
    """The dump's counters, read against the claim: packets counted on the later flow must all
    predate the covering flow (its last hit is older than the covering flow's age)."""
    if later.stats is None or later.stats.n_packets is None:
        return []
    where = str(later.span) if later.span is not None else ""
    text = f"n_packets={later.stats.n_packets} on the shadowed flow"
    age = first.stats.duration if first.stats is not None else None
    idle = later.stats.idle_age
    if later.stats.n_packets and age is not None and idle is not None:
        relation = "before" if idle >= age - 1 else "AFTER"
        text += (
            f"; its last hit was {idle:g} s ago, {relation} the covering flow was added "
            f"({age:g} s ago)"
        )
    return [Evidence(text, where)]
