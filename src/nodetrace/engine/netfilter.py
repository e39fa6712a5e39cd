"""The netfilter engine: what the kernel does with one packet at one or more hooks.

Given a ruleset, a packet, the hooks it crosses and the devices at each, the engine runs the
tables registered at each hook in the kernel's priority order (raw, conntrack, mangle, nat,
filter, security), walks chains with jumps, gotos and returns exactly as ``ipt_do_table`` does,
consults nat only for a connection's first packet, and records every rule that matched with the
number TRACE prints for it (``rule``/``return``/``policy``, the tail being rule count + 1).

It never guesses: a match or target it cannot evaluate ends the walk with an *unknown* outcome
naming the rule, and every default it relies on (conntrack state, loaded tables, rule handles)
is listed in the result's assumptions::

    engine = NetfilterEngine(ruleset, ipsets=sets)
    result = engine.run(packet, bridge_path("qbr1", physin="qvb1", physout="tap1"))
    result.trace.outcome, result.trace.reason
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address
from typing import NoReturn, assert_never

from nodetrace.engine.conntrack import (
    Connection,
    ConntrackTable,
    CtLookup,
    CtState,
    Direction,
    invert,
    packet_tuple,
)
from nodetrace.engine.ipset import SetIndex
from nodetrace.engine.netfilter_match import (
    Ctx,
    Predicate,
    all_of,
    compile_ip,
    compile_match,
    ip_length,
    uses_conntrack,
)
from nodetrace.model.conntrack import ConnTuple
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import (
    Backend,
    Chain,
    ChecksumTarget,
    ConnmarkTarget,
    CtTarget,
    HookDevices,
    JumpTarget,
    LogTarget,
    MarkTarget,
    NatTarget,
    Neg,
    NflogTarget,
    NoTarget,
    NotrackTarget,
    PhysdevMatch,
    PortRange,
    RejectTarget,
    Rule,
    Ruleset,
    StandardTarget,
    Table,
    Target,
    TargetKind,
    TcpmssTarget,
    TraceTarget,
    UnknownTarget,
)
from nodetrace.model.packet import ETH_TYPE_IPV4, IPProto, Packet, TcpFlag
from nodetrace.model.trace import Hook, NetfilterStep, Outcome, StepKind, Trace
from nodetrace.model.verdict import Effect, Verdict

# Tables per hook in priority order (include/uapi/linux/netfilter_ipv4.h); "conntrack" is the
# connection lookup (priority -200) and "confirm" its commit at the end of INPUT/POSTROUTING.
HOOK_TABLES: dict[Hook, tuple[str, ...]] = {
    Hook.PREROUTING: ("raw", "conntrack", "mangle", "nat"),
    Hook.INPUT: ("mangle", "filter", "security", "nat", "confirm"),
    Hook.FORWARD: ("mangle", "filter", "security"),
    Hook.OUTPUT: ("raw", "conntrack", "mangle", "nat", "filter", "security"),
    Hook.POSTROUTING: ("mangle", "nat", "confirm"),
}

# iptables-nft registers the security table's base chains at priority 150, not 50 as
# iptables-legacy does (seen in the lab with `nft list ruleset`), so at INPUT it runs after nat
# (100). At FORWARD and OUTPUT the order is the same either way.
HOOK_TABLES_NFT: dict[Hook, tuple[str, ...]] = {
    **HOOK_TABLES,
    Hook.INPUT: ("mangle", "filter", "nat", "security", "confirm"),
}

NAT_MANIP = {
    Hook.PREROUTING: "DST",
    Hook.OUTPUT: "DST",
    Hook.POSTROUTING: "SRC",
    Hook.INPUT: "SRC",
}

HookPath = tuple[tuple[Hook, HookDevices], ...]
"""The hooks one skb crosses, in order, each with the devices the kernel passes to it."""


def bridge_path(bridge: str, *, physin: str, physout: str) -> HookPath:
    """The hooks a frame crossing Linux bridge ``bridge`` meets with br_netfilter, from port
    ``physin`` to port ``physout``, with the devices each hook sees (compute-node.md §4.2)."""
    return (
        (Hook.PREROUTING, HookDevices(bridge, "", physin, None, True)),
        (Hook.FORWARD, HookDevices(bridge, bridge, physin, physout, True)),
        (Hook.POSTROUTING, HookDevices("", bridge, physin, physout, True)),
    )


def input_path(bridge: str, *, physin: str) -> HookPath:
    """The hooks a frame entering bridge port ``physin`` and addressed to the bridge's own
    address meets: br_netfilter's PREROUTING, then INPUT, both with ``IN=`` the bridge and the
    port still recorded as ``PHYSIN``."""
    return (
        (Hook.PREROUTING, HookDevices(bridge, "", physin, None, True)),
        (Hook.INPUT, HookDevices(bridge, "", physin, None, True)),
    )


def output_path(out_dev: str) -> HookPath:
    """The hooks a packet the node sends itself meets on its way out of ``out_dev``: OUTPUT and
    POSTROUTING. A bridge's port is chosen only after both, so no ``PHYSOUT`` appears and the
    bridge's own POSTROUTING pass is skipped (the skb has no bridge info)."""
    return (
        (Hook.OUTPUT, HookDevices("", out_dev, None, None, False)),
        (Hook.POSTROUTING, HookDevices("", out_dev, None, None, False)),
    )


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the engine needs to know about the node beyond its ruleset.

    ``None`` means "derive it from the ruleset and say so in the assumptions".
    """

    backend: Backend | None = None
    loaded_tables: frozenset[str] | None = None
    conntrack_active: bool | None = None
    tcp_loose: bool = True
    local_addresses: Mapping[str, tuple[IPv4Address | IPv6Address, ...]] | None = None
    socket_uid: int | None = None
    socket_gid: int | None = None


@dataclass(frozen=True, slots=True)
class CtFacts:
    """Conntrack facts given by the user instead of being derived (``--ct-state`` and friends)."""

    state: CtState | None = None
    status: tuple[str, ...] = ()
    zone: int | None = None
    mark: int = 0
    direction: Direction = Direction.ORIGINAL


@dataclass(frozen=True, slots=True)
class NetfilterResult:
    trace: Trace
    verdict: Verdict
    packet: Packet
    """The packet as it leaves the last hook (NAT rewrites, mark in ``skb_mark``)."""
    ct_state: str | None
    zone: int
    nf_trace: bool
    ct_mark: int = 0


# --- compiled ruleset ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CRule:
    """A rule ready to run: its predicate and what its target does, decided once."""

    rule: Rule
    pred: Predicate | None
    handle: int | None
    effect: Effect
    nft_verdict: str = "CONTINUE"
    unconditional: bool = False
    trace: bool = False


class _Index:
    """Skips rules that cannot match: most rules of a big chain name one exact device or host
    (``--physdev-out tapX``, ``-s 10.0.0.5/32``), so only rules naming the packet's own value,
    plus the rules without such a key, need evaluating. Rule numbers are unaffected."""

    FIELDS = ("physin", "physout", "in_dev", "out_dev", "src", "dst")

    def __init__(self, keys: list[tuple[str, object] | None]) -> None:
        self.unkeyed = [i for i, k in enumerate(keys) if k is None]
        self.keyed: dict[str, dict[object, list[int]]] = {}
        for i, k in enumerate(keys):
            if k is not None:
                self.keyed.setdefault(k[0], {}).setdefault(k[1], []).append(i)
        self.fields = tuple(f for f in self.FIELDS if f in self.keyed)
        self.cache: dict[tuple[object, ...], list[int]] = {}

    def candidates(self, ctx: Ctx) -> list[int] | None:
        if "physin" in self.keyed and ctx.bridged and ctx.physin is None:
            return None  # xt_physdev skips --physdev-in without an in-port: scan everything
        key = tuple(getattr(ctx, f) for f in self.fields)
        found = self.cache.get(key)
        if found is None:
            merged = set(self.unkeyed)
            for f, value in zip(self.fields, key, strict=True):
                merged.update(self.keyed[f].get(value, ()))
            found = sorted(merged)
            if len(self.cache) > 65536:
                self.cache.clear()
            self.cache[key] = found
        return found


def _exact_device(spec: Neg[str] | None) -> str | None:
    """The one device a match names (not negated, no ``+`` wildcard), else ``None``."""
    if spec is None or spec.negated or "+" in spec.value:
        return None
    return spec.value


def _index_key(rule: Rule) -> tuple[str, object] | None:
    ip = rule.ip
    devices = [
        pair
        for m in rule.matches
        if isinstance(m, PhysdevMatch)
        for pair in (("physin", m.physdev_in), ("physout", m.physdev_out))
    ]
    devices += [("in_dev", ip.in_iface), ("out_dev", ip.out_iface)]
    for name, device in devices:
        value = _exact_device(device)
        if value is not None:
            return (name, value)
    for name, spec in (("src", ip.src), ("dst", ip.dst)):
        if (
            spec is not None
            and not spec.negated
            and spec.value.prefixlen == spec.value.max_prefixlen
        ):
            return (name, int(spec.value.network_address))
    return None


class _CompiledRules:
    """A chain's rules, each compiled the first time a walk evaluates it: a packet meets a few
    dozen rules of a ruleset of thousands, and compiling them all would cost more than parsing."""

    def __init__(
        self, table: str, chain: Chain, handles: Mapping[tuple[str, str, int], int]
    ) -> None:
        self._table, self._chain, self._handles = table, chain, handles
        self._compiled: list[_CRule | None] = [None] * len(chain.rules)

    def __len__(self) -> int:
        return len(self._compiled)

    def __getitem__(self, i: int) -> _CRule:
        crule = self._compiled[i]
        if crule is None:
            rule = self._chain.rules[i]
            handle = self._handles.get((self._table, self._chain.name, rule.position))
            crule = self._compiled[i] = _compile_rule(rule, handle)
        return crule


class _CChain:
    """A chain ready to run; its index is built the first time a walk enters the chain."""

    def __init__(
        self, table: str, chain: Chain, handles: Mapping[tuple[str, str, int], int]
    ) -> None:
        self.chain = chain
        self.rules = _CompiledRules(table, chain, handles)

    @cached_property
    def index(self) -> _Index | None:
        if len(self.rules) < 16:
            return None
        keys = [_index_key(r) for r in self.chain.rules]
        return _Index(keys) if sum(k is not None for k in keys) >= 8 else None


def _compile_rule(rule: Rule, handle: int | None) -> _CRule:
    preds: list[Predicate] = []
    ip = compile_ip(rule.ip)
    if ip is not None:
        preds.append(ip)
    for m in rule.matches:
        p = compile_match(m)
        if p is not None:
            preds.append(p)
    pred: Predicate | None = None
    if len(preds) == 1:
        pred = preds[0]
    elif preds:
        pred = all_of(preds)
    t = rule.target
    return _CRule(
        rule,
        pred,
        handle,
        t.effect,
        nft_verdict=_nft_verdict(t),
        unconditional=rule.is_unconditional,
        trace=isinstance(t, TraceTarget),
    )


def assumed_handles(ruleset: Ruleset) -> dict[tuple[str, str, int], int]:
    """Rule handles a fresh ``iptables-nft-restore`` of this ruleset assigns: per table, one
    counter from 1, first for the chains in declaration order, then for the rules in the order
    of their lines (iptables-save groups rules by chain; hand-written files may not)."""
    handles: dict[tuple[str, str, int], int] = {}
    for table in ruleset.tables.values():
        counter = len(table.chains)
        rules = [r for chain in table.chains.values() for r in chain.rules]
        rules.sort(key=lambda r: r.pos.line if r.pos is not None else 0)
        for rule in rules:
            counter += 1
            handles[(table.name, rule.chain, rule.position)] = counter
    return handles


def rule_handles(ruleset: Ruleset) -> dict[tuple[str, str, int], int]:
    """The nft handle of every rule: the real one where ``nft -a list ruleset`` gave it
    (:attr:`Rule.handle`), else, table by table, what a fresh restore assigns.

    A table is taken whole from one source: mixing real and assumed handles in one table
    could give two rules the same handle.
    """
    assumed = assumed_handles(ruleset)
    handles: dict[tuple[str, str, int], int] = {}
    for table in ruleset.tables.values():
        real = _real_handles(table)
        for chain in table.chains.values():
            for rule in chain.rules:
                key = (table.name, chain.name, rule.position)
                handles[key] = real[key] if real is not None else assumed[key]
    return handles


def _real_handles(table: Table) -> dict[tuple[str, str, int], int] | None:
    rules = [r for chain in table.chains.values() for r in chain.rules]
    if not rules or any(r.handle is None for r in rules):
        return None
    return {(table.name, r.chain, r.position): r.handle for r in rules if r.handle is not None}


def _handle_assumptions(ruleset: Ruleset) -> list[str]:
    """What the engine assumes about rule handles, naming the tables it assumes them for."""
    assumed = [
        t.name
        for t in ruleset.tables.values()
        if any(c.rules for c in t.chains.values()) and _real_handles(t) is None
    ]
    if not assumed:
        return []
    real = [t.name for t in ruleset.tables.values() if _real_handles(t) is not None]
    scope = "" if not real else f" in table{'s' if len(assumed) > 1 else ''} {', '.join(assumed)}"
    why = (
        "; ".join(ruleset.handle_notes)
        if ruleset.handle_notes
        else "no nft -a list ruleset was given"
    )
    return [
        f"nft rule handles{scope} assumed as a fresh iptables-nft-restore of this ruleset "
        f"assigns them ({why}); a rule inserted later with -I has other handles"
    ]


def _needs_conntrack(ruleset: Ruleset) -> Rule | None:
    for rule in ruleset.rules():
        if any(uses_conntrack(m) for m in rule.matches):
            return rule
        t = rule.target
        if isinstance(t, ConnmarkTarget | NatTarget) or (isinstance(t, CtTarget) and not t.notrack):
            return rule
    return None


def _untracked_namespace(ruleset: Ruleset) -> str:
    """What a namespace without conntrack means for its packets' state: a packet a ``-j CT
    --notrack`` rule meets is UNTRACKED (``IP_CT_UNTRACKED``); any other has no conntrack
    entry, which a state match sees as INVALID."""
    notrack = next(
        (
            r
            for r in ruleset.rules()
            if isinstance(r.target, NotrackTarget)
            or (isinstance(r.target, CtTarget) and r.target.notrack)
        ),
        None,
    )
    said = (
        "no rule needs conntrack, so the kernel tracks no connections in this namespace: "
        "nat chains are not consulted"
    )
    if notrack is None:
        return said + "; a packet has no conntrack entry (a state match sees INVALID)"
    return (
        f"{said}; a packet that {notrack.table} {notrack.chain} rule {notrack.position} "
        f"(`-j CT --notrack`) meets is UNTRACKED, one that no such rule meets has no conntrack "
        "entry (a state match sees INVALID)"
    )


# --- the run ------------------------------------------------------------------------------------


class _Stop(Exception):
    """Ends the walk with an unknown outcome."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _bridged_dnat(ctx: Ctx, what: str) -> NoReturn:
    ctx.refresh()
    raise _Stop(
        f"{what} changed the destination of a bridged packet: br_netfilter then routes it, "
        "which is not modelled"
    )


