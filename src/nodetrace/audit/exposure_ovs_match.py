"""One OpenFlow flow's match as a region of the exposure's header space, for one family.

Addresses, protocol, ports (ICMP type and code), fragments and the source MAC are the classes'
dimensions (``model/exposure.py``): a flow's matches on them become intervals, a masked value
as the runs of integers it allows. Everything else a flow matches (registers, VLAN, ``in_port``,
``ct_state`` ...) is left to the walk's concrete state (``exposure_ovs_walk.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nodetrace.model.exposure import Box, Dim, Intervals
from nodetrace.model.header_space import iv_and, iv_normal, with_dim
from nodetrace.model.openflow import Flow
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Family

_DIM_FIELDS: dict[Family, dict[str, tuple[int, int]]] = {
    Family.IPV4: {"nw_src": (Dim.SRC, 32), "nw_dst": (Dim.DST, 32)},
    Family.IPV6: {"ipv6_src": (Dim.SRC, 128), "ipv6_dst": (Dim.DST, 128)},
}
_SHARED_DIMS = {
    "nw_proto": (Dim.PROTO, 8),
    "tp_src": (Dim.L4A, 16),
    "tp_dst": (Dim.L4B, 16),
    "dl_src": (Dim.MAC, 48),
}
HEADER_FIELDS = frozenset(
    {"nw_src", "nw_dst", "ipv6_src", "ipv6_dst", "nw_proto", "tp_src", "tp_dst", "dl_src",
     "nw_frag", "dl_type"}
)  # fmt: skip
"""Storage fields that are (or select) the classes' dimensions: a flow rewriting one changes
what the later flows see in a way the walk does not follow."""

_FRAG_VALUES = ((0, 1), (3,))
"""``nw_frag`` bits (1: a fragment, 2: a later one) of each FRAG dimension value: 0 is an
unfragmented packet or a first fragment, 1 a later fragment."""

_ENUMERATION_LIMIT = 4096
"""A masked value with more separate runs than this is not turned into intervals (unknown)."""


def masked_intervals(value: int, mask: int, width: int) -> Intervals | None:
    """The integers ``x`` of ``width`` bits with ``x & mask == value``, as intervals; ``None``
    when the mask leaves too many separate runs to list."""
    full = (1 << width) - 1
    mask &= full
    if mask == 0:
        return ((0, full),)
    low = mask & -mask
    free = full & ~mask & ~(low - 1)
    bits = [1 << i for i in range(width) if free >> i & 1]
    if 1 << len(bits) > _ENUMERATION_LIMIT:
        return None
    runs = []
    for combo in range(1 << len(bits)):
        start = value & mask
        for i, bit in enumerate(bits):
            if combo >> i & 1:
                start |= bit
        runs.append((start, start + low - 1))
    return iv_normal(runs)


@dataclass(frozen=True, slots=True)
class FlowMatch:
    """A flow's match split into what it asks of the classes' dimensions and of the walk's
    concrete state."""

    sure: tuple[Box, ...]
    """Packets the header part of the match takes (if the concrete part holds)."""
    maybe: tuple[Box, ...]
    """Packets whose fragment bits the match tells apart more finely than the classes do."""
    concrete: tuple[tuple[str, int, int], ...]
    """``(storage field, value, mask)`` the walk's state must satisfy."""
    unreadable: str = ""
    """Why the match cannot be evaluated at all (a term nodetrace does not model)."""


def compile_match(flow: Flow, family: Family, universe: Box) -> FlowMatch | None:
    """``None`` when the flow never matches a packet of ``family``."""
    box = list(universe)
    layer4: dict[int, Intervals] = {}
    concrete: list[tuple[str, int, int]] = []
    frag: tuple[int, int] | None = None
    ethertype = ETH_TYPE_IPV4 if family is Family.IPV4 else ETH_TYPE_IPV6
    dims = _DIM_FIELDS[family] | _SHARED_DIMS
    for m in flow.matches:
        if m.field == "dl_type":
            if ethertype & m.mask != m.value:
                return None
        elif m.field in dims:
            dim, width = dims[m.field]
            ivs = masked_intervals(m.value, m.mask, width)
            if ivs is None:
                return FlowMatch((), (), (), f"{m.field} mask {m.mask:#x} is too fragmented")
            if dim in (Dim.L4A, Dim.L4B):
                layer4[dim] = ivs
            else:
                box[dim] = iv_and(box[dim], ivs)
                if not box[dim]:
                    return None
        elif m.field in ("nw_src", "nw_dst", "ipv6_src", "ipv6_dst"):
            if m.value != 0:  # the other family's addresses read as zero
                return None
        elif m.field == "nw_frag":
            frag = (m.value, m.mask)
        else:
            concrete.append((m.field, m.value, m.mask))
    # A later fragment carries no layer-4 header: OVS reads its ports (ICMP type, code) as 0.
    whole = tuple(box)
    for dim, ivs in layer4.items():
        whole = with_dim(whole, dim, iv_and(whole[dim], ivs))
    later_fits = all(iv_and(ivs, ((0, 0),)) for ivs in layer4.values())
    per_frag = {0: whole if all(whole[d] for d in layer4) else None}
    per_frag[1] = tuple(box) if later_fits else None
    sure: list[Box] = []
    maybe: list[Box] = []
    for value, how in _frag_split(frag).items():
        b = per_frag[value]
        if b is not None and how is not None:
            (sure if how else maybe).append(with_dim(b, Dim.FRAG, ((value, value),)))
    if not sure and not maybe:
        return None
    unreadable = f"match term {flow.unsupported[0]!r} is not modelled" if flow.unsupported else ""
    return FlowMatch(tuple(sure), tuple(maybe), tuple(concrete), unreadable)


def _frag_split(frag: tuple[int, int] | None) -> dict[int, bool | None]:
    """For each FRAG value, whether the ``nw_frag`` match takes it: True (wholly), False (in
    part: it tells first fragments from unfragmented packets) or None (not at all)."""
    out: dict[int, bool | None] = {}
    for dim_value, patterns in enumerate(_FRAG_VALUES):
        if frag is None:
            out[dim_value] = True
            continue
        value, mask = frag
        hits = sum((p & mask) == value for p in patterns)
        out[dim_value] = True if hits == len(patterns) else (False if hits else None)
    return out
