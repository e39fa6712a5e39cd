"""The packet an engine evaluates: L2 to L4 headers plus the skb metadata netfilter sees.

Field names follow Open vSwitch's flow vocabulary (``dl_src``, ``nw_src``, ``tp_dst``) because
that is the syntax users type packets in (``ofproto/trace`` style). Header fields that only the
kernel's log prints (IP ID, TCP sequence numbers, ICMP echo id) sit beside them so that a
simulated packet can be rendered exactly as the kernel would log it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_VLAN = 0x8100
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_RARP = 0x8035


class IPProto(IntEnum):
    ICMP = 1
    IGMP = 2
    TCP = 6
    UDP = 17
    GRE = 47
    ESP = 50
    AH = 51
    ICMPV6 = 58
    SCTP = 132
    UDPLITE = 136


PROTOCOL_SHORTHANDS: dict[str, tuple[int, int | None]] = {
    "ip": (ETH_TYPE_IPV4, None),
    "ipv6": (ETH_TYPE_IPV6, None),
    "icmp": (ETH_TYPE_IPV4, IPProto.ICMP),
    "icmp6": (ETH_TYPE_IPV6, IPProto.ICMPV6),
    "tcp": (ETH_TYPE_IPV4, IPProto.TCP),
    "tcp6": (ETH_TYPE_IPV6, IPProto.TCP),
    "udp": (ETH_TYPE_IPV4, IPProto.UDP),
    "udp6": (ETH_TYPE_IPV6, IPProto.UDP),
    "sctp": (ETH_TYPE_IPV4, IPProto.SCTP),
    "sctp6": (ETH_TYPE_IPV6, IPProto.SCTP),
    "arp": (ETH_TYPE_ARP, None),
    "rarp": (0x8035, None),
    "mpls": (0x8847, None),
    "mplsm": (0x8848, None),
}
"""OVS's protocol keywords (ovs-fields(7)): each stands for a ``dl_type`` and maybe a ``nw_proto``."""


class TcpFlag(IntEnum):
    """TCP flag bits as on the wire (and as OVS's ``tcp_flags`` field numbers them)."""

    FIN = 0x001
    SYN = 0x002
    RST = 0x004
    PSH = 0x008
    ACK = 0x010
    URG = 0x020
    ECE = 0x040
    CWR = 0x080
    AE = 0x100


_MAC = re.compile(r"[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}")


def canonical_mac(text: str) -> str:
    """A MAC address the way the model keeps it (``02:0a:...``: lower case, two digits a byte).

    Tools print it unpadded or in upper case (``2:A:...``); anything else raises ValueError.
    """
    if not _MAC.fullmatch(text):
        raise ValueError(f"not a MAC address: {text!r}")
    return ":".join(f"{int(b, 16):02x}" for b in text.split(":"))


