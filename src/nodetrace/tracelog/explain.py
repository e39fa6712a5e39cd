"""Explain one packet's pass: the outcome, the step that decided it, and what each step meant.

A TRACE line says only that a rule matched. What that rule *did* comes from the ruleset when
one is given (``--rules``), and otherwise from what the log shows next: a jump shows as a line
in a new chain, a return as a line back in the calling chain, an ACCEPT as the next table or
hook, a DROP as silence. The outcome is the same whichever detail is asked for, because the
summary and the per-packet view both call :func:`conclude`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from operator import attrgetter, indexOf
from typing import NamedTuple, assert_never

from nodetrace.model.packet import Family, Packet
from nodetrace.model.trace import (
    Hook,
    NetfilterStep,
    Outcome,
    PacketDump,
    SourceSpan,
    StepKind,
    Trace,
)
from nodetrace.model.verdict import Effect
from nodetrace.parsers.trace_kernel_log import (
    DumpParser,
    packet_from_dump,
    parse_devs,
)
from nodetrace.parsers.trace_nft_events import NftEvent
from nodetrace.tracelog.group_legacy import LegacyPass, PassShape, PrefixInfo, hooks_of
from nodetrace.tracelog.group_nft import NftPass
from nodetrace.tracelog.observed import Conclusion, ObservedPacket
from nodetrace.tracelog.rulebook import NOT_RESOLVED, Resolution, RuleBook, nft_resolve
from nodetrace.tracelog.sets import set_notes

_BUILTIN_HOOK = attrgetter("builtin_hook")
_REPAIRED = attrgetter("repaired")
_LAST_LINE = attrgetter("last_line")
LEGACY_GROUPING = (
    "legacy TRACE has no packet id: lines were grouped by packet headers, hook order and time"
)


class _View(ABC):
    """The facts :func:`conclude` needs of a pass, whatever format it came from.

    Per-step facts are read on demand: the summary only looks at a few steps of each pass.
    """

    n: int

    @abstractmethod
    def hook(self, i: int) -> str | None: ...

    def hooks(self) -> list[str | None]:
        return [self.hook(i) for i in range(self.n)]

    def first_in(self, hook: str) -> int | None:
        """The first step in ``hook``."""
        return next((i for i in range(self.n) if self.hook(i) == hook), None)

    @abstractmethod
    def table(self, i: int) -> str: ...

    @abstractmethod
    def chain(self, i: int) -> str: ...

    @abstractmethod
    def kind(self, i: int) -> str: ...

    @abstractmethod
    def resolution(self, i: int) -> Resolution: ...

    @abstractmethod
    def label(self, i: int) -> str: ...

    @abstractmethod
    def devs(self, i: int) -> dict[str, str]: ...

    def egress(self, i: int) -> str | None:
        devs = self.devs(i)
        return devs.get("PHYSOUT") or devs.get("OUT") or None

    def ingress(self, i: int) -> str | None:
        devs = self.devs(i)
        return devs.get("PHYSIN") or devs.get("IN") or None


class LegacyView(_View):
    """A legacy pass as :func:`conclude` reads it: from a grouped pass, or from the shape of
    passes (prefixes, device fields, family) that the compiled summary counts."""

    def __init__(self, p: LegacyPass | PassShape, book: RuleBook | None) -> None:
        self.p = p
        self.book = book
        self.infos = p.infos
        self.n = len(self.infos)
        self.family = p.family
        self._resolutions: dict[int, Resolution] = {}

    def hook(self, i: int) -> str | None:
        """A built-in chain's hook, or the hook of the last built-in chain before a user chain."""
        infos = self.infos
        while i >= 0:
            hook = infos[i].builtin_hook
            if hook is not None:
                return hook
            i -= 1
        return None

    def first_in(self, hook: str) -> int | None:
        # a pass enters a hook through a built-in chain's record
        try:
            return indexOf(map(_BUILTIN_HOOK, self.infos), hook)
        except ValueError:
            return None

    def table(self, i: int) -> str:
        return self.infos[i].table

    def chain(self, i: int) -> str:
        return self.infos[i].chain

    def kind(self, i: int) -> str:
        return self.infos[i].kind

    def resolution(self, i: int) -> Resolution:
        if not self.book:
            return NOT_RESOLVED
        res = self._resolutions.get(i)
        if res is None:
            info = self.infos[i]
            res = self._resolutions[i] = self.book.legacy(
                self.family,
                info.prefix,
                info.table,
                info.chain,
                info.kind,
                info.number,
            )
        return res

    def label(self, i: int) -> str:
        return self.infos[i].prefix

    def devs(self, i: int) -> dict[str, str]:
        return parse_devs(self.p.devs[i])


