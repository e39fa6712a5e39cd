"""A node as a graph to draw: which devices become boxes, what joins them, what is folded.

Everything here comes from the snapshot (and, when given, the Neutron inventory computed from
it): devices and their kinds from ``ip -d``, OVS bridges, ports, tags, patch peers and tunnel
options from OVSDB, Linux bridge membership and veth peers from the topology. What the
snapshot does not say is not made up: a device of unknown kind is drawn as ``other``.

A node may hold 500 VM ports; drawn device by device that is 2,000 boxes nobody can read. So
the devices hanging off one OVS port (a VM's ``qvo``/``qvb``/``qbr``/``tap``, found by
following veth peers and Linux bridge membership) form a *chain*. Small nodes draw each device
of a chain as its own box; larger ones draw a chain as one compact box listing its devices;
and when one VLAN of a bridge holds many chains, they are folded into one box that says how
many ports it holds (their names, IDs, MACs and addresses stay searchable). Chains named in
``focus`` or crossed by a drawn path are always drawn device by device.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum

from nodetrace.model.node_inventory import Inventory, PortInfo
from nodetrace.model.ovsdb import Interface as DbInterface
from nodetrace.model.ovsdb import parse_ip
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS, LinkKind
from nodetrace.render.diagram_devices import (
    Devices,
    Key,
    NodeKind,
    collect_devices,
    compact_heading,
    port_search,
)

EXPAND_ALL_UP_TO = 8
"""Nodes with at most this many chains draw every device as its own box."""
FOLD_ABOVE = 12
"""A VLAN of a bridge with more chains than this (not in focus) is folded into one box."""


class EdgeKind(StrEnum):
    """What joins two drawn devices."""

    PORT = "port"
    """A device is a port of an OVS or Linux bridge."""
    PATCH = "patch"
    VETH = "veth"
    UNDERLAY = "underlay"
    """A tunnel's outer packets leave through the device holding its local address."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One drawn device: its name, kind, the lines shown under its name, what search finds."""

    element: str
    name: str
    netns: str
    kind: NodeKind
    details: tuple[str, ...] = ()
    search: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Box:
    """One box laid out by ``dot``: a device, a compact chain of devices, or a folded group."""

    id: str
    rows: tuple[DeviceRow, ...] = ()
    heading: tuple[str, ...] = ()
    """Lines above the rows (a chain's Neutron port; a folded group's VLAN and count)."""
    cluster: str | None = None
    folded: tuple[str, ...] = ()
    """A folded group's device names."""
    folded_count: int = 0
    """How many ports a folded group holds."""
    search: tuple[str, ...] = ()
    compact: bool = False
    """A chain drawn as one box: its devices side by side, each with its first detail only."""


@dataclass(frozen=True, slots=True)
class Cluster:
    """A region: a namespace (``netns``) or one Neutron port's devices drawn apart (``port``)."""

    id: str
    kind: str
    netns: str
    heading: tuple[str, ...]
    parent: str | None = None
    search: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    id: str
    kind: EdgeKind
    tail: str
    """Element ids (a device row, or a folded box)."""
    head: str
    tail_box: str
    head_box: str


@dataclass(frozen=True, slots=True)
class DiagramGraph:
    boxes: tuple[Box, ...]
    clusters: tuple[Cluster, ...]
    links: tuple[Link, ...]
    elements: dict[Key, str]
    """Each device's element id; a folded device maps to its group's box."""


@dataclass
class _Ids:
    count: int = 0

    def next(self, prefix: str = "n") -> str:
        self.count += 1
        return f"{prefix}{self.count}"


@dataclass
class _Chain:
    """The devices hanging off one OVS port, the port's device first."""

    bridge: str
    tag: int | None
    keys: list[Key]
    port: PortInfo | None = None


