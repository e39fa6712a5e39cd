"""Group legacy TRACE records into packets: one :class:`LegacyPass` per traversal of the stack.

Legacy TRACE lines carry no packet id. A record joins an open pass when it shows the same
packet (the dump from ``SRC=`` on, which a bridged packet keeps unchanged across hooks) and
comes *later* in the hook/table order (:mod:`nodetrace.tracelog.order`) than the pass's last
record, not more than ``gap`` seconds after it. A record that would go back in that order starts
a new pass of the same packet: a retransmission, a broadcast copy, or a second bridge pass
after a veth. Routed packets lose one TTL between hooks and DNAT rewrites the destination in
nat PREROUTING; conntrack rewrites the destination of a NATed connection's later packets
(replies to a masqueraded client, a port-forward's packets) at the same place without any nat
line. A record that matches no open pass exactly is tried against those changes before it
starts a pass of its own. The algorithm and its limits are described in docs/formats.md.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from nodetrace.model.packet import Family
from nodetrace.parsers.trace_kernel_log import (
    LegacyRecord,
    dump_family,
    envelope_time,
    parse_devs,
    parse_prefix,
)
from nodetrace.tracelog.order import HOOK_RANK, hook_of_chain, rank

DEFAULT_GAP = 1.0
"""Seconds between two records of one pass beyond which they are taken as two packets."""
DEFAULT_WINDOW = 4000
"""Records after which a pass that got no new record is closed (this bounds memory)."""

_VOLATILE_RE = re.compile(r" MARK=0x[0-9a-fA-F]+| UID=\d+ GID=\d+")
_LOOSE_RE = re.compile(
    r"SRC=(\S+) DST=\S+ LEN=(\d+) .*?(?:ID=(\d+)|FLOWLBL=(\d+))(?:.*? PROTO=(\S+)(?: SPT=(\d+))?)?"
)
_HEX_ID_RE = re.compile(r"\s*([0-9a-f]{8,})\s*$")
# What conntrack's NAT may rewrite between two hooks of one packet (destination address and
# port, an ICMP echo's id), plus what changes anyway (TTL, marks, the socket's owner) and an
# ICMP error's quoted packet (NAT rewrites it too).
_NAT_VOLATILE_RE = re.compile(
    r" DST=\S+| DPT=\d+| TTL=\d+| HOPLIMIT=\d+| MARK=0x[0-9a-fA-F]+| UID=\d+ GID=\d+| \[SRC=.*\]"
    r"|(?<=CODE=\d) ID=\d+|(?<=CODE=\d\d) ID=\d+"
)
_DST_RE = re.compile(r" DST=(\S+)(?:[^\[]*? DPT=(\d+))?")

LAST_DNAT_RANK = 2
"""The rank of nat in PREROUTING and OUTPUT (:func:`~nodetrace.tracelog.order.rank`): the
point where conntrack rewrites a NATed packet's destination."""
_DNAT_HOOKS = frozenset({"PREROUTING", "OUTPUT"})
NAT_LOOKBACK = 256
"""Passes (the latest started) searched for the one a de-NATed record continues."""


class PrefixInfo:
    """What the grouper needs from a ``table:chain:kind:number`` prefix, computed once per prefix."""

    __slots__ = ("builtin_hook", "chain", "kind", "number", "prefix", "rank", "table")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        parsed = parse_prefix(prefix)
        assert parsed is not None  # the reader only passes well-formed prefixes
        self.table, self.chain, self.kind, self.number = parsed
        hook = hook_of_chain(self.chain)
        self.builtin_hook: str | None = hook.value if hook is not None else None
        self.rank = rank(self.builtin_hook, self.table) if self.builtin_hook else -1

    @staticmethod
    def of(prefix: str) -> PrefixInfo:
        info = PREFIX_INFOS.get(prefix)
        if info is None:
            if len(PREFIX_INFOS) > 100_000:  # a ruleset has far fewer; this only bounds memory
                PREFIX_INFOS.clear()
            info = PREFIX_INFOS[prefix] = PrefixInfo(prefix)
        return info


PREFIX_INFOS: dict[str, PrefixInfo] = {}


def hooks_of(infos: list[PrefixInfo]) -> list[str | None]:
    """The hook of each record: a user chain runs in its caller's built-in chain's hook
    (``None`` before the pass showed any built-in chain)."""
    out: list[str | None] = []
    hook: str | None = None
    for info in infos:
        hook = info.builtin_hook or hook
        out.append(hook)
    return out