class NftView(_View):
    def __init__(self, p: NftPass, book: RuleBook | None) -> None:
        self.p = p
        self.book = book
        self.n = len(p.events)
        self.family = p.events[0].family if p.events else None
        self._resolutions = self._resolve_all()

    def hook(self, i: int) -> str | None:
        return self.p.hooks[i]

    def table(self, i: int) -> str:
        return self.p.events[i].table

    def chain(self, i: int) -> str:
        return self.p.events[i].chain

    def kind(self, i: int) -> str:
        return self.p.events[i].kind.value

    def _resolve_all(self) -> list[Resolution]:
        out: list[Resolution] = []
        after: dict[tuple[str | None, str, str], int] = {}
        for e, hook in zip(self.p.events, self.p.hooks, strict=True):
            effect = _event_effect(e)
            if not self.book:
                out.append(Resolution(None, effect))
                continue
            key = (hook, e.table, e.chain)
            res = nft_resolve(
                self.book,
                e.family,
                e.table,
                e.chain,
                e.kind.value,
                e.verdict,
                e.target_chain,
                e.rule_text,
                after.get(key, 0),
                handle=e.handle,
            )
            if res.rule is not None:
                after[key] = res.rule.position
            if e.kind is StepKind.POLICY or e.kind is StepKind.RETURN:
                c = self.book.chain(e.family, e.table, e.chain)
                tail = e.kind is StepKind.RETURN or (c is not None and c.builtin)
                policy = e.verdict if e.kind is StepKind.POLICY else None
                res = Resolution(None, effect, res.misfit, tail=tail, policy=policy)
            elif res.effect is not effect and effect is not Effect.UNKNOWN:
                # the event's own verdict is the truth; a rule that disagrees is a misfit
                misfit = res.misfit
                if res.rule is not None and res.effect is not Effect.UNKNOWN:
                    misfit = misfit or (
                        f"the ruleset's rule does {res.effect.value}, the trace says {effect.value}"
                    )
                res = Resolution(res.rule, effect, misfit, how=res.how)
            out.append(res)
        return out

    def resolution(self, i: int) -> Resolution:
        return self._resolutions[i]

    def label(self, i: int) -> str:
        e = self.p.events[i]
        if e.kind is StepKind.RULE:
            rule = self._resolutions[i].rule
            if rule is not None:
                return f"{e.table}:{e.chain}:rule:{rule.position}"
            return f"{e.table}:{e.chain}:" + (
                f"handle {e.handle}" if e.handle is not None else "rule"
            )
        return f"{e.table}:{e.chain}:{e.kind.value}"

    def devs(self, i: int) -> dict[str, str]:
        index = self.p.packet_of[i] if i < len(self.p.packet_of) else -1
        if index < 0:
            return {}
        return {k: v for k, v in self.p.packets[index].dump.fields if k in ("IN", "OUT")}


def _event_effect(e: NftEvent) -> Effect:
    if e.kind is StepKind.RETURN:
        return Effect.RETURN
    effect = Effect.of_word(e.verdict or "")
    if (
        effect is Effect.DROP
        and e.rule_text
        and ("-j REJECT" in e.rule_text or " reject" in e.rule_text)
    ):
        return Effect.REJECT
    return effect


def _rule_words(res: Resolution) -> str:
    return f": {res.rule.text}" if res.rule is not None else ""