def _chains(snap: Snapshot, devices: Devices, inventory: Inventory | None) -> list[_Chain]:
    """Follow veth peers and Linux bridge membership outwards from each OVS port."""
    topo = snap.topology
    port_of: dict[str, PortInfo] = {}
    for p in inventory.ports if inventory is not None else ():
        for d in p.devices:
            port_of.setdefault(d, p)
    chains: list[_Chain] = []
    taken: set[Key] = set()
    for key, (bridge, sp) in devices.ovs_port_of.items():
        kind = devices.rows[key][0]
        if kind in (NodeKind.TUNNEL, NodeKind.UPLINK) or (
            sp.interface is not None and sp.interface.type in ("patch", "internal")
        ):
            continue
        keys: list[Key] = []
        queue = deque([key])
        while queue:
            k = queue.popleft()
            if k in taken or k not in devices.rows:
                continue
            if k != key and k in devices.ovs_port_of:
                continue
            taken.add(k)
            keys.append(k)
            iface = topo.interface(k[1], k[0])
            if iface is None:
                continue
            peer = topo.veth_peer(iface)
            if peer is not None:
                queue.append((peer.netns, peer.name))
            if iface.is_linux_bridge_port and iface.master is not None:
                queue.append((iface.netns, iface.master))
            if iface.kind is LinkKind.BRIDGE:
                queue.extend((p.netns, p.name) for p in topo.ports_of(iface.name, iface.netns))
        tag = sp.port.tag if sp.port is not None else None
        port = next((port_of[k[1]] for k in keys if k[1] in port_of), None)
        chains.append(_Chain(bridge.name, tag, keys, port))
    return chains


def _port_heading(port: PortInfo) -> list[str]:
    """A port region's heading: the port, its MAC and addresses, its network."""
    lines = compact_heading(port)
    if port.network_type is not None:
        seg = f" {port.segmentation_id.value}" if port.segmentation_id is not None else ""
        lines.append(f"{port.network_type.value}{seg}")
    return lines


def _group_heading(group: tuple[str, int | None], members: Iterable[_Chain]) -> str:
    """``br-int tag 6 · vlan 105``: the bridge's local VLAN and, when its ports agree on it,
    the network segment the inventory found."""
    bridge, tag = group
    heading = f"{bridge} tag {tag}" if tag is not None else f"{bridge}, no tag"
    network = {
        f"{c.port.network_type.value} {c.port.segmentation_id.value}"
        if c.port.segmentation_id is not None
        else c.port.network_type.value
        for c in members
        if c.port is not None and c.port.network_type is not None
    }
    return f"{heading} · {network.pop()}" if len(network) == 1 else heading


def _focused(chain: _Chain, focus: Collection[str]) -> bool:
    if not focus:
        return False
    names = {k[1] for k in chain.keys}
    if names & set(focus):
        return True
    port = chain.port
    if port is None:
        return False
    words = set(port_search(port))
    return bool(words & set(focus)) or any(
        len(f) >= 8 and port.port_id.startswith(f) for f in focus
    )


