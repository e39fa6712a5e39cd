"""Read ``ovs-ofctl dump-flows BRIDGE`` in every form operators paste.

A real sample (OVS 3.1, OpenFlow 1.0 default, with statistics)::

    NXST_FLOW reply (xid=0x4):
     cookie=0x0, duration=0.528s, table=0, n_packets=6, n_bytes=496, idle_age=0, priority=1,in_port=1 actions=resubmit(,2)
     cookie=0x0, duration=0.527s, table=4, n_packets=3, n_bytes=230, idle_age=0, priority=1,tun_id=0x64 actions=mod_vlan_vid:1,resubmit(,10)

Also accepted: ``-O OpenFlow13``/``OpenFlow15`` dumps (``OFPST_FLOW reply (OF1.3)`` header,
``goto_table:N``, ``reset_counts``), ``--no-stats`` (``table=2, priority=0,...``), ``--names``
(``in_port="qvo3b1f6a2c-8d"``, ``output:"vxlan-0a000032"``), files without any header, and
flows wrapped over several lines as documentation prints them (continuation lines are joined
while a flow has no ``actions=`` yet, or ends with ``,``).

A line that only marks an elision (``(...)``, ``...``, ``…``, ``[...]``, ``<snip>``), as blog
posts and notes cut long dumps, is not a flow: the dump is then marked incomplete
(``FlowDump.complete``), since the flows it stood for are unknown.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos
from nodetrace.model.openflow import (
    DEFAULT_PRIORITY,
    DumpProtocol,
    Flow,
    FlowDump,
    FlowStats,
    Output,
    PortName,
    Unsupported,
)
from nodetrace.model.trace import SourceSpan
from nodetrace.parsers.elision import ELISION
from nodetrace.parsers.gc_pause import collector_paused
from nodetrace.parsers.ovs_flow_text import FlowTextError, convert_actions, convert_match, split_top
from nodetrace.parsers.pasted import skip_pasted_command

_HEADER = re.compile(r"^\s*(NXST_FLOW|OFPST_FLOW|NXST_AGGREGATE|OFPST_AGGREGATE)\s+reply\b(.*)$")
_RECORD_START = re.compile(r"^\s*(cookie|duration|table|priority)=")

_INFO_INT = {"cookie", "table", "n_packets", "n_bytes", "importance"}
_INFO_TIME = {"duration", "idle_timeout", "hard_timeout", "idle_age", "hard_age"}
_INFO_FLAGS = {
    "reset_counts", "send_flow_rem", "check_overlap", "no_packet_counts", "no_byte_counts",
    "no_readonly_table",
}  # fmt: skip


def parse_ovs_ofctl_dump_flows(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> FlowDump:
    """Parse a flow dump; without ``sink`` the first malformed flow raises :class:`ParseError`."""
    with collector_paused():
        return _parse(text, source, sink)


def _parse(text: str, source: str, sink: DiagnosticSink | None) -> FlowDump:
    protocol = DumpProtocol.UNKNOWN
    ignored = 0
    elided: list[int] = []
    records: list[tuple[int, int, str]] = []
    buf = ""
    first = last = first_indent = 0

    def flush() -> None:
        nonlocal buf
        if buf:
            records.append((first, last, buf))
        buf = ""

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            flush()
            ignored += 1
            continue
        if skip_pasted_command(line, source=source, number=number, sink=sink):
            flush()
            continue
        if ELISION.match(line):
            flush()
            elided.append(number)
            continue
        header = _HEADER.match(line)
        if header:
            flush()
            ignored += 1
            if header.group(1).startswith("NXST") or "(OF1.0)" in header.group(2):
                protocol = DumpProtocol.OF10
            else:
                protocol = DumpProtocol.OF11_PLUS
            continue
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if buf and (
            _complete(buf)
            or _RECORD_START.match(stripped)
            or not _continues(buf, stripped, indent, first_indent)
        ):
            flush()
        if not buf:
            buf, first, first_indent = stripped, number, indent
        elif buf.endswith((",", "(")) or stripped.startswith(")"):
            buf += stripped
        else:
            buf += " " + stripped
        last = number
    flush()

    flows: list[Flow] = []
    names = False
    for first, last, record in records:
        span = SourceSpan(source, first, last)
        try:
            flow = parse_flow_record(record, span)
        except ParseError as err:
            if sink is None:
                raise
            sink.error(err)
            continue
        for action in flow.actions:
            if (
                isinstance(action, Unsupported)
                and action.why.startswith("not understood")
                and sink is not None
            ):
                sink.warn(span.start, f"action {action.text!r} {action.why}")
            if isinstance(action, Output) and isinstance(action.port, PortName):
                names = True
        if isinstance(flow.in_port, PortName):
            names = True
        flows.append(flow)
    if not flows and records and sink is not None and not sink.errors:
        sink.warn(SourcePos(source, 1), "no flows found")
    reason = ""
    if elided:
        where = ", ".join(str(n) for n in elided)
        reason = f"flows were left out where the dump was copied (elision at line {where})"
        if sink is not None:
            sink.warn(SourcePos(source, elided[0]), f"{reason}: the dump is incomplete")
    complete = not elided
    return FlowDump(tuple(flows), protocol, names, source, ignored + len(elided), complete, reason)


def _continues(buf: str, line: str, indent: int, first_indent: int) -> bool:
    """Whether ``line`` carries on a record that has no actions yet: documentation wraps flows
    after a comma or indents the continuation; ``": "`` never occurs in flow text (it does in
    other commands' output pasted into the same file)."""
    if buf.endswith((",", "(")) or line.startswith("actions="):
        return True
    return indent > first_indent and ": " not in line


def _actions_at(record: str) -> int:
    """Where the ``actions=`` word starts (at the start, or after a blank or a comma); -1 if
    there is none. ``str.find`` with a check beats a regular expression tried at every
    position by a factor of ten on long records."""
    at = record.find("actions=")
    while at > 0 and record[at - 1] not in " \t,":
        at = record.find("actions=", at + 1)
    return at


def _complete(buf: str) -> bool:
    """A joined record is complete once it has its actions and nothing is left open."""
    if _actions_at(buf) < 0:
        return False
    if buf.count("(") != buf.count(")"):
        return False
    return not buf.endswith((",", "(", "->", ":", "="))


def parse_flow_record(record: str, span: SourceSpan) -> Flow:
    """Parse one (joined) dump line into a :class:`Flow`."""
    at = _actions_at(record)
    if at < 0:
        raise ParseError(span.start, "flow has no actions=", token=record[:60])
    head = record[:at].strip().rstrip(",")
    actions_text = record[at + len("actions=") :].strip()
    info: dict[str, str] = {}
    flags: list[str] = []
    match_terms: list[str] = []
    priority = DEFAULT_PRIORITY
    pieces = head.replace(",", " ").split() if "(" not in head else _tokens(head)
    for token in pieces:
        key, eq, value = token.partition("=")
        if eq and (key in _INFO_INT or key in _INFO_TIME):
            info[key] = value
        elif not eq and token in _INFO_FLAGS:
            flags.append(token)
        elif eq and key == "priority":
            try:
                priority = int(value, 0)
            except ValueError:
                raise ParseError(span.start, "bad priority", token=token) from None
        else:
            match_terms.append(token)
    match_text = ",".join(match_terms)
    try:
        _, matches, in_port, unsupported = convert_match(match_text)
    except FlowTextError as err:
        raise ParseError(span.start, str(err), token=match_text[:80]) from None
    try:
        table = int(info.get("table", "0"), 0)
        cookie = int(info.get("cookie", "0").split("/")[0], 0)
        importance = int(info.get("importance", "0"), 0)
    except ValueError as err:
        raise ParseError(span.start, f"bad flow header: {err}") from None
    stats = None
    if any(k in info for k in ("duration", "n_packets", "n_bytes", "idle_age", "hard_age")):
        stats = FlowStats(
            _seconds(info.get("duration")),
            _int(info.get("n_packets")),
            _int(info.get("n_bytes")),
            _seconds(info.get("idle_age")),
            _seconds(info.get("hard_age")),
        )
    return Flow(
        table=table,
        priority=priority,
        matches=matches,
        actions=convert_actions(actions_text),
        match_text=match_text,
        actions_text=actions_text,
        cookie=cookie,
        in_port=in_port,
        unsupported=unsupported,
        idle_timeout=int(_seconds(info.get("idle_timeout")) or 0),
        hard_timeout=int(_seconds(info.get("hard_timeout")) or 0),
        importance=importance,
        flags=tuple(flags),
        stats=stats,
        span=span,
    )


def _tokens(head: str) -> list[str]:
    """The words of a flow's head, split at blanks and at commas outside parentheses."""
    return [token for piece in split_top(head) for token in piece.split()]


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.rstrip("s"))
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None
