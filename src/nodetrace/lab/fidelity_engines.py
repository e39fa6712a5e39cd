"""How each engine is asked for its prediction in the fidelity suite, and how it is compared.

An adapter loads what its engine needs from the lab's snapshot bundles once per scenario, then
for each packet predicts what the real lab observed and says whether the two agree.

* ``netfilter``: for each Linux bridge pass the packet really made (the ``qbr`` of the sending
  VM, then the one of the receiving VM), the engine's TRACE steps (table, chain, kind, number
  and the devices IN/OUT/PHYSIN/PHYSOUT) against the kernel's legacy TRACE lines, in order. One
  engine per node keeps its conntrack table across the scenario's packets, as the kernel does.
  On iptables-nft labs the engine's steps are printed as ``xtables-monitor --trace`` prints
  them (:mod:`nodetrace.render.xtables_trace`) and compared line for line, ``PACKET:`` lines,
  rule handles and re-printed rules included, with the per-packet trace id normalised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nodetrace.lab.state import LabInfo
from nodetrace.neutron.generate import NodeState
from nodetrace.neutron.scenario import Scenario

if TYPE_CHECKING:
    from nodetrace.lab.fidelity import Send
    from nodetrace.lab.observe import Observation


@dataclass(frozen=True, slots=True)
class Comparison:
    status: str
    """``agree``, ``disagree``, ``error`` (the engine raised, or could not load the scenario)
    or ``skipped`` (nothing to compare)."""
    detail: str = ""
    real: tuple[str, ...] = ()
    predicted: tuple[str, ...] = ()


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


_KERNEL_LINE = re.compile(
    r"^TRACE: (?P<table>\w+):(?P<chain>\S+):(?P<kind>rule|return|policy):(?P<num>\d+) "
    r"IN=(?P<in>\S*) OUT=(?P<out>\S*) (?:PHYSIN=(?P<physin>\S+) )?(?:PHYSOUT=(?P<physout>\S+) )?"
)


def step_text(table: str, chain: str, kind: str, number: object, in_dev: str, out_dev: str,
              physin: str | None, physout: str | None) -> str:  # fmt: skip
    """One TRACE record without the packet dump: what both sides must agree on."""
    text = f"{table}:{chain}:{kind}:{number} IN={in_dev} OUT={out_dev}"
    if physin:
        text += f" PHYSIN={physin}"
    if physout:
        text += f" PHYSOUT={physout}"
    return text


_XTABLES_ID = re.compile(r"^( ?(?:PACKET|TRACE): \d+ )([0-9a-f]{8})\b")
TRACE_ID = "<id>"
"""What every trace id becomes before comparing: the kernel draws a new one per skb."""


def normalise_trace_id(line: str) -> str:
    """An ``xtables-monitor --trace`` line with its trace id replaced by :data:`TRACE_ID`."""
    return _XTABLES_ID.sub(lambda m: m.group(1) + TRACE_ID, line, count=1)


def xtables_pass(lines: list[str] | tuple[str, ...], bridge: str) -> list[str]:
    """The ``xtables-monitor --trace`` lines of one Linux bridge pass, trace ids normalised.

    Each pass over a bridge is one skb, and every line of an skb carries its trace id: the
    pass's lines are those of the ids whose ``PACKET:`` lines have the bridge as IN or OUT.
    """
    ids = set()
    for line in lines:
        if line.startswith("PACKET:"):
            words = line.split()
            if f"IN={bridge}" in words or f"OUT={bridge}" in words:
                ids.add(words[2])
    return [
        normalise_trace_id(line)
        for line in lines
        if len(line.split()) > 2 and line.split()[2] in ids
    ]


def xtables_last_verdict(lines: list[str]) -> str:
    """The verdict word of the last ``TRACE:`` line (``DROP``, ``ACCEPT``, ...), or ``""``."""
    for line in reversed(lines):
        words = line.split()
        if words and words[0] == "TRACE:" and len(words) > 3:
            event = words[3]  # table:chain:rule:0xH:VERDICT[:target] or table:chain:policy:V
            parts = event.split(":")
            if parts[2] == "policy" and len(parts) > 3:
                return parts[3]
            return parts[4] if len(parts) > 4 else ""
    return ""


def kernel_steps(lines: list[str] | tuple[str, ...], bridge: str) -> list[str]:
    """The kernel's TRACE records of one Linux bridge pass (IN or OUT is the bridge)."""
    out = []
    for line in lines:
        m = _KERNEL_LINE.match(line)
        if m and bridge in (m["in"], m["out"]):
            out.append(
                step_text(
                    m["table"],
                    m["chain"],
                    m["kind"],
                    m["num"],
                    m["in"],
                    m["out"],
                    m["physin"],
                    m["physout"],
                )
            )
    return out


