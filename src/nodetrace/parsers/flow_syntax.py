"""Parse a packet written in Open vSwitch's flow syntax, as ``ovs-appctl ofproto/trace`` takes it.

Example: ``tcp,dl_src=fa:16:3e:00:00:01,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_src=40000,tp_dst=22,tcp_flags=+syn``.

Header fields become a :class:`~nodetrace.model.packet.Packet`. Pipeline metadata that is not
part of the frame (``in_port``, ``tun_id``, ``reg0``, ``ct_state``...) is returned beside it as
:class:`FlowSpec.metadata`, in the order given, for the OpenFlow engine to interpret.

A few fields that OVS does not have but the kernel's TRACE log prints are accepted as well, so a
packet from a log can be replayed exactly: ``ip_id``, ``ip_df``, ``ip_mf``, ``ip_len``,
``tcp_seq``, ``tcp_ack``, ``tcp_window``, ``icmp_id``, ``icmp_seq``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from ipaddress import AddressValueError, IPv4Address, IPv6Address, ip_address
from typing import Any

from nodetrace.errors import UsageError
from nodetrace.model.packet import (
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
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


def _int(name: str, value: str) -> int:
    try:
        number = int(value, 0)
    except ValueError:
        raise UsageError(f"{name}={value}: not a number") from None
    bits = _FIELD_BITS.get(name)
    if bits is not None and not 0 <= number < 1 << bits:
        raise UsageError(f"{name}={value}: out of range (0 to {(1 << bits) - 1})")
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
        return _int("tcp_flags", value.split("/")[0])
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


def parse_flow(text: str) -> FlowSpec:
    """Parse ``ofproto/trace``-style flow text into a packet and its pipeline metadata."""
    fields: dict[str, Any] = {}
    metadata: list[tuple[str, str]] = []
    dl_type: int | None = None
    nw_proto: int | None = None
    vlan_given = False
    written: dict[str, str] = {}
    for part in _split(text):
        if "=" not in part:
            if part == "eth":  # every frame: no dl_type constraint
                continue
            if part not in PROTOCOL_SHORTHANDS:
                raise UsageError(
                    f"{part!r}: unknown protocol keyword (try ip, tcp, udp, icmp, arp, ipv6...)"
                )
            dl_type, proto = PROTOCOL_SHORTHANDS[part]
            if proto is not None:
                nw_proto = proto
            continue
        name, value = (s.strip() for s in part.split("=", 1))
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
            dl_type = _int(name, value)
        elif name in ("dl_vlan", "vlan_vid"):
            fields["dl_vlan"] = _int(name, value)
        elif name in ("dl_vlan_pcp", "vlan_pcp"):
            fields["dl_vlan_pcp"] = _int(name, value)
        elif name == "vlan_tci":
            vlan_given = True
            tci = _int(name, value.split("/")[0])
            if tci & 0x1000:
                fields["dl_vlan"] = tci & 0xFFF
                fields["dl_vlan_pcp"] = tci >> 13
        elif name in ("nw_src", "nw_dst", "ipv6_src", "ipv6_dst", "ip_src", "ip_dst"):
            key = "nw_src" if name.endswith("src") else "nw_dst"
            addr = _addr(name, value)
            fields[key] = addr
            written[key] = f"{name}={value}"
            if dl_type is None:
                dl_type = ETH_TYPE_IPV6 if addr.version == 6 else ETH_TYPE_IPV4
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
            nw_proto = _int(name, value)
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
            fields["icmp_type" if name.endswith("type") else "icmp_code"] = _int(name, value)
        elif name == "nw_frag":
            metadata.append((name, value))
        else:
            raise UsageError(f"{name!r}: unknown flow field")
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
    v6_packet = dl_type == ETH_TYPE_IPV6
    for key in ("nw_src", "nw_dst"):
        given_addr = fields.get(key)
        if (
            given_addr is not None
            and dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6)
            and (given_addr.version == 6) != v6_packet
        ):
            hint = "tcp6, udp6, icmp6, ipv6" if given_addr.version == 6 else "tcp, udp, icmp, ip"
            raise UsageError(
                f"{written[key]}: an IPv{given_addr.version} address in an "
                f"{'IPv6' if v6_packet else 'IPv4'} packet (use {hint})"
            )
    packet = replace(Packet(), **fields)
    if (
        packet.nw_src is not None
        and packet.nw_dst is not None
        and (packet.nw_src.version != packet.nw_dst.version)
    ):
        raise UsageError("nw_src and nw_dst are of different IP versions")
    return FlowSpec(packet, tuple(metadata), frozenset(given))
