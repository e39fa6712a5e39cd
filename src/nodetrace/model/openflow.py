"""OpenFlow flows as data: what a flow matches, the actions it runs, and where it was read.

A flow's match is a set of :class:`FieldMatch` (value/mask over one *storage* field, the way
Open vSwitch keeps its ``struct flow``: ``arp_spa`` is stored in ``nw_src``, ``icmp_type`` in
``tp_src``, ``dl_vlan`` in ``vlan_tci``). Storing matches that way lets an engine compare a
packet with one dictionary lookup per field, exactly as OVS's classifier does. Actions are a
tagged union, one dataclass per action kind, each keeping the text the dump printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nodetrace.model.openflow_fields import FIELD_ALIASES as FIELD_ALIASES
from nodetrace.model.openflow_fields import PREREQUISITES as PREREQUISITES
from nodetrace.model.openflow_fields import STORAGE_FIELDS as STORAGE_FIELDS
from nodetrace.model.openflow_fields import FieldAlias as FieldAlias
from nodetrace.model.openflow_fields import FieldInfo as FieldInfo
from nodetrace.model.trace import SourceSpan

# ---------------------------------------------------------------------------------------------
# Fields (the storage fields and their user-visible names are in :mod:`.openflow_fields`)

CT_STATE_BITS: dict[str, int] = {
    "new": 0x01, "est": 0x02, "rel": 0x04, "rpl": 0x08, "inv": 0x10, "trk": 0x20, "snat": 0x40,
    "dnat": 0x80,
}  # fmt: skip
"""Connection tracking state flags as OVS numbers them (``ct_state=+trk+est``)."""


@dataclass(frozen=True, slots=True)
class FieldMatch:
    """Bits ``mask`` of storage field ``field`` must equal ``value`` (already masked)."""

    field: str
    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class SubField:
    """``NXM_NX_REG0[0..15]``: bits ``start`` to ``start + width - 1`` of a user-visible field.

    ``text`` is the spelling in the dump (an NXM/OXM name or a plain field name).
    """

    field: str
    start: int
    width: int
    text: str


# ---------------------------------------------------------------------------------------------
# Ports


class ReservedPort(StrEnum):
    """OpenFlow's reserved port names, as ``ovs-ofctl`` prints them."""

    IN_PORT = "IN_PORT"
    TABLE = "TABLE"
    NORMAL = "NORMAL"
    FLOOD = "FLOOD"
    ALL = "ALL"
    CONTROLLER = "CONTROLLER"
    LOCAL = "LOCAL"
    NONE = "NONE"
    ANY = "ANY"


RESERVED_PORT_NUMBERS: dict[ReservedPort, int] = {
    ReservedPort.IN_PORT: 0xFFF8, ReservedPort.TABLE: 0xFFF9, ReservedPort.NORMAL: 0xFFFA,
    ReservedPort.FLOOD: 0xFFFB, ReservedPort.ALL: 0xFFFC, ReservedPort.CONTROLLER: 0xFFFD,
    ReservedPort.LOCAL: 0xFFFE, ReservedPort.NONE: 0xFFFF, ReservedPort.ANY: 0xFFFF,
}  # fmt: skip
"""OVS's internal (OpenFlow 1.0 style) numbers for the reserved ports."""

LOCAL_PORT = RESERVED_PORT_NUMBERS[ReservedPort.LOCAL]


@dataclass(frozen=True, slots=True)
class PortNumber:
    number: int


@dataclass(frozen=True, slots=True)
class PortName:
    """A port given by name (``ovs-ofctl --names``); the bridge's port table resolves it."""

    name: str


@dataclass(frozen=True, slots=True)
class Reserved:
    port: ReservedPort


PortRef = PortNumber | PortName | Reserved


# ---------------------------------------------------------------------------------------------
# Actions. Every action keeps ``text``: the action exactly as the dump printed it.


@dataclass(frozen=True, slots=True)
class Output:
    """``output:PORT``, ``NORMAL``, ``IN_PORT``, ``LOCAL``, ``FLOOD``, ``ALL`` ..."""

    text: str
    port: PortRef
    max_len: int | None = None


@dataclass(frozen=True, slots=True)
class OutputField:
    """``output:NXM_NX_REG1[0..15]``: the port number comes from a field."""

    text: str
    src: SubField


@dataclass(frozen=True, slots=True)
class Enqueue:
    text: str
    port: PortRef
    queue: int


