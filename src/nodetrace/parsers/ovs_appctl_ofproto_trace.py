"""Read the output of ``ovs-appctl ofproto/trace``, to compare it with a simulated trace.

A real sample (OVS 3.1)::

    Flow: icmp,in_port=2,vlan_tci=0x0000,dl_src=26:1f:ad:fb:fd:69,dl_dst=22:e6:2f:fb:97:5c,nw_src=10.2.0.1,nw_dst=10.2.0.2,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no,icmp_type=0,icmp_code=0

    bridge("br-int")
    ----------------
     0. in_port=2, priority 10
        resubmit(,24)
    24. priority 0
        drop

    Final flow: unchanged
    Megaflow: recirc_id=0,eth,ip,in_port=2,nw_src=10.2.0.8/29,nw_frag=no
    Datapath actions: drop

Recirculations (after ``ct(table=N)``) follow as further sections introduced by a line of 79
``=`` and ``recirc(0x..) - resume conntrack with ...``. Tree lines keep their indentation,
which is meaningful (see :mod:`nodetrace.render.ofproto_trace`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import assert_never

from nodetrace.errors import DiagnosticSink, report_line
from nodetrace.model.openflow_trace import (
    ActionRun,
    Bridge,
    Message,
    NodeKind,
    ObservedLine,
    ObservedPass,
    ObservedTrace,
    TableLookup,
    Thaw,
    TraceNode,
    Verbatim,
)


@dataclass
class _Pass:
    header: str = ""
    flow: str = ""
    lines: list[ObservedLine] = field(default_factory=list)
    final: str | None = None
    megaflow: str | None = None
    actions: str | None = None
    failure: str | None = None
    in_tree: bool = False


def parse_ovs_appctl_ofproto_trace(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> ObservedTrace:
    passes: list[_Pass] = []
    cur: _Pass | None = None
    in_banner = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if line.startswith("=" * 20):
            in_banner = not in_banner
            if in_banner:
                cur = _Pass()
                passes.append(cur)
            continue
        if in_banner:
            if cur is not None:
                cur.header = (cur.header + "\n" + line).strip()
            continue
        if line.startswith("Flow: "):
            if cur is None or cur.flow:
                cur = _Pass()
                passes.append(cur)
            cur.flow = line[6:]
            cur.in_tree = True
            continue
        if cur is None:
            if line.strip():
                _bad(sink, source, number, line)
            continue
        if line.startswith("Final flow: "):
            final = line[12:]
            cur.final = None if final == "unchanged" else final
            cur.in_tree = False
        elif line.startswith("Megaflow: "):
            cur.megaflow = line[10:]
        elif line.startswith("Datapath actions: "):
            cur.actions = line[18:]
        elif line.startswith("Translation failed"):
            cur.failure = line.strip()
        elif cur.in_tree and line.strip():
            indent = len(line) - len(line.lstrip(" "))
            cur.lines.append(ObservedLine(indent, line.strip(), number))
        elif line.strip() and not line.startswith(("This flow is handled", "  - ")):
            _bad(sink, source, number, line)
    return ObservedTrace(
        tuple(
            ObservedPass(
                p.flow, tuple(p.lines), p.final, p.megaflow, p.actions, p.header, p.failure
            )
            for p in passes
        ),
        source,
    )


def _bad(sink: DiagnosticSink | None, source: str, number: int, line: str) -> None:
    report_line(sink, source, number, "not part of an ofproto/trace output", line[:60])


_TABLE = re.compile(r"^(\d+)\. ")
_FLOW = re.compile(
    r"^(?:(?P<match>.*), )?priority (?P<priority>\d+)(?:, cookie (?P<cookie>0x[0-9a-f]+))?$"
)
_RESUMING = re.compile(r"^Resuming from table (\d+)$")
_THAW = ("thaw", "Resuming from table", "Restoring action", "restored state")
_TERMINAL = frozenset({NodeKind.ACTION, NodeKind.DETAIL, NodeKind.WARN, NodeKind.ERROR})


def _kind(text: str) -> NodeKind:
    if text.startswith('bridge("'):
        return NodeKind.BRIDGE
    if _TABLE.match(text):
        return NodeKind.TABLE
    if text.startswith(_THAW):
        return NodeKind.THAW
    if text.startswith(">>>> ") and text.endswith(" <<<<"):
        return NodeKind.ERROR
    if text.startswith(">> "):
        return NodeKind.WARN
    if text.startswith("-> "):
        return NodeKind.DETAIL
    return NodeKind.ACTION


def _pad(line: ObservedLine, kind: NodeKind) -> int:
    """The indentation OVS computed, before the one-space prefixes of some node kinds."""
    if kind in (NodeKind.DETAIL, NodeKind.WARN, NodeKind.ERROR):
        return line.indent - 1
    if kind is NodeKind.TABLE and len(_TABLE.match(line.text).group(1)) == 1:  # type: ignore[union-attr]
        return line.indent - 1
    return line.indent


def _node(kind: NodeKind, text: str, children: tuple[TraceNode, ...] = ()) -> TraceNode:
    """The typed node a printed line stands for; a line nodetrace reads no fields from is kept
    as printed."""
    match kind:
        case NodeKind.BRIDGE if text.endswith('")'):
            return Bridge(text[8:-2], children)
        case NodeKind.TABLE:
            number = _TABLE.match(text)
            assert number is not None
            rest = text[number.end() :]
            flow = _FLOW.match(rest)
            table = int(number.group(1))
            if rest == "No match.":
                return TableLookup(table, "", None, children=children)
            if flow is not None:
                cookie = int(flow["cookie"], 16) if flow["cookie"] else 0
                match, priority = flow["match"] or "", int(flow["priority"])
                return TableLookup(table, match, priority, cookie, children)
            return Verbatim(kind, f"{table:2d}. {rest}", children)
        case NodeKind.THAW if text == "thaw":
            return Thaw(None, children)
        case NodeKind.THAW if (resuming := _RESUMING.match(text)) is not None:
            return Thaw(int(resuming.group(1)), children)
        case NodeKind.ACTION:
            return ActionRun(text)
        case NodeKind.DETAIL | NodeKind.WARN:
            return Message(kind, text[3:])
        case NodeKind.ERROR:
            return Message(kind, text[5:-5])
        case NodeKind.BRIDGE | NodeKind.THAW:
            return Verbatim(kind, text, children)
        case _:
            assert_never(kind)


def observed_tree(p: ObservedPass) -> tuple[TraceNode, ...]:
    """Rebuild the trace tree from the printed lines.

    OVS indents a node by ``(level + more) * 4`` where ``more`` is 0 only for the last,
    non-terminal node of a list, whose children then continue at the same level; this inverts
    that rule exactly (the node kind is known from each line's text).
    """
    lines = [line for line in p.lines if not set(line.text) <= {"-"}]
    pos = 0

    def parse(level: int) -> list[TraceNode]:
        nonlocal pos
        nodes: list[TraceNode] = []
        while pos < len(lines):
            line = lines[pos]
            kind = _kind(line.text)
            pad = _pad(line, kind)
            if pad == (level + 1) * 4:
                pos += 1
                children = parse(level + 2) if kind not in _TERMINAL else []
                nodes.append(_node(kind, line.text, tuple(children)))
            elif pad == level * 4 and kind not in _TERMINAL:
                pos += 1
                children = parse(level)
                nodes.append(_node(kind, line.text, tuple(children)))
                break
            else:
                break
        return nodes

    out = parse(0)
    while pos < len(lines):  # lines that do not fit the layout: keep them visible at the end
        line = lines[pos]
        out.append(Verbatim(_kind(line.text), line.text))
        pos += 1
    return tuple(out)
