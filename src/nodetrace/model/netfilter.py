"""An iptables ruleset as data: Ruleset > Table > Chain > Rule, with typed matches and targets.

A rule keeps the text it was saved as and its source line, so every answer can quote the exact
rule. Its match modules and its target are typed (a tagged union each); a module or target
nodetrace does not model is kept verbatim as :class:`UnknownMatch`/:class:`UnknownTarget`, so
the engine can say "unknown because of this rule" instead of guessing.

The kernel's TRACE numbering depends only on a rule's position and on whether it is
*unconditional* (no ``-s/-d/-i/-o/-p/-f``, no match module, standard verdict target): that test
lives here, next to the data it reads, because the log explainer and the engine must agree on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import ClassVar, Generic, TypeVar

from nodetrace.errors import SourcePos
from nodetrace.model.packet import Family
from nodetrace.model.verdict import Effect

T = TypeVar("T")

IPNetwork = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address

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

CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")
"""Conntrack states in the order iptables-save prints them (``SNAT``/``DNAT``: conntrack only)."""

CT_STATUSES = ("NONE", "EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED")
"""``--ctstatus`` words in the order iptables-save prints them."""


PROTOCOL_NUMBERS: dict[str, int] = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ipencap": 4, "ipv4": 4, "tcp": 6, "egp": 8,
    "udp": 17, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47, "esp": 50,
    "ah": 51, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ospf": 89,
    "vrrp": 112, "l2tp": 115, "sctp": 132, "udplite": 136, "mpls-in-ip": 137, "dccp": 33,
}  # fmt: skip
"""Protocol names iptables accepts and prints (from /etc/protocols), to numbers."""


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
class PortRange:
    """An inclusive range of ports (or of any small integers: lengths, expiry seconds)."""

    lo: int
    hi: int

    def __contains__(self, value: int) -> bool:
        return self.lo <= value <= self.hi

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}:{self.hi}"


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

        A ``/0`` address is stored as zeros by iptables, so ``-s 0.0.0.0/0`` is empty too.
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
class RawOption:
    """One option of a match or target exactly as saved: ``! --dport 22`` is
    ``RawOption("dport", ("22",), True)``."""

    name: str
    values: tuple[str, ...] = ()
    negated: bool = False


# ---------------------------------------------------------------------------------------------
# Matches: one frozen class per module nodetrace evaluates; ``module`` is the tag (the ``-m``
# name as saved). Every field has a default so a match can be built from the options present.


@dataclass(frozen=True, slots=True)
class TcpFlags:
    """``--tcp-flags MASK COMP``: the flags in ``mask`` must equal ``comp`` (bits of TcpFlag)."""

    mask: int
    comp: int


@dataclass(frozen=True, slots=True)
class TcpMatch:
    module: str = "tcp"
    sport: Neg[PortRange] | None = None
    dport: Neg[PortRange] | None = None
    flags: Neg[TcpFlags] | None = None
    option: Neg[int] | None = None
    """``--tcp-option N``: the packet carries TCP option kind N."""


@dataclass(frozen=True, slots=True)
class UdpMatch:
    """``-m udp`` (and ``-m udplite``, same options)."""

    module: str = "udp"
    sport: Neg[PortRange] | None = None
    dport: Neg[PortRange] | None = None


@dataclass(frozen=True, slots=True)
class SctpMatch:
    module: str = "sctp"
    sport: Neg[PortRange] | None = None
    dport: Neg[PortRange] | None = None
    chunk_types: tuple[str, ...] = ()
    """``--chunk-types`` words as saved; the engine does not look into SCTP chunks."""


@dataclass(frozen=True, slots=True)
class MultiportMatch:
    module: str = "multiport"
    direction: str = "dports"
    """``sports``, ``dports`` or ``ports`` (either port)."""
    ports: tuple[PortRange, ...] = ()
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IcmpMatch:
    """``-m icmp --icmp-type T[/C]`` or ``-m icmp6 --icmpv6-type T[/C]``."""

    module: str = "icmp"
    icmp_type: int | None = None
    """``None`` means ``any``."""
    code_min: int = 0
    code_max: int = 0xFF
    negated: bool = False


@dataclass(frozen=True, slots=True)
class StateMatch:
    module: str = "state"
    states: tuple[str, ...] = ()
    """In :data:`CT_STATES` order."""
    negated: bool = False


@dataclass(frozen=True, slots=True)
class ConntrackMatch:
    module: str = "conntrack"
    ctstate: Neg[tuple[str, ...]] | None = None
    ctproto: Neg[int] | None = None
    ctorigsrc: Neg[IPNetwork] | None = None
    ctorigdst: Neg[IPNetwork] | None = None
    ctreplsrc: Neg[IPNetwork] | None = None
    ctrepldst: Neg[IPNetwork] | None = None
    ctorigsrcport: Neg[PortRange] | None = None
    ctorigdstport: Neg[PortRange] | None = None
    ctreplsrcport: Neg[PortRange] | None = None
    ctrepldstport: Neg[PortRange] | None = None
    ctstatus: Neg[tuple[str, ...]] | None = None
    ctexpire: Neg[PortRange] | None = None
    ctdir: str | None = None
    """``ORIGINAL`` or ``REPLY``."""


@dataclass(frozen=True, slots=True)
class PhysdevMatch:
    module: str = "physdev"
    physdev_in: Neg[str] | None = None
    physdev_out: Neg[str] | None = None
    is_in: Neg[bool] | None = None
    is_out: Neg[bool] | None = None
    is_bridged: Neg[bool] | None = None


@dataclass(frozen=True, slots=True)
class SetMatch:
    module: str = "set"
    set_name: str = ""
    directions: tuple[str, ...] = ()
    """``src``/``dst`` per dimension of the set, as in ``--match-set NAME src,dst``."""
    negated: bool = False
    return_nomatch: bool = False
    update_counters: bool = True
    update_subcounters: bool = True
    counter_conditions: tuple[RawOption, ...] = ()
    """``--packets-gt 5`` and the like: they read set counters nodetrace does not have."""


@dataclass(frozen=True, slots=True)
class MacMatch:
    module: str = "mac"
    source: Neg[str] | None = None
    """Lower case, colon separated."""


@dataclass(frozen=True, slots=True)
class CommentMatch:
    module: str = "comment"
    comment: str = ""


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """``-m mark`` (skb mark) or ``-m connmark`` (conntrack mark): ``(mark & mask) == value``."""

    module: str = "mark"
    value: int = 0
    mask: int = 0xFFFFFFFF
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IprangeMatch:
    module: str = "iprange"
    src_range: Neg[tuple[IPAddress, IPAddress]] | None = None
    dst_range: Neg[tuple[IPAddress, IPAddress]] | None = None


@dataclass(frozen=True, slots=True)
class AddrtypeMatch:
    module: str = "addrtype"
    src_type: Neg[tuple[str, ...]] | None = None
    dst_type: Neg[tuple[str, ...]] | None = None
    limit_iface_in: bool = False
    limit_iface_out: bool = False


@dataclass(frozen=True, slots=True)
class PkttypeMatch:
    module: str = "pkttype"
    pkt_type: Neg[str] | None = None
    """``unicast``, ``broadcast``, ``multicast`` (or ``host``/``otherhost``...)."""


@dataclass(frozen=True, slots=True)
class LengthMatch:
    module: str = "length"
    length: Neg[PortRange] | None = None
    """IPv4 total length / IPv6 payload length + 40."""


@dataclass(frozen=True, slots=True)
class TtlMatch:
    """``-m ttl --ttl-eq N`` (IPv4) or ``-m hl --hl-eq N`` (IPv6); ``op`` is eq, ne, lt or gt."""

    module: str = "ttl"
    op: str = "eq"
    value: int = 0


@dataclass(frozen=True, slots=True)
class TosMatch:
    """``--tos VALUE/MASK``: ``(tos & mask) == value``."""

    module: str = "tos"
    value: int = 0
    mask: int = 0xFF
    negated: bool = False


@dataclass(frozen=True, slots=True)
class DscpMatch:
    module: str = "dscp"
    dscp: int = 0
    negated: bool = False


@dataclass(frozen=True, slots=True)
class OwnerMatch:
    module: str = "owner"
    uid: Neg[PortRange] | None = None
    gid: Neg[PortRange] | None = None
    socket_exists: Neg[bool] | None = None
    suppl_groups: bool = False


@dataclass(frozen=True, slots=True)
class LimitMatch:
    """``-m limit`` / ``-m hashlimit``: token buckets whose state no snapshot holds."""

    module: str = "limit"
    options: tuple[RawOption, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownMatch:
    """A module nodetrace does not evaluate, or one whose options it could not read."""

    module: str = ""
    options: tuple[RawOption, ...] = ()
    reason: str = ""


Match = (
    TcpMatch | UdpMatch | SctpMatch | MultiportMatch | IcmpMatch | StateMatch | ConntrackMatch
    | PhysdevMatch | SetMatch | MacMatch | CommentMatch | MarkMatch | IprangeMatch | AddrtypeMatch
    | PkttypeMatch | LengthMatch | TtlMatch | TosMatch | DscpMatch | OwnerMatch | LimitMatch
    | UnknownMatch
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Targets: a tagged union too. Each has ``kind`` (how the kernel stores it), ``name`` and
# ``effect``: what the target does to evaluation, said here once for the engine and the log
# explainer alike.

CONTINUING_EXTENSIONS = frozenset(
    {
        "LOG", "NFLOG", "ULOG", "TRACE", "CT", "NOTRACK", "MARK", "CONNMARK", "CHECKSUM",
        "TCPMSS", "TCPOPTSTRIP", "CLASSIFY", "DSCP", "TOS", "TTL", "HL", "ECN", "SET", "AUDIT",
        "SECMARK", "CONNSECMARK", "IDLETIMER", "LED", "RATEEST", "HMARK", "TEE",
    }
)  # fmt: skip
"""Extension targets that return ``XT_CONTINUE``: evaluation goes on with the next rule."""

ACCEPTING_EXTENSIONS = frozenset({"SNAT", "DNAT", "MASQUERADE", "REDIRECT", "NETMAP", "TPROXY"})
"""Extension targets that end the table with ``NF_ACCEPT`` (NAT rewrites, then accepts)."""


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
class NoTarget:
    kind: ClassVar[TargetKind] = TargetKind.NONE
    name: ClassVar[str] = ""
    effect: ClassVar[Effect] = Effect.CONTINUE


@dataclass(frozen=True, slots=True)
class StandardTarget:
    """A standard verdict: ``ACCEPT``, ``DROP``, ``RETURN`` or ``QUEUE``."""

    verdict: str = "ACCEPT"
    kind: ClassVar[TargetKind] = TargetKind.VERDICT

    @property
    def name(self) -> str:
        return self.verdict

    @property
    def effect(self) -> Effect:
        return Effect.of_word(self.verdict)


@dataclass(frozen=True, slots=True)
class JumpTarget:
    chain: str = ""
    goto: bool = False
    """True for ``-g CHAIN``: a goto does not push a return address."""
    kind: ClassVar[TargetKind] = TargetKind.CHAIN

    @property
    def name(self) -> str:
        return self.chain

    @property
    def effect(self) -> Effect:
        return Effect.GOTO if self.goto else Effect.JUMP


@dataclass(frozen=True, slots=True)
class _Extension:
    kind: ClassVar[TargetKind] = TargetKind.EXTENSION

    @property
    def effect(self) -> Effect:
        return Effect.CONTINUE


@dataclass(frozen=True, slots=True)
class RejectTarget(_Extension):
    reject_with: str = "icmp-port-unreachable"

    name: ClassVar[str] = "REJECT"

    @property
    def effect(self) -> Effect:
        return Effect.REJECT


@dataclass(frozen=True, slots=True)
class LogTarget(_Extension):
    prefix: str | None = None
    level: str | None = None
    flags: tuple[str, ...] = ()
    """``tcp-sequence``, ``tcp-options``, ``ip-options``, ``uid``, ``macdecode``."""

    name: ClassVar[str] = "LOG"


@dataclass(frozen=True, slots=True)
class NflogTarget(_Extension):
    group: int = 0
    prefix: str | None = None
    options: tuple[RawOption, ...] = ()
    """``--nflog-range/size/threshold`` as saved."""

    name: ClassVar[str] = "NFLOG"


@dataclass(frozen=True, slots=True)
class TraceTarget(_Extension):
    name: ClassVar[str] = "TRACE"


@dataclass(frozen=True, slots=True)
class CtTarget(_Extension):
    """``-j CT`` (raw table): a template for the conntrack lookup that follows."""

    zone: int | None = None
    zone_dir: str = ""
    """``orig``/``reply`` for ``--zone-orig``/``--zone-reply``, else empty."""
    notrack: bool = False
    options: tuple[RawOption, ...] = ()
    """Other options (``--helper``, ``--ctevents``, ``--timeout``...) as saved."""

    name: ClassVar[str] = "CT"


@dataclass(frozen=True, slots=True)
class NotrackTarget(_Extension):
    name: ClassVar[str] = "NOTRACK"


@dataclass(frozen=True, slots=True)
class MarkTarget(_Extension):
    """``-j MARK``: ``mark = (mark & ~mask) ^ value`` (every spelling saves as ``--set-xmark``)."""

    value: int = 0
    mask: int = 0xFFFFFFFF

    name: ClassVar[str] = "MARK"


@dataclass(frozen=True, slots=True)
class ConnmarkTarget(_Extension):
    """``-j CONNMARK``: ``set`` (ctmark = (ctmark & ~mask) ^ value), ``save`` or ``restore``."""

    mode: str = "set"
    value: int = 0
    mask: int = 0xFFFFFFFF
    nfmask: int = 0xFFFFFFFF
    ctmask: int = 0xFFFFFFFF

    name: ClassVar[str] = "CONNMARK"


@dataclass(frozen=True, slots=True)
class NatRange:
    """One ``--to-source``/``--to-destination`` range: addresses and optionally ports."""

    addr_lo: IPAddress | None = None
    addr_hi: IPAddress | None = None
    ports: PortRange | None = None


@dataclass(frozen=True, slots=True)
class NatTarget(_Extension):
    """``SNAT``/``DNAT`` (``nat_type``), ``MASQUERADE`` and ``REDIRECT``."""

    nat_type: str = "SNAT"
    ranges: tuple[NatRange, ...] = ()
    to_ports: PortRange | None = None
    """``--to-ports`` of MASQUERADE/REDIRECT."""
    random: bool = False
    random_fully: bool = False
    persistent: bool = False

    @property
    def name(self) -> str:
        return self.nat_type

    @property
    def effect(self) -> Effect:
        return Effect.ACCEPT


@dataclass(frozen=True, slots=True)
class ChecksumTarget(_Extension):
    fill: bool = True

    name: ClassVar[str] = "CHECKSUM"


@dataclass(frozen=True, slots=True)
class TcpmssTarget(_Extension):
    mss: int | None = None
    clamp_to_pmtu: bool = False

    name: ClassVar[str] = "TCPMSS"


@dataclass(frozen=True, slots=True)
class UnknownTarget(_Extension):
    """A target nodetrace does not model (or whose options it could not read), kept verbatim."""

    target: str = ""
    options: tuple[RawOption, ...] = ()
    reason: str = ""

    @property
    def name(self) -> str:
        return self.target

    @property
    def effect(self) -> Effect:
        """What the kernel's target of this name does, though nodetrace cannot apply it."""
        if self.target in CONTINUING_EXTENSIONS:
            return Effect.CONTINUE
        if self.target in ACCEPTING_EXTENSIONS:
            return Effect.ACCEPT
        if self.target == "NFQUEUE":
            return Effect.QUEUE
        return Effect.UNKNOWN


