"""``--match EXPR``: keep only the packets an operator asks about.

The expression uses Open vSwitch's flow-match words, as the rest of nodetrace does for packets
(``tcp,nw_src=10.0.0.0/24,tp_dst=22``), plus words for what the log says about the packet:
``outcome=dropped``, ``chain=neutron-openvswi-i*``, ``dev=tap3b1f*`` (any of IN, OUT, PHYSIN,
PHYSOUT at any step), ``table=nat``, ``trace_id=5efd2773``. Terms are joined by commas and all
must hold; ``name!=value`` negates one term. Globs use ``*`` and ``?``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from ipaddress import IPv4Network, IPv6Network, ip_network

from nodetrace.errors import UsageError
from nodetrace.model.packet import PROTOCOL_SHORTHANDS, Packet
from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.tracelog.observed import ObservedPacket

_INT_FIELDS = {
    "tp_src": "tp_src",
    "tp_dst": "tp_dst",
    "nw_proto": "nw_proto",
    "ip_proto": "nw_proto",
    "ip_id": "ip_id",
    "icmp_type": "icmp_type",
    "icmp_code": "icmp_code",
    "icmp_id": "icmp_id",
    "icmp_seq": "icmp_seq",
    "nw_ttl": "nw_ttl",
}
_ADDR_FIELDS = {
    "nw_src": "nw_src",
    "nw_dst": "nw_dst",
    "ipv6_src": "nw_src",
    "ipv6_dst": "nw_dst",
}
_GLOB_FIELDS = ("chain", "table", "dev", "trace_id")

Term = Callable[[ObservedPacket], bool]


@dataclass(frozen=True)
class PacketMatch:
    """A parsed ``--match`` expression; call :meth:`matches` on an observed packet."""

    text: str
    terms: tuple[Term, ...]

    def matches(self, packet: ObservedPacket) -> bool:
        return all(term(packet) for term in self.terms)


def _packet_term(check: Callable[[Packet], bool]) -> Term:
    def term(obs: ObservedPacket) -> bool:
        packet = obs.trace.packet
        return packet is not None and check(packet)

    return term


def _steps(obs: ObservedPacket) -> list[NetfilterStep]:
    return [s for s in obs.trace.steps if isinstance(s, NetfilterStep)]


def _glob_term(name: str, pattern: str) -> Term:
    def values(obs: ObservedPacket) -> set[str]:
        steps = _steps(obs)
        if name == "chain":
            return {s.chain for s in steps}
        if name == "table":
            return {s.table for s in steps}
        if name == "trace_id":
            return {obs.trace_id} if obs.trace_id else set()
        out: set[str] = set()
        for s in steps:
            out.update(d for d in (s.in_dev, s.out_dev, s.physin, s.physout) if d)
        return out

    return lambda obs: any(fnmatchcase(v, pattern) for v in values(obs))


def _network(name: str, value: str) -> IPv4Network | IPv6Network:
    try:
        return ip_network(value, strict=False)
    except ValueError:
        raise UsageError(f"--match {name}={value}: not an address or network") from None


def _term(word: str) -> Term:
    if word in PROTOCOL_SHORTHANDS:
        dl_type, proto = PROTOCOL_SHORTHANDS[word]
        return _packet_term(
            lambda p: p.dl_type == dl_type and (proto is None or p.nw_proto == proto)
        )
    name, eq, value = word.partition("=")
    negate = name.endswith("!")
    name = name.rstrip("!")
    if not eq or not value:
        raise UsageError(
            f"--match: {word!r} is not NAME=VALUE or a protocol (tcp, udp, icmp, ip, ipv6...)"
        )
    term: Term
    if name in _ADDR_FIELDS:
        net = _network(name, value)
        attr = _ADDR_FIELDS[name]
        term = _packet_term(lambda p: (a := getattr(p, attr)) is not None and a in net)
    elif name in _INT_FIELDS:
        try:
            number = int(value, 0)
        except ValueError:
            raise UsageError(f"--match {name}={value}: not a number") from None
        attr = _INT_FIELDS[name]
        term = _packet_term(lambda p: getattr(p, attr) == number)
    elif name == "outcome":
        try:
            outcome = Outcome(value)
        except ValueError:
            choices = ", ".join(
                o.value for o in (Outcome.ACCEPTED, Outcome.DROPPED, Outcome.REJECTED, Outcome.ENDS)
            )
            raise UsageError(f"--match outcome={value}: expected one of {choices}") from None
        term = lambda obs: obs.trace.outcome is outcome  # noqa: E731
    elif name in _GLOB_FIELDS:
        term = _glob_term(name, value)
    else:
        known = sorted(
            [*PROTOCOL_SHORTHANDS, *_ADDR_FIELDS, *_INT_FIELDS, "outcome", *_GLOB_FIELDS]
        )
        raise UsageError(f"--match: unknown field {name!r} (known: {', '.join(known)})")
    if negate:
        positive = term
        return lambda obs: not positive(obs)
    return term


def parse_match(text: str) -> PacketMatch:
    """Parse ``tcp,nw_dst=10.0.0.11,outcome=dropped``; a bad term raises :class:`UsageError`."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise UsageError("--match needs at least one term, e.g. tcp,tp_dst=22")
    return PacketMatch(text, tuple(_term(w) for w in words))
