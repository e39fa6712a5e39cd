"""Whether one iptables rule matches every packet another one matches: the test behind
"this rule can never match, an earlier rule takes all its packets".

The answer is proven from the parts of a rule the model types (addresses, interfaces,
protocol, ports, ICMP types, conntrack states, physdev, and any match written identically in
both rules). ``None`` means *cannot tell*: the earlier rule has a match module nodetrace keeps
verbatim. ``False`` is "not proven"; a shadow is reported only when proven.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from nodetrace.model.netfilter import (
    PROTOCOL_NUMBERS,
    CommentMatch,
    ConntrackMatch,
    IcmpMatch,
    IpSpec,
    LimitMatch,
    Match,
    MultiportMatch,
    Neg,
    PhysdevMatch,
    PortRange,
    Rule,
    StateMatch,
    TcpMatch,
    UdpMatch,
    UnknownMatch,
)
from nodetrace.model.verdict import Effect

Network = IPv4Network | IPv6Network

TERMINAL_EFFECTS = frozenset(
    {Effect.ACCEPT, Effect.DROP, Effect.REJECT, Effect.RETURN, Effect.QUEUE, Effect.GOTO}
)
"""A matching rule with one of these ends the chain for the packet: nothing after it sees it."""


def covers(first: Rule, later: Rule) -> bool | None:
    """``True`` when every packet ``later`` matches is matched by ``first``; ``None`` when
    ``first`` has a match nodetrace does not evaluate and the rest would cover."""
    if not _ip_covers(first.ip, later.ip):
        return False
    undecided = False
    for match in first.matches:
        verdict = _match_covered(match, later.matches)
        if verdict is False:
            return False
        if verdict is None:
            undecided = True
    return None if undecided else True


def _ip_covers(a: IpSpec, b: IpSpec) -> bool:
    return (
        _addr_covers(a.src, b.src)
        and _addr_covers(a.dst, b.dst)
        and _iface_covers(a.in_iface, b.in_iface)
        and _iface_covers(a.out_iface, b.out_iface)
        and _proto_covers(a.proto, b.proto)
        and (a.fragment is None or a.fragment == b.fragment)
    )


def _addr_covers(a: Neg[Network] | None, b: Neg[Network] | None) -> bool:
    if a is None or (a.value.prefixlen == 0 and not a.negated):
        return True
    if b is None or b.value.version != a.value.version:
        return False
    if not a.negated:
        return not b.negated and b.value.subnet_of(a.value)  # type: ignore[arg-type]
    if b.negated:
        return a.value.subnet_of(b.value)  # type: ignore[arg-type]
    return not b.value.overlaps(a.value)


def pattern_covers(a: str, b: str) -> bool:
    """Interface pattern ``a`` (``tap+`` is a prefix) matches every name pattern ``b`` does."""
    if a.endswith("+"):
        return b.removesuffix("+").startswith(a[:-1]) if b.endswith("+") else b.startswith(a[:-1])
    return a == b


def _patterns_overlap(a: str, b: str) -> bool:
    return pattern_covers(a, b) or pattern_covers(b, a) or (
        a.endswith("+") and b.endswith("+")
        and (a[:-1].startswith(b[:-1]) or b[:-1].startswith(a[:-1]))
    )  # fmt: skip


def _iface_covers(a: Neg[str] | None, b: Neg[str] | None) -> bool:
    if a is None or (a.value == "+" and not a.negated):
        return True
    if b is None:
        return False
    if not a.negated:
        return not b.negated and pattern_covers(a.value, b.value)
    if b.negated:
        return pattern_covers(b.value, a.value)
    return not _patterns_overlap(a.value, b.value)


def protocol_number(word: str) -> int | None:
    lowered = word.lower()
    if lowered in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[lowered]
    return int(lowered) if lowered.isdigit() else None


def _proto_covers(a: Neg[str] | None, b: Neg[str] | None) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    pa, pb = protocol_number(a.value), protocol_number(b.value)
    if pa is None or pb is None:
        return a == b
    if not a.negated:
        return not b.negated and pa == pb
    return pa == pb if b.negated else pa != pb


def _range_covers(a: Neg[PortRange] | None, b: Neg[PortRange] | None) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    if not a.negated:
        return not b.negated and a.value.lo <= b.value.lo and b.value.hi <= a.value.hi
    if b.negated:
        return b.value.lo <= a.value.lo and a.value.hi <= b.value.hi
    return b.value.hi < a.value.lo or b.value.lo > a.value.hi


def _within(ranges: tuple[PortRange, ...], lo: int, hi: int) -> bool:
    return any(r.lo <= lo and hi <= r.hi for r in ranges)


def _states(match: Match) -> tuple[frozenset[str], bool] | None:
    """The conntrack states a ``state``/``conntrack --ctstate`` match names, and its ``!``."""
    if isinstance(match, StateMatch):
        return frozenset(match.states), match.negated
    if isinstance(match, ConntrackMatch) and match.ctstate is not None:
        only_state = ConntrackMatch(ctstate=match.ctstate) == match
        if only_state:
            return frozenset(match.ctstate.value), match.ctstate.negated
    return None


def _match_covered(match: Match, later: tuple[Match, ...]) -> bool | None:
    """Whether the conjunction ``later`` implies ``match``."""
    if isinstance(match, CommentMatch) or match in later:
        return True
    if isinstance(match, UnknownMatch):
        return None
    if isinstance(match, LimitMatch):
        return False  # a rate limit lets packets past it: never a shadow
    if isinstance(match, TcpMatch | UdpMatch):
        return any(_ports_covered(match, other) for other in later)
    if isinstance(match, MultiportMatch):
        return not match.negated and any(_multiport_covered(match, o) for o in later)
    if isinstance(match, IcmpMatch):
        return any(_icmp_covered(match, other) for other in later)
    states = _states(match)
    if states is not None:
        return any(_states_covered(states, other) for other in later)
    if isinstance(match, PhysdevMatch):
        return any(_physdev_covered(match, o) for o in later if isinstance(o, PhysdevMatch))
    return False


def _ports_covered(a: TcpMatch | UdpMatch, b: Match) -> bool:
    if type(b) is not type(a) or b.module != a.module:
        return False
    assert isinstance(b, TcpMatch | UdpMatch)
    if not (_range_covers(a.sport, b.sport) and _range_covers(a.dport, b.dport)):
        return False
    if isinstance(a, TcpMatch) and isinstance(b, TcpMatch):
        return (a.flags is None or a.flags == b.flags) and (
            a.option is None or a.option == b.option
        )
    return True


def _multiport_covered(a: MultiportMatch, b: Match) -> bool:
    if isinstance(b, MultiportMatch):
        same_side = b.direction == a.direction or a.direction == "ports"
        return same_side and not b.negated and all(_within(a.ports, r.lo, r.hi) for r in b.ports)
    if isinstance(b, TcpMatch | UdpMatch):
        sides = [b.dport, b.sport] if a.direction == "ports" else [
            b.dport if a.direction == "dports" else b.sport
        ]  # fmt: skip
        return any(
            s is not None and not s.negated and _within(a.ports, s.value.lo, s.value.hi)
            for s in sides
        )
    return False


def _icmp_covered(a: IcmpMatch, b: Match) -> bool:
    if a.icmp_type is None and not a.negated:
        return isinstance(b, IcmpMatch) and b.module == a.module
    if not isinstance(b, IcmpMatch) or b.module != a.module or b.negated or a.negated:
        return False
    return b.icmp_type == a.icmp_type and a.code_min <= b.code_min and b.code_max <= a.code_max


def _states_covered(a: tuple[frozenset[str], bool], b: Match) -> bool:
    other = _states(b)
    if other is None:
        return False
    (sa, na), (sb, nb) = a, other
    if not na:
        return not nb and sb <= sa
    return sa <= sb if nb else not (sa & sb)


def _physdev_covered(a: PhysdevMatch, b: PhysdevMatch) -> bool:
    return (
        _iface_covers(a.physdev_in, b.physdev_in)
        and _iface_covers(a.physdev_out, b.physdev_out)
        and (a.is_in is None or a.is_in == b.is_in)
        and (a.is_out is None or a.is_out == b.is_out)
        and (a.is_bridged is None or a.is_bridged == b.is_bridged)
    )


def anchors(rule: Rule) -> tuple[str | None, str | None, str | None, str | None]:
    """The exact device names a rule requires (physdev in/out, -i, -o; ``None`` where it names
    none exactly): a rule covers another only if the other requires the same names."""
    pin = pout = None
    for m in rule.matches:
        if isinstance(m, PhysdevMatch):
            if m.physdev_in is not None and not m.physdev_in.negated:
                pin = m.physdev_in.value if not m.physdev_in.value.endswith("+") else None
            if m.physdev_out is not None and not m.physdev_out.negated:
                pout = m.physdev_out.value if not m.physdev_out.value.endswith("+") else None
    iin = rule.ip.in_iface
    iout = rule.ip.out_iface
    return (
        pin,
        pout,
        iin.value if iin is not None and not iin.negated and not iin.value.endswith("+") else None,
        iout.value
        if iout is not None and not iout.negated and not iout.value.endswith("+")
        else None,
    )