def conclude(v: _View) -> Conclusion:
    """The outcome of a pass and the step that decided it."""
    last = v.n - 1
    res = v.resolution(last)
    effect = res.effect
    label = v.label(last)
    if effect in (Effect.DROP, Effect.REJECT):
        outcome = Outcome.DROPPED if effect is Effect.DROP else Outcome.REJECTED
        verb = "dropped" if effect is Effect.DROP else "rejected"
        by = f"the policy of {v.table(last)} {v.chain(last)}" if res.tail else label
        rule_text = res.rule.text if res.rule is not None else None
        return Conclusion(
            outcome, last, None, f"{verb} by {by}{_rule_words(res)}", label, rule_text
        )
    if effect is Effect.QUEUE:
        reason = f"queued to a userspace program by {label}; that program gave the verdict"
        return Conclusion(Outcome.ENDS, last, None, reason, label)
    post = v.first_in("POSTROUTING")
    if post is not None:
        egress = v.egress(post)
        verdict = post - 1 if post > 0 else None
        before = v.hook(verdict) if verdict is not None else None
        where = f" after {before}" if before else ""
        out = f", out through {egress}" if egress else ""
        return Conclusion(
            Outcome.ACCEPTED, verdict, egress, f"accepted{where} into POSTROUTING{out}"
        )
    if effect is Effect.ACCEPT:
        hook = v.hook(last)
        by = f"the policy of {v.table(last)} {v.chain(last)}" if res.tail else label
        if hook == "INPUT":
            into = v.ingress(last)
            reason = f"accepted into INPUT by {by}: delivered to the host" + (
                f" (in through {into})" if into else ""
            )
            return Conclusion(Outcome.ACCEPTED, last, None, reason)
        if hook in ("FORWARD", "OUTPUT"):
            egress = v.egress(last)
            reason = f"accepted in {hook} by {by}; no table traced it in POSTROUTING" + (
                f"; leaves through {egress}" if egress else ""
            )
            return Conclusion(Outcome.ACCEPTED, last, egress, reason)
        reason = f"the trace ends after step {v.n}: accepted in {hook or 'its hook'} by {by}, then nothing more was traced (routing dropped it, or no later table logged it)"
        return Conclusion(Outcome.ENDS, last, None, reason, label)
    rule_text = res.rule.text if res.rule is not None else None
    return Conclusion(Outcome.ENDS, None, None, _why_it_ends(v, last, res), label, rule_text)


def _why_it_ends(v: _View, last: int, res: Resolution) -> str:
    n = v.n
    label = v.label(last)
    where = f"{v.table(last)} {v.hook(last) or v.chain(last)}"
    head = f"the trace ends after step {n}"
    if res.misfit is not None:
        return f"{head}; {label} does not fit the ruleset ({res.misfit}), so its effect is unknown"
    if res.rule is not None and res.effect is Effect.UNKNOWN:
        return f"{head}: {label} has target {res.rule.target.name}, which nodetrace does not model; it decided the packet's fate"
    if res.effect in (Effect.CONTINUE, Effect.JUMP, Effect.GOTO, Effect.RETURN) or (
        res.tail and res.effect is not Effect.UNKNOWN
    ):
        return f"{head}: after {label} the kernel logs more lines for this packet; they are missing (rate-limited, lost, or the log was cut)"
    kind = v.kind(last)
    num = label.rsplit(":", 1)[-1]
    if kind == "rule":
        return f"{head}: {label} matched last. If the packet was lost here, that rule's target dropped or rejected it; otherwise the next lines are missing. Give --rules to see the target"
    if kind == "policy":
        return f"{head} at the policy of {where} (or a bare ACCEPT/DROP rule at position {num}): dropped here if that is DROP; if ACCEPT, nothing traced the packet afterwards. Give --rules to know"
    return f"{head}: {v.chain(last)} ended there ({label}: its end, or a bare ACCEPT/DROP/RETURN at position {num}): dropped here if that was a DROP; if an ACCEPT, nothing traced the packet afterwards; otherwise the next lines are missing. Give --rules to know"


# ---------------------------------------------------------------------------------------------
# Per-step notes (the detailed view only)


def _stacks(v: _View, hooks: list[str | None]) -> list[tuple[str, ...]]:
    """The chain call stack at each step, rebuilt from the order of chains in the log."""
    out: list[tuple[str, ...]] = []
    stack: list[str] = []
    for i in range(v.n):
        chain = v.chain(i)
        if i == 0 or (hooks[i], v.table(i)) != (hooks[i - 1], v.table(i - 1)):
            stack = [chain]
        elif chain == stack[-1]:
            pass
        elif chain in stack:
            del stack[stack.index(chain) + 1 :]
        else:
            stack.append(chain)
        out.append(tuple(stack))
    return out


