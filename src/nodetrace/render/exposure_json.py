"""The exposure report as JSON (``nodetrace audit --exposure --format json``): per port and
direction, each class with its fate, its dimensions as ranges, its phrase and the rules that
decided it. docs/json.md documents the keys (kind ``exposure``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nodetrace.model.exposure import (
    BASE_DIMS,
    CT_STATES,
    Box,
    Dim,
    HeaderClass,
    IntendedComparison,
    IntendedGap,
    PortExposure,
    RuleRef,
)
from nodetrace.model.packet import Family
from nodetrace.render.exposure_text import _addr, _atoms_for, describe
from nodetrace.render.json import document


def _ranges(family: Family, box: Box, atoms: Sequence[str]) -> dict[str, Any]:
    def nums(dim: Dim) -> list[list[int]]:
        return [[lo, hi] for lo, hi in box[dim]]

    return {
        "src": [[_addr(family, lo), _addr(family, hi)] for lo, hi in box[Dim.SRC]],
        "dst": [[_addr(family, lo), _addr(family, hi)] for lo, hi in box[Dim.DST]],
        "protocols": nums(Dim.PROTO),
        "l4_first": nums(Dim.L4A),
        "l4_second": nums(Dim.L4B),
        "later_fragment": nums(Dim.FRAG),
        "ct_states": [CT_STATES[s] for lo, hi in box[Dim.CT] for s in range(lo, hi + 1)],
        "mac_src": [[f"{lo:012x}", f"{hi:012x}"] for lo, hi in box[Dim.MAC]],
        "atoms": {
            label: [[lo, hi] for lo, hi in box[BASE_DIMS + i]] for i, label in enumerate(atoms)
        },
    }


def _rule(r: RuleRef) -> dict[str, Any]:
    return {
        "table": r.table,
        "chain": r.chain,
        "position": r.position,
        "text": r.text,
        "source": r.source,
        "kind": r.kind,
    }


def _class(c: HeaderClass, atoms: Sequence[str]) -> dict[str, Any]:
    mine = _atoms_for(atoms, c.family)
    return {
        "family": c.family.value,
        "fate": c.fate.value,
        "text": describe(c.family, c.box, mine),
        **_ranges(c.family, c.box, mine),
        "rules": [_rule(r) for r in c.rules],
        "reason": c.reason,
    }


def _gap(g: IntendedGap, atoms: Sequence[str]) -> dict[str, Any]:
    mine = _atoms_for(atoms, g.family)
    return {
        "kind": g.kind,
        "direction": g.direction.value,
        "family": g.family.value,
        "text": describe(g.family, g.box, mine),
        **_ranges(g.family, g.box, mine),
        "rules": [_rule(r) for r in g.rules],
    }


def exposure_document(
    results: Sequence[tuple[PortExposure, IntendedComparison | None]], problems: Sequence[str] = ()
) -> dict[str, Any]:
    ports = []
    for exp, cmp in results:
        entry: dict[str, Any] = {
            "port_id": exp.port_id,
            "tap": exp.tap,
            "firewall": exp.firewall,
            "atoms": list(exp.atoms),
            "notes": list(exp.notes),
            "directions": [
                {
                    "direction": d.direction.value,
                    "path": d.path,
                    "assumptions": list(d.assumptions),
                    "classes": [_class(c, exp.atoms) for c in d.classes],
                }
                for d in exp.directions
            ],
        }
        if cmp is not None:
            entry["intended"] = {
                "gaps": [_gap(g, exp.atoms) for g in cmp.gaps],
                "notes": list(cmp.notes),
            }
        ports.append(entry)
    return document("audit", kind="exposure", ports=ports, input_problems=list(problems))
