"""The lookup of one OpenFlow table, done the way Open vSwitch's classifier does it.

Flows are grouped in *subtables* by the set of fields and masks they match (OVS does the same).
A lookup visits subtables from the highest maximum priority down and keeps the first match of
each priority, so when flows of equal priority both match, OVS's choice is the one whose subtable
holds the higher-priority flows overall; only if that ties too does the choice depend on the
order flows were added, which a dump cannot show -- the lookup then reports the tie.

Conjunctive matches (``conjunction(id,k/n)`` + ``conj_id=id``) follow OVS's "soft match" loop:
a conjunction succeeds when every clause matched at one priority, then the flow with
``conj_id=id`` is looked up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nodetrace.model.openflow import Action, Conjunction, Flow


@dataclass(slots=True)
class Rule:
    """A flow prepared for lookup."""

    flow: Flow
    priority: int
    key: tuple[int, ...]
    fields: tuple[tuple[str, int], ...]
    conj: tuple[Conjunction, ...] = ()
    uncertain: str = ""
    """Why nodetrace cannot decide whether this flow matches (unmodelled match terms)."""
    actions: tuple[Action, ...] = ()
    order: int = 0
    subtable: int = -1
    match_text: str = ""
    """The match as ``ofproto/trace`` prints it (port numbers, not names)."""

    @property
    def min_clauses(self) -> int:
        return min(c.n_clauses for c in self.conj) if self.conj else 0


@dataclass(slots=True)
class Subtable:
    fields: tuple[str, ...]
    masks: tuple[int, ...]
    order: int
    max_priority: int = -1
    buckets: dict[tuple[int, ...], list[Rule]] = field(default_factory=dict)


@dataclass(slots=True)
class LookupResult:
    rule: Rule | None
    ties: tuple[Rule, ...] = ()
    """Other flows of the same priority that matched, when OVS's pick among them is unknown."""
    uncertain: Rule | None = None
    """A flow that may outrank ``rule`` but matches on terms nodetrace cannot evaluate."""


