"""What a lab node really did with one packet, as one observed trace for a diagnosis.

The lab sees a packet three ways: netfilter's TRACE output (one pass per Linux bridge, read
back with the rules the node holds now), Open vSwitch's ``ofproto/trace`` of the same packet on
the node's real flows, and the VMs' wires (did it arrive?). :func:`observed_trace` puts them in
the order the packet met them on a node: the bridge passes before Open vSwitch, Open vSwitch,
then the passes after it. Its outcome is what decided the packet when something did (a
netfilter drop, an OpenFlow drop), *delivered* when the target's wire got the frame, and
*ends* (nothing decided it in what could be seen) otherwise: the wire proves it was lost,
but none of the sources says where.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nodetrace.errors import DiagnosticSink
from nodetrace.lab.observe import Observation
from nodetrace.lab.run import run
from nodetrace.model.openflow_trace import ActionRun, Bridge, TableLookup, TraceNode
from nodetrace.model.trace import NetfilterStep, OpenFlowStep, Outcome, Step, Trace
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree, parse_ovs_appctl_ofproto_trace


def _devices(trace: Trace) -> set[str]:
    out: set[str] = set()
    for s in trace.steps:
        if isinstance(s, NetfilterStep):
            out |= {s.in_dev, s.out_dev, s.physin or "", s.physout or ""}
    return out - {""}


def observed_trace(
    obs: Observation,
    node: str,
    *,
    before_ovs: Sequence[str] = (),
    target: str | None = None,
    with_ovs: bool = True,
) -> Trace:
    """The packet's observed way through ``node``: the netfilter passes on the Linux bridges
    named in ``before_ovs`` (the sender's), then ``ofproto/trace`` (unless ``with_ovs`` is
    off), then every other pass. ``target``: the VM whose wire tells delivered from lost."""
    passes = list(obs.netfilter.get(node, ()))
    first = [p for p in passes if _devices(p) & set(before_ovs)]
    rest = [p for p in passes if p not in first]
    openflow = all_bridges(obs.ofproto[node]) if with_ovs and node in obs.ofproto else None
    parts: list[Trace] = [*first, *([openflow] if openflow is not None else []), *rest]
    steps: list[Step] = []
    verdict: int | None = None
    outcome = Outcome.ENDS
    reason = f"not seen on {target}'s wire; no source on {node} says where it was lost"
    for part in parts:
        offset = len(steps)
        steps += part.steps
        if part.outcome in (Outcome.DROPPED, Outcome.REJECTED) and verdict is None:
            outcome, reason = part.outcome, part.reason
            verdict = offset + (part.verdict_step if part.verdict_step is not None else 0)
            if part.verdict_step is None:
                verdict = len(steps) - 1 if steps else None
            break
    if verdict is None and target is not None and target in obs.arrived:
        outcome, reason = Outcome.DELIVERED, f"arrived on {target}'s wire"
    return Trace(tuple(steps), outcome, verdict, reason, packet=obs.packet)


def all_bridges(text: str) -> Trace:
    """A real ``ofproto/trace`` as an observed trace with every table lookup it shows, in
    order, including the pass of a tunnelled packet's outer headers through the underlay
    bridge (the packet crosses it; an MTU too small there is met only after it)."""
    parsed = parse_ovs_appctl_ofproto_trace(text, source="ofproto/trace", sink=DiagnosticSink())
    steps = [s for p in parsed.passes for s in _lookups(observed_tree(p), "")]
    last = parsed.passes[-1] if parsed.passes else None
    if last is None or last.datapath_actions is None:
        return Trace(tuple(steps), Outcome.UNKNOWN, reason="ofproto/trace printed no actions")
    actions = last.datapath_actions.strip()
    if actions in ("", "drop"):
        return Trace(tuple(steps), Outcome.DROPPED, len(steps) - 1, f"datapath actions: {actions}")
    return Trace(tuple(steps), Outcome.ENDS, reason=f"datapath actions: {actions}")


def _lookups(nodes: Sequence[TraceNode], bridge: str) -> list[OpenFlowStep]:
    out: list[OpenFlowStep] = []
    for node in nodes:
        if isinstance(node, Bridge):
            out += _lookups(node.children, node.name)
        elif isinstance(node, TableLookup):
            actions = ",".join(a.action for a in node.children if isinstance(a, ActionRun))
            # OVS's hidden miss rule of a later bridge: nodetrace calls it a miss.
            priority = None if node.match == "reg0=0x2" and node.priority == 0 else node.priority
            match = "" if priority is None else node.match
            out.append(OpenFlowStep(bridge, node.table, priority, match, actions, node.cookie))
            out += _lookups(node.children, bridge)
        else:
            out += _lookups(getattr(node, "children", ()), bridge)
    return out


def netstat(netns: str) -> dict[str, int]:
    """The kernel's IP and TCP counters of a namespace (``/proc/net/snmp`` and ``netstat``),
    as ``Ip.InAddrErrors``, ``TcpExt.IPReversePathFilter``..."""
    out: dict[str, int] = {}
    for name in ("snmp", "netstat"):
        lines = run(["cat", f"/proc/net/{name}"], netns=netns).stdout.splitlines()
        for head, values in zip(lines[::2], lines[1::2], strict=False):
            prefix, keys = head.split(":", 1)
            for key, value in zip(keys.split(), values.split(":", 1)[1].split(), strict=False):
                if value.lstrip("-").isdigit():
                    out[f"{prefix}.{key}"] = int(value)
    return out


def log_file(lines: Sequence[str], path: Path) -> Path:
    """TRACE lines as the log file ``nodetrace explain`` would read."""
    path.write_text("".join(line.rstrip("\n") + "\n" for line in lines))
    return path
