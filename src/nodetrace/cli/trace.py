"""``nodetrace trace SNAPSHOT --packet FLOW``: follow one packet through the whole node.

Where it starts: ``--from IFACE`` (a VM's tap, a NIC, an OVS port; a frame given with
``tun_src``/``tun_dst``/``tun_id`` arrives encapsulated), ``--from-port UUID`` (the VM of that
Neutron port sends it), ``--from-host`` (the host sends it), or ``--to-port UUID`` alone (it
arrives over the tunnel of that port's network). ``--to-port`` also names what the packet is
meant to reach, so the verdict says whether it got there.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

from nodetrace.engine.walk import (
    FromHost,
    FromInterface,
    FromOvsPort,
    Start,
    Target,
    ToDevice,
    WalkRequest,
    walk,
)
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.errors import UsageError
from nodetrace.model.ovs_switch import SwitchPort
from nodetrace.model.packet import Family, Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.model.trace import NetfilterStep, OpenFlowStep, Trace
from nodetrace.neutron import naming
from nodetrace.neutron.addresses import port_addresses
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.render.json import dumps
from nodetrace.render.kernel_trace import render_kernel_trace
from nodetrace.render.walk_tree import render_tree
from nodetrace.snapshot.load import load

ZERO_MAC = "00:00:00:00:00:00"
TUNNEL_TABLES = {3: "gre", 4: "vxlan", 6: "geneve"}
"""br-tun tables that map a tunnel key to a local VLAN, by tunnel type (Neutron's constants)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "trace",
        help="follow a packet through the whole node (OVS, veth, Linux bridge, iptables)",
        description="Simulate one packet through a node snapshot: OpenFlow pipelines, veth "
        "pairs, Linux bridges with br_netfilter and iptables, routing and tunnels, until it is "
        "delivered, dropped (by which flow or rule) or unknown (why). FLOW is OVS flow syntax, "
        "as ovs-appctl ofproto/trace takes it.",
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT")
    parser.add_argument("--packet", required=True, metavar="FLOW")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--from", dest="from_iface", metavar="IFACE", help="enters on this device")
    start.add_argument("--from-port", metavar="UUID", help="sent by the VM of this Neutron port")
    start.add_argument("--from-host", action="store_true", help="sent by the host (OUTPUT)")
    parser.add_argument(
        "--to-port",
        metavar="UUID",
        help="meant for the VM of this Neutron port; alone: arrives over its network's tunnel",
    )
    parser.add_argument("--netns", default=MAIN_NS, metavar="NS", help="namespace of --from")
    parser.add_argument("--ct-state", metavar="S", help="conntrack state (default: NEW, said)")
    parser.add_argument("--format", choices=("tree", "kernel", "ofproto", "json"), default="tree")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class NeutronPort:
    """A VM port found in a snapshot, with its devices."""

    port_id: str
    tap: str | None
    ovs_bridge: str | None
    ovs_port: SwitchPort | None
    mac: str | None


def find_port(snap: Snapshot, wanted: str) -> NeutronPort:
    """The Neutron port ``wanted`` (full UUID or a prefix of at least 8 characters)."""
    if len(wanted) < 8:
        raise UsageError(f"{wanted}: give at least 8 characters of the port UUID")
    found: list[NeutronPort] = []
    if snap.ovs is not None:
        for b in snap.ovs.bridges:
            for p in b.ports:
                iface = p.interface
                port_id = iface.iface_id if iface is not None else None
                if port_id and port_id.startswith(wanted):
                    tap = naming.tap_name(port_id)
                    if snap.topology.interface(tap) is None:
                        tap = p.name
                    mac = iface.attached_mac if iface is not None else None
                    found.append(NeutronPort(port_id, tap, b.name, p, mac))
    if not found:
        tap = naming.tap_name(wanted)
        if len(wanted) >= naming.DEVICE_NAME_LEN - 3 and snap.topology.interface(tap) is not None:
            found.append(NeutronPort(wanted, tap, None, None, None))
    if not found:
        raise UsageError(
            f"port {wanted}: no OVS interface with this iface-id and no {naming.tap_name(wanted)} "
            "device in the snapshot"
        )
    if len({f.port_id for f in found}) > 1:
        raise UsageError(f"port {wanted}: several ports match; give more of the UUID")
    return found[0]


def _tunnel_start(
    snap: Snapshot, port: NeutronPort, given: dict[str, str]
) -> tuple[Start, dict[str, str], list[str]]:
    """Where a packet for ``port`` arrives over its network's tunnel: br-tun's tunnel port."""
    notes: list[str] = []
    if port.ovs_port is None or port.ovs_port.port is None or port.ovs_port.port.tag is None:
        raise UsageError(
            f"port {port.port_id}: its local VLAN is unknown (no OVS tag); give --from"
        )
    lvid = port.ovs_port.port.tag
    flows = snap.raw_outputs("ovs-ofctl-dump-flows", bridge="br-tun")
    lines = flows[0].text.splitlines() if flows else []
    seg = next(
        (
            v.segmentation_id
            for v in naming.local_vlans_from_tunnel_flows(lines)
            if v.local_vlan == lvid
        ),
        None,
    )
    if seg is None:
        raise UsageError(
            f"port {port.port_id}: no br-tun flow maps a tunnel key to its local VLAN {lvid} "
            "(not a tunnel network?); give --from"
        )
    kind = "vxlan"
    for line in lines:
        m = re.search(r"table=(\d+),.*tun_id=(0x[0-9a-f]+|\d+)\b", line)
        if m and int(m.group(2), 0) == seg and int(m.group(1)) in TUNNEL_TABLES:
            kind = TUNNEL_TABLES[int(m.group(1))]
            break
    bridge = snap.ovs.bridge("br-tun") if snap.ovs is not None else None
    tunnels = [
        p for p in (bridge.ports if bridge is not None else ()) if p.type == kind and p.interface
    ]
    if not tunnels:
        raise UsageError(f"br-tun has no {kind} port to receive the packet on; give --from")
    chosen = next(
        (p for p in tunnels if p.interface and p.interface.remote_ip == given.get("tun_src")),
        tunnels[0],
    )
    iface = chosen.interface
    assert iface is not None
    meta = dict(given)
    meta.setdefault("tun_id", hex(seg))
    if iface.remote_ip and iface.remote_ip != "flow":
        meta.setdefault("tun_src", iface.remote_ip)
    if iface.local_ip and iface.local_ip != "flow":
        meta.setdefault("tun_dst", iface.local_ip)
    if "tun_src" not in given:
        notes.append(
            f"--to-port without --from: the packet arrives on {chosen.name} (from "
            f"{iface.remote_ip}) with tun_id={meta['tun_id']}, the key of local VLAN {lvid}"
        )
    return FromOvsPort("br-tun", chosen.name), meta, notes


def _port_address(
    snap: Snapshot, packet: Packet, port_id: str, field: str, notes: list[str]
) -> Packet:
    """Fill ``nw_src``/``nw_dst`` from the port's anti-spoofing rules when the user left it out."""
    family = packet.family
    if family is None or getattr(packet, field) is not None:
        return packet
    version = 4 if family is Family.IPV4 else 6
    rulesets = (snap.main.iptables, snap.main.ip6tables)
    addresses = [a for a in port_addresses(rulesets, port_id) if a.version == version]
    if not addresses:
        return packet
    notes.append(
        f"{field} not given: the port's address {addresses[0]} used (its anti-spoofing chain)"
    )
    if field == "nw_src":
        return dataclasses.replace(packet, nw_src=addresses[0])
    return dataclasses.replace(packet, nw_dst=addresses[0])


def build_request(snap: Snapshot, args: argparse.Namespace) -> tuple[WalkRequest, list[str]]:
    spec = parse_flow(args.packet)
    packet: Packet = spec.packet
    meta = dict(spec.metadata)
    notes: list[str] = []
    target: Target | None = None
    to_port = find_port(snap, args.to_port) if args.to_port else None
    if to_port is not None and to_port.tap is not None:
        target = ToDevice(to_port.tap, label=f"the VM of port {to_port.port_id} ({to_port.tap})")
        if packet.dl_dst == ZERO_MAC and to_port.mac:
            packet = dataclasses.replace(packet, dl_dst=to_port.mac)
            notes.append(f"dl_dst not given: the port's MAC {to_port.mac} used")
        packet = _port_address(snap, packet, to_port.port_id, "nw_dst", notes)
    start: Start
    if args.from_iface:
        start = FromInterface(args.from_iface, args.netns)
        if snap.topology.interface(args.from_iface, args.netns) is None and (
            snap.ovs is None or not any(b.port_by_name(args.from_iface) for b in snap.ovs.bridges)
        ):
            raise UsageError(f"--from {args.from_iface}: no such device in the snapshot")
    elif args.from_port:
        port = find_port(snap, args.from_port)
        if port.tap is None:
            raise UsageError(f"port {port.port_id}: no tap device in the snapshot")
        start = FromInterface(port.tap)
        if packet.dl_src == ZERO_MAC and port.mac:
            packet = dataclasses.replace(packet, dl_src=port.mac)
            notes.append(f"dl_src not given: the port's MAC {port.mac} used")
        packet = _port_address(snap, packet, port.port_id, "nw_src", notes)
    elif args.from_host:
        start = FromHost(args.netns)
    elif to_port is not None:
        start, meta, more = _tunnel_start(snap, to_port, meta)
        notes += more
    else:
        raise UsageError(
            "say where the packet starts: --from, --from-port, --from-host or --to-port"
        )
    for key in ("tun_src", "tun_dst"):
        if key in meta:
            try:
                ip_address(meta[key])
            except ValueError:
                raise UsageError(f"{key}={meta[key]}: not an IP address") from None
    request = WalkRequest(packet, start, tuple(meta.items()), args.ct_state, target)
    return request, notes


def run(args: argparse.Namespace) -> int:
    snap = load(args.snapshot)
    request, notes = build_request(snap, args)
    trace = walk(snap, request, engines_for(snap, ct_state=args.ct_state), switch=snap.ovs)
    if notes:
        trace = dataclasses.replace(trace, assumptions=(*notes, *trace.assumptions))
    sys.stdout.write(render(trace, args.format))
    return 0


def render(trace: Trace, fmt: str) -> str:
    if fmt == "json":
        return dumps(trace, indent=2) + "\n"
    if fmt == "kernel":
        return render_kernel(trace)
    if fmt == "ofproto":
        return render_ofproto(trace)
    return render_tree(trace)


def render_kernel(trace: Trace) -> str:
    """The netfilter part as the kernel logs it with TRACE on (legacy iptables lines).

    Without a ``-j TRACE`` rule the kernel logs nothing; then every step is printed, as if the
    packet had been marked for tracing where it entered netfilter.
    """
    steps = [s for s in trace.steps if isinstance(s, NetfilterStep) and s.packet is not None]
    traced = any(s.traced for s in steps)
    if not traced and steps:
        print(
            "nodetrace: no -j TRACE rule marks this packet: every netfilter step is printed",
            file=sys.stderr,
        )
    return "".join(line + "\n" for line in render_kernel_trace(steps, only_traced=traced))


def render_ofproto(trace: Trace) -> str:
    """The OpenFlow part in ``ofproto/trace``'s shape: per bridge, the tables and actions."""
    out: list[str] = []
    bridge = None
    for s in trace.steps:
        if not isinstance(s, OpenFlowStep):
            continue
        if s.bridge != bridge:
            bridge = s.bridge
            out.append(f'bridge("{bridge}")')
            out.append("-" * (len(bridge) + 10))
        if s.priority is None:
            out.append(f" {s.table}. No match.")
        else:
            cookie = f", cookie {s.cookie:#x}" if s.cookie else ""
            match = f"{s.match}, " if s.match else ""
            out.append(f" {s.table}. {match}priority {s.priority}{cookie}")
        if s.actions:
            out.append(f"    {s.actions}")
    return "\n".join(out) + ("\n" if out else "")
