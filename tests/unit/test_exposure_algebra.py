"""The header-space algebra against plain Python sets, exhaustively on small universes."""

from __future__ import annotations

import itertools
import random

from nodetrace.model.header_space import (
    HeaderSet,
    box_sub,
    coalesce,
    disjoint_union,
    iv_and,
    iv_normal,
    iv_or,
    iv_sub,
)


def _set(ivs: tuple[tuple[int, int], ...]) -> set[int]:
    return {v for lo, hi in ivs for v in range(lo, hi + 1)}


def _random_ivs(rng: random.Random, top: int = 15) -> tuple[tuple[int, int], ...]:
    values = {rng.randint(0, top) for _ in range(rng.randint(0, 8))}
    return iv_normal((v, v) for v in values)


def test_interval_operations_equal_set_operations() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        a, b = _random_ivs(rng), _random_ivs(rng)
        assert _set(iv_and(a, b)) == _set(a) & _set(b)
        assert _set(iv_sub(a, b)) == _set(a) - _set(b)
        assert _set(iv_or(a, b)) == _set(a) | _set(b)
        # normal form: sorted, disjoint, not adjacent
        for x, y in itertools.pairwise(iv_or(a, b)):
            assert x[1] + 1 < y[0]


def _points(boxes: list[tuple[tuple[tuple[int, int], ...], ...]]) -> list[tuple[int, ...]]:
    out = []
    for box in boxes:
        out += list(itertools.product(*(sorted(_set(d)) for d in box)))
    return out


def test_box_subtraction_is_exact_and_disjoint() -> None:
    rng = random.Random(5)
    for _ in range(300):
        a = tuple(_random_ivs(rng, 7) or ((0, 0),) for _ in range(3))
        b = tuple(_random_ivs(rng, 7) or ((0, 0),) for _ in range(3))
        pieces = box_sub(a, b)
        got = _points(pieces)
        assert len(got) == len(set(got)), "pieces overlap"
        assert set(got) == set(_points([a])) - set(_points([b]))


def test_sets_split_union_and_coalesce_keep_every_point_once() -> None:
    rng = random.Random(9)
    for _ in range(100):
        region = [tuple(_random_ivs(rng, 5) or ((1, 1),) for _ in range(3)) for _ in range(3)]
        full = HeaderSet([(((0, 5),), ((0, 5),), ((0, 5),))])
        inside, outside = full.split(disjoint_union([[b] for b in region]))
        pin, pout = _points(inside.boxes), _points(outside.boxes)
        assert len(pin) == len(set(pin)) and len(pout) == len(set(pout))
        assert set(pin) | set(pout) == set(_points(full.boxes))
        assert set(pin) == set(_points(region))
        merged = coalesce(outside.boxes)
        assert sorted(_points(merged)) == sorted(pout)
