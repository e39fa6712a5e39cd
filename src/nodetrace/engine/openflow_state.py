"""A packet inside the OpenFlow engine: a dictionary of OVS storage fields (``struct flow``),
built from a :class:`~nodetrace.model.packet.Packet` and turned back into one, plus the
subfield reads/writes and prerequisite checks that actions need.

Keeping the state as ``{field: int}`` makes a classifier lookup a tuple of masked ints and a
dictionary probe per subtable, which is what lets the engine trace thousands of packets a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address

from nodetrace.errors import UsageError
from nodetrace.model.openflow import (
    FIELD_ALIASES,
    LOCAL_PORT,
    STORAGE_FIELDS,
    ct_state_from_text,
    ct_state_text,
    field_segments,
)
from nodetrace.model.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    PROTOCOL_SHORTHANDS,
    Packet,
)

State = dict[str, int]

VLAN_CFI = 0x1000
ETH_TYPE_RARP = 0x8035
TPID0 = "_vlan_tpid"
"""Engine-only keys: the outer TPID and the inner VLAN header (QinQ)."""
TCI1 = "_vlan_tci1"
TPID1 = "_vlan_tpid1"

HEADER_FIELDS = frozenset({
    "dl_src", "dl_dst", "nw_src", "nw_dst", "ipv6_src", "ipv6_dst", "ipv6_label", "nw_tos",
    "nw_ttl", "nw_frag", "tp_src", "tp_dst", "tcp_flags", "arp_sha", "arp_tha", "nd_target",
    "tun_id", "tun_src", "tun_dst",
})  # fmt: skip
"""Fields of the packet itself: leaving one out is an assumption worth stating. (A frame given
without a VLAN is untagged, which is what the user means, so vlan_tci is not among them.)"""

PACKET_TO_STORAGE = {
    "dl_vlan": "vlan_tci",
    "dl_vlan_pcp": "vlan_tci",
    "icmp_type": "tp_src",
    "icmp_code": "tp_dst",
    "arp_op": "nw_proto",
    "arp_spa": "nw_src",
    "arp_tpa": "nw_dst",
}
"""Packet fields stored under another name (the rest are stored under their own)."""


def mac_int(text: str) -> int:
    return int(text.replace(":", "").replace("-", ""), 16)


def mac_text(value: int) -> str:
    raw = f"{value & 0xFFFFFFFFFFFF:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def is_ip(state: Mapping[str, int]) -> bool:
    return state.get("dl_type", 0) in (ETH_TYPE_IPV4, ETH_TYPE_IPV6)


def prereq_ok(prereq: str, state: Mapping[str, int]) -> bool:
    """Whether a packet has the headers a field needs (see ``PREREQUISITES``)."""
    if not prereq:
        return True
    dl_type = state.get("dl_type", 0)
    proto = state.get("nw_proto", 0)
    if prereq == "ipv4":
        return dl_type == ETH_TYPE_IPV4
    if prereq == "ipv6":
        return dl_type == ETH_TYPE_IPV6
    if prereq == "ip":
        return dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6)
    if prereq == "arp":
        return dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP)
    ip = dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6)
    if prereq == "tcp":
        return ip and proto == 6
    if prereq == "udp":
        return ip and proto == 17
    if prereq == "sctp":
        return ip and proto == 132
    if prereq == "l4":
        return ip and proto in (6, 17, 132)
    if prereq == "icmp":
        return dl_type == ETH_TYPE_IPV4 and proto == 1
    if prereq == "icmpv6":
        return dl_type == ETH_TYPE_IPV6 and proto == 58
    icmp6 = dl_type == ETH_TYPE_IPV6 and proto == 58 and state.get("tp_dst", 0) == 0
    if prereq == "nd":
        return icmp6 and state.get("tp_src", 0) in (135, 136)
    if prereq == "nd_ns":
        return icmp6 and state.get("tp_src", 0) == 135
    if prereq == "nd_na":
        return icmp6 and state.get("tp_src", 0) == 136
    return False


def read_field(state: Mapping[str, int], name: str, start: int, width: int) -> int:
    segments = field_segments(name, start, width)
    if segments is None:
        raise UsageError(f"field {name} is not modelled")
    value = 0
    for storage, bit, w, vbit in segments:
        value |= ((state.get(storage, 0) >> bit) & ((1 << w) - 1)) << vbit
    return value


def write_field(state: State, name: str, start: int, width: int, value: int) -> set[str]:
    """Write ``value`` into bits ``start..`` of field ``name``; return the storage fields touched."""
    segments = field_segments(name, start, width)
    if segments is None:
        raise UsageError(f"field {name} is not modelled")
    touched = set()
    for storage, bit, w, vbit in segments:
        mask = ((1 << w) - 1) << bit
        part = ((value >> vbit) << bit) & mask
        state[storage] = (state.get(storage, 0) & ~mask) | part
        touched.add(storage)
    _tag_if_vlan_written(state, name, touched)
    return touched


def write_masked(state: State, name: str, value: int, mask: int) -> set[str]:
    """``set_field:value/mask->name`` in the user field's own units."""
    segments = field_segments(name)
    if segments is None:
        raise UsageError(f"field {name} is not modelled")
    touched = set()
    for storage, bit, w, vbit in segments:
        smask = ((mask >> vbit) & ((1 << w) - 1)) << bit
        svalue = ((value >> vbit) & ((1 << w) - 1)) << bit
        state[storage] = (state.get(storage, 0) & ~smask) | (svalue & smask)
        touched.add(storage)
    _tag_if_vlan_written(state, name, touched)
    return touched