@dataclass
class _Run:
    """State of one packet across the hooks of one run (the skb)."""

    ctx: Ctx
    steps: list[NetfilterStep] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    nf_trace: bool = False
    template_zone: int | None = None
    template_set: bool = False
    zone: int = 0
    new_conn: Connection | None = None
    verdict_step: int | None = None
    reason: str = ""

    def note(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)

    def drop(self, reason: str) -> Verdict:
        """The kernel drops the packet at the last step, for ``reason``."""
        self.reason = reason
        self.verdict_step = len(self.steps) - 1
        return Verdict.DROP


class NetfilterEngine:
    """Evaluates packets against one ruleset; keeps a conntrack table across calls."""

    def __init__(
        self,
        ruleset: Ruleset,
        *,
        ipsets: IpSets | None = None,
        facts: NodeFacts | None = None,
        conntrack: ConntrackTable | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.ipsets = ipsets
        self.facts = facts or NodeFacts()
        self.conntrack = conntrack or ConntrackTable(tcp_loose=self.facts.tcp_loose)
        self.backend = self.facts.backend or (
            ruleset.backend if ruleset.backend is not Backend.UNKNOWN else Backend.LEGACY
        )
        self.base_assumptions: list[str] = []
        if self.facts.backend is None and ruleset.backend is Backend.UNKNOWN:
            self.base_assumptions.append(
                "backend assumed iptables-legacy (the ruleset has no iptables-save header)"
            )
        self.loaded = (
            self.facts.loaded_tables
            if self.facts.loaded_tables is not None
            else frozenset(ruleset.tables)
        )
        if self.facts.loaded_tables is None and self.backend is Backend.NFT:
            self.base_assumptions.append(
                "iptables-nft: every built-in chain the save lists is assumed to exist as a "
                "base chain (iptables-nft-save lists them even when absent; an absent one "
                "prints no policy line)"
            )
        if self.facts.conntrack_active is not None:
            self.conntrack_active = self.facts.conntrack_active
        else:
            needer = _needs_conntrack(ruleset)
            self.conntrack_active = needer is not None
            if needer is None:
                self.base_assumptions.append(_untracked_namespace(ruleset))
        handles = rule_handles(ruleset) if self.backend is Backend.NFT else {}
        if self.backend is Backend.NFT:
            self.base_assumptions.extend(_handle_assumptions(ruleset))
        self._chains: dict[tuple[str, str], _CChain] = {}
        for table in ruleset.tables.values():
            for chain in table.chains.values():
                self._chains[(table.name, chain.name)] = _CChain(table.name, chain, handles)
        self.has_trace_rule = any(isinstance(r.target, TraceTarget) for r in ruleset.rules())
        self._set_index = SetIndex()

    # -- public ------------------------------------------------------------------------------

    def run(
        self,
        packet: Packet,
        path: Sequence[tuple[Hook, HookDevices]],
        *,
        ct: CtFacts | None = None,
        nf_trace: bool = False,
        routed: bool = False,
    ) -> NetfilterResult:
        """Run ``packet`` through the hooks of ``path`` in order (one skb), and say what happens.

        With ``ct`` the conntrack state is the one given; without, the engine's conntrack table
        decides (and learns the connection if the packet makes it through). ``routed``: the
        packet is forwarded by the IP layer (not bridged), whose ``ip_forward``/``ip6_forward``
        lower its TTL (hop limit) right before the FORWARD hook.
        """
        if packet.family is not None and packet.family is not self.ruleset.family:
            raise ValueError(
                f"an {packet.family.value} packet cannot cross an {self.ruleset.family.value} ruleset"
            )
        ctx = Ctx(
            packet=packet,
            hook=path[0][0],
            mark=packet.skb_mark,
            ipsets=self.ipsets,
            set_index=self._set_index,
            local_addresses=dict(self.facts.local_addresses)
            if self.facts.local_addresses is not None
            else None,
            socket_uid=self.facts.socket_uid,
            socket_gid=self.facts.socket_gid,
        )
        ctx.refresh()
        run = _Run(ctx, assumptions=list(self.base_assumptions), nf_trace=nf_trace)
        if ct is not None:
            self._apply_ct_facts(run, ct)
        verdict = Verdict.ACCEPT
        try:
            for i, (hook, devices) in enumerate(path):
                if routed and hook is Hook.FORWARD:
                    ctx.packet = replace(ctx.packet, nw_ttl=max(0, ctx.packet.nw_ttl - 1))
                verdict = self._hook(run, hook, devices, first=i == 0, ct_facts=ct)
                if verdict is not Verdict.ACCEPT:
                    break
        except _Stop as stop:
            verdict = Verdict.UNKNOWN
            run.reason = stop.reason
        for note in ctx.notes:
            run.note(note)
        if self.ruleset.incomplete and verdict in (Verdict.ACCEPT, Verdict.DROP, Verdict.REJECT):
            verdict = self._incomplete(run, verdict)
        if verdict is Verdict.QUEUE and not run.reason:
            run.reason = "queued to a userspace program, which decides the verdict"
        if verdict is Verdict.ACCEPT and run.steps:
            run.verdict_step = len(run.steps) - 1
            run.reason = f"accepted: it left {_where_it_left(run.steps[-1])}"
        final = (
            ctx.packet
            if ctx.packet.skb_mark == ctx.mark
            else replace(ctx.packet, skb_mark=ctx.mark)
        )
        conn = None if ctx.ct is None else ctx.ct.conn
        trace = Trace(
            steps=tuple(run.steps),
            outcome=Outcome.of(verdict),
            verdict_step=run.verdict_step,
            reason=run.reason,
            assumptions=tuple(run.assumptions),
            packet=final,
        )
        return NetfilterResult(
            trace=trace,
            verdict=verdict,
            packet=final,
            ct_state=ctx.ct_state.value if (ctx.ct is not None or ctx.untracked) else None,
            zone=run.zone,
            nf_trace=run.nf_trace,
            ct_mark=conn.mark if conn is not None else 0,
        )

    def _incomplete(self, run: _Run, verdict: Verdict) -> Verdict:
        """A dump known to lack rules cannot decide: a rule not shown may come first."""
        if verdict is not Verdict.ACCEPT:
            seen = run.reason or f"{verdict.name} by the rules shown"
        elif run.steps:
            seen = f"the rules shown accept it (it leaves {_where_it_left(run.steps[-1])})"
        else:
            seen = "no rule shown stops it"
        run.reason = f"{seen}; but {self.ruleset.incomplete}"
        run.verdict_step = None  # the rule shown that matched may not be the one that decides
        return Verdict.UNKNOWN

    # -- conntrack ---------------------------------------------------------------------------

    def _apply_ct_facts(self, run: _Run, ct: CtFacts) -> None:
        if ct.zone is not None:
            run.zone = ct.zone
        if ct.state is None:
            return
        ctx = run.ctx
        if ct.state is CtState.UNTRACKED:
            ctx.untracked = True
            run.note("conntrack state given: UNTRACKED")
            return
        if ct.state is CtState.INVALID:
            ctx.ct = CtLookup(CtState.INVALID, note="given")
            run.note("conntrack state given: INVALID (no connection)")
            return
        p = ctx.packet
        if p.nw_src is None or p.nw_dst is None:
            # Without addresses there is no tuple, so no connection the state could belong to.
            ctx.ct = CtLookup(CtState.INVALID, unknown="the packet has no IP addresses")
            run.note(
                f"conntrack state given: {ct.state.value}, but the packet has no IP addresses, "
                "so no connection can hold it"
            )
            return
        t = ConnTuple(p.nw_src, p.nw_dst, p.nw_proto, p.tp_src or 0, p.tp_dst or 0)
        if ct.direction is Direction.REPLY:
            t = invert(t)
        status = set(ct.status)
        if ct.state is not CtState.NEW:
            status |= {"CONFIRMED"}
            if ct.state is CtState.ESTABLISHED:
                status.add("SEEN_REPLY")
            if ct.state is CtState.RELATED and ct.direction is Direction.ORIGINAL:
                status.add("EXPECTED")
        conn = Connection(run.zone, t, invert(t), status=status, mark=ct.mark)
        if ct.state is not CtState.NEW:
            conn.nat_done = {"SRC", "DST"}
        ctx.ct = CtLookup(ct.state, ct.direction, conn)
        run.note(
            f"conntrack state given: {ct.state.value} ({ct.direction.value} direction, zone "
            f"{run.zone}); nat chains run only for NEW"
        )

    def _conntrack_in(self, run: _Run, ct_facts: CtFacts | None) -> None:
        ctx = run.ctx
        if ct_facts is not None and ct_facts.state is not None:
            return
        if ctx.untracked or not self.conntrack_active:
            return
        if run.template_zone is not None:
            run.zone = run.template_zone
        lookup = self.conntrack.lookup(ctx.packet, run.zone)
        ctx.ct = lookup
        if lookup.unknown:
            run.note(f"conntrack: {lookup.unknown}")
            return
        if lookup.conn is not None and not lookup.conn.confirmed:
            run.new_conn = lookup.conn
            if len(self.conntrack) == 0:
                run.note(
                    f"conntrack state NEW: no connection is known in zone {run.zone} (the table "
                    "starts empty; give --ct-state to change)"
                )
        elif lookup.state is CtState.INVALID and lookup.note:
            run.note(f"conntrack state INVALID: {lookup.note}")
        if ctx.packet.nw_proto == IPProto.TCP and lookup.conn is not None:
            run.note("TCP sequence-window checks of conntrack are not modelled (assumed in window)")

    # -- hooks and tables --------------------------------------------------------------------

    def _hook(
        self, run: _Run, hook: Hook, devices: HookDevices, *, first: bool, ct_facts: CtFacts | None
    ) -> Verdict:
        ctx = run.ctx
        ctx.hook = hook
        ctx.in_dev, ctx.out_dev = devices.in_dev, devices.out_dev
        ctx.physin, ctx.physout = devices.physin, devices.physout
        ctx.bridged = devices.is_bridged
        looked_up = False
        tables = HOOK_TABLES_NFT if self.backend is Backend.NFT else HOOK_TABLES
        for table in tables[hook]:
            if table == "conntrack":
                self._conntrack_in(run, ct_facts)
                looked_up = True
                continue
            if table == "confirm":
                if run.new_conn is not None:
                    self.conntrack.confirm(run.new_conn)
                    run.new_conn = None
                continue
            if first and not looked_up and hook not in (Hook.PREROUTING, Hook.OUTPUT):
                # Conntrack looked at this packet at an earlier hook nodetrace did not run.
                self._conntrack_in(run, ct_facts)
                looked_up = True
            if table not in self.loaded or (table, hook.value) not in self._chains:
                continue
            if table == "nat" and not self._nat_runs(run, hook):
                self._apply_binding(run, hook)
                continue
            verdict = self._table(run, table, hook)
            if table == "nat":
                self._nat_done(run, hook)
            if verdict is not Verdict.ACCEPT:
                return verdict
        return Verdict.ACCEPT

    def _nat_runs(self, run: _Run, hook: Hook) -> bool:
        """nf_nat_inet_fn: the nat table runs only while the connection has no NAT binding for
        this hook's manip type, i.e. for its first packet; never without a connection."""
        ctx = run.ctx
        if ctx.untracked or ctx.ct is None or ctx.ct.conn is None:
            return False
        if ctx.ct.unknown:
            raise _Stop(f"nat {hook.value}: {ctx.ct.unknown}")
        conn = ctx.ct.conn
        if ctx.ct.state is CtState.ESTABLISHED or (
            ctx.ct.state is not CtState.NEW and ctx.ct.state is not CtState.RELATED
        ):
            return False
        return NAT_MANIP[hook] not in conn.nat_done

    def _apply_binding(self, run: _Run, hook: Hook) -> None:
        """nf_nat_packet: a later packet of a NATed connection gets the binding applied (in the
        reply direction, undone) without the nat table being consulted."""
        ctx = run.ctx
        if ctx.untracked or ctx.ct is None or ctx.ct.conn is None or ctx.ct.direction is None:
            return
        conn = ctx.ct.conn
        manip = NAT_MANIP[hook]
        reply = ctx.ct.direction is Direction.REPLY
        wanted = "SRC_NAT" if manip == "SRC" else "DST_NAT"
        if reply:
            wanted = "DST_NAT" if wanted == "SRC_NAT" else "SRC_NAT"
        if wanted not in conn.status:
            return
        target = invert(conn.orig if reply else conn.reply)
        p = ctx.packet
        if manip == "SRC":
            ctx.packet = replace(
                p, nw_src=target.src, tp_src=target.sport if p.tp_src is not None else None
            )
        else:
            ctx.packet = replace(
                p, nw_dst=target.dst, tp_dst=target.dport if p.tp_dst is not None else None
            )
            if ctx.bridged and ctx.packet.nw_dst != p.nw_dst:
                _bridged_dnat(ctx, "NAT")
        ctx.refresh()

    def _nat_done(self, run: _Run, hook: Hook) -> None:
        ctx = run.ctx
        if ctx.ct is not None and ctx.ct.conn is not None:
            ctx.ct.conn.nat_done.add(NAT_MANIP[hook])

    def _table(self, run: _Run, table: str, hook: Hook) -> Verdict:
        ctx = run.ctx
        nft = self.backend is Backend.NFT
        chain_name = hook.value
        stack: list[tuple[str, int]] = []
        start = 0
        while True:
            cchain = self._chains.get((table, chain_name))
            if cchain is None:
                raise _Stop(f"{table}: jump to chain {chain_name!r}, which the ruleset lacks")
            found = self._first_match(run, cchain, start, table)
            chain = cchain.chain
            if found is None:
                if chain.builtin:
                    return self._policy(run, table, chain, hook)
                self._step(run, table, chain, hook, StepKind.RETURN, chain.tail_number, None, None)
                if not stack:
                    return self._policy(run, table, self._chains[(table, hook.value)].chain, hook)
                chain_name, start = stack.pop()
                continue
            crule = cchain.rules[found]
            rule = crule.rule
            kind = StepKind.RULE
            if crule.unconditional:
                kind = StepKind.POLICY if chain.builtin else StepKind.RETURN
            traced_before = run.nf_trace
            if crule.trace:
                run.nf_trace = True
            self._step(
                run,
                table,
                chain,
                hook,
                kind,
                rule.position,
                crule,
                crule.nft_verdict,
                traced=run.nf_trace if nft else traced_before,
            )
            target = rule.target
            if crule.effect is Effect.RETURN:
                if stack:
                    chain_name, start = stack.pop()
                    continue
                return self._policy(run, table, self._chains[(table, hook.value)].chain, hook)
            if isinstance(target, JumpTarget):
                if crule.effect is Effect.JUMP:
                    stack.append((chain_name, found + 1))
                chain_name, start = target.chain, 0
                continue
            at = len(run.steps) - 1
            verdict = self._apply(run, target, rule, table, hook)
            if nft and target.kind is TargetKind.EXTENSION and not isinstance(target, NatTarget):
                # nf_tables reports a rule after it ran: the event carries the changed packet
                # (NAT rewrites the packet only after the whole nat chain, in nf_nat_inet_fn).
                self._sync_mark(ctx)
                if run.steps[at].packet is not ctx.packet:
                    run.steps[at] = replace(run.steps[at], packet=ctx.packet)
            if verdict is not None:
                self._decided(run, verdict, rule, table, hook)
                return verdict
            start = found + 1

    def _first_match(self, run: _Run, cchain: _CChain, start: int, table: str) -> int | None:
        ctx = run.ctx
        rules = cchain.rules
        cands = cchain.index.candidates(ctx) if cchain.index is not None else None
        if cands is None:
            indices: Sequence[int] = range(start, len(rules))
        else:
            indices = cands[bisect_left(cands, start) :]
        for i in indices:
            crule = rules[i]
            if crule.pred is None:
                return i
            r = crule.pred(ctx)
            if r is True:
                return i
            if r is not False:
                rule = crule.rule
                self._step(
                    run,
                    table,
                    cchain.chain,
                    ctx.hook,
                    StepKind.RULE,
                    rule.position,
                    crule,
                    None,
                    traced=False,
                    note=f"unknown: {r}",
                )
                run.verdict_step = len(run.steps) - 1
                raise _Stop(
                    f"rule {rule.position} of {table} {rule.chain} cannot be evaluated: {r}"
                )
        return None

    def _policy(self, run: _Run, table: str, chain: Chain, hook: Hook) -> Verdict:
        policy = chain.policy or "ACCEPT"
        self._step(run, table, chain, hook, StepKind.POLICY, chain.tail_number, None, policy)
        verdict = Effect.of_word(policy).verdict
        if verdict is None:
            raise _Stop(f"{table} {chain.name}: policy {policy} is neither ACCEPT nor DROP")
        if verdict is not Verdict.ACCEPT:
            run.verdict_step = len(run.steps) - 1
            run.reason = f"dropped by the {policy} policy of {table} {chain.name} ({hook.value})"
        return verdict

    def _decided(self, run: _Run, verdict: Verdict, rule: Rule, table: str, hook: Hook) -> None:
        if verdict is Verdict.ACCEPT:
            return
        run.verdict_step = len(run.steps) - 1
        word = _DECIDED.get(verdict, verdict.value)
        # A NAT target that drops (no address to take) has said why.
        why = f": {run.reason}" if run.reason and isinstance(rule.target, NatTarget) else ""
        run.reason = f"{word} by rule {rule.position} of {table} {rule.chain} ({hook.value}){why}"

    @staticmethod
    def _sync_mark(ctx: Ctx) -> None:
        if ctx.packet.skb_mark != ctx.mark:
            ctx.packet = replace(ctx.packet, skb_mark=ctx.mark)

    def _step(
        self,
        run: _Run,
        table: str,
        chain: Chain,
        hook: Hook,
        kind: StepKind,
        number: int,
        crule: _CRule | None,
        verdict: str | None,
        *,
        traced: bool | None = None,
        note: str | None = None,
    ) -> None:
        ctx = run.ctx
        self._sync_mark(ctx)
        run.steps.append(
            NetfilterStep(
                family=self.ruleset.family,
                table=table,
                chain=chain.name,
                kind=kind,
                number=number,
                hook=hook,
                in_dev=ctx.in_dev,
                out_dev=ctx.out_dev,
                physin=ctx.physin,
                physout=ctx.physout,
                handle=crule.handle if crule is not None else None,
                verdict=verdict,
                rule_text=crule.rule.text if crule is not None else None,
                rule=crule.rule if crule is not None else None,
                note=note,
                packet=ctx.packet,
                traced=run.nf_trace if traced is None else traced,
            )
        )

    # -- targets -----------------------------------------------------------------------------

    def _apply(
        self, run: _Run, target: Target, rule: Rule, table: str, hook: Hook
    ) -> Verdict | None:
        """Apply what the target does to the packet and its connection; return a verdict when
        it ends the table (its :attr:`effect`, or a drop a NAT target decides)."""
        ctx = run.ctx
        match target:
            case (
                NoTarget()
                | StandardTarget()
                | JumpTarget()
                | RejectTarget()
                | LogTarget()
                | NflogTarget()
                | TraceTarget()
                | ChecksumTarget()
            ):
                pass
            case MarkTarget():
                ctx.mark = (ctx.mark & ~target.mask & 0xFFFFFFFF) ^ target.value
            case CtTarget() | NotrackTarget():
                self._ct_template(run, target)
            case ConnmarkTarget():
                self._connmark(ctx, target)
            case TcpmssTarget():
                self._tcpmss(run, target)
            case NatTarget():
                return self._nat(run, target, rule, hook)
            case UnknownTarget():
                raise _Stop(
                    f"rule {rule.position} of {table} {rule.chain}: "
                    f"{target.reason or 'target not modelled'}"
                )
            case _:
                assert_never(target)
        return target.effect.verdict

    def _ct_template(self, run: _Run, target: CtTarget | NotrackTarget) -> None:
        ctx = run.ctx
        match target:
            case NotrackTarget():
                notrack, zone = True, None
            case CtTarget():
                if target.zone_dir:
                    raise _Stop(
                        f"-j CT --zone-{target.zone_dir} (per-direction zones) is not modelled"
                    )
                if target.options:
                    run.note(
                        "-j CT options "
                        + " ".join(f"--{o.name}" for o in target.options)
                        + " are not modelled (helpers, events, timeouts)"
                    )
                notrack, zone = target.notrack, target.zone
            case _:
                assert_never(target)
        # xt_ct_target: only the first CT/NOTRACK rule an skb meets attaches its template.
        if run.template_set or ctx.ct is not None:
            return
        run.template_set = True
        if notrack:
            ctx.untracked = True
        elif zone is not None:
            run.template_zone = zone

    @staticmethod
    def _connmark(ctx: Ctx, target: ConnmarkTarget) -> None:
        conn = None if ctx.untracked or ctx.ct is None else ctx.ct.conn
        if conn is None:
            return
        if target.mode == "set":
            conn.mark = (conn.mark & ~target.mask & 0xFFFFFFFF) ^ target.value
        elif target.mode == "save":
            conn.mark = (conn.mark & ~target.ctmask & 0xFFFFFFFF) ^ (ctx.mark & target.nfmask)
        else:
            ctx.mark = (ctx.mark & ~target.nfmask & 0xFFFFFFFF) ^ (conn.mark & target.ctmask)

    def _tcpmss(self, run: _Run, target: TcpmssTarget) -> None:
        ctx = run.ctx
        p = ctx.packet
        if p.nw_proto != IPProto.TCP or not p.tcp_flags & TcpFlag.SYN:
            return
        if target.clamp_to_pmtu:
            raise _Stop("-j TCPMSS --clamp-mss-to-pmtu needs the route's MTU, which is not known")
        assert target.mss is not None
        opts = p.tcp_options
        i = 0
        while i + 3 < len(opts):
            kind = opts[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            size = opts[i + 1]
            if kind == 2 and size == 4:
                old = int.from_bytes(opts[i + 2 : i + 4], "big")
                if old > target.mss:
                    new = opts[: i + 2] + target.mss.to_bytes(2, "big") + opts[i + 4 :]
                    ctx.packet = replace(p, tcp_options=new)
                return
            if size < 2:
                break
            i += size
        header = 20 + len(opts)
        if ip_length(p) - (20 + len(p.ip_options)) > header or header >= 60:
            return  # data after the header, or no room: the kernel leaves the SYN alone
        mss = min(target.mss, 536 if p.dl_type == ETH_TYPE_IPV4 else 1220)
        new_opts = bytes([2, 4]) + mss.to_bytes(2, "big") + opts
        new_len = None if p.ip_len is None else p.ip_len + 4
        ctx.packet = replace(p, tcp_options=new_opts, ip_len=new_len)
        run.note("TCPMSS added an MSS option to the SYN (it had none)")

    def _nat(self, run: _Run, target: NatTarget, rule: Rule, hook: Hook) -> Verdict:
        ctx = run.ctx
        conn = None if ctx.ct is None else ctx.ct.conn
        if conn is None:
            return Verdict.ACCEPT
        p = ctx.packet
        kind = target.nat_type
        if kind in ("SNAT", "MASQUERADE"):
            if kind == "MASQUERADE":
                if ctx.local_addresses is None:
                    raise _Stop(
                        f"MASQUERADE takes the address of {ctx.out_dev or 'the out device'}, "
                        "which is not given"
                    )
                addrs = [
                    a
                    for a in ctx.local_addresses.get(ctx.out_dev, ())
                    if a.version == (4 if p.dl_type == ETH_TYPE_IPV4 else 6)
                ]
                if not addrs:
                    return run.drop(f"MASQUERADE: {ctx.out_dev} has no address, the kernel drops")
                new_addr: IPv4Address | IPv6Address = addrs[0]
                ports = target.to_ports
            else:
                new_addr, ports = self._pick(run, target, p.nw_src)
            new_port = self._pick_port(run, ports, p.tp_src)
            ctx.packet = replace(
                p, nw_src=new_addr, tp_src=new_port if p.tp_src is not None else None
            )
            conn.status.add("SRC_NAT")
        else:
            if kind == "REDIRECT":
                redirected = self._redirect_address(run, hook)
                if redirected is None:
                    return Verdict.DROP
                new_addr, ports = redirected, target.to_ports
            else:
                new_addr, ports = self._pick(run, target, p.nw_dst)
            new_port = self._pick_port(run, ports, p.tp_dst)
            ctx.packet = replace(
                p, nw_dst=new_addr, tp_dst=new_port if p.tp_dst is not None else None
            )
            conn.status.add("DST_NAT")
            if ctx.bridged:
                _bridged_dnat(ctx, "DNAT")
        ctx.refresh()
        q = ctx.packet
        assert q.nw_src is not None and q.nw_dst is not None
        # The reply tuple now points at the translated addresses (what replies will carry);
        # an ICMP query's tuple is its id and type, not ports (an echo's reply is type 0).
        translated = packet_tuple(q) or ConnTuple(
            q.nw_src, q.nw_dst, conn.orig.proto, q.tp_src or 0, q.tp_dst or 0
        )
        conn.reply = invert(translated)
        return Verdict.ACCEPT

    def _redirect_address(self, run: _Run, hook: Hook) -> IPv4Address | IPv6Address | None:
        """nf_nat_redirect_ipv4/ipv6: a packet the host sends itself goes to the loopback
        address; any other to the first address of the device it came in on (IPv4: the
        primary; IPv6: the first of the device's list, as ``ip address`` prints it). A device
        without one means NF_DROP."""
        ctx = run.ctx
        v6 = ctx.packet.dl_type != ETH_TYPE_IPV4
        if hook is Hook.OUTPUT:
            return IPv6Address("::1") if v6 else IPv4Address("127.0.0.1")
        dev = ctx.in_dev
        if ctx.local_addresses is None or dev not in ctx.local_addresses:
            raise _Stop(
                f"REDIRECT takes the first address of {dev or 'the in device'}, which the "
                "snapshot does not list (`ip address show`)"
            )
        addrs = [a for a in ctx.local_addresses[dev] if a.version == (6 if v6 else 4)]
        if not addrs:
            run.drop(f"REDIRECT: {dev} has no IPv{6 if v6 else 4} address, the kernel drops")
            return None
        if len(addrs) > 1:
            run.note(
                f"REDIRECT: {dev} has {len(addrs)} addresses; the first one listed, "
                f"{addrs[0]}, is taken as the kernel's (the primary)"
            )
        return addrs[0]

    def _pick(
        self, run: _Run, target: NatTarget, current: IPv4Address | IPv6Address | None
    ) -> tuple[IPv4Address | IPv6Address, PortRange | None]:
        if not target.ranges or target.ranges[0].addr_lo is None:
            if current is None:
                raise _Stop(f"{target.nat_type} without an address on a packet without one")
            return current, target.ranges[0].ports if target.ranges else None
        r = target.ranges[0]
        assert r.addr_lo is not None
        if len(target.ranges) > 1 or (r.addr_hi is not None and r.addr_hi != r.addr_lo):
            run.note(
                f"{target.nat_type} range: the kernel picks an address by hash; the first one, "
                f"{r.addr_lo}, is shown"
            )
        return r.addr_lo, r.ports

    def _pick_port(self, run: _Run, ports: PortRange | None, current: int | None) -> int | None:
        if ports is None or current is None:
            return current
        lo, hi = ports.lo, ports.hi
        if lo <= current <= hi:
            return current
        if lo == hi:
            return int(lo)
        run.note(f"NAT port: {current} is outside {lo}-{hi}; the kernel picks one, {lo} is shown")
        return int(lo)


def _where_it_left(last: NetfilterStep) -> str:
    """``FORWARD after filter FORWARD policy 3``: the hook an accepted packet left, and how."""
    hook = last.hook.value if last.hook else "netfilter"
    return f"{hook} after {last.table} {last.chain} {last.kind.value} {last.number}"


_DECIDED = {Verdict.DROP: "dropped", Verdict.REJECT: "rejected", Verdict.QUEUE: "queued"}


def _nft_verdict(target: Target) -> str:
    """The verdict xtables-monitor prints for a rule with this target: nft_compat maps
    XT_CONTINUE to CONTINUE, REJECT returns NF_DROP and the nat targets NF_ACCEPT."""
    effect = target.effect
    match effect:
        case Effect.JUMP | Effect.GOTO:
            return f"{effect.name}:{target.name}"
        case Effect.REJECT:
            return "DROP"
        case Effect.CONTINUE | Effect.UNKNOWN:
            return "CONTINUE"
        case Effect.ACCEPT | Effect.DROP | Effect.RETURN | Effect.QUEUE:
            return effect.name
        case _:
            assert_never(effect)
