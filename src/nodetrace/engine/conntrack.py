"""A model of the kernel's connection tracker: which connection a packet belongs to, and its state.

The tracker decides what ``-m state``/``-m conntrack`` see (NEW, ESTABLISHED, RELATED, INVALID,
UNTRACKED, plus status bits and the connection mark) and whether nat chains run (only for a
connection's first packet). It follows ``nf_conntrack_core.c`` and the protocol trackers:

* a connection is keyed by zone and tuple; a packet matching the reply tuple is in the REPLY
  direction and sets SEEN_REPLY;
* a new connection is *unconfirmed* until its first packet leaves through POSTROUTING or INPUT;
  a packet dropped before that leaves nothing behind;
* TCP follows the kernel's state table (``tcp_conntracks``) with ``nf_conntrack_tcp_loose``;
  sequence-window checks are not modelled (each TCP verdict says so);
* ICMP: only queries start connections; an echo reply without its request is INVALID; errors
  are RELATED to the connection of the packet they quote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from nodetrace.model.conntrack import ConnTuple
from nodetrace.model.packet import IPProto, Packet, TcpFlag


class CtState(StrEnum):
    NEW = "NEW"
    ESTABLISHED = "ESTABLISHED"
    RELATED = "RELATED"
    INVALID = "INVALID"
    UNTRACKED = "UNTRACKED"


STATE_WORDS = {
    "new": CtState.NEW,
    "est": CtState.ESTABLISHED,
    "established": CtState.ESTABLISHED,
    "rel": CtState.RELATED,
    "related": CtState.RELATED,
    "inv": CtState.INVALID,
    "invalid": CtState.INVALID,
    "untracked": CtState.UNTRACKED,
}
"""``--ct-state`` words (iptables' and OVS's spellings) and the state each names."""


class Direction(StrEnum):
    ORIGINAL = "ORIGINAL"
    REPLY = "REPLY"


# ICMP queries that may start a connection, and the type of their reply (nf_conntrack_proto_icmp).
ICMP_QUERIES = {8: 0, 13: 14, 15: 16, 17: 18}
ICMP_REPLIES = {v: k for k, v in ICMP_QUERIES.items()}
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
ICMPV6_QUERIES = {128: 129, 139: 140}
ICMPV6_REPLIES = {v: k for k, v in ICMPV6_QUERIES.items()}
ICMPV6_ERRORS = frozenset({1, 2, 3, 4})

TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
              "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")  # fmt: skip
_IV, _IG = "INVALID", "IGNORE"
_COLS = TCP_STATES
# tcp_conntracks[dir][index][state] from nf_conntrack_proto_tcp.c, columns in TCP_STATES order.
_TCP_TABLE: dict[tuple[int, str], tuple[str, ...]] = {
    (0, "syn"): ("SYN_SENT", "SYN_SENT", _IG, _IG, _IG, _IG, _IG, "SYN_SENT", "SYN_SENT", "SYN_SENT2"),
    (0, "synack"): (_IV, _IV, _IG, _IG, _IG, _IG, _IG, _IG, _IG, "SYN_RECV"),
    (0, "fin"): (_IV, _IV, "FIN_WAIT", "FIN_WAIT", "LAST_ACK", "LAST_ACK", "LAST_ACK", "TIME_WAIT", "CLOSE", _IV),
    (0, "ack"): ("ESTABLISHED", _IV, "ESTABLISHED", "ESTABLISHED", "CLOSE_WAIT", "CLOSE_WAIT", "TIME_WAIT", "TIME_WAIT", "CLOSE", _IV),
    (0, "rst"): (_IV, "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE"),
    (0, "none"): (_IV,) * 10,
    (1, "syn"): (_IV, "SYN_SENT2", _IV, _IV, _IV, _IV, _IV, _IV, _IV, "SYN_SENT2"),
    (1, "synack"): (_IV, "SYN_RECV", _IG, _IG, _IG, _IG, _IG, _IG, _IG, "SYN_RECV"),
    (1, "fin"): (_IV, _IV, "FIN_WAIT", "FIN_WAIT", "LAST_ACK", "LAST_ACK", "LAST_ACK", "TIME_WAIT", "CLOSE", _IV),
    (1, "ack"): (_IV, _IG, "SYN_RECV", "ESTABLISHED", "CLOSE_WAIT", "CLOSE_WAIT", "TIME_WAIT", "TIME_WAIT", "CLOSE", _IG),
    (1, "rst"): (_IV, "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE", "CLOSE"),
    (1, "none"): (_IV,) * 10,
}  # fmt: skip

# Flag combinations tcp_error() accepts (after ignoring ECE, CWR and PSH).
_F, _S, _R, _A, _U = TcpFlag.FIN, TcpFlag.SYN, TcpFlag.RST, TcpFlag.ACK, TcpFlag.URG
TCP_VALID_FLAGS = frozenset({_S, _S | _U, _S | _A, _R, _R | _A, _F | _A, _F | _A | _U, _A, _A | _U})


@dataclass
class Connection:
    """One tracked connection, live: its state advances as packets pass (a dump's frozen
    record of a connection is :class:`nodetrace.model.conntrack.ConntrackEntry`)."""

    zone: int
    orig: ConnTuple
    reply: ConnTuple
    status: set[str] = field(default_factory=set)
    """``EXPECTED``, ``SEEN_REPLY``, ``ASSURED``, ``CONFIRMED``, ``SRC_NAT``, ``DST_NAT``."""
    mark: int = 0
    tcp_state: str = "NONE"
    nat_done: set[str] = field(default_factory=set)
    """NAT manip types (``SRC``/``DST``) already decided: the nat table runs only before that."""

    @property
    def confirmed(self) -> bool:
        return "CONFIRMED" in self.status


@dataclass(frozen=True, slots=True)
class CtLookup:
    """What conntrack decided for one packet at PREROUTING/OUTPUT."""

    state: CtState
    direction: Direction | None = None
    conn: Connection | None = None
    note: str = ""
    """Why the state is what it is, when that is not obvious (shown as an assumption)."""
    unknown: str = ""
    """Non-empty when the tracker cannot decide (protocol or packet not modelled)."""


def _icmp_tuple(packet: Packet, v6: bool) -> ConnTuple | None:
    queries, replies = (ICMPV6_QUERIES, ICMPV6_REPLIES) if v6 else (ICMP_QUERIES, ICMP_REPLIES)
    t = packet.icmp_type
    if t is None or (t not in queries and t not in replies):
        return None
    assert packet.nw_src is not None and packet.nw_dst is not None
    return ConnTuple(packet.nw_src, packet.nw_dst, packet.nw_proto, packet.icmp_id or 0, t)


def packet_tuple(packet: Packet) -> ConnTuple | None:
    """The tuple conntrack computes for ``packet`` (``None`` for ICMP messages that are not queries
    or replies)."""
    assert packet.nw_src is not None and packet.nw_dst is not None
    proto = packet.nw_proto
    if proto in (IPProto.ICMP, IPProto.ICMPV6):
        return _icmp_tuple(packet, proto == IPProto.ICMPV6)
    if proto in (IPProto.TCP, IPProto.UDP, IPProto.UDPLITE, IPProto.SCTP, 33):
        return ConnTuple(
            packet.nw_src, packet.nw_dst, proto, packet.tp_src or 0, packet.tp_dst or 0
        )
    return ConnTuple(packet.nw_src, packet.nw_dst, proto)


def invert(t: ConnTuple) -> ConnTuple:
    if t.proto in (IPProto.ICMP, IPProto.ICMPV6):
        table = ICMPV6_QUERIES if t.proto == IPProto.ICMPV6 else ICMP_QUERIES
        rtable = ICMPV6_REPLIES if t.proto == IPProto.ICMPV6 else ICMP_REPLIES
        rtype = table.get(t.dport, rtable.get(t.dport, t.dport))
        return ConnTuple(t.dst, t.src, t.proto, t.sport, rtype)
    return ConnTuple(t.dst, t.src, t.proto, t.dport, t.sport)


def _tcp_index(flags: int) -> str:
    if flags & TcpFlag.RST:
        return "rst"
    if flags & TcpFlag.SYN:
        return "synack" if flags & TcpFlag.ACK else "syn"
    if flags & TcpFlag.FIN:
        return "fin"
    if flags & TcpFlag.ACK:
        return "ack"
    return "none"


class ConntrackTable:
    """The connections one network namespace tracks, across the packets of a session."""

    def __init__(self, *, tcp_loose: bool = True) -> None:
        self.tcp_loose = tcp_loose
        self._by_tuple: dict[tuple[int, ConnTuple], tuple[Connection, Direction]] = {}

    def __len__(self) -> int:
        return len(self._by_tuple) // 2

    def connections(self) -> list[Connection]:
        seen: dict[int, Connection] = {}
        for conn, _ in self._by_tuple.values():
            seen[id(conn)] = conn
        return list(seen.values())

    def lookup(self, packet: Packet, zone: int) -> CtLookup:
        """Conntrack's decision for ``packet`` arriving in ``zone`` (the lookup at PREROUTING or
        OUTPUT). Existing connections are updated as the kernel does at that point (SEEN_REPLY,
        TCP state); a new connection is returned unconfirmed."""
        if packet.nw_src is None or packet.nw_dst is None:
            return CtLookup(CtState.INVALID, unknown="the packet has no IP addresses")
        proto = packet.nw_proto
        if proto in (IPProto.SCTP, 33, IPProto.GRE):
            return CtLookup(
                CtState.INVALID, unknown=f"conntrack for IP protocol {proto} is not modelled"
            )
        if packet.ip_frag_offset or packet.ip_mf:
            return CtLookup(
                CtState.INVALID, unknown="fragments are reassembled before conntrack; not modelled"
            )
        if proto in (IPProto.ICMP, IPProto.ICMPV6):
            errors = ICMPV6_ERRORS if proto == IPProto.ICMPV6 else ICMP_ERRORS
            if packet.icmp_type in errors:
                return self._icmp_error(packet, zone)
        if proto == IPProto.TCP:
            flags = packet.tcp_flags & ~(TcpFlag.ECE | TcpFlag.CWR | TcpFlag.PSH | TcpFlag.AE)
            if flags not in TCP_VALID_FLAGS:
                return CtLookup(CtState.INVALID, note="invalid TCP flag combination")
        t = packet_tuple(packet)
        if t is None:
            return CtLookup(
                CtState.INVALID,
                note=f"ICMP type {packet.icmp_type} is neither a query, a reply nor an error",
            )
        found = self._by_tuple.get((zone, t))
        if found is None:
            return self._new(packet, t, zone)
        conn, direction = found
        if proto == IPProto.TCP:
            verdict = self._tcp_update(conn, direction, packet.tcp_flags)
            if verdict is not None:
                return CtLookup(CtState.INVALID, note=verdict)
        if direction is Direction.REPLY:
            conn.status.add("SEEN_REPLY")
            return CtLookup(CtState.ESTABLISHED, direction, conn)
        if "SEEN_REPLY" in conn.status:
            return CtLookup(CtState.ESTABLISHED, direction, conn)
        if "EXPECTED" in conn.status:
            return CtLookup(CtState.RELATED, direction, conn)
        return CtLookup(CtState.NEW, direction, conn, note="no reply seen yet")

    def _new(self, packet: Packet, t: ConnTuple, zone: int) -> CtLookup:
        proto = packet.nw_proto
        tcp_state = "NONE"
        if proto in (IPProto.ICMP, IPProto.ICMPV6):
            queries = ICMPV6_QUERIES if proto == IPProto.ICMPV6 else ICMP_QUERIES
            if packet.icmp_type not in queries:
                return CtLookup(
                    CtState.INVALID,
                    note=f"ICMP type {packet.icmp_type} cannot start a connection and no "
                    "connection matches it",
                )
        elif proto == IPProto.TCP:
            index = _tcp_index(packet.tcp_flags)
            first = _TCP_TABLE[(0, index)][0]
            if first == _IV:
                return CtLookup(
                    CtState.INVALID, note=f"a TCP {index.upper()} cannot start a connection"
                )
            if first != "SYN_SENT" and not self.tcp_loose:
                return CtLookup(
                    CtState.INVALID, note="nf_conntrack_tcp_loose=0: mid-stream pickup refused"
                )
            tcp_state = first
        conn = Connection(zone, t, invert(t), tcp_state=tcp_state)
        return CtLookup(CtState.NEW, Direction.ORIGINAL, conn)

    def _tcp_update(self, conn: Connection, direction: Direction, flags: int) -> str | None:
        """Advance the TCP state; return why the packet is INVALID, or ``None``."""
        index = _tcp_index(flags)
        d = 0 if direction is Direction.ORIGINAL else 1
        new = _TCP_TABLE[(d, index)][_COLS.index(conn.tcp_state)]
        if new == _IV:
            return f"TCP {index.upper()} not valid in state {conn.tcp_state} ({direction.value})"
        if new != _IG:
            old = conn.tcp_state
            conn.tcp_state = new
            # tcp_packet(): ASSURED once a reply was seen and the handshake completes.
            if (
                "SEEN_REPLY" in conn.status
                and old in ("SYN_RECV", "ESTABLISHED")
                and new == "ESTABLISHED"
            ):
                conn.status.add("ASSURED")
        return None

    def _icmp_error(self, packet: Packet, zone: int) -> CtLookup:
        inner = packet.inner
        if inner is None:
            return CtLookup(
                CtState.INVALID,
                unknown="an ICMP error's state depends on the packet it quotes, which is not given",
            )
        t = packet_tuple(inner)
        if t is None:
            return CtLookup(CtState.INVALID, note="the ICMP error quotes an untrackable packet")
        # The quoted packet went the other way: its tuple, inverted, is this error's direction.
        found = self._by_tuple.get((zone, invert(t)))
        if found is None:
            return CtLookup(CtState.INVALID, note="the ICMP error quotes no tracked connection")
        conn, direction = found
        return CtLookup(CtState.RELATED, direction, conn)

    def confirm(self, conn: Connection) -> None:
        """The connection's first packet left the stack: insert both directions."""
        if conn.confirmed:
            return
        conn.status.add("CONFIRMED")
        # A tuple another connection already holds is never taken over: when the new one's reply
        # tuple clashes (e.g. a packet to an address an earlier connection was SNATed from,
        # whose reply would come back to the NAT address), the kernel keeps the older entry and
        # inserts the newcomer by its original tuple only (nf_ct_resolve_clash_harder), so the
        # older connection's next packet is still in its own ORIGINAL direction (lab-verified
        # for UDP).
        self._by_tuple.setdefault((conn.zone, conn.orig), (conn, Direction.ORIGINAL))
        self._by_tuple.setdefault((conn.zone, conn.reply), (conn, Direction.REPLY))
