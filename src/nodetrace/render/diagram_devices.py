"""The devices of a node as the diagram draws them: what each one is, and the lines shown
under its name.

Kinds come from the snapshot only: the kernel's ``ip -d`` kind, OVSDB's interface type, and
the Neutron inventory for router ports. Two are derived, and the drawing says so: a provider
bridge's system port is the node's ``uplink``; a device of unknown kind is ``other``. The
datapath's own devices and loopback carry no traffic of their own and are not drawn.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from nodetrace.model.node_inventory import Inventory, PortInfo, PortKind
from nodetrace.model.ovs_switch import BridgeState, SwitchPort
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS, Interface, LinkKind

Key = tuple[str, str]
"""A device: (namespace, name)."""

DATAPATH_DEVICES = frozenset({"ovs-system", "ovs-netdev"})
"""The datapath's own devices: they carry no traffic of their own and are not drawn."""
TUNNEL_TYPES = frozenset({"vxlan", "gre", "geneve", "stt", "lisp", "erspan", "ip6gre", "gtpu"})


class NodeKind(StrEnum):
    """The ``KIND`` class of a drawn device (the page's styles and scripts rely on them)."""

    OVS_BRIDGE = "ovs-bridge"
    OVS_PORT = "ovs-port"
    LINUX_BRIDGE = "linux-bridge"
    VETH = "veth"
    TAP = "tap"
    TUNNEL = "tunnel"
    UPLINK = "uplink"
    ROUTER_PORT = "router-port"
    OTHER = "other"


@dataclass
class Devices:
    """Every device to draw, with its kind and lines, before boxes are chosen."""

    rows: dict[Key, tuple[NodeKind, list[str], list[str]]] = field(default_factory=dict)
    ovs_port_of: dict[Key, tuple[BridgeState, SwitchPort]] = field(default_factory=dict)

    def add(self, key: Key, kind: NodeKind, details: Iterable[str], search: Iterable[str]) -> None:
        if key in self.rows:
            _, lines, words = self.rows[key]
            lines.extend(d for d in details if d not in lines)
            words.extend(search)
        else:
            self.rows[key] = (kind, list(details), list(search))


def _netns_index(snap: Snapshot) -> dict[str, str]:
    """Where each device name lives, main namespace first (an OVS port names no namespace)."""
    where: dict[str, str] = {}
    for iface in sorted(snap.topology.interfaces, key=lambda i: i.netns != MAIN_NS):
        where.setdefault(iface.name, iface.netns)
    return where


def _addresses(iface: Interface | None) -> list[str]:
    return [str(a.interface) for a in iface.addresses] if iface is not None else []


def _kernel_kind(iface: Interface) -> NodeKind:
    match iface.kind:
        case LinkKind.BRIDGE:
            return NodeKind.LINUX_BRIDGE
        case LinkKind.VETH:
            return NodeKind.VETH
        case LinkKind.TAP | LinkKind.TUN:
            return NodeKind.TAP
        case LinkKind.VXLAN | LinkKind.GRE | LinkKind.GRETAP | LinkKind.GENEVE:
            return NodeKind.TUNNEL
        case LinkKind.PHYSICAL | LinkKind.BOND:
            return NodeKind.UPLINK if iface.netns == MAIN_NS else NodeKind.OTHER
        case LinkKind.OPENVSWITCH:
            return NodeKind.OVS_PORT
        case (
            LinkKind.LOOPBACK
            | LinkKind.VLAN
            | LinkKind.MACVLAN
            | LinkKind.DUMMY
            | LinkKind.OTHER
            | LinkKind.UNKNOWN
        ):
            return NodeKind.OTHER


