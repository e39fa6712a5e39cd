"""The packet an engine evaluates: L2 to L4 headers plus the skb metadata netfilter sees.

Field names follow Open vSwitch's flow vocabulary (``dl_src``, ``nw_src``, ``tp_dst``) because
that is the syntax users type packets in (``ofproto/trace`` style). Header fields that only the
kernel's log prints (IP ID, TCP sequence numbers, ICMP echo id) sit beside them so that a
simulated packet can be rendered exactly as the kernel would log it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_VLAN = 0x8100
ETH_TYPE_IPV6 = 0x86DD


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
