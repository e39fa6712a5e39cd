"""Parse ``ipset save`` output into typed sets (:mod:`nodetrace.model.ipset`).

A real sample (ipset 7.17; ``list:set`` sets are printed last)::

    create a hash:ip family inet hashsize 1024 maxelem 65536 timeout 600 counters comment bucketsize 12 initval 0xa96c0634
    add a 10.0.0.1 timeout 299 packets 5 bytes 420 comment "vm one"
    create b hash:net family inet6 hashsize 2048 maxelem 1000 bucketsize 12 initval 0x4e65bbaa
    add b 2001:db8::/64
    add b 2001:db8:2::/48 nomatch
    create c hash:ip,port family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xf74501c0
    add c 10.0.0.1,udp:53
    add c 10.0.0.2,icmp:echo-request
    create f list:set size 8
    add f a

Old ipset (v4) wrote ``-N NAME TYPE`` and ``-A NAME ENTRY``; both spellings are read. Members
of a set that was not created first are reported and dropped, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network, summarize_address_range

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos
from nodetrace.model.ipset import (
    CreateOptions,
    Dimension,
    IcmpPart,
    IfacePart,
    IpSet,
    IpSets,
    MacPart,
    MarkPart,
    Member,
    Method,
    NetPart,
    Part,
    PortPart,
    SetPart,
)
from nodetrace.model.packet import Family, canonical_mac
from nodetrace.parsers.iptables_save import tokenize

# ICMP names exactly as ipset 7.17 prints them (checked by adding every type/code in a lab
# namespace and reading ``ipset save`` back); unnamed codes print as ``T/C``.
ICMP_NAMES: dict[str, tuple[int, int]] = {
    "echo-reply": (0, 0), "network-unreachable": (3, 0), "host-unreachable": (3, 1),
    "protocol-unreachable": (3, 2), "port-unreachable": (3, 3), "fragmentation-needed": (3, 4),
    "source-route-failed": (3, 5), "network-unknown": (3, 6), "host-unknown": (3, 7),
    "network-prohibited": (3, 9), "host-prohibited": (3, 10), "TOS-network-unreachable": (3, 11),
    "TOS-host-unreachable": (3, 12), "communication-prohibited": (3, 13),
    "host-precedence-violation": (3, 14), "precedence-cutoff": (3, 15), "source-quench": (4, 0),
    "network-redirect": (5, 0), "host-redirect": (5, 1), "TOS-network-redirect": (5, 2),
    "TOS-host-redirect": (5, 3), "echo-request": (8, 0), "router-advertisement": (9, 0),
    "router-solicitation": (10, 0), "ttl-zero-during-transit": (11, 0),
    "ttl-zero-during-reassembly": (11, 1), "ip-header-bad": (12, 0),
    "required-option-missing": (12, 1), "timestamp-request": (13, 0), "timestamp-reply": (14, 0),
    "address-mask-request": (17, 0), "address-mask-reply": (18, 0),
}  # fmt: skip
ICMPV6_NAMES: dict[str, tuple[int, int]] = {
    "no-route": (1, 0), "communication-prohibited": (1, 1), "address-unreachable": (1, 3),
    "port-unreachable": (1, 4), "packet-too-big": (2, 0), "ttl-zero-during-transit": (3, 0),
    "ttl-zero-during-reassembly": (3, 1), "bad-header": (4, 0), "unknown-header-type": (4, 1),
    "unknown-option": (4, 2), "echo-request": (128, 0), "echo-reply": (129, 0),
    "router-solicitation": (133, 0), "router-advertisement": (134, 0),
    "neighbour-solicitation": (135, 0), "neighbour-advertisement": (136, 0), "redirect": (137, 0),
}  # fmt: skip
_ICMP_PROTOS = {"icmp": ICMP_NAMES, "icmpv6": ICMPV6_NAMES, "ipv6-icmp": ICMPV6_NAMES}

_DIMENSIONS = {d.value: d for d in Dimension}
_INT_OPTIONS = ("hashsize", "maxelem", "timeout", "netmask", "size")
_FLAG_OPTIONS = ("counters", "comment", "skbinfo", "forceadd")


@dataclass
class SetBuilder:
    name: str
    method: Method
    dimensions: tuple[Dimension, ...]
    family: Family | None
    options: CreateOptions
    pos: SourcePos
    members: list[Member] = field(default_factory=list)

    def build(self) -> IpSet:
        return IpSet(
            self.name,
            self.method,
            self.dimensions,
            self.family,
            self.options,
            tuple(self.members),
            self.pos,
        )


def parse_set_type(text: str, pos: SourcePos) -> tuple[Method, tuple[Dimension, ...]]:
    """``hash:net,port`` -> (HASH, (NET, PORT)); unknown words raise a ParseError naming them."""
    method_text, sep, dims_text = text.partition(":")
    try:
        method = Method(method_text)
    except ValueError:
        raise ParseError(
            pos, "unknown set type", token=text, expected="hash:..., bitmap:... or list:set"
        ) from None
    if not sep or not dims_text:
        raise ParseError(pos, "set type without dimensions", token=text, expected="e.g. hash:ip")
    dims: list[Dimension] = []
    for word in dims_text.split(","):
        dim = _DIMENSIONS.get(word)
        if dim is None:
            raise ParseError(
                pos,
                "unknown set type dimension",
                token=word,
                expected="ip, net, port, mac, iface, mark or set",
            )
        dims.append(dim)
    return method, tuple(dims)


def _int(word: str, pos: SourcePos, what: str) -> int:
    try:
        return int(word, 0)
    except ValueError:
        raise ParseError(pos, f"{what} is not a number", token=word) from None


def _create_options(words: list[str], pos: SourcePos) -> tuple[Family | None, CreateOptions]:
    family: Family | None = None
    values: dict[str, int] = {}
    flags: set[str] = set()
    rng: str | None = None
    other: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in _FLAG_OPTIONS:
            flags.add(word)
            i += 1
            continue
        if i + 1 >= len(words):
            raise ParseError(pos, f"option {word!r} needs a value", token=word)
        value = words[i + 1]
        if word == "family":
            if value not in ("inet", "inet6"):
                raise ParseError(pos, "unknown family", token=value, expected="inet or inet6")
            family = Family.IPV4 if value == "inet" else Family.IPV6
        elif word in _INT_OPTIONS:
            values[word] = _int(value, pos, word)
        elif word == "range":
            rng = value
        else:
            other.append((word, value))
        i += 2
    options = CreateOptions(
        hashsize=values.get("hashsize"),
        maxelem=values.get("maxelem"),
        timeout=values.get("timeout"),
        netmask=values.get("netmask"),
        counters="counters" in flags,
        comment="comment" in flags,
        skbinfo="skbinfo" in flags,
        forceadd="forceadd" in flags,
        range=rng,
        size=values.get("size"),
        other=tuple(other),
    )
    return family, options


def _address(word: str, pos: SourcePos, family: Family | None) -> IPv4Address | IPv6Address:
    try:
        addr = ip_address(word)
    except ValueError:
        raise ParseError(pos, "not an IP address", token=word) from None
    if family is not None and (addr.version == 4) != (family is Family.IPV4):
        raise ParseError(pos, f"address does not belong to this {family.value} set", token=word)
    return addr


def _net_parts(word: str, pos: SourcePos, family: Family | None, netmask: int | None) -> list[Part]:
    """One address, network or ``A-B`` range; a range becomes the networks that cover it."""
    if "-" in word and "/" not in word:
        first_text, _, last_text = word.partition("-")
        first = _address(first_text, pos, family)
        last = _address(last_text, pos, family)
        if isinstance(first, IPv4Address) and isinstance(last, IPv4Address) and first <= last:
            return [NetPart(net) for net in summarize_address_range(first, last)]
        if isinstance(first, IPv6Address) and isinstance(last, IPv6Address) and first <= last:
            return [NetPart(net) for net in summarize_address_range(first, last)]
        raise ParseError(pos, "bad address range", token=word)
    try:
        net = ip_network(word, strict=False)
    except ValueError:
        raise ParseError(
            pos, "not an address or network", token=word, expected="ADDRESS[/PREFIX]"
        ) from None
    if family is not None and (net.version == 4) != (family is Family.IPV4):
        raise ParseError(pos, f"address does not belong to this {family.value} set", token=word)
    if netmask is not None and net.prefixlen > netmask:
        net = net.supernet(new_prefix=netmask)
    return [NetPart(net)]


def _port_part(word: str, pos: SourcePos) -> list[Part]:
    proto, sep, port_text = word.partition(":")
    if not sep:
        proto, port_text = "", word
    names = _ICMP_PROTOS.get(proto)
    if names is not None:
        if port_text in names:
            icmp_type, icmp_code = names[port_text]
            return [IcmpPart(proto, port_text, icmp_type, icmp_code)]
        type_text, slash, code_text = port_text.partition("/")
        if slash and type_text.isdigit() and code_text.isdigit():
            return [IcmpPart(proto, port_text, int(type_text), int(code_text))]
        raise ParseError(
            pos, f"unknown {proto} type", token=port_text, expected="a name or TYPE/CODE"
        )
    first_text, dash, last_text = port_text.partition("-")
    if not first_text.isdigit() or (dash and not last_text.isdigit()):
        raise ParseError(pos, "not a port", token=word, expected="[PROTO:]PORT")
    first = int(first_text)
    last = int(last_text) if dash else first
    if last < first or last > 65535:
        raise ParseError(pos, "port out of range", token=word)
    return [PortPart(proto, port) for port in range(first, last + 1)]


def _mac(word: str, pos: SourcePos) -> MacPart:
    try:
        return MacPart(canonical_mac(word))
    except ValueError:
        raise ParseError(pos, "not a MAC address", token=word) from None


def member_parts(
    text: str,
    dims: tuple[Dimension, ...],
    pos: SourcePos,
    family: Family | None,
    netmask: int | None,
) -> list[tuple[Part, ...]]:
    """The typed parts of one member text (``10.0.0.1,tcp:80``) for a set of type ``dims``.

    A range in any dimension (addresses or ports) yields several members, as ``ipset add`` does.
    """
    words = text.split(",")
    if len(words) != len(dims):
        raise ParseError(
            pos,
            f"member has {len(words)} part(s) but the set type has {len(dims)}",
            token=text,
            expected=",".join(d.value for d in dims),
        )
    choices: list[list[Part]] = []
    for word, dim in zip(words, dims, strict=True):
        if dim in (Dimension.IP, Dimension.NET):
            choices.append(_net_parts(word, pos, family, netmask if dim is Dimension.IP else None))
        elif dim is Dimension.PORT:
            choices.append(_port_part(word, pos))
        elif dim is Dimension.MAC:
            choices.append([_mac(word, pos)])
        elif dim is Dimension.IFACE:
            physdev = word.startswith("physdev:")
            choices.append([IfacePart(word.removeprefix("physdev:"), physdev)])
        elif dim is Dimension.MARK:
            choices.append([MarkPart(_int(word, pos, "mark"))])
        else:
            choices.append([SetPart(word)])
    combos: list[tuple[Part, ...]] = [()]
    for options in choices:
        combos = [(*combo, part) for combo in combos for part in options]
    return combos


def parse_member_words(words: list[str], builder: SetBuilder, pos: SourcePos) -> list[Member]:
    """The members one ``add`` line (after ``add NAME``) or one ``Members:`` line describes."""
    entry, rest = words[0], words[1:]
    nomatch = False
    ints: dict[str, int] = {}
    comment: str | None = None
    skbmark: tuple[int, int] | None = None
    skbprio: str | None = None
    i = 0
    while i < len(rest):
        word = rest[i]
        if word == "nomatch":
            nomatch = True
            i += 1
            continue
        if word in ("before", "after"):  # list:set placement; the position is not kept
            i += 2
            continue
        if i + 1 >= len(rest):
            raise ParseError(pos, f"option {word!r} needs a value", token=word)
        value = rest[i + 1]
        if word in ("timeout", "packets", "bytes", "skbqueue"):
            ints[word] = _int(value, pos, word)
        elif word == "comment":
            comment = value
        elif word == "skbmark":
            mark_text, _, mask_text = value.partition("/")
            skbmark = (
                _int(mark_text, pos, "skbmark"),
                _int(mask_text, pos, "skbmark mask") if mask_text else 0xFFFFFFFF,
            )
        elif word == "skbprio":
            skbprio = value
        else:
            raise ParseError(
                pos,
                "unknown member option",
                token=word,
                expected="timeout, packets, bytes, comment, nomatch, skbmark, skbprio or skbqueue",
            )
        i += 2
    return [
        Member(
            parts,
            nomatch=nomatch,
            timeout=ints.get("timeout"),
            packets=ints.get("packets"),
            bytes=ints.get("bytes"),
            comment=comment,
            skbmark=skbmark,
            skbprio=skbprio,
            skbqueue=ints.get("skbqueue"),
            text=entry,
            pos=pos,
        )
        for parts in member_parts(
            entry, builder.dimensions, pos, builder.family, builder.options.netmask
        )
    ]


def new_builder(name: str, type_text: str, option_words: list[str], pos: SourcePos) -> SetBuilder:
    method, dims = parse_set_type(type_text, pos)
    family, options = _create_options(option_words, pos)
    if family is None and (Dimension.IP in dims or Dimension.NET in dims):
        family = Family.IPV4  # ipset's default for address sets
    return SetBuilder(name, method, dims, family, options, pos)


def parse_ipset_save(text: str, *, source: str, sink: DiagnosticSink | None = None) -> IpSets:
    """Parse one ``ipset save`` output; strict without a sink, lenient (report and go on) with one."""
    report = sink if sink is not None else DiagnosticSink(strict=True)
    builders: dict[str, SetBuilder] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pos = SourcePos(source, lineno)
        try:
            words = [t.text for t in tokenize(line, pos)]
            command = words[0]
            if command in ("create", "-N", "-C"):
                if len(words) < 3:
                    raise ParseError(
                        pos,
                        "create needs a set name and a type",
                        token=line,
                        expected="create NAME TYPE [OPTIONS]",
                    )
                name = words[1]
                if name in builders:
                    raise ParseError(pos, "set created twice", token=name)
                builders[name] = new_builder(name, words[2], words[3:], pos)
            elif command in ("add", "-A"):
                if len(words) < 3:
                    raise ParseError(
                        pos,
                        "add needs a set name and a member",
                        token=line,
                        expected="add NAME MEMBER [OPTIONS]",
                    )
                builder = builders.get(words[1])
                if builder is None:
                    raise ParseError(
                        pos, "member of a set that was not created before", token=words[1]
                    )
                builder.members.extend(parse_member_words(words[2:], builder, pos))
            else:
                raise ParseError(
                    pos, "not an ipset save line", token=command, expected="create or add"
                )
        except ParseError as err:
            report.error(err)
    return IpSets({name: b.build() for name, b in builders.items()}, source)
