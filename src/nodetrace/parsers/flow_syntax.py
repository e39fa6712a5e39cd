"""Parse a packet written in Open vSwitch's flow syntax, as ``ovs-appctl ofproto/trace`` takes it.

Example: ``tcp,dl_src=fa:16:3e:00:00:01,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=40000,tp_dst=22,tcp_flags=+syn``.

Header fields become a :class:`~nodetrace.model.packet.Packet`. Pipeline metadata that is not
part of the frame (``in_port``, ``tun_id``, ``reg0``, ``ct_state``...) is returned beside it as
:class:`FlowSpec.metadata`, in the order given, for the OpenFlow engine to interpret.

Fields are taken in order and checked as ``ovs-appctl ofproto/trace`` checks them (OVS 3.1,
recorded in tests/openflow_flow_syntax_cases.py and replayed against the real tool by
tests/lab/test_flow_syntax_ovs.py): a field whose prerequisite the fields before it do not meet
is refused with OVS's reason (``udp,tp_src=53``: tp_src is TCP's; ``icmp6,icmp_type=128``;
``nw_src=...`` before ``ip``), as are a field set twice and a masked value.

A few fields that OVS does not have but the kernel's TRACE log prints are accepted as well, so a
packet from a log can be replayed exactly: ``ip_id``, ``ip_df``, ``ip_mf``, ``ip_len``,
``tcp_seq``, ``tcp_ack``, ``tcp_window``, ``icmp_id``, ``icmp_seq``. ``tcp_flags=+syn`` and
``ct_state=+trk`` (flag syntax) are accepted too, where ``ofproto/trace`` wants exact values.
Values OVS would silently mask or misread (``ip_dscp=64``, ``nw_src=300.1.1.1``) are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address, IPv6Address, ip_address
from typing import Any

from nodetrace.errors import UsageError
from nodetrace.model.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_RARP,
    PROTOCOL_SHORTHANDS,
    Packet,
    TcpFlag,
    canonical_mac,
)

_METADATA = re.compile(
    r"^(in_port|in_port_oxm|tun_id|tunnel_id|tun_src|tun_dst|tun_ipv6_src|tun_ipv6_dst|tun_flags|"
    r"tun_gbp_id|tun_gbp_flags|tun_metadata\d+|metadata|reg\d+|xreg\d+|xxreg\d+|ct_state|ct_zone|"
    r"ct_mark|ct_label|ct_nw_src|ct_nw_dst|ct_ipv6_src|ct_ipv6_dst|ct_nw_proto|ct_tp_src|ct_tp_dst|"
    r"recirc_id|dp_hash|skb_priority|actset_output|packet_type|conj_id)$"
)

_TCP_FLAG_NAMES = {f.name.lower(): int(f) for f in TcpFlag}


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A packet plus the pipeline metadata given with it, both as written by the user."""

    packet: Packet
    metadata: tuple[tuple[str, str], ...] = field(default=())
    given: frozenset[str] | None = None
    """The :class:`Packet` fields the text set (the rest are defaults), when known."""

    def get(self, name: str) -> str | None:
        for key, value in self.metadata:
            if key == name:
                return value
        return None


_FIELD_BITS = {
    "dl_type": 16, "eth_type": 16, "dl_vlan": 12, "vlan_vid": 12, "dl_vlan_pcp": 3,
    "vlan_pcp": 3, "vlan_tci": 16, "nw_proto": 8, "ip_proto": 8, "nw_tos": 8, "ip_dscp": 6,
    "nw_ecn": 2, "ip_ecn": 2, "nw_ttl": 8, "ipv6_label": 20, "ip_id": 16, "ip_len": 16,
    "ip_frag_offset": 13, "tcp_seq": 32, "tcp_ack": 32, "tcp_window": 16, "icmp_id": 16,
    "icmp_seq": 16, "arp_op": 16, "pkt_mark": 32, "ip_df": 1, "ip_mf": 1, "tp_src": 16,
    "tp_dst": 16, "tcp_src": 16, "tcp_dst": 16, "udp_src": 16, "udp_dst": 16, "sctp_src": 16,
    "sctp_dst": 16, "tcp_flags": 12, "icmp_type": 8, "icmpv6_type": 8, "icmp_code": 8,
    "icmpv6_code": 8,
}  # fmt: skip
"""Width of each numeric header field: ofproto/trace refuses a value that does not fit."""


