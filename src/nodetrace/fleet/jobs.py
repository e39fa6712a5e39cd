"""One node's share of a fleet command, as rows for the store.

Each job is a plain top-level function of picklable arguments returning a :class:`NodeResult`,
so the same code runs in this process, in a local process pool or on a Dask worker, and the
results cannot depend on where it ran. A node whose input is unusable (a damaged archive, a
port it does not have) gives an ``error`` or a status row, never a missing node: "which nodes
drop this?" must also say which nodes could not be asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nodetrace.errors import DiagnosticSink, NodetraceError
from nodetrace.fleet.inputs import NodeInput
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import NetfilterStep, Trace

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NodeResult:
    node: str
    rows: dict[str, list[Row]] = field(default_factory=dict)
    """Table name → rows (column → value), as ``fleet/store.py`` declares the tables."""
    error: str | None = None
    """Why this node gave no answer (its input could not be read), in one line."""


@dataclass(frozen=True, slots=True)
class TraceSpec:
    """The packet every node is asked about, as ``nodetrace trace`` takes it."""

    packet: str
    from_port: str | None = None
    to_port: str | None = None
    from_host: bool = False
    ct_state: str | None = None


def audit_job(item: NodeInput) -> NodeResult:
    from nodetrace.audit import audit

    try:
        snap = _load(item)
        findings = audit(snap)
    except NodetraceError as e:
        return _failed(item, e)
    rows = [
        {
            "node": item.node,
            "check_id": f.check,
            "severity": f.severity.value,
            "subject": f.subject,
            "title": f.title,
            "evidence": "\n".join(f"{e.source}: {e.text}" for e in f.evidence),
            "confirm": f.confirm,
        }
        for f in findings
    ]
    return NodeResult(item.node, {"nodes": [_node_row(item, snap)], "findings": rows})


def trace_job(item: NodeInput, spec: TraceSpec) -> NodeResult:
    from nodetrace import api
    from nodetrace.errors import UsageError

    base: Row = {
        "node": item.node,
        "packet": spec.packet,
        "from_port": spec.from_port,
        "to_port": spec.to_port,
    }
    try:
        snap = _load(item)
    except NodetraceError as e:
        return _failed(item, e)
    try:
        result = api.trace(
            snap,
            spec.packet,
            from_port=spec.from_port,
            to_port=spec.to_port,
            from_host=spec.from_host,
            ct_state=spec.ct_state,
        )
    except UsageError as e:  # the port is not on this node, or the packet makes no sense here
        row = {**base, "status": "not-traced", "outcome": None, "deciding_step": None,
               "rule": None, "reason": str(e), "assumptions": 0}  # fmt: skip
        return NodeResult(item.node, {"nodes": [_node_row(item, snap)], "traces": [row]})
    step, rule = _deciding(result)
    row = {
        **base,
        "status": "traced",
        "outcome": result.outcome.value,
        "deciding_step": step,
        "rule": rule,
        "reason": result.reason,
        "assumptions": len(result.assumptions),
    }
    return NodeResult(item.node, {"nodes": [_node_row(item, snap)], "traces": [row]})


def log_job(node: str, logs: Sequence[str], rules: Sequence[str]) -> NodeResult:
    """Every packet of one node's logs, explained with ``rules`` (its snapshot, or rule files),
    as a row per packet and a row per netfilter step (the TRACE records themselves)."""
    from nodetrace import api

    sink = DiagnosticSink()
    packets: list[Row] = []
    steps: list[Row] = []
    try:
        for obs in api.explain_log(logs, rules=rules, sink=sink):
            key = {"node": node, "file": obs.source, "packet": obs.index}
            packets.append({**key, **_packet_row(obs.trace, obs.time, obs.first_line)})
            packets[-1]["deciding_step"] = obs.conclusion.deciding
            packets[-1]["rule"] = obs.conclusion.deciding_rule
            steps += [{**key, **_step_row(n, s)} for n, s in _netfilter_steps(obs.trace)]
    except NodetraceError as e:
        return NodeResult(node, error=str(e))
    skipped = [{"node": node, "file": d.pos.file, "line": d.pos.line,
                "severity": d.severity.value, "reason": d.message} for d in sink.items]  # fmt: skip
    return NodeResult(node, {"log_packets": packets, "log_steps": steps, "skipped": skipped})


def _load(item: NodeInput) -> Snapshot:
    from nodetrace.api import load_snapshot

    return load_snapshot(item.path)


def _failed(item: NodeInput, error: NodetraceError) -> NodeResult:
    return NodeResult(item.node, {"nodes": [{"node": item.node, "path": item.path,
                                             "error": str(error)}]}, error=str(error))  # fmt: skip


def _node_row(item: NodeInput, snap: Snapshot) -> Row:
    return {
        "node": item.node,
        "path": item.path,
        "hostname": snap.host or None,
        "kernel": snap.kernel or None,
        "source_kind": str(snap.source_kind),
        "collected_at": snap.collected_at or None,
        "missing": len(snap.missing),
        "error": None,
    }


def _deciding(result: Trace) -> tuple[str | None, str | None]:
    from nodetrace.model.trace_diff import describe

    if result.verdict_step is None:
        return None, None
    step = result.steps[result.verdict_step]
    rule = step.rule_text if isinstance(step, NetfilterStep) else None
    return describe(step), rule


def _packet_row(trace: Trace, time: str | None, line: int) -> Row:
    p = trace.packet
    return {
        "line": line,
        "time_text": time,
        "logged_at": _timestamp(time),
        "outcome": trace.outcome.value,
        "src": str(p.nw_src) if p is not None and p.nw_src is not None else None,
        "dst": str(p.nw_dst) if p is not None and p.nw_dst is not None else None,
        "proto": p.nw_proto if p is not None else None,
        "dport": p.tp_dst if p is not None else None,
    }


def _netfilter_steps(trace: Trace) -> Iterator[tuple[int, NetfilterStep]]:
    for number, step in enumerate(trace.steps, start=1):
        if isinstance(step, NetfilterStep):
            yield number, step


def _step_row(number: int, step: NetfilterStep) -> Row:
    return {
        "step": number,
        "line": step.span.first_line if step.span is not None else None,
        "hook": step.hook.value if step.hook is not None else None,
        "nf_table": step.table,
        "chain": step.chain,
        "kind": step.kind.value,
        "number": step.number,
        "in_dev": step.in_dev or None,
        "out_dev": step.out_dev or None,
        "rule": step.rule_text,
    }


def _timestamp(text: str | None) -> datetime | None:
    """The moment a logger's prefix starts with, when it names one: ISO 8601 with its zone, as journald's
    ``short-iso`` and rsyslog's high-precision format write it. Classic syslog stamps have no
    year, zone-less ones no zone, kernel brackets count from boot: those stay ``time_text``
    only, never guessed onto a calendar."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.split(maxsplit=1)[0])
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
