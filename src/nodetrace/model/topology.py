"""A node's Linux network devices as data: interfaces and what they are, who is whose port,
addresses, routes, policy rules, neighbours and bridge forwarding entries, per namespace.

The walk needs to answer "what is on the other side of this device": the veth peer, the Linux
bridge a port belongs to, the underlay a tunnel rides on. Those answers live here, computed once
from ``ip -d -j``/``bridge -j`` output, so engines never look at command text. Open vSwitch's own
view (bridges, ports, OpenFlow numbers) is kept by the OpenFlow model; a Linux interface only
says that the kernel knows it as an OVS device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface, ip_network

from nodetrace.model.netfilter import IPNetwork
from nodetrace.model.packet import Family

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface

MAIN_NS = ""
"""The name used for the node's main network namespace (the one ``collect`` ran in)."""


class LinkKind(StrEnum):
    """What a device is, from ``linkinfo.info_kind`` (and ``link_type`` when there is none)."""

    LOOPBACK = "loopback"
    PHYSICAL = "physical"
    """No ``info_kind``: a NIC driven by hardware (or by a driver ``ip`` does not name)."""
    VETH = "veth"
    BRIDGE = "bridge"
    TAP = "tap"
    TUN = "tun"
    VXLAN = "vxlan"
    GRE = "gre"
    GRETAP = "gretap"
    GENEVE = "geneve"
    OPENVSWITCH = "openvswitch"
    """A kernel-datapath OVS device (``ovs-system``, internal ports)."""
    BOND = "bond"
    VLAN = "vlan"
    MACVLAN = "macvlan"
    DUMMY = "dummy"
    OTHER = "other"
    UNKNOWN = "unknown"
    """The snapshot does not say what the device is (e.g. ``ip address`` without ``-d``)."""


@dataclass(frozen=True, slots=True)
class VethInfo:
    """The far end of a veth, as the kernel names it from this side.

    ``peer`` is the peer's name when it lives in the same namespace (``ip`` prints ``link``).
    Otherwise only ``peer_ifindex`` and ``peer_netnsid`` are known; the namespace is resolved
    through the ids of ``ip netns list`` into ``peer_netns`` when possible.
    """

    peer: str | None = None
    peer_ifindex: int | None = None
    peer_netnsid: int | None = None
    peer_netns: str | None = None
    derived: str = ""
    """Empty when ``ip -d`` said ``veth``; else how the device was taken for a veth (``ip
    address`` without ``-d`` prints only ``NAME@ifN`` and ``link-netns``)."""


@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """A Linux bridge's settings that decide how it forwards and whether netfilter sees it."""

    ageing_time: int | None = None
    """In centiseconds as the kernel reports it; 0 means the bridge never learns (floods)."""
    stp_state: int = 0
    vlan_filtering: bool = False
    nf_call_iptables: bool = False
    """Per-bridge switch; br_netfilter runs when it *or* the global sysctl is on."""
    nf_call_ip6tables: bool = False
    nf_call_arptables: bool = False


@dataclass(frozen=True, slots=True)
class TunnelInfo:
    """A kernel tunnel device (VXLAN, GRE, Geneve): key, endpoints, underlay device."""

    key: int | None = None
    """VXLAN/Geneve VNI or GRE key; ``None`` for a metadata-based (``external``) device."""
    local: IPAddress | None = None
    remote: IPAddress | None = None
    dst_port: int | None = None
    underlay: str | None = None
    learning: bool = True
    external: bool = False
    """Collect-metadata mode: the key and remote come per packet (OVS's ``vxlan_sys_4789``)."""


@dataclass(frozen=True, slots=True)
class TunTapInfo:
    mode: str = "tap"
    """``tap`` (Ethernet frames, what a VM's virtio NIC uses) or ``tun`` (IP packets)."""


LinkDetail = VethInfo | BridgeInfo | TunnelInfo | TunTapInfo
"""Kind-specific facts; which type is present follows :attr:`Interface.kind`."""


@dataclass(frozen=True, slots=True)
class BridgePortInfo:
    """How a Linux bridge treats one of its ports (``info_slave_data`` of a bridge port)."""

    state: str = "forwarding"
    learning: bool = True
    flood: bool = True
    """Unknown unicast is sent to this port when it is a flood candidate."""
    hairpin: bool = False
    isolated: bool = False