class PassShape(NamedTuple):
    """What a pass's outcome depends on: its prefixes, device fields and family. Passes of one
    shape conclude alike, so the compiled summary counts shapes and concludes each once."""

    infos: list[PrefixInfo]
    devs: list[str]
    family: Family | None


@dataclass(eq=False, slots=True)
class LegacyPass:
    """One traversal of the stack by one packet, as the log shows it, in record order.

    ``occurrence`` counts the passes of the same packet identity (1 = first time seen);
    ``same_ports`` tells, for a later pass, whether it entered through the same bridge ports
    as the first one (a retransmission or copy) or not (a second bridge pass).
    """

    key: str | None
    start: int
    first: LegacyRecord
    records: list[LegacyRecord] = field(default_factory=list)
    """Every record, when the grouper keeps them (the default); empty when it does not."""
    infos: list[PrefixInfo] = field(default_factory=list)
    """The parsed prefix of each record (shared objects, one per distinct prefix)."""
    devs: list[str] = field(default_factory=list)
    """The device fields of each record (``IN=… OUT=… PHYSIN=…``), which the outcome reads."""
    occurrence: int = 1
    same_ports: bool | None = None
    # grouping state
    hook: str | None = None
    rank: int = -1
    table: str = ""
    last_builtin: int = 0
    time: float | None = None
    closed: bool = False
    norm_key: str | None = None
    loose_key: tuple[str | None, ...] | None = None
    nat_free: str | None = None
    """The dump without what conntrack's NAT rewrites (computed when first needed)."""

    @property
    def family(self) -> Family | None:
        """The packet's family, from its first record's source address."""
        return dump_family(self.first.ident)

    def hooks(self) -> list[str | None]:
        return hooks_of(self.infos)

    @property
    def starts_midway(self) -> bool:
        """The first record is in a user chain: the lines before it are missing."""
        return bool(self.infos) and self.infos[0].builtin_hook is None


def _single(records: Iterable[LegacyRecord]) -> Iterator[list[LegacyRecord]]:
    """Records one by one as batches of up to 256 (for callers without the reader's batches)."""
    batch: list[LegacyRecord] = []
    for rec in records:
        batch.append(rec)
        if len(batch) >= 256:
            yield batch
            batch = []
    if batch:
        yield batch


def _loose_key(ident: str) -> tuple[str | None, ...] | None:
    m = _LOOSE_RE.match(ident)
    return m.groups() if m is not None else None


def _nat_free(ident: str) -> str:
    return _NAT_VOLATILE_RE.sub("", ident)


def _destination(ident: str) -> str:
    """``address:port`` (or the address) a dump is sent to."""
    m = _DST_RE.search(ident)
    if m is None:
        return ""
    return f"{m.group(1)}:{m.group(2)}" if m.group(2) else m.group(1)


def _ports(devs_text: str) -> tuple[str, str]:
    devs = parse_devs(devs_text)
    return devs.get("IN") or devs.get("OUT", ""), devs.get("PHYSIN", "")


def _norm(ident: str) -> str:
    """The dump without what changes between hooks of one packet (TTL, hop limit, mark)."""
    i = ident.find(" TTL=")
    if i < 0:
        i = ident.find(" HOPLIMIT=")
    if i >= 0:
        j = ident.find(" ", i + 5)
        ident = ident[:i] + (ident[j:] if j >= 0 else "")
    if "MARK=" in ident or "UID=" in ident:
        ident = _VOLATILE_RE.sub("", ident)
    return ident


