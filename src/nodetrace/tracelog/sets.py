"""Say what a ``-m set --match-set NAME dir`` rule saw, from the ``--ipsets`` the log came with.

A TRACE line shows that a rule matched (or, by its absence, that it did not); for a set match
the operator then wants to know which set member let the packet through. This looks the
packet's addresses and ports up in the set, the way the kernel does for the common types
(``hash:ip``, ``hash:net`` with ``nomatch``, ``hash:ip,port``, ``hash:net,port``, ``list:set``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodetrace.model.ipset import (
    PORT_PROTOCOLS,
    IcmpPart,
    IpSet,
    IpSets,
    MacPart,
    Member,
    NetPart,
    PortPart,
    SetPart,
)
from nodetrace.model.packet import Packet

if TYPE_CHECKING:
    from nodetrace.model.netfilter import Rule


def _part_holds(part: object, packet: Packet, direction: str) -> bool | None:
    """Whether one member part holds the packet's value for ``direction``; None: cannot tell."""
    src = direction == "src"
    if isinstance(part, NetPart):
        addr = packet.nw_src if src else packet.nw_dst
        return addr is not None and addr.version == part.network.version and addr in part.network
    if isinstance(part, PortPart):
        port = packet.tp_src if src else packet.tp_dst
        proto = PORT_PROTOCOLS.get(packet.nw_proto)
        return port is not None and port == part.port and (part.proto in ("", proto))
    if isinstance(part, IcmpPart):
        return packet.icmp_type == part.icmp_type and packet.icmp_code == part.icmp_code
    if isinstance(part, MacPart):
        return (packet.dl_src if src else packet.dl_dst) == part.mac
    return None


def _member_holds(member: Member, packet: Packet, directions: tuple[str, ...]) -> bool | None:
    result: bool | None = True
    for i, part in enumerate(member.parts):
        holds = _part_holds(part, packet, directions[i] if i < len(directions) else directions[-1])
        if holds is False:
            return False
        if holds is None:
            result = None
    return result


def lookup(
    ipset: IpSet, packet: Packet, directions: tuple[str, ...], sets: IpSets, depth: int = 0
) -> tuple[bool | None, Member | None]:
    """(member?, the member that decided); ``None`` when the set's type is not looked into."""
    if depth > 4:
        return None, None
    if ipset.members and all(isinstance(m.parts[0], SetPart) for m in ipset.members if m.parts):
        for member in ipset.members:
            inner = sets.get(member.parts[0].name) if isinstance(member.parts[0], SetPart) else None
            if inner is not None:
                found, hit = lookup(inner, packet, directions, sets, depth + 1)
                if found:
                    return True, hit
        return False, None
    unknown = False
    best: Member | None = None
    for member in ipset.members:
        holds = _member_holds(member, packet, directions)
        if holds is None:
            unknown = True
        elif holds and (best is None or _prefix(member) > _prefix(best)):
            # the most specific network decides, so a nomatch /32 inside an allowed /24 wins
            best = member
    if best is not None:
        return (not best.nomatch), best
    return (None if unknown else False), None


def _prefix(member: Member) -> int:
    return sum(p.network.prefixlen for p in member.parts if isinstance(p, NetPart))


def set_notes(rule: Rule, packet: Packet | None, sets: IpSets) -> list[str]:
    """One sentence per set match of ``rule``: the set, its size, and the packet's membership."""
    from nodetrace.model.netfilter import SetMatch  # (a ruleset was given: loaded already)

    notes: list[str] = []
    for match in rule.matches:
        if not isinstance(match, SetMatch):
            continue
        ipset = sets.get(match.set_name)
        if ipset is None:
            notes.append(f"set {match.set_name} is not in the --ipsets given")
            continue
        head = f"set {ipset.name} ({ipset.type_name}, {len(ipset.members)} member{'s' if len(ipset.members) != 1 else ''})"
        if packet is None:
            notes.append(head)
            continue
        found, member = lookup(ipset, packet, match.directions or ("src",), sets)
        what = ",".join(match.directions) or "src"
        if found is None:
            notes.append(f"{head}: membership of the packet's {what} not checked for this type")
        elif found:
            notes.append(
                f"{head}: the packet's {what} is a member ({member.text if member else ''})"
            )
        else:
            why = f" (excluded by nomatch {member.text})" if member is not None else ""
            notes.append(f"{head}: the packet's {what} is not a member{why}")
    return notes
