"""JSON for machines: every command's output as one versioned schema.

Every document starts with ``schema`` (``SCHEMA_VERSION``) and ``command``. A command that
follows a packet adds the keys of a trace (``trace_fields``): the packet once, the steps
numbered from 1 as the text shows them, each netfilter step saying only what it changed in the
packet, the outcome and the step that decided it. Each command then adds what only it knows.
``show`` writes the node inventory (``render/show_json.py``). docs/json.md documents every key;
docs/json-schema.json is the same schema for machines, and the tests hold the outputs to it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, assert_never

from nodetrace.errors import SourcePos
from nodetrace.model.openflow_trace import OpenFlowTrace, TracePass
from nodetrace.model.packet import Packet
from nodetrace.model.trace import DeviceStep, NetfilterStep, OpenFlowStep, Step, Trace

SCHEMA_VERSION = 2
"""One more when a key is removed or renamed or its value changes meaning; adding a key keeps it."""

_NO_MAC = "00:00:00:00:00:00"
_PACKET_FIELDS = tuple(f.name for f in dataclasses.fields(Packet))
_PASS_FIELDS = tuple(f.name for f in dataclasses.fields(TracePass) if f.name != "nodes")
"""A pass of ``ofproto/trace`` but its tree (the tree is the ``--format ofproto`` text)."""
_PLAIN = frozenset({str, int, bool, float, type(None)})
"""Types that are JSON values as they are (checked by exact type: an IntEnum is not one)."""


def document(command: str, **fields: Any) -> dict[str, Any]:
    """A document of ``command``: the schema's two first keys, then ``fields`` as JSON values."""
    return {"schema": SCHEMA_VERSION, "command": command, **to_jsonable(fields)}


def trace_document(command: str, trace: Trace, **fields: Any) -> dict[str, Any]:
    """A document for one packet's trace, plus what only ``command`` knows of it."""
    return {**document(command), **trace_fields(trace), **to_jsonable(fields)}


def trace_fields(trace: Trace) -> dict[str, Any]:
    """A trace as the schema spells it: the packet once, steps numbered from 1."""
    packet = packet_fields(trace.packet) if trace.packet is not None else None
    known = dict(packet or {})
    steps = [_step(number, step, known) for number, step in enumerate(trace.steps, start=1)]
    return {
        "packet": packet,
        "flow": to_jsonable(trace.flow),
        "steps": steps,
        "outcome": trace.outcome.value,
        "verdict_step": trace.verdict_step + 1 if trace.verdict_step is not None else None,
        "reason": trace.reason,
        "assumptions": list(trace.assumptions),
        "resting_on": list(trace.resting_on),
    }


def openflow_document(trace: OpenFlowTrace, diagnostics: Sequence[object] = ()) -> dict[str, Any]:
    """``nodetrace openflow``'s document for one packet: the trace, and per pass the flow
    OVS would print (``ofproto/trace``'s tree itself is the ``--format ofproto`` text)."""
    passes = [{name: getattr(p, name) for name in _PASS_FIELDS} for p in trace.passes]
    return trace_document(
        "openflow",
        trace.as_trace(),
        bridge=trace.bridge,
        in_port=trace.in_port,
        passes=passes,
        egress=trace.egress,
        learned=trace.learned,
        unset=trace.unset,
        diagnostics=[str(d) for d in diagnostics],
    )


def packet_fields(packet: Packet) -> dict[str, Any]:
    """Every field of a packet under its OVS flow name; ``null`` where nothing told it.

    The model keeps an all-zero MAC for "not logged": here that is ``null``, never a MAC.
    """
    out: dict[str, Any] = {}
    for name in _PACKET_FIELDS:
        value = getattr(packet, name)
        if type(value) not in _PLAIN:
            value = to_jsonable(value)
        out[name] = None if value == _NO_MAC else value
    return out


def _changes(known: dict[str, Any], after: Packet | None) -> dict[str, Any]:
    """The fields ``after`` gives a new value, recorded into ``known``: the packet so far.

    A field a step does not show (a log record without ``MAC=``) is no change.
    """
    if after is None:
        return {}
    new = packet_fields(after)
    changed = {k: v for k, v in new.items() if v is not None and v != known.get(k)}
    known.update(changed)
    return changed


def _pos(pos: SourcePos | None) -> dict[str, Any] | None:
    return (
        None if pos is None else {"file": pos.file, "first_line": pos.line, "last_line": pos.line}
    )


def _step(number: int, step: Step, known: dict[str, Any]) -> dict[str, Any]:
    match step:
        case NetfilterStep():
            rule = step.rule
            return {
                "step": number,
                "type": "netfilter",
                "family": step.family.value,
                "hook": step.hook.value if step.hook is not None else None,
                "table": step.table,
                "chain": step.chain,
                "kind": step.kind.value,
                "number": step.number,
                "handle": step.handle,
                "verdict": to_jsonable(step.verdict),
                "rule": rule.text if rule is not None else step.rule_text,
                "rule_source": _pos(rule.pos) if rule is not None else None,
                "in_dev": step.in_dev,
                "out_dev": step.out_dev,
                "physin": step.physin,
                "physout": step.physout,
                "traced": step.traced,
                "changed": _changes(known, step.packet),
                "note": step.note,
                "misfit": step.misfit,
                "source": to_jsonable(step.span),
            }
        # These two are spelled field by field, in their dataclass's order.
        case OpenFlowStep():
            return {"step": number, "type": "openflow", **to_jsonable(step)}
        case DeviceStep():
            return {"step": number, "type": "device", **to_jsonable(step)}
        case _:
            assert_never(step)


def to_jsonable(obj: Any) -> Any:
    """A value as JSON: enums by value, addresses and bytes as text, dataclasses as objects.

    For what a command adds beside a trace (``iptables``'s conntrack facts, ``openflow``'s
    egress ports); a packet anywhere inside is spelled as ``packet_fields`` spells it.
    """
    if type(obj) in _PLAIN:
        return obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, IPv4Address | IPv6Address | IPv4Network | IPv6Network | SourcePos):
        return str(obj)
    if isinstance(obj, Packet):
        return packet_fields(obj)
    if isinstance(obj, bytes):
        return obj.hex()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | frozenset | set):
        return [to_jsonable(v) for v in obj]
    raise TypeError(f"cannot render {type(obj).__name__} as JSON")


def dumps(doc: dict[str, Any], *, indent: int | None = 2) -> str:
    """A document as text: indented for one document, one line (``indent=None``) for JSON Lines."""
    return json.dumps(doc, indent=indent, ensure_ascii=False)
