"""The order in which one packet meets hooks and tables, which is what splits a log into packets.

Within one traversal of the stack a packet goes PREROUTING -> FORWARD|INPUT -> POSTROUTING (or
OUTPUT -> POSTROUTING), and within a hook the tables run by priority (raw -300, mangle -150,
nat DNAT -100, filter 0, security 50, nat SNAT 100). A record that would go *back* in this order
belongs to a new traversal of the same packet: a retransmission, a copy, or a second bridge pass.
"""

from __future__ import annotations

from nodetrace.model.trace import Hook

HOOK_RANK: dict[str, int] = {
    "PREROUTING": 0,
    "OUTPUT": 0,
    "INPUT": 1,
    "FORWARD": 1,
    "POSTROUTING": 2,
}

TABLE_ORDER: dict[str, tuple[str, ...]] = {
    "PREROUTING": ("raw", "mangle", "nat"),
    "INPUT": ("mangle", "filter", "security", "nat"),
    "FORWARD": ("mangle", "filter", "security"),
    "OUTPUT": ("raw", "mangle", "nat", "filter", "security"),
    "POSTROUTING": ("mangle", "nat"),
}
"""Tables per hook in the order the kernel runs them (iptables-legacy priorities)."""

_UNKNOWN_TABLE = 9


def rank(hook: str, table: str) -> int:
    """A number that grows along one traversal: ten per hook step, one per table within it."""
    order = TABLE_ORDER.get(hook, ())
    table_rank = order.index(table) if table in order else _UNKNOWN_TABLE
    return HOOK_RANK.get(hook, 0) * 10 + table_rank


def hook_of_chain(chain: str) -> Hook | None:
    """The hook a built-in chain hangs off (iptables names them after their hooks)."""
    upper = chain.upper()
    if upper in HOOK_RANK and (chain == upper or chain == chain.lower()):
        return Hook(upper)
    return None
