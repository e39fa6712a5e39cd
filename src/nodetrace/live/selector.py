"""What traffic a live trace follows: a packet in OVS flow syntax, a Neutron port, or both.

A :class:`Selector` is one narrow description of packets (family, addresses, protocol, ports,
ICMP type, incoming device, source MAC) that the rule builders (``rules.py``) turn into
iptables matches or nf_tables expressions. A flow spec gives one selector; a port gives one per
address and direction (from it, to it), each narrowed by the flow spec given with it. Fields of
the flow spec that no match uses are named in ``notes``: the rules then match more than the
spec, never less.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from nodetrace.errors import UsageError
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Family, IPProto, Packet
from nodetrace.parsers.flow_syntax import parse_flow

IPAddress = IPv4Address | IPv6Address

USED_FIELDS = frozenset(
    {"dl_type", "nw_proto", "nw_src", "nw_dst", "tp_src", "tp_dst", "icmp_type", "icmp_code",
     "dl_src"}
)  # fmt: skip
"""Packet fields a trace rule can match on; the others are named as not narrowing the rule."""

PORT_PROTOCOLS = frozenset({IPProto.TCP, IPProto.UDP, IPProto.SCTP})


@dataclass(frozen=True, slots=True)
class Selector:
    """One narrow set of packets; ``None`` means any."""

    family: Family
    proto: int | None = None
    src: IPAddress | None = None
    dst: IPAddress | None = None
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    in_dev: str | None = None
    """The device the packet arrives on: only in PREROUTING (OUTPUT has no input device)."""
    mac_src: str | None = None
    """Only in PREROUTING (a locally sent packet has no source MAC yet)."""

    @property
    def input_only(self) -> bool:
        """True when the selector can only be matched where packets arrive (PREROUTING)."""
        return self.in_dev is not None or self.mac_src is not None

    def describe(self) -> str:
        """The selector in flow syntax, for people (``tcp,nw_dst=10.0.0.5,tp_dst=22``)."""
        v6 = self.family is Family.IPV6
        parts = [_PROTO_WORD.get((self.proto, v6), "ipv6" if v6 else "ip")]
        if self.proto is not None and (self.proto, v6) not in _PROTO_WORD:
            parts.append(f"nw_proto={self.proto}")
        if self.in_dev:
            parts.append(f"in_port={self.in_dev}")
        if self.mac_src:
            parts.append(f"dl_src={self.mac_src}")
        src, dst = ("ipv6_src", "ipv6_dst") if v6 else ("nw_src", "nw_dst")
        parts += [f"{src}={self.src}"] if self.src is not None else []
        parts += [f"{dst}={self.dst}"] if self.dst is not None else []
        parts += [f"tp_src={self.sport}"] if self.sport is not None else []
        parts += [f"tp_dst={self.dport}"] if self.dport is not None else []
        icmp = "icmpv6" if v6 else "icmp"
        parts += [f"{icmp}_type={self.icmp_type}"] if self.icmp_type is not None else []
        parts += [f"{icmp}_code={self.icmp_code}"] if self.icmp_code is not None else []
        return ",".join(parts)

    def matches(self, packet: Packet) -> bool:
        """True unless a logged packet shows a field that contradicts this selector.

        A TRACE record does not say which rule started the trace, so the packet's own fields
        decide; a field the log does not show (``xtables-monitor`` prints no protocol or ports
        for ICMP) cannot contradict.
        """
        if packet.family is not self.family:
            return False
        shown = (
            (self.proto, packet.nw_proto or None),
            (self.src, packet.nw_src),
            (self.dst, packet.nw_dst),
            (self.sport, packet.tp_src),
            (self.dport, packet.tp_dst),
            (self.icmp_type, packet.icmp_type),
            (self.icmp_code, packet.icmp_code),
        )
        if any(want is not None and got is not None and want != got for want, got in shown):
            return False
        unset_mac = packet.dl_src == Packet().dl_src
        return self.mac_src is None or unset_mac or self.mac_src == packet.dl_src


_PROTO_WORD: dict[tuple[int | None, bool], str] = {
    (IPProto.TCP, False): "tcp", (IPProto.TCP, True): "tcp6",
    (IPProto.UDP, False): "udp", (IPProto.UDP, True): "udp6",
    (IPProto.SCTP, False): "sctp", (IPProto.SCTP, True): "sctp6",
    (IPProto.ICMP, False): "icmp", (IPProto.ICMPV6, True): "icmp6",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Selection:
    """The selectors of one live trace, and what the user should know about them."""

    selectors: tuple[Selector, ...]
    notes: tuple[str, ...] = ()

    @property
    def families(self) -> tuple[Family, ...]:
        return tuple(dict.fromkeys(s.family for s in self.selectors))

    def matches(self, packet: Packet | None) -> bool:
        return packet is not None and any(s.matches(packet) for s in self.selectors)


def from_flow(text: str) -> Selection:
    """The selector of a packet in flow syntax; a packet TRACE cannot see is refused."""
    spec = parse_flow(text)
    packet = spec.packet
    given = spec.given if spec.given is not None else _non_default(packet)
    if packet.dl_type not in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        raise UsageError(
            f"--packet {text}: netfilter's TRACE follows IPv4 and IPv6 packets only; "
            "give ip, ipv6, tcp, udp, icmp... (ARP and other frames are not traced)"
        )
    family = Family.IPV4 if packet.dl_type == ETH_TYPE_IPV4 else Family.IPV6
    notes: list[str] = []
    in_dev: str | None = None
    for key, value in spec.metadata:
        if key == "in_port":
            in_dev = value
        else:
            notes.append(f"{key}={value}: pipeline metadata, not matched by the trace rules")
    unused = sorted(given - USED_FIELDS)
    if unused:
        notes.append(
            f"{', '.join(unused)}: not matched by the trace rules (they trace more packets "
            "than the spec; each packet shown is one the rules caught)"
        )
    ported = packet.nw_proto in PORT_PROTOCOLS
    icmp = packet.nw_proto in (IPProto.ICMP, IPProto.ICMPV6)
    selector = Selector(
        family=family,
        proto=packet.nw_proto if "nw_proto" in given else None,
        src=packet.nw_src if "nw_src" in given else None,
        dst=packet.nw_dst if "nw_dst" in given else None,
        sport=packet.tp_src if ported and "tp_src" in given else None,
        dport=packet.tp_dst if ported and "tp_dst" in given else None,
        icmp_type=packet.icmp_type if icmp and "icmp_type" in given else None,
        icmp_code=packet.icmp_code if icmp and "icmp_code" in given else None,
        in_dev=in_dev,
        mac_src=packet.dl_src if "dl_src" in given else None,
    )
    return Selection((selector,), tuple(notes))


def for_port(
    port_label: str, addresses: Sequence[IPAddress], narrowing: Selection | None
) -> Selection:
    """Selectors for the traffic from and to a port's ``addresses``, narrowed by ``narrowing``
    (the flow spec given with the port) when there is one."""
    base = narrowing.selectors[0] if narrowing is not None else None
    notes = list(narrowing.notes) if narrowing is not None else []
    if not addresses:
        raise UsageError(
            f"port {port_label}: the node shows no IP address for it, so no trace rule can "
            "select its traffic; give --packet with nw_src/nw_dst instead"
        )
    out: list[Selector] = []
    for addr in addresses:
        family = Family.IPV4 if addr.version == 4 else Family.IPV6
        if base is not None and base.family is not family:
            notes.append(f"{addr}: not traced (the --packet filter is {base.family.value})")
            continue
        start = base if base is not None else Selector(family)
        if start.src is None or start.src == addr:
            out.append(replace(start, src=addr))
        if start.dst is None or start.dst == addr:
            out.append(replace(start, dst=addr))
    if not out:
        raise UsageError(f"port {port_label}: no address of the port fits the --packet filter")
    return Selection(tuple(dict.fromkeys(out)), tuple(notes))


def parse_address(text: str) -> IPAddress:
    try:
        return ip_address(text)
    except ValueError:
        raise UsageError(f"{text}: not an IP address") from None


def _non_default(packet: Packet) -> frozenset[str]:
    default = Packet()
    return frozenset(
        name for name in USED_FIELDS if getattr(packet, name) != getattr(default, name)
    )