def notes(v: _View) -> list[str | None]:
    hooks = v.hooks()
    stacks = _stacks(v, hooks)
    out: list[str | None] = []
    for i in range(v.n):
        nxt = i + 1 if i + 1 < v.n else None
        if nxt is None:
            relation = "end"
        elif (hooks[nxt], v.table(nxt)) != (hooks[i], v.table(i)):
            relation = "next"
        elif v.chain(nxt) == v.chain(i):
            relation = "same"
        elif v.chain(nxt) in stacks[i]:
            relation = "back"
        else:
            relation = "deeper"
        caller = stacks[i][-2] if len(stacks[i]) > 1 else None
        out.append(_note(v, i, relation, caller, nxt, hooks))
    return out


def _effect_note(
    v: _View, i: int, res: Resolution, effect: Effect, table: str, hook: str, caller: str | None
) -> str | None:
    """What a step did, read off its rule's effect."""
    match effect:
        case Effect.JUMP | Effect.GOTO:
            target = res.rule.jump_chain if res.rule is not None else None
            if target is None and isinstance(v, NftView):
                target = v.p.events[i].target_chain
            if effect is Effect.GOTO:
                return f"goto {target}" if target else "goto"
            return f"jump to {target}" if target else "jump"
        case Effect.RETURN:
            return f"RETURN to {caller}" if caller else "RETURN"
        case Effect.CONTINUE:
            name = res.rule.target.name if res.rule is not None else ""
            if name == "TRACE":
                return "the TRACE rule: tracing starts here (nf_tables logs it, legacy iptables does not)"
            return f"{name}: goes on" if name else "goes on"
        case Effect.ACCEPT:
            return f"ACCEPT: {table} {hook} is done with the packet"
        case Effect.DROP:
            return "DROP: the packet is dropped here"
        case Effect.REJECT:
            return "REJECT: the packet is dropped and an error is sent back"
        case Effect.QUEUE:
            return "QUEUE: handed to a userspace program"
        case Effect.UNKNOWN:
            return f"target {res.rule.target.name} is not modelled" if res.rule else None
        case _:
            assert_never(effect)


def _note(
    v: _View, i: int, relation: str, caller: str | None, nxt: int | None, hooks: list[str | None]
) -> str | None:
    res = v.resolution(i)
    kind = v.kind(i)
    chain = v.chain(i)
    table = v.table(i)
    hook = hooks[i] or "?"
    then = f"{v.table(nxt)} {hooks[nxt] or v.chain(nxt)}" if nxt is not None else ""
    effect = res.effect
    if res.rule is not None or res.tail or effect is not Effect.UNKNOWN:
        if res.tail:
            if res.policy is not None:
                return f"end of {hook} in {table}: policy {res.policy.upper()}"
            back = f": back to {caller}" if caller else ""
            return f"end of {chain}{back}"
        return _effect_note(v, i, res, effect, table, hook, caller)
    # No ruleset: read the effect off what the log shows next.
    num = v.label(i).rsplit(":", 1)[-1]
    if kind == "rule":
        if relation == "deeper" and nxt is not None:
            return f"matched: jump to {v.chain(nxt)}"
        if relation == "same":
            return "matched; its target did not end the chain (LOG, MARK, CT...)"
        if relation == "back":
            return f"matched: RETURN to {v.chain(nxt) if nxt is not None else caller}"
        if relation == "next":
            return f"matched: its target ended {table} {hook} with ACCEPT (or a NAT target); next {then}"
        return "matched last: its target decided (DROP or REJECT if the packet was lost here)"
    if kind == "policy":
        what = f"end of {hook} in {table}: its policy (or a bare ACCEPT/DROP at position {num})"
        if relation == "next":
            return f"{what}; the packet went on, so ACCEPT"
        if relation == "end":
            return f"{what}; the last line of this packet"
        return what
    empty = " (the chain is empty)" if num == "1" else ""
    what = (
        f"return:{num} is the end of {chain}{empty} or a bare ACCEPT/DROP/RETURN at position {num}"
    )
    if relation == "back" and nxt is not None:
        return f"{what}: back to {v.chain(nxt)}, so the end (or RETURN)"
    if relation == "next":
        return f"{what}; the packet left {table} {hook} here and went on to {then}, so it was an unconditional ACCEPT"
    if relation == "end":
        return f"{what}; nothing follows"
    return what


