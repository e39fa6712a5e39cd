"""The rulesets a log is explained with, and how a logged step finds its rule in them.

Legacy TRACE names a rule by its position; the kernel's numbering is reproduced exactly here:
rules count from 1 in their chain, a rule without matches whose target is ACCEPT, DROP, RETURN
or QUEUE is logged as ``return`` (user chain) or ``policy`` (built-in chain) at its own
position, and a chain's implicit end is its rule count + 1. nf_tables traces name a rule by
handle (which iptables-save does not print) and re-print it. With ``nft -a list ruleset`` of
the node among the rule files, every rule knows its handle and a step is found by it; without,
``xtables-monitor`` steps (iptables syntax) are found by their text and ``nft monitor`` steps
(nft syntax) by chain, verdict and order when exactly one rule fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, assert_never

from nodetrace.model.packet import Family
from nodetrace.model.verdict import Effect

if TYPE_CHECKING:
    # (not imported at run time: log --summary without --rules needs no ruleset model)
    from nodetrace.model.ipset import IpSets
    from nodetrace.model.netfilter import Chain, Rule, Ruleset


@dataclass(frozen=True, slots=True)
class Resolution:
    """What the ruleset says about one logged step."""

    rule: Rule | None
    effect: Effect
    misfit: str | None = None
    tail: bool = False
    """The step is the chain's implicit end (``return``/``policy`` at rule count + 1)."""
    policy: str | None = None
    """For a built-in chain's end: its policy."""
    how: str = ""
    """How an nf_tables step was matched to its rule (``text``, ``verdict and order``)."""


NOT_RESOLVED = Resolution(None, Effect.UNKNOWN)


def _normalize(text: str) -> str:
    return " ".join(text.split())


@dataclass
class RuleBook:
    """One ruleset per family (``iptables-save`` and ``ip6tables-save``), plus ipsets."""

    rulesets: dict[Family, Ruleset] = field(default_factory=dict)
    ipsets: IpSets | None = None
    sources: tuple[str, ...] = ()
    _legacy_cache: dict[tuple[Family, str], Resolution] = field(default_factory=dict)
    _text_index: dict[tuple[Family, str, str], dict[str, list[Rule]]] = field(default_factory=dict)
    _handle_index: dict[tuple[Family, str, str], dict[int, Rule]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.rulesets)

    def for_family(self, family: Family | None) -> Ruleset | None:
        if family is None:
            return next(iter(self.rulesets.values()), None) if len(self.rulesets) == 1 else None
        return self.rulesets.get(family)

    def legacy(
        self, family: Family | None, prefix: str, table: str, chain: str, kind: str, number: int
    ) -> Resolution:
        """The rule a legacy ``table:chain:kind:number`` names, following the kernel's numbering."""
        ruleset = self.for_family(family)
        if ruleset is None:
            return NOT_RESOLVED
        key = (ruleset.family, prefix)
        cached = self._legacy_cache.get(key)
        if cached is None:
            if len(self._legacy_cache) > 100_000:  # a log naming more steps than any ruleset has
                self._legacy_cache.clear()
            cached = self._legacy_cache[key] = _resolve_legacy(ruleset, table, chain, kind, number)
        return cached

    def by_text(self, family: Family | None, table: str, chain: str, text: str) -> Rule | None:
        """The rule whose iptables-save text is ``text`` (as xtables-monitor re-prints it)."""
        ruleset = self.for_family(family)
        if ruleset is None:
            return None
        index_key = (ruleset.family, table, chain)
        index = self._text_index.get(index_key)
        if index is None:
            index = {}
            c = ruleset.chain(table, chain)
            for rule in c.rules if c is not None else ():
                index.setdefault(_normalize(rule.text), []).append(rule)
            self._text_index[index_key] = index
        found = index.get(_normalize(text))
        return found[0] if found else None

    def knows_handles(self, family: Family | None, table: str) -> bool:
        """Whether every rule of ``table`` has its nf_tables handle (an ``nft -a list ruleset``
        of the node was read and agreed with the ruleset)."""
        ruleset = self.for_family(family)
        t = ruleset.tables.get(table) if ruleset is not None else None
        rules = [r for c in t.chains.values() for r in c.rules] if t is not None else []
        return bool(rules) and all(r.handle is not None for r in rules)

    def by_handle(self, family: Family | None, table: str, chain: str, handle: int) -> Rule | None:
        """The rule of ``chain`` whose nf_tables handle is ``handle``."""
        ruleset = self.for_family(family)
        if ruleset is None:
            return None
        index_key = (ruleset.family, table, chain)
        index = self._handle_index.get(index_key)
        if index is None:
            c = ruleset.chain(table, chain)
            rules = c.rules if c is not None else ()
            index = {r.handle: r for r in rules if r.handle is not None}
            self._handle_index[index_key] = index
        return index.get(handle)

    def chain(self, family: Family | None, table: str, chain: str) -> Chain | None:
        ruleset = self.for_family(family)
        return ruleset.chain(table, chain) if ruleset is not None else None


