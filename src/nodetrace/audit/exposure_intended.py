"""The security groups a port should have, against what its rules allow.

Input: the JSON of ``openstack security group rule list [GROUP] -f json`` (python-openstackclient,
``network/v2/security_group_rule.py``: a list of objects keyed by its column headers ``ID``,
``IP Protocol``, ``Ethertype``, ``IP Range``, ``Port Range``, ``Direction``, ``Remote Security
Group``, ``Remote Address Group`` and, without a group, ``Security Group``). ``Port Range`` is
``"22:22"`` for ports and ``"type=8:code=0"`` for ICMP, as ``format_network_port_range`` prints
it; that function drops a type or code of 0 (it tests them for truth), so ``""`` on an ICMP rule
may mean type 0 as well as any type: it is read as any type, and the comparison says so.

Security groups are stateful: a rule intends the *new* connections it describes; replies and
related packets of any allowed connection are intended too (Neutron's ``RELATED,ESTABLISHED``
rule), as are the rules Neutron adds to every port (DHCP, IPv6 neighbour discovery, router
advertisements). Outbound, only the port's own addresses and MACs are intended as sources
(Neutron's anti-spoofing). Packets without a connection (INVALID) are never intended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_network
from pathlib import Path

from nodetrace.audit.exposure_match import MatchCompiler
from nodetrace.errors import InputError
from nodetrace.model.exposure import (
    CT_STATES,
    Box,
    Dim,
    Direction,
    Fate,
    IntendedComparison,
    IntendedGap,
    Intervals,
    PortExposure,
    universe,
)
from nodetrace.model.header_space import (
    HeaderSet,
    coalesce,
    disjoint_union,
    iv_normal,
    prefix_interval,
)
from nodetrace.model.netfilter import PROTOCOL_NUMBERS
from nodetrace.model.node_inventory import PortInfo
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron import naming

_NEW = ((0, 0),)
_REPLIES = ((1, 2),)
_TRACKED = ((0, 3),)


@dataclass(frozen=True, slots=True)
class IntendedRule:
    rule_id: str
    direction: Direction
    family: Family
    protocol: int | None
    port_range: tuple[int, int] | None
    icmp: tuple[int | None, int | None] | None
    prefix: str | None
    remote_group: str | None
    remote_address_group: str | None
    where: str


def load_intended(path: str) -> tuple[list[IntendedRule], list[str]]:
    """The rules of the file, and one line per entry that could not be read (file, entry,
    reason); a file that is not such a list is an :class:`InputError`."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{err.lineno}: not JSON: {err.msg}") from None
    if not isinstance(data, list):
        raise InputError(
            f"{path}: expected the JSON list `openstack security group rule list -f json` prints"
        )
    rules: list[IntendedRule] = []
    problems: list[str] = []
    for i, entry in enumerate(data, start=1):
        try:
            rules.append(_rule(entry, f"{path} entry {i}"))
        except ValueError as err:
            problems.append(f"{path} entry {i}: {err}")
    return rules, problems


def _rule(entry: object, where: str) -> IntendedRule:
    if not isinstance(entry, dict):
        raise ValueError("not an object")
    direction = {"ingress": Direction.INBOUND, "egress": Direction.OUTBOUND}.get(
        str(entry.get("Direction"))
    )
    if direction is None:
        raise ValueError(f"Direction {entry.get('Direction')!r} is neither ingress nor egress")
    family = {"IPv4": Family.IPV4, "IPv6": Family.IPV6}.get(str(entry.get("Ethertype")))
    if family is None:
        raise ValueError(f"Ethertype {entry.get('Ethertype')!r} is neither IPv4 nor IPv6")
    proto_text = entry.get("IP Protocol")
    protocol: int | None = None
    if proto_text not in (None, "", "any", "0"):
        text = str(proto_text).lower()
        if text == "icmp" and family is Family.IPV6:
            text = "ipv6-icmp"  # Neutron writes an IPv6 "icmp" rule as ipv6-icmp
        number = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
        if number is None:
            raise ValueError(f"IP Protocol {proto_text!r} is not a protocol")
        protocol = number
    ports: tuple[int, int] | None = None
    icmp: tuple[int | None, int | None] | None = None
    text = str(entry.get("Port Range") or "")
    if text.startswith("type="):
        type_text, _, code_text = text[len("type=") :].partition(":code=")
        icmp = (int(type_text), int(code_text) if code_text else None)
    elif text:
        lo, _, hi = text.partition(":")
        ports = (int(lo), int(hi or lo))
    prefix = entry.get("IP Range") or None
    if prefix is not None:
        ip_network(str(prefix), strict=False)
    return IntendedRule(
        str(entry.get("ID", "")),
        direction,
        family,
        protocol,
        ports,
        icmp,
        str(prefix) if prefix else None,
        str(entry["Remote Security Group"]) if entry.get("Remote Security Group") else None,
        str(entry["Remote Address Group"]) if entry.get("Remote Address Group") else None,
        where,
    )


