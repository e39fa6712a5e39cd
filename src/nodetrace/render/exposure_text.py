"""A port's exposure for people: each class in one short phrase, grouped by the rule that
decided it ("tcp dport 22 from 10.0.0.0/24 (new)", "any protocol (established/related)").

Classes are printed as they are computed, disjoint; only the split the computation starts from
(port protocols, ICMP, the rest) is joined back into "any protocol" when the three parts agree
on everything else. Denied traffic is summarised per rule; allowed and unknown traffic is
listed in full.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address

from nodetrace.model.exposure import (
    BASE_DIMS,
    CT_STATES,
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Box,
    Dim,
    DirectionExposure,
    Fate,
    HeaderClass,
    IntendedComparison,
    IntendedGap,
    Intervals,
    PortExposure,
    RuleRef,
)
from nodetrace.model.header_space import HeaderSet, coalesce, iv_normal, iv_sub
from nodetrace.model.packet import Family

PROTOCOL_NAMES = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    33: "dccp",
    58: "ipv6-icmp",
    132: "sctp",
    136: "udplite",
}
_ANY_PROTO: Intervals = ((0, 255),)
_TRACKED: Intervals = ((0, 3),)
MAX_CIDRS = 4
"""Beyond this many networks an address set is printed as ranges."""


def _width(family: Family) -> int:
    return 32 if family is Family.IPV4 else 128


def _addr(family: Family, value: int) -> str:
    return str(IPv4Address(value) if family is Family.IPV4 else IPv6Address(value))


def _cidrs(lo: int, hi: int, width: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << width
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, width - size.bit_length() + 1))
        lo += size
    return out


def addresses(family: Family, ivs: Intervals) -> str:
    """``10.0.0.0/24, 10.0.2.5`` (networks while few, else ranges); ``not 10.0.0.5`` when
    the set is everything but a few networks."""
    width = _width(family)
    nets = [n for lo, hi in ivs for n in _cidrs(lo, hi, width)]
    if len(nets) <= MAX_CIDRS:
        return _networks(family, nets)
    holes = [n for lo, hi in iv_sub(((0, (1 << width) - 1),), ivs) for n in _cidrs(lo, hi, width)]
    if len(holes) <= MAX_CIDRS:
        return "not " + _networks(family, holes)
    return ", ".join(
        _addr(family, lo) if lo == hi else f"{_addr(family, lo)}-{_addr(family, hi)}"
        for lo, hi in ivs
    )


def _networks(family: Family, nets: Sequence[tuple[int, int]]) -> str:
    width = _width(family)
    return ", ".join(
        _addr(family, a) if plen == width else f"{_addr(family, a)}/{plen}" for a, plen in nets
    )


def _macs(ivs: Intervals) -> str:
    def one(values: Intervals) -> str:
        return ",".join(_mac(lo) if lo == hi else f"{_mac(lo)}-{_mac(hi)}" for lo, hi in values)

    holes = iv_sub(((0, (1 << 48) - 1),), ivs)
    return f"not {one(holes)}" if len(holes) < len(ivs) else one(ivs)


def _numbers(ivs: Intervals) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ivs)


def _protocols(ivs: Intervals) -> str:
    if ivs == _ANY_PROTO:
        return "any protocol"
    values = [p for lo, hi in ivs for p in range(lo, hi + 1)]
    if len(values) <= 6:
        return "/".join(PROTOCOL_NAMES.get(p, f"proto {p}") for p in values)
    return f"protocols {_numbers(ivs)}"


def _mac(value: int) -> str:
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -1, -8))


def _is_full(ivs: Intervals, top: int) -> bool:
    return ivs == ((0, top),)


def protocol_words(proto: Intervals, l4a: Intervals, l4b: Intervals) -> list[str]:
    """``tcp dport 22``, ``icmp type 8 code 0``, ``any protocol``: a class's layer 3-4 part."""
    words = [_protocols(proto)]
    protos = {p for lo, hi in proto for p in range(lo, hi + 1)}
    if protos and protos <= PORT_PROTOCOLS:
        for ivs, name in ((l4a, "sport"), (l4b, "dport")):
            if not _is_full(ivs, 65535):
                words.append(f"{name} {_numbers(ivs)}")
    elif protos and protos <= ICMP_PROTOCOLS:
        for ivs, name in ((l4a, "type"), (l4b, "code")):
            if not _is_full(ivs, 255):
                words.append(f"{name} {_numbers(ivs)}")
    return words