def _tag_if_vlan_written(state: State, name: str, touched: set[str]) -> None:
    """A VLAN field written on an untagged packet makes it tagged (CFI set, TPID 0x8100)."""
    if "vlan_tci" in touched:
        if name == "vlan_pcp":
            state["vlan_tci"] |= VLAN_CFI
        if not state.get(TPID0) and state.get("vlan_tci"):
            state[TPID0] = 0x8100


def field_prereq(name: str) -> str:
    alias = FIELD_ALIASES.get(name)
    return alias.prereq if alias is not None else ""


# ---------------------------------------------------------------------------------------------
# Packet <-> state


def _ip_int(value: IPv4Address | IPv6Address | None) -> int:
    return int(value) if value is not None else 0


def state_from_packet(packet: Packet, metadata: Sequence[tuple[str, str]], in_port: int) -> State:
    """The engine's view of ``packet`` arriving on ``in_port`` with the given metadata."""
    s: State = {
        "in_port": in_port,
        "dl_src": mac_int(packet.dl_src),
        "dl_dst": mac_int(packet.dl_dst),
    }
    s["dl_type"] = packet.dl_type
    if packet.dl_vlan is not None:
        s["vlan_tci"] = VLAN_CFI | ((packet.dl_vlan_pcp & 7) << 13) | (packet.dl_vlan & 0xFFF)
        s[TPID0] = 0x8100
    if packet.dl_type == ETH_TYPE_IPV4:
        s["nw_src"] = _ip_int(packet.nw_src)
        s["nw_dst"] = _ip_int(packet.nw_dst)
    elif packet.dl_type == ETH_TYPE_IPV6:
        s["ipv6_src"] = _ip_int(packet.nw_src)
        s["ipv6_dst"] = _ip_int(packet.nw_dst)
        s["ipv6_label"] = packet.ipv6_label
        if packet.nd_target is not None:
            s["nd_target"] = int(packet.nd_target)
    if packet.is_ip:
        s["nw_proto"] = packet.nw_proto
        s["nw_tos"] = packet.nw_tos
        s["nw_ttl"] = packet.nw_ttl
        if packet.ip_frag_offset:
            s["nw_frag"] = 3
        elif packet.ip_mf:
            s["nw_frag"] = 1
        if packet.nw_proto in (6, 17, 132):
            s["tp_src"] = packet.tp_src or 0
            s["tp_dst"] = packet.tp_dst or 0
            if packet.nw_proto == 6:
                s["tcp_flags"] = packet.tcp_flags
        elif packet.nw_proto in (1, 58):
            s["tp_src"] = packet.icmp_type or 0
            s["tp_dst"] = packet.icmp_code or 0
    elif packet.dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        s["nw_proto"] = (packet.arp_op or 0) & 0xFF
        s["nw_src"] = _ip_int(packet.arp_spa)
        s["nw_dst"] = _ip_int(packet.arp_tpa)
        s["arp_sha"] = mac_int(packet.arp_sha) if packet.arp_sha else 0
        s["arp_tha"] = mac_int(packet.arp_tha) if packet.arp_tha else 0
    if packet.skb_mark:
        s["pkt_mark"] = packet.skb_mark
    for key, value in metadata:
        _apply_metadata(s, key, value)
    return s


