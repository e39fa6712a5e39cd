"""Where a traced packet starts on a Neutron node and what it is meant to reach, from its ports.

``nodetrace trace --from-port/--to-port`` names Neutron ports; what that means on the node is
Neutron's knowledge: a VM sends into its tap while a DHCP server or router sends out of its
namespace's port; a frame received on a port's ``qvb`` device came from br-int and is on its
way to the VM; a packet for a port "from elsewhere" arrives over br-tun's tunnel with the
tunnel key of the port's network; the hybrid plug's ``qvbX``/``qvoX`` are two ends of one veth.
The answers are plain data; the command line turns them into the walk's request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nodetrace.errors import UsageError
from nodetrace.model.node_inventory import PortInfo, PortKind
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.neutron.ports import find_port

TUNNEL_TYPES = frozenset({"gre", "vxlan", "geneve"})
"""Network types whose br-tun tables map a tunnel key to a local VLAN (Neutron's constants)."""


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends a port's packet: ``namespace`` is None for a VM (it sends into ``device``,
    its tap, from outside the node's namespaces); otherwise that namespace's own stack sends
    out of ``device``, and ``who`` says so when the namespace is not in the snapshot."""

    device: str
    namespace: str | None = None
    who: str = ""


@dataclass(frozen=True, slots=True)
class TunnelArrival:
    """A packet for a port arriving from another node: br-tun's tunnel port it comes in on,
    the tunnel metadata (given fields kept, the rest derived) and how it was derived."""

    bridge: str
    port: str
    metadata: tuple[tuple[str, str], ...]
    note: str | None


def sender(port: PortInfo) -> Sender:
    """Who sends what ``--from-port`` names."""
    if port.tap is None:
        raise UsageError(f"port {port.port_id}: no tap device in the snapshot")
    if port.kind is not PortKind.VM and port.namespace is not None:
        return Sender(port.tap, port.namespace)
    if port.kind is not PortKind.VM and port.tap == port.ovs_port:
        return Sender(port.tap, MAIN_NS, f"the {port.kind.value} namespace holding it (not in the snapshot)")  # fmt: skip
    return Sender(port.tap)


def device_ends(snap: Snapshot, device: str, netns: str) -> tuple[PortInfo | None, PortInfo | None]:
    """(sender, receiver) of a frame received on ``device``: on a VM's tap or on its OVS port
    (qvo, or the tap itself with the OVS firewall) the VM sent it; on its qvb it came from
    br-int and is on its way to the VM."""
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


def hybrid_veth_pairs(ports: tuple[PortInfo, ...]) -> tuple[tuple[str, str, str], ...]:
    """(device, peer, source) both ways for each port's ``qvbX``/``qvoX`` (the hybrid plug
    creates them as one veth pair): for the walk where the snapshot does not say the peer."""
    pairs: list[tuple[str, str, str]] = []
    for port in ports:
        qvb = [d for d in port.devices if d.startswith("qvb")]
        qvo = [d for d in port.devices if d.startswith("qvo")]
        if len(qvb) == 1 and len(qvo) == 1 and qvb[0][3:] == qvo[0][3:]:
            source = f"the hybrid plug's veth pair of port {port.port_id}"
            pairs += [(qvb[0], qvo[0], source), (qvo[0], qvb[0], source)]
    return tuple(pairs)


def tunnel_arrival(snap: Snapshot, port: PortInfo, given: Mapping[str, str]) -> TunnelArrival:
    """Where a packet for ``port`` arrives over its network's tunnel: br-tun's tunnel port of
    the network's type (the one from ``tun_src`` when given), with the network's key."""
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
    if kind not in TUNNEL_TYPES:
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
    note = None
    if "tun_src" not in given:
        note = (
            f"--to-port without --from: the packet arrives on {chosen.name} (from "
            f"{iface.remote_ip}) with tun_id={meta['tun_id']}, the {kind} key of local VLAN "
            f"{lvid} ({port.segmentation_id.source})"
        )
    return TunnelArrival(tunnel_bridge, chosen.name, tuple(meta.items()), note)
