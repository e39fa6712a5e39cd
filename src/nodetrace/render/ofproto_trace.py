"""Print an OpenFlow trace: ``ofproto`` (byte for byte the layout of ``ovs-appctl
ofproto/trace``) or ``tree`` (nodetrace's own: every output, encapsulation and flow source shown).

Both end with what ``ofproto/trace`` cannot say: the packets leaving and where, a one-line
verdict and the assumptions the answer rests on.
"""

from __future__ import annotations

from nodetrace.model.openflow_trace import NodeKind, OpenFlowTrace, TraceNode, TracePass
from nodetrace.model.trace import OpenFlowStep

MEGAFLOW_NOT_DERIVED = (
    "(not derived: the megaflow's mask needs every field each classifier lookup consulted)"
)

_TERMINAL = frozenset({NodeKind.ACTION, NodeKind.DETAIL, NodeKind.WARN, NodeKind.ERROR})


def _visible(nodes: tuple[TraceNode, ...], ofproto: bool) -> list[TraceNode]:
    return [n for n in nodes if not (ofproto and n.extra)]


def _ofproto_nodes(nodes: tuple[TraceNode, ...], level: int, out: list[str]) -> None:
    """OVS's oftrace_node_print_details(): a node that is the last of its siblings and not
    terminal is printed at its parent's level, so tail resubmits do not indent."""
    visible = _visible(nodes, True)
    for i, node in enumerate(visible):
        if node.kind is NodeKind.BRIDGE:
            out.append("")
        more = 1 if (i < len(visible) - 1 or node.kind in _TERMINAL) else 0
        pad = " " * ((level + more) * 4)
        out.append(pad + _line(node))
        if node.kind is NodeKind.BRIDGE:
            out.append(pad + "-" * len(node.text))
        _ofproto_nodes(node.children, level + 2 * more, out)


def _line(node: TraceNode) -> str:
    if node.kind is NodeKind.DETAIL:
        return f" -> {node.text}"
    if node.kind is NodeKind.WARN:
        return f" >> {node.text}"
    if node.kind is NodeKind.ERROR:
        return f" >>>> {node.text} <<<<"
    return node.text


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
        for line in p.nat.splitlines():
            out.append(f" {line}")
    out.append("=" * 79)
    out.append("")
    return out


def render_ofproto(trace: OpenFlowTrace) -> str:
    out: list[str] = []
    for index, p in enumerate(trace.passes):
        if index:
            out += _recirc_header(p)
        out.append(f"Flow: {p.flow}")
        out += ofproto_lines(p)
        out.append("")
        out.append(f"Final flow: {p.final_flow or 'unchanged'}")
        if p.datapath_actions is not None:
            out.append(f"Megaflow: {MEGAFLOW_NOT_DERIVED}")
            out.append(f"Datapath actions: {p.datapath_actions}")
    out += _summary(trace)
    return "\n".join(out) + "\n"


def _tree_nodes(nodes: tuple[TraceNode, ...], level: int, out: list[str]) -> None:
    """Like ofproto/trace, a table reached by a tail resubmit stays at its caller's level, so a
    pipeline reads top to bottom; every node nodetrace adds (outputs, encapsulation) is shown."""
    for i, node in enumerate(nodes):
        more = 1 if (i < len(nodes) - 1 or node.kind in _TERMINAL) else 0
        pad = "  " * (level + more)
        if node.kind is NodeKind.TABLE:
            out.append(pad + _table_line(node))
        elif node.kind in (NodeKind.BRIDGE, NodeKind.THAW, NodeKind.ACTION):
            out.append(pad + node.text)
        else:
            out.append(pad + _line(node))
        _tree_nodes(node.children, level + more, out)


def _table_line(node: TraceNode) -> str:
    step = node.step
    if not isinstance(step, OpenFlowStep):
        return node.text.strip()
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
            out.append("")
            out.append(f"recirculation {p.recirc_id} (zone {p.zone}): ct_state={state}{how}")
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
        out.append("Leaves:")
        for e in trace.egress:
            out.append(f"  {e.describe()}")
    else:
        out.append("Leaves: nothing")
    if trace.learned:
        out.append("Learned:" if any(f.applied for f in trace.learned) else "Would learn:")
        for f in trace.learned:
            out.append(f"  {f.bridge}: {f.text()}")
    out.append(f"Verdict: {trace.verdict}")
    if trace.assumptions:
        out.append("Assumptions:")
        out += [f"  - {a}" for a in trace.assumptions]
    return out
