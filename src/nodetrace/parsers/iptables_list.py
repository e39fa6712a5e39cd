"""Rebuild a ruleset from an ``iptables -L -n -v`` listing, for nodes whose snapshot has no
``iptables-save`` (recent sosreports keep only ``iptables -vnxL`` and ``iptables -t T -nvL``).

A sample of the input (``iptables -t raw -nvL``, iptables 1.8.9; older versions print the
protocol as ``all``/``tcp`` instead of its number)::

    Chain PREROUTING (policy ACCEPT 54M packets, 31G bytes)
     pkts bytes target     prot opt in     out     source               destination
        0     0 neutron-openvswi-PREROUTING  0    --  *      *       0.0.0.0/0            0.0.0.0/0

    Chain neutron-openvswi-PREROUTING (1 references)
     pkts bytes target     prot opt in     out     source               destination
        0     0 CT         0    --  *      *       0.0.0.0/0            0.0.0.0/0            \
PHYSDEV match --physdev-in qvb3b1f6a2c-8d /* Set zone for 3b1f6a2c-8d */ CT zone 4097

Each rule's columns become ``-s/-d/-i/-o/-p/-f``, and the text the match and target
extensions printed after the addresses is turned back, piece by piece, into the options
``iptables-save`` would have written; those go through the same extension parser as a save, so
a rule reads the same whichever way it was captured. What a listing does not show is never
guessed: without ``-v`` there are no interface columns, so every rule gets an unknown match
saying so; text no printer here recognises makes the rule's match unknown (with a warning
naming the line); counters are kept only when exact (``-x``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import ip_network

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos
from nodetrace.model.netfilter import (
    BUILTIN_CHAINS,
    PROTOCOL_NUMBERS,
    STANDARD_VERDICTS,
    Chain,
    IpSpec,
    Match,
    RawOption,
    Rule,
    Ruleset,
    Table,
    Target,
    UnknownMatch,
    UnknownTarget,
)
from nodetrace.model.packet import Family
from nodetrace.parsers.iptables_save import Token, build_match, build_target, parse_rule_args
from nodetrace.parsers.pasted import skip_pasted_command

_CHAIN_RE = re.compile(
    r"Chain (?P<name>\S+) \((?:policy (?P<policy>\S+)(?: (?P<pkts>\S+) packets, (?P<bytes>\S+) "
    r"bytes)?|(?P<refs>\d+) references)\)"
)
_NUMBER_RE = re.compile(r"\d+")
_COLUMNS = "[pkts bytes] target prot opt [in out] source destination"
_OPT_RE = re.compile(r"^[-!][-f]$")
_PROTOCOL_NAMES = {number: name for name, number in reversed(PROTOCOL_NUMBERS.items())}
_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
_LOG_FLAGS = {1: "tcp-sequence", 2: "tcp-options", 4: "ip-options", 8: "uid", 32: "macdecode"}

LISTING_LIMITS = (
    "rebuilt from an `iptables -L` listing: rule order, addresses, interfaces, protocols and "
    "the options the extensions print are exact; a printed form this reader does not know "
    "makes that rule's match unknown"
)
"""What a ruleset rebuilt from a listing can be trusted for (said wherever it is used)."""


class _NotUnderstood(Exception):
    """Printed text no printer here recognises."""


@dataclass
class _Cursor:
    """The text an extension printed, consumed word by word from the left."""

    text: str

    def peek(self, n: int = 1) -> list[str]:
        return self.text.split(None, n)[:n]

    def take(self, n: int = 1) -> list[str]:
        parts = self.text.split(None, n)
        self.text = parts[n] if len(parts) > n else ""
        return parts[:n]

    def take_word(self) -> str:
        got = self.take()
        if not got:
            raise _NotUnderstood("text ends too early")
        return got[0]

    def starts(self, *words: str) -> bool:
        return self.peek(len(words)) == list(words)

    def peek_option(self) -> tuple[bool, str]:
        """(negated, word): the next word, or the one after a standalone ``!``."""
        words = self.peek(2)
        neg = words[:1] == ["!"]
        return neg, words[1] if neg and len(words) > 1 else (words[0] if words else "")

    def take_quoted(self) -> str:
        """A ``"..."`` string as LOG/NFLOG print their prefix (no escaping)."""
        s = self.text.lstrip()
        if not s.startswith('"'):
            raise _NotUnderstood("expected a quoted string")
        end = s.find('"', 1)
        while end != -1 and not (end + 1 == len(s) or s[end + 1] == " "):
            end = s.find('"', end + 1)
        if end == -1:
            raise _NotUnderstood("unterminated quoted string")
        self.text = s[end + 1 :]
        return s[1:end]


@lru_cache(maxsize=8192)
def _plain(word: str) -> Token:
    return Token(word, False)


def _w(*words: str) -> list[Token]:
    return [_plain(w) for w in words]


def _neg(cursor: _Cursor) -> list[Token]:
    """A standalone ``!`` in front of an option."""
    if cursor.peek() == ["!"]:
        cursor.take()
        return _w("!")
    return []


def _bang(value: str) -> tuple[list[Token], str]:
    """``!22`` -> (["!"], "22")."""
    return (_w("!"), value[1:]) if value.startswith("!") else ([], value)


def _hex_to_flags(value: str) -> str:
    bits = int(value, 16)
    names = [n for i, n in enumerate(_TCP_FLAGS) if bits & (1 << i)]
    return ",".join(names) if names else "NONE"


def _ports(cursor: _Cursor, out: list[Token]) -> None:
    """``spt:22 dpts:!1:1023`` as tcp/udp/sctp print them."""
    while cursor.peek():
        word = cursor.peek()[0]
        m = re.fullmatch(r"(spts?|dpts?):(!?)(\S+)", word)
        if m is None:
            return
        cursor.take()
        name = "--sport" if m.group(1).startswith("s") else "--dport"
        if m.group(2):
            out.extend(_w("!"))
        out.extend(_w(name, m.group(3)))


def _tcp(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take()
    out = _w("-m", "tcp")
    while True:
        _ports(cursor, out)
        word = cursor.peek()[0] if cursor.peek() else ""
        if word.startswith("option="):
            cursor.take()
            neg, value = _bang(word[len("option=") :])
            out += neg + _w("--tcp-option", value)
        elif word.startswith("flags:"):
            cursor.take()
            neg, value = _bang(word[len("flags:") :])
            mask, _, comp = value.partition("/")
            if mask.startswith("0x"):
                mask, comp = _hex_to_flags(mask), _hex_to_flags(comp)
            out += neg + _w("--tcp-flags", mask, comp)
        else:
            return out


def _udp_like(module: str) -> Callable[[_Cursor, Family], list[Token]]:
    def build(cursor: _Cursor, family: Family) -> list[Token]:
        cursor.take()
        out = _w("-m", module)
        _ports(cursor, out)
        return out

    return build


def _multiport(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take()
    direction = cursor.take_word()
    if direction not in ("sports", "dports", "ports"):
        raise _NotUnderstood(f"multiport {direction}")
    neg = _neg(cursor)
    value = cursor.take_word()
    more, value = _bang(value)
    return _w("-m", "multiport") + neg + more + _w(f"--{direction}", value)


def _icmp(cursor: _Cursor, family: Family) -> list[Token]:
    """``icmptype 8``, ``icmptype 3 code 4``, ``icmp !type 255`` (v6: ``ipv6-icmptype``)."""
    head = cursor.take_word()
    v6 = head.startswith("ipv6-")
    module, option = ("icmp6", "--icmpv6-type") if v6 else ("icmp", "--icmp-type")
    neg: list[Token] = []
    if head.endswith("type"):
        value = cursor.take_word()
    else:  # "icmp !type N" / "icmp NAME" / "icmp any"
        word = cursor.take_word()
        if word in ("!type", "type"):
            neg = _w("!") if word == "!type" else []
            value = cursor.take_word()
        else:
            neg, value = _bang(word)
            if not value.isdigit():
                return _w("-m", module) + neg + _w(option, value)
    if not value.isdigit():
        raise _NotUnderstood(f"ICMP type {value}")
    code = ""
    if cursor.peek() == ["code"]:
        cursor.take()
        code = "/" + cursor.take_word()
    elif cursor.peek() == ["codes"]:
        raise _NotUnderstood("ICMP code range")
    if value == "255" and not code:
        value = "any"
    return _w("-m", module) + neg + _w(option, value + code)


def _state(cursor: _Cursor, family: Family) -> list[Token]:
    neg = _neg(cursor)
    cursor.take()
    return _w("-m", "state") + neg + _w("--state", cursor.take_word())


_CONNTRACK_WORDS = (
    "ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst", "ctorigsrcport",
    "ctorigdstport", "ctreplsrcport", "ctrepldstport", "ctstatus", "ctexpire", "ctdir",
)  # fmt: skip


def _conntrack(cursor: _Cursor, family: Family) -> list[Token]:
    out = _w("-m", "conntrack")
    while True:
        neg, name = cursor.peek_option()
        if name not in _CONNTRACK_WORDS:
            return out
        if neg:
            cursor.take()
        cursor.take()
        value = cursor.take_word()
        out += (_w("!") if neg else []) + _w(f"--{name}", value)


def _physdev(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take(2)  # "PHYSDEV match"
    out = _w("-m", "physdev")
    while True:
        neg, name = cursor.peek_option()
        if not name.startswith("--physdev"):
            return out
        cursor.take(2 if neg else 1)
        out += (_w("!") if neg else []) + _w(name)
        if name in ("--physdev-in", "--physdev-out"):
            out += _w(cursor.take_word())


_SET_COUNTERS = re.compile(r"(packets|bytes)-(eq|lt|gt)")


def _set(cursor: _Cursor, family: Family) -> list[Token]:
    neg = _neg(cursor)
    cursor.take()
    out = _w("-m", "set") + neg + _w("--match-set", cursor.take_word(), cursor.take_word())
    while True:
        flag_neg, name = cursor.peek_option()
        if name in ("return-nomatch", "update-counters", "update-subcounters"):
            cursor.take(2 if flag_neg else 1)
            out += (_w("!") if flag_neg else []) + _w(f"--{name}")
        elif _SET_COUNTERS.fullmatch(name):
            cursor.take(2 if flag_neg else 1)
            out += (_w("!") if flag_neg else []) + _w(f"--{name}", cursor.take_word())
        else:
            return out


def _mac(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take()
    neg = _neg(cursor)
    return _w("-m", "mac") + neg + _w("--mac-source", cursor.take_word())


def _comment(cursor: _Cursor, family: Family) -> list[Token]:
    s = cursor.text.lstrip()
    body = s[len("/* ") :]
    # The comment itself may hold "*/": take the last " */" that ends the text or a word.
    candidates = [m.start() for m in re.finditer(r" \*/(?= |$)", body)]
    if not candidates:
        raise _NotUnderstood("comment without its closing */")
    end = candidates[0]
    cursor.text = body[end + 3 :]
    return [*_w("-m", "comment", "--comment"), Token(body[:end], True)]


def _mark(module: str) -> Callable[[_Cursor, Family], list[Token]]:
    def build(cursor: _Cursor, family: Family) -> list[Token]:
        cursor.take(2)  # "mark match" / "connmark match"
        neg = _neg(cursor)
        more, value = _bang(cursor.take_word())
        return _w("-m", module) + neg + more + _w("--mark", value)

    return build


def _iprange(cursor: _Cursor, family: Family) -> list[Token]:
    out = _w("-m", "iprange")
    while cursor.peek(3) in (["source", "IP", "range"], ["destination", "IP", "range"]):
        which = cursor.take(3)[0]
        neg = _neg(cursor)
        more, value = _bang(cursor.take_word())
        name = "--src-range" if which == "source" else "--dst-range"
        out += neg + more + _w(name, value)
    return out


def _addrtype(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take(2)
    out = _w("-m", "addrtype")
    while cursor.peek():
        word = cursor.peek()[0]
        if word in ("src-type", "dst-type"):
            cursor.take()
            neg, value = _bang(cursor.take_word())
            out += neg + _w(f"--{word}", value)
        elif word in ("limit-in", "limit-out"):
            cursor.take()
            out += _w(f"--limit-iface-{word[len('limit-') :]}")
        else:
            break
    return out


def _pkttype(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take()
    op = cursor.take_word()
    if op not in ("=", "!="):
        raise _NotUnderstood(f"PKTTYPE {op}")
    return (
        _w("-m", "pkttype") + (_w("!") if op == "!=" else []) + _w("--pkt-type", cursor.take_word())
    )


def _length(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take()
    neg, value = _bang(cursor.take_word())
    return _w("-m", "length") + neg + _w("--length", value)


def _ttl_hl(cursor: _Cursor, family: Family) -> list[Token]:
    kind = cursor.take(2)[0].lower()  # "TTL match" / "HL match"
    if cursor.take_word() != kind.upper():
        raise _NotUnderstood(f"{kind.upper()} match")
    op = cursor.take_word()
    value = cursor.take_word()
    names = {"==": ([], "eq"), "!=": (_w("!"), "eq"), "<": ([], "lt"), ">": ([], "gt")}
    if op not in names:
        raise _NotUnderstood(f"{kind} operator {op}")
    neg, suffix = names[op]
    return _w("-m", kind) + neg + _w(f"--{kind}-{suffix}", value)


def _tos(cursor: _Cursor, family: Family) -> list[Token]:
    s = cursor.text.lstrip()[len("tos match") :].lstrip()
    cursor.text = s
    neg, value = _bang(cursor.take_word())
    return _w("-m", "tos") + neg + _w("--tos", value)


def _dscp(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take(2)
    neg, value = _bang(cursor.take_word())
    return _w("-m", "dscp") + neg + _w("--dscp", value)


def _owner(cursor: _Cursor, family: Family) -> list[Token]:
    out = _w("-m", "owner")
    while True:
        words = cursor.peek(4)
        neg = words[:1] == ["!"]
        rest = words[1:] if neg else words
        if rest[:3] == ["owner", "socket", "exists"]:
            cursor.take(4 if neg else 3)
            out += (_w("!") if neg else []) + _w("--socket-exists")
        elif len(rest) >= 3 and rest[0] == "owner" and rest[2] == "match":
            if rest[1] not in ("UID", "GID"):
                raise _NotUnderstood(f"owner {rest[1]}")
            cursor.take(4 if neg else 3)
            opt = "--uid-owner" if rest[1] == "UID" else "--gid-owner"
            out += (_w("!") if neg else []) + _w(opt, cursor.take_word())
        else:
            return out


def _limit(cursor: _Cursor, family: Family) -> list[Token]:
    cursor.take()  # "limit:"
    if cursor.peek() == ["avg"]:
        cursor.take()
        out = _w("-m", "limit", "--limit", cursor.take_word())
        if cursor.peek() == ["burst"]:
            cursor.take()
            burst = cursor.take_word()
            if burst != "5":  # the default is not saved
                out += _w("--limit-burst", burst)
        return out
    # hashlimit prints neither its name nor all of its options: keep it unknown (it is state
    # no snapshot holds anyway).
    raise _NotUnderstood("hashlimit")


_MATCH_PRINTERS: tuple[tuple[re.Pattern[str], Callable[[_Cursor, Family], list[Token]]], ...] = (
    (re.compile(r"tcp(\s|$)"), _tcp),
    (re.compile(r"udp(\s|$)"), _udp_like("udp")),
    (re.compile(r"udplite(\s|$)"), _udp_like("udplite")),
    (re.compile(r"sctp(\s|$)"), _udp_like("sctp")),
    (re.compile(r"multiport\s"), _multiport),
    (re.compile(r"(ipv6-)?icmp(type)?\s"), _icmp),
    (re.compile(r"(! )?state\s"), _state),
    (re.compile(r"(! )?ct(state|proto|orig|repl|status|expire|dir)"), _conntrack),
    (re.compile(r"PHYSDEV match(\s|$)"), _physdev),
    (re.compile(r"(! )?match-set\s"), _set),
    (re.compile(r"MAC\s"), _mac),
    (re.compile(r"/\* "), _comment),
    (re.compile(r"mark match\s"), _mark("mark")),
    (re.compile(r"connmark match\s"), _mark("connmark")),
    (re.compile(r"(source|destination) IP range\s"), _iprange),
    (re.compile(r"ADDRTYPE match\s"), _addrtype),
    (re.compile(r"PKTTYPE\s"), _pkttype),
    (re.compile(r"length\s"), _length),
    (re.compile(r"(TTL|HL) match\s"), _ttl_hl),
    (re.compile(r"tos match"), _tos),
    (re.compile(r"DSCP match\s"), _dscp),
    (re.compile(r"(! )?owner\s"), _owner),
    (re.compile(r"limit: "), _limit),
)


# --- targets ----------------------------------------------------------------------------------


def _target_options(name: str, cursor: _Cursor) -> list[Token]:
    """The save options of target ``name`` from what its print function wrote."""
    if not cursor.text.strip():
        if name == "LOG":
            raise _NotUnderstood("LOG without its flags and level")
        return []
    if name == "REJECT" and cursor.starts("reject-with"):
        cursor.take()
        return _w("--reject-with", cursor.take_word())
    if name == "LOG" and cursor.starts("LOG", "flags"):
        cursor.take(2)
        flags = int(cursor.take_word())
        out: list[Token] = []
        if cursor.starts("level"):
            cursor.take()
            level = cursor.take_word()
            if level != "4":
                out += _w("--log-level", level)
        if cursor.starts("prefix"):
            cursor.take()
            out = [*_w("--log-prefix"), Token(cursor.take_quoted(), True), *out]
        for bit, flag in _LOG_FLAGS.items():
            if flags & bit:
                out += _w(f"--log-{flag}")
        return out
    if name == "NFLOG":
        out = []
        while cursor.peek():
            word = cursor.take_word()
            if word == "nflog-prefix":
                out += [*_w("--nflog-prefix"), Token(cursor.take_quoted(), True)]
            elif word in ("nflog-group", "nflog-range", "nflog-size", "nflog-threshold"):
                out += _w(f"--{word}", cursor.take_word())
            else:
                raise _NotUnderstood(f"NFLOG {word}")
        return out
    if name == "CT":
        if not cursor.starts("CT"):
            raise _NotUnderstood("CT")
        cursor.take()
        out = []
        while cursor.peek():
            word = cursor.take_word()
            if word == "notrack":
                out += _w("--notrack")
            elif word in ("zone", "zone-orig", "zone-reply", "helper", "timeout"):
                out += _w(f"--{word}", cursor.take_word())
            else:
                raise _NotUnderstood(f"CT {word}")
        return out
    if name == "MARK" and cursor.starts("MARK"):
        cursor.take()
        op, value = cursor.take_word(), cursor.take_word()
        if op == "set":
            return _w("--set-xmark", f"{value}/0xffffffff")
        if op == "xset":
            return _w("--set-xmark", value)
        if op in ("and", "or", "xor"):
            return _w(f"--{op}-mark", value)
        raise _NotUnderstood(f"MARK {op}")
    if name == "CONNMARK" and cursor.starts("CONNMARK"):
        cursor.take()
        op = cursor.take_word()
        if op in ("set", "xset"):
            value = cursor.take_word()
            return _w("--set-xmark", value if "/" in value else f"{value}/0xffffffff")
        if op in ("save", "restore"):
            masks = {"nfmask": "0xffffffff", "ctmask": "0xffffffff"}
            while cursor.peek() and cursor.peek()[0] in masks:
                key = cursor.take_word()
                masks[key] = cursor.take_word().lstrip("~")
            return _w(f"--{op}-mark", "--nfmask", masks["nfmask"], "--ctmask", masks["ctmask"])
        raise _NotUnderstood(f"CONNMARK {op}")
    if name in ("SNAT", "DNAT"):
        out = []
        while cursor.peek():
            word = cursor.take_word()
            if word.startswith("to:"):
                option = "--to-source" if name == "SNAT" else "--to-destination"
                out += _w(option, word[3:])
            elif word in ("random", "persistent", "random-fully"):
                out += _w(f"--{word}")
            else:
                raise _NotUnderstood(f"{name} {word}")
        return out
    if name in ("MASQUERADE", "REDIRECT"):
        out = []
        while cursor.peek():
            if cursor.starts("masq", "ports:") or cursor.starts("redir", "ports"):
                cursor.take(2)
                out += _w("--to-ports", cursor.take_word())
            elif cursor.peek()[0] in ("random", "random-fully"):
                out += _w(f"--{cursor.take_word()}")
            else:
                raise _NotUnderstood(f"{name} {cursor.peek()[0]}")
        return out
    if name == "CHECKSUM" and cursor.starts("CHECKSUM", "fill"):
        cursor.take(2)
        return _w("--checksum-fill")
    if name == "TCPMSS":
        if cursor.starts("TCPMSS", "clamp", "to", "PMTU"):
            cursor.take(4)
            return _w("--clamp-mss-to-pmtu")
        if cursor.starts("TCPMSS", "set"):
            cursor.take(2)
            return _w("--set-mss", cursor.take_word())
    raise _NotUnderstood(f"{name} options")


# --- the listing ------------------------------------------------------------------------------


@dataclass
class _Columns:
    line_numbers: bool = False
    counters: bool = False
    interfaces: bool = False


@dataclass
class _Pending:
    chain: str
    tokens: list[Token]
    target: str
    goto: bool
    target_text: str
    unknown: str
    pos: SourcePos
    counters: tuple[int, int] | None


@dataclass
class _ChainDecl:
    builtin: bool
    policy: str | None
    counters: tuple[int, int] | None
    pos: SourcePos
    rules: list[_Pending] = field(default_factory=list)


def _count(text: str) -> int | None:
    """A counter printed in full (``-x``, or small enough), ``None`` for ``54M``."""
    return int(text) if _NUMBER_RE.fullmatch(text) else None


@lru_cache(maxsize=4096)
def _network(text: str, family: Family) -> tuple[bool, str] | None:
    """(negated, ``-s``/``-d`` value) for a printed address, the value empty for "any";
    ``None`` when the word is not an address of ``family``."""
    if text in ("0.0.0.0/0", "::/0", "anywhere"):
        return False, ""
    negated = text.startswith("!")
    value = text[1:] if negated else text
    if value == "anywhere":
        value = "0.0.0.0/0" if family is Family.IPV4 else "::/0"
    try:
        net = ip_network(value, strict=False)
    except ValueError:
        return None
    if (net.version == 4) != (family is Family.IPV4):
        return None
    if net.prefixlen == 0 and not negated:
        return False, ""
    return negated, str(net)


def _protocol(text: str) -> tuple[list[Token], str] | None:
    neg, value = _bang(text)
    if value.isdigit():
        number = int(value)
        if number == 0 and not neg:
            return [], ""
        return neg, _PROTOCOL_NAMES.get(number, value)
    if value == "all" and not neg:
        return [], ""
    if value in PROTOCOL_NUMBERS or value == "all":
        return neg, value
    return None


def _offset_after(line: str, words: list[str]) -> int:
    """Where the text after ``words`` (the leading words of ``line``) starts."""
    pos = 0
    for word in words:
        pos = line.index(word, pos) + len(word)
    return pos


def _split_rule(
    words: list[str], cols: _Columns, family: Family
) -> tuple[int, str | None, list[Token]] | None:
    """(number of words the columns take, target word or None, ip tokens).

    The target column is blank for a rule without target, and ip6tables before 1.6 leaves the
    ``opt`` column blank: the layouts are tried in turn and the one whose addresses read wins.
    """
    start = (1 if cols.line_numbers else 0) + (2 if cols.counters else 0)
    for has_target in (True, False):
        for has_opt in (True, False):
            i = start
            target = None
            if has_target:
                if i >= len(words):
                    continue
                target = words[i]
                i += 1
            if i >= len(words):
                continue
            proto = _protocol(words[i])
            if proto is None:
                continue
            i += 1
            tokens: list[Token] = []
            if proto[1]:
                tokens += proto[0] + _w("-p", proto[1])
            if has_opt:
                if i >= len(words) or not _OPT_RE.match(words[i]):
                    continue
                opt = words[i]
                if opt[1] == "f":
                    tokens += (_w("!") if opt[0] == "!" else []) + _w("-f")
                i += 1
            if cols.interfaces:
                if i + 1 >= len(words):
                    continue
                for option, word in (("-i", words[i]), ("-o", words[i + 1])):
                    neg, name = _bang(word)
                    if name != "*":
                        tokens += neg + _w(option, name)
                i += 2
            if i + 1 >= len(words):
                continue
            src = _network(words[i], family)
            dst = _network(words[i + 1], family)
            if src is None or dst is None:
                continue
            for option, (negated, value) in (("-s", src), ("-d", dst)):
                if value:
                    tokens += (_w("!") if negated else []) + _w(option, value)
            return i + 2, target, tokens
    return None


def _translate(text: str, family: Family) -> tuple[list[Token], str, bool, str]:
    """(match tokens, target text, goto, not understood) from the text after the columns."""
    goto = False
    if "[goto]" in text.split():
        goto = True
        text = re.sub(r"(^|\s)\[goto\](\s|$)", " ", text, count=1)
    cursor = _Cursor(text.strip())
    tokens: list[Token] = []
    while cursor.text.strip():
        cursor.text = cursor.text.lstrip()
        for pattern, printer in _MATCH_PRINTERS:
            if pattern.match(cursor.text):
                before = cursor.text
                try:
                    tokens += printer(cursor, family)
                except _NotUnderstood as err:
                    return tokens, "", goto, f"{before} ({err})"
                break
        else:
            break
    return tokens, cursor.text.strip(), goto, ""


def parse_iptables_list(
    text: str,
    *,
    source: str,
    table: str = "filter",
    family: Family = Family.IPV4,
    sink: DiagnosticSink | None = None,
) -> Ruleset:
    """Parse ``iptables [-t TABLE] -L -n [-v] [-x] [--line-numbers]`` output into a ruleset
    of that one table (``filter`` when the command named none)."""
    report = sink if sink is not None else DiagnosticSink(strict=True)
    cols: _Columns | None = None
    chains: dict[str, _ChainDecl] = {}
    current: _ChainDecl | None = None
    current_name = ""
    exact = True
    builtin_names = BUILTIN_CHAINS.get(table, ())
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        pos = SourcePos(source, lineno)
        if line.startswith("Chain "):
            m = _CHAIN_RE.match(line.strip())
            if m is None:
                expected = "Chain NAME (policy P ...) or Chain NAME (N references)"
                report.error(
                    ParseError(pos, "bad chain header", token=line.strip(), expected=expected)
                )
                current = None
                continue
            policy = m.group("policy")
            counters = None
            if m.group("pkts") is not None:
                pk, by = m.group("pkts"), m.group("bytes")
                exact = exact and bool(_NUMBER_RE.fullmatch(pk) and _NUMBER_RE.fullmatch(by))
                if _NUMBER_RE.fullmatch(pk) and _NUMBER_RE.fullmatch(by):
                    counters = (int(pk), int(by))
            builtin = policy is not None or m.group("name") in builtin_names
            current_name = m.group("name")
            current = _ChainDecl(builtin, policy, counters, pos)
            chains[current_name] = current
            continue
        # The columns end within the first dozen words; the rest is the extensions' text.
        names = line.split(None, 11)
        if "destination" in names and "target" in names and "source" in names:
            cols = _Columns(
                line_numbers=names[0] == "num",
                counters="pkts" in names,
                interfaces="in" in names and "out" in names,
            )
            continue
        if skip_pasted_command(line, source=source, number=lineno, sink=report):
            continue
        if current is None or cols is None:
            token = line.strip()[:40]
            report.error(
                ParseError(pos, "rule line outside a chain", token=token, expected="Chain ...")
            )
            continue
        split = _split_rule(names, cols, family)
        if split is None:
            why, expected = "rule line whose columns cannot be read", _COLUMNS
            report.error(ParseError(pos, why, token=line.strip(), expected=expected))
            # Keep its place: the rules after it keep their numbers.
            current.rules.append(_Pending(current_name, [], "", False, "", line.strip(), pos, None))
            continue
        after, target, ip_tokens = split
        end = _offset_after(line, names[:after])
        rule_counters = None
        if cols.counters:
            off = 1 if cols.line_numbers else 0
            pk, by = _count(names[off]), _count(names[off + 1])
            exact = exact and pk is not None and by is not None
            rule_counters = (pk, by) if pk is not None and by is not None else None
        match_tokens, target_text, goto, unknown = _translate(line[end:], family)
        tokens, target = ip_tokens + match_tokens, target or ""
        current.rules.append(
            _Pending(current_name, tokens, target, goto, target_text, unknown, pos, rule_counters)
        )
    if cols is None and chains:
        report.warn(SourcePos(source, 0), "no column header line: the listing format is unknown")
    return _build(chains, table, family, source, report, cols or _Columns(), exact)


def _quote(tok: Token) -> str:
    if not tok.quoted:
        return tok.text
    return '"' + tok.text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _build(
    chains: dict[str, _ChainDecl],
    table: str,
    family: Family,
    source: str,
    report: DiagnosticSink,
    cols: _Columns,
    exact: bool,
) -> Ruleset:
    user_chains = {name for name, decl in chains.items() if not decl.builtin}
    built: dict[str, Chain] = {}
    cache: dict[tuple[object, ...], _Typed] = {}
    for name, decl in chains.items():
        rules = [
            _rule(p, number, table, family, user_chains, report, cols, exact, cache)
            for number, p in enumerate(decl.rules, 1)
        ]
        counters = decl.counters if exact else None
        built[name] = Chain(name, decl.builtin, decl.policy, tuple(rules), counters, decl.pos)
    first = next(iter(chains.values()), None)
    return Ruleset(
        family, {table: Table(table, built, first.pos if first else None)}, source=source
    )


def _typed(p: _Pending, family: Family, user_chains: set[str], report: DiagnosticSink) -> _Typed:
    """(ip, matches, target, save-form arguments, text not understood) of a printed rule."""
    target_tokens: list[Token] = []
    unknown = p.unknown
    if p.target == "CT" and p.target_text == "NOTRACK":
        # `-j NOTRACK` is kept by the kernel as a CT target; only its print tells them apart.
        target_tokens = _w("-j", "NOTRACK")
    elif p.target:
        target_tokens = _w("-g" if p.goto else "-j", p.target)
        if (
            not unknown
            and p.target_text
            and (p.target in user_chains or p.target in STANDARD_VERDICTS)
        ):
            unknown = p.target_text
        elif not unknown:
            try:
                target_tokens += _target_options(p.target, _Cursor(p.target_text))
            except _NotUnderstood as err:
                unknown = f"{p.target_text} ({err})"
    elif p.target_text:
        unknown = p.target_text
    tokens = p.tokens + target_tokens
    matches: list[Match] = []
    target: Target
    try:
        args = parse_rule_args(tokens, p.pos, family)
        for module, options in args.modules:
            try:
                matches.append(build_match(module, options, p.pos, family))
            except ParseError as err:
                report.error(err)
                matches.append(UnknownMatch(module, options, f"unreadable: {err.reason}"))
        try:
            target = build_target(
                args.target_name, args.target_options, args.goto, user_chains, p.pos, family
            )
        except ParseError as err:
            report.error(err)
            target = UnknownTarget(args.target_name, args.target_options, f"unreadable: {err}")
        ip = args.ip
    except ParseError as err:
        report.error(err)
        ip = IpSpec()
        target = UnknownTarget(p.target, (), f"unreadable: {err.reason}")
    return ip, tuple(matches), target, " ".join(_quote(t) for t in tokens), unknown


_Typed = tuple[IpSpec, tuple[Match, ...], Target, str, str]

_NO_INTERFACES = UnknownMatch(
    "", (), "the listing was taken without -v: it does not show the rule's -i/-o interfaces"
)


def _rule(
    p: _Pending,
    position: int,
    table: str,
    family: Family,
    user_chains: set[str],
    report: DiagnosticSink,
    cols: _Columns,
    exact: bool,
    cache: dict[tuple[object, ...], _Typed],
) -> Rule:
    """One rule, typed. Neutron repeats the same rule text for every port, so identical
    printed rules are typed once; the model is immutable, so sharing is safe."""
    key = (tuple(p.tokens), p.target, p.goto, p.target_text, p.unknown)
    typed = cache.get(key)
    if typed is None:
        before = len(report.items)
        typed = _typed(p, family, user_chains, report)
        if len(report.items) == before:
            cache[key] = typed
    ip, matches, target, args_text, unknown = typed
    if unknown:
        report.warn(p.pos, f"listing text not understood, the rule's match is unknown: {unknown}")
        why = f"the listing printed {unknown!r}, which cannot be read back into options"
        matches = (*matches, UnknownMatch("", (RawOption("listing", (unknown,)),), why))
    if not cols.interfaces:
        matches = (*matches, _NO_INTERFACES)
    text = f"-A {p.chain} {args_text}".rstrip()
    return Rule(
        table=table,
        chain=p.chain,
        position=position,
        ip=ip,
        matches=matches,
        target=target,
        text=text,
        pos=p.pos,
        counters=p.counters if exact else None,
    )