class Table:
    """One OpenFlow table, compiled for lookups."""

    def __init__(self, table_id: int, rules: Iterable[Rule]) -> None:
        self.table_id = table_id
        self.subtables: list[Subtable] = []
        self.uncertain: list[Rule] = []
        by_mask: dict[tuple[tuple[str, int], ...], Subtable] = {}
        for rule in rules:
            if rule.uncertain:
                self.uncertain.append(rule)
                continue
            sig = rule.fields
            st = by_mask.get(sig)
            if st is None:
                names = tuple(f for f, _ in sig)
                st = Subtable(names, tuple(m for _, m in sig), len(by_mask))
                by_mask[sig] = st
            bucket = st.buckets.setdefault(rule.key, [])
            bucket.append(rule)
            rule.subtable = st.order
            st.max_priority = max(st.max_priority, rule.priority)
        for st in by_mask.values():
            for bucket in st.buckets.values():
                # Equal priority within one bucket means two identical flows: keep dump order.
                bucket.sort(key=lambda r: (-r.priority, r.order))
        self.subtables = sorted(by_mask.values(), key=lambda s: (-s.max_priority, s.order))

    def __len__(self) -> int:
        return sum(len(b) for st in self.subtables for b in st.buckets.values()) + len(
            self.uncertain
        )

    def lookup(self, state: Mapping[str, int]) -> LookupResult:
        rule = self._lookup(state, True)
        ties = self._ties(state, rule) if rule is not None else ()
        uncertain = None
        for u in self.uncertain:
            if rule is not None and u.priority < rule.priority:
                continue
            matches = all(
                (state.get(f, 0) & m) == v for (f, m), v in zip(u.fields, u.key, strict=True)
            )
            if matches and (uncertain is None or u.priority > uncertain.priority):
                uncertain = u
        return LookupResult(rule, ties, uncertain)

    def _lookup(self, state: Mapping[str, int], allow_conj: bool) -> Rule | None:
        hard: Rule | None = None
        hard_pri = -1
        soft: list[list[object]] = []  # [bucket, index]
        get = state.get
        for st in self.subtables:
            if st.max_priority <= hard_pri:
                break
            key = tuple([get(f, 0) & m for f, m in zip(st.fields, st.masks, strict=True)])
            bucket = st.buckets.get(key)
            if bucket is None:
                continue
            match = bucket[0]
            if match.priority <= hard_pri:
                continue
            if not match.conj:
                hard, hard_pri = match, match.priority
            elif allow_conj:
                soft.append([bucket, 0])
        if not soft:
            return hard
        return self._soft(state, soft, hard, hard_pri)

    def _soft(
        self,
        state: Mapping[str, int],
        soft: list[list[object]],
        hard: Rule | None,
        hard_pri: int,
    ) -> Rule | None:
        while True:
            live: list[list[object]] = []
            for entry in soft:
                bucket, index = entry
                assert isinstance(bucket, list) and isinstance(index, int)
                if index >= 0 and bucket[index].priority > hard_pri:
                    live.append(entry)
            soft = live
            if not soft:
                return hard
            soft_pri = max(_current(e).priority for e in soft)
            n_soft_pri = sum(1 for e in soft if _current(e).priority == soft_pri)
            matches: dict[int, int] = {}
            for entry in soft:
                rule = _current(entry)
                if rule.priority != soft_pri:
                    continue
                conj_id = _conjunctive_match(rule, n_soft_pri, matches)
                if conj_id is not None:
                    probe = dict(state)
                    probe["conj_id"] = conj_id
                    found = self._lookup(probe, False)
                    if found is not None:
                        return found
            for entry in soft:
                bucket, index = entry
                assert isinstance(bucket, list) and isinstance(index, int)
                if bucket[index].priority != soft_pri:
                    continue
                if index + 1 < len(bucket):
                    nxt = bucket[index + 1]
                    if nxt.conj:
                        entry[1] = index + 1
                    else:
                        if nxt.priority > hard_pri:
                            hard, hard_pri = nxt, nxt.priority
                        entry[1] = -1
                else:
                    entry[1] = -1

    def relevant(
        self, state: Mapping[str, int], unknown: Iterable[str], chosen: Rule | None
    ) -> set[str]:
        """The ``unknown`` fields (taken as 0) on which this lookup's result depends.

        Those the chosen flow matches on, and those that alone kept a flow of higher priority
        from matching (with another value it might have been chosen).  Only called when the
        user left header fields out, so a plain scan is fine.
        """
        unknown = set(unknown)
        out: set[str] = set()
        if chosen is not None:
            out.update(f for f, m in chosen.fields if m and f in unknown)
        floor = chosen.priority if chosen is not None else -1
        for st in self.subtables:
            if st.max_priority <= floor:
                break
            blocked = [i for i, f in enumerate(st.fields) if f in unknown and st.masks[i]]
            if not blocked:
                continue
            known = [i for i in range(len(st.fields)) if i not in blocked]
            here = [state.get(st.fields[i], 0) & st.masks[i] for i in known]
            for key, bucket in st.buckets.items():
                if bucket[0].priority <= floor or any(
                    key[i] != v for i, v in zip(known, here, strict=True)
                ):
                    continue
                out.update(
                    st.fields[i]
                    for i in blocked
                    if key[i] != state.get(st.fields[i], 0) & st.masks[i]
                )
        return out

    def _ties(self, state: Mapping[str, int], chosen: Rule) -> tuple[Rule, ...]:
        """Flows of ``chosen``'s priority that also match and whose subtable ties with its own.

        OVS takes the first subtable in its priority-ordered list; subtables of equal maximum
        priority keep their creation order, which a dump does not reveal.
        """
        if chosen.conj:
            return ()
        chosen_st = next((st for st in self.subtables if st.order == chosen.subtable), None)
        if chosen_st is None:
            return ()
        out = []
        for st in self.subtables:
            if st is chosen_st or st.max_priority != chosen_st.max_priority:
                continue
            key = tuple(state.get(f, 0) & m for f, m in zip(st.fields, st.masks, strict=True))
            bucket = st.buckets.get(key)
            if bucket and bucket[0].priority == chosen.priority and not bucket[0].conj:
                out.append(bucket[0])
        return tuple(out)


def _current(entry: list[object]) -> Rule:
    bucket, index = entry
    assert isinstance(bucket, list) and isinstance(index, int)
    rule = bucket[index]
    assert isinstance(rule, Rule)
    return rule


def _conjunctive_match(rule: Rule, max_clauses: int, matches: dict[int, int]) -> int | None:
    """OVS's find_conjunctive_match(): add this flow's clauses; return an id whose clauses are
    all present, if any."""
    if max_clauses < rule.min_clauses:
        return None
    for c in rule.conj:
        if c.n_clauses > max_clauses:
            continue
        full = (1 << c.n_clauses) - 1
        bits = matches.get(c.id, 0) | (1 << (c.clause - 1))
        matches[c.id] = bits
        if bits & full == full:
            return c.id
    return None
