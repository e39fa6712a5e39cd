"""What the router lab tests share: hosts to send from, ICMP probes, one frame sent and seen."""

from __future__ import annotations

import re
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address

from nodetrace.lab.node import netlink
from nodetrace.lab.send import (
    ETH_P_ALL,
    PACKET_OUTGOING,
    Wire,
    frame_bytes,
    in_netns,
    packet_from_frame,
)
from nodetrace.model.packet import ETH_TYPE_IPV4, IPProto, Packet


@dataclass(frozen=True)
class Host:
    """A device to send from or listen on: ``ifname`` in namespace ``netns``."""

    netns: str
    ifname: str = "eth0"


def icmp(src_mac: str, dst_mac: str, src: str, dst: str) -> Packet:
    """An echo request whose IP ID (and ICMP id) tells it apart from every other packet."""
    ident = int(time.monotonic_ns() % 60000) + 1
    return Packet(
        dl_src=src_mac, dl_dst=dst_mac, dl_type=ETH_TYPE_IPV4, nw_src=ip_address(src),
        nw_dst=ip_address(dst), nw_proto=IPProto.ICMP, nw_ttl=64, icmp_type=8, icmp_code=0,
        icmp_id=ident, icmp_seq=1, ip_id=ident,
    )  # fmt: skip


def send(
    sender: Host, receiver: Host, packet: Packet, arrived: Callable[[Packet], bool]
) -> list[Packet]:
    """Send ``packet`` from ``sender``; the IP packets reaching ``receiver`` that ``arrived``
    accepts."""
    with Wire.open(sender) as tx, Wire.open(receiver) as rx:
        rx.drain()
        tx.send(frame_bytes(packet))
        seen: list[Packet] = []
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and not seen:
            for frame in rx.receive(timeout=0.2):
                p = packet_from_frame(frame.data)
                if p is not None and arrived(p):
                    seen.append(p)
    return seen


def save_tables(save_text: str) -> dict[str, list[str]]:
    """Each table's lines of an ``iptables-save`` without counters (the kernel lists tables in
    load order)."""
    tables: dict[str, list[str]] = {}
    current: list[str] = []
    for line in save_text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif line and not line.startswith("#"):
            current.append(line.split(" [", 1)[0] if line.startswith(":") else line)
    return tables


def flow_lines(text: str) -> list[str]:
    """The flow lines of an ``ovs-ofctl dump-flows`` without counters, sorted."""
    return sorted(
        re.sub(r" (duration|n_packets|n_bytes|idle_age)=[^,]*,", "", line)
        for line in text.splitlines()
        if "cookie=" in line
    )


def mac_of(netns: str, ifname: str) -> str:
    with netlink(netns) as nl:
        return str(nl.get_links(nl.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS"))


SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
_AUXDATA = struct.Struct("=IIIHHHH")
"""``struct tpacket_auxdata``: status, len, snaplen, mac, net, vlan_tci, vlan_tpid."""


class TaggedListener:
    """A packet socket on one device that also reports each frame's 802.1Q tag, which the
    kernel strips into the frame's metadata before packet sockets see it (``PACKET_AUXDATA``).
    Frames this device sends are left out."""

    def __init__(self, host: Host) -> None:
        self.host = host

    def __enter__(self) -> TaggedListener:
        with in_netns(self.host.netns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        self.sock.bind((self.host.ifname, 0))
        self.sock.setblocking(False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def drain(self) -> None:
        self.receive(timeout=0)

    def receive(self, *, timeout: float) -> list[tuple[bytes, int | None]]:
        """(frame, VLAN id or ``None``) for each frame that came in, waiting up to ``timeout``
        for the first."""
        out: list[tuple[bytes, int | None]] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                data, ancillary, _, addr = self.sock.recvmsg(65535, 64)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                select.select([self.sock], [], [], left)
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            vlan = None
            for level, kind, raw in ancillary:
                if (level, kind) == (SOL_PACKET, PACKET_AUXDATA) and len(raw) >= _AUXDATA.size:
                    status, *_, tci, _tpid = _AUXDATA.unpack_from(raw)
                    if status & TP_STATUS_VLAN_VALID:
                        vlan = tci & 0xFFF
            out.append((data, vlan))
