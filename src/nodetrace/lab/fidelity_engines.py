"""How each engine is asked for its prediction in the fidelity suite, and how it is compared.

An adapter loads what its engine needs from the lab's snapshot bundles once per scenario, then
for each packet predicts what the real lab observed and says whether the two agree. What the
lab observed comes as observed traces (:mod:`nodetrace.lab.observe`), and the netfilter and
OpenFlow predictions are compared with them step by step (:func:`nodetrace.model.trace_diff.diff`):

* ``netfilter``: for each netfilter pass the packet really made (the ``qbr`` of the sending
  VM, a router's namespace, then the ``qbr`` of the receiving VM), the engine's steps against
  the kernel's: table, chain,
  kind, rule number and the devices on iptables-legacy; rule handle, verdict and the re-printed
  rule on iptables-nft. One engine per node and per router namespace keeps its conntrack table
  across the scenario's packets, as the kernel does.
* ``openflow``: each ``ofproto/trace`` the lab ran, replayed on the same node's snapshot: the
  same lookups (bridge, table, flow, actions) in the same order and the same fate.
* ``walk``: the whole-node walk's fate of the packet against the real one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, assert_never

from nodetrace.lab.fidelity_routed import (
    ROUTER,
    Leg,
    NetfilterPass,
    flat_legs,
    netfilter_passes,
    routed_legs,
)
from nodetrace.lab.state import LabInfo
from nodetrace.model.trace import (
    DeviceStep,
    Hook,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    StepKind,
    Trace,
)
from nodetrace.neutron.generate import NodeState
from nodetrace.neutron.scenario import FirewallDriver, Scenario

if TYPE_CHECKING:
    from nodetrace.lab.fidelity_plan import Send
    from nodetrace.lab.observe import Observation


@dataclass(frozen=True, slots=True)
class Comparison:
    status: str
    """``agree``, ``disagree``, ``error`` (the engine raised, or could not load the scenario)
    or ``skipped`` (nothing to compare)."""
    detail: str = ""
    """What was compared, or where the two part (the difference's own sentence)."""


@dataclass(frozen=True, slots=True)
class ScenarioContext:
    scenario: Scenario
    info: LabInfo
    states: Mapping[str, NodeState]
    snapshots: Mapping[str, Path]


class EngineAdapter(Protocol):
    name: str

    def prepare(self, ctx: ScenarioContext) -> None:
        """Load the scenario's snapshots (once per lab)."""

    def compare(self, send: Send, obs: Observation) -> Comparison:
        """The engine's prediction for one packet against what the lab observed."""


class NetfilterAdapter:
    name = "netfilter"

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}
        self._ctx: ScenarioContext | None = None

    def prepare(self, ctx: ScenarioContext) -> None:
        from nodetrace.engine.netfilter import NetfilterEngine
        from nodetrace.engine.walk_adapters import NetfilterAdapter as NamespaceEngines
        from nodetrace.snapshot.load import load

        self._ctx = ctx
        self._engines = {}
        for node, path in ctx.snapshots.items():
            snap = load(path)
            main = snap.main
            if main.iptables is None:
                raise ValueError(f"the snapshot of {node} has no IPv4 ruleset")
            self._engines[node] = NetfilterEngine(main.iptables, ipsets=main.ipsets)
            # A router's namespace: its own rules, addresses (REDIRECT) and conntrack table.
            per_namespace = NamespaceEngines(snap)
            for ns in snap.namespaces:
                if ns.name in ctx.info.node(node).namespaces and ns.iptables is not None:
                    self._engines[ns.name] = per_namespace.engine(ns.iptables, ns.ipsets, ns.name)

    def compare(self, send: Send, obs: Observation) -> Comparison:
        assert self._ctx is not None
        first_difference = ""
        notes = []
        compared = 0
        for p in netfilter_passes(self._ctx, send):
            seen = _seen(obs, p)
            if seen is None:
                notes.append(f"{p.label} not reached")
                continue  # the packet never got there (dropped before, or by OVS)
            result = self._engines[p.where].run(p.packet, p.path, routed=p.routed)
            simulated = (
                result.trace if obs.trace_format == "kernel" else as_nf_tables_reports(result.trace)
            )
            difference = seen.diff(simulated)
            compared += 1
            notes.append(f"{p.label}: {difference}")
            if not difference.same and not first_difference:
                # The later passes still run: the engine's conntrack table must learn them.
                first_difference = f"{p.label}: {difference}"
        if first_difference:
            return Comparison("disagree", first_difference)
        if not compared:
            return Comparison("skipped", "no Linux bridge pass was reached; " + "; ".join(notes))
        return Comparison("agree", "; ".join(notes))


