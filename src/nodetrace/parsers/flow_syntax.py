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

Which names are fields comes from OVS's own field table (``ovs.flow``, loaded only when a name
is not a header field); where each field's bits live and what it needs from the packet before
it, from :data:`nodetrace.model.openflow_fields.FIELD_ALIASES`. This module only says which
:class:`Packet` attribute each header field sets, and so whether its value is a MAC, an
address or a number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from ipaddress import AddressValueError, IPv4Address, IPv6Address, ip_address
from typing import Any

from nodetrace.errors import UsageError
from nodetrace.model.openflow_fields import FIELD_ALIASES
from nodetrace.model.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    ETH_TYPE_RARP,
    PROTOCOL_SHORTHANDS,
    Packet,
    canonical_mac,
)
from nodetrace.parsers.flow_words import TCP_FLAG_BITS, FlowTextError, parse_flags, split_top


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


_ATTRIBUTE: dict[str, str] = {
    name: attribute
    for attribute, names in {
        "dl_src": ("dl_src", "eth_src"),
        "dl_dst": ("dl_dst", "eth_dst"),
        "dl_vlan": ("dl_vlan", "vlan_vid"),
        "dl_vlan_pcp": ("dl_vlan_pcp", "vlan_pcp"),
        "nw_src": ("nw_src", "ip_src", "ipv6_src"),
        "nw_dst": ("nw_dst", "ip_dst", "ipv6_dst"),
        "tp_src": ("tp_src", "tcp_src", "udp_src", "sctp_src"),
        "tp_dst": ("tp_dst", "tcp_dst", "udp_dst", "sctp_dst"),
        "icmp_type": ("icmp_type", "icmpv6_type"),
        "icmp_code": ("icmp_code", "icmpv6_code"),
        "skb_mark": ("pkt_mark",),
        **{same: (same,) for same in (
            "arp_sha", "arp_tha", "arp_spa", "arp_tpa", "arp_op", "nd_target", "nw_ttl",
            "ipv6_label", "ip_id", "ip_len", "ip_frag_offset", "ip_df", "ip_mf", "tcp_seq",
            "tcp_ack", "tcp_window", "icmp_id", "icmp_seq",
        )},
    }.items()
    for name in names
}  # fmt: skip
"""The :class:`Packet` attribute each plain header field sets (OVS's names and the kernel log's
extras); the fields handled one by one in :func:`parse_flow` are not here."""

_EXTRA_BITS = {
    "dl_vlan": 12, "vlan_vid": 12, "dl_vlan_pcp": 3, "arp_op": 16, "ip_id": 16, "ip_len": 16,
    "ip_frag_offset": 13, "tcp_seq": 32, "tcp_ack": 32, "tcp_window": 16, "icmp_id": 16,
    "icmp_seq": 16, "ip_df": 1, "ip_mf": 1,
}  # fmt: skip
"""Widths that are not the field's bits in :data:`FIELD_ALIASES`: the kernel log's fields, and
OVS fields whose user value is narrower or wider than their slot (``arp_op`` in ``nw_proto``)."""

_OVS_NAMES = {"tp_src": "tcp_src", "tp_dst": "tcp_dst"}
"""OVS's own name of a field it takes by another name, which its "value too large" message uses."""

_EXTRA_PREREQUISITES = {
    "tp_src": "tcp", "tp_dst": "tcp", "vlan_pcp": "vlan", "ip_id": "ipv4", "ip_df": "ipv4",
    "ip_mf": "ipv4", "ip_frag_offset": "ipv4", "ip_len": "ip", "tcp_seq": "tcp",
    "tcp_ack": "tcp", "tcp_window": "tcp", "icmp_id": "icmp_any", "icmp_seq": "icmp_any",
}  # fmt: skip
"""Where ``ofproto/trace``'s packet parser asks more than a flow match does (its ``tp_src`` is
TCP's; ``vlan_pcp`` needs a tag), and the kernel log's fields."""


def _bits(name: str) -> int | None:
    alias = FIELD_ALIASES.get(name)
    return _EXTRA_BITS.get(name, alias.width if alias is not None else None)


def _prerequisite(name: str) -> str:
    alias = FIELD_ALIASES.get(name)
    return _EXTRA_PREREQUISITES.get(name, alias.prereq if alias is not None else "")


def _identity(name: str) -> str:
    """Names of one OVS field (``eth_src``, ``dl_src``) share it: setting both is setting it
    twice."""
    alias = FIELD_ALIASES.get(name)
    return f"{alias.storage}:{alias.shift}:{alias.width}" if alias is not None else name


