"""Print an OpenFlow trace: ``ofproto`` (byte for byte the layout of ``ovs-appctl
ofproto/trace``) or ``tree`` (nodetrace's own: every output, encapsulation and flow source shown).

The only place that words a trace node: the engine and the parser of real ``ofproto/trace``
output build typed nodes, and :func:`node_text` says each one as OVS does. Both layouts end with
what ``ofproto/trace`` cannot say: the packets leaving and where, a one-line verdict and the
assumptions the answer rests on. :func:`render_ofproto_walk` prints the OpenFlow steps of a
whole-node walk in the same shape.
"""

from __future__ import annotations

from typing import assert_never

from nodetrace.model.openflow_trace import (
    ActionRun,
    Bridge,
    ConntrackCleared,
    Encapsulated,
    Learned,
    Leaves,
    Message,
    NodeKind,
    OpenFlowTrace,
    Recirculate,
    TableLookup,
    Thaw,
    ToController,
    TraceNode,
    TracePass,
    TunnelHeaders,
    TunnelOutput,
    TunnelRoute,
    Verbatim,
)
from nodetrace.model.trace import OpenFlowStep, Trace

MEGAFLOW_NOT_DERIVED = (
    "(not derived: the megaflow's mask needs every field each classifier lookup consulted)"
)

_TERMINAL = frozenset({NodeKind.ACTION, NodeKind.DETAIL, NodeKind.WARN, NodeKind.ERROR})


def node_text(node: TraceNode) -> str:
    """What ``ofproto/trace`` says of ``node``, without its indentation and kind prefix."""
    match node:
        case Bridge(name=name):
            return f'bridge("{name}")'
        case TableLookup():
            return f"{node.table:2d}. {_flow_identity(node.match, node.priority, node.cookie)}"
        case Thaw(resume_table=None):
            return "thaw"
        case Thaw(resume_table=table):
            return f"Resuming from table {table}"
        case ActionRun(action=action):
            return action
        case Message(text=text) | Verbatim(text=text):
            return text
        case Recirculate(table=table):
            return (
                "A clone of the packet is forked to recirculate. "
                f"The forked pipeline will be resumed at table {table}."
            )
        case ConntrackCleared():
            return "Sets the packet to an untracked state, and clears all the conntrack fields."
        case Learned(flow=flow):
            return flow.text() if flow.applied else f"would learn: {flow.text()}"
        case TunnelOutput(native=native):
            return "output to native tunnel" if native else "output to kernel tunnel"
        case TunnelRoute(nexthop=nexthop, dev=dev):
            return f"tunneling to {nexthop} via {dev}"
        case TunnelHeaders():
            smac = node.smac or "(unknown MAC)"
            return f"tunneling from {smac} {node.src} to {node.dmac} {node.nexthop}"
        case Leaves(bridge=bridge, port=port, vlan=vlan):
            tag = f"VLAN {vlan}" if vlan is not None else "untagged"
            return f"leaves {bridge} through {port} ({tag})"
        case Encapsulated(port=port, encap=encap):
            return f"tunnel {port}: {encap.describe()}"
        case ToController(reason=reason):
            return f"sent to the OpenFlow controller ({reason})"
        case _:
            assert_never(node)


def _flow_identity(match: str, priority: int | None, cookie: int | None) -> str:
    """How ``ofproto/trace`` names the flow a lookup found: ``in_port=2, priority 10``."""
    if priority is None:
        return "No match."
    text = f"{match}, priority {priority}" if match else f"priority {priority}"
    return text + (f", cookie {cookie:#x}" if cookie else "")


_MARKED = {NodeKind.DETAIL: " -> {}", NodeKind.WARN: " >> {}", NodeKind.ERROR: " >>>> {} <<<<"}
"""How ``ofproto/trace`` marks a message by its kind (a line read verbatim keeps its marks)."""


def _line(node: TraceNode) -> str:
    text = node_text(node)
    if isinstance(node, Verbatim):
        return text
    return _MARKED.get(node.kind, "{}").format(text)


def _ofproto_nodes(nodes: tuple[TraceNode, ...], level: int, out: list[str]) -> None:
    """OVS's oftrace_node_print_details(): a node that is the last of its siblings and not
    terminal is printed at its parent's level, so tail resubmits do not indent."""
    visible = [n for n in nodes if not n.extra]
    for i, node in enumerate(visible):
        if node.kind is NodeKind.BRIDGE:
            out.append("")
        more = 1 if (i < len(visible) - 1 or node.kind in _TERMINAL) else 0
        pad = " " * ((level + more) * 4)
        line = _line(node)
        out.append(pad + line)
        if node.kind is NodeKind.BRIDGE:
            out.append(pad + "-" * len(line))
        _ofproto_nodes(node.children, level + 2 * more, out)