def _seen(obs: Observation, p: NetfilterPass) -> Trace | None:
    if p.bridge is not None:
        return obs.bridge_pass(p.where, p.bridge)
    return obs.namespace_pass(p.where)


def as_nf_tables_reports(trace: Trace) -> Trace:
    """A simulated trace as nf_tables' trace events report it: a user chain's end reports
    nothing, and every rule is reported as a rule (legacy TRACE calls a chain's unconditional
    last rule ``return`` or ``policy``)."""
    steps = []
    for s in trace.steps:
        if isinstance(s, NetfilterStep) and s.rule is not None and s.kind is not StepKind.RULE:
            s = replace(s, kind=StepKind.RULE)
        elif isinstance(s, NetfilterStep) and s.kind is StepKind.RETURN:
            continue
        steps.append(s)
    return replace(trace, steps=tuple(steps), verdict_step=None)


class OpenFlowAdapter:
    """Each ``ofproto/trace`` the lab ran, replayed through the OpenFlow engine on the same
    node's snapshot: the same lookups in the same order, and the same drop/output verdict."""

    name = "openflow"

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}

    def prepare(self, ctx: ScenarioContext) -> None:
        from nodetrace.engine.openflow import OpenFlowEngine
        from nodetrace.snapshot.load import load

        self._engines = {}
        for node, path in ctx.snapshots.items():
            switch = load(path).ovs
            if switch is None:
                raise ValueError(f"the snapshot of {node} has no Open vSwitch state")
            self._engines[node] = OpenFlowEngine(switch, apply_side_effects=False)

    def compare(self, send: Send, obs: Observation) -> Comparison:
        from nodetrace.parsers.flow_syntax import parse_flow

        if not obs.ofproto_input:
            return Comparison("skipped", "no ofproto/trace was run")
        observed = obs.openflow
        notes = []
        for node, (bridge, flow) in obs.ofproto_input.items():
            spec = parse_flow(flow)
            in_port = spec.get("in_port")
            metadata = [(k, v) for k, v in spec.metadata if k != "in_port"]
            simulated = self._engines[node].trace(bridge, in_port, spec.packet, metadata)
            difference = observed[node].diff(simulated.as_trace())
            if not difference.same:
                return Comparison("disagree", f"{node}: {difference}")
            notes.append(f"{node}: {difference}")
        return Comparison("agree", "; ".join(notes))


class WalkAdapter:
    """The whole-node walk from the packet's entry (the sending VM's tap, then the underlay NIC
    of the receiving node, carrying the encapsulated or VLAN-tagged frame) on each node the
    packet crosses: which VM it reaches, or on which node and in which layer (netfilter or
    OpenFlow) it is dropped, against what the real lab did (:func:`real_outcome`)."""

    name = "walk"

    def __init__(self) -> None:
        self._ctx: ScenarioContext | None = None
        self._snaps: dict[str, Any] = {}
        self._engines: dict[str, Any] = {}

    def prepare(self, ctx: ScenarioContext) -> None:
        from nodetrace.engine.walk_adapters import engines_for
        from nodetrace.snapshot.load import load

        self._ctx = ctx
        self._snaps = {node: load(path) for node, path in ctx.snapshots.items()}
        # One set of engines per node for the whole lab: their conntrack tables learn from
        # every packet, as the kernel's do.
        self._engines = {node: engines_for(snap) for node, snap in self._snaps.items()}

    def compare(self, send: Send, obs: Observation) -> Comparison:
        from nodetrace.engine.walk import FromInterface, WalkRequest, walk

        assert self._ctx is not None
        ctx = self._ctx
        predicted = "not delivered"
        notes = []
        for leg in walk_legs(ctx, send):
            snap = self._snaps[leg.node]
            start = FromInterface(leg.start)
            request = WalkRequest(leg.packet, start, leg.metadata, None, leg.target)
            trace = walk(snap, request, self._engines[leg.node], switch=snap.ovs)
            notes.append(f"{leg.node}: {trace.outcome.value}: {trace.reason}")
            if trace.outcome is Outcome.DELIVERED:
                if leg.target is not None:
                    predicted = f"delivered to {send.target}"
                continue
            step = trace.steps[trace.verdict_step] if trace.verdict_step is not None else None
            match step:
                case NetfilterStep():
                    predicted = f"dropped on {leg.node} by netfilter"
                case OpenFlowStep():
                    predicted = f"dropped on {leg.node} by openflow"
                case DeviceStep() | None:
                    predicted = f"{trace.outcome.value} on {leg.node}"
                case _:
                    assert_never(step)
            break
        real = real_outcome(ctx, send, obs)
        if real == predicted or (
            real == NOT_DELIVERED_UNPLACED and predicted != f"delivered to {send.target}"
        ):
            return Comparison("agree", f"{real}; " + " | ".join(notes))
        return Comparison("disagree", f"observed {real}, walked {predicted}; " + " | ".join(notes))


