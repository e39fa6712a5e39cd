"""Symbolic execution of one ruleset along one hook path: every packet at once.

The walk is the netfilter engine's (``engine/netfilter.py``), run on sets of packets instead
of one: tables in the engine's hook order for the ruleset's backend, nat only for a
connection's first packet, chains with jumps, gotos and returns, each target's ``effect``.
At each rule the packets still walking are split into those the rule matches, those it cannot
tell, and the rest; each part goes on as the target says. Per-packet state that targets change
(the skb mark, the conntrack template) travels with each part, and so do the rules that
decided it. What comes out is a list of disjoint classes, each accepted, dropped or unknown.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address

from nodetrace.audit.exposure_match import Constraint, MatchCompiler
from nodetrace.engine.netfilter import HOOK_TABLES, HOOK_TABLES_NFT, NetfilterEngine
from nodetrace.model.exposure import CT_STATES, Box, Dim, Fate
from nodetrace.model.header_space import HeaderSet
from nodetrace.model.netfilter import (
    Backend,
    Chain,
    ConnmarkTarget,
    CtTarget,
    HookDevices,
    JumpTarget,
    MarkTarget,
    NatTarget,
    NotrackTarget,
    PhysdevMatch,
    Rule,
    Ruleset,
    TcpmssTarget,
)
from nodetrace.model.packet import Family
from nodetrace.model.trace import Hook
from nodetrace.model.verdict import Effect

HookPath = Sequence[tuple[Hook, HookDevices]]

_UNTRACKED = CT_STATES.index("UNTRACKED")
_INVALID = CT_STATES.index("INVALID")
_NEW = CT_STATES.index("NEW")
_IMPOSSIBLE = (
    "no such packet reaches the rules: only a NOTRACK rule makes a packet UNTRACKED (and it "
    "always does), and conntrack reassembles fragments before the rules"
)
MAX_DEPTH = 64
"""Jumps deeper than the kernel allows (it refuses loops at load time) end as unknown."""


@dataclass(frozen=True, slots=True)
class PieceState:
    """What the packets of one part share beyond their headers."""

    mark: int | None = 0
    """The skb mark (``None``: restored from the connection, so not known)."""
    trail: tuple[Rule, ...] = ()
    """Rules that returned, accepted or dropped these packets, in order."""
    template: bool = False
    """A CT/NOTRACK rule attached its template (only the first one an skb meets does)."""
    notrack: bool = False
    natted: str = ""
    """Which NAT rule rewrote the packets (later rules see the new address)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    boxes: tuple[Box, ...]
    fate: Fate
    trail: tuple[Rule, ...]
    reason: str = ""


@dataclass
class _Out:
    items: list[Outcome] = field(default_factory=list)

    def add(self, hs: HeaderSet, fate: Fate, st: PieceState, reason: str = "") -> None:
        if hs:
            self.items.append(Outcome(tuple(hs.boxes), fate, st.trail, reason))


_DEVICE_FIELDS = ("physin", "physout", "in_dev", "out_dev")


class _ChainIndex:
    """Rules that name one exact device are looked at only on a path through that device
    (a 500-port node's Neutron chains hold a few rules per port); rule order is unchanged."""

    def __init__(self, chain: Chain) -> None:
        self.unkeyed: list[int] = []
        self.keyed: dict[str, dict[str, list[int]]] = {}
        for i, rule in enumerate(chain.rules):
            key = _device_key(rule)
            if key is None:
                self.unkeyed.append(i)
            else:
                self.keyed.setdefault(key[0], {}).setdefault(key[1], []).append(i)
        self._cache: dict[HookDevices, list[int]] = {}

    def candidates(self, devices: HookDevices) -> list[int]:
        found = self._cache.get(devices)
        if found is None:
            merged = set(self.unkeyed)
            for name, by_value in self.keyed.items():
                value = getattr(devices, name)
                if value is None:
                    # xt_physdev does not compare an in-port name it does not have.
                    for ids in by_value.values():
                        merged.update(ids)
                else:
                    merged.update(by_value.get(value, ()))
            found = sorted(merged)
            self._cache[devices] = found
        return found


def _device_key(rule: Rule) -> tuple[str, str] | None:
    specs = [
        pair
        for m in rule.matches
        if isinstance(m, PhysdevMatch)
        for pair in (("physin", m.physdev_in), ("physout", m.physdev_out))
    ]
    specs += [("in_dev", rule.ip.in_iface), ("out_dev", rule.ip.out_iface)]
    for name, spec in specs:
        if spec is not None and not spec.negated and "+" not in spec.value:
            return (name, spec.value)
    return None


