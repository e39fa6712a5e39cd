"""JSON for machines: any model object (traces, steps, packets, rules) as plain JSON values.

The conversion is generic so every step type added later serialises without changes here:
dataclasses become objects with a ``"type"`` tag for the step union, enums their value,
addresses their text. ``None`` fields are kept so the schema is stable. The schema is
documented in docs/formats.md; ``SCHEMA_VERSION`` changes when a field changes meaning.
"""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

from nodetrace.errors import SourcePos
from nodetrace.model.netfilter import Rule
from nodetrace.model.trace import DeviceStep, NetfilterStep, OpenFlowStep

SCHEMA_VERSION = 1

_STEP_TYPES: dict[type, str] = {
    NetfilterStep: "netfilter",
    OpenFlowStep: "openflow",
    DeviceStep: "device",
}


def to_jsonable(obj: Any) -> Any:
    """Convert a model value into JSON-compatible data (dicts, lists, str, int, bool, None)."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, IPv4Address | IPv6Address | IPv4Network | IPv6Network | SourcePos):
        return str(obj)
    if isinstance(obj, Rule):
        # A step names its rule; the full parsed structure would repeat the ruleset.
        return {
            "text": obj.text,
            "table": obj.table,
            "chain": obj.chain,
            "position": obj.position,
            "source": str(obj.pos) if obj.pos else None,
        }
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        tag = _STEP_TYPES.get(type(obj))
        if tag is not None:
            out["type"] = tag
        for f in dataclasses.fields(obj):
            out[f.name] = to_jsonable(getattr(obj, f.name))
        return out
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | frozenset | set):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.hex()
    raise TypeError(f"cannot render {type(obj).__name__} as JSON")


def dumps(obj: Any, *, indent: int | None = None) -> str:
    return json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False)
