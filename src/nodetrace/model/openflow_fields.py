"""OpenFlow's packet fields as Open vSwitch keeps them: the storage fields of its ``struct flow``
with their widths, and every user-visible field name as bits of one of them.

Apart from the flows' model (:mod:`.openflow`, which re-exports these names) because reading a
packet in flow syntax needs these tables and nothing else: ``nodetrace iptables --packet`` then
does not load every OpenFlow action type at start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """A storage field: its canonical name and width in bits."""

    name: str
    width: int


def _fields(*pairs: tuple[str, int]) -> dict[str, FieldInfo]:
    return {name: FieldInfo(name, width) for name, width in pairs}


STORAGE_FIELDS: dict[str, FieldInfo] = _fields(
    ("in_port", 16), ("metadata", 64), *((f"reg{i}", 32) for i in range(16)),
    ("tun_id", 64), ("tun_src", 32), ("tun_dst", 32), ("tun_ipv6_src", 128),
    ("tun_ipv6_dst", 128), ("tun_tos", 8), ("tun_ttl", 8), ("tun_flags", 16), ("tun_gbp_id", 16),
    ("tun_gbp_flags", 8),
    ("pkt_mark", 32), ("skb_priority", 32),
    ("ct_state", 32), ("ct_zone", 16), ("ct_mark", 32), ("ct_label", 128), ("ct_nw_proto", 8),
    ("ct_nw_src", 32), ("ct_nw_dst", 32), ("ct_ipv6_src", 128), ("ct_ipv6_dst", 128),
    ("ct_tp_src", 16), ("ct_tp_dst", 16),
    ("recirc_id", 32), ("conj_id", 32), ("dp_hash", 32), ("actset_output", 32),
    ("dl_src", 48), ("dl_dst", 48), ("dl_type", 16), ("vlan_tci", 16),
    ("nw_src", 32), ("nw_dst", 32), ("ipv6_src", 128), ("ipv6_dst", 128), ("ipv6_label", 20),
    ("nw_proto", 8), ("nw_tos", 8), ("nw_ttl", 8), ("nw_frag", 8),
    ("tp_src", 16), ("tp_dst", 16), ("tcp_flags", 16),
    ("arp_sha", 48), ("arp_tha", 48), ("nd_target", 128),
)  # fmt: skip
"""Every field the engine keeps for a packet. Protocol fields that OVS stores in a shared slot
(ARP and ICMP fields, VLAN, DSCP/ECN) are names *of this table* only through
:data:`FIELD_ALIASES`."""


@dataclass(frozen=True, slots=True)
class FieldAlias:
    """A user-visible field (``icmp_type``, ``dl_vlan``, ``ip_dscp``) as bits of a storage field.

    ``shift`` is where the user's value starts inside the storage field and ``width`` its size;
    ``prereq`` names the protocol the field needs (see :data:`PREREQUISITES`).
    """

    name: str
    storage: str
    shift: int
    width: int
    prereq: str = ""


def _alias(
    name: str, storage: str, shift: int = 0, width: int | None = None, prereq: str = ""
) -> FieldAlias:
    return FieldAlias(
        name, storage, shift, STORAGE_FIELDS[storage].width if width is None else width, prereq
    )


FIELD_ALIASES: dict[str, FieldAlias] = {
    # Every storage field is a user-visible field of the same name, except ``tun_flags``, which
    # is read only in its flag spelling (``+oam``) where a flow or a packet names it.
    **{
        name: FieldAlias(name, name, 0, info.width)
        for name, info in STORAGE_FIELDS.items()
        if name != "tun_flags"
    },
    # Other spellings of a storage field, and the protocol fields with their prerequisites.
    **{
        a.name: a
        for a in (
            _alias("in_port_oxm", "in_port"),
            _alias("tunnel_id", "tun_id"),
            _alias("eth_src", "dl_src"),
            _alias("eth_dst", "dl_dst"),
            _alias("eth_type", "dl_type"),
            _alias("vlan_vid", "vlan_tci", 0, 13),
            _alias("vlan_pcp", "vlan_tci", 13, 3),
            _alias("ip_src", "nw_src", prereq="ipv4"),
            _alias("nw_src", "nw_src", prereq="ipv4"),
            _alias("ip_dst", "nw_dst", prereq="ipv4"),
            _alias("nw_dst", "nw_dst", prereq="ipv4"),
            _alias("ipv6_src", "ipv6_src", prereq="ipv6"),
            _alias("ipv6_dst", "ipv6_dst", prereq="ipv6"),
            _alias("ipv6_label", "ipv6_label", prereq="ipv6"),
            _alias("nw_proto", "nw_proto", prereq="ip"),
            _alias("ip_proto", "nw_proto", prereq="ip"),
            _alias("nw_tos", "nw_tos", prereq="ip"),
            _alias("ip_dscp", "nw_tos", 2, 6, prereq="ip"),
            _alias("nw_ecn", "nw_tos", 0, 2, prereq="ip"),
            _alias("ip_ecn", "nw_tos", 0, 2, prereq="ip"),
            _alias("nw_ttl", "nw_ttl", prereq="ip"),
            _alias("ip_frag", "nw_frag", prereq="ip"),
            _alias("nw_frag", "nw_frag", prereq="ip"),
            _alias("arp_op", "nw_proto", prereq="arp"),
            _alias("arp_spa", "nw_src", prereq="arp"),
            _alias("arp_tpa", "nw_dst", prereq="arp"),
            _alias("arp_sha", "arp_sha", prereq="arp"),
            _alias("arp_tha", "arp_tha", prereq="arp"),
            _alias("tcp_src", "tp_src", prereq="tcp"),
            _alias("tcp_dst", "tp_dst", prereq="tcp"),
            _alias("tp_src", "tp_src", prereq="l4"),
            _alias("tp_dst", "tp_dst", prereq="l4"),
            _alias("udp_src", "tp_src", prereq="udp"),
            _alias("udp_dst", "tp_dst", prereq="udp"),
            _alias("sctp_src", "tp_src", prereq="sctp"),
            _alias("sctp_dst", "tp_dst", prereq="sctp"),
            _alias("tcp_flags", "tcp_flags", 0, 12, prereq="tcp"),
            _alias("icmp_type", "tp_src", 0, 8, prereq="icmp"),
            _alias("icmp_code", "tp_dst", 0, 8, prereq="icmp"),
            _alias("icmpv6_type", "tp_src", 0, 8, prereq="icmpv6"),
            _alias("icmpv6_code", "tp_dst", 0, 8, prereq="icmpv6"),
            _alias("nd_target", "nd_target", prereq="nd"),
            _alias("nd_sll", "arp_sha", prereq="nd_ns"),
            _alias("nd_tll", "arp_tha", prereq="nd_na"),
        )
    },
}
"""User-visible field names (OVS's, see ovs-fields(7)) and where their bits live."""

PREREQUISITES: dict[str, str] = {
    "ipv4": "dl_type=0x0800",
    "ipv6": "dl_type=0x86dd",
    "ip": "IPv4 or IPv6",
    "arp": "ARP or RARP",
    "tcp": "TCP",
    "udp": "UDP",
    "sctp": "SCTP",
    "l4": "TCP, UDP or SCTP",
    "icmp": "ICMP",
    "icmpv6": "ICMPv6",
    "nd": "ICMPv6 neighbour solicitation or advertisement",
    "nd_ns": "ICMPv6 neighbour solicitation",
    "nd_na": "ICMPv6 neighbour advertisement",
}
"""What each prerequisite name in :class:`FieldAlias` requires of a packet."""