def _int(key: str, value: str) -> int:
    try:
        return int(value.split("/")[0], 0)
    except ValueError:
        raise UsageError(f"{key}={value}: not a number") from None


_ADDRESS_METADATA = frozenset({
    "tun_src", "tun_dst", "tun_ipv6_src", "tun_ipv6_dst",
    "ct_nw_src", "ct_nw_dst", "ct_ipv6_src", "ct_ipv6_dst",
})  # fmt: skip
"""Metadata given as an IP address."""


def _apply_metadata(s: State, key: str, value: str) -> None:
    if key == "in_port" or key == "in_port_oxm":
        return
    if key in _ADDRESS_METADATA:
        try:
            s[key] = int(ip_address(value))
        except ValueError:
            raise UsageError(f"{key}={value}: not an IP address") from None
        return
    if key == "tunnel_id":
        key = "tun_id"
    if key == "ct_state":
        try:
            s["ct_state"] = ct_state_from_text(value)
        except ValueError as err:
            raise UsageError(f"ct_state={value}: {err}") from None
        return
    if key == "nw_frag":
        frags = {"no": 0, "first": 1, "later": 3}
        if value not in frags:
            raise UsageError(f"nw_frag={value}: use no, first or later")
        s["nw_frag"] = frags[value]
        return
    if key in ("nd_sll", "nd_tll"):
        s["arp_sha" if key == "nd_sll" else "arp_tha"] = mac_int(value)
        return
    if key == "tun_flags":
        s["tun_flags"] = 1 if "+oam" in value or value == "oam" else 0
        return
    if key == "recirc_id" and _int(key, value) != 0:
        raise UsageError(
            "recirc_id: a trace starts with recirc_id=0 (use --ct-state for recirculation)"
        )
    segments = field_segments(key)
    if segments is None:
        raise UsageError(f"{key}: this field is not modelled by the OpenFlow engine")
    write_field(s, key, 0, sum(w for _, _, w, _ in segments), _int(key, value))


