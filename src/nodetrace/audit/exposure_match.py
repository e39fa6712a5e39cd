"""One iptables rule as a region of header space: the packets it matches, and those for which
nodetrace cannot tell.

Each match module becomes a :class:`Constraint` (boxes where it is true, boxes where it cannot
be told) with the kernel's semantics as ``engine/netfilter_match.py`` implements them: ports
never match a later fragment nor another protocol, ``-m conntrack`` without a connection
matches only through ``--ctstate``, and so on. Matches that depend only on the devices of the
hook (``-i``/``-o``, physdev, owner) are decided by the engine's own predicates, so the two can
never disagree on them. A rule's constraint is the AND of its matches, with the engine's rule for
unknowns: a rule is unknown only where none of its known conditions is false.

An ipset whose members are known becomes address intervals; one whose members are not known
(no ``ipset save`` in the snapshot, a set missing from it, a type not expanded) becomes an
*atom*, a yes/no dimension of its own, so the answer still says exactly "allowed if the source
is in that set".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

from nodetrace.engine.netfilter_match import Ctx, compile_match, iface_matches
from nodetrace.model.exposure import CT_STATES, PORT_PROTOCOLS, Box, Dim, Intervals
from nodetrace.model.header_space import (
    HeaderSet,
    box_and,
    iv_and,
    iv_normal,
    iv_sub,
    prefix_interval,
    with_dim,
)
from nodetrace.model.ipset import Dimension, IpSets, Method, NetPart, SetPart
from nodetrace.model.netfilter import (
    PROTOCOL_NUMBERS,
    AddrtypeMatch,
    CommentMatch,
    ConntrackMatch,
    DscpMatch,
    HookDevices,
    IcmpMatch,
    IprangeMatch,
    IpSpec,
    LengthMatch,
    LimitMatch,
    MacMatch,
    MarkMatch,
    Match,
    MultiportMatch,
    Neg,
    OwnerMatch,
    PhysdevMatch,
    PkttypeMatch,
    PortRange,
    Rule,
    SctpMatch,
    SetMatch,
    StateMatch,
    TcpMatch,
    TosMatch,
    TtlMatch,
    UdpMatch,
    UnknownMatch,
)
from nodetrace.model.packet import Family, IPProto, Packet
from nodetrace.model.trace import Hook

_CONN_STATES: Intervals = ((0, 2),)
"""NEW, ESTABLISHED, RELATED: the states with a connection."""
_NO_CONN_STATES: Intervals = ((3, 4),)
"""INVALID, UNTRACKED."""


@dataclass(frozen=True, slots=True)
class Constraint:
    """Where a match (or a whole rule) is true, and where it cannot be told; elsewhere false."""

    true: tuple[Box, ...]
    unknown: tuple[Box, ...] = ()
    reason: str = ""
    notes: tuple[str, ...] = ()
    """Assumptions the answer makes where this constraint is used (a rate limit...)."""

    @property
    def never(self) -> bool:
        return not self.true and not self.unknown


@dataclass(frozen=True, slots=True)
class Atom:
    """A yes/no dimension: "the packet's ``direction`` address is in ipset ``set_name``"."""

    set_name: str
    direction: str
    why: str

    def label(self) -> str:
        return f"{self.direction} in ipset {self.set_name} ({self.why})"


def _ports_of(rng: PortRange) -> Intervals:
    return ((rng.lo, rng.hi),) if rng.lo <= rng.hi else ()


def _neg(values: Intervals, negated: bool, full: Intervals) -> Intervals:
    return iv_sub(full, values) if negated else values


def _ctx_for(hook: Hook, devices: HookDevices) -> Ctx:
    return Ctx(
        packet=Packet(),
        hook=hook,
        in_dev=devices.in_dev,
        out_dev=devices.out_dev,
        physin=devices.physin,
        physout=devices.physout,
        bridged=devices.is_bridged,
    )


class MatchCompiler:
    """Turns rules into constraints for one ruleset's family, its ipsets and its atoms."""

    def __init__(
        self,
        family: Family,
        ipsets: IpSets | None,
        universe: Box,
        local_addresses: Mapping[str, tuple[IPv4Address | IPv6Address, ...]] | None = None,
    ) -> None:
        self.local_addresses = local_addresses
        """The node's addresses per device, for ``-m addrtype``; ``None``: not known."""
        self.family = family
        self.width = 32 if family is Family.IPV4 else 128
        self.ipsets = ipsets
        self.u = universe
        self.atoms: list[Atom] = []
        self._set_notes: dict[str, str] = {}
        self._atom_index: dict[tuple[str, str], int] = {}
        self._set_cache: dict[str, Intervals | str | None] = {}
        self._cache: dict[tuple[int, tuple[Hook, HookDevices] | None, int | None], Constraint] = {}
        self._reads: dict[int, tuple[bool, bool]] = {}

    # -- boxes ---------------------------------------------------------------------------------

    def box(self, **dims: Intervals) -> Box:
        b = self.u
        for name, values in dims.items():
            b = with_dim(b, Dim[name.upper()], values)
        return b

    def full(self, dim: Dim) -> Intervals:
        return self.u[dim]

    # -- atoms ---------------------------------------------------------------------------------

    def prepare_atoms(self, rules: Sequence[Rule]) -> int:
        """Give every ipset lookup whose members cannot be expanded its atom dimension (before
        any constraint is built, so every box has the same number of dimensions)."""
        for rule in rules:
            for m in rule.matches:
                if isinstance(m, SetMatch) and not m.counter_conditions:
                    found = self.set_members(m.set_name)
                    if isinstance(found, str):
                        direction = m.directions[0] if m.directions else "dst"
                        key = (m.set_name, direction)
                        if key not in self._atom_index:
                            self._atom_index[key] = len(self.atoms)
                            self.atoms.append(Atom(m.set_name, direction, found))
        return len(self.atoms)

    def set_members(self, name: str, depth: int = 0) -> Intervals | str | None:
        """The addresses in set ``name`` as intervals; ``None`` for a set of the other family
        (the kernel's lookup is then false); a string saying why the members cannot be had."""
        if name in self._set_cache:
            return self._set_cache[name]
        result = self._expand(name, depth)
        self._set_cache[name] = result
        return result

    def _expand(self, name: str, depth: int) -> Intervals | str | None:
        if self.ipsets is None:
            return "the snapshot has no ipset data"
        ipset = self.ipsets.get(name)
        if ipset is None:
            return "not in the snapshot's ipset data"
        if ipset.method is Method.LIST:
            if depth > 0:
                return "list:set inside list:set"
            out: Intervals = ()
            for member in ipset.members:
                part = member.parts[0] if member.parts else None
                if not isinstance(part, SetPart):
                    return f"member {member.text!r} of a list:set is not a set"
                sub = self.set_members(part.name, depth + 1)
                if isinstance(sub, str):
                    return f"member set {part.name}: {sub}"
                if sub is not None:
                    out = iv_normal((*out, *sub))
            return out
        if len(ipset.dimensions) != 1 or ipset.dimensions[0] not in (Dimension.IP, Dimension.NET):
            return f"type {ipset.type_name} is not expanded into address ranges"
        if ipset.family is not None and ipset.family is not self.family:
            return None
        if ipset.options.timeout or any(x.timeout for x in ipset.members):
            self._set_notes[name] = (
                f"ipset {name}: members with a timeout are assumed not to have expired"
            )
        # Longest prefix wins (a nomatch member carves its network out of shorter ones), so
        # members are applied from the shortest prefix to the longest.
        members = []
        for member in ipset.members:
            part = member.parts[0] if member.parts else None
            if not isinstance(part, NetPart):
                return f"member {member.text!r} is not an address"
            members.append((part.network.prefixlen, member.nomatch, part.network))
        result: Intervals = ()
        for plen, nomatch, net in sorted(members, key=lambda t: (t[0], t[1])):
            iv = (prefix_interval(int(net.network_address), plen, self.width),)
            result = iv_sub(result, iv) if nomatch else iv_normal((*result, *iv))
        return result

    # -- rules ---------------------------------------------------------------------------------

    def rule(self, rule: Rule, hook: Hook, devices: HookDevices, mark: int | None) -> Constraint:
        """The rule's constraint on a hook with these devices and this skb mark (cached: a
        rule reads the devices or the mark only if it has a match on them)."""
        reads = self._reads.get(id(rule))
        if reads is None:
            reads = self._reads[id(rule)] = _reads(rule)
        key = (
            id(rule),
            (hook, devices) if reads[0] else None,
            mark if reads[1] else None,
        )
        found = self._cache.get(key)
        if found is None:
            found = self._rule(rule, hook, devices, mark)
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _rule(self, rule: Rule, hook: Hook, devices: HookDevices, mark: int | None) -> Constraint:
        parts = [self._ip(rule.ip, devices)]
        if parts[0].never:
            return parts[0]
        ctx = _ctx_for(hook, devices)
        for m in rule.matches:
            c = self.match(m, ctx, mark)
            if c.never:
                return c
            parts.append(c)
        return self.all_of(parts)

    def all_of(self, parts: Sequence[Constraint]) -> Constraint:
        """True where every part is; unknown where none is false and one cannot be told."""
        notes = tuple(dict.fromkeys(n for p in parts for n in p.notes))
        parts = [p for p in parts if p.true != (self.u,) or p.unknown]
        if not parts:
            return Constraint((self.u,), notes=notes)
        if len(parts) == 1:
            return replace(parts[0], notes=notes)
        true: tuple[Box, ...] = parts[0].true
        maybe: tuple[Box, ...] = (*parts[0].true, *parts[0].unknown)
        reason = parts[0].reason
        for p in parts[1:]:
            if p.unknown and not reason:
                reason = p.reason
            true = _and(true, p.true)
            maybe = _and(maybe, (*p.true, *p.unknown))
            if not maybe:
                return Constraint(())
        unknown = _sub(maybe, true)
        return Constraint(true, unknown, reason if unknown else "", notes)

    def _ip(self, ip: IpSpec, devices: HookDevices) -> Constraint:
        if ip.in_iface is not None and (
            iface_matches(ip.in_iface.value, devices.in_dev) == ip.in_iface.negated
        ):
            return Constraint(())
        if ip.out_iface is not None and (
            iface_matches(ip.out_iface.value, devices.out_dev) == ip.out_iface.negated
        ):
            return Constraint(())
        b = self.u
        for spec, dim in ((ip.src, Dim.SRC), (ip.dst, Dim.DST)):
            if spec is None or not (spec.value.prefixlen or spec.negated):
                continue
            net = spec.value
            iv = (prefix_interval(int(net.network_address), net.prefixlen, self.width),)
            b = with_dim(b, dim, _neg(iv, spec.negated, self.full(dim)))
        if ip.proto is not None:
            text = ip.proto.value
            number = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
            if number is None:
                return Constraint(
                    (), (self.u,), f"protocol name {text!r} is not known to nodetrace"
                )
            if number != 0:
                b = with_dim(
                    b, Dim.PROTO, _neg(((number, number),), ip.proto.negated, self.full(Dim.PROTO))
                )
        if ip.fragment is not None:
            b = with_dim(b, Dim.FRAG, ((0, 0),) if ip.fragment.negated else ((1, 1),))
        return self._one(b)

    def _one(self, b: Box) -> Constraint:
        return Constraint(()) if any(not d for d in b) else Constraint((b,))

    def _unknown(self, reason: str, within: tuple[Box, ...] | None = None) -> Constraint:
        return Constraint((), within if within is not None else (self.u,), reason)

    def match(self, m: Match, ctx: Ctx, mark: int | None) -> Constraint:
        match m:
            case CommentMatch():
                return Constraint((self.u,))
            case TcpMatch():
                ports = self._ports(m.sport, m.dport, ((IPProto.TCP, IPProto.TCP),))
                if m.flags is not None or m.option is not None:
                    return self._unknown(
                        "--tcp-flags/--tcp-option: TCP flags are not a dimension of the classes",
                        ports.true,
                    )
                return ports
            case UdpMatch():
                proto = IPProto.UDPLITE if m.module == "udplite" else IPProto.UDP
                return self._ports(m.sport, m.dport, ((proto, proto),))
            case SctpMatch():
                if m.chunk_types:
                    return self._unknown("-m sctp --chunk-types: SCTP chunks are not modelled")
                return self._ports(m.sport, m.dport, ((IPProto.SCTP, IPProto.SCTP),))
            case MultiportMatch():
                return self._multiport(m)
            case IcmpMatch():
                return self._icmp(m)
            case StateMatch():
                states = _states(m.states)
                return self._one(self.box(ct=_neg(states, m.negated, self.full(Dim.CT))))
            case ConntrackMatch():
                return self._conntrack(m)
            case PhysdevMatch() | OwnerMatch():
                pred = compile_match(m)
                r = pred(ctx) if pred is not None else True
                if isinstance(r, str):
                    return self._unknown(r)
                return Constraint((self.u,)) if r else Constraint(())
            case SetMatch():
                return self._set(m)
            case MacMatch():
                assert m.source is not None
                value = int(m.source.value.replace(":", ""), 16)
                mac = _neg(((value, value),), m.source.negated, self.full(Dim.MAC))
                return self._one(self.box(mac=mac))
            case MarkMatch():
                if m.module == "connmark":
                    return Constraint(
                        (),
                        (self.box(ct=_CONN_STATES),),
                        "-m connmark reads the connection's mark, which the snapshot does not hold",
                    )
                if mark is None:
                    return self._unknown("the packet's mark was restored from its connection's")
                note = (
                    "frames enter the bridge with skb mark 0 (nothing before it marks them); "
                    "-m mark reads the marks this ruleset's own MARK rules set"
                )
                hit = ((mark & m.mask) == m.value) != m.negated
                return Constraint((self.u,) if hit else (), notes=(note,))
            case IprangeMatch():
                b = self.u
                for spec, dim in ((m.src_range, Dim.SRC), (m.dst_range, Dim.DST)):
                    if spec is not None:
                        lo, hi = (int(a) for a in spec.value)
                        values: Intervals = ((lo, hi),) if lo <= hi else ()  # a range backwards
                        b = with_dim(b, dim, _neg(values, spec.negated, self.full(dim)))
                return self._one(b)
            case LimitMatch():
                note = f"-m {m.module} assumed under its rate (a token bucket's state is in no snapshot)"
                return Constraint((self.u,), notes=(note,))
            case AddrtypeMatch():
                return self._addrtype(m, ctx)
            case PkttypeMatch() | LengthMatch() | TtlMatch() | TosMatch() | DscpMatch():
                return self._unknown(f"-m {m.module}: not a dimension of the exposure classes")
            case UnknownMatch():
                return self._unknown(m.reason or f"-m {m.module} is not modelled")
        return self._unknown(f"-m {m.module}: not modelled")

    def _ports(
        self, sport: Neg[PortRange] | None, dport: Neg[PortRange] | None, protos: Intervals
    ) -> Constraint:
        b = self.box(frag=((0, 0),), proto=protos)
        for spec, dim in ((sport, Dim.L4A), (dport, Dim.L4B)):
            if spec is not None:
                b = with_dim(b, dim, _neg(_ports_of(spec.value), spec.negated, self.full(dim)))
        return self._one(b)

    def _multiport(self, m: MultiportMatch) -> Constraint:
        values = iv_normal((r.lo, r.hi) for r in m.ports if r.lo <= r.hi)
        base = self.box(frag=((0, 0),), proto=iv_normal((p, p) for p in PORT_PROTOCOLS))
        if m.direction in ("sports", "dports"):
            dim = Dim.L4A if m.direction == "sports" else Dim.L4B
            return self._one(with_dim(base, dim, _neg(values, m.negated, self.full(dim))))
        outside_a = iv_sub(self.full(Dim.L4A), values)
        outside_b = iv_sub(self.full(Dim.L4B), values)
        if m.negated:
            return self._one(with_dim(with_dim(base, Dim.L4A, outside_a), Dim.L4B, outside_b))
        boxes = [
            with_dim(base, Dim.L4A, values),
            with_dim(with_dim(base, Dim.L4A, outside_a), Dim.L4B, values),
        ]
        return Constraint(tuple(b for b in boxes if all(b)))

    def _icmp(self, m: IcmpMatch) -> Constraint:
        proto = IPProto.ICMP if m.module == "icmp" else IPProto.ICMPV6
        base = self.box(frag=((0, 0),), proto=((proto, proto),))
        if m.icmp_type is None:
            return Constraint(()) if m.negated else Constraint((base,))
        t = ((m.icmp_type, m.icmp_type),)
        codes: Intervals = ((m.code_min, m.code_max),) if m.code_min <= m.code_max else ()
        if not m.negated:
            return self._one(with_dim(with_dim(base, Dim.L4A, t), Dim.L4B, codes))
        boxes = [
            with_dim(base, Dim.L4A, iv_sub(self.full(Dim.L4A), t)),
            with_dim(with_dim(base, Dim.L4A, t), Dim.L4B, iv_sub(self.full(Dim.L4B), codes)),
        ]
        return Constraint(tuple(b for b in boxes if all(b)))

    def _conntrack(self, m: ConntrackMatch) -> Constraint:
        passes = self.full(Dim.CT)
        if m.ctstate is not None:
            passes = _neg(_states(m.ctstate.value), m.ctstate.negated, passes)
        others = any(
            v is not None
            for v in (
                m.ctproto, m.ctorigsrc, m.ctorigdst, m.ctreplsrc, m.ctrepldst, m.ctorigsrcport,
                m.ctorigdstport, m.ctreplsrcport, m.ctrepldstport, m.ctstatus, m.ctexpire, m.ctdir,
            )
        )  # fmt: skip
        # xt_conntrack: without a connection (INVALID, UNTRACKED) only --ctstate can match.
        no_conn = _and_iv(passes, _NO_CONN_STATES) if m.ctstate is not None else ()
        with_conn = _and_iv(passes, _CONN_STATES)
        true = [self.box(ct=no_conn)] if no_conn else []
        if not with_conn:
            return Constraint(tuple(true))
        if others:
            return Constraint(
                tuple(true),
                (self.box(ct=with_conn),),
                "-m conntrack reads the connection's tuple, status or direction, which are not "
                "dimensions of the classes",
            )
        true.append(self.box(ct=with_conn))
        return Constraint(tuple(true))

    def _addrtype(self, m: AddrtypeMatch, ctx: Ctx) -> Constraint:
        """xt_addrtype as the engine reads it: multicast, broadcast (IPv4 all-ones), unspec
        (all zeros), else local (an address of the node's devices, or of the hook's device
        with --limit-iface-in/out) or unicast."""
        if self.local_addresses is None:
            return self._unknown("addrtype needs the node's local addresses, which are not given")
        b = self.u
        for spec, dim, dev in (
            (m.src_type, Dim.SRC, ctx.in_dev if m.limit_iface_in else None),
            (m.dst_type, Dim.DST, ctx.out_dev if m.limit_iface_out else None),
        ):
            if spec is None:
                continue
            kinds = self._address_kinds(dev)
            values = iv_normal(iv for word in spec.value for iv in kinds.get(word, ()))
            b = with_dim(b, dim, _neg(values, spec.negated, self.full(dim)))
        return self._one(b)

    def _address_kinds(self, dev: str | None) -> dict[str, Intervals]:
        assert self.local_addresses is not None
        top = (1 << self.width) - 1
        if self.family is Family.IPV4:
            multicast: Intervals = ((0xE0000000, 0xEFFFFFFF),)
            broadcast: Intervals = ((top, top),)
        else:
            multicast, broadcast = ((0xFF << 120, top),), ()
        special = iv_normal((*multicast, *broadcast, (0, 0)))
        devices = [dev] if dev is not None else list(self.local_addresses)
        version = 4 if self.family is Family.IPV4 else 6
        local = iv_normal(
            (int(a), int(a))
            for d in devices
            for a in self.local_addresses.get(d, ())
            if a.version == version
        )
        local = iv_sub(local, special)
        return {
            "MULTICAST": multicast,
            "BROADCAST": broadcast,
            "UNSPEC": ((0, 0),),
            "LOCAL": local,
            "UNICAST": iv_sub(iv_sub(self.full(Dim.SRC), special), local),
        }

    def _set(self, m: SetMatch) -> Constraint:
        if m.counter_conditions:
            return self._unknown(
                f"-m set {m.set_name}: counter conditions read set counters, which are not known"
            )
        if m.return_nomatch:
            return self._unknown(f"-m set {m.set_name} --return-nomatch is not modelled")
        direction = m.directions[0] if m.directions else "dst"
        dim = Dim.SRC if direction == "src" else Dim.DST
        members = self.set_members(m.set_name)
        if isinstance(members, str):
            index = self._atom_index[(m.set_name, direction)]
            value = ((0, 0),) if m.negated else ((1, 1),)
            return self._one(with_dim(self.u, len(Dim) + index, value))
        notes = (self._set_notes[m.set_name],) if m.set_name in self._set_notes else ()
        if members is None:  # a set of the other family: never in it
            return Constraint((self.u,)) if m.negated else Constraint(())
        found = self._one(with_dim(self.u, dim, _neg(members, m.negated, self.full(dim))))
        return replace(found, notes=notes)


def _reads(rule: Rule) -> tuple[bool, bool]:
    """Whether a rule's matches read the hook's devices, and whether they read the skb mark."""
    ip = rule.ip
    devices = ip.in_iface is not None or ip.out_iface is not None
    devices = devices or any(isinstance(m, PhysdevMatch | OwnerMatch) for m in rule.matches)
    mark = any(isinstance(m, MarkMatch) and m.module == "mark" for m in rule.matches)
    return devices, mark


def _states(words: Sequence[str]) -> Intervals:
    """The states a word list names; SNAT and DNAT never hold (connections are assumed
    not NATed, as the exposure's assumptions say)."""
    return iv_normal((CT_STATES.index(w), CT_STATES.index(w)) for w in words if w in CT_STATES)


def _and_iv(a: Intervals, b: Intervals) -> Intervals:
    return iv_and(a, b)


def _and(a: Sequence[Box], b: Sequence[Box]) -> tuple[Box, ...]:
    out = []
    for x in a:
        for y in b:
            z = box_and(x, y)
            if z is not None:
                out.append(z)
    return tuple(out)


def _sub(a: Sequence[Box], b: Sequence[Box]) -> tuple[Box, ...]:
    return tuple(HeaderSet(a).subtract(b).boxes)