@dataclass(frozen=True, slots=True)
class Controller:
    text: str
    max_len: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """An empty action list, printed ``drop``."""

    text: str = "drop"


@dataclass(frozen=True, slots=True)
class Resubmit:
    """``resubmit(PORT,TABLE)``; ``None`` means "the current one" for either part."""

    text: str
    port: PortRef | None
    table: int | None
    ct_orig: bool = False


@dataclass(frozen=True, slots=True)
class GotoTable:
    text: str
    table: int


class VlanOp(StrEnum):
    MOD_VID = "mod_vlan_vid"
    """Sets the VID, pushing a tag on an untagged packet (OpenFlow 1.0 semantics)."""
    SET_VID = "set_vlan_vid"
    """Sets the VID only on a tagged packet (OpenFlow 1.1 semantics)."""
    MOD_PCP = "mod_vlan_pcp"
    SET_PCP = "set_vlan_pcp"


@dataclass(frozen=True, slots=True)
class SetVlan:
    text: str
    op: VlanOp
    value: int


@dataclass(frozen=True, slots=True)
class PopVlan:
    """``strip_vlan`` or ``pop_vlan``."""

    text: str


@dataclass(frozen=True, slots=True)
class PushVlan:
    text: str
    ethertype: int


class LegacySet(StrEnum):
    """The pre-``set_field`` modify actions; each applies only when the packet has the header."""

    DL_SRC = "mod_dl_src"
    DL_DST = "mod_dl_dst"
    NW_SRC = "mod_nw_src"
    NW_DST = "mod_nw_dst"
    NW_TOS = "mod_nw_tos"
    NW_ECN = "mod_nw_ecn"
    NW_TTL = "mod_nw_ttl"
    TP_SRC = "mod_tp_src"
    TP_DST = "mod_tp_dst"


@dataclass(frozen=True, slots=True)
class ModField:
    text: str
    kind: LegacySet
    value: int


@dataclass(frozen=True, slots=True)
class SetField:
    """``set_field:V/M->FIELD`` or ``load:V->FIELD[a..b]`` (OVS runs both as set-field).

    ``field`` is the user-visible field name; ``value``/``mask`` are in that field's units.
    """

    text: str
    field: str
    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class Move:
    text: str
    src: SubField
    dst: SubField


@dataclass(frozen=True, slots=True)
class StackPush:
    text: str
    src: SubField


@dataclass(frozen=True, slots=True)
class StackPop:
    text: str
    dst: SubField


@dataclass(frozen=True, slots=True)
class DecTtl:
    text: str
    controller_ids: tuple[int, ...] = (0,)


@dataclass(frozen=True, slots=True)
class SetTunnel:
    """``set_tunnel:ID`` / ``set_tunnel64:ID``."""

    text: str
    tun_id: int


@dataclass(frozen=True, slots=True)
class WriteMetadata:
    text: str
    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class Note:
    text: str


@dataclass(frozen=True, slots=True)
class Conjunction:
    """``conjunction(ID,K/N)``: this flow is clause K of N of conjunctive match ID."""

    text: str
    id: int
    clause: int
    n_clauses: int


@dataclass(frozen=True, slots=True)
class Exit:
    text: str = "exit"


@dataclass(frozen=True, slots=True)
class ClearActions:
    text: str = "clear_actions"


@dataclass(frozen=True, slots=True)
class Meter:
    text: str
    meter_id: int


@dataclass(frozen=True, slots=True)
class NoEffect:
    """An action that changes nothing a trace can see (``sample``, ``fin_timeout``, queues)."""

    text: str
    why: str


@dataclass(frozen=True, slots=True)
class Clone:
    text: str
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class Nat:
    """``nat(src=A-B:P-Q)`` inside ``ct``; ``kind`` is ``src``, ``dst`` or empty (plain ``nat``)."""

    text: str
    kind: str = ""
    addr_min: str | None = None
    addr_max: str | None = None
    port_min: int | None = None
    port_max: int | None = None


@dataclass(frozen=True, slots=True)
class Ct:
    """``ct(commit,zone=Z,table=T,nat(...),exec(...))``."""

    text: str
    commit: bool = False
    force: bool = False
    zone: int = 0
    zone_field: SubField | None = None
    table: int | None = None
    nat: Nat | None = None
    exec_actions: tuple[Action, ...] = ()
    alg: str | None = None


@dataclass(frozen=True, slots=True)
class CtClear:
    text: str = "ct_clear"


