"""Send crafted frames from a lab namespace and see what arrives elsewhere, without subprocesses.

A packet socket belongs to the namespace it was created in, so :func:`in_netns` switches the
calling thread into a namespace just long enough to open sockets there. A :class:`Wire` is one
such raw socket on one interface: it sends frames built by :func:`frame_bytes` (with scapy, from
a nodetrace :class:`~nodetrace.model.packet.Packet`) and reports frames that came in, so a test
can tell "arrived" from "dropped" for each packet::

    a, b = Wire.open(bed.host("a")), Wire.open(bed.host("b"))
    a.send(frame_bytes(packet))
    got = b.receive(timeout=0.2)          # frames that reached host b
    arrived = any(match_ip_id(f, packet.ip_id) for f in got)

Real connections (kernel sockets in two namespaces) come from :func:`tcp_connect` and
:func:`udp_exchange`, for conntrack states that must come from the kernel's own TCP/UDP.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from nodetrace.lab.run import Closing, CommandError
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, IPProto, Packet

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

_libc = ctypes.CDLL(None, use_errno=True)


class _HasNetns(Protocol):
    @property
    def netns(self) -> str: ...

    @property
    def ifname(self) -> str: ...


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise CommandError(f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread in network namespace ``name``, then switch back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    except OSError as err:
        os.close(home)
        raise CommandError(f"namespace {name}: {err.strerror}") from None
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def frame_bytes(packet: Packet, *, payload: bytes = b"") -> bytes:
    """The Ethernet frame for ``packet``, with correct checksums, as the wire would carry it.

    Header fields the kernel log shows (IP ID, flags, TTL, TOS, options, TCP sequence numbers,
    window and options, ICMP id and sequence) are always taken from the packet. ``ip_len`` pads
    the payload with zeros to reach that length. An ICMP error carries ``packet.inner``: its IP
    header plus its whole TCP header, or the first 8 bytes of anything else.
    """
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    eth = Ether(src=packet.dl_src, dst=packet.dl_dst, type=packet.dl_type)
    if packet.dl_type not in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        return bytes(eth / Raw(payload or b"\0" * 46))
    return bytes(eth) + ip_bytes(packet, payload=payload)


def ip_bytes(packet: Packet, *, payload: bytes = b"") -> bytes:
    """The IP datagram of ``packet`` (from the IP header on)."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.sctp import SCTP
    from scapy.packet import Raw

    proto = packet.nw_proto
    l3: Any
    if packet.dl_type == ETH_TYPE_IPV4:
        flags = (2 if packet.ip_df else 0) | (1 if packet.ip_mf else 0)
        l3 = IP(
            src=str(packet.nw_src),
            dst=str(packet.nw_dst),
            proto=proto,
            tos=packet.nw_tos,
            ttl=packet.nw_ttl,
            id=packet.ip_id,
            flags=flags,
            frag=packet.ip_frag_offset,
        )
        if packet.ip_options:
            raise ValueError("IP options are not supported by frame_bytes")
    else:
        l3 = IPv6(
            src=str(packet.nw_src),
            dst=str(packet.nw_dst),
            nh=proto,
            tc=packet.nw_tos,
            hlim=packet.nw_ttl,
            fl=packet.ipv6_label,
        )
    l4: Any
    if proto == IPProto.TCP:
        l4 = TCP(
            sport=packet.tp_src or 0,
            dport=packet.tp_dst or 0,
            flags=packet.tcp_flags,
            seq=packet.tcp_seq,
            ack=packet.tcp_ack,
            window=packet.tcp_window,
            urgptr=packet.tcp_urgent,
            reserved=packet.tcp_reserved,
        )
        if packet.tcp_options:
            if len(packet.tcp_options) % 4:
                raise ValueError("TCP options must fill whole 32-bit words (pad with NOPs)")
            l4.dataofs = 5 + len(packet.tcp_options) // 4
            l4 = l4 / Raw(packet.tcp_options)
    elif proto in (IPProto.UDP, IPProto.UDPLITE):
        l4 = UDP(sport=packet.tp_src or 0, dport=packet.tp_dst or 0)
    elif proto == IPProto.SCTP:
        l4 = SCTP(sport=packet.tp_src or 0, dport=packet.tp_dst or 0)
    elif proto in (IPProto.ICMP, IPProto.ICMPV6):
        # Built by hand: scapy's ICMP classes add or rename fields per type (timestamps,
        # next-hop MTU, pointer), and the kernel log prints the raw header word.
        if packet.icmp_type == 5 and packet.icmp_gateway is not None:
            rest = packet.icmp_gateway.packed
        else:
            rest = ((packet.icmp_id or 0) << 16 | (packet.icmp_seq or 0)).to_bytes(4, "big")
        header = bytes([packet.icmp_type or 0, packet.icmp_code or 0, 0, 0]) + rest
        l4 = Raw(header)
    else:
        l4 = Raw(b"")
    body = payload
    if packet.inner is not None:
        inner = ip_bytes(packet.inner)
        ihl = (inner[0] & 0x0F) * 4 if packet.dl_type == ETH_TYPE_IPV4 else 40
        quoted = 20 + len(packet.inner.tcp_options) if packet.inner.nw_proto == IPProto.TCP else 8
        body = inner[: ihl + quoted] + payload
    pkt = l3 / l4
    if body:
        pkt = pkt / Raw(body)
    data = bytes(pkt)
    if packet.ip_len is not None and packet.ip_len > len(data):
        pkt = pkt / Raw(b"\0" * (packet.ip_len - len(data)))
        data = bytes(pkt)
    if proto in (IPProto.ICMP, IPProto.ICMPV6):
        data = _with_icmp_checksum(data, packet.dl_type == ETH_TYPE_IPV4)
    return data


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _with_icmp_checksum(ip: bytes, v4: bool) -> bytes:
    start = (ip[0] & 0x0F) * 4 if v4 else 40
    body = bytearray(ip[start:])
    body[2:4] = b"\0\0"
    if v4:
        summed = bytes(body)
    else:  # ICMPv6 sums a pseudo-header: addresses, length, next header 58
        pseudo = ip[8:40] + len(body).to_bytes(4, "big") + b"\0\0\0\x3a"
        summed = pseudo + bytes(body)
    body[2:4] = _checksum(summed).to_bytes(2, "big")
    return ip[:start] + bytes(body)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame seen on a wire, with the IPv4 ID read out when it is an IPv4 frame."""

    data: bytes

    @property
    def ip_id(self) -> int | None:
        if len(self.data) >= 20 and self.data[12:14] == b"\x08\x00":
            return int.from_bytes(self.data[18:20], "big")
        return None

    @property
    def key(self) -> int | None:
        """The IPv4 ID, or for IPv6 the flow label: what tells test packets apart."""
        if len(self.data) >= 18 and self.data[12:14] == b"\x86\xdd":
            return int.from_bytes(self.data[14:18], "big") & 0xFFFFF
        return self.ip_id


class Wire(Closing):
    """A raw packet socket on one interface of one namespace (a host's ``eth0``)."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        self.sock = sock
        self.where = where

    @classmethod
    def open(cls, host: _HasNetns) -> Wire:
        with in_netns(host.netns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.bind((host.ifname, 0))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return cls(sock, f"{host.netns}/{host.ifname}")

    def close(self) -> None:
        self.sock.close()

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def drain(self) -> None:
        """Forget frames received so far."""
        self.receive(timeout=0)

    def receive(self, *, timeout: float = 0.0) -> list[Frame]:
        """Frames that came in (not those sent from here), waiting up to ``timeout`` for one."""
        out: list[Frame] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                select.select([self.sock], [], [], left)
                continue
            if addr[2] != PACKET_OUTGOING:
                out.append(Frame(data))


def tcp_connect(
    client: _HasNetns,
    server: _HasNetns,
    server_ip: str,
    port: int,
    *,
    message: bytes = b"ping",
    timeout: float = 2.0,
) -> bool:
    """Open a real TCP connection from ``client`` to a listener in ``server`` and exchange data.

    Both ends are kernel sockets in their namespaces (the hosts need addresses), so the bridge's
    conntrack sees a genuine handshake: NEW, then ESTABLISHED in both directions. Returns True
    when the server received ``message`` (False when the firewall blocked the connection).
    """
    family = socket.AF_INET6 if ":" in server_ip else socket.AF_INET
    with in_netns(server.netns):
        listener = socket.socket(family, socket.SOCK_STREAM)
    with in_netns(client.netns):
        conn = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((server_ip, port))
        listener.listen(1)
        listener.settimeout(timeout)
        conn.settimeout(timeout)
        try:
            conn.connect((server_ip, port))
            peer, _ = listener.accept()
        except OSError:
            return False
        with peer:
            peer.settimeout(timeout)
            conn.sendall(message)
            try:
                got = peer.recv(len(message))
            except OSError:
                return False
            return got == message
    finally:
        conn.close()
        listener.close()


def udp_exchange(
    client: _HasNetns,
    server: _HasNetns,
    server_ip: str,
    port: int,
    *,
    timeout: float = 1.0,
) -> bool:
    """Send one UDP datagram from ``client`` to ``server`` and have the server answer it.

    Returns True when the answer came back (conntrack then holds an ESTABLISHED entry).
    """
    family = socket.AF_INET6 if ":" in server_ip else socket.AF_INET
    with in_netns(server.netns):
        srv = socket.socket(family, socket.SOCK_DGRAM)
    with in_netns(client.netns):
        cli = socket.socket(family, socket.SOCK_DGRAM)
    try:
        srv.bind((server_ip, port))
        srv.settimeout(timeout)
        cli.settimeout(timeout)
        cli.sendto(b"q", (server_ip, port))
        try:
            data, addr = srv.recvfrom(64)
            srv.sendto(b"a", addr)
            cli.recvfrom(64)
        except OSError:
            return False
        return data == b"q"
    finally:
        cli.close()
        srv.close()


class Sniffer(Closing):
    """Every frame entering any interface of one namespace, in arrival order.

    Bound to all interfaces at once, so frames on different bridge ports keep their relative
    order (two sockets could not tell which came first). Frames the namespace sends out are
    skipped: on a bridge each frame is seen once, on the port it came in by.
    """

    def __init__(self, netns: str) -> None:
        with in_netns(netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setblocking(False)
        self.netns = netns

    def close(self) -> None:
        self.sock.close()

    def frames(self) -> list[tuple[str, Frame]]:
        """(interface name, frame) for each frame that came in since the last call."""
        out: list[tuple[str, Frame]] = []
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return out
            if addr[2] != PACKET_OUTGOING:
                out.append((addr[0], Frame(data)))


def packet_from_frame(data: bytes) -> Packet | None:
    """The nodetrace Packet of an Ethernet frame carrying IPv4 (``None`` for anything else).

    Read by hand (a dozen fixed offsets) so that every field the kernel log prints comes back
    exactly: IP ID and flags, TCP sequence numbers, window, options and reserved bits, ICMP id
    and sequence, and the packet an ICMP error quotes.
    """
    if len(data) < 34 or data[12:14] != b"\x08\x00":
        return None
    dst = ":".join(f"{b:02x}" for b in data[0:6])
    src = ":".join(f"{b:02x}" for b in data[6:12])
    packet = _ipv4_from_bytes(data[14:])
    if packet is None:
        return None
    from dataclasses import replace

    return replace(packet, dl_src=src, dl_dst=dst)


def _ipv4_from_bytes(ip: bytes, *, quoted: bool = False) -> Packet | None:
    from ipaddress import IPv4Address

    if len(ip) < 20 or ip[0] >> 4 != 4:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = int.from_bytes(ip[2:4], "big")
    frag = int.from_bytes(ip[6:8], "big")
    proto = ip[9]
    fields: dict[str, Any] = {
        "nw_src": IPv4Address(ip[12:16]),
        "nw_dst": IPv4Address(ip[16:20]),
        "nw_proto": proto,
        "nw_tos": ip[1],
        "nw_ttl": ip[8],
        "ip_id": int.from_bytes(ip[4:6], "big"),
        "ip_df": bool(frag & 0x4000),
        "ip_mf": bool(frag & 0x2000),
        "ip_frag_offset": frag & 0x1FFF,
        "ip_len": total,
        "ip_options": bytes(ip[20:ihl]),
    }
    l4 = ip[ihl:]
    if frag & 0x1FFF:
        pass
    elif proto == IPProto.TCP and len(l4) >= 20:
        doff = (l4[12] >> 4) * 4
        fields.update(
            tp_src=int.from_bytes(l4[0:2], "big"),
            tp_dst=int.from_bytes(l4[2:4], "big"),
            tcp_seq=int.from_bytes(l4[4:8], "big"),
            tcp_ack=int.from_bytes(l4[8:12], "big"),
            tcp_flags=l4[13] | ((l4[12] & 0x01) << 8),
            tcp_reserved=(l4[12] >> 1) & 0x07,
            tcp_window=int.from_bytes(l4[14:16], "big"),
            tcp_urgent=int.from_bytes(l4[18:20], "big"),
            tcp_options=bytes(l4[20:doff]),
        )
    elif proto in (IPProto.UDP, IPProto.UDPLITE, IPProto.SCTP) and len(l4) >= 4:
        fields.update(tp_src=int.from_bytes(l4[0:2], "big"), tp_dst=int.from_bytes(l4[2:4], "big"))
    elif proto == IPProto.ICMP and len(l4) >= 8:
        fields.update(
            icmp_type=l4[0],
            icmp_code=l4[1],
            icmp_id=int.from_bytes(l4[4:6], "big"),
            icmp_seq=int.from_bytes(l4[6:8], "big"),
        )
        if l4[0] == 5:
            fields["icmp_gateway"] = IPv4Address(l4[4:8])
        if l4[0] in (3, 4, 5, 11, 12) and not quoted:
            fields["inner"] = _ipv4_from_bytes(l4[8:], quoted=True)
    return Packet(**fields)