class Family(StrEnum):
    """The netfilter protocol family a packet or ruleset belongs to."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @property
    def nfproto(self) -> int:
        """The numeric NFPROTO value, as ``xtables-monitor`` prints it."""
        return 2 if self is Family.IPV4 else 10


@dataclass(frozen=True, slots=True)
class Packet:
    """One frame with its headers; unset fields are ``None`` and renderers omit them."""

    dl_src: str = "00:00:00:00:00:00"
    dl_dst: str = "00:00:00:00:00:00"
    dl_type: int = ETH_TYPE_IPV4
    dl_vlan: int | None = None
    dl_vlan_pcp: int = 0

    nw_src: IPAddress | None = None
    nw_dst: IPAddress | None = None
    nw_proto: int = 0
    nw_tos: int = 0
    """The whole IPv4 TOS byte / IPv6 traffic class (DSCP << 2 | ECN)."""
    nw_ttl: int = 64
    ip_id: int = 0
    ip_df: bool = False
    ip_mf: bool = False
    ip_frag_offset: int = 0
    ip_len: int | None = None
    """IPv4 total length / IPv6 payload length + 40; ``None`` means derived from headers."""
    ipv6_label: int = 0

    tp_src: int | None = None
    tp_dst: int | None = None
    tcp_flags: int = 0
    tcp_seq: int = 0
    tcp_ack: int = 0
    tcp_window: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    icmp_seq: int | None = None
    icmp_gateway: IPv4Address | None = None
    """The gateway of an ICMP redirect. For other types the header's second word is
    ``icmp_id`` (high half) and ``icmp_seq`` (low half): a parameter problem's pointer is the
    top byte of ``icmp_id``, a frag-needed MTU is ``icmp_seq``."""
    inner: Packet | None = None
    """The packet an ICMP error quotes (its headers only), when known."""
    ip_options: bytes = b""
    """IPv4 options after the 20-byte header, as on the wire."""
    tcp_options: bytes = b""
    """TCP options after the 20-byte header, as on the wire (MSS, SACK, timestamps...)."""
    tcp_urgent: int = 0
    tcp_reserved: int = 0
    """The TCP header's 3 reserved bits (what the kernel log prints as ``RES=``)."""

    arp_op: int | None = None
    arp_spa: IPv4Address | None = None
    arp_tpa: IPv4Address | None = None
    arp_sha: str | None = None
    arp_tha: str | None = None
    nd_target: IPv6Address | None = None

    skb_mark: int = 0

    @property
    def family(self) -> Family | None:
        if self.dl_type == ETH_TYPE_IPV4:
            return Family.IPV4
        if self.dl_type == ETH_TYPE_IPV6:
            return Family.IPV6
        return None

    @property
    def is_ip(self) -> bool:
        return self.dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6)

    def flow_text(self, **metadata: str | int) -> str:
        """The packet in OVS flow syntax, as ``ofproto/trace`` takes it (and
        :func:`nodetrace.parsers.flow_syntax.parse_flow` reads it back), ``metadata`` such as
        ``in_port=3`` after the protocol keyword. Every field OVS would refuse is left out: it
        checks each field's prerequisites, so UDP and SCTP ports and ICMPv6 types go by their
        own names (its ``tp_src`` and ``icmp_type`` are TCP's and ICMPv4's)."""
        proto = _KEYWORDS.get((self.dl_type, self.nw_proto if self.is_ip else None))
        proto = proto or _KEYWORDS.get((self.dl_type, None), "eth")
        parts = [proto, *(f"{k}={v}" for k, v in metadata.items())]
        parts += [f"dl_src={self.dl_src}", f"dl_dst={self.dl_dst}"]
        if self.dl_vlan is not None:
            parts.append(f"dl_vlan={self.dl_vlan}")
        if self.dl_type == ETH_TYPE_ARP:
            parts += [f"arp_op={self.arp_op or 1}", f"arp_spa={self.arp_spa}",
                      f"arp_tpa={self.arp_tpa}", f"arp_sha={self.arp_sha or self.dl_src}",
                      f"arp_tha={self.arp_tha or '00:00:00:00:00:00'}"]  # fmt: skip
        if not self.is_ip:
            return ",".join(parts)
        src, dst = (
            ("ipv6_src", "ipv6_dst") if self.dl_type == ETH_TYPE_IPV6 else ("nw_src", "nw_dst")
        )
        parts += [f"{src}={self.nw_src}", f"{dst}={self.nw_dst}", f"nw_ttl={self.nw_ttl}"]
        if proto in ("ip", "ipv6"):
            parts.append(f"nw_proto={self.nw_proto}")
        l4 = _PORT_NAMES.get(self.nw_proto)
        if l4 is not None:
            parts += [f"{l4}_src={self.tp_src or 0}", f"{l4}_dst={self.tp_dst or 0}"]
        if self.nw_proto == IPProto.TCP:
            parts.append(f"tcp_flags={self.tcp_flags:#x}")
        if self.nw_proto in (IPProto.ICMP, IPProto.ICMPV6):
            icmp = "icmpv6" if self.nw_proto == IPProto.ICMPV6 else "icmp"
            parts += [f"{icmp}_type={self.icmp_type or 0}", f"{icmp}_code={self.icmp_code or 0}"]
        return ",".join(parts)


_KEYWORDS = {
    (dl_type, proto): name for name, (dl_type, proto) in reversed(PROTOCOL_SHORTHANDS.items())
}
"""The protocol keyword a packet's Ethernet type and IP protocol are written by (``tcp6``)."""

_PORT_NAMES = {int(IPProto.TCP): "tcp", int(IPProto.UDP): "udp", int(IPProto.SCTP): "sctp"}
"""The names OVS's packet parser takes ports by: its ``tp_src``/``tp_dst`` are TCP's only."""


def total_length(p: Packet) -> int:
    """The IPv4 total length (IPv6: payload length + 40) of ``p``: ``ip_len`` when given, else
    the length of its headers alone (an ICMP error carries its quoted packet's headers)."""
    if p.ip_len is not None:
        return p.ip_len
    v4 = p.dl_type == ETH_TYPE_IPV4
    base = 20 + len(p.ip_options) if v4 else 40
    if p.nw_proto == IPProto.TCP:
        return base + 20 + len(p.tcp_options)
    if p.nw_proto in (IPProto.UDP, IPProto.UDPLITE, IPProto.ICMP, IPProto.ICMPV6):
        inner = 0
        if p.inner is not None:
            head = 20 + len(p.inner.ip_options) if v4 else 40
            inner = head + (20 + len(p.inner.tcp_options) if p.inner.nw_proto == IPProto.TCP else 8)
        return base + 8 + inner
    if p.nw_proto == IPProto.SCTP:
        return base + 12
    return base
