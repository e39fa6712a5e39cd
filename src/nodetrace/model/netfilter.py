"""An iptables ruleset as data: Ruleset > Table > Chain > Rule.

A rule keeps the text it was saved as and its source line, so every answer can quote the exact
rule. The kernel's TRACE numbering depends only on a rule's position and on whether it is
*unconditional* (no ``-s/-d/-i/-o/-p/-f``, no match module, standard verdict target): that test
lives here, next to the data it reads, because the log explainer and the engine must agree on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from typing import Generic, TypeVar

from nodetrace.errors import SourcePos
from nodetrace.model.packet import Family

T = TypeVar("T")

IPNetwork = IPv4Network | IPv6Network

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
"""Built-in chains of each table, in the order ``iptables-save`` prints them (hook order)."""

STANDARD_VERDICTS = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE"})
"""Targets the kernel stores as a negative standard verdict (what makes ``return``/``policy``)."""


class Backend(StrEnum):
    """Which iptables implementation wrote a ruleset or a log: it decides the TRACE format."""

    LEGACY = "legacy"
    NFT = "nft"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Neg(Generic[T]):
    """A value with the ``!`` that iptables allows in front of it."""

    value: T
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IpSpec:
    """The fixed part of every rule (``struct ipt_ip``): addresses, interfaces, protocol, fragment."""

    src: Neg[IPNetwork] | None = None
    dst: Neg[IPNetwork] | None = None
    in_iface: Neg[str] | None = None
    out_iface: Neg[str] | None = None
    proto: Neg[str] | None = None
    """Protocol as written (``tcp``, ``6``, ``ipv6-icmp``); ``all``/``0`` is stored as ``None``."""
    fragment: Neg[bool] | None = None

    @property
    def is_empty(self) -> bool:
        """True when the kernel's ``ipt_ip`` would be all zeros (it matches every packet).

        A ``/0`` address is stored as zeros by iptables, so ``-s 0.0.0.0/0`` is empty too;
        so is ``-i +`` (mask of length 0)... but iptables-save never prints those.
        """
        for spec in (self.src, self.dst):
            if spec is not None and (spec.value.prefixlen != 0 or spec.negated):
                return False
        return (
            self.in_iface is None
            and self.out_iface is None
            and self.proto is None
            and self.fragment is None
        )


@dataclass(frozen=True, slots=True)
class Match:
    """A match module (``-m NAME --opt val ...``) with its options in the order they were saved.

    ``options`` holds ``(option, values, negated)`` triples: ``--dport 22`` becomes
    ``("dport", ("22",), False)``.
    """

    name: str
    options: tuple[tuple[str, tuple[str, ...], bool], ...] = ()

    def get(self, option: str) -> tuple[tuple[str, ...], bool] | None:
        for name, values, negated in self.options:
            if name == option:
                return values, negated
        return None


class TargetKind(StrEnum):
    NONE = "none"
    """No ``-j``: the rule only counts and evaluation falls through."""
    VERDICT = "verdict"
    """ACCEPT, DROP, RETURN or QUEUE: a standard target."""
    CHAIN = "chain"
    """A user chain of the same table (``-j CHAIN`` or ``-g CHAIN``)."""
    EXTENSION = "extension"
    """A target module (LOG, CT, MARK, REJECT...), with its options."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a rule does when it matches: a standard verdict, a chain, or an extension target.

    Whether a name is a chain or an extension depends on the table's declared chains, so the
    parser decides ``kind`` (user chains may be upper case, like ``DOCKER``).
    """

    kind: TargetKind
    name: str = ""
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()
    goto: bool = False
    """True for ``-g CHAIN``: a goto does not push a return address."""

    @property
    def is_standard_verdict(self) -> bool:
        return self.kind is TargetKind.VERDICT

    def get(self, option: str) -> tuple[str, ...] | None:
        for name, values in self.options:
            if name == option:
                return values
        return None


NO_TARGET = Target(TargetKind.NONE)
"""A rule without ``-j``/``-g``: it only counts packets and falls through."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``-A`` line, placed at its 1-based position in its chain."""

    table: str
    chain: str
    position: int
    ip: IpSpec
    matches: tuple[Match, ...]
    target: Target
    text: str
    """The rule as iptables-save printed it, without counters (``-A CHAIN ...``)."""
    pos: SourcePos | None = None
    counters: tuple[int, int] | None = None

    @property
    def is_unconditional(self) -> bool:
        """The kernel's ``unconditional()`` test plus a negative verdict.

        Such a rule is logged by TRACE as ``return`` in a user chain and ``policy`` in a
        built-in chain (``ip_tables.c: get_chainname_rulenum``), at its own position.
        """
        return not self.matches and self.ip.is_empty and self.target.is_standard_verdict

    @property
    def jump_chain(self) -> str | None:
        """The user chain this rule jumps or goes to, if any."""
        return self.target.name if self.target.kind is TargetKind.CHAIN else None


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    builtin: bool
    policy: str | None
    """``ACCEPT``/``DROP`` for a built-in chain, ``None`` for a user chain."""
    rules: tuple[Rule, ...] = ()
    counters: tuple[int, int] | None = None
    pos: SourcePos | None = None

    @property
    def tail_number(self) -> int:
        """The number TRACE prints for the chain's implicit end: rule count + 1."""
        return len(self.rules) + 1

    def rule(self, number: int) -> Rule | None:
        """The rule at a 1-based position, or ``None`` when the number is the tail or out of range."""
        if 1 <= number <= len(self.rules):
            return self.rules[number - 1]
        return None


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    pos: SourcePos | None = None

    def chain(self, name: str) -> Chain | None:
        return self.chains.get(name)


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Everything one ``iptables-save`` (or ``ip6tables-save``) printed."""

    family: Family
    tables: dict[str, Table] = field(default_factory=dict)
    backend: Backend = Backend.UNKNOWN
    source: str = ""

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(chain) if t is not None else None

    def rules(self) -> Iterator[Rule]:
        for table in self.tables.values():
            for chain in table.chains.values():
                yield from chain.rules
