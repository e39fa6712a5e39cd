"""``nodetrace trace SNAPSHOT --packet FLOW``: follow one packet through the whole node.

Where it starts: ``--from IFACE`` (a VM's tap, a NIC, an OVS port; a bridge's own port such as
``br-int``: the host's frame enters the bridge from LOCAL, as ``ofproto/trace in_port=LOCAL``; a
frame given with ``tun_src``/``tun_dst``/``tun_id`` arrives encapsulated), ``--from-port UUID``
(the VM of that Neutron port sends it; for a DHCP or router port, its namespace sends it out of
the port's device), ``--from-host`` (the host sends it), or ``--to-port UUID`` alone (it arrives
over the tunnel of that port's network). ``--to-port`` also names what the packet is
meant to reach, so the verdict says whether it got there.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from ipaddress import ip_address
from typing import Any

from nodetrace.engine.walk import (
    FromHost,
    FromInterface,
    FromNamespaceDevice,
    FromOvsPort,
    PeerHint,
    Start,
    Target,
    ToDevice,
    WalkRequest,
    walk,
)
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.errors import UsageError
from nodetrace.model.node_inventory import PortInfo, PortKind
from nodetrace.model.packet_origin import FieldOrigin, Origin
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.model.trace import NetfilterStep, OpenFlowStep, Trace
from nodetrace.neutron.inventory import inventory
from nodetrace.neutron.packet_completion import Ends, complete_packet
from nodetrace.neutron.ports import find_port, listing_cut
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


def _tunnel_start(
    snap: Snapshot, port: PortInfo, given: dict[str, str]
) -> tuple[Start, dict[str, str], list[str]]:
    """Where a packet for ``port`` arrives over its network's tunnel: br-tun's tunnel port."""
    notes: list[str] = []
    if port.local_vlan is None:
        raise UsageError(
            f"port {port.port_id}: its local VLAN is unknown (no OVSDB tag and no flow names "
            "it); give --from"
        )
    lvid = port.local_vlan.value
    if port.network_type is None or port.segmentation_id is None:
        raise UsageError(
            f"port {port.port_id}: no br-tun flow maps a tunnel key to its local VLAN {lvid} "
            "(not a tunnel network?); give --from"
        )
    kind, seg = port.network_type.value, port.segmentation_id.value
    if kind not in TUNNEL_TABLES.values():
        raise UsageError(
            f"port {port.port_id}: its network is {kind} {seg}, not a tunnel network "
            f"({port.network_type.source}); give --from"
        )
    switch = snap.ovs
    bridges = sorted(switch.bridges, key=lambda b: b.name != "br-tun") if switch else []
    tunnel_bridge, tunnels = "br-tun", []
    for b in bridges:
        tunnels = [p for p in b.ports if p.type == kind and p.interface]
        if tunnels:
            tunnel_bridge = b.name
            break
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
            f"{iface.remote_ip}) with tun_id={meta['tun_id']}, the {kind} key of local VLAN "
            f"{lvid} ({port.segmentation_id.source})"
        )
    return FromOvsPort(tunnel_bridge, chosen.name), meta, notes


def build_request(snap: Snapshot, args: argparse.Namespace) -> tuple[WalkRequest, list[str]]:
    """The walk's request: where the packet starts, what it is for, and the packet completed
    from the node's data field by field (each field's origin travels with it)."""
    spec = parse_flow(args.packet)
    meta = dict(spec.metadata)
    notes: list[str] = []
    target: Target | None = None
    to_port = find_port(snap, args.to_port) if args.to_port else None
    if to_port is not None:
        target = _vm_target(to_port)
    sender: PortInfo | None = None
    over_tunnel = False
    start: Start
    if args.from_iface:
        flows_bridge = _check_device(snap, args.from_iface, args.netns)
        if flows_bridge is not None:
            start = FromOvsPort(flows_bridge, args.from_iface)
            notes.append(
                f"--from {args.from_iface}: known only as a port that {flows_bridge}'s flows "
                "name: the packet enters that bridge's pipeline on it"
            )
        else:
            start = FromInterface(args.from_iface, args.netns)
        sender, receiver = _port_of_device(snap, args.from_iface, args.netns)
        if to_port is None and receiver is not None:
            to_port = receiver
            target = _vm_target(receiver)
    elif args.from_port:
        port = find_port(snap, args.from_port)
        if port.tap is None:
            raise UsageError(f"port {port.port_id}: no tap device in the snapshot")
        # A VM sends into its tap; a DHCP server or router sends out of its namespace's port.
        if port.kind is not PortKind.VM and port.namespace is not None:
            start = FromNamespaceDevice(port.tap, port.namespace)
        elif port.kind is not PortKind.VM and port.tap == port.ovs_port:
            who = f"the {port.kind.value} namespace holding it (not in the snapshot)"
            start = FromNamespaceDevice(port.tap, MAIN_NS, who)
        else:
            start = FromInterface(port.tap)
        sender = port
    elif args.from_host:
        start = FromHost(args.netns)
    elif to_port is not None:
        start, meta, more = _tunnel_start(snap, to_port, meta)
        notes += more
        over_tunnel = True
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
    ports = _node_ports(snap)
    ends = Ends(sender, to_port, ports, over_tunnel, bool(args.from_host))
    given_meta = dict(spec.metadata)
    done = complete_packet(snap, spec.packet, spec.given or frozenset(), ends, given_meta.items())
    derived_meta = tuple(
        FieldOrigin(k, v, Origin.DERIVED, f"the tunnel of port {to_port.port_id}'s network")
        for k, v in meta.items()
        if k not in given_meta and to_port is not None
    )
    request = WalkRequest(
        done.packet, start, tuple(meta.items()), args.ct_state, target,
        flow=done.flow + derived_meta, peer_hints=_hybrid_pairs(ports),
    )  # fmt: skip
    return request, notes


def _node_ports(snap: Snapshot) -> tuple[PortInfo, ...]:
    return tuple(inventory(snap).ports)


def _hybrid_pairs(ports: tuple[PortInfo, ...]) -> tuple[PeerHint, ...]:
    """``qvbX``/``qvoX`` of one port are the two ends of one veth (the hybrid plug creates
    them as a pair): the walk uses this only where the snapshot does not say the peer."""
    hints: list[PeerHint] = []
    for port in ports:
        qvb = [d for d in port.devices if d.startswith("qvb")]
        qvo = [d for d in port.devices if d.startswith("qvo")]
        if len(qvb) == 1 and len(qvo) == 1 and qvb[0][3:] == qvo[0][3:]:
            source = f"the hybrid plug's veth pair of port {port.port_id}"
            hints.append(PeerHint(qvb[0], qvo[0], source))
            hints.append(PeerHint(qvo[0], qvb[0], source))
    return tuple(hints)


def _vm_target(port: PortInfo) -> Target | None:
    if port.tap is None:
        return None
    return ToDevice(port.tap, label=f"the VM of port {port.port_id} ({port.tap})")


def _port_of_device(
    snap: Snapshot, device: str, netns: str
) -> tuple[PortInfo | None, PortInfo | None]:
    """(sender, receiver): a frame received on a VM's tap or on its OVS port (qvo, or the tap
    itself with the OVS firewall) was sent by that VM; one received on its qvb came from br-int
    and is on its way to the VM."""
    if netns != MAIN_NS:
        return None, None
    try:
        port = find_port(snap, device)
    except UsageError:
        return None, None
    if port.kind != PortKind.VM:
        return None, None
    if device in (port.tap, port.ovs_port):
        return port, None
    if device.startswith("qvb"):
        return None, port
    return None, None


def _check_device(snap: Snapshot, name: str, netns: str) -> str | None:
    """``--from`` must name a device of the snapshot; a typo gets the names close to it.

    Returns the bridge whose flows alone name the port (a dump taken with names, no port
    listing), or ``None`` for a device the snapshot lists.
    """
    if snap.topology.interface(name, netns) is not None:
        return None
    bridges = snap.ovs.bridges if snap.ovs else ()
    ovs_names = [p.name for b in bridges for p in b.ports]
    if netns == MAIN_NS and name in ovs_names:
        return None
    named = {b.name: b.ports_named_by_flows() for b in bridges} if netns == MAIN_NS else {}
    for bridge, names in named.items():
        if name in names:
            return bridge
    known = [i.name for i in snap.topology.in_namespace(netns)]
    if netns == MAIN_NS:
        known += ovs_names + [n for names in named.values() for n in names]
    close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
    ns = f" in namespace {netns}" if netns != MAIN_NS else ""
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    cut = listing_cut(snap) if netns == MAIN_NS else ""
    raise UsageError(f"--from {name}: no such device{ns} in the snapshot{hint}{cut}")


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