@dataclass(frozen=True, slots=True)
class _Pass:
    node: str
    bridge: str
    physin: str
    physout: str


class NetfilterAdapter:
    name = "netfilter"

    def __init__(self) -> None:
        self._engines: dict[str, Any] = {}
        self._ctx: ScenarioContext | None = None

    def prepare(self, ctx: ScenarioContext) -> None:
        from nodetrace.engine.netfilter import NetfilterEngine
        from nodetrace.snapshot.load import load

        self._ctx = ctx
        self._engines = {}
        for node, path in ctx.snapshots.items():
            main = load(path).main
            if main.iptables is None:
                raise ValueError(f"the snapshot of {node} has no IPv4 ruleset")
            self._engines[node] = NetfilterEngine(main.iptables, ipsets=main.ipsets)

    def _passes(self, send: Send) -> list[_Pass]:
        assert self._ctx is not None
        out = []
        if send.source != "underlay":
            vm = self._ctx.info.vm(send.source)
            dev = self._ctx.states[vm.node].vm_port(vm.name).devices
            out.append(_Pass(vm.node, dev.qbr, dev.tap, dev.qvb))
        vm = self._ctx.info.vm(send.target)
        dev = self._ctx.states[vm.node].vm_port(vm.name).devices
        out.append(_Pass(vm.node, dev.qbr, dev.qvb, dev.tap))
        return out

    def compare(self, send: Send, obs: Observation) -> Comparison:
        from nodetrace.engine.netfilter import bridge_path

        if obs.trace_format not in ("kernel", "xtables"):
            return Comparison("skipped", f"no comparison for {obs.trace_format} TRACE output")
        real_all: list[str] = []
        predicted_all: list[str] = []
        notes = []
        for p in self._passes(send):
            lines = obs.trace.get(p.node, ())
            if obs.trace_format == "kernel":
                real = kernel_steps(lines, p.bridge)
            else:
                real = xtables_pass(lines, p.bridge)
            if not real:
                notes.append(f"{p.bridge} not reached")
                continue  # the packet never got to this bridge (dropped before, or by OVS)
            result = self._engines[p.node].run(
                send.packet, bridge_path(p.bridge, physin=p.physin, physout=p.physout)
            )
            predicted = (
                _legacy_steps(result.trace.steps)
                if obs.trace_format == "kernel"
                else [normalise_trace_id(line) for line in _xtables_lines(result.trace.steps)]
            )
            real_all += [f"{p.node} {line}" for line in real]
            predicted_all += [f"{p.node} {line}" for line in predicted]
            notes.append(f"{p.bridge}: real {len(real)} steps, predicted {result.verdict}")
        if not real_all:
            return Comparison("skipped", "no Linux bridge pass was reached; " + "; ".join(notes))
        status = "agree" if real_all == predicted_all else "disagree"
        return Comparison(status, "; ".join(notes), tuple(real_all), tuple(predicted_all))


def _legacy_steps(steps: Sequence[Any]) -> list[str]:
    from nodetrace.model.trace import NetfilterStep

    return [
        step_text(
            s.table, s.chain, s.kind.value, s.number, s.in_dev, s.out_dev, s.physin, s.physout
        )
        for s in steps
        if isinstance(s, NetfilterStep) and s.traced
    ]


def _xtables_lines(steps: Sequence[Any]) -> list[str]:
    from nodetrace.render.xtables_trace import render_xtables_trace

    return render_xtables_trace(steps, trace_id=0)


_OFPROTO_BRIDGE = re.compile(r'^\s*bridge\("([^"]+)"\)')
_OFPROTO_TABLE = re.compile(r"^\s*(\d+)\. ")