def ofproto_lines(p: TracePass) -> list[str]:
    """The tree part of one pass exactly as ``ofproto/trace`` lays it out."""
    out: list[str] = []
    _ofproto_nodes(p.nodes, 0, out)
    return out


def _recirc_header(p: TracePass) -> list[str]:
    out = ["", "", "=" * 79]
    title = f"recirc({p.recirc_id:#x})"
    if p.ct_state_default:
        title += " - resume conntrack with default ct_state=trk|new (use --ct-next to customize)"
    elif p.ct_state is not None:
        title += f" - resume conntrack with ct_state={p.ct_state}"
    out.append(title)
    if p.nat is not None:
        out.append("Replacing src/dst IP/ports to simulate NAT:")
        out += [f" {line}" for line in p.nat.splitlines()]
    return [*out, "=" * 79, ""]


def render_ofproto(trace: OpenFlowTrace) -> str:
    out: list[str] = []
    for index, p in enumerate(trace.passes):
        if index:
            out += _recirc_header(p)
        out.append(f"Flow: {p.flow}")
        out += ofproto_lines(p)
        out += ["", f"Final flow: {p.final_flow or 'unchanged'}"]
        if p.datapath_actions is not None:
            out += [f"Megaflow: {MEGAFLOW_NOT_DERIVED}", f"Datapath actions: {p.datapath_actions}"]
    out += _summary(trace)
    return "\n".join(out) + "\n"


def render_ofproto_walk(trace: Trace) -> str:
    """The OpenFlow steps of a whole-node walk in ``ofproto/trace``'s shape: per bridge, the
    tables and the actions each matched flow ran."""
    out: list[str] = []
    bridge = None
    for s in trace.steps:
        if not isinstance(s, OpenFlowStep):
            continue
        if s.bridge != bridge:
            bridge = s.bridge
            out += [f'bridge("{bridge}")', "-" * (len(bridge) + 10)]
        out.append(f" {s.table}. {_flow_identity(s.match, s.priority, s.cookie)}")
        if s.actions:
            out.append(f"    {s.actions}")
    return "\n".join(out) + ("\n" if out else "")


def _tree_nodes(nodes: tuple[TraceNode, ...], level: int, out: list[str]) -> None:
    """Like ofproto/trace, a table reached by a tail resubmit stays at its caller's level, so a
    pipeline reads top to bottom; every node nodetrace adds (outputs, encapsulation) is shown."""
    for i, node in enumerate(nodes):
        more = 1 if (i < len(nodes) - 1 or node.kind in _TERMINAL) else 0
        pad = "  " * (level + more)
        if isinstance(node, TableLookup):
            out.append(pad + _table_line(node))
        elif node.kind in (NodeKind.BRIDGE, NodeKind.THAW, NodeKind.ACTION):
            out.append(pad + node_text(node))
        else:
            out.append(pad + _line(node))
        _tree_nodes(node.children, level + more, out)


def _table_line(node: TableLookup) -> str:
    step = node.step
    if step is None:
        return node_text(node).strip()
    if step.priority is None:
        return f"table {step.table}: no flow matches -> drop"
    parts = [f"table {step.table}: {step.match or '(any packet)'}", f"priority {step.priority}"]
    if step.cookie:
        parts.append(f"cookie {step.cookie:#x}")
    if step.source is not None:
        parts.append(f"[{step.source}]")
    return "  ".join(parts)


def render_tree(trace: OpenFlowTrace) -> str:
    out = [f"packet: {trace.passes[0].flow}" if trace.passes else "packet:"]
    for index, p in enumerate(trace.passes):
        if index:
            state = p.ct_state or "?"
            how = " (default, as ofproto/trace)" if p.ct_state_default else ""
            out += ["", f"recirculation {p.recirc_id} (zone {p.zone}): ct_state={state}{how}"]
            if p.nat:
                out += [f"  {line}" for line in p.nat.splitlines()]
            out.append(f"packet: {p.flow}")
        _tree_nodes(p.nodes, 0, out)
        if p.final_flow:
            out.append(f"final flow: {p.final_flow}")
    out += _summary(trace)
    return "\n".join(out) + "\n"


def _summary(trace: OpenFlowTrace) -> list[str]:
    out = [""]
    if trace.egress:
        out += ["Leaves:", *(f"  {e.describe()}" for e in trace.egress)]
    else:
        out.append("Leaves: nothing")
    if trace.learned:
        out.append("Learned:" if any(f.applied for f in trace.learned) else "Would learn:")
        out += [f"  {f.bridge}: {f.text()}" for f in trace.learned]
    out.append(f"Verdict: {trace.verdict}")
    if trace.assumptions:
        out.append("Assumptions:")
        out += [f"  - {a}" for a in trace.assumptions]
    return out