def _resolve_legacy(
    ruleset: Ruleset, table: str, chain_name: str, kind: str, number: int
) -> Resolution:
    if table not in ruleset.tables:
        return Resolution(None, Effect.UNKNOWN, f"table {table} is not in the ruleset")
    chain = ruleset.chain(table, chain_name)
    if chain is None:
        return Resolution(
            None, Effect.UNKNOWN, f"chain {chain_name} is not in table {table} of the ruleset"
        )
    tail = chain.tail_number
    where = f"{chain_name} has {len(chain.rules)} rule{'s' if len(chain.rules) != 1 else ''}"
    if number < 1 or number > tail:
        return Resolution(
            None, Effect.UNKNOWN, f"{kind}:{number} is past the chain's end ({where}, end = {tail})"
        )
    if kind == "rule":
        rule = chain.rule(number)
        if rule is None:
            return Resolution(
                None,
                Effect.UNKNOWN,
                f"rule:{number} names the chain's end ({where}); the kernel logs that as "
                f"{'policy' if chain.builtin else 'return'}",
            )
        misfit = None
        if rule.is_unconditional:
            misfit = (
                f"rule {number} has no matches and a {rule.target.name} target: the kernel logs it as "
                f"{'policy' if chain.builtin else 'return'}:{number}, not rule:{number}"
            )
        return Resolution(rule, rule.effect, misfit)
    expected = "policy" if chain.builtin else "return"
    misfit = None
    if kind != expected:
        misfit = f"{kind} in a {'built-in' if chain.builtin else 'user'} chain: the kernel would log {expected}"
    if number == tail:
        if chain.builtin:
            policy = chain.policy or "ACCEPT"
            return Resolution(None, Effect.of_word(policy), misfit, tail=True, policy=policy)
        return Resolution(None, Effect.RETURN, misfit, tail=True)
    rule = chain.rule(number)
    assert rule is not None
    if not rule.is_unconditional:
        misfit = (
            f"{kind}:{number} needs rule {number} to be a bare ACCEPT/DROP/RETURN, but it is "
            f"'{rule.text}'"
        )
    return Resolution(rule, rule.effect, misfit)


def nft_resolve(
    book: RuleBook,
    family: Family | None,
    table: str,
    chain: str,
    kind: str,
    verdict: str | None,
    target_chain: str | None,
    rule_text: str | None,
    after: int,
    handle: int | None = None,
) -> Resolution:
    """The rule an nf_tables rule event names: by its handle when the book knows handles, else
    by its iptables text, else by verdict and order.

    ``after`` is the position of the last rule matched in this chain during this traversal
    (rules match in order, so the next one lies beyond it).
    """
    if kind != "rule":
        return NOT_RESOLVED
    c = book.chain(family, table, chain)
    if c is None:
        if book.for_family(family) is None:
            return NOT_RESOLVED
        return Resolution(
            None, Effect.UNKNOWN, f"chain {chain} is not in table {table} of the ruleset"
        )
    if handle is not None and book.knows_handles(family, table):
        found = book.by_handle(family, table, chain, handle)
        if found is None:
            return Resolution(
                None, Effect.UNKNOWN, f"no rule of {chain} has handle {handle}", how="handle"
            )
        misfit = None
        text_differs = rule_text is not None and _normalize(rule_text) != _normalize(found.text)
        if rule_text and rule_text.startswith("-A ") and text_differs:
            # the ruleset changed between the listing and the log, or the files are of two nodes
            misfit = (
                f"handle {handle} is '{found.text}' in the ruleset, but the trace prints "
                f"'{rule_text}'"
            )
        return Resolution(found, found.effect, misfit, how="handle")
    if rule_text and rule_text.startswith("-A "):
        rule = book.by_text(family, table, chain, rule_text)
        if rule is not None:
            return Resolution(rule, rule.effect, how="text")
        return Resolution(
            None, Effect.UNKNOWN, f"no rule of {chain} reads '{rule_text}'", how="text"
        )
    effect = Effect.of_word(verdict or "")
    candidates = [
        r
        for r in c.rules
        if r.position > after
        and _fits(r, effect, target_chain, rule_text)
        and (not rule_text or _nft_text_agrees(r.text, rule_text))
    ]
    if len(candidates) == 1:
        rule = candidates[0]
        return Resolution(rule, rule.effect, how="verdict and order")
    return Resolution(
        None, effect, how=f"{len(candidates)} rules fit" if candidates else "no rule fits"
    )


