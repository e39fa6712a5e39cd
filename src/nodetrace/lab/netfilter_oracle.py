"""Ask the real kernel what it does with packets crossing a bridge bed: the oracle the netfilter
engine is compared with.

:func:`observe` sends a batch of crafted frames through a :class:`~.bridge_bed.BridgeBed`
(ruleset already loaded), one after the other, and returns for each one the TRACE output the
kernel produced for it (legacy kernel log lines, or ``xtables-monitor --trace`` lines for
iptables-nft) and whether and how it arrived at the destination host. Lines are attributed to
packets by their IPv4 ID (unique within a batch): in the kernel log each line carries it; in
xtables-monitor output each ``PACKET:`` line does, for the ``TRACE:`` lines of its trace id.

A send may also involve the bed itself (:data:`BED`, when the bridge has an address): a frame
to it crosses PREROUTING and INPUT, and is *delivered* when a UDP socket listening in the bed
receives it, or (ICMP echo) when the bed's echo reply reaches the sender; a packet from it is
written by a raw socket in the bed (so it is socket-owned: ``UID=``/``GID=`` in the log) and
crosses OUTPUT and POSTROUTING.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nodetrace.lab.bridge_bed import BridgeBed
from nodetrace.lab.capture import KernelTraceLog, TraceMonitor
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import CommandError
from nodetrace.lab.send import Frame, Wire, frame_bytes, in_netns, ip_bytes, packet_from_frame
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import ETH_TYPE_IPV6, IPProto, Packet

BED = "@bed"
"""The bed's own stack as the source or destination of a :class:`Send`."""

_KERNEL_ID = re.compile(r" TTL=\d+ ID=(\d+) | HOPLIMIT=\d+ FLOWLBL=(\d+) ")
_XT_PACKET = re.compile(r"^PACKET: \d+ ([0-9a-f]{8}) .*? (?:ID=|FLOWLBL=)(\d+) ")
_XT_TRACE = re.compile(r"^ TRACE: \d+ ([0-9a-f]{8}) ")


@dataclass(frozen=True, slots=True)
class Send:
    """One frame to send: from host ``src`` to host ``dst`` of the bed (MACs are filled in);
    either may be :data:`BED`, the bed's own stack."""

    src: str
    dst: str
    packet: Packet


@dataclass(frozen=True, slots=True)
class Observation:
    send: Send
    packet: Packet
    """The packet as sent (with the hosts' MAC addresses)."""
    arrived: tuple[Frame, ...]
    """Frames with this packet's IP ID (IPv6: flow label) that reached the destination host."""
    lines: tuple[str, ...]
    """TRACE lines for this packet, in order (kernel log or xtables-monitor)."""
    trace_id: int | None = None
    """nft only: the trace id xtables-monitor gave the packet."""
    delivered: bool | None = None
    """To :data:`BED` only: whether the bed's stack took it (socket or echo reply)."""


def packet_key(packet: Packet) -> int:
    """What tells a batch's packets apart in TRACE output: the IPv4 ID, or the IPv6 flow label."""
    return packet.ipv6_label if packet.dl_type == ETH_TYPE_IPV6 else packet.ip_id


def _mac(bed: BridgeBed, name: str) -> str:
    return bed.bridge_mac if name == BED else bed.host(name).mac


def with_macs(bed: BridgeBed, send: Send) -> Packet:
    return replace(send.packet, dl_src=_mac(bed, send.src), dl_dst=_mac(bed, send.dst))


def local_payload(packet: Packet) -> bytes:
    """What a UDP datagram to the bed carries: its key, so the listening socket tells it apart."""
    return b"nodetrace" + packet_key(packet).to_bytes(4, "big")


class CaptureFailed(CommandError):
    """The TRACE capture itself failed (the monitor died): nothing to compare, not a verdict."""


