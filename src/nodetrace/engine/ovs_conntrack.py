"""Connection-tracking state for ``ct(table=N)`` recirculations.

``ofproto/trace`` resumes a recirculated packet with ``ct_state=trk|new`` unless told otherwise
(``--ct-next``). nodetrace does the same by default and says so, but it can do better when the
snapshot holds the tracker's table (``dpctl/dump-conntrack``): a packet of a known connection is
``+trk+est`` (``+rpl`` in the reply direction). Explicit states (``--ct-state``) always win, one
per recirculation, in order, like ``--ct-next``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from nodetrace.model.conntrack import (
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    ConntrackDump,
    ConntrackEntry,
    ConnTuple,
)
from nodetrace.model.openflow import CT_STATE_BITS, ct_state_text
from nodetrace.model.packet import Packet

TRK = CT_STATE_BITS["trk"]
NEW = CT_STATE_BITS["new"]
EST = CT_STATE_BITS["est"]
RPL = CT_STATE_BITS["rpl"]
INV = CT_STATE_BITS["inv"]
TCP_SYN, TCP_ACK = 0x002, 0x010
_ICMP_QUERIES = {1: frozenset({8, 13, 15}), 58: frozenset({128})}
"""ICMP types that open a connection in OVS's userspace tracker (conntrack-icmp.c): echo,
timestamp and information requests; ICMPv6 echo requests."""

_UNREPLIED_TCP = frozenset({"SYN_SENT", "SYN_SENT2"})


@dataclass(frozen=True, slots=True)
class CtVerdict:
    state: int
    why: str
    default: bool = False
    mark: int = 0
    labels: int = 0


class ConntrackModel:
    """Answers "what ct_state does this packet get in zone Z" for successive recirculations."""

    def __init__(
        self, table: ConntrackDump | None, explicit: Sequence[int] = (), *, datapath: bool = False
    ) -> None:
        self.table = table
        self.explicit = list(explicit)
        self.committed: list[tuple[int, tuple[object, ...]]] = []
        self.datapath = datapath
        """Model the datapath's tracker rather than ``ofproto/trace``'s default: a packet that
        cannot open a connection (a SYN-ACK, an ICMP reply) and belongs to none is invalid."""

    def next_state(self, state: Mapping[str, int], packet: Packet, zone: int) -> CtVerdict:
        if self.explicit:
            bits = self.explicit.pop(0)
            return CtVerdict(bits, f"ct_state={ct_state_text(bits)} as given")
        key = _key(state, packet)
        if key is not None and (zone, key) in [(z, k) for z, k in self.committed]:
            return CtVerdict(TRK | EST, "committed earlier in this run: established")
        committed = [(z, k) for z, k in self.committed]
        if self.datapath and key is not None and (zone, _reversed(key)) in committed:
            return CtVerdict(
                TRK | EST | RPL, f"the reply of a connection committed earlier (zone {zone})"
            )
        if self.table is not None and key is not None:
            found = _find(self.table, zone, state, packet)
            if found is not None:
                entry, reply = found
                if entry.proto == 6 and entry.state in _UNREPLIED_TCP and not reply:
                    bits = TRK | NEW
                else:
                    bits = TRK | EST | (RPL if reply else 0)
                where = f"{entry.pos}" if entry.pos is not None else "conntrack table"
                return CtVerdict(
                    bits,
                    f"ct_state={ct_state_text(bits)} from the conntrack entry at {where} (zone {zone})",
                    mark=entry.mark,
                    labels=entry.labels,
                )
            if self.datapath and not _can_open(state):
                return CtVerdict(
                    TRK | INV,
                    f"no conntrack entry in zone {zone}, and {_describe(state)} cannot open a "
                    "connection: ct_state=trk|inv",
                )
            return CtVerdict(TRK | NEW, f"no conntrack entry in zone {zone}: ct_state=trk|new")
        if self.datapath and key is not None and not _can_open(state):
            return CtVerdict(
                TRK | INV,
                f"ct_state=trk|inv assumed: no connection is known in zone {zone} (the snapshot "
                f"holds no conntrack table) and {_describe(state)} cannot open one; give "
                "--ct-state to change",
                default=True,
            )
        return CtVerdict(
            TRK | NEW,
            "ct_state=trk|new assumed (the default of ofproto/trace; give --ct-state to change)",
            default=True,
        )

    def commit(self, state: Mapping[str, int], packet: Packet, zone: int) -> None:
        key = _key(state, packet)
        if key is not None:
            self.committed.append((zone, key))


def _can_open(state: Mapping[str, int]) -> bool:
    """Whether OVS's tracker lets this packet start a connection: not a TCP SYN-ACK
    (``tcp_valid_new``), only an ICMP query (``icmp4_valid_new``, ``icmp6_valid_new``)."""
    proto = state.get("nw_proto", 0)
    if proto == 6:
        flags = state.get("tcp_flags", 0)
        return not (flags & TCP_SYN and flags & TCP_ACK)
    if proto in _ICMP_QUERIES:
        return state.get("tp_src", 0) in _ICMP_QUERIES[proto]
    return True


def _describe(state: Mapping[str, int]) -> str:
    proto = state.get("nw_proto", 0)
    if proto == 6:
        return "a TCP SYN-ACK"
    return f"an ICMP{'v6' if proto == 58 else ''} message of type {state.get('tp_src', 0)}"


def _addr(state: Mapping[str, int], v6: bool, which: str) -> IPv4Address | IPv6Address:
    if v6:
        return IPv6Address(state.get(f"ipv6_{which}", 0))
    return IPv4Address(state.get(f"nw_{which}", 0))


def _key(state: Mapping[str, int], packet: Packet) -> tuple[object, ...] | None:
    dl_type = state.get("dl_type", 0)
    if dl_type not in (0x0800, 0x86DD):
        return None
    v6 = dl_type == 0x86DD
    proto = state.get("nw_proto", 0)
    return (
        proto,
        _addr(state, v6, "src"),
        _addr(state, v6, "dst"),
        state.get("tp_src", 0),
        state.get("tp_dst", 0),
        packet.icmp_id,
    )


_ICMP_REQUEST_OF_REPLY = {(1, 0): 8, (1, 14): 13, (1, 16): 15, (1, 18): 17, (58, 129): 128}
"""A query's type by its reply's (ICMP and ICMPv6 echo, timestamp, information, mask)."""


def _reversed(key: tuple[object, ...]) -> tuple[object, ...]:
    """The key of the connection whose reply has ``key``: the ends swapped (for an ICMP
    reply, the query's type; its code stays 0)."""
    proto, src, dst, sport, dport, icmp_id = key
    if proto in ICMP_PROTOCOLS and isinstance(proto, int) and isinstance(sport, int):
        return (proto, dst, src, _ICMP_REQUEST_OF_REPLY.get((proto, sport), -1), dport, icmp_id)
    return (proto, dst, src, dport, sport, icmp_id)


def _matches(t: ConnTuple, state: Mapping[str, int], packet: Packet) -> bool:
    v6 = state.get("dl_type", 0) == 0x86DD
    if t.src != _addr(state, v6, "src") or t.dst != _addr(state, v6, "dst"):
        return False
    if t.proto in PORT_PROTOCOLS:
        return t.sport == state.get("tp_src", 0) and t.dport == state.get("tp_dst", 0)
    if t.proto in ICMP_PROTOCOLS:
        # The flow's tp_src is the ICMP type; a packet without an id matches any query's.
        if t.icmp_type != state.get("tp_src", 0):
            return False
        return packet.icmp_id is None or t.icmp_id == packet.icmp_id
    return True


def _find(
    table: ConntrackDump, zone: int, state: Mapping[str, int], packet: Packet
) -> tuple[ConntrackEntry, bool] | None:
    proto = state.get("nw_proto", 0)
    for entry in table.entries:
        if entry.zone != zone or entry.proto != proto:
            continue
        if _matches(entry.orig, state, packet):
            return entry, False
        if _matches(entry.reply, state, packet):
            return entry, True
    return None