def build_graph(
    snap: Snapshot,
    *,
    inventory: Inventory | None = None,
    focus: Collection[str] = (),
    fold: bool = True,
) -> DiagramGraph:
    """The boxes, regions and links of ``snap``'s diagram (see the module's docstring).

    ``fold=False`` draws every device as its own box whatever the node's size (the drawing
    the benchmark compares against)."""
    ids = _Ids()
    devices = collect_devices(snap, inventory)
    chains = _chains(snap, devices, inventory)
    focus = frozenset(focus)

    expanded: list[_Chain] = []
    compact: list[_Chain] = []
    folded: dict[tuple[str, int | None], list[_Chain]] = {}
    if len(chains) <= EXPAND_ALL_UP_TO or not fold:
        expanded = chains
    else:
        groups: dict[tuple[str, int | None], list[_Chain]] = {}
        for chain in chains:
            if _focused(chain, focus) or chain.keys[0][0] != MAIN_NS:
                expanded.append(chain)
            else:
                groups.setdefault((chain.bridge, chain.tag), []).append(chain)
        for group, members in groups.items():
            if len(members) > FOLD_ABOVE:
                folded[group] = members
            else:
                compact.extend(members)

    clusters: list[Cluster] = []
    netns_cluster: dict[str, str] = {}
    for ns in sorted({k[0] for k in devices.rows} - {MAIN_NS}):
        cid = ids.next("c")
        netns_cluster[ns] = cid
        clusters.append(Cluster(cid, "netns", ns, (f"namespace {ns}",), search=(ns,)))

    boxes: list[Box] = []
    elements: dict[Key, str] = {}
    box_of: dict[str, str] = {}

    def row(key: Key) -> DeviceRow:
        kind, details, search = devices.rows[key]
        element = ids.next()
        elements[key] = element
        words = dict.fromkeys([key[1], *search])
        return DeviceRow(element, key[1], key[0], kind, tuple(details), tuple(words))

    def single(key: Key, cluster: str | None) -> None:
        r = row(key)
        boxes.append(Box(r.element, (r,), cluster=cluster, search=r.search))
        box_of[r.element] = r.element

    drawn: set[Key] = set()
    for chain in expanded:
        cluster = netns_cluster.get(chain.keys[0][0])
        if chain.port is not None and len(chain.keys) == 1:
            # A lone device (a tap on br-int): its port is said on it, not in a region
            # narrower than its heading.
            key = chain.keys[0]
            devices.add(
                key, devices.rows[key][0], _port_heading(chain.port), port_search(chain.port)
            )
        elif chain.port is not None:
            cid = ids.next("c")
            clusters.append(
                Cluster(
                    cid,
                    "port",
                    chain.keys[0][0],
                    tuple(_port_heading(chain.port)),
                    parent=cluster,
                    search=tuple(port_search(chain.port)),
                )
            )
            cluster = cid
        for key in chain.keys:
            single(key, cluster if key[0] == chain.keys[0][0] else netns_cluster.get(key[0]))
            drawn.add(key)
    vlan_cluster: dict[tuple[str, int | None], str] = {}
    for chain in compact:
        group = (chain.bridge, chain.tag)
        if group not in vlan_cluster:
            vlan_cluster[group] = ids.next("c")
            members = [c for c in compact if (c.bridge, c.tag) == group]
            clusters.append(
                Cluster(vlan_cluster[group], "vlan", MAIN_NS, (_group_heading(group, members),))
            )
        rows = tuple(row(k) for k in chain.keys)
        bid = ids.next("b")
        heading = tuple(compact_heading(chain.port)) if chain.port is not None else ()
        words = [w for r in rows for w in r.search] + port_search(chain.port)
        boxes.append(
            Box(bid, rows, heading, vlan_cluster[group], search=tuple(dict.fromkeys(words)),
                compact=True)
        )  # fmt: skip
        for r in rows:
            box_of[r.element] = bid
        drawn.update(chain.keys)
    for (bridge, tag), members in folded.items():
        bid = ids.next("g")
        names = [k[1] for chain in members for k in chain.keys]
        words = [w for chain in members for k in chain.keys for w in devices.rows[k][2]]
        words += [w for chain in members for w in port_search(chain.port)]
        lines = [_group_heading((bridge, tag), members), f"{len(members)} ports, folded"]
        search = tuple(dict.fromkeys([*names, *words]))
        boxes.append(
            Box(bid, (), tuple(lines), folded=tuple(names), folded_count=len(members),
                search=search)
        )  # fmt: skip
        box_of[bid] = bid
        for chain in members:
            for key in chain.keys:
                elements[key] = bid
                drawn.add(key)
    for key in devices.rows:
        if key not in drawn:
            single(key, netns_cluster.get(key[0]))

    links = _links(snap, devices, elements, box_of, ids)
    return DiagramGraph(tuple(boxes), tuple(clusters), links, elements)