def observe(
    res: Resources,
    bed: BridgeBed,
    sends: Sequence[Send],
    *,
    backend: Backend,
    workdir: Path,
    settle: float = 0.05,
    listen_udp: int | None = None,
) -> list[Observation]:
    """Send every frame of ``sends`` in order and report what the kernel did with each.

    IP IDs must be unique within the batch (they attribute log lines to packets). With
    ``listen_udp`` a UDP socket in the bed listens on that port for datagrams to the bed.
    """
    ids = [packet_key(s.packet) for s in sends]
    if len(set(ids)) != len(ids):
        raise ValueError("every packet of a batch needs its own ip_id (IPv6: flow label)")
    wires = {h.name: Wire.open(h) for h in bed.hosts}
    monitor = TraceMonitor(bed.netns, workdir, "xtables") if backend is Backend.NFT else None
    local: list[socket.socket] = []
    with in_netns(bed.netns):
        if any(s.src == BED for s in sends):
            local.append(socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW))
        if listen_udp is not None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            local.append(listener)
            listener.bind(("0.0.0.0", listen_udp))
            listener.setblocking(False)
    try:
        for w in wires.values():
            w.drain()
        if monitor is not None:
            monitor.start()
        with KernelTraceLog(res) as log:
            packets = []
            for send in sends:
                packet = with_macs(bed, send)
                payload = local_payload(packet) if send.dst == BED else b""
                if payload:  # the packet as sent, so its length is the one the kernel logs
                    packet = replace(packet, ip_len=len(ip_bytes(packet, payload=payload)))
                packets.append(packet)
                if send.src == BED:
                    # A drop in OUTPUT makes sendto fail with EPERM: the verdict, not an error.
                    with contextlib.suppress(PermissionError):
                        local[0].sendto(ip_bytes(packet), (str(packet.nw_dst), 0))
                else:
                    wires[send.src].send(frame_bytes(packet, payload=payload))
                if monitor is not None:
                    monitor.keep_up()
            time.sleep(settle)
            kernel_lines = log.lines(devices=bed.devices) if backend is Backend.LEGACY else []
        monitor_lines = monitor.stop(settle=settle) if monitor is not None else []
        if monitor is not None and monitor.exited_early is not None:
            raise CaptureFailed(
                f"xtables-monitor stopped early (status {monitor.exited_early}): "
                f"{monitor_lines[-1] if monitor_lines else 'no output'}"
            )
        received: dict[str, list[Frame]] = {name: w.receive(timeout=0) for name, w in wires.items()}
        datagrams = _datagrams(local[-1]) if listen_udp is not None else set()
    finally:
        if monitor is not None:
            monitor.stop(settle=0)
        for w in wires.values():
            w.close()
        for sock in local:
            sock.close()
    observations = []
    for send, packet in zip(sends, packets, strict=True):
        frames = [] if send.dst == BED else received[send.dst]
        obs = _attribute(send, packet, frames, kernel_lines, monitor_lines, backend)
        if send.dst == BED:
            obs = replace(obs, delivered=_delivered(packet, datagrams, received[send.src]))
        observations.append(obs)
    return observations


def _datagrams(sock: socket.socket) -> set[bytes]:
    got: set[bytes] = set()
    while True:
        try:
            got.add(sock.recv(65535))
        except BlockingIOError:
            return got


def _delivered(packet: Packet, datagrams: set[bytes], back: list[Frame]) -> bool | None:
    """Whether the bed's stack took ``packet``: its datagram reached the socket, or its echo
    request was answered. ``None`` for packets whose delivery leaves no trace."""
    if packet.nw_proto == IPProto.UDP:
        return local_payload(packet) in datagrams
    if packet.nw_proto == IPProto.ICMP and packet.icmp_type == 8:
        for frame in back:
            reply = packet_from_frame(frame.data)
            if (
                reply is not None
                and reply.nw_proto == IPProto.ICMP
                and reply.icmp_type == 0
                and (reply.icmp_id, reply.icmp_seq) == (packet.icmp_id, packet.icmp_seq)
                and reply.nw_dst == packet.nw_src
            ):
                return True
        return False
    return None


def _attribute(
    send: Send,
    packet: Packet,
    frames: list[Frame],
    kernel_lines: list[str],
    monitor_lines: list[str],
    backend: Backend,
) -> Observation:
    key = packet_key(packet)
    arrived = tuple(f for f in frames if f.key == key)
    if backend is Backend.LEGACY:
        lines = tuple(
            line
            for line in kernel_lines
            if (m := _KERNEL_ID.search(line)) is not None and int(m.group(1) or m.group(2)) == key
        )
        return Observation(send, packet, arrived, lines)
    # A TRACE line belongs to the packet its trace id was last announced for by a PACKET line:
    # ids are per skb and may repeat for the next packet of the same flow, and the lines of
    # two packets interleave when one makes another inside a hook (REJECT's ICMP error is
    # traced through OUTPUT before the rule that sent it reports its DROP).
    trace_id: int | None = None
    mine: list[str] = []
    owner: dict[str, int] = {}
    for line in monitor_lines:
        m = _XT_PACKET.match(line)
        if m:
            owner[m.group(1)] = int(m.group(2))
            if owner[m.group(1)] == key:
                mine.append(line)
                if trace_id is None:
                    trace_id = int(m.group(1), 16)
            continue
        t = _XT_TRACE.match(line)
        if t and owner.get(t.group(1)) == key:
            mine.append(line)
    lines = tuple(mine)
    return Observation(send, packet, arrived, lines, trace_id)
