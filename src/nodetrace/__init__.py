"""nodetrace: follow a packet through an OpenStack compute node and say where, and why, it stops.

The public API is small on purpose (``docs/api.md`` shows it in use)::

    import nodetrace

    node = nodetrace.load_snapshot("sosreport-cmp1.tar.xz")
    trace = nodetrace.trace(node, "tcp,tp_dst=22,tcp_flags=+syn", from_port="bf944fec")
    print(nodetrace.render_trace(trace))
    for packet in nodetrace.explain_log(["kern.log"], rules=["iptables-save.txt"]):
        print(packet.trace.outcome, packet.trace.reason)

The names are loaded on first use, so ``import nodetrace`` (and ``nodetrace --version``) stays
instant; everything they return is a frozen type of :mod:`nodetrace.model`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_snapshot": "nodetrace.api",
    "trace": "nodetrace.api",
    "explain_log": "nodetrace.api",
    "render_trace": "nodetrace.api",
    "diff": "nodetrace.model.trace_diff",
    "TraceDiff": "nodetrace.model.trace_diff",
    "Trace": "nodetrace.model.trace",
    "Outcome": "nodetrace.model.trace",
    "Verdict": "nodetrace.model.verdict",
    "Snapshot": "nodetrace.model.snapshot",
    "ObservedPacket": "nodetrace.tracelog.observed",
    "DiagnosticSink": "nodetrace.errors",
    "NodetraceError": "nodetrace.errors",
}

__all__ = [
    "DiagnosticSink",
    "NodetraceError",
    "ObservedPacket",
    "Outcome",
    "Snapshot",
    "Trace",
    "TraceDiff",
    "Verdict",
    "__version__",
    "diff",
    "explain_log",
    "load_snapshot",
    "render_trace",
    "trace",
]

if TYPE_CHECKING:
    from nodetrace.api import explain_log, load_snapshot, render_trace, trace
    from nodetrace.errors import DiagnosticSink, NodetraceError
    from nodetrace.model.snapshot import Snapshot
    from nodetrace.model.trace import Outcome, Trace
    from nodetrace.model.trace_diff import TraceDiff, diff
    from nodetrace.model.verdict import Verdict
    from nodetrace.tracelog.observed import ObservedPacket


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nodetrace' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
