"""Rule matching for the netfilter engine: each rule becomes one predicate over a packet context.

A predicate answers ``True`` (matches), ``False``, or a string: the reason the answer cannot be
known (an unmodelled module, a missing ipset, a socket owner of a forwarded packet...). A rule
is unknown only when none of its other conditions is already false, because the kernel ANDs
them: a rule that cannot match for a known reason never makes the result unknown.

The semantics follow the kernel's match functions (``ip_tables.c: ip_packet_match``,
``xt_tcpudp.c``, ``xt_physdev.c``, ``xt_conntrack.c``...); the comments name the quirks that
matter for a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import assert_never

from nodetrace.engine.conntrack import CtLookup, CtState
from nodetrace.engine.ipset import SetContext, SetIndex, SetUnknown, in_set
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import (
    PROTOCOL_NUMBERS,
    AddrtypeMatch,
    CommentMatch,
    ConntrackMatch,
    DscpMatch,
    IcmpMatch,
    IPNetwork,
    IprangeMatch,
    IpSpec,
    LengthMatch,
    LimitMatch,
    MacMatch,
    MarkMatch,
    Match,
    MultiportMatch,
    OwnerMatch,
    PhysdevMatch,
    PkttypeMatch,
    PortRange,
    SctpMatch,
    SetMatch,
    StateMatch,
    TcpMatch,
    TosMatch,
    TtlMatch,
    UdpMatch,
    UnknownMatch,
)
from nodetrace.model.packet import IPProto, Packet, total_length
from nodetrace.model.trace import Hook

Result = bool | str
Predicate = Callable[["Ctx"], Result]

_PORT_PROTOS = frozenset({IPProto.TCP, IPProto.UDP, IPProto.UDPLITE, IPProto.SCTP, 33})


@dataclass
class Ctx:
    """One packet at one hook, as the matches see it (mutable: targets change mark and state)."""

    packet: Packet
    hook: Hook
    in_dev: str = ""
    out_dev: str = ""
    physin: str | None = None
    physout: str | None = None
    bridged: bool = False
    """The skb carries bridge info (br_netfilter): true for every bridged packet."""
    mark: int = 0
    ct: CtLookup | None = None
    """``None`` while conntrack has not looked at the packet (or is off in this namespace)."""
    untracked: bool = False
    ipsets: IpSets | None = None
    set_index: SetIndex | None = None
    local_addresses: dict[str, tuple[IPv4Address | IPv6Address, ...]] | None = None
    socket_uid: int | None = None
    socket_gid: int | None = None
    notes: list[str] = field(default_factory=list)
    """Assumptions matches made while evaluating (rate limits...)."""

    # Packet fields flattened once, because every rule reads them.
    src: int = 0
    dst: int = 0
    proto: int = 0
    sport: int | None = None
    dport: int | None = None
    fragment: bool = False

    def refresh(self) -> None:
        """Recompute the flattened fields after the packet changed (NAT)."""
        p = self.packet
        self.src = int(p.nw_src) if p.nw_src is not None else 0
        self.dst = int(p.nw_dst) if p.nw_dst is not None else 0
        self.proto = p.nw_proto
        self.sport = p.tp_src
        self.dport = p.tp_dst
        self.fragment = p.ip_frag_offset != 0

    @property
    def ct_state(self) -> CtState:
        if self.untracked:
            return CtState.UNTRACKED
        if self.ct is None:
            return CtState.INVALID
        return self.ct.state


ip_length = total_length


# --- name comparison (interfaces and physdev) --------------------------------------------------


def iface_matches(pattern: str, name: str) -> bool:
    """``eth0`` equals; ``eth+`` is a prefix; ``+`` matches every name (even the empty one)."""
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _net_bits(net: IPNetwork) -> tuple[int, int]:
    mask = int(net.netmask)
    return int(net.network_address) & mask, mask


def compile_ip(ip: IpSpec) -> Predicate | None:
    """The ``ipt_ip`` part of a rule; ``None`` when it matches everything."""
    checks: list[Predicate] = []
    if ip.src is not None and (ip.src.value.prefixlen or ip.src.negated):
        net, mask = _net_bits(ip.src.value)
        neg = ip.src.negated
        checks.append(lambda c: ((c.src & mask) == net) != neg)
    if ip.dst is not None and (ip.dst.value.prefixlen or ip.dst.negated):
        dnet, dmask = _net_bits(ip.dst.value)
        dneg = ip.dst.negated
        checks.append(lambda c: ((c.dst & dmask) == dnet) != dneg)
    if ip.in_iface is not None:
        pat, ineg = ip.in_iface.value, ip.in_iface.negated
        checks.append(lambda c: iface_matches(pat, c.in_dev) != ineg)
    if ip.out_iface is not None:
        opat, oneg = ip.out_iface.value, ip.out_iface.negated
        checks.append(lambda c: iface_matches(opat, c.out_dev) != oneg)
    if ip.proto is not None:
        text = ip.proto.value
        number = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
        pneg = ip.proto.negated
        if number is None:
            checks.append(_cannot_tell(f"protocol name {text!r} is not known to nodetrace"))
        elif number != 0:  # protocol 0 (``ip``, ``hopopt``) is "any": ip_packet_match skips it
            checks.append(lambda c: (c.proto == number) != pneg)
    if ip.fragment is not None:
        fneg = ip.fragment.negated
        checks.append(lambda c: c.fragment != fneg)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return all_of(checks)


def all_of(checks: Sequence[Predicate]) -> Predicate:
    """All checks at once: False as soon as one fails, else the first "cannot tell" reason any
    gave, else True (a rule's matches, or the parts of one match, combined)."""
    checks = tuple(checks)

    def run(c: Ctx) -> Result:
        unknown: str | None = None
        for check in checks:
            r = check(c)
            if r is False:
                return False
            if r is not True:
                unknown = unknown or str(r)
        return unknown if unknown is not None else True

    return run


def _in_range(rng: PortRange, value: int | None) -> bool:
    return value is not None and rng.lo <= value <= rng.hi


def _ports(sport: object, dport: object, protos: frozenset[int]) -> Predicate:
    """tcp/udp/sctp ``--sport``/``--dport``: never true for non-first fragments (the ports are
    not in them) nor for another protocol."""
    checks: list[tuple[PortRange, bool, bool]] = []
    for spec, is_src in ((sport, True), (dport, False)):
        if spec is not None:
            checks.append((spec.value, spec.negated, is_src))  # type: ignore[attr-defined]

    def run(c: Ctx) -> Result:
        if c.fragment or c.proto not in protos:
            return False
        for rng, neg, is_src in checks:
            value = c.sport if is_src else c.dport
            if _in_range(rng, value) == neg:
                return False
        return True

    return run


def _tcp(m: TcpMatch) -> Predicate:
    ports = _ports(m.sport, m.dport, frozenset({IPProto.TCP}))
    flags, option = m.flags, m.option

    def run(c: Ctx) -> Result:
        r = ports(c)
        if r is not True:
            return r
        if flags is not None:
            f = flags.value
            if ((c.packet.tcp_flags & f.mask) == f.comp) == flags.negated:
                return False
        return option is None or (
            (option.value in _tcp_option_kinds(c.packet.tcp_options)) != option.negated
        )

    return run


def _tcp_option_kinds(options: bytes) -> set[int]:
    """Option kinds present, walked as xt_tcpudp's tcp_find_option does."""
    kinds: set[int] = set()
    i = 0
    while i < len(options):
        kind = options[i]
        kinds.add(kind)
        if kind in (0, 1):
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        i += options[i + 1]
    return kinds


def _multiport(m: MultiportMatch) -> Predicate:
    ranges, direction, neg = m.ports, m.direction, m.negated

    def run(c: Ctx) -> Result:
        if c.fragment or c.proto not in _PORT_PROTOS:
            return False
        hit = False
        for r in ranges:
            if direction != "dports" and _in_range(r, c.sport):
                hit = True
                break
            if direction != "sports" and _in_range(r, c.dport):
                hit = True
                break
        return hit != neg

    return run


def _icmp(m: IcmpMatch) -> Predicate:
    proto = IPProto.ICMP if m.module == "icmp" else IPProto.ICMPV6
    icmp_type, lo, hi, neg = m.icmp_type, m.code_min, m.code_max, m.negated

    def run(c: Ctx) -> Result:
        if c.fragment or c.proto != proto:
            return False
        p = c.packet
        hit = icmp_type is None or (icmp_type == p.icmp_type and lo <= (p.icmp_code or 0) <= hi)
        return hit != neg

    return run


def _state(m: StateMatch) -> Predicate:
    states, neg = frozenset(m.states), m.negated

    def run(c: Ctx) -> Result:
        if c.ct is not None and c.ct.unknown and not c.untracked:
            return c.ct.unknown
        return (c.ct_state.value in states) != neg

    return run


def _conntrack(m: ConntrackMatch) -> Predicate:
    def run(c: Ctx) -> Result:
        if c.ct is not None and c.ct.unknown and not c.untracked:
            return c.ct.unknown
        conn = None if c.untracked or c.ct is None else c.ct.conn
        if m.ctstate is not None:
            bits = {c.ct_state.value}
            if conn is not None:
                if "SRC_NAT" in conn.status:
                    bits.add("SNAT")
                if "DST_NAT" in conn.status:
                    bits.add("DNAT")
            if bool(bits & set(m.ctstate.value)) == m.ctstate.negated:
                return False
        if conn is None:
            # xt_conntrack: without a connection only a --ctstate criterion can match.
            return m.ctstate is not None
        assert c.ct is not None
        if m.ctdir is not None and c.ct.direction is not None and c.ct.direction.value != m.ctdir:
            return False
        if m.ctproto is not None and (conn.orig.proto == m.ctproto.value) == m.ctproto.negated:
            return False
        for spec, addr in (
            (m.ctorigsrc, conn.orig.src),
            (m.ctorigdst, conn.orig.dst),
            (m.ctreplsrc, conn.reply.src),
            (m.ctrepldst, conn.reply.dst),
        ):
            if spec is not None and (addr in spec.value) == spec.negated:
                return False
        for pspec, port in (
            (m.ctorigsrcport, conn.orig.sport),
            (m.ctorigdstport, conn.orig.dport),
            (m.ctreplsrcport, conn.reply.sport),
            (m.ctrepldstport, conn.reply.dport),
        ):
            if pspec is not None and _in_range(pspec.value, port) == pspec.negated:
                return False
        if m.ctstatus is not None:
            wanted = set(m.ctstatus.value)
            status = set(conn.status)
            if (
                "ASSURED" in wanted
                and conn.orig.proto in (IPProto.UDP, IPProto.UDPLITE)
                and ("SEEN_REPLY" in status)
            ):
                return "UDP connections become ASSURED by timing (2 s after a reply); not modelled"
            if bool(wanted & status) == m.ctstatus.negated:
                return False
        if m.ctexpire is not None:
            if conn.confirmed:
                return "--ctexpire reads the connection's remaining lifetime, which is not known"
            # An unconfirmed entry stores a relative timeout, so nf_ct_expires() reads 0.
            if _in_range(m.ctexpire.value, 0) == m.ctexpire.negated:
                return False
        return True

    return run


def _physdev(m: PhysdevMatch) -> Predicate:
    """xt_physdev.c (5.x+): with no bridge info only inverted options match; ``--physdev-out``
    never matches before a bridge port is chosen (PREROUTING), even inverted."""
    opts = (m.is_bridged, m.is_in, m.is_out, m.physdev_in, m.physdev_out)

    def run(c: Ctx) -> Result:
        if not c.bridged:
            return all(o is None or o.negated for o in opts)
        outdev, indev = c.physout, c.physin
        if m.is_bridged is not None and (outdev is not None) == m.is_bridged.negated:
            return False
        if m.is_in is not None and (indev is None) != m.is_in.negated:
            return False
        if m.is_out is not None and (outdev is None) != m.is_out.negated:
            return False
        # An in-port name is compared only when there is one (locally sent bridged packets).
        if (
            m.physdev_in is not None
            and indev is not None
            and iface_matches(m.physdev_in.value, indev) == m.physdev_in.negated
        ):
            return False
        if m.physdev_out is None:
            return True
        if outdev is None:
            return False
        return iface_matches(m.physdev_out.value, outdev) != m.physdev_out.negated

    return run


def _set(m: SetMatch) -> Predicate:
    if m.counter_conditions:
        return _cannot_tell(
            f"-m set {m.set_name}: counter conditions read set counters, which are not known"
        )

    def run(c: Ctx) -> Result:
        if c.ipsets is None:
            return f"-m set needs the ipsets (set {m.set_name!r}); give them with --ipsets"
        sctx = SetContext(
            in_dev=c.in_dev,
            out_dev=c.out_dev,
            physin=c.physin,
            physout=c.physout,
            mark=c.mark,
            mac_valid=c.hook not in (Hook.OUTPUT, Hook.POSTROUTING),
        )
        ipset = c.ipsets.get(m.set_name)
        if ipset is not None and (ipset.options.timeout or any(x.timeout for x in ipset.members)):
            note = f"ipset {m.set_name}: members with a timeout are assumed not to have expired"
            if note not in c.notes:
                c.notes.append(note)
        try:
            hit = in_set(
                c.ipsets,
                m.set_name,
                m.directions,
                c.packet,
                sctx,
                return_nomatch=m.return_nomatch,
                index=c.set_index,
            )
        except SetUnknown as err:
            return str(err)
        return hit != m.negated

    return run


def _mac(m: MacMatch) -> Predicate:
    assert m.source is not None
    mac, neg = m.source.value, m.source.negated

    def run(c: Ctx) -> Result:
        return (c.packet.dl_src.lower() == mac) != neg

    return run


def _mark(m: MarkMatch) -> Predicate:
    value, mask, neg = m.value, m.mask, m.negated
    if m.module == "mark":
        return lambda c: ((c.mark & mask) == value) != neg

    def run(c: Ctx) -> Result:
        conn = None if c.untracked or c.ct is None else c.ct.conn
        if conn is None:
            return False  # xt_connmark: no connection, no match (even inverted)
        return ((conn.mark & mask) == value) != neg

    return run


def _iprange(m: IprangeMatch) -> Predicate:
    checks = [
        (int(spec.value[0]), int(spec.value[1]), spec.negated, is_src)
        for spec, is_src in ((m.src_range, True), (m.dst_range, False))
        if spec is not None
    ]

    def run(c: Ctx) -> Result:
        for lo, hi, neg, is_src in checks:
            value = c.src if is_src else c.dst
            if (lo <= value <= hi) == neg:
                return False
        return True

    return run


def _addrtype(m: AddrtypeMatch) -> Predicate:
    def kind(c: Ctx, addr: IPv4Address | IPv6Address | None, dev: str | None) -> str | set[str]:
        if addr is None:
            return {"UNSPEC"}
        if c.local_addresses is None:
            return "addrtype needs the node's local addresses, which are not given"
        kinds: set[str] = set()
        if addr.is_multicast:
            kinds.add("MULTICAST")
        elif isinstance(addr, IPv4Address) and int(addr) == 0xFFFFFFFF:
            kinds.add("BROADCAST")
        elif int(addr) == 0:
            kinds.add("UNSPEC")
        else:
            devices = [dev] if dev is not None else list(c.local_addresses)
            local = any(addr in c.local_addresses.get(d, ()) for d in devices)
            kinds.add("LOCAL" if local else "UNICAST")
        return kinds

    def run(c: Ctx) -> Result:
        p = c.packet
        for spec, addr, limit_dev in (
            (m.src_type, p.nw_src, c.in_dev if m.limit_iface_in else None),
            (m.dst_type, p.nw_dst, c.out_dev if m.limit_iface_out else None),
        ):
            if spec is None:
                continue
            kinds = kind(c, addr, limit_dev if (m.limit_iface_in or m.limit_iface_out) else None)
            if isinstance(kinds, str):
                return kinds
            if bool(kinds & set(spec.value)) == spec.negated:
                return False
        return True

    return run


def _pkttype(m: PkttypeMatch) -> Predicate:
    assert m.pkt_type is not None
    want, neg = m.pkt_type.value, m.pkt_type.negated

    def run(c: Ctx) -> Result:
        p = c.packet
        if p.dl_dst.lower() == "ff:ff:ff:ff:ff:ff":
            kind = "broadcast"
        elif int(p.dl_dst.split(":")[0], 16) & 1:
            kind = "multicast"
        elif c.hook in (Hook.OUTPUT, Hook.POSTROUTING) and not c.bridged:
            kind = "host" if want in ("host", "otherhost") else "unicast"
        else:
            kind = "unicast"
        if want in ("host", "otherhost"):
            return "--pkt-type host/otherhost depends on the receiving device's address"
        return (kind == want) != neg

    return run


def _length(m: LengthMatch) -> Predicate:
    assert m.length is not None
    rng, neg = m.length.value, m.length.negated
    return lambda c: _in_range(rng, ip_length(c.packet)) != neg


def _ttl(m: TtlMatch) -> Predicate:
    op, value = m.op, m.value

    def run(c: Ctx) -> Result:
        ttl = c.packet.nw_ttl
        if op == "eq":
            return ttl == value
        if op == "ne":
            return ttl != value
        if op == "lt":
            return ttl < value
        return ttl > value

    return run


def _tos(m: TosMatch) -> Predicate:
    value, mask, neg = m.value, m.mask, m.negated
    return lambda c: ((c.packet.nw_tos & mask) == value) != neg


def _dscp(m: DscpMatch) -> Predicate:
    value, neg = m.dscp, m.negated
    return lambda c: ((c.packet.nw_tos >> 2) == value) != neg


def _owner(m: OwnerMatch) -> Predicate:
    def run(c: Ctx) -> Result:
        if c.hook not in (Hook.OUTPUT, Hook.POSTROUTING) or c.bridged:
            # xt_owner: a packet without a local socket matches only if every option is inverted.
            opts = (m.uid, m.gid, m.socket_exists)
            return all(o is None or o.negated for o in opts)
        if c.socket_uid is None:
            return "-m owner needs the sending socket's uid/gid, which are not given"
        if m.socket_exists is not None and m.socket_exists.negated:
            return False
        if m.uid is not None and _in_range(m.uid.value, c.socket_uid) == m.uid.negated:
            return False
        if m.gid is not None:
            if m.suppl_groups:
                return "--suppl-groups needs the socket's supplementary groups"
            if _in_range(m.gid.value, c.socket_gid) == m.gid.negated:
                return False
        return True

    return run


def _limit(m: LimitMatch) -> Predicate:
    note = f"-m {m.module} assumed under its rate (a token bucket's state is not in any snapshot)"

    def run(c: Ctx) -> Result:
        if note not in c.notes:
            c.notes.append(note)
        return True

    return run


def compile_match(m: Match) -> Predicate | None:
    """The predicate of one match module; ``None`` for modules that always match (comment)."""
    match m:
        case CommentMatch():
            return None
        case TcpMatch():
            return _tcp(m)
        case UdpMatch():
            protos = frozenset({IPProto.UDPLITE if m.module == "udplite" else IPProto.UDP})
            return _ports(m.sport, m.dport, protos)
        case SctpMatch():
            if m.chunk_types:
                return _cannot_tell("-m sctp --chunk-types: SCTP chunks are not modelled")
            return _ports(m.sport, m.dport, frozenset({IPProto.SCTP}))
        case MultiportMatch():
            return _multiport(m)
        case IcmpMatch():
            return _icmp(m)
        case StateMatch():
            return _state(m)
        case ConntrackMatch():
            return _conntrack(m)
        case PhysdevMatch():
            return _physdev(m)
        case SetMatch():
            return _set(m)
        case MacMatch():
            return _mac(m)
        case MarkMatch():
            return _mark(m)
        case IprangeMatch():
            return _iprange(m)
        case AddrtypeMatch():
            return _addrtype(m)
        case PkttypeMatch():
            return _pkttype(m)
        case LengthMatch():
            return _length(m)
        case TtlMatch():
            return _ttl(m)
        case TosMatch():
            return _tos(m)
        case DscpMatch():
            return _dscp(m)
        case OwnerMatch():
            return _owner(m)
        case LimitMatch():
            return _limit(m)
        case UnknownMatch():
            return _cannot_tell(m.reason or f"-m {m.module} is not modelled")
        case _:
            assert_never(m)


def _cannot_tell(reason: str) -> Predicate:
    return lambda c: reason


def uses_conntrack(m: Match) -> bool:
    """Whether loading this match makes the kernel track connections in the namespace."""
    return isinstance(m, StateMatch | ConntrackMatch) or (
        isinstance(m, MarkMatch) and m.module == "connmark"
    )