_OVS_NAMES = {
    "tp_src": "tcp_src", "tp_dst": "tcp_dst", "tcp_src": "tcp_src", "tcp_dst": "tcp_dst",
    "udp_src": "udp_src", "udp_dst": "udp_dst", "sctp_src": "sctp_src", "sctp_dst": "sctp_dst",
    "nw_proto": "nw_proto", "nw_ttl": "nw_ttl", "icmp_type": "icmp_type",
    "icmp_code": "icmp_code", "icmpv6_type": "icmpv6_type", "icmpv6_code": "icmpv6_code",
    "arp_op": "arp_op",
}  # fmt: skip
"""OVS's own name of a byte-wide field, which its "value too large" message uses."""


def _int(name: str, value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        raise UsageError(f"{name}={value}: not a number") from None
    bits = _FIELD_BITS.get(name)
    if bits is not None and not 0 <= number < 1 << bits:
        ovs = _OVS_NAMES.get(name)
        said = (
            f"; ofproto/trace: bad value for {name} ({value}: value too large for "
            f"{bits // 8}-byte field {ovs})"
            if ovs
            else ""
        )
        raise UsageError(f"{name}={value}: out of range (0 to {(1 << bits) - 1}){said}")
    return number


def _mac(name: str, value: str) -> str:
    try:
        return canonical_mac(value)
    except ValueError:
        raise UsageError(
            f"{name}={value}: not a MAC address (expected xx:xx:xx:xx:xx:xx)"
        ) from None


def _addr(name: str, value: str) -> IPv4Address | IPv6Address:
    try:
        return ip_address(value)
    except (AddressValueError, ValueError):
        raise UsageError(f"{name}={value}: not an IP address") from None


def _tcp_flags(value: str) -> int:
    if value[:1] in "+-" and not value[1:2].isdigit():
        bits = 0
        for sign, name in re.findall(r"([+-])([a-z]+)", value.lower()):
            if name not in _TCP_FLAG_NAMES:
                raise UsageError(f"tcp_flags: unknown flag {name!r}")
            if sign == "+":
                bits |= _TCP_FLAG_NAMES[name]
        return bits
    if value[:1].isdigit():
        try:
            return _int("tcp_flags", value)
        except UsageError as err:
            if "out of range" not in str(err):
                raise
            raise UsageError(
                f"{err}; ofproto/trace: bad value for tcp_flags ({value}: unknown TCP flag(s))"
            ) from None
    bits = 0
    for name in re.split(r"[|,]", value.lower()):
        if name not in _TCP_FLAG_NAMES:
            raise UsageError(f"tcp_flags: unknown flag {name!r}")
        bits |= _TCP_FLAG_NAMES[name]
    return bits


def _split(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (``tun_metadata0=(...)`` stays whole)."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_SAME_FIELD = {
    "eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type", "ip_src": "nw_src",
    "ip_dst": "nw_dst", "ip_proto": "nw_proto", "ip_ecn": "nw_ecn", "tcp_src": "tp_src",
    "tcp_dst": "tp_dst", "in_port_oxm": "in_port", "tunnel_id": "tun_id",
}  # fmt: skip
"""Names of one OVS field: setting both is setting it twice."""

_PREREQUISITES = {
    "nw_src": "ipv4", "nw_dst": "ipv4", "ip_src": "ipv4", "ip_dst": "ipv4",
    "ip_id": "ipv4", "ip_df": "ipv4", "ip_mf": "ipv4", "ip_frag_offset": "ipv4",
    "ipv6_src": "ipv6", "ipv6_dst": "ipv6", "ipv6_label": "ipv6",
    "nw_proto": "ip", "ip_proto": "ip", "nw_tos": "ip", "ip_dscp": "ip", "nw_ecn": "ip",
    "ip_ecn": "ip", "nw_ttl": "ip", "nw_frag": "ip", "ip_len": "ip",
    "arp_spa": "arp", "arp_tpa": "arp", "arp_sha": "arp", "arp_tha": "arp", "arp_op": "arp",
    "tp_src": "tcp", "tp_dst": "tcp", "tcp_src": "tcp", "tcp_dst": "tcp", "tcp_flags": "tcp",
    "tcp_seq": "tcp", "tcp_ack": "tcp", "tcp_window": "tcp",
    "udp_src": "udp", "udp_dst": "udp", "sctp_src": "sctp", "sctp_dst": "sctp",
    "icmp_type": "icmp", "icmp_code": "icmp", "icmpv6_type": "icmp6", "icmpv6_code": "icmp6",
    "icmp_id": "icmp_any", "icmp_seq": "icmp_any",
    "nd_target": "nd", "nd_sll": "nd_solicit", "nd_tll": "nd_advert", "vlan_pcp": "vlan",
}  # fmt: skip
"""Each header field's prerequisite, as OVS's meta-flow declares it (ovs-fields(7)):
``ofproto/trace`` refuses a field whose prerequisite the fields *before* it do not meet."""

_NEEDS = {
    "ipv4": "an IPv4 packet: give ip, tcp, udp, icmp or dl_type=0x0800 before it",
    "ipv6": "an IPv6 packet: give ipv6, tcp6, udp6, icmp6 or dl_type=0x86dd before it",
    "ip": "an IP packet: give ip or ipv6 (or tcp, udp, icmp...) before it",
    "arp": "an ARP packet: give arp or rarp before it",
    "tcp": "a TCP packet: give tcp or tcp6 before it (not a later fragment)",
    "udp": "a UDP packet: give udp or udp6 before it (not a later fragment)",
    "sctp": "an SCTP packet: give sctp or sctp6 before it (not a later fragment)",
    "icmp": "an ICMPv4 packet: give icmp before it (ICMPv6 has icmpv6_type/icmpv6_code)",
    "icmp6": "an ICMPv6 packet: give icmp6 before it (ICMPv4 has icmp_type/icmp_code)",
    "icmp_any": "an ICMP packet: give icmp or icmp6 before it",
    "nd": "an ICMPv6 neighbour solicitation or advertisement: give icmp6,icmpv6_type=135 "
    "(or 136) before it",
    "nd_solicit": "a neighbour solicitation: give icmp6,icmpv6_type=135 before it",
    "nd_advert": "a neighbour advertisement: give icmp6,icmpv6_type=136 before it",
    "vlan": "a VLAN tag: give dl_vlan or vlan_tci before it (or use dl_vlan_pcp)",
}
_L4_NAMES = {6: "tcp_src/tcp_dst", 17: "udp_src/udp_dst", 132: "sctp_src/sctp_dst"}


@dataclass(slots=True)
class _Seen:
    """What the fields parsed so far say about the packet: enough to check prerequisites."""

    dl_type: int | None = None
    nw_proto: int | None = None
    icmp_type: int = 0
    icmp_code: int = 0
    vlan: bool = False
    later_fragment: bool = False
    names: set[str] = field(default_factory=set)

    def meets(self, prereq: str) -> bool:
        ip = self.dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6)
        l4 = ip and not self.later_fragment
        icmp6 = self.dl_type == ETH_TYPE_IPV6 and self.nw_proto == 58
        nd = icmp6 and self.icmp_code == 0
        return {
            "ipv4": self.dl_type == ETH_TYPE_IPV4,
            "ipv6": self.dl_type == ETH_TYPE_IPV6,
            "ip": ip,
            "arp": self.dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP),
            "tcp": l4 and self.nw_proto == 6,
            "udp": l4 and self.nw_proto == 17,
            "sctp": l4 and self.nw_proto == 132,
            "icmp": l4 and self.dl_type == ETH_TYPE_IPV4 and self.nw_proto == 1,
            "icmp6": l4 and icmp6,
            "icmp_any": l4 and self.nw_proto in (1, 58),
            "nd": nd and self.icmp_type in (135, 136),
            "nd_solicit": nd and self.icmp_type == 135,
            "nd_advert": nd and self.icmp_type == 136,
            "vlan": self.vlan,
        }.get(prereq, True)

    def check(self, name: str, value: str) -> None:
        """Refuse ``name`` as ``ofproto/trace`` does: its prerequisite unmet, or set twice (OVS
        counts a field as set once it holds a non-zero value)."""
        prereq = _PREREQUISITES.get(name, "")
        if not self.meets(prereq):
            _version_mismatch(
                name, value, self.dl_type, f"prerequisites not met for setting {name}"
            )
            hint = _NEEDS[prereq]
            if name in ("tp_src", "tp_dst") and self.nw_proto in _L4_NAMES:
                hint = f"TCP: in OVS tp_src/tp_dst are TCP's; use {_L4_NAMES[self.nw_proto]}"
            elif name in ("nw_src", "nw_dst", "ip_src", "ip_dst") and self.dl_type == ETH_TYPE_IPV6:
                hint = f"IPv4: use ipv6_{name[3:]} for IPv6"
            raise UsageError(
                f"{name}={value}: prerequisites not met for setting {name} ({name} needs {hint})"
            )
        same = _SAME_FIELD.get(name, name)
        if same in self.names:
            raise UsageError(f"{name}={value}: field {name} set multiple times")
        if not _is_zero(value):
            self.names.add(same)