@dataclass(frozen=True, slots=True)
class Address:
    """One address on an interface (``ip addr``): ``10.0.0.1/24`` as an interface value."""

    interface: IPInterface
    scope: str = "global"
    peer: IPInterface | None = None

    @property
    def ip(self) -> IPAddress:
        return self.interface.ip

    @property
    def family(self) -> Family:
        return Family.IPV4 if self.interface.version == 4 else Family.IPV6


@dataclass(frozen=True, slots=True)
class Interface:
    """One network device in one namespace, with what it is and where it is plugged."""

    name: str
    netns: str = MAIN_NS
    ifindex: int | None = None
    kind: LinkKind = LinkKind.PHYSICAL
    mac: str | None = None
    mtu: int | None = None
    up: bool = True
    """Administratively up (the ``UP`` flag)."""
    carrier: bool = True
    """``LOWER_UP``: the device can pass traffic right now."""
    master: str | None = None
    """The Linux bridge, bond or OVS datapath this device is enslaved to."""
    master_kind: str | None = None
    """``bridge``, ``bond``, ``openvswitch``... (``info_slave_kind``)."""
    addresses: tuple[Address, ...] = ()
    detail: LinkDetail | None = None
    bridge_port: BridgePortInfo | None = None
    """Present when ``master`` is a Linux bridge."""

    @property
    def veth(self) -> VethInfo | None:
        return self.detail if isinstance(self.detail, VethInfo) else None

    @property
    def bridge(self) -> BridgeInfo | None:
        return self.detail if isinstance(self.detail, BridgeInfo) else None

    @property
    def tunnel(self) -> TunnelInfo | None:
        return self.detail if isinstance(self.detail, TunnelInfo) else None

    @property
    def is_linux_bridge_port(self) -> bool:
        return self.master is not None and self.master_kind == "bridge"


class RouteType(StrEnum):
    UNICAST = "unicast"
    LOCAL = "local"
    BROADCAST = "broadcast"
    MULTICAST = "multicast"
    ANYCAST = "anycast"
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"
    THROW = "throw"
    NAT = "nat"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class NextHop:
    gateway: IPAddress | None = None
    dev: str | None = None
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Route:
    """One FIB entry. ``dst`` is ``0.0.0.0/0`` (or ``::/0``) for ``default``."""

    family: Family
    dst: IPNetwork
    table: str = "main"
    type: RouteType = RouteType.UNICAST
    gateway: IPAddress | None = None
    dev: str | None = None
    prefsrc: IPAddress | None = None
    metric: int = 0
    scope: str = "global"
    protocol: str = ""
    nexthops: tuple[NextHop, ...] = ()
    """ECMP routes list their hops here (``gateway``/``dev`` are then ``None``)."""
    netns: str = MAIN_NS


@dataclass(frozen=True, slots=True)
class RouteRule:
    """A policy routing rule (``ip rule``): which table to look up for which packets."""

    family: Family
    priority: int
    table: str | None = None
    action: str = "lookup"
    """``lookup`` (goto ``table``), ``blackhole``, ``unreachable``, ``prohibit``, ``goto``, ``nop``."""
    src: IPNetwork | None = None
    dst: IPNetwork | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    not_: bool = False
    netns: str = MAIN_NS


@dataclass(frozen=True, slots=True)
class Neighbour:
    """An ARP/NDP entry: the MAC the node would use for an IP on a device."""

    ip: IPAddress
    dev: str
    mac: str | None
    state: tuple[str, ...] = ()
    netns: str = MAIN_NS

    @property
    def usable(self) -> bool:
        return self.mac is not None and not {"FAILED", "INCOMPLETE"} & set(self.state)


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """A forwarding entry of a Linux bridge (``master``) or of a device itself (``self``)."""

    mac: str
    dev: str
    master: str | None = None
    vlan: int | None = None
    state: str = ""
    """``permanent``/``static`` or empty for a learned (reachable) entry."""
    self_entry: bool = False
    """Entry in the device's own table (a VXLAN device's remote VTEPs, a NIC's unicast filter)."""
    dst: IPAddress | None = None
    """Remote VTEP of a VXLAN FDB entry."""
    netns: str = MAIN_NS

    @property
    def is_local(self) -> bool:
        """The bridge's own address for this port: frames to it go up the stack, not out."""
        return self.state == "permanent" and not self.self_entry


@dataclass(frozen=True, slots=True)
class BridgeVlan:
    """A VLAN allowed on a port of a VLAN-filtering Linux bridge (``bridge vlan show``)."""

    dev: str
    vlan: int
    pvid: bool = False
    """Untagged frames entering the port are put in this VLAN."""
    untagged: bool = False
    """Frames leave the port without a tag."""
    netns: str = MAIN_NS