def ofproto_tables(text: str) -> list[str]:
    """The (bridge, table) lookups a real ``ofproto/trace`` printed, in order.

    After a native tunnel output OVS also walks the *outer* packet through the underlay
    bridge; that pass is about the outer headers and is left out (the walk covers it).
    """
    out: list[str] = []
    bridge = ""
    skipping = False
    tunnelled = False
    for line in text.splitlines():
        m = _OFPROTO_BRIDGE.match(line)
        if m:
            bridge = m.group(1)
            skipping = tunnelled
            tunnelled = False
            continue
        if "-> tunneling from" in line:
            tunnelled = True
        m = _OFPROTO_TABLE.match(line)
        if m and bridge and not skipping:
            out.append(f"{bridge} table {m.group(1)}")
    return out


def ofproto_verdict(text: str) -> str:
    """``drop`` when the datapath actions are empty or ``drop``, else ``output``."""
    for line in text.splitlines():
        if line.startswith("Datapath actions:"):
            actions = line.split(":", 1)[1].strip()
            return "drop" if actions in ("", "drop") else "output"
    return "unknown"


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
        from nodetrace.model.trace import OpenFlowStep, Outcome
        from nodetrace.parsers.flow_syntax import parse_flow

        if not obs.ofproto_input:
            return Comparison("skipped", "no ofproto/trace was run")
        real_all: list[str] = []
        predicted_all: list[str] = []
        for node, (bridge, flow) in obs.ofproto_input.items():
            spec = parse_flow(flow)
            in_port = spec.get("in_port")
            metadata = [(k, v) for k, v in spec.metadata if k != "in_port"]
            trace = self._engines[node].trace(bridge, in_port, spec.packet, metadata)
            real_all += [f"{node} {t}" for t in ofproto_tables(obs.ofproto[node])]
            real_all.append(f"{node} verdict {ofproto_verdict(obs.ofproto[node])}")
            predicted_all += [
                f"{node} {s.bridge} table {s.table}"
                for s in trace.steps
                if isinstance(s, OpenFlowStep)
            ]
            verdict = {Outcome.DROPPED: "drop", Outcome.DELIVERED: "output"}.get(
                trace.outcome, trace.outcome.value
            )
            predicted_all.append(f"{node} verdict {verdict}")
        status = "agree" if real_all == predicted_all else "disagree"
        return Comparison(
            status, f"{len(real_all)} lookups and verdicts", tuple(real_all), tuple(predicted_all)
        )


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
        from nodetrace.engine.walk import FromInterface, ToDevice, WalkRequest, walk
        from nodetrace.model.trace import NetfilterStep, OpenFlowStep, Outcome

        assert self._ctx is not None
        ctx = self._ctx
        predicted = "not delivered"
        notes = []
        for leg in walk_legs(ctx, send):
            snap = self._snaps[leg.node]
            target = ToDevice(leg.target_tap) if leg.target_tap else None
            request = WalkRequest(leg.packet, FromInterface(leg.start), leg.metadata, None, target)
            trace = walk(snap, request, self._engines[leg.node], switch=snap.ovs)
            notes.append(f"{leg.node}: {trace.outcome.value}: {trace.reason}")
            if trace.outcome is Outcome.DELIVERED:
                if leg.target_tap:
                    predicted = f"delivered to {send.target}"
                continue
            step = trace.steps[trace.verdict_step] if trace.verdict_step is not None else None
            if isinstance(step, NetfilterStep):
                predicted = f"dropped on {leg.node} by netfilter"
            elif isinstance(step, OpenFlowStep):
                predicted = f"dropped on {leg.node} by openflow"
            else:
                predicted = f"{trace.outcome.value} on {leg.node}"
            break
        real = real_outcome(ctx, send, obs)
        status = "agree" if real == predicted else "disagree"
        return Comparison(status, " | ".join(notes), (real,), (predicted,))


@dataclass(frozen=True, slots=True)
class _Leg:
    node: str
    start: str
    packet: Any
    metadata: tuple[tuple[str, str], ...]
    target_tap: str | None


