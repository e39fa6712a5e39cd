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

    def __init__(self, table: ConntrackDump | None, explicit: Sequence[int] = ()) -> None:
        self.table = table
        self.explicit = list(explicit)
        self.committed: list[tuple[int, tuple[object, ...]]] = []

    def next_state(self, state: Mapping[str, int], packet: Packet, zone: int) -> CtVerdict:
        if self.explicit:
            bits = self.explicit.pop(0)
            return CtVerdict(bits, f"ct_state={ct_state_text(bits)} as given")
        key = _key(state, packet)
        if key is not None and (zone, key) in [(z, k) for z, k in self.committed]:
            return CtVerdict(TRK | EST, "committed earlier in this run: established")
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
            return CtVerdict(TRK | NEW, f"no conntrack entry in zone {zone}: ct_state=trk|new")
        return CtVerdict(
            TRK | NEW,
            "ct_state=trk|new assumed (the default of ofproto/trace; give --ct-state to change)",
            default=True,
        )

    def commit(self, state: Mapping[str, int], packet: Packet, zone: int) -> None:
        key = _key(state, packet)
        if key is not None:
            self.committed.append((zone, key))


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
