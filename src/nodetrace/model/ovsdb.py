"""Open vSwitch's configuration database as data: bridges, their ports and interfaces.

This is what ``ovs-vsctl show`` and ``ovs-vsctl list Bridge|Port|Interface`` print: which port
is an access port of which VLAN, which interface is a patch to which peer, where a tunnel goes.
NORMAL switching, patch ports and tunnel encapsulation all depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address

Pairs = tuple[tuple[str, str], ...]
"""An OVSDB string map (options, external_ids) kept in the order the source printed it."""


def pairs_get(pairs: Pairs, key: str) -> str | None:
    return next((v for k, v in pairs if k == key), None)


class VlanMode(StrEnum):
    """A port's VLAN behaviour for NORMAL switching (OVSDB ``Port.vlan_mode``)."""

    ACCESS = "access"
    TRUNK = "trunk"
    NATIVE_TAGGED = "native-tagged"
    NATIVE_UNTAGGED = "native-untagged"
    DOT1Q_TUNNEL = "dot1q-tunnel"


TUNNEL_TYPES = frozenset(
    {
        "vxlan", "gre", "geneve", "stt", "lisp", "erspan", "ip6erspan", "ip6gre", "gtpu", "bareudp",
        "srv6",
    }
)  # fmt: skip

DEFAULT_DST_PORTS = {"vxlan": 4789, "geneve": 6081, "stt": 7471, "lisp": 4341, "gtpu": 2152}
"""The UDP/TCP destination port a tunnel type uses unless ``options:dst_port`` says otherwise."""


@dataclass(frozen=True, slots=True)
class Interface:
    """One OVSDB Interface row (or an ``Interface`` block of ``ovs-vsctl show``)."""

    name: str
    type: str = ""
    """Empty for a system device (``ovs-vsctl`` shows no ``type:`` line then)."""
    ofport: int | None = None
    options: Pairs = ()
    external_ids: Pairs = ()
    mac_in_use: str | None = None
    error: str | None = None

    @property
    def is_patch(self) -> bool:
        return self.type == "patch"

    @property
    def is_tunnel(self) -> bool:
        return self.type in TUNNEL_TYPES

    @property
    def peer(self) -> str | None:
        """The peer interface of a patch port."""
        return pairs_get(self.options, "peer") if self.is_patch else None

    def option(self, key: str) -> str | None:
        return pairs_get(self.options, key)

    @property
    def remote_ip(self) -> str | None:
        return self.option("remote_ip")

    @property
    def local_ip(self) -> str | None:
        return self.option("local_ip")

    @property
    def out_key(self) -> str | None:
        """The tunnel key sent: ``out_key``, else ``key``; ``flow`` means "from tun_id"."""
        return self.option("out_key") or self.option("key")

    @property
    def in_key(self) -> str | None:
        return self.option("in_key") or self.option("key")

    @property
    def dst_port(self) -> int | None:
        text = self.option("dst_port")
        if text is not None and text.isdigit():
            return int(text)
        return DEFAULT_DST_PORTS.get(self.type)

    @property
    def iface_id(self) -> str | None:
        return pairs_get(self.external_ids, "iface-id")

    @property
    def attached_mac(self) -> str | None:
        return pairs_get(self.external_ids, "attached-mac")


def parse_ip(text: str | None) -> IPv4Address | IPv6Address | None:
    """An IP address option value, or ``None`` when it is absent or ``flow``."""
    if text is None:
        return None
    try:
        return ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Port:
    """One OVSDB Port row: a bundle of interfaces (one, unless it is a bond) and its VLANs."""

    name: str
    interfaces: tuple[Interface, ...] = ()
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: VlanMode | None = None
    """As configured; ``None`` when the column is empty (see :attr:`effective_vlan_mode`)."""
    external_ids: Pairs = ()
    other_config: Pairs = ()
    vlan_mode_known: bool = True
    """False when the source cannot show ``vlan_mode`` (``ovs-vsctl show`` does not)."""

    @property
    def effective_vlan_mode(self) -> VlanMode:
        """What ovs-vswitchd uses: an empty ``vlan_mode`` means access with a tag, else trunk."""
        if self.vlan_mode is not None:
            return self.vlan_mode
        return VlanMode.ACCESS if self.tag is not None else VlanMode.TRUNK


@dataclass(frozen=True, slots=True)
class Bridge:
    name: str
    ports: tuple[Port, ...] = ()
    datapath_type: str = ""
    fail_mode: str = ""
    external_ids: Pairs = ()
    other_config: Pairs = ()
    mcast_snooping_enable: bool = False

    def port(self, name: str) -> Port | None:
        return next((p for p in self.ports if p.name == name), None)

    def interfaces(self) -> tuple[tuple[Port, Interface], ...]:
        return tuple((p, i) for p in self.ports for i in p.interfaces)


@dataclass(frozen=True, slots=True)
class OvsdbConfig:
    """The bridges of one Open vSwitch instance, in the order the source listed them."""

    bridges: tuple[Bridge, ...] = ()
    ovs_version: str | None = None
    source: str = ""
    incomplete: str = ""
    """Why the listing is known to lack bridges or ports (an elision line where it was
    copied), naming file:line; empty when it is whole."""

    def bridge(self, name: str) -> Bridge | None:
        return next((b for b in self.bridges if b.name == name), None)

    def interface(self, name: str) -> tuple[Bridge, Port, Interface] | None:
        """Find an interface by name in any bridge."""
        found = ((b, p, i) for b in self.bridges for p, i in b.interfaces() if i.name == name)
        return next(found, None)


# ---------------------------------------------------------------------------------------------
# Raw OVSDB rows, as ``ovs-vsctl --format=json list TABLE`` prints them


@dataclass(frozen=True, slots=True)
class OvsdbUuid:
    uuid: str


Atom = str | int | float | bool | OvsdbUuid


@dataclass(frozen=True, slots=True)
class OvsdbSet:
    items: tuple[Atom, ...] = ()


@dataclass(frozen=True, slots=True)
class OvsdbMap:
    pairs: tuple[tuple[Atom, Atom], ...] = ()


OvsdbValue = Atom | OvsdbSet | OvsdbMap


@dataclass(frozen=True, slots=True)
class OvsdbRow:
    columns: tuple[tuple[str, OvsdbValue], ...]

    def get(self, column: str) -> OvsdbValue | None:
        return next((value for name, value in self.columns if name == column), None)


@dataclass(frozen=True, slots=True)
class OvsdbTable:
    """One ``list`` output; ``name`` is recognised from the columns (Bridge, Port, Interface)."""

    name: str
    rows: tuple[OvsdbRow, ...]
    source: str = ""