def _int(name: str, value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        raise UsageError(f"{name}={value}: not a number") from None
    bits = _bits(name)
    if bits is not None and not 0 <= number < 1 << bits:
        said = (
            f"; ofproto/trace: bad value for {name} ({value}: value too large for "
            f"{bits // 8}-byte field {_OVS_NAMES.get(name, name)})"
            if name in _ovs_fields() and bits % 8 == 0
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


@cache
def _ovs_fields() -> dict[str, Any]:
    """OVS's field table, loaded on first use: ``ovs.flow`` brings pyparsing and netaddr (a
    tenth of a second), which a packet of header fields alone never needs."""
    from ovs.flow.ofp_fields import field_decoders

    fields: dict[str, Any] = field_decoders
    return fields


_MAC_ATTRIBUTES = frozenset({"dl_src", "dl_dst", "arp_sha", "arp_tha"})
_ADDRESS_ATTRIBUTES = frozenset({"nw_src", "nw_dst", "arp_spa", "arp_tpa", "nd_target"})
"""The :class:`Packet` attributes holding a MAC or an IP address; the other header fields are
numbers. OVS's field table decodes every name of :data:`_ATTRIBUTE` the same way (a unit test
holds the two together)."""


def _value(name: str, value: str) -> object:
    """A header field's value, of the kind its :class:`Packet` attribute holds."""
    attribute = _ATTRIBUTE[name]
    if attribute in _MAC_ATTRIBUTES:
        return _mac(name, value)
    if attribute in _ADDRESS_ATTRIBUTES:
        return _addr(name, value)
    return _int(name, value)


def _tcp_flags(value: str) -> int:
    """``+syn`` (the flags set), ``syn|ack`` or a number; ofproto/trace takes the last two."""
    if value[:1].isdigit():
        try:
            return _int("tcp_flags", value)
        except UsageError as err:
            if "out of range" not in str(err):
                raise
            raise UsageError(
                f"{err}; ofproto/trace: bad value for tcp_flags ({value}: unknown TCP flag(s))"
            ) from None
    if value[:1] in "+-" and value[1:2].isdigit():
        raise UsageError(f"tcp_flags: unknown flag {value!r}")
    try:
        return parse_flags(value, TCP_FLAG_BITS, "tcp_flags")[0]
    except FlowTextError as err:
        raise UsageError(str(err)) from None


_NEEDS = {
    "ipv4": "an IPv4 packet: give ip, tcp, udp, icmp or dl_type=0x0800 before it",
    "ipv6": "an IPv6 packet: give ipv6, tcp6, udp6, icmp6 or dl_type=0x86dd before it",
    "ip": "an IP packet: give ip or ipv6 (or tcp, udp, icmp...) before it",
    "arp": "an ARP packet: give arp or rarp before it",
    "tcp": "a TCP packet: give tcp or tcp6 before it (not a later fragment)",
    "udp": "a UDP packet: give udp or udp6 before it (not a later fragment)",
    "sctp": "an SCTP packet: give sctp or sctp6 before it (not a later fragment)",
    "icmp": "an ICMPv4 packet: give icmp before it (ICMPv6 has icmpv6_type/icmpv6_code)",
    "icmpv6": "an ICMPv6 packet: give icmp6 before it (ICMPv4 has icmp_type/icmp_code)",
    "icmp_any": "an ICMP packet: give icmp or icmp6 before it",
    "nd": "an ICMPv6 neighbour solicitation or advertisement: give icmp6,icmpv6_type=135 "
    "(or 136) before it",
    "nd_ns": "a neighbour solicitation: give icmp6,icmpv6_type=135 before it",
    "nd_na": "a neighbour advertisement: give icmp6,icmpv6_type=136 before it",
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
            "icmpv6": l4 and icmp6,
            "icmp_any": l4 and self.nw_proto in (1, 58),
            "nd": nd and self.icmp_type in (135, 136),
            "nd_ns": nd and self.icmp_type == 135,
            "nd_na": nd and self.icmp_type == 136,
            "vlan": self.vlan,
        }.get(prereq, True)

    def check(self, name: str, value: str) -> None:
        """Refuse ``name`` as ``ofproto/trace`` does: its prerequisite unmet, or set twice (OVS
        counts a field as set once it holds a non-zero value)."""
        prereq = _prerequisite(name)
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
        same = _identity(name)
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


_ADDRESS_VERSION = {"arp_spa": 4, "arp_tpa": 4, "nd_target": 6}
_ADDRESS_REFUSAL = {4: "ARP addresses are IPv4", 6: "nd_target is IPv6"}


class _Packet:
    """The header fields and metadata of one flow text as they are read, in order."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] = {}
        self.metadata: list[tuple[str, str]] = []
        self.seen = _Seen()
        self.vlan_given = False

    def keyword(self, word: str) -> None:
        if word not in PROTOCOL_SHORTHANDS:
            raise UsageError(
                f"{word!r}: unknown field {word} (protocol keywords: ip, tcp, udp, icmp, "
                "arp, ipv6, tcp6...)"
            )
        if self.seen.dl_type is not None:
            raise UsageError(f"{word}: Ethernet type set multiple times")
        dl_type, proto = PROTOCOL_SHORTHANDS[word]
        self.seen.dl_type = dl_type
        self.seen.names.add(_identity("dl_type"))
        if proto is not None:
            self.seen.nw_proto = proto
            self.seen.names.add(_identity("nw_proto"))

    def set(self, name: str, value: str) -> None:
        special = _SPECIAL.get(name)
        if special is not None:
            special(self, name, value)
        elif name in _ATTRIBUTE:
            self._header(name, value)
        elif name in _ovs_fields():  # an OVS field that is not in the frame: the pipeline's
            self.metadata.append((name, value))
        else:
            raise UsageError(f"{name!r}: unknown flow field (ofproto/trace: unknown field {name})")

    def _header(self, name: str, value: str) -> None:
        attribute = _ATTRIBUTE[name]
        decoded = _value(name, value)
        if isinstance(decoded, IPv4Address | IPv6Address):
            version = _ADDRESS_VERSION.get(name)
            if version is not None and decoded.version != version:
                raise UsageError(f"{name}={value}: {_ADDRESS_REFUSAL[version]}")
            _version_mismatch(
                name,
                value,
                self.seen.dl_type,
                f"bad value for {name} ({value}: invalid IP address)",
            )
        elif name in ("ip_df", "ip_mf"):
            decoded = decoded != 0
        elif attribute in ("dl_vlan", "dl_vlan_pcp"):
            self.seen.vlan = True
        elif attribute == "icmp_type":
            self.seen.icmp_type = int(str(decoded))
        elif attribute == "icmp_code":
            self.seen.icmp_code = int(str(decoded))
        self.fields[attribute] = decoded

    def _ethertype(self, name: str, value: str) -> None:
        self.seen.dl_type = _int(name, value)

    def _protocol(self, name: str, value: str) -> None:
        self.seen.nw_proto = _int(name, value)

    def _vlan_tci(self, name: str, value: str) -> None:
        self.vlan_given = True
        tci = _int(name, value)
        if tci & 0x1000:
            self.fields["dl_vlan"] = tci & 0xFFF
            self.fields["dl_vlan_pcp"] = tci >> 13
            self.seen.vlan = True

    def _tos(self, name: str, value: str) -> None:
        tos, v = self.fields.get("nw_tos", 0), _int(name, value)
        if name == "nw_tos":
            tos = (tos & 0x03) | (v & 0xFC)
        elif name == "ip_dscp":
            tos = (tos & 0x03) | ((v << 2) & 0xFC)
        else:
            tos = (tos & 0xFC) | (v & 0x03)
        self.fields["nw_tos"] = tos

    def _tcp_flags(self, name: str, value: str) -> None:
        self.fields["tcp_flags"] = _tcp_flags(value)

    def _fragment(self, name: str, value: str) -> None:
        self.metadata.append((name, value))
        self.seen.later_fragment = value == "later"

    def _nd_link_address(self, name: str, value: str) -> None:
        self.metadata.append((name, _mac(name, value)))

    def spec(self) -> FlowSpec:
        fields = dict(self.fields)
        given = set(fields)
        if self.seen.dl_type is not None:
            fields["dl_type"] = self.seen.dl_type
            given.add("dl_type")
        if self.seen.nw_proto is not None:
            fields["nw_proto"] = self.seen.nw_proto
            given.add("nw_proto")
        if self.vlan_given:
            given.add("dl_vlan")
        return FlowSpec(replace(Packet(), **fields), tuple(self.metadata), frozenset(given))


_SPECIAL: dict[str, Callable[[_Packet, str, str], None]] = {
    "dl_type": _Packet._ethertype,
    "eth_type": _Packet._ethertype,
    "nw_proto": _Packet._protocol,
    "ip_proto": _Packet._protocol,
    "vlan_tci": _Packet._vlan_tci,
    "nw_tos": _Packet._tos,
    "ip_dscp": _Packet._tos,
    "nw_ecn": _Packet._tos,
    "ip_ecn": _Packet._tos,
    "tcp_flags": _Packet._tcp_flags,
    "nw_frag": _Packet._fragment,
    "nd_sll": _Packet._nd_link_address,
    "nd_tll": _Packet._nd_link_address,
}
"""Fields that are not one :class:`Packet` attribute: they set bits of one, steer the
prerequisite checks, or stay metadata with a checked value."""


def parse_flow(text: str) -> FlowSpec:
    """Parse ``ofproto/trace``-style flow text into a packet and its pipeline metadata.

    Fields are checked in order, as ``ofproto/trace`` checks them: a field whose prerequisite
    the fields before it do not meet (``tp_src`` on UDP, ``icmp_type`` on ICMPv6, ``nw_src``
    before ``ip``), a field given twice, or a masked value is refused with OVS's own reason.
    """
    packet = _Packet()
    for part in split_top(text):
        if "=" not in part:
            packet.keyword(part)
            continue
        name, value = (s.strip() for s in part.split("=", 1))
        packet.seen.check(name, value)
        metadata = name not in _ATTRIBUTE and name not in _SPECIAL
        if "/" in value and not (metadata and name in _ovs_fields()):
            raise UsageError(
                f"{name}={value}: bad value for {name} ({value}: wildcards not allowed here)"
            )
        packet.set(name, value)
    return packet.spec()