class _Regions:
    def __init__(self, family: Family, atoms: int, snapshot: Snapshot) -> None:
        self.family = family
        self.width = 32 if family is Family.IPV4 else 128
        ns = snapshot.main
        self.compiler = MatchCompiler(family, ns.ipsets, universe(family, atoms))

    def box(self, **dims: Intervals) -> Box:
        return self.compiler.box(**dims)

    def net(self, text: str) -> Intervals:
        n = ip_network(text, strict=False)
        return (prefix_interval(int(n.network_address), n.prefixlen, self.width),)


def _rule_regions(r: IntendedRule, reg: _Regions, notes: list[str]) -> list[list[Box]] | None:
    """The readings of one rule (several when openstackclient's output is ambiguous), each a
    region of new connections; ``None`` when the rule cannot be read into classes."""
    dims: dict[str, Intervals] = {"ct": _NEW}
    remote = "src" if r.direction is Direction.INBOUND else "dst"
    if r.protocol is not None:
        dims["proto"] = ((r.protocol, r.protocol),)
    if r.port_range is not None and r.protocol is not None:
        dims["l4b"] = (r.port_range,)
    if r.prefix is not None:
        dims[remote] = reg.net(r.prefix)
    if r.remote_address_group is not None:
        notes.append(
            f"{r.where}: remote address group {r.remote_address_group} is not expanded; rule left out"
        )
        return None
    if r.remote_group is not None:
        name = naming.ipset_name(r.remote_group, "IPv4" if r.family is Family.IPV4 else "IPv6")
        found = reg.compiler.set_members(name)
        if isinstance(found, str) or found is None:
            why = found or "is of the other family"
            notes.append(
                f"{r.where}: remote group {r.remote_group}: ipset {name} {why}; rule left out"
            )
            return None
        dims[remote] = found
    if r.protocol not in (1, 58):
        return [[reg.box(**dims)]]
    # format_network_port_range omits a type or code of 0: "" is any type or type 0,
    # "type=8" is type 8 with any code or with code 0.
    icmp_type, icmp_code = r.icmp if r.icmp is not None else (None, None)
    readings: list[dict[str, Intervals]] = []
    if icmp_type is None:
        readings += [{}, {"l4a": ((0, 0),)}, {"l4a": ((0, 0),), "l4b": ((0, 0),)}]
    elif icmp_code is None:
        readings += [
            {"l4a": ((icmp_type, icmp_type),)},
            {"l4a": ((icmp_type, icmp_type),), "l4b": ((0, 0),)},
        ]
    else:
        readings.append({"l4a": ((icmp_type, icmp_type),), "l4b": ((icmp_code, icmp_code),)})
    return [[reg.box(**dims, **extra)] for extra in readings]


def _implicit(direction: Direction, reg: _Regions, port: PortInfo) -> tuple[list[Box], list[Box]]:
    """What Neutron's firewall allows every port besides its groups (``neutron/firewall.py``
    mirrors the agent): (regions whose sources are any, regions for the port's own sources)."""
    v4 = reg.family is Family.IPV4
    version = 4 if v4 else 6
    any_ct = ((0, 3),)
    udp = ((17, 17),)
    own_ips = [int(f.value) for f in port.ips if f.value.version == version]
    if direction is Direction.INBOUND:
        if v4:
            dests = iv_normal([(a, a) for a in own_ips] + [(0xFFFFFFFF, 0xFFFFFFFF)])
            return [reg.box(proto=udp, l4a=((67, 67),), l4b=((68, 68),), dst=dests, ct=any_ct)], []
        dests = iv_normal([(a, a) for a in own_ips] + list(reg.net("fe80::/64")))
        boxes = [
            reg.box(proto=udp, l4a=((547, 547),), l4b=((546, 546),), dst=dests, ct=any_ct),
            reg.box(proto=((58, 58),), l4a=iv_normal([(130, 130), (135, 136)]), ct=any_ct),
        ]
        if any(not IPv6Address(a).is_link_local for a in own_ips):  # the server adds RA then
            boxes.append(reg.box(proto=((58, 58),), l4a=((134, 134),), ct=_NEW))
        return boxes, []
    if v4:
        dhcp = reg.box(proto=udp, l4a=((68, 68),), l4b=((67, 67),), ct=any_ct)
        discover = reg.box(
            src=((0, 0),),
            dst=((0xFFFFFFFF, 0xFFFFFFFF),),
            proto=udp,
            l4a=((68, 68),),
            l4b=((67, 67),),
            ct=any_ct,
        )
        return [discover], [dhcp]
    dad = reg.box(
        src=((0, 0),),
        dst=reg.net("ff02::/16"),
        proto=((58, 58),),
        l4a=iv_normal([(131, 131), (135, 135), (143, 143)]),
        ct=any_ct,
    )
    own = [
        reg.box(proto=((58, 58),), l4a=iv_normal([(0, 133), (135, 255)]), ct=any_ct),
        reg.box(proto=udp, l4a=((546, 546),), l4b=((547, 547),), ct=any_ct),
    ]
    return [dad], own


