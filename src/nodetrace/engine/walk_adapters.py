"""The netfilter and OpenFlow engines, seen through the interfaces the whole-node walk uses.

Each engine keeps its own API; these adapters translate one walk request (a path of hooks, a
bridge and in_port) into an engine call and the answer back. A compiled netfilter engine is kept
per ruleset, so tracing many packets through one snapshot compiles each ruleset once.
"""

from __future__ import annotations

import dataclasses

from nodetrace.engine.conntrack import STATE_WORDS, CtState
from nodetrace.engine.netfilter import CtFacts, NodeFacts
from nodetrace.engine.netfilter import NetfilterEngine as RulesetEngine
from nodetrace.engine.walk import Engines
from nodetrace.engine.walk_engines import BridgeRunner, HookResult, Metadata, OfResult, PathCall
from nodetrace.engine.walk_openflow import OpenFlowAdapter
from nodetrace.errors import UsageError
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import Ruleset
from nodetrace.model.packet import Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import NetfilterStep
from nodetrace.model.verdict import Verdict


def conntrack_state(text: str) -> CtState:
    """``--ct-state`` in iptables words (``ESTABLISHED``) or OVS flags (``+trk+est``)."""
    words = [w for w in text.lower().replace("+", " ").replace(",", " ").split() if w != "trk"]
    states = {STATE_WORDS[w] for w in words if w in STATE_WORDS}
    if len(states) != 1:
        raise UsageError(
            f"--ct-state {text}: give one of new, est, rel, inv, untracked "
            "(iptables words or OVS flags such as +trk+est)"
        )
    return states.pop()


_STANDALONE_HINTS = (
    (
        "; give them with --ipsets",
        ": the snapshot has no `ipset save` output (collect it with `ipset save`)",
    ),
)
"""Hints the engines give for their own commands, as a snapshot's reader must hear them."""


def snapshot_wording(text: str) -> str:
    """``text`` with every option hint of a standalone command said for a snapshot."""
    for hint, instead in _STANDALONE_HINTS:
        if hint in text:
            text = text.replace(hint, instead)
    return text


def _reword_step(step: NetfilterStep) -> NetfilterStep:
    if step.note is None or "--ipsets" not in step.note:
        return step
    return dataclasses.replace(step, note=snapshot_wording(step.note))


class NetfilterAdapter:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self._engines: dict[tuple[int, str], RulesetEngine] = {}

    def engine(self, ruleset: Ruleset, ipsets: IpSets | None, netns: str) -> RulesetEngine:
        # Per namespace too: two namespaces may share one parsed ruleset, but each has its own
        # addresses (MASQUERADE, REDIRECT) and its own conntrack table.
        found = self._engines.get((id(ruleset), netns))
        if found is None:
            topo = self.snapshot.topology
            local = {i.name: tuple(a.ip for a in i.addresses) for i in topo.in_namespace(netns)}
            state = self.snapshot.namespace(netns)
            loose = state.sysctls.flag("net.netfilter.nf_conntrack_tcp_loose") if state else None
            facts = NodeFacts(
                backend=ruleset.backend,
                local_addresses=local,
                tcp_loose=True if loose is None else loose,
            )
            found = RulesetEngine(ruleset, ipsets=ipsets, facts=facts)
            self._engines[(id(ruleset), netns)] = found
        return found

    def run_path(
        self, ruleset: Ruleset, ipsets: IpSets | None, packet: Packet, call: PathCall
    ) -> HookResult:
        engine = self.engine(ruleset, ipsets, call.netns)
        ct = CtFacts(state=conntrack_state(call.ct_state)) if call.ct_state else None
        result = engine.run(packet, call.hooks, ct=ct, routed=call.routed)
        trace = result.trace
        return HookResult(
            verdict=result.verdict,
            steps=tuple(_reword_step(s) for s in trace.steps if isinstance(s, NetfilterStep)),
            packet=result.packet,
            reason=snapshot_wording(trace.reason),
            decisive_step=trace.verdict_step if result.verdict is not Verdict.ACCEPT else None,
            assumptions=tuple(snapshot_wording(a) for a in trace.assumptions),
        )


class NoOpenFlow:
    """For a node without Open vSwitch: any OVS port met is reported as unknown by the walk."""

    def run(
        self,
        bridge: str,
        in_port: str,
        packet: Packet,
        metadata: Metadata,
        given: frozenset[str] | None = None,
    ) -> OfResult:
        return OfResult((), (), Verdict.UNKNOWN, "the snapshot has no Open vSwitch state")


def engines_for(snapshot: Snapshot, *, ct_state: str | None = None) -> Engines:
    """The engines a walk through ``snapshot`` uses (compiled once; reuse them for many walks)."""
    openflow: BridgeRunner = (
        OpenFlowAdapter(
            snapshot.ovs,
            ct_state=ct_state,
            routes=snapshot.ovs_routes,
            neighbours=snapshot.ovs_tunnel_neighbours,
            dpif=snapshot.ovs_dpif,
        )
        if snapshot.ovs is not None
        else NoOpenFlow()
    )
    return Engines(netfilter=NetfilterAdapter(snapshot), openflow=openflow)