class LearnSpecKind(StrEnum):
    MATCH = "match"
    """The learned flow matches ``dst`` against a value from the packet or a constant."""
    LOAD = "load"
    """The learned flow loads a value from the packet or a constant into ``dst``."""
    OUTPUT = "output"
    """The learned flow outputs to the port number found in ``src``."""


@dataclass(frozen=True, slots=True)
class LearnSpec:
    """One element of a ``learn(...)``: ``src`` (a packet subfield) or ``value`` feeds ``dst``."""

    text: str
    kind: LearnSpecKind
    dst: SubField | None
    src: SubField | None = None
    value: int | None = None


@dataclass(frozen=True, slots=True)
class Learn:
    text: str
    table: int
    priority: int
    specs: tuple[LearnSpec, ...]
    idle_timeout: int = 0
    hard_timeout: int = 0
    fin_idle_timeout: int = 0
    fin_hard_timeout: int = 0
    cookie: int = 0
    send_flow_rem: bool = False
    delete_learned: bool = False
    limit: int = 0
    result_dst: SubField | None = None


@dataclass(frozen=True, slots=True)
class Unsupported:
    """An action nodetrace does not evaluate (``multipath``, ``bundle``, ``group``, MPLS ...).

    Reaching one makes a trace's outcome *unknown*; it is never guessed.
    """

    text: str
    name: str
    why: str = ""


Action = (
    Output | OutputField | Enqueue | Controller | Drop | Resubmit | GotoTable | SetVlan | PopVlan
    | PushVlan | ModField | SetField | Move | StackPush | StackPop | DecTtl | SetTunnel
    | WriteMetadata | Note | Conjunction | Exit | ClearActions | Meter | NoEffect | Clone | Ct
    | CtClear | Learn | Unsupported
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Flows


@dataclass(frozen=True, slots=True)
class FlowStats:
    """The volatile counters of a dump line (absent with ``--no-stats``)."""

    duration: float | None = None
    n_packets: int | None = None
    n_bytes: int | None = None
    idle_age: float | None = None
    hard_age: float | None = None


@dataclass(frozen=True, slots=True)
class Flow:
    """One OpenFlow flow as a dump showed it.

    ``match_text`` is the match exactly as printed, without ``priority=``; ``ofproto/trace``
    prints matched flows the same way. ``in_port`` is kept apart from ``matches`` because it may
    name a port (``--names``) that only the bridge's port table can number. ``unsupported``
    lists match terms the engine cannot evaluate (``tun_metadata0=...``, MPLS ...).
    """

    table: int
    priority: int
    matches: tuple[FieldMatch, ...]
    actions: tuple[Action, ...]
    match_text: str
    actions_text: str
    cookie: int = 0
    in_port: PortRef | None = None
    unsupported: tuple[str, ...] = ()
    idle_timeout: int = 0
    hard_timeout: int = 0
    importance: int = 0
    flags: tuple[str, ...] = ()
    stats: FlowStats | None = None
    span: SourceSpan | None = None

    @property
    def conjunctions(self) -> tuple[Conjunction, ...]:
        """The ``conjunction(...)`` clauses, when this flow is part of a conjunctive match."""
        if self.actions and all(isinstance(a, Conjunction) for a in self.actions):
            return tuple(a for a in self.actions if isinstance(a, Conjunction))
        return ()


class DumpProtocol(StrEnum):
    """The OpenFlow version a dump was made with, from its header line when it has one."""

    UNKNOWN = "unknown"
    OF10 = "OpenFlow10"
    """``NXST_FLOW reply``: OpenFlow 1.0 with Nicira extensions (the default)."""
    OF11_PLUS = "OpenFlow11+"
    """``OFPST_FLOW reply (OF1.x)``: OpenFlow 1.1 or later."""


@dataclass(frozen=True, slots=True)
class FlowDump:
    """All flows of one bridge, in dump order."""

    flows: tuple[Flow, ...]
    protocol: DumpProtocol = DumpProtocol.UNKNOWN
    names: bool = False
    """True when ports were printed by name (``--names``, quoted port names)."""
    source: str = ""
    ignored_lines: int = 0
    """Header and blank lines skipped on purpose."""
    complete: bool = True
    """False when the dump holds only part of the bridge's flows: lines elided where it was
    copied (``(...)``), or a dump limited to a match (``dump-flows br-tun table=4``). A packet
    that matches none of its flows may match a flow the dump does not show."""
    incomplete_reason: str = ""
    """Why the dump is incomplete (empty when complete), said wherever that matters."""

    def table(self, table_id: int) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows if f.table == table_id)

    @property
    def tables(self) -> tuple[int, ...]:
        return tuple(sorted({f.table for f in self.flows}))