Target = (
    NoTarget | StandardTarget | JumpTarget | RejectTarget | LogTarget | NflogTarget | TraceTarget
    | CtTarget | NotrackTarget | MarkTarget | ConnmarkTarget | NatTarget | ChecksumTarget
    | TcpmssTarget | UnknownTarget
)  # fmt: skip

NO_TARGET = NoTarget()
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
    handle: int | None = None
    """The rule's nf_tables handle, when ``nft -a list ruleset`` of the same node was read
    (iptables-save does not print it; nf_tables traces name rules by it)."""

    @property
    def is_unconditional(self) -> bool:
        """The kernel's ``unconditional()`` test plus a negative verdict.

        Such a rule is logged by TRACE as ``return`` in a user chain and ``policy`` in a
        built-in chain (``ip_tables.c: get_chainname_rulenum``), at its own position.
        """
        return not self.matches and self.ip.is_empty and isinstance(self.target, StandardTarget)

    @property
    def effect(self) -> Effect:
        """What the rule's target does when the rule matches."""
        return self.target.effect

    @property
    def jump_chain(self) -> str | None:
        """The user chain this rule jumps or goes to, if any."""
        return self.target.chain if isinstance(self.target, JumpTarget) else None

    @property
    def unknown_parts(self) -> tuple[str, ...]:
        """Modules and targets of this rule that nodetrace keeps verbatim without evaluating."""
        out = [f"-m {m.module}" for m in self.matches if isinstance(m, UnknownMatch)]
        if isinstance(self.target, UnknownTarget):
            out.append(f"-j {self.target.target}")
        return tuple(out)


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
    handle_notes: tuple[str, ...] = ()
    """Why tables were left without :attr:`Rule.handle` when an nft listing was read."""
    incomplete: str = ""
    """Why the dump is known to lack rules (an elision line where it was copied, a table cut
    before its ``COMMIT``), naming file:line; empty when the dump is whole. Rules not shown may
    decide before the ones shown, so no verdict reached in this ruleset is certain."""

    def chain(self, table: str, chain: str) -> Chain | None:
        t = self.tables.get(table)
        return t.chains.get(chain) if t is not None else None

    def rules(self) -> Iterator[Rule]:
        for table in self.tables.values():
            for chain in table.chains.values():
                yield from chain.rules


@dataclass(frozen=True, slots=True)
class HookDevices:
    """The devices netfilter passes to one hook (``IN=``/``OUT=``), and the bridge ports
    br_netfilter records (``PHYSIN=``/``PHYSOUT=``). A hook traversal is ``(Hook, HookDevices)``."""

    in_dev: str = ""
    out_dev: str = ""
    physin: str | None = None
    physout: str | None = None
    bridged: bool | None = None
    """Whether the skb carries bridge info; ``None`` means "when a physdev is given"."""

    @property
    def is_bridged(self) -> bool:
        if self.bridged is not None:
            return self.bridged
        return self.physin is not None or self.physout is not None