def _links(
    snap: Snapshot,
    devices: Devices,
    elements: dict[Key, str],
    box_of: dict[str, str],
    ids: _Ids,
) -> tuple[Link, ...]:
    topo = snap.topology
    pairs: list[tuple[EdgeKind, Key, Key]] = []
    for key, (bridge, sp) in devices.ovs_port_of.items():
        pairs.append((EdgeKind.PORT, (MAIN_NS, bridge.name), key))
        peer = snap.ovs.peer_of(bridge.name, sp) if snap.ovs is not None else None
        if peer is not None:
            peer_key = next((k for k in devices.ovs_port_of if k[1] == peer[1].name), None)
            if peer_key is not None:
                pairs.append((EdgeKind.PATCH, key, peer_key))
        db = sp.interface
        underlay = _underlay(snap, db) if db is not None and db.is_tunnel else None
        if underlay is not None:
            pairs.append((EdgeKind.UNDERLAY, key, underlay))
    for iface in topo.interfaces:
        key = (iface.netns, iface.name)
        # A Linux bridge's or a bond's port (OVS's datapath device is not drawn).
        if iface.master is not None and iface.master_kind != "openvswitch":
            pairs.append((EdgeKind.PORT, (iface.netns, iface.master), key))
        far = topo.veth_peer(iface)
        if far is not None:
            pairs.append((EdgeKind.VETH, key, (far.netns, far.name)))
        tunnel = iface.tunnel
        if tunnel is not None and tunnel.underlay is not None:
            pairs.append((EdgeKind.UNDERLAY, key, (iface.netns, tunnel.underlay)))

    seen: set[tuple[str, str]] = set()
    found: list[tuple[EdgeKind, str, str]] = []
    for kind, a, b in pairs:
        ea, eb = elements.get(a), elements.get(b)
        if ea is None or eb is None or box_of[ea] == box_of[eb]:
            continue
        pair = (min(ea, eb), max(ea, eb))
        if pair in seen:
            continue
        seen.add(pair)
        found.append((kind, ea, eb))
    return tuple(
        Link(ids.next("e"), kind, t, h, box_of[t], box_of[h])
        for kind, t, h in _orient(found, devices, elements, box_of)
    )


def _underlay(snap: Snapshot, tunnel: DbInterface) -> Key | None:
    """The device a tunnel's outer packets leave from: the one holding its ``local_ip``, else
    the device of the route to its ``remote_ip`` (Open vSwitch's own table when the snapshot
    has it, the kernel's main table otherwise)."""
    if tunnel.local_ip:
        return _owner(snap, tunnel.local_ip)
    remote = parse_ip(tunnel.remote_ip)
    if remote is None:
        return None
    if snap.ovs_routes is not None:
        ovs = [r for r in snap.ovs_routes if r.prefix.version == remote.version]
        best = max((r for r in ovs if remote in r.prefix), key=lambda r: r.prefix.prefixlen,
                   default=None)  # fmt: skip
        return (MAIN_NS, best.dev) if best is not None else None
    kernel = [
        r
        for r in snap.topology.routes_in(MAIN_NS)
        if r.table == "main" and r.dev is not None and r.dst.version == remote.version
    ]
    route = max((r for r in kernel if remote in r.dst), key=lambda r: r.dst.prefixlen,
                default=None)  # fmt: skip
    return (MAIN_NS, route.dev) if route is not None and route.dev is not None else None


def _owner(snap: Snapshot, ip: str) -> Key | None:
    for iface in snap.topology.interfaces:
        if any(str(a.ip) == ip for a in iface.addresses):
            return (iface.netns, iface.name)
    return None


def _orient(
    links: list[tuple[EdgeKind, str, str]],
    devices: Devices,
    elements: dict[Key, str],
    box_of: dict[str, str],
) -> list[tuple[EdgeKind, str, str]]:
    """Point every link away from the wire (uplinks and tunnels), so that ``dot`` ranks the
    node from the outside in: wire, provider and tunnel bridges, the integration bridge, VMs."""
    adjacent: dict[str, list[str]] = {}
    for _, a, b in links:
        adjacent.setdefault(box_of[a], []).append(box_of[b])
        adjacent.setdefault(box_of[b], []).append(box_of[a])
    wire = [
        box_of[elements[k]]
        for k, (kind, _, _) in devices.rows.items()
        if kind in (NodeKind.UPLINK, NodeKind.TUNNEL) and k in elements
    ]
    distance: dict[str, int] = {}
    # One breadth-first search from all of the wire at once, then one per part of the node
    # the wire does not reach (from its best-connected box).
    seeds = [list(dict.fromkeys(wire))]
    seeds += [[b] for b in sorted(adjacent, key=lambda b: -len(adjacent[b]))]
    for group in seeds:
        group = [b for b in group if b not in distance]
        distance.update((b, 0) for b in group)
        queue = deque(group)
        while queue:
            here = queue.popleft()
            for there in adjacent.get(here, ()):
                if there not in distance:
                    distance[there] = distance[here] + 1
                    queue.append(there)
    out = []
    for kind, a, b in links:
        if distance.get(box_of[a], 0) > distance.get(box_of[b], 0):
            a, b = b, a
        out.append((kind, a, b))
    return out
