"""Print netfilter steps as the kernel's legacy TRACE lines, byte for byte.

The prefix is ``ip_tables.c: trace_packet`` (``TRACE: table:chain:kind:number ``) and the
packet dump is ``nf_log_syslog.c`` with the TRACE log flags (TCP sequence and options, IP
options, uid): every field followed by one space, so each line ends with a space, as the kernel
writes it. A real log line with its timestamp removed compares equal to the rendered one::

    TRACE: raw:PREROUTING:policy:2 IN=br0 OUT= PHYSIN=tap1 MAC=02:00:00:00:00:02:02:00:00:00:00:01:08:00 SRC=10.9.0.1 ...
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address

from nodetrace.model.packet import ETH_TYPE_IPV6, IPProto, Packet, TcpFlag, total_length
from nodetrace.model.trace import NetfilterStep, Step, Trace

# nf_log_syslog.c prints the flags from the highest bit down.
_TCP_FLAG_WORDS = tuple((flag, flag.name) for flag in sorted(TcpFlag, reverse=True))

# ICMP types whose header must be complete before the kernel dumps their body
# (nf_log_syslog.c: required_len).
_ICMP_REQUIRED = {0: 4, 3: 28, 4: 28, 5: 28, 8: 4, 11: 28, 12: 28, 13: 20, 14: 20, 17: 12, 18: 12}


def _mac_bytes(mac: str) -> list[int]:
    return [int(b, 16) for b in mac.split(":")]


def mac_field(p: Packet) -> str:
    """``MAC=dst:src:type`` (14 bytes of the Ethernet header, lower-case hex)."""
    octets = _mac_bytes(p.dl_dst) + _mac_bytes(p.dl_src) + [p.dl_type >> 8, p.dl_type & 0xFF]
    return "MAC=" + ":".join(f"{b:02x}" for b in octets) + " "


def _tcp(p: Packet, room: int | None) -> str:
    out = "PROTO=TCP "
    if p.ip_frag_offset:
        return out
    header = 20 + len(p.tcp_options)
    if room is not None and room < 20:
        return out + f"INCOMPLETE [{room} bytes] "
    out += f"SPT={p.tp_src or 0} DPT={p.tp_dst or 0} "
    out += f"SEQ={p.tcp_seq} ACK={p.tcp_ack} "
    out += f"WINDOW={p.tcp_window} "
    out += f"RES=0x{(p.tcp_reserved & 0x7) << 3:02x} "
    for bit, word in _TCP_FLAG_WORDS:
        if p.tcp_flags & bit:
            out += word + " "
    out += f"URGP={p.tcp_urgent} "
    if p.tcp_options:
        if room is not None and room < header:
            return out + "OPT (TRUNCATED)"
        out += "OPT (" + "".join(f"{b:02X}" for b in p.tcp_options) + ") "
    return out


def _udp(p: Packet, udp_len: int, room: int | None) -> str:
    out = "PROTO=UDP " if p.nw_proto == IPProto.UDP else "PROTO=UDPLITE "
    if p.ip_frag_offset:
        return out
    if room is not None and room < 8:
        return out + f"INCOMPLETE [{room} bytes] "
    return out + f"SPT={p.tp_src or 0} DPT={p.tp_dst or 0} LEN={udp_len} "


def _icmp(p: Packet, room: int, nested: bool) -> str:
    out = "PROTO=ICMP "
    if p.ip_frag_offset:
        return out
    if room < 8:
        return out + f"INCOMPLETE [{room} bytes] "
    t, code = p.icmp_type or 0, p.icmp_code or 0
    out += f"TYPE={t} CODE={code} "
    need = _ICMP_REQUIRED.get(t, 0)
    if need and room < need:
        return out + f"INCOMPLETE [{room} bytes] "
    if t in (0, 8):
        out += f"ID={p.icmp_id or 0} SEQ={p.icmp_seq or 0} "
    elif t == 12:
        out += f"PARAMETER={(p.icmp_id or 0) >> 8} "
    elif t in (3, 4, 5, 11):
        if t == 5:
            out += f"GATEWAY={p.icmp_gateway or IPv4Address(0)} "
        if not nested:
            inner = p.inner
            out += "["
            if inner is not None:
                out += _ipv4(inner, nested=True, room=room - 8)
            else:
                out += "TRUNCATED"
            out += "] "
        if t == 3 and code == 4:
            out += f"MTU={p.icmp_seq or 0} "
    return out


def _trailer(p: Packet, owner: tuple[int, int] | None) -> str:
    """What ends the outermost packet's dump: the sending socket's owner, then the skb mark."""
    out = f"UID={owner[0]} GID={owner[1]} " if owner is not None else ""
    if p.skb_mark:
        out += f"MARK=0x{p.skb_mark:x} "
    return out


def _ipv4(
    p: Packet,
    *,
    nested: bool = False,
    room: int | None = None,
    owner: tuple[int, int] | None = None,
) -> str:
    if room is not None and room < 20:
        return "TRUNCATED"
    total = total_length(p)
    tos = p.nw_tos
    out = f"SRC={p.nw_src} DST={p.nw_dst} "
    out += (
        f"LEN={total} TOS=0x{tos & 0x1E:02X} PREC=0x{tos & 0xE0:02X} TTL={p.nw_ttl} ID={p.ip_id} "
    )
    if p.ip_df:
        out += "DF "
    if p.ip_mf:
        out += "MF "
    if p.ip_frag_offset:
        out += f"FRAG:{p.ip_frag_offset} "
    if p.ip_options:
        out += "OPT (" + "".join(f"{b:02X}" for b in p.ip_options) + ") "
    ihl = 20 + len(p.ip_options)
    l4_room = None if room is None else room - ihl
    proto = p.nw_proto
    if proto == IPProto.TCP:
        body = _tcp(p, l4_room)
        out += body
        if body.endswith("bytes] ") or body.endswith("(TRUNCATED)"):
            return out
    elif proto in (IPProto.UDP, IPProto.UDPLITE):
        body = _udp(p, total - ihl, l4_room)
        out += body
        if body.endswith("bytes] "):
            return out
    elif proto == IPProto.ICMP:
        out += _icmp(p, (total - ihl) if l4_room is None else l4_room, nested)
    elif proto == IPProto.AH and not p.ip_frag_offset:
        out += "PROTO=AH "
    elif proto == IPProto.ESP:
        out += "PROTO=ESP "
    else:
        out += f"PROTO={proto} "
    if not nested:
        out += _trailer(p, owner)
    return out


# ICMPv6 errors whose quoted packet the kernel dumps in brackets (destination unreachable,
# packet too big, time exceeded, parameter problem).
_ICMP6_ERRORS = (1, 2, 3, 4)


def _icmp6(p: Packet, nested: bool) -> str:
    t = p.icmp_type or 0
    out = f"PROTO=ICMPv6 TYPE={t} CODE={p.icmp_code or 0} "
    if t in (128, 129):
        out += f"ID={p.icmp_id or 0} SEQ={p.icmp_seq or 0} "
    elif t in _ICMP6_ERRORS:
        rest = (p.icmp_id or 0) << 16 | (p.icmp_seq or 0)
        if t == 4:
            out += f"POINTER={rest:08x} "
        if not nested:
            # Only the outermost packet's error is opened (the kernel recurses once).
            inner = p.inner
            out += "[" + (_ipv6(inner, nested=True) if inner is not None else "TRUNCATED") + "] "
        if t == 2:
            out += f"MTU={rest} "
    return out


def _ipv6(p: Packet, *, nested: bool = False, owner: tuple[int, int] | None = None) -> str:
    assert isinstance(p.nw_src, IPv6Address) and isinstance(p.nw_dst, IPv6Address)
    # ``%pI6``: eight groups of four hex digits, nothing compressed.
    out = f"SRC={p.nw_src.exploded} DST={p.nw_dst.exploded} "
    out += f"LEN={total_length(p)} TC={p.nw_tos} HOPLIMIT={p.nw_ttl} FLOWLBL={p.ipv6_label} "
    proto = p.nw_proto
    if proto == IPProto.TCP:
        out += _tcp(p, None)
    elif proto in (IPProto.UDP, IPProto.UDPLITE):
        out += _udp(p, total_length(p) - 40, None)
    elif proto == IPProto.ICMPV6:
        out += _icmp6(p, nested)
    else:
        out += f"PROTO={proto} "
    if not nested:
        out += _trailer(p, owner)
    return out


def packet_dump(
    p: Packet,
    *,
    in_dev: str,
    out_dev: str,
    physin: str | None,
    physout: str | None,
    owner: tuple[int, int] | None = None,
) -> str:
    """The kernel log's packet fields for ``p`` seen with these devices (``nf_log_ip_packet``)."""
    out = f"IN={in_dev} OUT={out_dev} "
    if physin is not None and physin != in_dev:
        out += f"PHYSIN={physin} "
    if physout is not None and physout != out_dev:
        out += f"PHYSOUT={physout} "
    if in_dev:
        out += mac_field(p)
    if p.dl_type == ETH_TYPE_IPV6:
        return out + _ipv6(p, owner=owner)
    return out + _ipv4(p, owner=owner)


