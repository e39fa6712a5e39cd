"""Which chains of a table a packet can reach from each hook, and by which rules.

Several checks need it: a Neutron chain reached from ``INPUT`` filters the host's own traffic,
a ``--physdev-out`` rule in a chain reached only from ``PREROUTING``/``INPUT`` can never match.
Reachability follows every ``-j``/``-g`` regardless of the rule's matches (a jump *can* be
taken); where that is too generous a check says so.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from nodetrace.model.netfilter import Rule, Table


@dataclass(frozen=True, slots=True)
class Reach:
    """A user chain reached from a hook, and the rules that lead there from the hook's chain."""

    chain: str
    path: tuple[Rule, ...]


def reachable(table: Table, start: str) -> dict[str, Reach]:
    """Every chain reachable from built-in chain ``start`` (itself included, with an empty
    path), each with the shortest chain of jump rules leading to it."""
    if table.chain(start) is None:
        return {}
    found: dict[str, Reach] = {start: Reach(start, ())}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        chain = table.chain(name)
        if chain is None:
            continue
        for rule in chain.rules:
            target = rule.jump_chain
            if target is None or target in found:
                continue
            found[target] = Reach(target, (*found[name].path, rule))
            queue.append(target)
    return found


def hooks_of(table: Table) -> dict[str, frozenset[str]]:
    """For each chain of ``table``, the built-in chains (hooks) it can be reached from."""
    out: dict[str, set[str]] = {}
    for name, chain in table.chains.items():
        if not chain.builtin:
            continue
        for reached in reachable(table, name):
            out.setdefault(reached, set()).add(name)
    return {name: frozenset(hooks) for name, hooks in out.items()}
