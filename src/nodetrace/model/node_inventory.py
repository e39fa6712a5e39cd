"""What one node holds, port by port, with where each value was read: the data ``show`` prints
and ``trace`` starts from.

The Neutron layer (``neutron/inventory.py``) fills these from a snapshot; renderers print them.
Every inferred value is a :class:`Found`: the value and the place on the node it was read from
(an OVSDB column, an iptables rule, an OpenFlow flow), so a reader can check it. A value the
node does not tell is ``None``, never a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Generic, TypeVar

T = TypeVar("T")


class PortKind(StrEnum):
    """What a Neutron port on this node is, told by its devices."""

    VM = "vm"
    """The tap of an instance (hybrid: tap+qbr+qvb+qvo; native OVS firewall: tap on br-int)."""
    DHCP = "dhcp"
    """An OVS internal ``tap`` device of a DHCP agent, living in a ``qdhcp-`` namespace."""
    ROUTER_INTERFACE = "router_interface"
    """``qr-``: a router's port on a tenant network."""
    ROUTER_GATEWAY = "router_gateway"
    """``qg-``: a router's port on its external network."""
    HA = "ha"
    """``ha-``: the VRRP port of an HA router."""
    FIP_GATEWAY = "fip_gateway"
    """``fg-``: the floating IP gateway port of a DVR ``fip-`` namespace."""
    DVR_SNAT = "dvr_snat"
    """``sg-``: the SNAT port of a DVR router in its ``snat-`` namespace."""
    ROUTER_LINK = "router_link"
    """``rfp-``/``fpr-``: the veth pair joining a DVR router to its ``fip-`` namespace."""
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Found(Generic[T]):
    """A value and where on the node it was read."""

    value: T
    source: str
    """``OVSDB Interface external_ids:attached-mac``, ``iptables chain ... rule 1``,
    ``br-int table 71 flow ...``."""


@dataclass(frozen=True)
class PortInfo:
    """One Neutron port plugged into this node, with everything the node tells about it."""

    port_id: str
    """The full UUID when the node tells it (``iface-id``, a zone rule's comment), else the
    UUID prefix its device names carry (11 characters; 10 when only chains name it)."""
    kind: PortKind
    devices: tuple[str, ...]
    """Device names present for this port (tap/qbr/qvb/qvo/qr-...), main namespace first."""
    tap: str | None
    """The device the VM (or the namespace) sends from."""
    namespace: str | None
    """The namespace holding the port's device (``qdhcp-``/``qrouter-``...); ``None`` for the
    main namespace or a VM."""
    bridge: str | None
    """The OVS bridge of its OVS port."""
    ovs_port: str | None
    """The OVS port name (``qvoX``, ``tapX``, ``qr-X``)."""
    ofport: int | None
    firewall: str | None
    """``iptables_hybrid``, ``iptables`` (linuxbridge agent), ``openvswitch`` or ``None``."""
    local_vlan: Found[int] | None
    network_type: Found[str] | None
    segmentation_id: Found[int] | None
    mac: Found[str] | None
    ips: tuple[Found[IPv4Address | IPv6Address], ...]
    zone: Found[int] | None
    """The conntrack zone of the port's firewall."""
    chains: tuple[str, ...]
    """Its iptables chains (hybrid and linuxbridge firewalls)."""
    flows: int
    """OpenFlow flows of its bridge naming its OpenFlow port number or its MAC."""
    macs: tuple[Found[str], ...] = ()
    """Every MAC the node lets the port send from (allowed address pairs included)."""
    chain_rules: tuple[int, ...] = ()
    """Rules in each of :attr:`chains`, in the same order."""
    notes: tuple[str, ...] = ()
    """What could not be told, and why."""


@dataclass(frozen=True)
class OvsPortSummary:
    """One port of an Open vSwitch bridge as OVSDB and the flows describe it."""

    name: str
    ofport: int | None
    type: str | None
    """``internal``, ``patch``, ``vxlan``... ``system`` for a plain device; ``None`` when no
    OVSDB output names the port."""
    tag: int | None
    trunks: tuple[int, ...]
    peer: str | None
    remote_ip: str | None
    local_ip: str | None
    key: str | None
    iface_id: str | None
    flows: int


@dataclass(frozen=True)
class OvsBridgeSummary:
    name: str
    datapath_type: str | None
    """``None`` when the snapshot does not say (ovs-vswitchd would use ``system``)."""
    fail_mode: str | None
    """``None`` when the snapshot does not say (ovs-vswitchd would act as ``standalone``)."""
    flows: int | None
    """``None`` when the bridge's flows were not captured."""
    ports: tuple[OvsPortSummary, ...]


@dataclass(frozen=True)
class LinuxBridgeSummary:
    name: str
    namespace: str
    ageing_time: int | None
    """Centiseconds; 0: the bridge never learns and floods every frame."""
    nf_call_iptables: bool | None
    """Whether iptables sees this bridge's IPv4 frames (br_netfilter); ``None``: unknown."""
    ports: tuple[str, ...]


@dataclass(frozen=True)
class NamespaceSummary:
    name: str
    interfaces: tuple[str, ...]
    iptables_rules: int | None
    """``None`` when the namespace's ruleset was not captured."""


@dataclass(frozen=True)
class Segment:
    """A network's host-local VLAN and the segment it carries on the wire."""

    local_vlan: int
    network_type: Found[str]
    segmentation_id: Found[int] | None
    """``None`` for a flat network (no tag on the wire)."""


@dataclass(frozen=True)
class NodeFacts:
    hostname: Found[str] | None
    kernel: Found[str] | None
    collected_at: str | None
    source: str
    source_kind: str
    iptables: str
    """The ruleset's backend, or ``no ruleset``."""
    br_netfilter: bool | None
    ovs_evidence: str | None = None
    """A file showing the node runs Open vSwitch when none of its state was read."""
    ovs_bridge_names: tuple[str, ...] = ()
    """Bridges named by ``ovs-vsctl list-br`` (all that is known of them then)."""


@dataclass(frozen=True)
class MissingFact:
    what: str
    reason: str
    namespace: str | None
    command: str | None = None
    """The command line that would collect it (in the namespace, when there is one)."""


@dataclass(frozen=True)
class Inventory:
    """Everything ``show`` prints about one node."""

    node: NodeFacts
    ports: tuple[PortInfo, ...]
    ovs_bridges: tuple[OvsBridgeSummary, ...] = ()
    linux_bridges: tuple[LinuxBridgeSummary, ...] = ()
    namespaces: tuple[NamespaceSummary, ...] = ()
    segments: tuple[Segment, ...] = ()
    missing: tuple[MissingFact, ...] = ()
    notes: tuple[str, ...] = ()
    """What the Open vSwitch sources did not say (port numbers, MAC tables ...)."""
    snapshot_notes: tuple[str, ...] = ()
    """How facts were read when not from the preferred output (``Snapshot.notes``)."""
    diagnostics: tuple[str, ...] = ()
