"""The OpenFlow engine behind the whole-node walk's :class:`BridgeRunner` interface.

One compiled engine serves every bridge crossing of a walk (and of many walks, for benchmarks);
the packets that leave the bridges become the walk's outputs, tunnel encapsulation included.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodetrace.engine.conntrack import STATE_WORDS, CtState
from nodetrace.engine.openflow import OpenFlowEngine as Pipelines
from nodetrace.engine.walk_engines import Metadata, OfOutput, OfResult
from nodetrace.model.openflow_trace import EgressKind
from nodetrace.model.ovs_runtime import DpifShow
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.packet import Packet
from nodetrace.model.topology import OvsRoute, OvsTunnelNeighbour
from nodetrace.model.trace import Outcome
from nodetrace.model.verdict import Verdict

_OVS_FLAGS = {CtState.NEW: "+trk+new", CtState.ESTABLISHED: "+trk+est",
              CtState.RELATED: "+trk+rel", CtState.INVALID: "+trk+inv"}  # fmt: skip
_OVS_STATES = {w: _OVS_FLAGS[s] for w, s in STATE_WORDS.items() if s in _OVS_FLAGS}


def ovs_ct_state(text: str | None) -> tuple[str, ...]:
    """``--ct-state`` for OVS ``ct()`` recirculations: OVS flags as given, or iptables words."""
    if not text:
        return ()
    if text.lstrip()[:1] in "+-":
        return (text,)
    return tuple(_OVS_STATES[w] for w in text.lower().split(",") if w in _OVS_STATES)


class OpenFlowAdapter:
    """With ``routes`` (``ovs/route/show``) and ``neighbours`` (``tnl/neigh/show``), a native
    tunnel (userspace datapath) is followed through the underlay bridge inside the engine, as
    ``ofproto/trace`` does: the output is then the outer packet leaving the uplink."""

    def __init__(
        self,
        switch: OvsSwitch,
        *,
        ct_state: str | None = None,
        routes: Sequence[OvsRoute] | None = None,
        neighbours: Sequence[OvsTunnelNeighbour] | None = None,
        dpif: DpifShow | None = None,
    ) -> None:
        # Connections committed by ct() stay known to later walks on these engines, as the
        # netfilter engine's conntrack table does: a reply is then +est+rpl.
        self.engine = Pipelines(
            switch, routes=routes, neighbours=neighbours, dpif=dpif, remember_connections=True
        )
        self.ct_states = ovs_ct_state(ct_state)

    def run(
        self,
        bridge: str,
        in_port: str,
        packet: Packet,
        metadata: Metadata,
        given: frozenset[str] | None = None,
    ) -> OfResult:
        t = self.engine.trace(
            bridge, in_port, packet, metadata, given=given, ct_states=self.ct_states
        )
        # The walk states these fields itself, with the value it gave them.
        consulted = tuple((name, u.where) for u in t.unset for name in u.names)
        stated = {u.note for u in t.unset}
        notes = tuple(n for n in t.assumptions if n not in stated)
        outputs = [
            OfOutput(e.bridge, e.port, e.packet, (), e.encap)
            for e in t.egress
            if e.kind is not EgressKind.CONTROLLER
        ]
        if t.outcome is Outcome.UNKNOWN:
            verdict = Verdict.UNKNOWN
        elif outputs:
            verdict = Verdict.ACCEPT
        else:
            verdict = Verdict.DROP
        reason = t.reason or t.verdict
        return OfResult(t.steps, tuple(outputs), verdict, reason, t.verdict_step, notes, consulted)