def _refused(direction: Direction, reg: _Regions) -> list[Box]:
    """What Neutron drops whatever the groups say: a VM answering DHCP or sending router
    advertisements."""
    if direction is not Direction.OUTBOUND:
        return []
    if reg.family is Family.IPV4:
        return [reg.box(proto=((17, 17),), l4a=((67, 67),), l4b=((68, 68),))]
    return [
        reg.box(proto=((17, 17),), l4a=((547, 547),), l4b=((546, 546),)),
        reg.box(proto=((58, 58),), l4a=((134, 134),)),
    ]


def _own_sources(reg: _Regions, port: PortInfo) -> tuple[Intervals, Intervals] | None:
    version = 4 if reg.family is Family.IPV4 else 6
    ips = [int(f.value) for f in port.ips if f.value.version == version]
    macs = [int(f.value.replace(":", ""), 16) for f in port.macs] or (
        [int(port.mac.value.replace(":", ""), 16)] if port.mac is not None else []
    )
    if not ips or not macs:
        return None
    return iv_normal((a, a) for a in ips), iv_normal((m, m) for m in macs)


def _covered(region: list[Box], allowed: HeaderSet, feasible: list[Box]) -> bool:
    return not HeaderSet(region).intersect(feasible).subtract(allowed.boxes)


def compare(
    snapshot: Snapshot, port: PortInfo, exp: PortExposure, rules: list[IntendedRule]
) -> IntendedComparison:
    """Traffic the rules allow that the groups do not intend, and the reverse, per direction
    and family; unknown traffic is left out of both (and said)."""
    gaps: list[IntendedGap] = []
    notes: list[str] = []
    for direction in (Direction.INBOUND, Direction.OUTBOUND):
        d = exp.direction(direction)
        if d is None:
            continue
        for family in Family:
            classes = [c for c in d.classes if c.family is family]
            if not classes:
                continue
            atoms = len(classes[0].box) - len(Dim)
            reg = _Regions(family, atoms, snapshot)
            feasible = [c.box for c in classes if c.fate in (Fate.ALLOWED, Fate.DENIED)]
            if any(c.fate is Fate.UNKNOWN for c in classes):
                notes.append(
                    f"{direction.value} {family.value}: traffic whose fate is unknown is left out of the comparison"
                )
            allowed = HeaderSet([c.box for c in classes if c.fate is Fate.ALLOWED])
            anywhere, own_only = _implicit(direction, reg, port)
            sg: list[Box] = [reg.box(ct=_REPLIES)]
            for r in rules:
                if r.direction is not direction or r.family is not family:
                    continue
                readings = _rule_regions(r, reg, notes)
                if readings is None:
                    continue
                chosen = next((x for x in readings if _covered(x, allowed, feasible)), readings[0])
                if len(readings) > 1:
                    notes.append(
                        f"{r.where}: the ICMP type or code openstackclient printed is ambiguous "
                        "(it omits 0); read as the rules allow it"
                        if chosen is not readings[0]
                        else f"{r.where}: the ICMP type or code openstackclient printed is "
                        "ambiguous (it omits 0); read as any"
                    )
                sg += chosen
            own_part = HeaderSet(disjoint_union([[b] for b in [*sg, *own_only]]))
            if direction is Direction.OUTBOUND:
                own = _own_sources(reg, port)
                if own is None:
                    notes.append(
                        f"{family.value}: the port's own addresses or MACs are not known; outbound sources not restricted"
                    )
                else:
                    own_part = own_part.restrict(Dim.SRC, own[0]).restrict(Dim.MAC, own[1])
            own_part = own_part.subtract(_refused(direction, reg))
            want = HeaderSet(disjoint_union([own_part.boxes, anywhere])).intersect(feasible)
            for c in classes:
                if c.fate is Fate.ALLOWED:
                    extra = HeaderSet([c.box]).subtract(want.boxes)
                    gaps += [
                        IntendedGap(direction, family, b, "allowed-not-intended", c.rules)
                        for b in coalesce(extra.boxes)
                    ]
            missing = want.subtract(allowed.boxes)
            gaps += [
                IntendedGap(direction, family, b, "intended-not-allowed")
                for b in coalesce(missing.boxes)
            ]
    return IntendedComparison(port.port_id, tuple(gaps), tuple(dict.fromkeys(notes)))


__all__ = ["CT_STATES", "compare", "load_intended"]