def _kernel_details(iface: Interface, snap: Snapshot) -> list[str]:
    lines: list[str] = []
    veth = iface.veth
    if veth is not None:
        peer = snap.topology.veth_peer(iface)
        if peer is not None:
            where = f" ({peer.netns})" if peer.netns != iface.netns else ""
            lines.append(f"veth ↔ {peer.name}{where}")
        elif veth.peer_netns is not None:
            lines.append(f"veth ↔ namespace {veth.peer_netns}")
        else:
            lines.append("veth, peer not in the snapshot")
    elif iface.kind is LinkKind.BRIDGE:
        bridge = iface.bridge
        ageing = "" if bridge is None or bridge.ageing_time != 0 else ", ageing 0 (floods)"
        lines.append(f"Linux bridge{ageing}")
    elif iface.tunnel is not None:
        t = iface.tunnel
        remote = f" → {t.remote}" if t.remote is not None else (" external" if t.external else "")
        key = f" key {t.key}" if t.key is not None else ""
        lines.append(f"{iface.kind.value}{remote}{key}")
    elif iface.kind is LinkKind.UNKNOWN:
        lines.append("kind not in the snapshot")
    elif iface.kind is not LinkKind.VETH:
        lines.append(iface.kind.value)
    if not iface.up:
        lines.append("DOWN")
    elif not iface.carrier:
        lines.append("NO-CARRIER")
    lines.extend(_addresses(iface))
    return lines


def _search(iface: Interface | None) -> list[str]:
    if iface is None:
        return []
    words = [str(a.ip) for a in iface.addresses]
    if iface.mac:
        words.append(iface.mac)
    return words


def collect_devices(snap: Snapshot, inventory: Inventory | None) -> Devices:
    found = Devices()
    topo = snap.topology
    where = _netns_index(snap)
    bridges = snap.ovs.bridges if snap.ovs is not None else ()
    bridge_names = {b.name for b in bridges} | set(snap.ovs_bridge_names)
    neutron_devices = {
        d for p in (inventory.ports if inventory is not None else ()) for d in p.devices
    }
    router_kinds = {
        PortKind.ROUTER_INTERFACE,
        PortKind.ROUTER_GATEWAY,
        PortKind.HA,
        PortKind.FIP_GATEWAY,
        PortKind.DVR_SNAT,
        PortKind.ROUTER_LINK,
    }
    router_devices = {
        d
        for p in (inventory.ports if inventory is not None else ())
        if p.kind in router_kinds
        for d in p.devices
    }

    for name in sorted(bridge_names):
        iface = topo.interface(name, MAIN_NS)
        state = next((b for b in bridges if b.name == name), None)
        lines = ["OVS bridge"]
        if state is not None and state.ovsdb is not None:
            if state.ovsdb.datapath_type:
                lines.append(f"datapath {state.ovsdb.datapath_type}")
            if state.ovsdb.fail_mode:
                lines.append(f"fail_mode {state.ovsdb.fail_mode}")
        lines.extend(_addresses(iface))
        found.add((MAIN_NS, name), NodeKind.OVS_BRIDGE, lines, _search(iface))

    for bridge in bridges:
        provider = _provider_bridge(bridge, neutron_devices)
        for port in bridge.ports:
            if port.name == bridge.name:
                continue
            key = (where.get(port.name, MAIN_NS), port.name)
            iface = topo.interface(*reversed(key))
            found.ovs_port_of[key] = (bridge, port)
            outside = iface is not None and _leaves_the_node(iface, snap)
            kind, lines = _ovs_port_kind(port, iface, key[1] in neutron_devices, outside)
            if provider and kind is not NodeKind.UPLINK and _system_port(port, iface, snap):
                kind = NodeKind.UPLINK
                lines.append(f"uplink: system port of {bridge.name}")
            if key[1] in router_devices:
                kind = NodeKind.ROUTER_PORT
            found.add(key, kind, lines, _search(iface))

    for iface in topo.interfaces:
        key = (iface.netns, iface.name)
        if iface.kind is LinkKind.LOOPBACK:
            continue
        if iface.name in DATAPATH_DEVICES and iface.kind in (LinkKind.OPENVSWITCH, LinkKind.TAP):
            continue
        if key in found.ovs_port_of:
            found.add(key, found.rows[key][0], _kernel_details(iface, snap), [])
            continue
        if key in found.rows:
            continue  # an OVS bridge's own internal device: drawn as the bridge
        kind = NodeKind.ROUTER_PORT if iface.name in router_devices else _kernel_kind(iface)
        found.add(key, kind, _kernel_details(iface, snap), _search(iface))
    # Router and DHCP ports are single devices: their Neutron port is said on the device.
    for neutron_port in inventory.ports if inventory is not None else ():
        if neutron_port.kind is PortKind.VM:
            continue
        said = compact_heading(neutron_port)
        for key in [k for k in found.rows if k[1] in neutron_port.devices]:
            found.add(key, found.rows[key][0], said, port_search(neutron_port))
    return found


