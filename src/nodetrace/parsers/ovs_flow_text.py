"""Turn OVS flow text (a match such as ``tcp,in_port=2,tp_dst=0x50/0xfff0`` and an action list
such as ``load:0x1->NXM_NX_REG5[],resubmit(,71)``) into nodetrace's typed OpenFlow model.

Keys and values are decoded by OVS's own Python flow library (``ovs.flow``); this module maps
its dictionaries onto :mod:`nodetrace.model.openflow`. Two corners are read here by hand,
because ``ovs.flow`` does not decode them: ``packet_type=(ns,type)`` (its tokenizer splits on
the comma) and the body of ``learn(...)`` (its decoder fails on immediate values such as
``NXM_OF_VLAN_TCI[0..11]=0x5``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from ovs.flow.decoders import EthMask, IntMask, IPMask
from ovs.flow.kv import KVParser
from ovs.flow.ofp import OFPFlow
from ovs.flow.ofp_fields import field_aliases

from nodetrace.model.openflow import (
    CT_STATE_BITS,
    FIELD_ALIASES,
    Action,
    ClearActions,
    Clone,
    Conjunction,
    Controller,
    Ct,
    CtClear,
    DecTtl,
    Drop,
    Enqueue,
    Exit,
    FieldMatch,
    GotoTable,
    Learn,
    LearnSpec,
    LearnSpecKind,
    LegacySet,
    Meter,
    ModField,
    Move,
    Nat,
    NoEffect,
    Note,
    Output,
    OutputField,
    PopVlan,
    PortName,
    PortNumber,
    PortRef,
    PushVlan,
    Reserved,
    ReservedPort,
    Resubmit,
    SetField,
    SetTunnel,
    SetVlan,
    StackPop,
    StackPush,
    SubField,
    Unsupported,
    VlanOp,
    WriteMetadata,
    field_segments,
    field_width,
)
from nodetrace.model.packet import PROTOCOL_SHORTHANDS
from nodetrace.parsers.flow_words import TCP_FLAG_BITS, parse_flags
from nodetrace.parsers.flow_words import FlowTextError as FlowTextError  # imported from here too
from nodetrace.parsers.flow_words import split_top as split_top

# ---------------------------------------------------------------------------------------------
# Fields and subfields

_SUBFIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\[(?:(\d+)(?:\.\.(\d+))?)?\]$")


def canonical_field(name: str) -> str:
    """``NXM_NX_REG0`` -> ``reg0``, ``OXM_OF_IN_PORT`` -> ``in_port_oxm``; plain names unchanged."""
    return str(field_aliases.get(name, name))


def parse_subfield(text: str) -> SubField:
    """``NXM_OF_VLAN_TCI[0..11]``, ``reg0[]``, ``NXM_NX_REG0[5]`` -> :class:`SubField`."""
    m = _SUBFIELD.match(text.strip())
    if m is None:
        raise FlowTextError(f"{text!r} is not a field reference like NXM_NX_REG0[0..15]")
    name = canonical_field(m.group(1))
    width = field_width(name)
    if width is None:
        raise FlowTextError(f"field {m.group(1)} is not modelled")
    if m.group(2) is None:
        start, end = 0, width - 1
    else:
        start = int(m.group(2))
        end = int(m.group(3)) if m.group(3) is not None else start
    if end < start or end >= width:
        raise FlowTextError(f"{text}: bits {start}..{end} outside a {width}-bit field")
    return SubField(name, start, end - start + 1, text.strip())


# ---------------------------------------------------------------------------------------------
# Ports

_RESERVED = {p.value: p for p in ReservedPort}
_RESERVED.update({"in_port": ReservedPort.IN_PORT, "local": ReservedPort.LOCAL})


def parse_port(value: object) -> PortRef:
    """A port as ``ovs-ofctl`` prints it: a number, a reserved name or a (quoted) port name."""
    if isinstance(value, int):
        return PortNumber(value)
    text = str(value).strip()
    if not text:
        raise FlowTextError("empty port")
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return PortName(text[1:-1])
    upper = text.upper()
    if upper in _RESERVED:
        return Reserved(_RESERVED[upper])
    if text in _RESERVED:
        return Reserved(_RESERVED[text])
    try:
        return PortNumber(int(text, 0))
    except ValueError:
        return PortName(text)


# ---------------------------------------------------------------------------------------------
# Match

_FRAG = {"no": (0, 1), "yes": (1, 1), "first": (1, 3), "later": (3, 3), "not_later": (0, 2)}

_PACKET_TYPE = re.compile(r"packet_type=\(\s*(\w+)\s*,\s*(\w+)\s*\)")


def _int_value(value: Any, width: int) -> tuple[int, int]:
    full = (1 << width) - 1
    if isinstance(value, IntMask):
        return int(value.value), int(value.mask) & full
    if isinstance(value, bool):
        raise FlowTextError("expected a value")
    if isinstance(value, int):
        return value, full
    if isinstance(value, IPMask):
        return int(value.ip), int(value.mask)
    if isinstance(value, EthMask):
        mask = int(value.mask.value) if value.mask is not None else full
        return int(value.eth.value), mask
    text = str(value)
    value_text, _, mask_text = text.partition("/")
    return int(value_text, 0), int(mask_text, 0) if mask_text else full


def _segment_bits(name: str, value: int, mask: int) -> dict[str, tuple[int, int]]:
    """``name=value/mask`` (user field units) as bits of the storage fields it lives in."""
    segments = field_segments(name)
    if segments is None:
        raise FlowTextError(f"field {name} is not modelled")
    out: dict[str, tuple[int, int]] = {}
    for storage, bit, width, vbit in segments:
        part_mask = ((mask >> vbit) & ((1 << width) - 1)) << bit
        part_value = ((value >> vbit) & ((1 << width) - 1)) << bit
        old_value, old_mask = out.get(storage, (0, 0))
        out[storage] = ((old_value & ~part_mask) | (part_value & part_mask), old_mask | part_mask)
    return out


_IP_BYTE_FIELDS = ("nw_tos", "ip_dscp", "nw_ecn", "ip_ecn", "nw_ttl", "nw_proto", "ip_proto")
"""Fields of one byte or less of the IP header, also read when the model has no width."""


_MatchOp = tuple[str, Any, int, int]
"""One effect of a match term, replayed in order: ``("bits", storage field, value, mask)``
(already masked and shifted into the storage field),
``("priority", n, 0, 0)``, ``("in_port", PortRef, 0, 0)`` or ``("unsupported", text, 0, 0)``."""


def convert_match(
    text: str,
) -> tuple[int | None, tuple[FieldMatch, ...], PortRef | None, tuple[str, ...]]:
    """Decode a match (with or without ``priority=``).

    Returns ``(priority or None, matches, in_port, unsupported terms)``.
    """
    matches: dict[str, tuple[int, int]] = {}
    unsupported: list[str] = []
    priority: int | None = None
    in_port: PortRef | None = None

    def packet_type(m: re.Match[str]) -> str:
        if int(m.group(1), 0) != 0 or int(m.group(2), 0) != 0:
            unsupported.append(m.group(0))
        return ""

    text = _PACKET_TYPE.sub(packet_type, text)
    for term in split_top(text):
        for op, what, value, mask in _term_effects(term):
            if op == "bits":
                old_value, old_mask = matches.get(what, (0, 0))
                matches[what] = ((old_value & ~mask) | value, old_mask | mask)
            elif op == "priority":
                priority = what
            elif op == "in_port":
                in_port = what
            else:
                unsupported.append(what)
    fm = tuple(FieldMatch(f, v & m, m) for f, (v, m) in matches.items())
    return priority, fm, in_port, tuple(unsupported)


@functools.lru_cache(maxsize=16384)
def _term_effects(term: str) -> tuple[_MatchOp, ...]:
    """What one match term does. Cached: a node's flows repeat the same few thousand terms
    (``reg5=0x1f``, ``ct_state=+est-rel-rpl``, ``tcp``) across tens of thousands of flows, and
    decoding a term with ``ovs.flow`` costs tens of microseconds. Errors are not cached."""
    try:
        parser = KVParser(term, OFPFlow.match_decoders())
        parser.parse()
        kvs = parser.kv()
    except Exception as err:  # ovs.flow raises assorted exceptions on bad input
        if "=" in term and term.split("=", 1)[0] not in FIELD_ALIASES:
            return (("unsupported", term, 0, 0),)
        raise FlowTextError(f"cannot read match term {term!r}: {_cause(err)}") from None
    ops: list[_MatchOp] = []

    def add(name: str, value: int, mask: int) -> None:
        for storage, (part_value, part_mask) in _segment_bits(name, value, mask).items():
            ops.append(("bits", storage, part_value, part_mask))

    for kv in kvs:
        key = str(kv.key)
        value = kv.value
        try:
            if key == "priority":
                ops.append(("priority", int(value), 0, 0))
            elif key in PROTOCOL_SHORTHANDS:
                dl_type, proto = PROTOCOL_SHORTHANDS[key]
                add("dl_type", dl_type, 0xFFFF)
                if proto is not None:
                    add("nw_proto", proto, 0xFF)
            elif key == "eth":
                continue
            elif key in ("in_port", "in_port_oxm"):
                ops.append(("in_port", parse_port(kv.meta.vstring if kv.meta else value), 0, 0))
            elif key == "dl_vlan":
                vid = int(value)
                if vid == 0xFFFF:
                    add("vlan_tci", 0, 0xFFFF)
                else:
                    add("vlan_tci", 0x1000 | (vid & 0xFFF), 0x1FFF)
            elif key == "dl_vlan_pcp":
                add("vlan_tci", 0x1000 | ((int(value) & 7) << 13), 0xF000)
            elif key == "vlan_pcp":
                add("vlan_pcp", int(value) & 7, 7)
            elif key == "ct_state":
                add("ct_state", *parse_flags(str(value), CT_STATE_BITS, "ct_state"))
            elif key == "tcp_flags":
                v, m = parse_flags(str(value), TCP_FLAG_BITS, "tcp_flags")
                add("tcp_flags", v, m & 0xFFF)
            elif key in ("nw_frag", "ip_frag"):
                if str(value) not in _FRAG:
                    raise FlowTextError(
                        f"nw_frag={value}: expected no, yes, first, later or not_later"
                    )
                add("nw_frag", *_FRAG[str(value)])
            elif key == "tun_flags":
                add("tun_flags", *parse_flags(str(value), {"oam": 1}, "tun_flags"))
            elif key in _IP_BYTE_FIELDS:
                v, m = _int_value(value, field_width(key) or 8)
                if key == "nw_tos":
                    add("ip_dscp", v >> 2, 0x3F)
                else:
                    add(key, v, m)
            elif field_width(key) is not None:
                add(key, *_int_value(value, field_width(key) or 0))
            else:
                text = f"{kv.meta.kstring}={kv.meta.vstring}" if kv.meta else key
                ops.append(("unsupported", text, 0, 0))
        except FlowTextError:
            raise
        except (ValueError, TypeError) as err:
            raise FlowTextError(f"cannot read match term {term!r}: {err}") from None
    return tuple(ops)


def _cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err) or type(err).__name__


# ---------------------------------------------------------------------------------------------
# Actions


@functools.lru_cache(maxsize=16384)
def convert_actions(text: str) -> tuple[Action, ...]:
    """Decode an action list; an empty list or ``drop`` gives ``(Drop(),)``.

    Cached like match terms: actions are immutable, and a node's flows share a few thousand
    action lists."""
    text = text.strip()
    if not text or text == "drop":
        return (Drop(),)
    return tuple(convert_action(part) for part in split_top(text))


def convert_action(text: str) -> Action:
    """Decode one action. Actions nodetrace does not evaluate become :class:`Unsupported`."""
    name = re.split(r"[:(=]", text, maxsplit=1)[0].strip()
    lname = name.lower()
    try:
        if lname == "learn" and text.endswith(")"):
            return parse_learn(text)
        if lname == "ct" and (text == "ct" or text.startswith("ct(")):
            return _ct(text)
        if lname in ("clone",) and text.endswith(")"):
            return Clone(text, convert_actions(text[len(name) + 1 : -1]))
        if lname in ("move", "push", "pop", "output") and "[" in text:
            return _field_action(lname, text)
        parser = KVParser(text, OFPFlow.action_decoders())
        parser.parse()
        kvs = parser.kv()
    except FlowTextError as err:
        return Unsupported(text, name, f"not understood: {err}")
    except Exception as err:  # ovs.flow raises assorted exceptions on input it cannot decode
        return Unsupported(text, name, f"not understood: {_cause(err)}")
    if len(kvs) != 1:
        return Unsupported(text, name, "not understood")
    try:
        return _from_kv(text, str(kvs[0].key), kvs[0].value)
    except (FlowTextError, ValueError, KeyError, TypeError, AttributeError) as err:
        return Unsupported(text, name, f"not understood: {err}")


def _field_action(name: str, text: str) -> Action:
    body = text.split(":", 1)[1] if ":" in text else ""
    if name == "move":
        src, sep, dst = body.partition("->")
        if not sep:
            raise FlowTextError(f"{text}: expected move:SRC->DST")
        return Move(text, parse_subfield(src), parse_subfield(dst))
    if name == "push":
        return StackPush(text, parse_subfield(body))
    if name == "pop":
        return StackPop(text, parse_subfield(body))
    return OutputField(text, parse_subfield(body))


_LEGACY = {k.value: k for k in LegacySet}


def _from_kv(text: str, key: str, value: Any) -> Action:
    k = key.lower()
    if k == "output":
        port = value.get("port") if isinstance(value, dict) else value
        max_len = value.get("max_len") if isinstance(value, dict) else None
        ref = parse_port(port)
        if isinstance(ref, Reserved) and ref.port is ReservedPort.CONTROLLER:
            return Controller(text, max_len)
        return Output(text, ref, max_len)
    if k == "controller":
        max_len = value.get("max_len") if isinstance(value, dict) else None
        reason = value.get("reason") if isinstance(value, dict) else None
        return Controller(text, max_len, None if reason is None else str(reason))
    if k == "drop":
        return Drop(text)
    if k == "enqueue":
        return Enqueue(text, parse_port(value["port"]), int(value["queue"]))
    if k == "resubmit":
        port_text = value.get("port", "") if isinstance(value, dict) else value
        table = value.get("table") if isinstance(value, dict) else None
        port = None if port_text in ("", None) else parse_port(port_text)
        return Resubmit(
            text,
            port,
            None if table in (None, 255) else int(table),
            bool(value.get("ct")) if isinstance(value, dict) else False,
        )
    if k == "goto_table":
        return GotoTable(text, int(value))
    if k in ("mod_vlan_vid", "set_vlan_vid", "mod_vlan_pcp", "set_vlan_pcp"):
        return SetVlan(text, VlanOp(k), int(value))
    if k in ("strip_vlan", "pop_vlan"):
        return PopVlan(text)
    if k == "push_vlan":
        return PushVlan(text, int(value) if isinstance(value, int) else int(str(value), 0))
    if k in _LEGACY:
        kind = _LEGACY[k]
        if isinstance(value, EthMask):
            return ModField(text, kind, int(value.eth.value))
        if isinstance(value, IPMask):
            return ModField(text, kind, int(value.ip))
        return ModField(text, kind, int(value) if isinstance(value, int) else int(str(value), 0))
    if k == "set_field":
        return _set_field(text, value)
    if k == "load":
        return _load(text, value)
    if k == "dec_ttl":
        ids = tuple(int(i) for i in value) if isinstance(value, list) else (0,)
        return DecTtl(text, ids)
    if k in ("set_tunnel", "set_tunnel64"):
        return SetTunnel(text, int(value) if isinstance(value, int) else int(str(value), 0))
    if k == "write_metadata":
        return WriteMetadata(text, int(value.value), int(value.mask))
    if k == "note":
        return Note(text)
    if k == "conjunction":
        return Conjunction(text, int(value["id"]), int(value["k"]), int(value["n"]))
    if k == "exit":
        return Exit(text)
    if k == "ct_clear":
        return CtClear(text)
    if k == "clear_actions":
        return ClearActions(text)
    if k == "meter":
        return Meter(text, int(value))
    if k in ("sample", "fin_timeout"):
        return NoEffect(text, f"{k} does not change where the packet goes")
    if k in ("set_queue", "pop_queue"):
        return NoEffect(text, f"{k} selects a QoS queue; it does not change where the packet goes")
    if k == "multipath":
        return Unsupported(text, k, "the output is chosen by a hash of the packet")
    if k in ("bundle", "bundle_load"):
        return Unsupported(text, k, "the member is chosen by a hash and link state")
    if k == "group":
        return Unsupported(text, k, "group tables are not in the snapshot")
    return Unsupported(text, k, "not modelled")


def _subfield_from_dict(d: dict[str, Any], text: str) -> SubField:
    name = canonical_field(str(d["field"]))
    width = field_width(name)
    if width is None:
        raise FlowTextError(f"field {d['field']} is not modelled")
    start = int(d.get("start", 0))
    end = int(d.get("end", width - 1))
    return SubField(name, start, end - start + 1, text)


def _load(text: str, value: dict[str, Any]) -> Action:
    dst_text = text.split("->", 1)[1] if "->" in text else ""
    if "src" in value:
        return Unsupported(text, "load", "load from a field is only valid inside learn()")
    dst = parse_subfield(dst_text) if dst_text else _subfield_from_dict(value["dst"], "")
    mask = ((1 << dst.width) - 1) << dst.start
    return SetField(text, dst.field, (int(value["value"]) << dst.start) & mask, mask)


def _set_field(text: str, value: dict[str, Any]) -> Action:
    dst = canonical_field(str(value["dst"]["field"]))
    width = field_width(dst)
    if width is None:
        return Unsupported(text, "set_field", f"field {dst} is not modelled")
    (decoded,) = value["value"].values()
    full = (1 << width) - 1
    if dst == "ct_state":
        return Unsupported(text, "set_field", "ct_state cannot be set")
    v, m = _int_value(decoded, width)
    if isinstance(decoded, EthMask) and decoded.mask is None:
        m = full
    return SetField(text, dst, v & m, m & full)


def _ct(text: str) -> Ct:
    body = text[3:-1] if text.startswith("ct(") else ""
    commit = force = False
    zone = 0
    zone_field: SubField | None = None
    table: int | None = None
    nat: Nat | None = None
    exec_actions: tuple[Action, ...] = ()
    alg: str | None = None
    for part in split_top(body):
        key, _, val = part.partition("=")
        if part == "commit":
            commit = True
        elif part == "force":
            force = True
        elif key == "zone":
            if val[:1].isdigit():
                zone = int(val, 0)
            else:
                zone_field = parse_subfield(val)
        elif key == "table":
            table = int(val, 0)
        elif part == "nat" or part.startswith("nat("):
            nat = parse_nat(part)
        elif part.startswith("exec(") and part.endswith(")"):
            exec_actions = convert_actions(part[5:-1])
        elif key == "alg":
            alg = val
        else:
            raise FlowTextError(f"{text}: unknown ct argument {part!r}")
    return Ct(text, commit, force, zone, zone_field, table, nat, exec_actions, alg)


_NAT_RANGE = re.compile(
    r"^(?P<a1>\[[^\]]+\]|[0-9.]+|[0-9a-fA-F:]+?)(?:-(?P<a2>\[[^\]]+\]|[0-9.]+|[0-9a-fA-F:]+?))?"
    r"(?::(?P<p1>\d+)(?:-(?P<p2>\d+))?)?$"
)


def parse_nat(text: str) -> Nat:
    if text == "nat":
        return Nat(text)
    body = text[4:-1]
    kind, _, rest = body.partition("=")
    if kind not in ("src", "dst"):
        return Nat(text, kind="")
    addr_part = split_top(rest)[0] if rest else ""
    m = _NAT_RANGE.match(addr_part)
    if m is None:
        raise FlowTextError(f"{text}: cannot read the address range")
    a1 = m.group("a1").strip("[]")
    a2 = m.group("a2").strip("[]") if m.group("a2") else None
    p1 = int(m.group("p1")) if m.group("p1") else None
    p2 = int(m.group("p2")) if m.group("p2") else None
    return Nat(text, kind, a1, a2, p1, p2)


# ---------------------------------------------------------------------------------------------
# learn(...)

_LEARN_INT_KEYS = {
    "table",
    "priority",
    "idle_timeout",
    "hard_timeout",
    "fin_idle_timeout",
    "fin_hard_timeout",
    "cookie",
    "limit",
}


def parse_learn(text: str) -> Learn:
    """``learn(table=20,priority=1,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],
    load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])``
    """
    body = text[text.index("(") + 1 : -1]
    ints = {"table": 1, "priority": 32768}
    flags: set[str] = set()
    specs: list[LearnSpec] = []
    result_dst: SubField | None = None
    for part in split_top(body):
        key, eq, val = part.partition("=")
        if eq and key in _LEARN_INT_KEYS:
            ints[key] = int(val, 0)
        elif part in ("send_flow_rem", "delete_learned"):
            flags.add(part)
        elif eq and key == "result_dst":
            result_dst = parse_subfield(val)
        elif part.startswith("load:"):
            src_text, arrow, dst_text = part[5:].partition("->")
            if not arrow:
                raise FlowTextError(f"{part}: expected load:SRC->DST")
            dst = parse_subfield(dst_text)
            if src_text[:1].isdigit():
                specs.append(LearnSpec(part, LearnSpecKind.LOAD, dst, value=int(src_text, 0)))
            else:
                specs.append(LearnSpec(part, LearnSpecKind.LOAD, dst, src=parse_subfield(src_text)))
        elif part.startswith("output:"):
            specs.append(LearnSpec(part, LearnSpecKind.OUTPUT, None, src=parse_subfield(part[7:])))
        else:
            specs.append(_learn_match(part))
    return Learn(
        text,
        table=ints["table"],
        priority=ints["priority"],
        specs=tuple(specs),
        idle_timeout=ints.get("idle_timeout", 0),
        hard_timeout=ints.get("hard_timeout", 0),
        fin_idle_timeout=ints.get("fin_idle_timeout", 0),
        fin_hard_timeout=ints.get("fin_hard_timeout", 0),
        cookie=ints.get("cookie", 0),
        send_flow_rem="send_flow_rem" in flags,
        delete_learned="delete_learned" in flags,
        limit=ints.get("limit", 0),
        result_dst=result_dst,
    )


def _learn_match(part: str) -> LearnSpec:
    dst_text, eq, src_text = part.partition("=")
    if "[" in dst_text:
        dst = parse_subfield(dst_text)
    else:
        name = canonical_field(dst_text)
        width = field_width(name)
        if width is None:
            raise FlowTextError(f"learn: field {dst_text} is not modelled")
        dst = SubField(name, 0, width, dst_text)
    if not eq:
        return LearnSpec(part, LearnSpecKind.MATCH, dst, src=dst)
    if "[" in src_text:
        return LearnSpec(part, LearnSpecKind.MATCH, dst, src=parse_subfield(src_text))
    try:
        value = _learn_value(dst.field, src_text)
    except ValueError:
        raise FlowTextError(f"learn: cannot read value {src_text!r} for {dst_text}") from None
    return LearnSpec(part, LearnSpecKind.MATCH, dst, value=value)


def _learn_value(field: str, text: str) -> int:
    if ":" in text and len(text) == 17:
        return int(text.replace(":", ""), 16)
    if text.count(".") == 3:
        a, b, c, d = (int(x) for x in text.split("."))
        return (a << 24) | (b << 16) | (c << 8) | d
    return int(text, 0)
