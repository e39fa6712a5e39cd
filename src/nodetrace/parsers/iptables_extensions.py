"""Turn the options of one match module or target, as ``iptables-save`` wrote them, into types.

Each builder takes the module's options in saved order (``RawOption``) and returns the typed
match or target of :mod:`nodetrace.model.netfilter`. An option a builder does not know raises
:class:`Unmodelled`, and the caller keeps the module verbatim as unknown; a value that cannot be
read (``--dport abc``) raises :class:`BadValue` with the token and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_address, ip_network
from typing import Any

from nodetrace.model.netfilter import (
    CT_STATES,
    CT_STATUSES,
    PROTOCOL_NUMBERS,
    AddrtypeMatch,
    ChecksumTarget,
    CommentMatch,
    ConnmarkTarget,
    ConntrackMatch,
    CtTarget,
    DscpMatch,
    IcmpMatch,
    IPAddress,
    IPNetwork,
    IprangeMatch,
    LengthMatch,
    LimitMatch,
    LogTarget,
    MacMatch,
    MarkMatch,
    MarkTarget,
    Match,
    MultiportMatch,
    NatRange,
    NatTarget,
    Neg,
    NflogTarget,
    NotrackTarget,
    OwnerMatch,
    PhysdevMatch,
    PkttypeMatch,
    PortRange,
    RawOption,
    RejectTarget,
    SctpMatch,
    SetMatch,
    StateMatch,
    Target,
    TcpFlags,
    TcpMatch,
    TcpmssTarget,
    TosMatch,
    TraceTarget,
    TtlMatch,
    UdpMatch,
)
from nodetrace.model.packet import Family, TcpFlag, canonical_mac


class Unmodelled(Exception):
    """The module has an option nodetrace does not interpret; keep the module as unknown."""


class BadValue(Exception):
    """A value that cannot be read; ``token`` is the word, ``expected`` what would be valid."""

    def __init__(self, message: str, token: str, expected: str) -> None:
        super().__init__(message)
        self.token = token
        self.expected = expected


ICMP_TYPE_NAMES: dict[str, tuple[int, int, int]] = {
    "echo-reply": (0, 0, 0xFF),
    "pong": (0, 0, 0xFF),
    "destination-unreachable": (3, 0, 0xFF),
    "network-unreachable": (3, 0, 0),
    "host-unreachable": (3, 1, 1),
    "protocol-unreachable": (3, 2, 2),
    "port-unreachable": (3, 3, 3),
    "fragmentation-needed": (3, 4, 4),
    "source-route-failed": (3, 5, 5),
    "network-unknown": (3, 6, 6),
    "host-unknown": (3, 7, 7),
    "network-prohibited": (3, 9, 9),
    "host-prohibited": (3, 10, 10),
    "TOS-network-unreachable": (3, 11, 11),
    "TOS-host-unreachable": (3, 12, 12),
    "communication-prohibited": (3, 13, 13),
    "host-precedence-violation": (3, 14, 14),
    "precedence-cutoff": (3, 15, 15),
    "source-quench": (4, 0, 0xFF),
    "redirect": (5, 0, 0xFF),
    "network-redirect": (5, 0, 0),
    "host-redirect": (5, 1, 1),
    "TOS-network-redirect": (5, 2, 2),
    "TOS-host-redirect": (5, 3, 3),
    "echo-request": (8, 0, 0xFF),
    "ping": (8, 0, 0xFF),
    "router-advertisement": (9, 0, 0xFF),
    "router-solicitation": (10, 0, 0xFF),
    "time-exceeded": (11, 0, 0xFF),
    "ttl-exceeded": (11, 0, 0xFF),
    "ttl-zero-during-transit": (11, 0, 0),
    "ttl-zero-during-reassembly": (11, 1, 1),
    "parameter-problem": (12, 0, 0xFF),
    "ip-header-bad": (12, 0, 0),
    "required-option-missing": (12, 1, 1),
    "timestamp-request": (13, 0, 0xFF),
    "timestamp-reply": (14, 0, 0xFF),
    "address-mask-request": (17, 0, 0xFF),
    "address-mask-reply": (18, 0, 0xFF),
}
"""``--icmp-type`` names as libxt_icmp knows them: (type, code min, code max)."""

ICMPV6_TYPE_NAMES: dict[str, tuple[int, int, int]] = {
    "destination-unreachable": (1, 0, 0xFF),
    "no-route": (1, 0, 0),
    "communication-prohibited": (1, 1, 1),
    "beyond-scope": (1, 2, 2),
    "address-unreachable": (1, 3, 3),
    "port-unreachable": (1, 4, 4),
    "failed-policy": (1, 5, 5),
    "reject-route": (1, 6, 6),
    "packet-too-big": (2, 0, 0xFF),
    "time-exceeded": (3, 0, 0xFF),
    "ttl-exceeded": (3, 0, 0xFF),
    "ttl-zero-during-transit": (3, 0, 0),
    "ttl-zero-during-reassembly": (3, 1, 1),
    "parameter-problem": (4, 0, 0xFF),
    "bad-header": (4, 0, 0),
    "unknown-header-type": (4, 1, 1),
    "unknown-option": (4, 2, 2),
    "echo-request": (128, 0, 0xFF),
    "ping": (128, 0, 0xFF),
    "echo-reply": (129, 0, 0xFF),
    "pong": (129, 0, 0xFF),
    "mld-listener-query": (130, 0, 0xFF),
    "mld-listener-report": (131, 0, 0xFF),
    "mld-listener-done": (132, 0, 0xFF),
    "mld-listener-reduction": (132, 0, 0xFF),
    "router-solicitation": (133, 0, 0xFF),
    "router-advertisement": (134, 0, 0xFF),
    "neighbour-solicitation": (135, 0, 0xFF),
    "neighbor-solicitation": (135, 0, 0xFF),
    "neighbour-advertisement": (136, 0, 0xFF),
    "neighbor-advertisement": (136, 0, 0xFF),
    "redirect": (137, 0, 0xFF),
}

TCP_FLAG_NAMES: dict[str, int] = {
    "FIN": TcpFlag.FIN,
    "SYN": TcpFlag.SYN,
    "RST": TcpFlag.RST,
    "PSH": TcpFlag.PSH,
    "ACK": TcpFlag.ACK,
    "URG": TcpFlag.URG,
    "ECE": TcpFlag.ECE,
    "CWR": TcpFlag.CWR,
    "ALL": 0x3F,
    "NONE": 0,
}

DSCP_CLASSES: dict[str, int] = {
    "CS0": 0x00,
    "CS1": 0x08,
    "CS2": 0x10,
    "CS3": 0x18,
    "CS4": 0x20,
    "CS5": 0x28,
    "CS6": 0x30,
    "CS7": 0x38,
    "BE": 0x00,
    "AF11": 0x0A,
    "AF12": 0x0C,
    "AF13": 0x0E,
    "AF21": 0x12,
    "AF22": 0x14,
    "AF23": 0x16,
    "AF31": 0x1A,
    "AF32": 0x1C,
    "AF33": 0x1E,
    "AF41": 0x22,
    "AF42": 0x24,
    "AF43": 0x26,
    "EF": 0x2E,
}

ADDRTYPES = (
    "UNSPEC",
    "UNICAST",
    "LOCAL",
    "BROADCAST",
    "ANYCAST",
    "MULTICAST",
    "BLACKHOLE",
    "UNREACHABLE",
    "PROHIBIT",
    "THROW",
    "NAT",
    "XRESOLVE",
)

TOS_NAMES: dict[str, int] = {
    "Minimize-Delay": 0x10,
    "Maximize-Throughput": 0x08,
    "Maximize-Reliability": 0x04,
    "Minimize-Cost": 0x02,
    "Normal-Service": 0x00,
}


# --- value readers ----------------------------------------------------------------------------


def _one(opt: RawOption) -> str:
    if len(opt.values) != 1:
        raise BadValue(
            f"--{opt.name} takes one value", " ".join(opt.values) or f"--{opt.name}", "one value"
        )
    return opt.values[0]


def _none(opt: RawOption) -> None:
    if opt.values:
        raise BadValue(f"--{opt.name} takes no value", opt.values[0], f"--{opt.name} alone")


def read_int(text: str, what: str = "a number", *, limit: int = 0xFFFFFFFF) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise BadValue(f"not {what}", text, what) from None
    if not 0 <= value <= limit:
        raise BadValue(f"out of range (0..{limit})", text, what)
    return value


def read_port(text: str) -> int:
    return read_int(text, "a port number", limit=0xFFFF)


def read_port_range(text: str, sep: str = ":") -> PortRange:
    """``22``, ``1024:65535``, ``:1023`` and ``1024:`` (iptables fills the open ends)."""
    if sep in text:
        lo_s, hi_s = text.split(sep, 1)
        lo = read_port(lo_s) if lo_s else 0
        hi = read_port(hi_s) if hi_s else 0xFFFF
        if lo > hi:
            raise BadValue("range start above its end", text, "LOW:HIGH")
        return PortRange(lo, hi)
    port = read_port(text)
    return PortRange(port, port)


def read_int_range(text: str, limit: int = 0xFFFFFFFF) -> PortRange:
    if ":" in text:
        lo_s, hi_s = text.split(":", 1)
        lo = read_int(lo_s, limit=limit) if lo_s else 0
        hi = read_int(hi_s, limit=limit) if hi_s else limit
        return PortRange(lo, hi)
    value = read_int(text, limit=limit)
    return PortRange(value, value)


def read_value_mask(text: str) -> tuple[int, int]:
    """``0x5`` or ``0x5/0xff`` (marks, TOS)."""
    if "/" in text:
        v, m = text.split("/", 1)
        return read_int(v, "a number"), read_int(m, "a mask")
    return read_int(text, "a number"), 0xFFFFFFFF


def read_network(text: str, family: Family) -> IPNetwork:
    try:
        net = ip_network(text, strict=False)
    except ValueError:
        raise BadValue("not an address or network", text, "ADDRESS[/PREFIX]") from None
    if (net.version == 4) != (family is Family.IPV4):
        raise BadValue(f"address family does not match this {family.value} ruleset", text, "")
    return net


def read_address(text: str) -> IPAddress:
    try:
        return ip_address(text)
    except ValueError:
        raise BadValue("not an address", text, "an IP address") from None


def read_words(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    """A comma list of words from ``allowed``, returned in ``allowed`` order (as saved)."""
    words = {w.upper() for w in text.split(",") if w}
    bad = words - set(allowed)
    if bad or not words:
        raise BadValue(f"not a {what}", text, ",".join(allowed))
    return tuple(w for w in allowed if w in words)


def read_mac(text: str) -> str:
    try:
        return canonical_mac(text)
    except ValueError:
        raise BadValue("not a MAC address", text, "XX:XX:XX:XX:XX:XX") from None


def read_tcp_flags(text: str) -> int:
    bits = 0
    for word in text.split(","):
        if word.upper() not in TCP_FLAG_NAMES:
            raise BadValue("not a TCP flag", word, "FIN,SYN,RST,PSH,ACK,URG,ECE,CWR,ALL,NONE")
        bits |= TCP_FLAG_NAMES[word.upper()]
    return bits


def read_icmp_type(text: str, family: Family) -> tuple[int | None, int, int]:
    names = ICMP_TYPE_NAMES if family is Family.IPV4 else ICMPV6_TYPE_NAMES
    if text == "any":
        return None, 0, 0xFF
    if text in names:
        return names[text]
    if "/" in text:
        t, c = text.split("/", 1)
        code = read_int(c, "an ICMP code", limit=0xFF)
        return read_int(t, "an ICMP type", limit=0xFF), code, code
    return read_int(text, "an ICMP type or name", limit=0xFF), 0, 0xFF


# --- match builders ---------------------------------------------------------------------------

MatchBuilder = Callable[[str, list[RawOption], Family], Match]


def _unknown_option(module: str, opt: RawOption) -> Unmodelled:
    return Unmodelled(f"option --{opt.name} of -m {module} is not modelled")


def _only(module: str, opts: list[RawOption], name: str) -> RawOption:
    """The option of a match that takes exactly one, ``--name``."""
    if len(opts) != 1 or opts[0].name != name:
        raise Unmodelled(f"-m {module} without exactly one --{name}")
    return opts[0]


_PORT_FIELDS = {
    "sport": "sport",
    "source-port": "sport",
    "dport": "dport",
    "destination-port": "dport",
}
"""``--sport``/``--dport`` of -m tcp, udp, udplite and sctp, by every spelling."""

_SYN = TcpFlags(TcpFlag.FIN | TcpFlag.SYN | TcpFlag.RST | TcpFlag.ACK, int(TcpFlag.SYN))


def _tcp(module: str, opts: list[RawOption], family: Family) -> Match:
    # Builders collect their fields and build the match once: every field a later option
    # repeats is overwritten, as replacing it in a built match would.
    fields: dict[str, Any] = {}
    for opt in opts:
        name = opt.name
        if name in _PORT_FIELDS:
            fields[_PORT_FIELDS[name]] = Neg(read_port_range(_one(opt)), opt.negated)
        elif name == "tcp-flags":
            if len(opt.values) != 2:
                raise BadValue("--tcp-flags takes MASK COMP", " ".join(opt.values), "MASK COMP")
            mask, comp = read_tcp_flags(opt.values[0]), read_tcp_flags(opt.values[1])
            fields["flags"] = Neg(TcpFlags(mask, comp), opt.negated)
        elif name == "syn":
            _none(opt)
            fields["flags"] = Neg(_SYN, opt.negated)
        elif name == "tcp-option":
            kind = read_int(_one(opt), "an option kind", limit=255)
            fields["option"] = Neg(kind, opt.negated)
        else:
            raise _unknown_option(module, opt)
    return TcpMatch(**fields)


def _udp(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    for opt in opts:
        if opt.name not in _PORT_FIELDS:
            raise _unknown_option(module, opt)
        fields[_PORT_FIELDS[opt.name]] = Neg(read_port_range(_one(opt)), opt.negated)
    return UdpMatch(module, **fields)


def _sctp(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    for opt in opts:
        if opt.name in _PORT_FIELDS:
            fields[_PORT_FIELDS[opt.name]] = Neg(read_port_range(_one(opt)), opt.negated)
        elif opt.name == "chunk-types":
            fields["chunk_types"] = (("!",) if opt.negated else ()) + opt.values
        else:
            raise _unknown_option(module, opt)
    return SctpMatch(**fields)


def _multiport(module: str, opts: list[RawOption], family: Family) -> Match:
    if len(opts) != 1:
        raise Unmodelled("-m multiport with several port options")
    opt = opts[0]
    names = {
        "sports": "sports",
        "source-ports": "sports",
        "dports": "dports",
        "destination-ports": "dports",
        "ports": "ports",
    }
    if opt.name not in names:
        raise _unknown_option(module, opt)
    ports = tuple(read_port_range(p) for p in _one(opt).split(","))
    return MultiportMatch(direction=names[opt.name], ports=ports, negated=opt.negated)


def _icmp(module: str, opts: list[RawOption], family: Family) -> Match:
    want = "icmp-type" if module == "icmp" else "icmpv6-type"
    fam = Family.IPV4 if module == "icmp" else Family.IPV6
    opt = _only(module, opts, want)
    icmp_type, lo, hi = read_icmp_type(_one(opt), fam)
    return IcmpMatch(
        module=module, icmp_type=icmp_type, code_min=lo, code_max=hi, negated=opt.negated
    )


def _state(module: str, opts: list[RawOption], family: Family) -> Match:
    opt = _only(module, opts, "state")
    states = read_words(_one(opt), CT_STATES[:5], "connection state")
    return StateMatch(states=states, negated=opt.negated)


_CT_ADDR = ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst")
_CT_PORT = ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport")


def _conntrack(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    for opt in opts:
        name = opt.name
        if name == "ctstate":
            fields["ctstate"] = Neg(read_words(_one(opt), CT_STATES, "state"), opt.negated)
        elif name == "ctstatus":
            words = read_words(_one(opt), CT_STATUSES, "conntrack status")
            fields["ctstatus"] = Neg(words, opt.negated)
        elif name == "ctproto":
            text = _one(opt).lower()
            proto = PROTOCOL_NUMBERS.get(text)
            if proto is None:
                proto = read_int(text, "a protocol", limit=255)
            fields["ctproto"] = Neg(proto, opt.negated)
        elif name in _CT_ADDR:
            fields[name] = Neg(read_network(_one(opt), family), opt.negated)
        elif name in _CT_PORT:
            fields[name] = Neg(read_port_range(_one(opt)), opt.negated)
        elif name == "ctexpire":
            fields["ctexpire"] = Neg(read_int_range(_one(opt)), opt.negated)
        elif name == "ctdir":
            value = _one(opt).upper()
            if value not in ("ORIGINAL", "REPLY"):
                raise BadValue("not a direction", value, "ORIGINAL or REPLY")
            fields["ctdir"] = value
        else:
            raise _unknown_option(module, opt)
    return ConntrackMatch(**fields)


_PHYSDEV_DEVICES = {"physdev-in": "physdev_in", "physdev-out": "physdev_out"}
_PHYSDEV_FLAGS = {
    "physdev-is-in": "is_in",
    "physdev-is-out": "is_out",
    "physdev-is-bridged": "is_bridged",
}


def _physdev(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    for opt in opts:
        if opt.name in _PHYSDEV_DEVICES:
            fields[_PHYSDEV_DEVICES[opt.name]] = Neg(_one(opt), opt.negated)
        elif opt.name in _PHYSDEV_FLAGS:
            _none(opt)
            fields[_PHYSDEV_FLAGS[opt.name]] = Neg(True, opt.negated)
        else:
            raise _unknown_option(module, opt)
    return PhysdevMatch(**fields)


_SET_COUNTERS = frozenset(
    {"packets-eq", "packets-lt", "packets-gt", "bytes-eq", "bytes-lt", "bytes-gt"}
)


def _set(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    counters: list[RawOption] = []
    for opt in opts:
        if opt.name in ("match-set", "set"):
            if len(opt.values) != 2:
                raise BadValue("--match-set takes NAME FLAGS", " ".join(opt.values), "NAME src,dst")
            dirs = tuple(opt.values[1].split(","))
            if not dirs or any(d not in ("src", "dst") for d in dirs) or len(dirs) > 6:
                raise BadValue("not a list of src/dst", opt.values[1], "src, dst or src,dst...")
            fields.update(set_name=opt.values[0], directions=dirs, negated=opt.negated)
        elif opt.name == "return-nomatch":
            fields["return_nomatch"] = True
        elif opt.name == "update-counters":
            fields["update_counters"] = not opt.negated
        elif opt.name == "update-subcounters":
            fields["update_subcounters"] = not opt.negated
        elif opt.name in _SET_COUNTERS:
            counters.append(opt)
        else:
            raise _unknown_option(module, opt)
    if "set_name" not in fields:
        raise Unmodelled("-m set without --match-set")
    return SetMatch(**fields, counter_conditions=tuple(counters))


def _mac(module: str, opts: list[RawOption], family: Family) -> Match:
    opt = _only(module, opts, "mac-source")
    return MacMatch(source=Neg(read_mac(_one(opt)), opt.negated))


def _comment(module: str, opts: list[RawOption], family: Family) -> Match:
    return CommentMatch(comment=" ".join(_only(module, opts, "comment").values))


def _mark(module: str, opts: list[RawOption], family: Family) -> Match:
    opt = _only(module, opts, "mark")
    value, mask = read_value_mask(_one(opt))
    return MarkMatch(module=module, value=value, mask=mask, negated=opt.negated)


def _iprange(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    for opt in opts:
        if opt.name not in ("src-range", "dst-range"):
            raise _unknown_option(module, opt)
        text = _one(opt)
        lo_s, sep, hi_s = text.partition("-")
        lo = read_address(lo_s)
        hi = read_address(hi_s) if sep else lo
        if lo.version != hi.version or (lo.version == 4) != (family is Family.IPV4):
            raise BadValue("range of the wrong address family", text, "ADDR-ADDR")
        key = "src_range" if opt.name == "src-range" else "dst_range"
        fields[key] = Neg((lo, hi), opt.negated)
    return IprangeMatch(**fields)


def _addrtype(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    for opt in opts:
        if opt.name in ("src-type", "dst-type"):
            types = read_words(_one(opt), ADDRTYPES, "type")
            fields[opt.name.replace("-", "_")] = Neg(types, opt.negated)
        elif opt.name in ("limit-iface-in", "limit-iface-out"):
            fields[opt.name.replace("-", "_")] = True
        else:
            raise _unknown_option(module, opt)
    return AddrtypeMatch(**fields)


def _pkttype(module: str, opts: list[RawOption], family: Family) -> Match:
    opt = _only(module, opts, "pkt-type")
    value = _one(opt).lower()
    if value not in ("unicast", "broadcast", "multicast", "host", "otherhost"):
        raise BadValue("not a packet type", value, "unicast, broadcast or multicast")
    return PkttypeMatch(pkt_type=Neg(value, opt.negated))


def _length(module: str, opts: list[RawOption], family: Family) -> Match:
    opt = _only(module, opts, "length")
    return LengthMatch(length=Neg(read_int_range(_one(opt), 0xFFFF), opt.negated))


def _ttl(module: str, opts: list[RawOption], family: Family) -> Match:
    if len(opts) != 1:
        raise Unmodelled(f"-m {module} without exactly one comparison")
    opt = opts[0]
    prefix = f"{module}-"
    if not opt.name.startswith(prefix) or opt.name[len(prefix) :] not in ("eq", "lt", "gt"):
        raise _unknown_option(module, opt)
    op = opt.name[len(prefix) :]
    if opt.negated:
        if op != "eq":
            raise BadValue(f"only --{module}-eq can be negated", opt.name, f"! --{module}-eq")
        op = "ne"
    return TtlMatch(module=module, op=op, value=read_int(_one(opt), "a TTL", limit=255))


def _tos(module: str, opts: list[RawOption], family: Family) -> Match:
    opt = _only(module, opts, "tos")
    text = _one(opt)
    if text in TOS_NAMES:
        value, mask = TOS_NAMES[text], 0x3F
    else:
        value, mask = read_value_mask(text)
        mask = mask if "/" in text else 0xFF
    return TosMatch(value=value & 0xFF, mask=mask & 0xFF, negated=opt.negated)


def _dscp(module: str, opts: list[RawOption], family: Family) -> Match:
    if len(opts) != 1:
        raise Unmodelled("-m dscp without exactly one option")
    opt = opts[0]
    if opt.name == "dscp":
        value = read_int(_one(opt), "a DSCP value", limit=0x3F)
    elif opt.name == "dscp-class":
        cls = _one(opt).upper()
        if cls not in DSCP_CLASSES:
            raise BadValue("not a DSCP class", cls, "CS0-CS7, AF11-AF43, EF, BE")
        value = DSCP_CLASSES[cls]
    else:
        raise _unknown_option(module, opt)
    return DscpMatch(dscp=value, negated=opt.negated)


def _owner(module: str, opts: list[RawOption], family: Family) -> Match:
    fields: dict[str, Any] = {}
    for opt in opts:
        if opt.name in ("uid-owner", "gid-owner"):
            text = _one(opt)
            if not text.replace("-", "").isdigit():
                raise Unmodelled(f"--{opt.name} by name ({text}) needs the node's user database")
            lo_s, _, hi_s = text.partition("-")
            rng = PortRange(int(lo_s), int(hi_s or lo_s))
            fields["uid" if opt.name == "uid-owner" else "gid"] = Neg(rng, opt.negated)
        elif opt.name == "socket-exists":
            fields["socket_exists"] = Neg(True, opt.negated)
        elif opt.name == "suppl-groups":
            fields["suppl_groups"] = True
        else:
            raise _unknown_option(module, opt)
    return OwnerMatch(**fields)


def _limit(module: str, opts: list[RawOption], family: Family) -> Match:
    return LimitMatch(module=module, options=tuple(opts))


MATCH_BUILDERS: dict[str, MatchBuilder] = {
    "tcp": _tcp,
    "udp": _udp,
    "udplite": _udp,
    "sctp": _sctp,
    "multiport": _multiport,
    "icmp": _icmp,
    "icmp6": _icmp,
    "state": _state,
    "conntrack": _conntrack,
    "physdev": _physdev,
    "set": _set,
    "mac": _mac,
    "comment": _comment,
    "mark": _mark,
    "connmark": _mark,
    "iprange": _iprange,
    "addrtype": _addrtype,
    "pkttype": _pkttype,
    "length": _length,
    "ttl": _ttl,
    "hl": _ttl,
    "tos": _tos,
    "dscp": _dscp,
    "owner": _owner,
    "limit": _limit,
    "hashlimit": _limit,
}


# --- target builders --------------------------------------------------------------------------

TargetBuilder = Callable[[str, list[RawOption], Family], Target]


def _no_options(name: str, opts: list[RawOption]) -> None:
    if opts:
        raise Unmodelled(f"option --{opts[0].name} of -j {name} is not modelled")


def _reject(name: str, opts: list[RawOption], family: Family) -> Target:
    target = RejectTarget(
        reject_with="icmp-port-unreachable" if family is Family.IPV4 else "icmp6-port-unreachable"
    )
    for opt in opts:
        if opt.name != "reject-with":
            raise Unmodelled(f"option --{opt.name} of -j REJECT is not modelled")
        target = RejectTarget(reject_with=_one(opt))
    return target


def _log(name: str, opts: list[RawOption], family: Family) -> Target:
    prefix = level = None
    flags: list[str] = []
    for opt in opts:
        if opt.name == "log-prefix":
            prefix = " ".join(opt.values)
        elif opt.name == "log-level":
            level = _one(opt)
        elif opt.name.startswith("log-"):
            _none(opt)
            flags.append(opt.name[4:])
        else:
            raise Unmodelled(f"option --{opt.name} of -j LOG is not modelled")
    return LogTarget(prefix=prefix, level=level, flags=tuple(flags))


def _nflog(name: str, opts: list[RawOption], family: Family) -> Target:
    group, prefix = 0, None
    other: list[RawOption] = []
    for opt in opts:
        if opt.name == "nflog-group":
            group = read_int(_one(opt), "a group number", limit=0xFFFF)
        elif opt.name == "nflog-prefix":
            prefix = " ".join(opt.values)
        elif opt.name in ("nflog-range", "nflog-size", "nflog-threshold"):
            other.append(opt)
        else:
            raise Unmodelled(f"option --{opt.name} of -j NFLOG is not modelled")
    return NflogTarget(group=group, prefix=prefix, options=tuple(other))


def _trace(name: str, opts: list[RawOption], family: Family) -> Target:
    _no_options(name, opts)
    return TraceTarget()


def _ct(name: str, opts: list[RawOption], family: Family) -> Target:
    fields: dict[str, Any] = {}
    other: list[RawOption] = []
    for opt in opts:
        if opt.name == "notrack":
            _none(opt)
            fields["notrack"] = True
        elif opt.name in _CT_ZONE_DIRECTIONS:
            text = _one(opt)
            if text == "mark":
                raise Unmodelled("-j CT --zone mark (zone taken from the packet mark)")
            fields["zone"] = read_int(text, "a zone", limit=0xFFFF)
            fields["zone_dir"] = _CT_ZONE_DIRECTIONS[opt.name]
        elif opt.name in ("helper", "ctevents", "expevents", "timeout"):
            other.append(opt)
        else:
            raise Unmodelled(f"option --{opt.name} of -j CT is not modelled")
    return CtTarget(**fields, options=tuple(other))


_CT_ZONE_DIRECTIONS = {"zone": "", "zone-orig": "orig", "zone-reply": "reply"}


def _notrack(name: str, opts: list[RawOption], family: Family) -> Target:
    _no_options(name, opts)
    return NotrackTarget()


def _mark_target(name: str, opts: list[RawOption], family: Family) -> Target:
    if len(opts) != 1:
        raise Unmodelled("-j MARK without exactly one operation")
    opt = opts[0]
    text = _one(opt)
    if opt.name == "set-xmark":
        value, mask = read_value_mask(text)
    elif opt.name == "set-mark":
        value, mask = read_value_mask(text)
        mask = mask | value if "/" in text else 0xFFFFFFFF
    elif opt.name == "and-mark":
        bits = read_int(text)
        value, mask = 0, ~bits & 0xFFFFFFFF
    elif opt.name == "or-mark":
        bits = read_int(text)
        value, mask = bits, bits
    elif opt.name == "xor-mark":
        value, mask = read_int(text), 0
    else:
        raise Unmodelled(f"option --{opt.name} of -j MARK is not modelled")
    return MarkTarget(value=value, mask=mask)


def _connmark_target(name: str, opts: list[RawOption], family: Family) -> Target:
    fields: dict[str, Any] = {}
    for opt in opts:
        if opt.name in ("set-xmark", "set-mark"):
            text = _one(opt)
            value, mask = read_value_mask(text)
            if opt.name == "set-mark":
                mask = mask | value if "/" in text else 0xFFFFFFFF
            fields.update(mode="set", value=value, mask=mask)
        elif opt.name in ("save-mark", "restore-mark"):
            fields["mode"] = opt.name.split("-")[0]
        elif opt.name in ("nfmask", "ctmask", "mask"):
            value = read_int(_one(opt), "a mask")
            if opt.name in ("mask", "nfmask"):
                fields["nfmask"] = value
            if opt.name in ("mask", "ctmask"):
                fields["ctmask"] = value
        elif opt.name in ("and-mark", "or-mark", "xor-mark"):
            bits = read_int(_one(opt))
            value, mask = {
                "and-mark": (0, ~bits & 0xFFFFFFFF),
                "or-mark": (bits, bits),
                "xor-mark": (bits, 0),
            }[opt.name]
            fields.update(mode="set", value=value, mask=mask)
        else:
            raise Unmodelled(f"option --{opt.name} of -j CONNMARK is not modelled")
    if "mode" not in fields:
        raise Unmodelled("-j CONNMARK without an operation")
    return ConnmarkTarget(**fields)


def _nat_range(text: str) -> NatRange:
    """``1.2.3.4``, ``1.2.3.4-1.2.3.6``, ``1.2.3.4:80``, ``1.2.3.4:1000-2000``, ``[::1]:80``."""
    addr_part, ports = text, None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise BadValue("unclosed [", text, "[ADDR]:PORT")
        addr_part, rest = text[1:close], text[close + 1 :]
        if rest.startswith(":"):
            ports = read_port_range(rest[1:], "-")
    elif text.count(":") == 1:
        addr_part, port_text = text.split(":")
        ports = read_port_range(port_text, "-")
    lo = hi = None
    if addr_part:
        lo_s, sep, hi_s = addr_part.partition("-")
        lo = read_address(lo_s)
        hi = read_address(hi_s) if sep else lo
    return NatRange(lo, hi, ports)


def _nat(name: str, opts: list[RawOption], family: Family) -> Target:
    fields: dict[str, Any] = {}
    ranges: list[NatRange] = []
    for opt in opts:
        if opt.name in ("to-source", "to-destination") and name in ("SNAT", "DNAT"):
            ranges.append(_nat_range(_one(opt)))
        elif opt.name == "to-ports" and name in ("MASQUERADE", "REDIRECT"):
            fields["to_ports"] = read_port_range(_one(opt), "-")
        elif opt.name in ("random", "random-fully", "persistent"):
            _none(opt)
            fields[opt.name.replace("-", "_")] = True
        else:
            raise Unmodelled(f"option --{opt.name} of -j {name} is not modelled")
    if name in ("SNAT", "DNAT") and not ranges:
        raise BadValue(
            f"-j {name} needs a range",
            name,
            f"--to-{'source' if name == 'SNAT' else 'destination'}",
        )
    return NatTarget(name, tuple(ranges), **fields)


def _checksum(name: str, opts: list[RawOption], family: Family) -> Target:
    if len(opts) != 1 or opts[0].name != "checksum-fill":
        raise Unmodelled("-j CHECKSUM without --checksum-fill")
    return ChecksumTarget(fill=True)


def _tcpmss(name: str, opts: list[RawOption], family: Family) -> Target:
    if len(opts) != 1:
        raise Unmodelled("-j TCPMSS without exactly one option")
    opt = opts[0]
    if opt.name == "clamp-mss-to-pmtu":
        return TcpmssTarget(clamp_to_pmtu=True)
    if opt.name == "set-mss":
        return TcpmssTarget(mss=read_int(_one(opt), "an MSS", limit=0xFFFF))
    raise Unmodelled(f"option --{opt.name} of -j TCPMSS is not modelled")


TARGET_BUILDERS: dict[str, TargetBuilder] = {
    "REJECT": _reject,
    "LOG": _log,
    "NFLOG": _nflog,
    "TRACE": _trace,
    "CT": _ct,
    "NOTRACK": _notrack,
    "MARK": _mark_target,
    "CONNMARK": _connmark_target,
    "SNAT": _nat,
    "DNAT": _nat,
    "MASQUERADE": _nat,
    "REDIRECT": _nat,
    "CHECKSUM": _checksum,
    "TCPMSS": _tcpmss,
}