class PathEvaluator:
    """Evaluates one ruleset (one family) along hook paths."""

    def __init__(
        self,
        ruleset: Ruleset,
        compiler: MatchCompiler,
        local_addresses: Mapping[str, tuple[IPv4Address | IPv6Address, ...]] | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.compiler = compiler
        self.local_addresses = local_addresses
        self.notes: list[str] = []
        """Assumptions made by the rules the last :meth:`run` met."""
        """The node's addresses per device (MASQUERADE, REDIRECT); ``None``: not known."""
        # The engine decides these facts for its own runs; reading them from it keeps both
        # on the same backend, loaded tables and conntrack activity.
        engine = NetfilterEngine(ruleset, ipsets=compiler.ipsets)
        self.backend = engine.backend
        self.loaded = engine.loaded
        self.conntrack_active = engine.conntrack_active
        self.assumptions = tuple(a for a in engine.base_assumptions if "handle" not in a)
        self.tables = HOOK_TABLES_NFT if self.backend is Backend.NFT else HOOK_TABLES
        self._index: dict[tuple[str, str], _ChainIndex] = {}

    def run(self, path: HookPath, start: HeaderSet) -> list[Outcome]:
        """The fate of every packet of ``start`` along ``path``; the assumptions the rules
        met made are in :attr:`notes` afterwards."""
        self.notes = []
        out = _Out()
        pieces: list[tuple[HeaderSet, PieceState]] = [(start, PieceState())]
        for i, (hook, devices) in enumerate(path):
            nxt: list[tuple[HeaderSet, PieceState]] = []
            for hs, st in pieces:
                nxt.extend(self._hook(hook, devices, hs, st, out, first=i == 0))
            pieces = _merge(nxt)
        for hs, st in pieces:
            out.add(hs, Fate.ALLOWED, st)
        if self.ruleset.incomplete:
            return [
                Outcome(
                    o.boxes,
                    Fate.UNKNOWN,
                    o.trail,
                    f"{o.fate.value} by the rules shown; but {self.ruleset.incomplete}",
                )
                if o.fate is not Fate.UNKNOWN
                else o
                for o in out.items
            ]
        return out.items

    # -- hooks and tables ----------------------------------------------------------------------

    def _hook(
        self,
        hook: Hook,
        devices: HookDevices,
        hs: HeaderSet,
        st: PieceState,
        out: _Out,
        *,
        first: bool,
    ) -> list[tuple[HeaderSet, PieceState]]:
        pieces = [(hs, st)]
        for table in self.tables[hook]:
            if table == "conntrack":
                pieces = [(self._tracked(h, s, out), s) for h, s in pieces]
                continue
            if table == "confirm":
                continue
            if (
                first
                and hook not in (Hook.PREROUTING, Hook.OUTPUT)
                and table == self.tables[hook][0]
            ):
                # A path that starts after PREROUTING: conntrack looked at the packet before.
                pieces = [(self._tracked(h, s, out), s) for h, s in pieces]
            if table not in self.loaded or self.ruleset.chain(table, hook.value) is None:
                continue
            nxt: list[tuple[HeaderSet, PieceState]] = []
            for h, s in pieces:
                if not h:
                    continue
                if table == "nat":
                    # nf_nat runs the nat table only for a connection's first packet.
                    runs, skips = h.split((self.compiler.box(ct=((_NEW, _NEW),)),))
                    if skips:
                        nxt.append((skips, s))
                    h = runs
                    if not h:
                        continue
                if s.natted and self.ruleset.chain(table, hook.value).rules:  # type: ignore[union-attr]
                    out.add(
                        h,
                        Fate.UNKNOWN,
                        s,
                        f"rewritten by {s.natted}; later rules would see the new address",
                    )
                    continue
                nxt.extend(self._table(table, hook, devices, h, s, out))
            pieces = _merge(nxt)
        return pieces

    def _tracked(self, hs: HeaderSet, st: PieceState, out: _Out) -> HeaderSet:
        """After the raw table: a packet no NOTRACK met is tracked (not UNTRACKED); in a
        namespace without conntrack, it has no entry at all (INVALID). A tracked packet is
        reassembled (nf_defrag) before any rule sees it: no later fragment. What cannot be
        is kept as impossible."""
        if st.notrack:
            if not self.conntrack_active:
                return hs
            kept, gone = hs.split_dim(Dim.FRAG, ((0, 0),))
        elif not self.conntrack_active:
            kept, gone = hs.split_dim(Dim.CT, ((_INVALID, _INVALID),))
        else:
            kept, gone = hs.split_dim(Dim.CT, ((0, _UNTRACKED - 1),))
            kept, later = kept.split_dim(Dim.FRAG, ((0, 0),))
            gone = HeaderSet([*gone.boxes, *later.boxes])
        out.add(gone, Fate.IMPOSSIBLE, st, _IMPOSSIBLE)
        return kept

    def _table(
        self, table: str, hook: Hook, devices: HookDevices, hs: HeaderSet, st: PieceState, out: _Out
    ) -> list[tuple[HeaderSet, PieceState]]:
        accepted: list[tuple[HeaderSet, PieceState]] = []
        returned = self._chain(table, hook, hook.value, 0, hs, st, devices, out, accepted, 0)
        builtin = self.ruleset.chain(table, hook.value)
        assert builtin is not None
        policy = builtin.policy or "ACCEPT"
        verdict = Effect.of_word(policy).verdict
        for h, s in returned:
            reason = f"the {policy} policy of {table} {hook.value}"
            if verdict is None:
                out.add(h, Fate.UNKNOWN, s, f"{reason} is neither ACCEPT nor DROP")
            elif verdict.value == "accept":
                accepted.append((h, s))
            else:
                out.add(h, Fate.DENIED, s, reason)
        return accepted

    def _candidates(self, table: str, chain: Chain, devices: HookDevices) -> list[int]:
        key = (table, chain.name)
        index = self._index.get(key)
        if index is None:
            index = self._index[key] = _ChainIndex(chain)
        return index.candidates(devices)

    def _chain(
        self,
        table: str,
        hook: Hook,
        name: str,
        start: int,
        hs: HeaderSet,
        st: PieceState,
        devices: HookDevices,
        out: _Out,
        accepted: list[tuple[HeaderSet, PieceState]],
        depth: int,
    ) -> list[tuple[HeaderSet, PieceState]]:
        """Walk chain ``name`` from rule index ``start``; return the parts that come back to
        the caller (a RETURN, or the end of a user chain; for a built-in chain, the policy)."""
        chain = self.ruleset.chain(table, name)
        if chain is None:
            out.add(
                hs, Fate.UNKNOWN, st, f"{table}: jump to chain {name!r}, which the ruleset lacks"
            )
            return []
        if depth > MAX_DEPTH:
            out.add(hs, Fate.UNKNOWN, st, f"{table} {name}: chains nested deeper than {MAX_DEPTH}")
            return []
        returned: list[tuple[HeaderSet, PieceState]] = []
        cands = self._candidates(table, chain, devices)
        for i in cands[bisect_left(cands, start) :]:
            if not hs:
                break
            rule = chain.rules[i]
            con: Constraint = self.compiler.rule(rule, hook, devices, st.mark)
            if con.never:
                continue
            for note in con.notes:
                if note not in self.notes:
                    self.notes.append(note)
            if con.unknown:
                unknown, hs = hs.split(con.unknown)
                out.add(
                    unknown,
                    Fate.UNKNOWN,
                    replace(st, trail=(*st.trail, rule)),
                    f"rule {rule.position} of {table} {rule.chain} cannot be evaluated: {con.reason}",
                )
            matched, hs = hs.split(con.true)
            if not matched:
                continue
            target = rule.target
            effect = target.effect
            # Rules that let packets on are named only in the filtering tables: a raw or nat
            # rule accepting them there decides nothing about their exposure.
            names = table in ("filter", "security") or effect in (Effect.DROP, Effect.REJECT)
            decided = replace(st, trail=(*st.trail, rule)) if names else st
            if isinstance(target, JumpTarget):
                sub = self._chain(
                    table, hook, target.chain, 0, matched, st, devices, out, accepted, depth + 1
                )
                if effect is Effect.GOTO:
                    returned.extend(sub)
                    continue
                for h, s in sub:
                    if s == st:
                        hs = HeaderSet([*hs.boxes, *h.boxes])
                    else:
                        returned.extend(
                            self._chain(
                                table, hook, name, i + 1, h, s, devices, out, accepted, depth
                            )
                        )
                continue
            match effect:
                case Effect.RETURN:
                    returned.append((matched, decided))
                case Effect.ACCEPT:
                    if isinstance(target, NatTarget):
                        self._nat(target, rule, matched, decided, out, accepted, hook, devices)
                    else:
                        accepted.append((matched, decided))
                case Effect.DROP | Effect.REJECT:
                    out.add(matched, Fate.DENIED, decided)
                case Effect.QUEUE:
                    out.add(
                        matched,
                        Fate.UNKNOWN,
                        decided,
                        "queued to a userspace program, which decides",
                    )
                case Effect.UNKNOWN:
                    reason = getattr(target, "reason", "") or "target not modelled"
                    out.add(
                        matched,
                        Fate.UNKNOWN,
                        decided,
                        f"rule {rule.position} of {table} {rule.chain}: {reason}",
                    )
                case Effect.CONTINUE:
                    moved = self._continue(target, rule, matched, st, out)
                    if moved is None:
                        continue
                    h, s = moved
                    if s == st:
                        hs = HeaderSet([*hs.boxes, *h.boxes])
                    else:
                        returned.extend(
                            self._chain(
                                table, hook, name, i + 1, h, s, devices, out, accepted, depth
                            )
                        )
                case Effect.JUMP | Effect.GOTO:
                    pass  # handled above
        if hs:
            returned.append((hs, st))
        return returned

    def _continue(
        self, target: object, rule: Rule, hs: HeaderSet, st: PieceState, out: _Out
    ) -> tuple[HeaderSet, PieceState] | None:
        """A non-terminal target: the new state of the packets it met, or ``None`` when it
        made them unknown."""
        match target:
            case MarkTarget():
                mark = (
                    None
                    if st.mark is None
                    else (st.mark & ~target.mask & 0xFFFFFFFF) ^ target.value
                )
                return hs, replace(st, mark=mark)
            case ConnmarkTarget():
                if target.mode == "restore":
                    return hs, replace(st, mark=None)
                return hs, st
            case CtTarget() | NotrackTarget():
                if isinstance(target, CtTarget) and target.zone_dir:
                    out.add(
                        hs,
                        Fate.UNKNOWN,
                        st,
                        f"-j CT --zone-{target.zone_dir} (per-direction zones) is not modelled",
                    )
                    return None
                if st.template:
                    return hs, st
                notrack = isinstance(target, NotrackTarget) or (
                    isinstance(target, CtTarget) and target.notrack
                )
                if notrack:
                    kept, gone = hs.split_dim(Dim.CT, ((_UNTRACKED, _UNTRACKED),))
                    out.add(gone, Fate.IMPOSSIBLE, st, _IMPOSSIBLE)
                    return kept, replace(st, template=True, notrack=True)
                return hs, replace(st, template=True)
            case TcpmssTarget():
                if target.clamp_to_pmtu:
                    tcp = hs.restrict(Dim.PROTO, ((6, 6),))
                    out.add(
                        tcp,
                        Fate.UNKNOWN,
                        st,
                        "-j TCPMSS --clamp-mss-to-pmtu needs the route's MTU, which is not known",
                    )
                    return hs.subtract(tuple(tcp.boxes)), st
                return hs, st
        return hs, st

    def _nat(
        self,
        target: NatTarget,
        rule: Rule,
        hs: HeaderSet,
        st: PieceState,
        out: _Out,
        accepted: list[tuple[HeaderSet, PieceState]],
        hook: Hook,
        devices: HookDevices,
    ) -> None:
        """What a NAT target does to a NEW packet, as the engine's ``_nat``: an explicit SNAT
        rewrites and accepts; MASQUERADE takes the out device's address, and the kernel drops
        when it has none; REDIRECT takes the in device's, then is a bridged DNAT (routed, not
        modelled); DNAT of a bridged packet is routed too."""
        where = f"rule {rule.position} of {rule.table} {rule.chain}"
        kind = target.nat_type
        named = replace(st, trail=(*st.trail, rule))
        if kind == "SNAT" and target.ranges and target.ranges[0].addr_lo is not None:
            accepted.append((hs, replace(st, natted=f"{where} (SNAT)")))
            return
        if kind in ("MASQUERADE", "REDIRECT") and self.local_addresses is not None:
            dev = devices.out_dev if kind == "MASQUERADE" else devices.in_dev
            if kind == "REDIRECT" and (hook is Hook.OUTPUT or dev not in self.local_addresses):
                pass  # loopback, or a device the snapshot does not list: unknown below
            else:
                version = 4 if self.ruleset.family is Family.IPV4 else 6
                addrs = [a for a in self.local_addresses.get(dev, ()) if a.version == version]
                if not addrs:
                    out.add(
                        hs,
                        Fate.DENIED,
                        named,
                        f"{where}: {kind}: {dev or 'the device'} has no IPv{version} address, "
                        "the kernel drops",
                    )
                    return
                if kind == "MASQUERADE":
                    accepted.append((hs, replace(st, natted=f"{where} (MASQUERADE)")))
                    return
        out.add(
            hs,
            Fate.UNKNOWN,
            named,
            f"{where}: {kind} rewrites the packet (a bridged DNAT is routed, which is not "
            "modelled; MASQUERADE and REDIRECT take a device's address, which the snapshot "
            "must list)",
        )


def _merge(pieces: list[tuple[HeaderSet, PieceState]]) -> list[tuple[HeaderSet, PieceState]]:
    """Parts with the same state walk on together (their boxes are disjoint)."""
    by_state: dict[PieceState, list[Box]] = {}
    for hs, st in pieces:
        if hs:
            by_state.setdefault(st, []).extend(hs.boxes)
    return [(HeaderSet(boxes), st) for st, boxes in by_state.items()]
