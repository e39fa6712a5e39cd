"""The ``learn`` action: build the flow it adds from the packet being traced.

Neutron's br-tun learns, for each frame arriving from a tunnel, "this MAC in this local VLAN is
behind that tunnel port" (table 10 writes table 20). nodetrace records that flow on the trace
and, when side effects are applied, adds it for the packets traced after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address

from nodetrace.engine.openflow_state import CT_KEYS, TUNNEL_KEYS, mac_text, read_field
from nodetrace.model.openflow import (
    Action,
    FieldMatch,
    Flow,
    Learn,
    LearnSpecKind,
    Output,
    PortName,
    PortNumber,
    SetField,
    field_segments,
)
from nodetrace.model.openflow_trace import LearnedFlow

_MAC_FIELDS = frozenset({"dl_src", "dl_dst", "arp_sha", "arp_tha"})
_IP4_FIELDS = frozenset({"nw_src", "nw_dst", "tun_src", "tun_dst", "ct_nw_src", "ct_nw_dst"})
_IP6_FIELDS = frozenset({"ipv6_src", "ipv6_dst", "nd_target", "tun_ipv6_src", "tun_ipv6_dst"})
_DECIMAL = frozenset({"tp_src", "tp_dst", "nw_proto", "nw_ttl", "ct_zone"})

MATCH_ORDER = (
    "recirc_id", "dp_hash", "conj_id", "skb_priority", "pkt_mark",
    *CT_KEYS, *(f"reg{i}" for i in range(16)), *TUNNEL_KEYS,
    "metadata", "in_port", "actset_output", "vlan_tci", "dl_src", "dl_dst", "dl_type",
    "nw_src", "nw_dst", "ipv6_src", "ipv6_dst", "ipv6_label", "nw_proto", "nw_tos", "nw_ttl",
    "nw_frag", "arp_sha", "arp_tha", "tp_src", "tp_dst", "tcp_flags", "nd_target",
)  # fmt: skip
"""Roughly the order ``ovs-ofctl`` prints match fields in."""


def format_match_field(field: str, value: int, mask: int, width: int) -> str:
    """One storage-field match the way OVS prints it (``vlan_tci=0x0001/0x0fff``)."""
    full = (1 << width) - 1
    if field == "vlan_tci":
        if mask == 0x1FFF and value & 0x1000:
            return f"dl_vlan={value & 0xFFF}"
        return f"vlan_tci={value:#06x}" if mask == 0xFFFF else f"vlan_tci={value:#06x}/{mask:#06x}"
    if field in _MAC_FIELDS:
        return (
            f"{field}={mac_text(value)}"
            if mask == full
            else f"{field}={mac_text(value)}/{mac_text(mask)}"
        )
    if field in _IP4_FIELDS or field in _IP6_FIELDS:
        cls = IPv4Address if field in _IP4_FIELDS else IPv6Address
        if mask == full:
            return f"{field}={cls(value)}"
        prefix = bin(mask).count("1")
        if mask == (full >> (width - prefix)) << (width - prefix):
            return f"{field}={cls(value)}/{prefix}"
        return f"{field}={cls(value)}/{cls(mask)}"
    if mask == full:
        return f"{field}={value}" if field in _DECIMAL else f"{field}={value:#x}"
    return f"{field}={value:#x}/{mask:#x}"


def format_match(matches: tuple[FieldMatch, ...], widths: Mapping[str, int]) -> str:
    order = {name: i for i, name in enumerate(MATCH_ORDER)}
    ordered = sorted(matches, key=lambda m: order.get(m.field, len(order)))
    return ",".join(
        format_match_field(m.field, m.value, m.mask, widths.get(m.field, 64)) for m in ordered
    )


def execute_learn(
    learn: Learn,
    state: Mapping[str, int],
    bridge: str,
    widths: Mapping[str, int],
    placeholders: Mapping[int, str] | None = None,
) -> tuple[Flow, LearnedFlow]:
    """The flow ``learn`` adds for a packet in ``state``; ``placeholders`` names the ports
    known only by name, which the learned flow then names too."""
    named = placeholders or {}
    matches: dict[str, tuple[int, int]] = {}
    actions: list[Action] = []
    for spec in learn.specs:
        if spec.kind is LearnSpecKind.OUTPUT:
            assert spec.src is not None
            port = read_field(state, spec.src.field, spec.src.start, spec.src.width)
            if port in named:
                actions.append(Output(f'output:"{named[port]}"', PortName(named[port])))
            else:
                actions.append(Output(f"output:{port}", PortNumber(port)))
            continue
        dst = spec.dst
        assert dst is not None
        if spec.src is not None:
            value = read_field(state, spec.src.field, spec.src.start, spec.src.width)
        else:
            value = spec.value or 0
        if spec.kind is LearnSpecKind.LOAD:
            mask = ((1 << dst.width) - 1) << dst.start
            text = f"load:{value:#x}->{dst.text}" if value else f"load:0->{dst.text}"
            actions.append(SetField(text, dst.field, (value << dst.start) & mask, mask))
            continue
        segments = field_segments(dst.field, dst.start, dst.width) or ()
        for storage, bit, w, vbit in segments:
            part_mask = ((1 << w) - 1) << bit
            part = ((value >> vbit) << bit) & part_mask
            old_v, old_m = matches.get(storage, (0, 0))
            matches[storage] = ((old_v & ~part_mask) | part, old_m | part_mask)
    in_port: PortNumber | PortName | None = None
    port_term = ""
    if "in_port" in matches and matches["in_port"][1] == 0xFFFF:
        number = matches.pop("in_port")[0]
        if number in named:
            in_port, port_term = PortName(named[number]), f'in_port="{named[number]}"'
        else:
            in_port, port_term = PortNumber(number), f"in_port={number}"
    fms = tuple(FieldMatch(f, v, m) for f, (v, m) in matches.items())
    match_text = format_match(fms, widths)
    if port_term:
        match_text = ",".join(x for x in (port_term, match_text) if x)
    actions_text = ",".join(a.text for a in actions) or "drop"
    flow = Flow(
        table=learn.table,
        priority=learn.priority,
        matches=fms,
        actions=tuple(actions),
        match_text=match_text,
        actions_text=actions_text,
        cookie=learn.cookie,
        in_port=in_port,
        idle_timeout=learn.idle_timeout,
        hard_timeout=learn.hard_timeout,
    )
    record = LearnedFlow(
        bridge,
        learn.table,
        learn.priority,
        match_text,
        actions_text,
        learn.cookie,
        learn.idle_timeout,
        learn.hard_timeout,
    )
    return flow, record