@dataclass(frozen=True, slots=True)
class BridgeLink:
    """A bridge port as ``bridge -j link`` shows it: its bridge and forwarding settings."""

    dev: str
    master: str
    port: BridgePortInfo
    netns: str = MAIN_NS


@dataclass(frozen=True, slots=True)
class NamespaceId:
    """A namespace name and the id its parent gave it (``ip netns list``), if any."""

    name: str
    nsid: int | None = None


def default_network(family: Family) -> IPNetwork:
    return ip_network("0.0.0.0/0") if family is Family.IPV4 else ip_network("::/0")


@dataclass(frozen=True)
class Topology:
    """Every Linux device, route and table entry of a node, with lookups the walk needs."""

    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[RouteRule, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    vlans: tuple[BridgeVlan, ...] = ()
    namespaces: tuple[str, ...] = (MAIN_NS,)
    _by_name: dict[tuple[str, str], Interface] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    _ports: dict[tuple[str, str], tuple[Interface, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        ports: dict[tuple[str, str], list[Interface]] = {}
        for iface in self.interfaces:
            self._by_name[(iface.netns, iface.name)] = iface
            if iface.master is not None:
                ports.setdefault((iface.netns, iface.master), []).append(iface)
        self._ports.update({k: tuple(v) for k, v in ports.items()})

    def interface(self, name: str, netns: str = MAIN_NS) -> Interface | None:
        return self._by_name.get((netns, name))

    def in_namespace(self, netns: str = MAIN_NS) -> Iterator[Interface]:
        return (i for i in self.interfaces if i.netns == netns)

    def by_ifindex(self, ifindex: int, netns: str = MAIN_NS) -> Interface | None:
        return next((i for i in self.in_namespace(netns) if i.ifindex == ifindex), None)

    def ports_of(self, master: str, netns: str = MAIN_NS) -> tuple[Interface, ...]:
        """Devices enslaved to ``master`` (a Linux bridge's ports), in ``ip link`` order."""
        return self._ports.get((netns, master), ())

    def linux_bridges(self, netns: str = MAIN_NS) -> tuple[Interface, ...]:
        return tuple(i for i in self.in_namespace(netns) if i.kind is LinkKind.BRIDGE)

    def veth_peer(self, iface: Interface) -> Interface | None:
        """The other end of a veth, if it is part of this snapshot."""
        info = iface.veth
        if info is None:
            return None
        if info.peer is not None:
            return self.interface(info.peer, iface.netns)
        if info.peer_netns is not None and info.peer_ifindex is not None:
            return self.by_ifindex(info.peer_ifindex, info.peer_netns)
        return None

    def fdb_of(self, bridge: str, netns: str = MAIN_NS) -> tuple[FdbEntry, ...]:
        return tuple(e for e in self.fdb if e.netns == netns and e.master == bridge)

    def routes_in(self, netns: str = MAIN_NS) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.netns == netns)

    def rules_in(self, netns: str, family: Family) -> tuple[RouteRule, ...]:
        return tuple(r for r in self.rules if r.netns == netns and r.family is family)

    def neighbour(self, ip: IPAddress, dev: str, netns: str = MAIN_NS) -> Neighbour | None:
        return next(
            (n for n in self.neighbours if n.netns == netns and n.ip == ip and n.dev == dev), None
        )

    def owner_of(self, ip: IPAddress, netns: str = MAIN_NS) -> Interface | None:
        """The interface in ``netns`` that carries address ``ip``, if any."""
        owners = (i for i in self.in_namespace(netns) if any(a.ip == ip for a in i.addresses))
        return next(owners, None)


@dataclass(frozen=True, slots=True)
class OvsRoute:
    """One route of Open vSwitch's own routing table (``ovs-appctl ovs/route/show``): how
    ovs-vswitchd picks the underlay device and source address of a tunnel's outer packet."""

    prefix: IPNetwork
    dev: str
    gateway: IPAddress | None = None
    src: IPAddress | None = None
    local: bool = False
    user: bool = False
    """Added with ``ovs/route/add`` (``User:``) rather than copied from the kernel (``Cached:``)."""
    mark: int | None = None


@dataclass(frozen=True, slots=True)
class OvsTunnelNeighbour:
    """An entry of ovs-vswitchd's tunnel neighbour cache (``ovs-appctl tnl/neigh/show``, named
    ``tnl/arp/show`` before OVS 2.5): the outer destination MAC of a tunnel's next hop."""

    ip: IPAddress
    mac: str
    bridge: str
    stale: bool = False
