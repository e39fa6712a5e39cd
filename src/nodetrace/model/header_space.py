"""Sets of packets as unions of disjoint boxes: the algebra the exposure audit computes with.

A box (:data:`nodetrace.model.exposure.Box`) holds one integer set per dimension, each kept as
sorted, disjoint, non-adjacent inclusive intervals. Intersection of two boxes is a box;
subtraction splits the first box into at most one box per dimension, pairwise disjoint, so a
:class:`HeaderSet` built only by these operations never counts a packet twice. Every answer of
the audit is exact because nothing here samples or rounds: a rule's match is turned into boxes
(``exposure_match.py``) and carved out of the packets still walking the chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from nodetrace.model.exposure import Box, Interval, Intervals

EMPTY: Intervals = ()


def iv_and(a: Intervals, b: Intervals) -> Intervals:
    """Intersection of two interval sets."""
    if len(a) == 1 and len(b) == 1:  # the common case, kept cheap
        (alo, ahi), (blo, bhi) = a[0], b[0]
        if alo <= blo and bhi <= ahi:
            return b
        if blo <= alo and ahi <= bhi:
            return a
        lo = alo if alo > blo else blo
        hi = ahi if ahi < bhi else bhi
        return ((lo, hi),) if lo <= hi else ()
    out: list[Interval] = []
    i = j = 0
    na, nb = len(a), len(b)
    while i < na and j < nb:
        alo, ahi = a[i]
        blo, bhi = b[j]
        lo = alo if alo > blo else blo
        hi = ahi if ahi < bhi else bhi
        if lo <= hi:
            out.append((lo, hi))
        if ahi < bhi:
            i += 1
        else:
            j += 1
    return tuple(out)


def iv_sub(a: Intervals, b: Intervals) -> Intervals:
    """``a`` without ``b``."""
    if len(b) == 1 and len(a) == 1:
        (alo, ahi), (blo, bhi) = a[0], b[0]
        if bhi < alo or blo > ahi:
            return a
        left = ((alo, blo - 1),) if blo > alo else ()
        right = ((bhi + 1, ahi),) if bhi < ahi else ()
        return left + right
    out: list[Interval] = []
    j = 0
    for lo, hi in a:
        cur = lo
        while j < len(b) and b[j][1] < cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0] - 1))
            cur = max(cur, b[k][1] + 1)
            if cur > hi:
                break
            k += 1
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def iv_or(a: Intervals, b: Intervals) -> Intervals:
    """Union, normalised (adjacent ranges joined)."""
    return iv_normal((*a, *b))


def iv_normal(items: Iterable[Interval]) -> Intervals:
    out: list[Interval] = []
    for lo, hi in sorted(items):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def iv_size(a: Intervals) -> int:
    return sum(hi - lo + 1 for lo, hi in a)


def box_and(a: Box, b: Box) -> Box | None:
    """The packets in both boxes, or ``None`` when there are none."""
    out = []
    for x, y in zip(a, b, strict=True):
        if x is y or x == y:
            out.append(x)
            continue
        z = iv_and(x, y)
        if not z:
            return None
        out.append(z)
    return tuple(out)


def box_sub(a: Box, b: Box) -> list[Box]:
    """``a`` without ``b``, as pairwise disjoint boxes (at most one per dimension)."""
    inter = box_and(a, b)
    if inter is None:
        return [a]
    out: list[Box] = []
    for d in range(len(a)):
        rest = iv_sub(a[d], b[d])
        if rest:
            out.append((*inter[:d], rest, *a[d + 1 :]))
    return out


def with_dim(box: Box, dim: int, values: Intervals) -> Box:
    return (*box[:dim], values, *box[dim + 1 :])


class HeaderSet:
    """A union of pairwise disjoint boxes (all of the same number of dimensions)."""

    __slots__ = ("boxes",)

    def __init__(self, boxes: Iterable[Box] = ()) -> None:
        self.boxes: list[Box] = list(boxes)

    def __bool__(self) -> bool:
        return bool(self.boxes)

    def __repr__(self) -> str:
        return f"HeaderSet({self.boxes!r})"

    def intersect(self, region: Sequence[Box]) -> HeaderSet:
        """The packets of this set in ``region`` (a union of disjoint boxes)."""
        out = []
        for a in self.boxes:
            for b in region:
                c = box_and(a, b)
                if c is not None:
                    out.append(c)
        return HeaderSet(out)

    def subtract(self, region: Sequence[Box]) -> HeaderSet:
        boxes = self.boxes
        for b in region:
            nxt: list[Box] = []
            for a in boxes:
                nxt.extend(box_sub(a, b))
            boxes = nxt
            if not boxes:
                break
        return HeaderSet(boxes)

    def split(self, region: Sequence[Box]) -> tuple[HeaderSet, HeaderSet]:
        """(inside ``region``, outside it)."""
        if not region:
            return HeaderSet(), self
        return self.intersect(region), self.subtract(region)

    def restrict(self, dim: int, values: Intervals) -> HeaderSet:
        out = []
        for a in self.boxes:
            v = iv_and(a[dim], values)
            if v:
                out.append(with_dim(a, dim, v))
        return HeaderSet(out)

    def split_dim(self, dim: int, values: Intervals) -> tuple[HeaderSet, HeaderSet]:
        """(the packets whose ``dim`` is in ``values``, the others)."""
        inside, outside = [], []
        for a in self.boxes:
            v = iv_and(a[dim], values)
            if v:
                inside.append(with_dim(a, dim, v))
            w = iv_sub(a[dim], values)
            if w:
                outside.append(with_dim(a, dim, w))
        return HeaderSet(inside), HeaderSet(outside)

    def contains(self, point: Sequence[int]) -> bool:
        return any(box_contains(b, point) for b in self.boxes)


def box_contains(box: Box, point: Sequence[int]) -> bool:
    return all(any(lo <= v <= hi for lo, hi in ivs) for ivs, v in zip(box, point, strict=True))


def disjoint_union(regions: Iterable[Sequence[Box]]) -> list[Box]:
    """The union of several regions, as disjoint boxes."""
    out: list[Box] = []
    for region in regions:
        for b in region:
            pieces = [b]
            for a in out:
                pieces = [p for q in pieces for p in box_sub(q, a)]
                if not pieces:
                    break
            out.extend(pieces)
    return out


def coalesce(boxes: Iterable[Box]) -> list[Box]:
    """The same packets in fewer boxes: boxes equal in every dimension but one are merged,
    until none are. Disjointness is kept (two disjoint boxes equal elsewhere merge into
    exactly their union)."""
    current = list(dict.fromkeys(boxes))
    changed = True
    while changed and len(current) > 1:
        changed = False
        for d in range(len(current[0])):
            groups: dict[Box, Intervals] = {}
            for b in current:
                key = (*b[:d], (), *b[d + 1 :])
                prev = groups.get(key)
                groups[key] = b[d] if prev is None else iv_or(prev, b[d])
            if len(groups) < len(current):
                changed = True
                current = [with_dim(k, d, v) for k, v in groups.items()]
    return current


def prefix_interval(address: int, prefixlen: int, width: int) -> Interval:
    """The addresses of ``address/prefixlen`` as one interval."""
    host = (1 << (width - prefixlen)) - 1
    lo = address & ~host & ((1 << width) - 1)
    return (lo, lo | host)


def interval_prefixes(lo: int, hi: int, width: int) -> list[tuple[int, int]]:
    """The fewest ``(address, prefixlen)`` networks covering exactly ``[lo, hi]``."""
    out: list[tuple[int, int]] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << width
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, width - size.bit_length() + 1))
        lo += size
    return out