def packet_from_state(s: Mapping[str, int], original: Packet) -> Packet:
    """The frame as the state describes it (fields OVS does not carry come from ``original``)."""
    from dataclasses import replace

    tci = s.get("vlan_tci", 0)
    vlan = tci & 0xFFF if tci & VLAN_CFI else None
    pcp = (tci >> 13) & 7 if tci & VLAN_CFI else 0
    dl_type = s.get("dl_type", 0)
    fields: dict[str, object] = {
        "dl_src": mac_text(s.get("dl_src", 0)),
        "dl_dst": mac_text(s.get("dl_dst", 0)),
        "dl_type": dl_type,
        "dl_vlan": vlan,
        "dl_vlan_pcp": pcp,
        "skb_mark": s.get("pkt_mark", 0),
    }
    if dl_type == ETH_TYPE_IPV4:
        fields["nw_src"] = IPv4Address(s.get("nw_src", 0))
        fields["nw_dst"] = IPv4Address(s.get("nw_dst", 0))
    elif dl_type == ETH_TYPE_IPV6:
        fields["nw_src"] = IPv6Address(s.get("ipv6_src", 0))
        fields["nw_dst"] = IPv6Address(s.get("ipv6_dst", 0))
    if dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        proto = s.get("nw_proto", 0)
        fields.update(nw_proto=proto, nw_tos=s.get("nw_tos", 0), nw_ttl=s.get("nw_ttl", 0))
        if proto in (6, 17, 132):
            fields.update(tp_src=s.get("tp_src", 0), tp_dst=s.get("tp_dst", 0))
            if proto == 6:
                fields["tcp_flags"] = s.get("tcp_flags", 0)
        elif proto in (1, 58):
            fields.update(icmp_type=s.get("tp_src", 0) & 0xFF, icmp_code=s.get("tp_dst", 0) & 0xFF)
    elif dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        fields.update(
            arp_op=s.get("nw_proto", 0),
            arp_spa=IPv4Address(s.get("nw_src", 0)),
            arp_tpa=IPv4Address(s.get("nw_dst", 0)),
            arp_sha=mac_text(s.get("arp_sha", 0)),
            arp_tha=mac_text(s.get("arp_tha", 0)),
        )
    return replace(original, **fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Formatting, close to OVS's flow_format()

_PROTO_NAMES = {key: name for name, key in PROTOCOL_SHORTHANDS.items() if key[1] is not None}


def port_text(number: int, names: Mapping[int, str] | None = None) -> str:
    """A port as a flow prints it; ``names`` holds the ports to print by name (those known
    only by name: their stand-in numbers must never be shown as real)."""
    if number == LOCAL_PORT:
        return "LOCAL"
    if names and number in names:
        name = names[number]
        return f'"{name}"' if any(c in name for c in ',()"= ') else name
    return str(number)


def format_flow(s: Mapping[str, int], names: Mapping[int, str] | None = None) -> str:
    """The packet in OVS flow syntax (what ``ofproto/trace`` prints after ``Flow:``);
    ``in_port`` by name when ``names`` has it."""
    out: list[str] = []
    if s.get("recirc_id"):
        out.append(f"recirc_id={s['recirc_id']:#x}")
    if s.get("ct_state"):
        out.append(f"ct_state={ct_state_text(s['ct_state'])}")
    for key in ("ct_zone", "ct_mark"):
        if s.get(key):
            out.append(f"{key}={s[key]:#x}" if key == "ct_mark" else f"{key}={s[key]}")
    if s.get("ct_label"):
        out.append(f"ct_label={s['ct_label']:#x}")
    dl_type = s.get("dl_type", 0)
    proto = s.get("nw_proto", 0)
    name = _PROTO_NAMES.get((dl_type, proto))
    if name is None:
        name = {
            ETH_TYPE_IPV4: "ip",
            ETH_TYPE_IPV6: "ipv6",
            ETH_TYPE_ARP: "arp",
            ETH_TYPE_RARP: "rarp",
        }.get(dl_type)
    if name:
        out.append(name)
    if s.get("tun_id") or s.get("tun_src") or s.get("tun_dst"):
        if s.get("tun_id"):
            out.append(f"tun_id={s['tun_id']:#x}")
        out.append(f"tun_src={IPv4Address(s.get('tun_src', 0))}")
        out.append(f"tun_dst={IPv4Address(s.get('tun_dst', 0))}")
    if s.get("metadata"):
        out.append(f"metadata={s['metadata']:#x}")
    for i in range(16):
        if s.get(f"reg{i}"):
            out.append(f"reg{i}={s[f'reg{i}']:#x}")
    if s.get("pkt_mark"):
        out.append(f"pkt_mark={s['pkt_mark']:#x}")
    out.append(f"in_port={port_text(s.get('in_port', 0), names)}")
    tci = s.get("vlan_tci", 0)
    if tci & VLAN_CFI:
        out.append(f"dl_vlan={tci & 0xFFF},dl_vlan_pcp={(tci >> 13) & 7}")
        tci1 = s.get(TCI1, 0)
        out.append(f"vlan_tci1={tci1:#06x}")
    else:
        out.append(f"vlan_tci={tci:#06x}")
    out.append(f"dl_src={mac_text(s.get('dl_src', 0))},dl_dst={mac_text(s.get('dl_dst', 0))}")
    if dl_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        if dl_type == ETH_TYPE_IPV4:
            out.append(
                f"nw_src={IPv4Address(s.get('nw_src', 0))},nw_dst={IPv4Address(s.get('nw_dst', 0))}"
            )
        else:
            out.append(
                f"ipv6_src={IPv6Address(s.get('ipv6_src', 0))},ipv6_dst={IPv6Address(s.get('ipv6_dst', 0))}"
            )
            out.append(f"ipv6_label={s.get('ipv6_label', 0):#07x}")
        if name in ("ip", "ipv6"):
            out.append(f"nw_proto={proto}")
        tos = s.get("nw_tos", 0)
        frag = {0: "no", 1: "first", 3: "later"}.get(s.get("nw_frag", 0), "no")
        out.append(
            f"nw_tos={tos & 0xFC},nw_ecn={tos & 3},nw_ttl={s.get('nw_ttl', 0)},nw_frag={frag}"
        )
        if proto in (1, 58):
            out.append(f"icmp_type={s.get('tp_src', 0)},icmp_code={s.get('tp_dst', 0)}")
        elif proto in (6, 17, 132):
            out.append(f"tp_src={s.get('tp_src', 0)},tp_dst={s.get('tp_dst', 0)}")
            if proto == 6:
                out.append(f"tcp_flags={tcp_flags_text(s.get('tcp_flags', 0))}")
    elif dl_type in (ETH_TYPE_ARP, ETH_TYPE_RARP):
        out.append(
            f"arp_spa={IPv4Address(s.get('nw_src', 0))},arp_tpa={IPv4Address(s.get('nw_dst', 0))},"
            f"arp_op={s.get('nw_proto', 0)},arp_sha={mac_text(s.get('arp_sha', 0))},"
            f"arp_tha={mac_text(s.get('arp_tha', 0))}"
        )
    elif dl_type:
        out.append(f"dl_type={dl_type:#06x}")
    return ",".join(out)


_TCP_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns")


def tcp_flags_text(bits: int) -> str:
    return "|".join(n for i, n in enumerate(_TCP_FLAGS) if bits & (1 << i)) or "0"


def value_text(name: str, value: int) -> str:
    """A field value the way OVS prints it in ``... is now ...`` details."""
    if name in ("dl_src", "dl_dst", "eth_src", "eth_dst", "arp_sha", "arp_tha", "nd_sll", "nd_tll"):
        return mac_text(value)
    if name in ("nw_src", "nw_dst", "ip_src", "ip_dst", "arp_spa", "arp_tpa", "tun_src", "tun_dst"):
        return str(IPv4Address(value))
    return f"{value:#x}"


TUNNEL_KEYS = (
    "tun_id", "tun_src", "tun_dst", "tun_ipv6_src", "tun_ipv6_dst", "tun_flags", "tun_tos",
    "tun_ttl", "tun_gbp_id", "tun_gbp_flags",
)  # fmt: skip
CT_KEYS = (
    "ct_state", "ct_zone", "ct_mark", "ct_label", "ct_nw_proto", "ct_nw_src", "ct_nw_dst",
    "ct_ipv6_src", "ct_ipv6_dst", "ct_tp_src", "ct_tp_dst",
)  # fmt: skip
WIDTHS = {name: info.width for name, info in STORAGE_FIELDS.items()}
