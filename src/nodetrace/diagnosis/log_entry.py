"""Where a logged packet entered the node, and what of its headers the log left out, read
from the log's records, the rules they matched and the snapshot.

A kernel TRACE record names the bridge port a bridged packet came in on (``PHYSIN=``);
nf_tables' trace events name only the bridge (``iif``), so the port is found from a
``--physdev-in`` rule the packet matched, from the bridge's other port when a
``--physdev-out`` rule names where it went, or from the bridge's forwarding table (the port
its source MAC was learned on). A record without a bridge port whose frame is not addressed to
the device is bridged too; one addressed to it was received by the host stack (``IN=br-phys``
on an OVS internal port is the host receiving, not the bridge's pipeline).

``xtables-monitor`` prints no IP protocol: it is taken from a ``-p`` rule the packet matched
(and an ICMP type from ``--icmp-type``), said, or the packet cannot be rebuilt.
"""

from __future__ import annotations

from dataclasses import replace

from nodetrace.diagnosis.facts import find_device
from nodetrace.engine import linux_bridge
from nodetrace.engine.walk import FromHost, FromInterface, ReceivedOn, Start
from nodetrace.model.netfilter import IcmpMatch, PhysdevMatch, Rule
from nodetrace.model.packet import IPProto, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import LinkKind
from nodetrace.model.trace import Hook, NetfilterStep, StepKind, Trace

_PROTOCOLS = {
    "icmp": IPProto.ICMP, "1": IPProto.ICMP, "tcp": IPProto.TCP, "6": IPProto.TCP,
    "udp": IPProto.UDP, "17": IPProto.UDP, "ipv6-icmp": IPProto.ICMPV6,
    "icmpv6": IPProto.ICMPV6, "58": IPProto.ICMPV6, "sctp": IPProto.SCTP, "132": IPProto.SCTP,
}  # fmt: skip


def matched_rules(trace: Trace) -> list[Rule]:
    """The rules the packet matched (a ``rule`` step is a match; a chain's end is not)."""
    return [
        s.rule
        for s in trace.steps
        if isinstance(s, NetfilterStep) and s.kind is StepKind.RULE and s.rule is not None
    ]


def with_protocol(packet: Packet, trace: Trace) -> tuple[Packet | None, str]:
    """``packet`` with the IP protocol (and ICMP type) the matched rules imply, and how;
    ``None`` when no matched rule says the protocol."""
    for rule in matched_rules(trace):
        proto = rule.ip.proto
        if proto is None or proto.negated or proto.value not in _PROTOCOLS:
            continue
        number = int(_PROTOCOLS[proto.value])
        packet = replace(packet, nw_proto=number)
        said = f"protocol {proto.value}: the packet matched {rule.text}"
        icmp = next(
            (m for r in matched_rules(trace) for m in r.matches if isinstance(m, IcmpMatch)),
            None,
        )
        if icmp is not None and not icmp.negated and icmp.icmp_type is not None:
            packet = replace(packet, icmp_type=icmp.icmp_type, icmp_code=icmp.code_min)
            said += f"; ICMP type {icmp.icmp_type} from --icmp-type"
        elif number in (IPProto.ICMP, IPProto.ICMPV6):
            echo = 8 if number == IPProto.ICMP else 128
            packet = replace(packet, icmp_type=echo, icmp_code=0)
            said += f"; its ICMP type is not printed either: an echo request ({echo}) assumed"
        return packet, said
    return None, ""


def _physdev(trace: Trace, field: str) -> str | None:
    for rule in matched_rules(trace):
        for match in rule.matches:
            value = getattr(match, field) if isinstance(match, PhysdevMatch) else None
            if value is not None and not value.negated:
                return str(value.value)
    return None


def bridge_port(
    snapshot: Snapshot, trace: Trace, bridge: str, netns: str, dl_src: str
) -> tuple[str | None, str]:
    """The port of Linux bridge ``bridge`` a logged packet came in on, and how it is known."""
    port = _physdev(trace, "physdev_in")
    if port is not None:
        return port, f"it matched --physdev-in {port}"
    ports = [p.name for p in snapshot.topology.ports_of(bridge, netns)]
    out = _physdev(trace, "physdev_out") or next(
        (s.physout for s in trace.steps if isinstance(s, NetfilterStep) and s.physout), None
    )
    if out is not None and len(ports) == 2 and out in ports:
        other = next(p for p in ports if p != out)
        return other, f"it left by {out}, and {bridge}'s other port is {other}"
    entry = next(
        (e for e in snapshot.topology.fdb_of(bridge, netns) if e.mac == dl_src.lower()), None
    )
    if entry is not None and not entry.is_local:
        return entry.dev, f"{bridge}'s forwarding table has its source {dl_src} on {entry.dev}"
    return None, (
        f"the log names the bridge {bridge} but not the port the packet came in on, and no "
        "rule it matched nor the bridge's forwarding table tells"
    )


def entry(
    snapshot: Snapshot, trace: Trace, first: NetfilterStep, packet: Packet, netns: str
) -> tuple[Start | None, str]:
    """Where the packet starts, and why there (or why it cannot be said: ``None``)."""
    if first.physin:
        return FromInterface(first.physin, netns), (
            f"starts entering {first.in_dev} on {first.physin} (PHYSIN= of the first record)"
        )
    if not first.in_dev:
        if first.hook in (Hook.OUTPUT, None):
            return FromHost(netns), "sent by the host itself (no IN= device: first seen in OUTPUT)"
        return None, "the first record names no input device"
    dev = find_device(snapshot, first.in_dev, netns)
    if dev is not None and dev.kind is LinkKind.BRIDGE:
        mac = (dev.mac or "").lower()
        dst = packet.dl_dst.lower()
        bridged = any(
            isinstance(s, NetfilterStep) and s.out_dev == dev.name and s.in_dev == dev.name
            for s in trace.steps
        )
        if bridged or (dst != mac and not linux_bridge.is_multicast(dst)):
            port, how = bridge_port(snapshot, trace, dev.name, netns, packet.dl_src)
            if port is None:
                return None, how
            return FromInterface(port, netns), f"starts entering {dev.name} on {port}: {how}"
    return ReceivedOn(first.in_dev, netns), (
        f"starts received by the host stack on {first.in_dev} (IN= of the first record)"
    )
