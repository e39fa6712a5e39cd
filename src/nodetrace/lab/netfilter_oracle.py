"""Ask the real kernel what it does with packets crossing a bridge bed: the oracle the netfilter
engine is compared with.

:func:`observe` sends a batch of crafted frames through a :class:`~.bridge_bed.BridgeBed`
(ruleset already loaded), one after the other, and returns for each one the TRACE output the
kernel produced for it (legacy kernel log lines, or ``xtables-monitor --trace`` lines for
iptables-nft) and whether and how it arrived at the destination host. Lines are attributed to
packets by their IPv4 ID (unique within a batch): in the kernel log each line carries it; in
xtables-monitor output each ``PACKET:`` line does, for the ``TRACE:`` lines that follow it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from nodetrace.lab.bridge_bed import BridgeBed
from nodetrace.lab.capture import KernelTraceLog, TraceMonitor
from nodetrace.lab.resources import Resources
from nodetrace.lab.send import Frame, Wire, frame_bytes
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import ETH_TYPE_IPV6, Packet

_KERNEL_ID = re.compile(r" TTL=\d+ ID=(\d+) | HOPLIMIT=\d+ FLOWLBL=(\d+) ")
_XT_PACKET = re.compile(r"^PACKET: \d+ ([0-9a-f]{8}) .*? (?:ID=|FLOWLBL=)(\d+) ")
_XT_TRACE = re.compile(r"^ TRACE: \d+ ([0-9a-f]{8}) ")


@dataclass(frozen=True, slots=True)
class Send:
    """One frame to send: from host ``src`` to host ``dst`` of the bed (MACs are filled in)."""

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


def packet_key(packet: Packet) -> int:
    """What tells a batch's packets apart in TRACE output: the IPv4 ID, or the IPv6 flow label."""
    return packet.ipv6_label if packet.dl_type == ETH_TYPE_IPV6 else packet.ip_id


def with_macs(bed: BridgeBed, send: Send) -> Packet:
    return replace(send.packet, dl_src=bed.host(send.src).mac, dl_dst=bed.host(send.dst).mac)


def observe(
    res: Resources,
    bed: BridgeBed,
    sends: Sequence[Send],
    *,
    backend: Backend,
    workdir: Path,
    settle: float = 0.05,
) -> list[Observation]:
    """Send every frame of ``sends`` in order and report what the kernel did with each.

    IP IDs must be unique within the batch (they attribute log lines to packets).
    """
    ids = [packet_key(s.packet) for s in sends]
    if len(set(ids)) != len(ids):
        raise ValueError("every packet of a batch needs its own ip_id (IPv6: flow label)")
    wires = {h.name: Wire.open(h) for h in bed.hosts}
    monitor = TraceMonitor(bed.netns, workdir, "xtables") if backend is Backend.NFT else None
    try:
        for w in wires.values():
            w.drain()
        if monitor is not None:
            monitor.start()
        with KernelTraceLog(res) as log:
            packets = []
            for send in sends:
                packet = with_macs(bed, send)
                packets.append(packet)
                wires[send.src].send(frame_bytes(packet))
            time.sleep(settle)
            kernel_lines = log.lines(devices=bed.devices) if backend is Backend.LEGACY else []
        monitor_lines = monitor.stop(settle=settle) if monitor is not None else []
        received: dict[str, list[Frame]] = {name: w.receive(timeout=0) for name, w in wires.items()}
    finally:
        if monitor is not None:
            monitor.stop(settle=0)
        for w in wires.values():
            w.close()
    return [
        _attribute(send, packet, received[send.dst], kernel_lines, monitor_lines, backend)
        for send, packet in zip(sends, packets, strict=True)
    ]


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
    # Trace ids are per skb and may repeat for the next packet of the same flow, so lines are
    # attributed in order: each PACKET line names the IP ID the TRACE lines after it belong to.
    trace_id: int | None = None
    mine: list[str] = []
    current: int | None = None
    for line in monitor_lines:
        m = _XT_PACKET.match(line)
        if m:
            current = int(m.group(2))
            if current == key and trace_id is None:
                trace_id = int(m.group(1), 16)
        if current == key and (m or _XT_TRACE.match(line)):
            mine.append(line)
    lines = tuple(mine)
    return Observation(send, packet, arrived, lines, trace_id)