def walk_legs(ctx: ScenarioContext, send: Send) -> list[_Leg]:
    """Where the walk starts on each node: the sender's tap, then (across the underlay) the
    receiving node's underlay NIC with the tunnel metadata or the provider VLAN tag."""
    from nodetrace.neutron.ovs_agent import UNDERLAY_NIC
    from nodetrace.neutron.scenario import NetworkType

    info = ctx.info
    dst = info.vm(send.target)
    dst_port = ctx.states[dst.node].vm_port(dst.name)
    legs: list[_Leg] = []
    if send.source != "underlay":
        src = info.vm(send.source)
        src_tap = ctx.states[src.node].vm_port(src.name).devices.tap
        same = src.node == dst.node
        legs.append(
            _Leg(src.node, src_tap, send.packet, (), dst_port.devices.tap if same else None)
        )
        if same:
            return legs
        remote = src.node
    else:
        assert send.tunnel is not None
        remote = send.tunnel.remote_node
    network = dst_port.network
    if network.type is NetworkType.VLAN:
        tagged = replace(send.packet, dl_vlan=network.segmentation_id)
        legs.append(_Leg(dst.node, UNDERLAY_NIC, tagged, (), dst_port.devices.tap))
    else:
        meta = (
            ("tun_src", info.node(remote).underlay_ip),
            ("tun_dst", info.node(dst.node).underlay_ip),
            ("tun_id", str(network.segmentation_id)),
        )
        legs.append(_Leg(dst.node, UNDERLAY_NIC, send.packet, meta, dst_port.devices.tap))
    return legs


def _drop_rules(state: NodeState) -> set[tuple[str, str, int]]:
    """(table, chain, number) of every rule whose target is DROP, from the node's ruleset
    (which the lab tests prove equal to what the kernel holds)."""
    out = set()
    table = ""
    counts: dict[tuple[str, str], int] = {}
    for line in state.firewall.iptables_save.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A "):
            chain = line.split()[1]
            counts[(table, chain)] = counts.get((table, chain), 0) + 1
            if line.endswith(" -j DROP"):
                out.add((table, chain, counts[(table, chain)]))
    return out


def real_outcome(ctx: ScenarioContext, send: Send, obs: Observation) -> str:
    """What the real lab did with the packet: delivered, or dropped on which node by which layer.

    A bridge pass whose last TRACE line names a DROP rule (legacy) or says ``DROP`` (nft) was
    dropped by netfilter. A packet
    that left the sending VM's bridge but never reached the receiving one was dropped by Open
    vSwitch, on the first node whose ``ofproto/trace`` says so.
    """
    if send.target in obs.arrived:
        return f"delivered to {send.target}"
    if not send.packet.is_ip:  # ARP: Open vSwitch decides, iptables never sees it
        for n, text in obs.ofproto.items():
            if ofproto_verdict(text) == "drop":
                return f"dropped on {n} by openflow"
        return "not delivered"
    passes: list[tuple[str, str]] = []
    if send.source != "underlay":
        src = ctx.info.vm(send.source)
        passes.append((src.node, ctx.states[src.node].vm_port(src.name).devices.qbr))
    dst = ctx.info.vm(send.target)
    passes.append((dst.node, ctx.states[dst.node].vm_port(dst.name).devices.qbr))
    for i, (node, bridge) in enumerate(passes):
        lines = obs.trace.get(node, ())
        xtables = obs.trace_format == "xtables"
        steps = xtables_pass(lines, bridge) if xtables else kernel_steps(lines, bridge)
        if not steps:
            if i == 0 and send.source != "underlay":
                return "never entered the sending VM's bridge"
            for n, text in obs.ofproto.items():
                if ofproto_verdict(text) == "drop":
                    return f"dropped on {n} by openflow"
            return f"lost before {bridge} on {node}"
        if xtables:
            # nf_tables names the verdict itself: no need to look the rule up.
            if xtables_last_verdict(steps) == "DROP":
                return f"dropped on {node} by netfilter"
            continue
        table, chain, _, number = steps[-1].split(" ", 1)[0].split(":")
        if (table, chain, int(number)) in _drop_rules(ctx.states[node]):
            return f"dropped on {node} by netfilter"
    return "passed every bridge but did not arrive"


ADAPTERS: tuple[EngineAdapter, ...] = (NetfilterAdapter(), OpenFlowAdapter(), WalkAdapter())