def walk_legs(ctx: ScenarioContext, send: Send) -> list[Leg]:
    """Where the walk starts on each node the packet crosses (:mod:`.fidelity_routed`)."""
    return routed_legs(ctx, send) if send.hops else flat_legs(ctx, send)


NOT_DELIVERED_UNPLACED = "not delivered (where it was dropped is not observable)"
"""A real outcome any prediction but delivery agrees with."""


def real_outcome(ctx: ScenarioContext, send: Send, obs: Observation) -> str:
    """What the real lab did with the packet: delivered, or dropped on which node by which layer.

    A bridge pass that netfilter's observed trace says was dropped (its TRACE output explained
    with the node's rules) was dropped by netfilter. A packet that left the sending VM's bridge
    but never reached the receiving one was dropped by Open vSwitch, on the first node whose
    ``ofproto/trace`` says so.
    """
    if send.target in obs.arrived:
        return f"delivered to {send.target}"
    dropped_by_ovs = [n for n, t in obs.openflow.items() if t.outcome is Outcome.DROPPED]
    if send.hops:
        return _routed_outcome(ctx, send, obs, dropped_by_ovs)
    native = ctx.scenario.firewall_driver is FirewallDriver.OPENVSWITCH
    if native and send.kind == "established":
        # ofproto/trace resumes every ct() with trk|new, whatever the tracker holds: for a
        # reply it cannot tell where the datapath dropped it, only that it did not arrive.
        return NOT_DELIVERED_UNPLACED
    # ARP: Open vSwitch decides, iptables never sees it; with the native OVS firewall there is
    # no Linux bridge at all: Open vSwitch decides everything.
    if not send.packet.is_ip or native:
        return f"dropped on {dropped_by_ovs[0]} by openflow" if dropped_by_ovs else "not delivered"
    for i, p in enumerate(netfilter_passes(ctx, send)):
        seen = _seen(obs, p)
        if seen is None:
            if i == 0 and send.source != "underlay":
                return "never entered the sending VM's bridge"
            if dropped_by_ovs:
                return f"dropped on {dropped_by_ovs[0]} by openflow"
            return f"lost before {p.bridge} on {p.node}"
        if seen.outcome in (Outcome.DROPPED, Outcome.REJECTED):
            return f"dropped on {p.node} by netfilter"
    return "passed every bridge but did not arrive"


def _routed_outcome(
    ctx: ScenarioContext, send: Send, obs: Observation, dropped_by_ovs: list[str]
) -> str:
    """What the lab did with a packet a router forwards: the first netfilter pass (a bridge or
    the router's namespace) whose TRACE output ends in a drop, else Open vSwitch's drop. A
    packet for the router itself was delivered when its pass in the router's namespace
    reached INPUT and was accepted there (whatever answered it: a proxy, or a reset)."""
    if send.target == ROUTER:
        seen = obs.namespace_pass(send.hops[-1].netns)
        steps = seen.steps if seen is not None else ()
        accepted = seen is not None and seen.outcome not in (Outcome.DROPPED, Outcome.REJECTED)
        if accepted and any(isinstance(s, NetfilterStep) and s.hook is Hook.INPUT for s in steps):
            return f"delivered to {ROUTER}"
    for p in netfilter_passes(ctx, send):
        seen = _seen(obs, p)
        if seen is not None and seen.outcome in (Outcome.DROPPED, Outcome.REJECTED):
            return f"dropped on {p.node} by netfilter"
    if dropped_by_ovs:
        return f"dropped on {dropped_by_ovs[0]} by openflow"
    return NOT_DELIVERED_UNPLACED


ADAPTERS: tuple[EngineAdapter, ...] = (NetfilterAdapter(), OpenFlowAdapter(), WalkAdapter())