# ---------------------------------------------------------------------------------------------
# Building the observed packet


def _hook(name: str | None) -> Hook | None:
    return Hook(name) if name is not None and name in Hook.__members__ else None


def _assumptions(
    book: RuleBook | None, legacy: bool, nft_syntax: bool = False, by_handle: bool = False
) -> tuple[str, ...]:
    out: list[str] = []
    if legacy:
        out.append(LEGACY_GROUPING)
    elif book and by_handle:
        out.append("rules were found by their nf_tables handle (nft -a list ruleset)")
    elif book:
        out.append(
            "nf_tables names rules by handle, which iptables-save does not print: rules were found "
            + (
                "by chain, verdict, order and the addresses, protocol and ports nft prints"
                if nft_syntax
                else "by the text xtables-monitor re-prints"
            )
        )
    if book:
        out.append(
            f"rules from {', '.join(book.sources)}: assumed unchanged since the log was written"
        )
    else:
        out.append(
            "no ruleset given (--rules): rule text unknown, verdicts read off what the log shows next"
        )
    return tuple(out)


def _destination_rewrite(
    before: PacketDump | None, after: PacketDump | None, previous_table: str
) -> str | None:
    """Say so when a packet's destination changed since its previous step (NAT)."""
    if before is None or after is None:
        return None
    old = _destination(before)
    new = _destination(after)
    if old == new:
        return None
    how = (
        "by the nat table's rule above"
        if previous_table == "nat"
        else "by conntrack (NAT of an established connection: no nat line is traced)"
    )
    return f"destination rewritten {old} -> {new} {how}"


def _destination(dump: PacketDump) -> str:
    address = dump.get("DST") or "?"
    port = dump.get("DPT")
    return f"{address}:{port}" if port else address


class _StepPlan(NamedTuple):
    """What a legacy step says that follows from its prefix, its place in the pass and the
    ruleset alone, not from the packet: the same for every pass of one shape."""

    table: str
    chain: str
    kind: StepKind
    number: int
    hook: Hook | None
    resolution: Resolution
    base_note: str | None
    """The step's note before what ``--ipsets`` adds for the packet."""
    trace_rule: str | None
    """On a hook's first step: the ``-j TRACE`` rule above it, which legacy never logs."""
    note: str | None
    """``base_note`` and ``trace_rule`` joined: the note when no set match is explained."""


class _Plans:
    """The step plans of each pass shape (family and prefix sequence) under one ruleset.

    A log's passes take few shapes (about one per kind of traffic and port), and everything
    but the devices, the dump and the set matches of a step follows from the shape: each
    shape is explained once (:func:`notes`, the rule lookups) and later passes of that shape
    reuse the plan. A new ruleset starts afresh; the cache is bounded.
    """

    def __init__(self) -> None:
        self.book: RuleBook | None = None
        self.by_shape: dict[tuple[Family | None, tuple[PrefixInfo, ...]], list[_StepPlan]] = {}

    def of(self, v: LegacyView) -> list[_StepPlan]:
        if v.book is not self.book:
            self.book, self.by_shape = v.book, {}
        key = (v.family, tuple(v.infos))
        plan = self.by_shape.get(key)
        if plan is None:
            if len(self.by_shape) >= _CACHE_LIMIT:
                self.by_shape.clear()
            plan = self.by_shape[key] = _plan(v)
        return plan