def _is_zero(value: str) -> bool:
    try:
        return int(value, 0) == 0
    except ValueError:
        pass
    try:
        return int(ip_address(value)) == 0
    except ValueError:
        return value.replace(":", "").replace("0", "") == "" and ":" in value


def _version_mismatch(name: str, value: str, dl_type: int | None, ovs_reason: str) -> None:
    """An address of the other IP version: say so plainly, then OVS's reason."""
    if name not in ("nw_src", "nw_dst", "ip_src", "ip_dst", "ipv6_src", "ipv6_dst"):
        return
    try:
        version = ip_address(value).version
    except ValueError:
        return
    packet = {ETH_TYPE_IPV4: 4, ETH_TYPE_IPV6: 6}.get(dl_type or 0)
    if packet is not None and packet != version:
        hint = "tcp6, udp6, icmp6, ipv6" if version == 6 else "tcp, udp, icmp, ip"
        raise UsageError(
            f"{name}={value}: an IPv{version} address in an IPv{packet} packet (use {hint}); "
            f"ofproto/trace: {ovs_reason}"
        )


def parse_flow(text: str) -> FlowSpec:
    """Parse ``ofproto/trace``-style flow text into a packet and its pipeline metadata.

    Fields are checked in order, as ``ofproto/trace`` checks them: a field whose prerequisite
    the fields before it do not meet (``tp_src`` on UDP, ``icmp_type`` on ICMPv6, ``nw_src``
    before ``ip``), a field given twice, or a masked value is refused with OVS's own reason.
    """
    fields: dict[str, Any] = {}
    metadata: list[tuple[str, str]] = []
    dl_type: int | None = None
    nw_proto: int | None = None
    vlan_given = False
    seen = _Seen()
    for part in _split(text):
        if "=" not in part:
            if part not in PROTOCOL_SHORTHANDS:
                raise UsageError(
                    f"{part!r}: unknown field {part} (protocol keywords: ip, tcp, udp, icmp, "
                    "arp, ipv6, tcp6...)"
                )
            if seen.dl_type is not None:
                raise UsageError(f"{part}: Ethernet type set multiple times")
            dl_type, proto = PROTOCOL_SHORTHANDS[part]
            seen.dl_type = dl_type
            seen.names.add("dl_type")
            if proto is not None:
                nw_proto = seen.nw_proto = proto
                seen.names.add("nw_proto")
            continue
        name, value = (s.strip() for s in part.split("=", 1))
        seen.check(name, value)
        if "/" in value and not _METADATA.match(name):
            raise UsageError(
                f"{name}={value}: bad value for {name} ({value}: wildcards not allowed here)"
            )
        if _METADATA.match(name):
            metadata.append((name, value))
            continue
        if name in (
            "dl_src",
            "eth_src",
            "dl_dst",
            "eth_dst",
            "arp_sha",
            "arp_tha",
            "nd_sll",
            "nd_tll",
        ):
            key = {"eth_src": "dl_src", "eth_dst": "dl_dst"}.get(name, name)
            if key in ("nd_sll", "nd_tll"):
                metadata.append((name, _mac(name, value)))
            else:
                fields[key] = _mac(name, value)
        elif name in ("dl_type", "eth_type"):
            dl_type = seen.dl_type = _int(name, value)
        elif name in ("dl_vlan", "vlan_vid"):
            fields["dl_vlan"] = _int(name, value)
            seen.vlan = True
        elif name in ("dl_vlan_pcp", "vlan_pcp"):
            fields["dl_vlan_pcp"] = _int(name, value)
            seen.vlan = True
        elif name == "vlan_tci":
            vlan_given = True
            tci = _int(name, value)
            if tci & 0x1000:
                fields["dl_vlan"] = tci & 0xFFF
                fields["dl_vlan_pcp"] = tci >> 13
                seen.vlan = True
        elif name in ("nw_src", "nw_dst", "ipv6_src", "ipv6_dst", "ip_src", "ip_dst"):
            key = "nw_src" if name.endswith("src") else "nw_dst"
            addr = _addr(name, value)
            _version_mismatch(
                name, value, dl_type, f"bad value for {name} ({value}: invalid IP address)"
            )
            fields[key] = addr
        elif name in ("arp_spa", "arp_tpa"):
            addr = _addr(name, value)
            if not isinstance(addr, IPv4Address):
                raise UsageError(f"{name}={value}: ARP addresses are IPv4")
            fields[name] = addr
        elif name == "nd_target":
            addr = _addr(name, value)
            if not isinstance(addr, IPv6Address):
                raise UsageError(f"{name}={value}: nd_target is IPv6")
            fields[name] = addr
        elif name in ("nw_proto", "ip_proto"):
            nw_proto = seen.nw_proto = _int(name, value)
        elif name in ("nw_tos", "ip_dscp", "nw_ecn", "ip_ecn"):
            tos = fields.get("nw_tos", 0)
            v = _int(name, value)
            if name == "nw_tos":
                tos = (tos & 0x03) | (v & 0xFC)
            elif name == "ip_dscp":
                tos = (tos & 0x03) | ((v << 2) & 0xFC)
            else:
                tos = (tos & 0xFC) | (v & 0x03)
            fields["nw_tos"] = tos
        elif name in (
            "nw_ttl",
            "ipv6_label",
            "ip_id",
            "ip_len",
            "ip_frag_offset",
            "tcp_seq",
            "tcp_ack",
            "tcp_window",
            "icmp_id",
            "icmp_seq",
            "arp_op",
            "pkt_mark",
        ):
            fields["skb_mark" if name == "pkt_mark" else name] = _int(name, value)
        elif name in ("ip_df", "ip_mf"):
            fields[name] = _int(name, value) != 0
        elif name in (
            "tp_src",
            "tp_dst",
            "tcp_src",
            "tcp_dst",
            "udp_src",
            "udp_dst",
            "sctp_src",
            "sctp_dst",
        ):
            fields["tp_src" if name.endswith("src") else "tp_dst"] = _int(name, value)
        elif name == "tcp_flags":
            fields["tcp_flags"] = _tcp_flags(value)
        elif name in ("icmp_type", "icmpv6_type", "icmp_code", "icmpv6_code"):
            number = _int(name, value)
            if name.endswith("type"):
                fields["icmp_type"] = seen.icmp_type = number
            else:
                fields["icmp_code"] = seen.icmp_code = number
        elif name == "nw_frag":
            metadata.append((name, value))
            seen.later_fragment = value == "later"
        else:
            raise UsageError(f"{name!r}: unknown flow field (ofproto/trace: unknown field {name})")
    if dl_type is not None:
        fields["dl_type"] = dl_type
    if nw_proto is not None:
        fields["nw_proto"] = nw_proto
    given = set(fields)
    if dl_type is not None:
        given.add("dl_type")
    if nw_proto is not None:
        given.add("nw_proto")
    if vlan_given:
        given.add("dl_vlan")
    packet = replace(Packet(), **fields)
    return FlowSpec(packet, tuple(metadata), frozenset(given))
