"""Group nf_tables trace items (xtables-monitor, nft monitor) into packets by their trace id.

The kernel gives every traced packet an id and keeps it across hooks. An id can still come
back for another packet later (it is derived from the skb), so an event that goes back in the
hook/table order, or that comes more than ``window`` items after its pass began, starts a new
pass, exactly as for legacy logs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import assert_never

from nodetrace.parsers.trace_nft_events import NftEvent, NftItem, NftPacket
from nodetrace.tracelog.group_legacy import DEFAULT_WINDOW
from nodetrace.tracelog.order import hook_of_chain, rank


@dataclass(eq=False, slots=True)
class NftPass:
    """One packet's events in order, with the packet line that applies to each event.

    ``packet_of[i]`` indexes ``packets`` for ``events[i]`` (``-1``: no packet line seen).
    ``hooks[i]`` is the hook of ``events[i]`` (a user chain inherits its base chain's hook).
    """

    trace_id: str
    start: int
    events: list[NftEvent] = field(default_factory=list)
    hooks: list[str | None] = field(default_factory=list)
    packets: list[NftPacket] = field(default_factory=list)
    packet_of: list[int] = field(default_factory=list)
    occurrence: int = 1
    packet_first: bool | None = None
    hook: str | None = None
    rank: int = -1
    closed: bool = False


@dataclass
class NftGrouper:
    window: int = DEFAULT_WINDOW
    _open: dict[str, NftPass] = field(default_factory=dict)
    _queue: deque[NftPass] = field(default_factory=deque)
    _occurrences: dict[str, int] = field(default_factory=dict)
    """How often each packet identity (headers without per-hook fields) was seen."""
    _index: int = 0

    def passes(self, items: Iterable[NftItem]) -> Iterator[NftPass]:
        for item in items:
            self._index += 1
            match item:
                case NftPacket():
                    self._packet(item)
                case NftEvent():
                    self._event(item)
                case _:
                    assert_never(item)
            if self._index % 256 == 0:
                self._evict(self._index - self.window)
                while self._queue and self._queue[0].closed:
                    yield self._queue.popleft()
        for p in list(self._open.values()):
            self._close(p)
        while self._queue:
            yield self._queue.popleft()

    def _pass_for(self, trace_id: str, *, packet_first: bool) -> NftPass:
        p = self._open.get(trace_id)
        if p is None:
            p = NftPass(trace_id, self._index, packet_first=packet_first)
            self._open[trace_id] = p
            self._queue.append(p)
        return p

    def _packet(self, item: NftPacket) -> None:
        p = self._open.get(item.trace_id)
        if p is not None and item.chain is not None:
            hook = hook_of_chain(item.chain)
            if hook is not None and item.table is not None:
                r = rank(hook.value, item.table)
                if r < p.rank or (r // 10 == p.rank // 10 and hook.value != p.hook and p.hook):
                    self._close(p)
                    p = None
        if p is None:
            p = self._pass_for(item.trace_id, packet_first=True)
        p.packets.append(item)
        index = len(p.packets) - 1
        # Old xtables-monitor printed the packet after the first event of its base chain.
        for i in range(len(p.packet_of) - 1, -1, -1):
            if p.packet_of[i] != -1:
                break
            p.packet_of[i] = index

    def _event(self, item: NftEvent) -> None:
        p = self._open.get(item.trace_id)
        hook = hook_of_chain(item.chain)
        new_traversal = False
        if hook is not None:
            r = rank(hook.value, item.table)
            if p is not None and (
                r < p.rank or (r // 10 == p.rank // 10 and hook.value != p.hook and p.hook)
            ):
                self._close(p)
                p = None
            if p is None or r != p.rank:
                new_traversal = True
        if p is None:
            p = self._pass_for(item.trace_id, packet_first=False)
        if hook is not None:
            p.hook, p.rank = hook.value, rank(hook.value, item.table)
        p.events.append(item)
        p.hooks.append(p.hook)
        waiting = new_traversal and not p.packet_first
        p.packet_of.append(-1 if waiting or not p.packets else len(p.packets) - 1)

    def _close(self, p: NftPass) -> None:
        if not p.closed and p.packets:
            # A trace id comes back for other packets (it is derived from the skb's address):
            # only the same headers make a packet seen again.
            identity = _identity(p.packets[0])
            seen = self._occurrences.get(identity, 0) + 1
            self._occurrences[identity] = seen
            if len(self._occurrences) > 4 * self.window:
                self._occurrences.pop(next(iter(self._occurrences)))
            p.occurrence = seen
        p.closed = True
        if self._open.get(p.trace_id) is p:
            del self._open[p.trace_id]

    def _evict(self, before: int) -> None:
        for p in [p for p in self._open.values() if p.start < before]:
            self._close(p)


_PER_HOOK_KEYS = frozenset({"IN", "OUT", "MACSRC", "MACDST", "MACPROTO", "TTL", "HOPLIMIT", "MARK"})
"""Fields that change from hook to hook of one packet (or between a packet's copies)."""


def _identity(packet: NftPacket) -> str:
    return " ".join(f"{k}={v}" for k, v in packet.dump.fields if k not in _PER_HOOK_KEYS)