@dataclass
class LegacyGrouper:
    """Streaming grouper: :meth:`passes` yields passes in the order their first record came.

    With ``keep_records=False`` (the summary) a pass keeps only what its outcome needs
    (prefixes, devices, the first record), not every record: a record's line is then freed
    while it is still in the CPU cache instead of thousands of records later, when its pass
    is closed; on a large log that saves about a tenth of the time.
    """

    gap: float = DEFAULT_GAP
    window: int = DEFAULT_WINDOW
    keep_records: bool = True
    _open: dict[str | None, LegacyPass] = field(default_factory=dict)
    _by_norm: dict[str, LegacyPass] = field(default_factory=dict)
    _by_loose: dict[tuple[str | None, ...], LegacyPass] = field(default_factory=dict)
    _queue: deque[LegacyPass] = field(default_factory=deque)
    _rewrites: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    """Destinations seen rewritten into one another (old, new): conntrack's NAT mappings."""
    _seen: OrderedDict[str, tuple[int, str]] = field(default_factory=OrderedDict)
    """Recent packet identities: how often seen, and the devices of their first record."""
    _index: int = 0
    _evicted: int = 0

    def passes(self, records: Iterable[LegacyRecord]) -> Iterator[LegacyPass]:
        return self.passes_of_batches([records] if isinstance(records, list) else _single(records))

    def passes_of_batches(self, batches: Iterable[Iterable[LegacyRecord]]) -> Iterator[LegacyPass]:
        """Passes from records given in batches (the reader's :meth:`batches`)."""
        for batch in batches:
            yield from self._feed(batch)
        yield from self._flush()

    def _feed(self, batch: Iterable[LegacyRecord]) -> Iterator[LegacyPass]:
        # The loop body runs once per TRACE line: the common cases (a user chain's record, or
        # the next record of the same or a later table) cost a few dict and attribute lookups.
        infos = PREFIX_INFOS
        opened = self._open
        gap = self.gap
        keep = self.keep_records
        index = start = self._index
        for index, rec in enumerate(batch, start + 1):
            info = infos.get(rec[0])
            if info is None:
                info = PrefixInfo.of(rec[0])
            ident = rec[2]
            key = ident if ident is not None else self._tool_key(rec)
            p = opened.get(key)
            norm = None
            if p is None and ident is not None:
                norm = _norm(ident)
                p = self._moved(rec, info, norm)
                if p is None and info.rank > LAST_DNAT_RANK:
                    p = self._denatted(rec, info, ident)
            hook = info.builtin_hook
            # a user chain (no hook of its own) runs in the hook and table of its caller
            if p is not None and hook is not None:
                r = info.rank
                if r == p.rank and hook == p.hook:
                    joins = info.number > p.last_builtin  # numbers only grow in one traversal
                    if joins:
                        p.last_builtin = info.number
                else:
                    # INPUT after FORWARD is another copy of the packet (a broadcast); a long
                    # silence before the next hook means another packet with the same headers
                    joins = r > p.rank and not (
                        (r // 10 == p.rank // 10 and hook != p.hook)
                        or (gap and r // 10 != p.rank // 10 and self._too_late(p, rec))
                    )
                    if joins:
                        p.hook, p.rank, p.last_builtin, p.table = hook, r, info.number, info.table
                        if info.table == "nat":
                            self._entered_nat(p, rec)
                if not joins:
                    self._close(p)
                    p = None
                    if ident is not None and r > LAST_DNAT_RANK:
                        # the same headers seen before, but this packet may be de-NATed
                        p = self._denatted(rec, info, ident)
                        if p is not None and gap and self._too_late(p, rec):
                            self._close(p)
                            p = None
                        if p is not None:
                            p.hook, p.rank, p.last_builtin, p.table = (
                                hook,
                                r,
                                info.number,
                                info.table,
                            )
            if p is None:
                if ident is not None and norm is None:
                    norm = _norm(ident)
                p = self._new(key, rec, info, index, norm)
            p.infos.append(info)
            p.devs.append(rec[1])
            if keep:
                p.records.append(rec)
        self._index = index
        if index - self._evicted >= 1024:
            self._evicted = index
            self._evict(index - self.window)
        queue = self._queue
        while queue and queue[0].closed:
            yield queue.popleft()

    def _flush(self) -> Iterator[LegacyPass]:
        for p in list(self._open.values()):
            self._close(p)
        while self._queue:
            yield self._queue.popleft()

    def _tool_key(self, rec: LegacyRecord) -> str | None:
        """Records without a packet dump: a hex packet id before ``TRACE:`` (as nftrace prints)."""
        m = _HEX_ID_RE.match(rec.envelope)
        return "id:" + m.group(1) if m is not None else None

    def _moved(self, rec: LegacyRecord, info: PrefixInfo, norm: str) -> LegacyPass | None:
        """The open pass this record continues although its dump changed (TTL, mark, DNAT)."""
        ident = rec.ident
        assert ident is not None
        p = self._by_norm.get(norm)
        if p is None and self._by_loose:
            loose = _loose_key(ident)
            # Only nat rewrites addresses between hooks: only passes seen in nat are indexed.
            p = self._by_loose.get(loose) if loose is not None else None
            if p is not None and p.table != "nat":  # the rewrite shows right after nat
                p = None
        if p is None or p.closed:
            return None
        if info.builtin_hook is not None and info.rank <= p.rank:
            return None
        # From now on the pass is found under the record's exact dump.
        self._open.pop(p.key, None)
        p.key, p.nat_free = ident, None
        self._open[ident] = p
        return p

    def _denatted(self, rec: LegacyRecord, info: PrefixInfo, ident: str) -> LegacyPass | None:
        """The open pass this record continues although conntrack rewrote its destination.

        A NATed connection's packets after the first are not traced through the nat table,
        but conntrack still rewrites them where nat would run (between mangle and filter in
        PREROUTING and OUTPUT): the reply to a masqueraded connection enters with the public
        address and reaches FORWARD or INPUT with the private one; a port-forward's later
        packets reach INPUT with the forwarded address and port. Such a record continues a
        pass still before that point whose dump is the same apart from what NAT rewrites
        there (destination address and port, an ICMP echo's id) and the TTL. Of several, the
        one whose old and new destination were already seen together is taken, else the
        most recent; only the :data:`NAT_LOOKBACK` passes that started last are looked at.
        """
        if info.builtin_hook is None:
            return None
        wanted = _nat_free(ident)
        candidates: list[LegacyPass] = []
        for n, p in enumerate(reversed(self._queue)):
            if n >= NAT_LOOKBACK:
                break
            if p.closed or p.rank > LAST_DNAT_RANK or p.hook not in _DNAT_HOOKS:
                continue
            if p.hook == "OUTPUT" and info.builtin_hook not in ("OUTPUT", "POSTROUTING"):
                continue
            if p.hook == "PREROUTING" and info.builtin_hook in ("OUTPUT", "PREROUTING"):
                continue
            if p.nat_free is None:
                p.nat_free = _nat_free(p.key or "")
            if p.nat_free == wanted:
                candidates.append(p)
        if not candidates:
            return None
        new_dst = _destination(ident)
        p = candidates[0]
        for c in candidates:
            if (_destination(c.key or ""), new_dst) in self._rewrites:
                p = c
                break
        self._rewrites[(_destination(p.key or ""), new_dst)] = None
        if len(self._rewrites) > 4096:
            self._rewrites.popitem(last=False)
        self._open.pop(p.key, None)
        p.key, p.nat_free = ident, None
        self._open[ident] = p
        return p

    def _too_late(self, p: LegacyPass, rec: LegacyRecord) -> bool:
        """Compares with the time the pass entered its previous hook (checked only when it enters
        the next one: within one hook the kernel prints its lines microseconds apart)."""
        now = envelope_time(rec.envelope)
        if now is None:
            return False
        before, p.time = p.time, now
        return before is not None and now - before > self.gap

    def _new(
        self, key: str | None, rec: LegacyRecord, info: PrefixInfo, index: int, norm: str | None
    ) -> LegacyPass:
        p = LegacyPass(key, index, rec)
        if info.table == "nat":
            self._entered_nat(p, rec)
        if info.builtin_hook is not None:
            p.hook, p.rank, p.last_builtin = info.builtin_hook, info.rank, info.number
        p.table = info.table
        if self.gap:
            p.time = envelope_time(rec.envelope)
        if norm is not None:
            p.norm_key = norm
            self._by_norm[norm] = p
            seen = self._seen.get(norm)
            if seen is not None:
                p.occurrence = seen[0] + 1
                p.same_ports = _ports(seen[1]) == _ports(rec.devs)
                self._seen.move_to_end(norm)
            self._seen[norm] = (p.occurrence, seen[1] if seen is not None else rec.devs)
            if len(self._seen) > 4 * self.window:
                self._seen.popitem(last=False)
        self._open[key] = p
        self._queue.append(p)
        return p

    def _entered_nat(self, p: LegacyPass, rec: LegacyRecord) -> None:
        """A pass in nat may see its destination rewritten: index it by what DNAT keeps."""
        if p.loose_key is None and rec.ident is not None:
            p.loose_key = _loose_key(rec.ident)
            if p.loose_key is not None:
                self._by_loose[p.loose_key] = p

    def _close(self, p: LegacyPass) -> None:
        p.closed = True
        if self._open.get(p.key) is p:
            del self._open[p.key]
        if p.norm_key is not None and self._by_norm.get(p.norm_key) is p:
            del self._by_norm[p.norm_key]
        if p.loose_key is not None and self._by_loose.get(p.loose_key) is p:
            del self._by_loose[p.loose_key]

    def _evict(self, before: int) -> None:
        """Close passes that started more than ``window`` records ago: one traversal's lines
        come out within microseconds, so its pass is complete long before that."""
        for p in self._queue:  # every open pass is queued, in the order of its start
            if p.start >= before:
                break
            if not p.closed:
                self._close(p)


__all__ = [
    "DEFAULT_GAP",
    "DEFAULT_WINDOW",
    "HOOK_RANK",
    "LegacyGrouper",
    "LegacyPass",
    "PassShape",
    "PrefixInfo",
]