def trace_line(step: NetfilterStep, *, owner: tuple[int, int] | None = None) -> str:
    """One ``TRACE: table:chain:kind:number ...`` line (with the kernel's trailing space)."""
    if step.packet is None:
        raise ValueError("a step without its packet cannot be printed as a kernel line")
    prefix = f"TRACE: {step.table}:{step.chain}:{step.kind.value}:{step.number} "
    return prefix + packet_dump(
        step.packet,
        in_dev=step.in_dev,
        out_dev=step.out_dev,
        physin=step.physin,
        physout=step.physout,
        owner=owner,
    )


def render_kernel_trace(
    steps: Iterable[Step], *, only_traced: bool = True, owner: tuple[int, int] | None = None
) -> list[str]:
    """The lines the kernel logs for these steps: by default only those it would log (after a
    ``-j TRACE`` rule marked the packet). Steps other than netfilter ones are skipped.

    ``owner`` is the (uid, gid) of the local socket that sent the packet: the kernel prints
    ``UID= GID=`` (before ``MARK=``) whenever the skb holds a full socket, i.e. for a packet
    the node sends itself from a socket; ``None`` for forwarded and received packets.
    """
    return [
        trace_line(s, owner=owner)
        for s in steps
        if isinstance(s, NetfilterStep) and (s.traced or not only_traced)
    ]


def render_kernel_walk(trace: Trace) -> tuple[str, bool]:
    """The netfilter steps of a whole-node walk as the kernel logs them with TRACE on, and
    whether a ``-j TRACE`` rule marked the packet.

    Without such a rule the kernel logs nothing; then every step is printed, as if the packet
    had been marked for tracing where it entered netfilter.
    """
    steps = [s for s in trace.steps if isinstance(s, NetfilterStep) and s.packet is not None]
    marked = any(s.traced for s in steps)
    return "".join(line + "\n" for line in render_kernel_trace(steps, only_traced=marked)), marked