def _ovs_port_kind(
    port: SwitchPort, iface: Interface | None, neutron: bool, outside: bool
) -> tuple[NodeKind, list[str]]:
    """``outside``: the device is a veth whose far end is not part of the node."""
    lines: list[str] = []
    db = port.interface
    vlan = port.port
    if vlan is not None and vlan.tag is not None:
        lines.append(f"tag {vlan.tag}")
    if vlan is not None and vlan.trunks:
        lines.append("trunks " + ",".join(map(str, vlan.trunks)))
    if db is not None and db.is_patch:
        lines.insert(0, f"patch → {db.peer}" if db.peer else "patch, no peer")
        return NodeKind.OVS_PORT, lines
    if db is not None and (db.is_tunnel or db.type in TUNNEL_TYPES):
        remote = db.remote_ip or "remote_ip not in the snapshot"
        lines.insert(0, f"{db.type.upper()} → {remote}")
        if db.out_key is not None:
            lines.append(f"key {db.out_key}")
        if db.local_ip:
            lines.append(f"local {db.local_ip}")
        return NodeKind.TUNNEL, lines
    if db is not None and db.type == "internal":
        lines.insert(0, "OVS internal port")
        return NodeKind.OVS_PORT, lines
    if iface is None:
        lines.insert(0, "OVS port" if db is None else "OVS system port")
        return NodeKind.OTHER, lines
    kernel = _kernel_kind(iface)
    neutron = neutron or (db is not None and db.iface_id is not None)
    system = db is not None and db.type == ""
    if not neutron and (kernel is NodeKind.UPLINK or (system and outside)):
        return NodeKind.UPLINK, lines
    return kernel, lines


def _provider_bridge(bridge: BridgeState, neutron_devices: Collection[str]) -> bool:
    """A bridge patched to another one that holds no Neutron port: its system ports are
    the node's way out (a provider bridge and its NIC)."""
    has_patch = any(p.interface is not None and p.interface.is_patch for p in bridge.ports)
    neutron = any(
        p.name in neutron_devices or (p.interface is not None and p.interface.iface_id)
        for p in bridge.ports
    )
    return has_patch and not neutron


def _system_port(port: SwitchPort, iface: Interface | None, snap: Snapshot) -> bool:
    """A plain device plugged into OVS that could carry traffic off the node: not a tap, a
    bridge, or a veth whose other end is another device of this node."""
    return (
        port.interface is not None
        and port.interface.type == ""
        and iface is not None
        and iface.kind not in (LinkKind.BRIDGE, LinkKind.TAP, LinkKind.TUN)
        and snap.topology.veth_peer(iface) is None
    )


def _leaves_the_node(iface: Interface, snap: Snapshot) -> bool:
    """A veth whose far end is in a namespace the snapshot does not hold: for a system port
    no Neutron port owns, that is the wire as far as this node can tell."""
    veth = iface.veth
    return (
        veth is not None
        and veth.peer_netns is not None
        and snap.topology.veth_peer(iface) is None
        and veth.peer_netns not in snap.topology.namespaces
    )


def compact_heading(port: PortInfo) -> list[str]:
    """A compact chain's heading: the port, then its MAC and addresses on one line."""
    kind = "" if port.kind is PortKind.VM else f" ({port.kind.value})"
    said = [port.mac.value] if port.mac is not None else []
    said.extend(str(ip.value) for ip in port.ips)
    return [f"port {port.port_id}{kind}", "  ".join(said)] if said else [f"port {port.port_id}"]


def port_search(port: PortInfo | None) -> list[str]:
    if port is None:
        return []
    words = [port.port_id, *(str(ip.value) for ip in port.ips)]
    words.extend(m.value for m in port.macs)
    if port.mac is not None:
        words.append(port.mac.value)
    return list(dict.fromkeys(words))