def describe(
    family: Family, box: Box, atoms: Sequence[str] = (), *, protocol: str | None = None
) -> str:
    """One class as a phrase: protocol and ports (or ``protocol`` when given), addresses, MAC,
    ipsets, then the states."""
    words: list[str] = [] if family is Family.IPV4 else ["ipv6"]
    if protocol is not None:
        words.append(protocol)
    else:
        words += protocol_words(box[Dim.PROTO], box[Dim.L4A], box[Dim.L4B])
    top = (1 << _width(family)) - 1
    if not _is_full(box[Dim.SRC], top):
        words.append(f"from {addresses(family, box[Dim.SRC])}")
    if not _is_full(box[Dim.DST], top):
        words.append(f"to {addresses(family, box[Dim.DST])}")
    if not _is_full(box[Dim.MAC], (1 << 48) - 1):
        words.append(f"mac {_macs(box[Dim.MAC])}")
    if box[Dim.FRAG] == ((1, 1),):
        words.append("later fragments")
    for i, label in enumerate(atoms):
        value = box[BASE_DIMS + i]
        if value == ((1, 1),):
            words.append(label.split(" (")[0])
        elif value == ((0, 0),):
            words.append("not " + label.split(" (")[0])
    words.append(f"({states(box[Dim.CT])})")
    return " ".join(words)


def states(ivs: Intervals) -> str:
    if ivs == _TRACKED:
        return "any state"
    return "/".join(CT_STATES[s].lower() for lo, hi in ivs for s in range(lo, hi + 1))


def _protocol_space() -> list[Box]:
    """Every protocol as the computation starts from it: port protocols with their ports,
    ICMP with type and code, the rest with no layer-4 words."""
    ports = iv_normal((p, p) for p in PORT_PROTOCOLS)
    icmp = iv_normal((p, p) for p in ICMP_PROTOCOLS)
    rest = iv_sub(iv_sub(_ANY_PROTO, ports), icmp)
    return [
        (ports, ((0, 65535),), ((0, 65535),)),
        (icmp, ((0, 255),), ((0, 255),)),
        (rest, ((0, 0),), ((0, 0),)),
    ]


MAX_EXCEPT = 3
"""Up to this many holes, protocols are printed as "any protocol except ..."."""


def phrases(classes: Sequence[HeaderClass], atoms: Sequence[str]) -> list[str]:
    """The classes as phrases; classes that differ only in protocol and ports are joined
    into "any protocol" or "any protocol except A, B" when that is shorter."""
    by_rest: dict[tuple[object, ...], list[HeaderClass]] = {}
    for c in classes:
        rest = (c.family, *c.box[: Dim.PROTO], *c.box[Dim.FRAG :])
        by_rest.setdefault(rest, []).append(c)
    out: list[str] = []
    for group in by_rest.values():
        first = group[0]
        mine = _atoms_for(atoms, first.family)
        covered = [c.box[Dim.PROTO : Dim.L4B + 1] for c in group]
        missing = coalesce(HeaderSet(_protocol_space()).subtract(covered).boxes)
        if not missing:
            out.append(describe(first.family, first.box, mine, protocol="any protocol"))
        elif len(group) > len(missing) and len(missing) <= MAX_EXCEPT:
            holes = ", ".join(" ".join(protocol_words(*m)) for m in missing)
            out.append(
                describe(first.family, first.box, mine, protocol=f"any protocol except [{holes}]")
            )
        else:
            out.extend(describe(c.family, c.box, mine) for c in group)
    return out