def _plan(v: LegacyView) -> list[_StepPlan]:
    """Explain each step of a pass as far as its shape allows (see :class:`_Plans`)."""
    hooks = hooks_of(v.infos)
    out: list[_StepPlan] = []
    for i, (info, note) in enumerate(zip(v.infos, notes(v), strict=True)):
        first_in_hook = i == 0 or hooks[i - 1] != hooks[i]
        trace_rule = _trace_rule(v, i) if first_in_hook else None
        res = v.resolution(i)
        out.append(
            _StepPlan(
                table=info.table,
                chain=info.chain,
                kind=StepKind(info.kind),
                number=info.number,
                hook=_hook(hooks[i]),
                resolution=res,
                base_note=note,
                trace_rule=trace_rule,
                note=_joined(note, trace_rule),
            )
        )
    return out


_CACHE_LIMIT = 4096
"""Entries a per-log cache below keeps at most (a busy node's log needs a few hundred)."""
_PLANS = _Plans()
_DUMPS = DumpParser()
_DEVICES: dict[str, tuple[str, str, str | None, str | None]] = {}


def _devices(text: str) -> tuple[str, str, str | None, str | None]:
    """IN, OUT, PHYSIN and PHYSOUT of a record's device fields (few distinct: cached)."""
    found = _DEVICES.get(text)
    if found is None:
        if len(_DEVICES) >= _CACHE_LIMIT:
            _DEVICES.clear()
        devs = parse_devs(text)
        found = _DEVICES[text] = (
            devs.get("IN", ""),
            devs.get("OUT", ""),
            devs.get("PHYSIN"),
            devs.get("PHYSOUT"),
        )
    return found


def observe_legacy(
    p: LegacyPass, book: RuleBook | None, *, index: int, source: str
) -> ObservedPacket:
    v = LegacyView(p, book)
    conclusion = conclude(v)
    plans = _PLANS.of(v)
    steps: list[NetfilterStep] = []
    family = v.family or Family.IPV4
    warnings: list[str] = []
    if p.starts_midway:
        warnings.append(
            "the first line is in a user chain: earlier lines of this packet are missing"
        )
    if any(map(_REPAIRED, p.records)):
        warnings.append(
            "spaces lost between fields were put back (the log was copied from a web page?)"
        )
    dumps = _DUMPS.dumps(p.records)
    header = dumps[0]
    packet = packet_from_dump(header) if header is not None else None
    sets = book is not None and book.ipsets is not None
    before, before_ident, before_table = header, p.records[0].ident, ""
    for rec, plan, dump in zip(p.records, plans, dumps, strict=True):
        in_dev, out_dev, physin, physout = _devices(rec.devs)
        res = plan.resolution
        note = plan.note
        if sets and res.rule is not None:
            note = _joined(_with_sets(plan.base_note, res, packet, book), plan.trace_rule)
        # the destination is read from the packet part of the dump: the same text, the same one
        if rec.ident != before_ident:
            rewrite = _destination_rewrite(before, dump, before_table)
            if rewrite is not None:
                note = f"{rewrite}; {note}" if note else rewrite
        before, before_ident, before_table = dump, rec.ident, plan.table
        steps.append(
            NetfilterStep(
                family=family,
                table=plan.table,
                chain=plan.chain,
                kind=plan.kind,
                number=plan.number,
                hook=plan.hook,
                in_dev=in_dev,
                out_dev=out_dev,
                physin=physin,
                physout=physout,
                rule=res.rule,
                note=note,
                dump=dump,
                span=SourceSpan(source, rec.first_line, rec.last_line),
                misfit=res.misfit,
            )
        )
    first = p.records[0]
    trace = Trace(
        steps=tuple(steps),
        outcome=conclusion.outcome,
        verdict_step=conclusion.verdict_step,
        reason=conclusion.reason,
        assumptions=_assumptions(book, legacy=True),
        packet=packet,
    )
    return ObservedPacket(
        index=index,
        trace=trace,
        conclusion=conclusion,
        source=source,
        first_line=first.first_line,
        last_line=max(map(_LAST_LINE, p.records)),
        family=v.family,
        header=header,
        log_format="kernel",
        occurrence=p.occurrence,
        same_ports=p.same_ports,
        time=_stamp(first.envelope),
        warnings=tuple(warnings),
    )


def _joined(note: str | None, extra: str | None) -> str | None:
    if extra is None:
        return note
    return f"{note}; {extra}" if note else extra