DEFAULT_PRIORITY = 32768
"""OpenFlow's default priority: ``ovs-ofctl`` omits ``priority=`` for flows that have it."""

MAX_DEPTH = 64
"""OVS stops translation when resubmits to the same or an earlier table nest this deep."""

MAX_RESUBMITS = MAX_DEPTH * MAX_DEPTH
"""OVS stops translation after this many table lookups through resubmit/goto_table."""

Segment = tuple[str, int, int, int]
"""``(storage field, first bit in it, width, first bit in the user's value)``."""


def field_segments(
    name: str, start: int = 0, width: int | None = None
) -> tuple[Segment, ...] | None:
    """Where bits ``start .. start+width-1`` of user-visible field ``name`` are stored.

    Most fields live in one storage field (``icmp_type`` is bits 0..7 of ``tp_src``); the wide
    register views ``xregN`` (``reg2N`` high, ``reg2N+1`` low) and ``xxregN`` span several.
    Returns ``None`` for a field nodetrace does not model.
    """
    alias = FIELD_ALIASES.get(name)
    if alias is not None:
        w = alias.width - start if width is None else width
        if start < 0 or w <= 0 or start + w > alias.width:
            return None
        return ((alias.storage, alias.shift + start, w, 0),)
    if name.startswith(("xreg", "xxreg")):
        wide = name.startswith("xxreg")
        digits = name[5:] if wide else name[4:]
        if not digits.isdigit():
            return None
        n = int(digits)
        words = 4 if wide else 2
        total = 32 * words
        first = n * words
        if first + words > 16:
            return None
        w = total - start if width is None else width
        if start < 0 or w <= 0 or start + w > total:
            return None
        out: list[Segment] = []
        bit = start
        while bit < start + w:
            word = bit // 32
            reg = first + (words - 1 - word)
            lo = bit % 32
            take = min(32 - lo, start + w - bit)
            out.append((f"reg{reg}", lo, take, bit - start))
            bit += take
        return tuple(out)
    return None


def field_width(name: str) -> int | None:
    """The width in bits of a user-visible field, ``None`` if nodetrace does not model it."""
    alias = FIELD_ALIASES.get(name)
    if alias is not None:
        return alias.width
    if name.startswith("xxreg"):
        return 128
    if name.startswith("xreg"):
        return 64
    return None


def ct_state_from_text(text: str) -> int:
    """``trk|est``, ``trk,est``, ``+trk+est`` or ``0x22`` -> the ct_state bits.

    Raises ``ValueError`` naming an unknown flag.
    """
    text = text.strip()
    if text[:1].isdigit():
        return int(text, 0)
    bits = 0
    for sign, name in re.findall(r"([+-]?)([A-Za-z_]+)", text):
        if name.lower() not in CT_STATE_BITS:
            raise ValueError(f"unknown ct_state flag {name!r} (use {', '.join(CT_STATE_BITS)})")
        if sign != "-":
            bits |= CT_STATE_BITS[name.lower()]
    return bits


def ct_state_text(bits: int, sep: str = "|") -> str:
    """The ct_state bits as OVS prints them in a trace (``new|trk``)."""
    return sep.join(name for name, bit in CT_STATE_BITS.items() if bits & bit) or "0"


def ct_state_problem(bits: int) -> str | None:
    """Why OVS refuses ``bits`` as a connection state (``ofproto/trace --ct-next``), or ``None``."""
    trk, inv = CT_STATE_BITS["trk"], CT_STATE_BITS["inv"]
    new, est, rpl = CT_STATE_BITS["new"], CT_STATE_BITS["est"], CT_STATE_BITS["rpl"]
    text = ct_state_text(bits)
    if bits and not bits & trk:
        return f'{text}: if "trk" is unset, no other flags are set'
    if bits & inv and bits & ~(trk | inv):
        return f'{text}: when "inv" is set, only "trk" may also be set'
    if bits & new and bits & est:
        return f'{text}: "new" and "est" are mutually exclusive'
    if bits & new and bits & rpl:
        return f'{text}: "new" and "rpl" are mutually exclusive'
    return None