def rule_label(rules: Sequence[RuleRef], reason: str = "") -> str:
    """``neutron-openvswi-i1 rule 5 > neutron-openvswi-sg-chain rule 9`` (or ``br-int table 82
    priority 77`` for flows): every rule or flow that returned, accepted, output or dropped the
    class, in order; else the reason (a policy)."""
    if not rules:
        return reason or "no rule stops it (the chains' policies accept)"
    return " > ".join(
        f"{r.table} {r.chain} priority {r.position}"
        if r.kind == "flow"
        else f"{'' if r.table == 'filter' else r.table + ' '}{r.chain} rule {r.position}"
        for r in rules
    )


def _direction(d: DirectionExposure, atoms: Sequence[str]) -> list[str]:
    lines = [
        f"{d.direction.value.replace('_', ' ')}: {d.path}"
        if d.path
        else f"{d.direction.value.replace('_', ' ')}:"
    ]
    for fate in (Fate.ALLOWED, Fate.UNKNOWN):
        classes = d.of(fate)
        lines.append(f"  {fate.value}:" + ("" if classes else " nothing"))
        groups: dict[tuple[Family, str, str], list[HeaderClass]] = {}
        for c in classes:
            label = rule_label(c.rules, c.reason)
            groups.setdefault(
                (c.family, label, c.reason if fate is Fate.UNKNOWN else ""), []
            ).append(c)
        for (_, label, reason), members in groups.items():
            lines.append(f"    {'; '.join(phrases(members, atoms))}")
            lines.append(f"      by {label}" if fate is Fate.ALLOWED else f"      because {reason}")
    denied = d.of(Fate.DENIED)
    by_rule: dict[str, int] = {}
    for c in denied:
        family = "" if c.family is Family.IPV4 else "ipv6 "
        key = family + rule_label(c.rules[-1:], c.reason)
        by_rule[key] = by_rule.get(key, 0) + 1
    lines.append(
        "  denied: "
        + (
            "; ".join(f"{n} class{'es' if n > 1 else ''} by {k}" for k, n in by_rule.items())
            or "nothing"
        )
    )
    for a in d.assumptions:
        lines.append(f"  assumed: {a}")
    return lines


def _atoms_for(atoms: Sequence[str], family: Family) -> list[str]:
    prefix = f"{family.value}: "
    return [a[len(prefix) :] for a in atoms if a.startswith(prefix)]


def render_exposure(exp: PortExposure) -> str:
    head = f"port {exp.port_id} ({exp.tap or 'no tap'}, firewall {exp.firewall or 'not known'})"
    lines = [head]
    lines += [f"  note: {n}" for n in exp.notes]
    lines += [f"  atom: {a}" for a in exp.atoms]
    for d in exp.directions:
        lines += _direction(d, exp.atoms)
    return "\n".join(lines) + "\n"


def render_comparison(cmp: IntendedComparison, atoms: Sequence[str] = ()) -> str:
    """The gaps, grouped by kind, direction and the rules that allow them."""
    lines = [f"port {cmp.port_id} against the intended security groups:"]
    if not cmp.gaps:
        lines.append("  the rules allow exactly what the security groups intend")
    for kind in ("allowed-not-intended", "intended-not-allowed"):
        gaps = [g for g in cmp.gaps if g.kind == kind]
        if not gaps:
            continue
        lines.append(f"  {kind.replace('-', ' ')}:")
        groups: dict[tuple[str, Family, str], list[IntendedGap]] = {}
        for g in gaps:
            label = rule_label(g.rules) if g.rules else ""
            groups.setdefault((g.direction.value, g.family, label), []).append(g)
        for (direction, family, label), members in groups.items():
            boxes = coalesce(g.box for g in members)
            classes = [HeaderClass(family, b, Fate.ALLOWED, members[0].rules) for b in boxes]
            lines.append(f"    {direction.replace('_', ' ')}: {'; '.join(phrases(classes, atoms))}")
            if label:
                lines.append(f"      by {label}")
    lines += [f"  note: {n}" for n in cmp.notes]
    return "\n".join(lines) + "\n"