def _with_sets(
    note: str | None, res: Resolution, packet: Packet | None, book: RuleBook | None
) -> str | None:
    """The note plus what ``--ipsets`` says about the rule's set matches for this packet."""
    if book is None or book.ipsets is None or res.rule is None:
        return note
    extra = set_notes(res.rule, packet, book.ipsets)
    if not extra:
        return note
    return "; ".join([note, *extra] if note else extra)


def _trace_rule(v: LegacyView, i: int) -> str | None:
    """On a hook's first step: the ``-j TRACE`` rule above it, which legacy never logs."""
    if not v.book or v.infos[i].builtin_hook is None:
        return None
    chain = v.book.chain(v.family, v.table(i), v.chain(i))
    if chain is None:
        return None
    number = v.infos[i].number
    traces = [r.position for r in chain.rules[: max(number - 1, 0)] if r.target.name == "TRACE"]
    if not traces:
        return None
    which = ", ".join(str(n) for n in traces)
    return f"rule {which} (-j TRACE) started the trace; legacy TRACE never logs that rule itself"


def _stamp(envelope: str) -> str | None:
    text = envelope.strip()
    return text or None


def observe_nft(
    p: NftPass, book: RuleBook | None, *, index: int, source: str, log_format: str
) -> ObservedPacket:
    v = NftView(p, book)
    conclusion = conclude(v)
    step_notes = notes(v)
    family = v.family or Family.IPV4
    header_packet = packet_from_dump(p.packets[0].dump) if p.packets else None
    steps: list[NetfilterStep] = []
    for i, e in enumerate(p.events):
        res = v.resolution(i)
        devs = v.devs(i)
        pk = p.packet_of[i]
        note = _with_sets(step_notes[i], res, header_packet, book)
        if book and res.rule is None and e.kind is StepKind.RULE and res.how and not res.misfit:
            why = f"rule not identified: {res.how}"
            note = f"{note}; {why}" if note else why
        steps.append(
            NetfilterStep(
                family=family,
                table=e.table,
                chain=e.chain,
                kind=e.kind,
                number=res.rule.position if res.rule is not None else None,
                hook=_hook(v.hook(i)),
                in_dev=devs.get("IN", ""),
                out_dev=devs.get("OUT", ""),
                handle=e.handle,
                verdict=e.verdict,
                rule_text=e.rule_text,
                rule=res.rule,
                note=note,
                dump=p.packets[pk].dump if pk >= 0 else None,
                span=SourceSpan(source, e.line, e.line),
                misfit=res.misfit,
            )
        )
    header = p.packets[0].dump if p.packets else None
    lines = [e.line for e in p.events] + [pk.line for pk in p.packets]
    warnings: list[str] = []
    if not p.packets:
        warnings.append("no packet line for this trace id: headers unknown")
    trace = Trace(
        steps=tuple(steps),
        outcome=conclusion.outcome,
        verdict_step=conclusion.verdict_step,
        reason=conclusion.reason,
        assumptions=_assumptions(
            book,
            legacy=False,
            nft_syntax=log_format == "nft-monitor",
            by_handle=any(v.resolution(i).how == "handle" for i in range(len(p.events))),
        ),
        packet=packet_from_dump(header) if header is not None else None,
    )
    return ObservedPacket(
        index=index,
        trace=trace,
        conclusion=conclusion,
        source=source,
        first_line=min(lines),
        last_line=max(lines),
        family=v.family,
        header=header,
        log_format=log_format,
        trace_id=p.trace_id,
        occurrence=p.occurrence,
        warnings=tuple(warnings),
    )


def conclude_legacy(p: LegacyPass, book: RuleBook | None) -> Conclusion:
    return conclude(LegacyView(p, book))


def conclude_shape(shape: PassShape, book: RuleBook | None) -> Conclusion:
    """The conclusion of every pass of this shape (the compiled summary's passes)."""
    return conclude(LegacyView(shape, book))


def conclude_nft(p: NftPass, book: RuleBook | None) -> Conclusion:
    return conclude(NftView(p, book))


__all__ = [
    "LegacyView",
    "NftView",
    "PrefixInfo",
    "conclude",
    "conclude_legacy",
    "conclude_nft",
    "conclude_shape",
    "notes",
    "observe_legacy",
    "observe_nft",
]