def _fits(rule: Rule, effect: Effect, target_chain: str | None, text: str | None) -> bool:
    """Whether a rule could be the one an event with this verdict and text names."""
    target = rule.target
    match effect:
        case Effect.JUMP | Effect.GOTO:
            from nodetrace.model.netfilter import JumpTarget

            return isinstance(target, JumpTarget) and target.chain == target_chain
        case Effect.DROP:
            # REJECT ends in NF_DROP, so nf_tables reports it as a drop.
            return rule.effect is Effect.DROP or target.name == "REJECT"
        case Effect.ACCEPT | Effect.RETURN:
            return rule.effect is effect
        case Effect.CONTINUE:
            if rule.effect is not Effect.CONTINUE:
                return False
            if text and "nftrace set 1" in text:
                return target.name == "TRACE"
            if text and "xt target" in text:
                return f'xt target "{target.name}"' in text or f"xt target {target.name}" in text
            return True
        case Effect.REJECT | Effect.QUEUE | Effect.UNKNOWN:
            return False
        case _:
            assert_never(effect)


_ADDR_RE = re.compile(
    r"(?<![\w:.])(\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?|[0-9a-fA-F]*:[0-9a-fA-F:]+(?:/\d{1,3})?)(?![\w:.])"
)
_HOST_SUFFIX_RE = re.compile(r"/(?:32|128)$")
_NFT_PROTO_RE = re.compile(
    r"(?:l4proto|ip protocol|ip6 nexthdr) (\w+)"
    r"|(?:^|\s)(tcp|udp|udplite|sctp|icmp|icmpv6) (?:sport|dport|flags|type|code|id|sequence|option)\b"
)
_IPT_PROTO_RE = re.compile(r"(?:^|\s)-p (\S+)")
_PORT_RE = re.compile(r"\b([sd]port) (\d+)")
_IPT_PORT_RE = re.compile(r"--([sd]port) (\d+)")


def _addresses(text: str) -> set[str]:
    return {_HOST_SUFFIX_RE.sub("", a) for a in _ADDR_RE.findall(text) if a.count(":") != 1}


def _nft_text_agrees(ipt: str, nft: str) -> bool:
    """Whether an iptables rule could be the one ``nft monitor`` printed in nft syntax.

    Compares what both syntaxes show the same way: addresses, protocol, ports, and the
    presence of conntrack state, physdev and MAC matches (comments are not shown by nft).
    """
    ipt_body = ipt.split(" -m comment --comment ", 1)[0] if '"' in ipt else ipt
    if _addresses(re.sub(r"--mac-source \S+", "", ipt_body)) != _addresses(
        re.sub(r"ether [sd]addr \S+", "", nft)
    ):
        return False
    nft_proto = _NFT_PROTO_RE.search(nft)
    ipt_proto = _IPT_PROTO_RE.search(ipt)
    if (nft_proto is None) != (ipt_proto is None):
        return False
    if nft_proto and ipt_proto:
        nft_name = (nft_proto.group(1) or nft_proto.group(2)).lower()
        ipt_name = ipt_proto.group(1).lower()
        if nft_name != ipt_name and {nft_name, ipt_name} != {"icmpv6", "ipv6-icmp"}:
            return False
    if set(_PORT_RE.findall(nft)) != set(_IPT_PORT_RE.findall(ipt)):
        return False
    checks = (
        (
            "ct state" in nft or 'xt match "state"' in nft or "xt match state" in nft,
            "-m state" in ipt or "-m conntrack" in ipt,
        ),
        ("physdev" in nft, "-m physdev" in ipt),
        ("ether saddr" in nft or "xt match mac" in nft or 'xt match "mac"' in nft, "-m mac" in ipt),
    )
    return all(a == b for a, b in checks)
