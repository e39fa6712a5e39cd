"""The pieces of OVS flow text that need no OVS library: splitting at top-level commas, flag
sets (``+trk-est``, ``syn|ack``, ``0x21/0x3f``) and the error for a term that cannot be read.

:mod:`.ovs_flow_text` (dump-flows, decoded by ``ovs.flow``) and :mod:`.flow_syntax` (a packet as
``ofproto/trace`` takes it) share them; kept apart so that reading a packet does not load
``ovs.flow``, whose pyparsing and netaddr cost a tenth of a second at every start.
"""

from __future__ import annotations

import re

from nodetrace.model.packet import TcpFlag


class FlowTextError(ValueError):
    """A match or action term that cannot be read; the message names the term."""


def split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses (``learn(a,b),output:1`` has two parts)."""
    if "(" not in text:
        return [p.strip() for p in text.split(sep) if p.strip()]
    parts: list[str] = []
    depth = 0
    start = 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


TCP_FLAG_BITS = {f.name.lower(): int(f) for f in TcpFlag} | {"ns": TcpFlag.AE}
"""TCP flags by the names OVS takes (``ns`` is the AE bit's older name)."""


def parse_flags(text: str, bits: dict[str, int], what: str) -> tuple[int, int]:
    """``+trk-est`` / ``trk|est`` / ``0x21/0x3f`` -> (value, mask)."""
    text = text.strip()
    every = 0
    for bit in bits.values():  # two names may stand for one bit
        every |= bit
    if text[:1].isdigit():
        value_text, _, mask_text = text.partition("/")
        value = int(value_text, 0)
        mask = int(mask_text, 0) if mask_text else every
        return value & mask, mask
    value = mask = 0
    if text[:1] in "+-":
        for sign, name in re.findall(r"([+-])([a-z_]+)", text.lower()):
            if name not in bits:
                raise FlowTextError(f"{what}: unknown flag {name!r}")
            mask |= bits[name]
            if sign == "+":
                value |= bits[name]
        return value, mask
    for name in re.split(r"[|,]", text.lower()):
        if name not in bits:
            raise FlowTextError(f"{what}: unknown flag {name!r}")
        value |= bits[name]
    return value, every
