"""A lab scenario: the Neutron objects (nodes, networks, security groups, ports) one TOML file names.

A scenario is what an operator would read off the Neutron API for the nodes of interest. From it
:mod:`nodetrace.neutron.generate` derives what the agents put on each node, and the lab builds
it. A short example (every key is documented in docs/lab.md)::

    [[nodes]]
    name = "cmp1"

    [[networks]]
    name = "private"
    type = "vxlan"
    segmentation_id = 1037
    cidr = "10.0.0.0/24"

    [[security_groups]]
    name = "web"
    rules = [
      { direction = "ingress", protocol = "tcp", port = 22 },
      { direction = "egress" },
    ]

    [[ports]]
    name = "vm1"
    node = "cmp1"
    network = "private"
    ip = "10.0.0.11"
    security_groups = ["web"]

Names and missing identities (UUIDs, MACs, addresses) are filled in deterministically, so the
same file always yields the same node. Mistakes are reported with the file, the line of the
entry and what was expected, all at once.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nodetrace.errors import InputError

if TYPE_CHECKING:
    from nodetrace.neutron.scenario_routers import Router

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_UUID_NAMESPACE = uuid.UUID("6f1c2f5e-6a43-4c38-9d59-4f8b5d0f2a10")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

DEFAULT_UNDERLAY = IPv4Network("192.168.50.0/24")


class NetworkType(StrEnum):
    VXLAN = "vxlan"
    GRE = "gre"
    VLAN = "vlan"
    FLAT = "flat"
    """A provider network without a segment: untagged frames on its physical network."""

    @property
    def is_tunnel(self) -> bool:
        return self in (NetworkType.VXLAN, NetworkType.GRE)

    @property
    def is_provider(self) -> bool:
        """On a physical network's bridge (VLAN or flat), not in a tunnel."""
        return not self.is_tunnel


_MTU = {
    NetworkType.VXLAN: 1450,
    NetworkType.GRE: 1458,
    NetworkType.VLAN: 1500,
    NetworkType.FLAT: 1500,
}
"""Neutron's network MTU on a 1500-byte underlay (IPv4 outer headers)."""

_SEGMENT_RANGE = {
    NetworkType.VXLAN: (1, 2**24 - 1),
    NetworkType.GRE: (1, 2**32 - 1),
    NetworkType.VLAN: (1, 4094),
}
"""Valid segmentation ids; a flat network has none."""

NO_SEGMENT = 0
"""``Network.segmentation_id`` of a flat network (Neutron's ``provider:segmentation_id`` is
null there; 0 is no valid id of any type, so no flow or tag can take it for one)."""
PHYSNET = "physnet1"
"""The physical network of the lab's provider networks, on br-phys."""
EXTERNAL_PHYSNET = "external"
"""The physical network of external networks, on br-ex (``bridge_mappings``)."""


class FirewallDriver(StrEnum):
    """The OVS agent's ``[securitygroup] firewall_driver``: where security groups live."""

    IPTABLES_HYBRID = "iptables_hybrid"
    """iptables on a ``qbr`` Linux bridge between the tap and br-int (os-vif's hybrid plug)."""
    OPENVSWITCH = "openvswitch"
    """Conntrack and conjunction flows in br-int; the tap is plugged straight into br-int."""


class Direction(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"


class Ethertype(StrEnum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"

    @property
    def version(self) -> int:
        return 4 if self is Ethertype.IPV4 else 6


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    underlay_ip: IPv4Address


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    id: str
    type: NetworkType
    segmentation_id: int
    """VNI, GRE key or VLAN id; :data:`NO_SEGMENT` for a flat network."""
    cidr: IPNetwork | None
    mtu: int
    ipv6_cidr: IPv6Network | None = None
    """A second (IPv6) subnet, for dual-stack networks."""
    external: bool = False
    """An external (provider) network on br-ex, where routers have their gateway port."""

    @property
    def physical_network(self) -> str | None:
        """``provider:physical_network``: where a VLAN or flat network's frames go out (a
        tunnel network has none)."""
        if self.type.is_tunnel:
            return None
        return EXTERNAL_PHYSNET if self.external else PHYSNET

    def subnet(self, version: int) -> IPNetwork | None:
        """The network's subnet of one IP version, if it has one."""
        for net in (self.cidr, self.ipv6_cidr):
            if net is not None and net.version == version:
                return net
        return None


@dataclass(frozen=True, slots=True)
class SgRule:
    """One security group rule as the Neutron API holds it.

    ``port_min``/``port_max`` are the port range for TCP/UDP/SCTP/DCCP and the ICMP type/code
    for ICMP, as in Neutron. ``remote_group`` is the remote group's UUID.
    """

    direction: Direction
    ethertype: Ethertype = Ethertype.IPV4
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_ip_prefix: IPNetwork | None = None
    remote_group: str | None = None


@dataclass(frozen=True, slots=True)
class SecurityGroup:
    name: str
    id: str
    rules: tuple[SgRule, ...] = ()


@dataclass(frozen=True, slots=True)
class AddressPair:
    """An allowed address pair: an address (or CIDR) the port may also send from."""

    ip: IPNetwork
    mac: str


@dataclass(frozen=True, slots=True)
class Port:
    """A VM's Neutron port. ``name`` also names the VM's namespace in the lab."""

    name: str
    id: str
    node: str
    network: str
    """The network's UUID."""
    mac: str
    fixed_ips: tuple[IPAddress, ...]
    security_groups: tuple[str, ...] = ()
    """Security group UUIDs, in the order the port lists them (the first decides statefulness)."""
    port_security: bool = True
    allowed_address_pairs: tuple[AddressPair, ...] = ()
    device_id: str = ""
    """The instance UUID (``vm-uuid`` on the OVS interface)."""

    def ips(self, version: int) -> tuple[IPAddress, ...]:
        return tuple(ip for ip in self.fixed_ips if ip.version == version)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    nodes: tuple[Node, ...]
    networks: tuple[Network, ...]
    security_groups: tuple[SecurityGroup, ...]
    ports: tuple[Port, ...]
    source: str = "<scenario>"
    firewall_driver: FirewallDriver = FirewallDriver.IPTABLES_HYBRID
    """One driver for every node, as a deployment configures its agents."""
    routers: tuple[Router, ...] = ()
    _by_id: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        objects: tuple[Network | SecurityGroup | Port, ...] = (
            *self.networks,
            *self.security_groups,
            *self.ports,
        )
        for obj in objects:
            self._by_id[obj.id] = obj

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def network(self, network_id: str) -> Network:
        net = self._by_id.get(network_id)
        if not isinstance(net, Network):
            raise KeyError(network_id)
        return net

    def security_group(self, sg_id: str) -> SecurityGroup:
        sg = self._by_id.get(sg_id)
        if not isinstance(sg, SecurityGroup):
            raise KeyError(sg_id)
        return sg

    def port(self, name_or_id: str) -> Port:
        """A port by its name or UUID."""
        for p in self.ports:
            if name_or_id in (p.name, p.id):
                return p
        raise KeyError(name_or_id)

    def ports_on(self, node: str) -> tuple[Port, ...]:
        return tuple(p for p in self.ports if p.node == node)

    @property
    def tunnel_types(self) -> tuple[NetworkType, ...]:
        """The tunnel types the agents are configured with: those the networks use."""
        return tuple(
            t
            for t in (NetworkType.VXLAN, NetworkType.GRE)
            if any(n.type is t for n in self.networks)
        )


def stable_uuid(kind: str, name: str) -> str:
    """A UUID derived from a name, so a scenario without ids still has stable ones."""
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{kind}:{name}"))


def stable_mac(port_id: str) -> str:
    """``fa:16:3e:xx:xx:xx`` (Neutron's default base MAC) with bytes derived from the port id."""
    digest = hashlib.sha256(port_id.encode()).digest()
    return "fa:16:3e:" + ":".join(f"{b:02x}" for b in digest[:3])


# --- reading the TOML file -------------------------------------------------------------------


class _Problems:
    """Collects every mistake in a scenario, each with the line of its entry, then raises once."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text
        self.items: list[str] = []

    def add(self, where: str, line: int | None, message: str) -> None:
        pos = f"{self.source}:{line}" if line else self.source
        self.items.append(f"{pos}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            raise InputError("invalid scenario:\n  " + "\n  ".join(self.items))


def _entry_lines(text: str, table: str) -> list[int]:
    """Line numbers of each ``[[table]]`` header, to point errors at the right entry."""
    header = re.compile(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]")
    return [i for i, line in enumerate(text.splitlines(), 1) if header.match(line)]


E = TypeVar("E", bound=StrEnum)


class _Entry:
    """One entry of an array of tables, with typed getters that record problems."""

    def __init__(
        self, table: str, index: int, data: Any, line: int | None, problems: _Problems
    ) -> None:
        self.where = f"{table}[{index}]"
        self.line = line
        self.problems = problems
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        if not isinstance(data, dict):
            self.error("must be a table")

    def error(self, message: str) -> None:
        self.problems.add(self.where, self.line, message)

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for key in self.data:
            if key not in allowed:
                self.error(f"unknown key {key!r} (expected one of: {', '.join(allowed)})")

    def text(self, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(f"missing {key!r}")
            return default
        if not isinstance(value, str):
            self.error(f"{key} = {value!r}: expected a string")
            return default
        return value

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.error(f"missing {key!r}")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(f"{key} = {value!r}: expected an integer")
            return None
        return value

    def choice(self, key: str, default: E, expected: str, *, required: bool = False) -> E:
        """One of ``default``'s enum values, by its text; a wrong one is recorded, ``default`` taken."""
        text = self.text(key, required=required) or default.value
        try:
            return type(default)(text)
        except ValueError:
            self.error(f"{key} {text!r}: expected {expected}")
            return default

    def network(self, key: str, *, strict: bool = True) -> IPNetwork | None:
        text = self.text(key)
        if text is None:
            return None
        try:
            return ip_network(text, strict=strict)
        except ValueError as err:
            self.error(f"{key} {text!r}: {err}")
            return None

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            self.error(f"{key} = {value!r}: expected true or false")
            return default
        return value

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key, [])
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error(f"{key} = {value!r}: expected a list of strings")
            return []
        return list(value)


def _name(entry: _Entry, seen: set[str]) -> str:
    name = entry.text("name", required=True) or f"unnamed{len(seen)}"
    if not _NAME.match(name):
        entry.error(
            f"name {name!r}: use 1-20 lower-case letters, digits and '-', starting with a letter"
        )
    if name in seen:
        entry.error(f"name {name!r} is used twice")
    seen.add(name)
    return name


def _id(entry: _Entry, kind: str, name: str) -> str:
    value = entry.text("id")
    if value is None:
        return stable_uuid(kind, name)
    if not _UUID.match(value):
        entry.error(f"id {value!r}: expected a lower-case UUID")
    return value


def _entries(
    doc: Mapping[str, Any], table: str, problems: _Problems, *, required: bool = True
) -> list[_Entry]:
    raw = doc.get(table, [])
    if not isinstance(raw, list):
        problems.add(table, None, "expected an array of tables ([[" + table + "]])")
        return []
    if required and not raw:
        problems.add(table, None, f"at least one [[{table}]] entry is needed")
    lines = _entry_lines(problems.text, table)
    return [
        _Entry(table, i, item, lines[i] if i < len(lines) else None, problems)
        for i, item in enumerate(raw)
    ]


def _read_nodes(doc: Mapping[str, Any], problems: _Problems) -> list[Node]:
    nodes: list[Node] = []
    names: set[str] = set()
    used_ips: set[IPv4Address] = set()
    for i, e in enumerate(_entries(doc, "nodes", problems)):
        e.check_keys(("name", "underlay_ip", "agent_mode"))  # agent_mode: scenario_routers
        name = _name(e, names)
        ip_text = e.text("underlay_ip")
        ip = DEFAULT_UNDERLAY.network_address + (i + 1)
        if ip_text is not None:
            try:
                parsed = ip_address(ip_text)
            except ValueError:
                e.error(f"underlay_ip {ip_text!r}: not an IP address")
            else:
                if isinstance(parsed, IPv4Address):
                    ip = parsed
                else:
                    e.error(f"underlay_ip {ip_text!r}: tunnel endpoints must be IPv4 addresses")
        if ip in used_ips:
            e.error(f"underlay_ip {ip} is used twice")
        used_ips.add(ip)
        nodes.append(Node(name, ip))
    return nodes


def _read_networks(doc: Mapping[str, Any], problems: _Problems) -> list[Network]:
    networks: list[Network] = []
    names: set[str] = set()
    segments: set[tuple[NetworkType, int]] = set()
    for e in _entries(doc, "networks", problems):
        e.check_keys(
            ("name", "id", "type", "segmentation_id", "cidr", "ipv6_cidr", "mtu", "external")
        )
        name = _name(e, names)
        net_type = e.choice("type", NetworkType.VXLAN, "vxlan, gre, vlan or flat", required=True)
        external = e.flag("external", False)
        seg = _segment(e, net_type, external, segments)
        cidr = e.network("cidr")
        mtu_value = e.integer("mtu")
        mtu = _MTU[net_type] if mtu_value is None else mtu_value
        if not 576 <= mtu <= 9000:
            e.error(f"mtu {mtu}: expected 576..9000")
        parsed6 = e.network("ipv6_cidr")
        cidr6 = parsed6 if isinstance(parsed6, IPv6Network) else None
        if parsed6 is not None and cidr6 is None:
            e.error(f"ipv6_cidr {e.text('ipv6_cidr')!r}: not an IPv6 network")
        if external and not net_type.is_provider:
            e.error(
                "an external network must be of type vlan or flat (a provider network on br-ex)"
            )
        networks.append(
            Network(name, _id(e, "network", name), net_type, seg, cidr, mtu, cidr6, external)
        )
    return networks


def _segment(
    e: _Entry, net_type: NetworkType, external: bool, segments: set[tuple[NetworkType, int]]
) -> int:
    """The network's segmentation id, checked against its type and the other networks'.

    A flat network has none, and a physical network carries at most one flat network (its
    untagged frames), as ML2's flat type driver allows."""
    if net_type is NetworkType.FLAT:
        if "segmentation_id" in e.data:
            e.error("a flat network has no segmentation_id (its frames go out untagged)")
        where = 1 if external else 0  # one flat network per physical network
        if (net_type, where) in segments:
            physnet = EXTERNAL_PHYSNET if external else PHYSNET
            e.error(f"physical network {physnet} already carries a flat network")
        segments.add((net_type, where))
        return NO_SEGMENT
    seg_value = e.integer("segmentation_id", required=True)
    seg = 1 if seg_value is None else seg_value
    low, high = _SEGMENT_RANGE[net_type]
    if not low <= seg <= high:
        e.error(f"segmentation_id {seg}: a {net_type} id must be in {low}..{high}")
    if (net_type, seg) in segments:
        e.error(f"{net_type} segmentation_id {seg} is used twice")
    segments.add((net_type, seg))
    return seg


_RULE_KEYS = (
    "direction", "ethertype", "protocol", "port", "port_range_min", "port_range_max",
    "icmp_type", "icmp_code", "remote_ip_prefix", "remote_group",
)  # fmt: skip
_PORT_KEYS = (
    "name", "id", "node", "network", "mac", "ip", "ips", "security_groups", "port_security",
    "allowed_address_pairs", "device_id",
)  # fmt: skip
_PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp", "udplite", "6", "17", "132", "33"})
_ICMP_PROTOCOLS = frozenset({"icmp", "icmpv6", "ipv6-icmp", "1", "58"})


def _read_rule(e: _Entry, index: int, raw: Any, sg_names: Mapping[str, str]) -> SgRule | None:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        e.error(f'{where}: expected a table like {{ direction = "ingress", protocol = "tcp" }}')
        return None
    sub = _Entry(f"{e.where}.{where}", 0, raw, e.line, e.problems)
    sub.where = f"{e.where}.{where}"
    sub.check_keys(_RULE_KEYS)
    direction = sub.choice("direction", Direction.INGRESS, "ingress or egress", required=True)
    ethertype = sub.choice("ethertype", Ethertype.IPV4, "IPv4 or IPv6")
    protocol_raw = raw.get("protocol")
    protocol: str | None
    if protocol_raw is None or protocol_raw in ("any", 0, "0"):
        protocol = None
    elif isinstance(protocol_raw, int) and not isinstance(protocol_raw, bool):
        protocol = str(protocol_raw)
    elif isinstance(protocol_raw, str) and re.match(r"^[a-z0-9-]+$", protocol_raw):
        protocol = protocol_raw
    else:
        sub.error(f"protocol = {protocol_raw!r}: expected a protocol name or number")
        protocol = None
    port_min = sub.integer("port_range_min")
    port_max = sub.integer("port_range_max")
    port = sub.integer("port")
    if port is not None:
        if port_min is not None or port_max is not None:
            sub.error("give either port or port_range_min/port_range_max, not both")
        port_min = port_max = port
    icmp_type, icmp_code = sub.integer("icmp_type"), sub.integer("icmp_code")
    if icmp_type is not None or icmp_code is not None:
        if protocol not in _ICMP_PROTOCOLS:
            sub.error('icmp_type/icmp_code need protocol = "icmp" (or "ipv6-icmp")')
        if icmp_type is None:
            sub.error("icmp_code needs icmp_type")
        port_min, port_max = icmp_type, icmp_code
    elif port_min is not None or port_max is not None:
        if protocol not in _PORT_PROTOCOLS:
            sub.error(f"a port range needs a protocol with ports (tcp, udp...), not {protocol}")
        if port_min is None or port_max is None:
            sub.error("give both port_range_min and port_range_max")
        elif not 1 <= port_min <= port_max <= 65535:
            sub.error(f"port range {port_min}:{port_max} is not within 1..65535")
    prefix = sub.network("remote_ip_prefix", strict=False)
    if prefix is not None and prefix.version != ethertype.version:
        sub.error(f"remote_ip_prefix {sub.text('remote_ip_prefix')} is not an {ethertype} prefix")
    remote_group: str | None = None
    group_text = sub.text("remote_group")
    if group_text is not None:
        if prefix is not None:
            sub.error("give either remote_ip_prefix or remote_group, not both")
        remote_group = sg_names.get(group_text)
        if remote_group is None:
            sub.error(f"remote_group {group_text!r}: no security group of that name or id")
    return SgRule(direction, ethertype, protocol, port_min, port_max, prefix, remote_group)


def _read_security_groups(doc: Mapping[str, Any], problems: _Problems) -> list[SecurityGroup]:
    entries = _entries(doc, "security_groups", problems, required=False)
    names: set[str] = set()
    heads: list[tuple[_Entry, str, str]] = []
    for e in entries:
        e.check_keys(("name", "id", "rules"))
        name = _name(e, names)
        heads.append((e, name, _id(e, "security_group", name)))
    by_name = {name: sg_id for _, name, sg_id in heads} | {sg_id: sg_id for _, _, sg_id in heads}
    groups = []
    for e, name, sg_id in heads:
        raw_rules = e.data.get("rules", [])
        if not isinstance(raw_rules, list):
            e.error("rules: expected a list of tables")
            raw_rules = []
        rules = [_read_rule(e, i, r, by_name) for i, r in enumerate(raw_rules)]
        groups.append(SecurityGroup(name, sg_id, tuple(r for r in rules if r is not None)))
    return groups


def _read_ports(
    doc: Mapping[str, Any],
    problems: _Problems,
    nodes: list[Node],
    networks: list[Network],
    groups: list[SecurityGroup],
) -> list[Port]:
    node_names = {n.name for n in nodes}
    nets = {n.name: n for n in networks} | {n.id: n for n in networks}
    sgs = {g.name: g.id for g in groups} | {g.id: g.id for g in groups}
    ports: list[Port] = []
    names: set[str] = set()
    used_ips: dict[tuple[str, IPAddress], str] = {}
    used_macs: set[str] = set()
    next_host: dict[str, int] = {}
    for e in _entries(doc, "ports", problems):
        e.check_keys(_PORT_KEYS)
        name = _name(e, names)
        port_id = _id(e, "port", name)
        node = e.text("node", required=True) or ""
        if node and node not in node_names:
            e.error(f"node {node!r}: no such node (known: {', '.join(sorted(node_names))})")
        net_text = e.text("network", required=True) or ""
        net = nets.get(net_text)
        if net_text and net is None:
            e.error(f"network {net_text!r}: no such network")
        mac = (e.text("mac") or stable_mac(port_id)).lower()
        if not _MAC.match(mac):
            e.error(f"mac {mac!r}: expected xx:xx:xx:xx:xx:xx")
        elif int(mac[:2], 16) & 1:
            e.error(f"mac {mac}: a port needs a unicast MAC")
        if mac in used_macs:
            e.error(f"mac {mac} is used twice")
        used_macs.add(mac)
        ips: list[IPAddress] = []
        ip_texts = e.texts("ips") + e.texts("ip")
        for text in ip_texts:
            try:
                ips.append(ip_address(text))
            except ValueError:
                e.error(f"ip {text!r}: not an IP address")
        if net is not None:
            if not ip_texts and net.cidr is not None:
                ips.append(_allocate(net, next_host, used_ips))
            for ip in ips:
                subnet = net.subnet(ip.version)
                if subnet is not None and ip not in subnet:
                    e.error(f"ip {ip} is outside the network's subnet {subnet}")
                owner = used_ips.get((net.id, ip))
                if owner is not None:
                    e.error(f"ip {ip} is already used by port {owner!r}")
                used_ips[(net.id, ip)] = name
        sg_ids = []
        for ref in e.texts("security_groups"):
            if ref not in sgs:
                e.error(f"security group {ref!r}: no such group")
            else:
                sg_ids.append(sgs[ref])
        port_security = e.flag("port_security", True)
        if not port_security and sg_ids:
            e.error("a port with port_security = false cannot have security groups")
        pairs = _read_pairs(e, mac)
        device_id = e.text("device_id") or stable_uuid("instance", name)
        ports.append(
            Port(
                name,
                port_id,
                node,
                net.id if net else "",
                mac,
                tuple(ips),
                tuple(sg_ids),
                port_security,
                tuple(pairs),
                device_id,
            )
        )
    return ports


def _allocate(
    net: Network, next_host: dict[str, int], used: Mapping[tuple[str, IPAddress], str]
) -> IPAddress:
    """The next free address from .10 up, as a scenario without ``ip`` asks for."""
    assert net.cidr is not None
    n = next_host.get(net.id, 10)
    while (net.id, net.cidr.network_address + n) in used:
        n += 1
    next_host[net.id] = n + 1
    return net.cidr.network_address + n


def _read_pairs(e: _Entry, port_mac: str) -> list[AddressPair]:
    raw = e.data.get("allowed_address_pairs", [])
    if not isinstance(raw, list):
        e.error("allowed_address_pairs: expected a list of tables")
        return []
    pairs = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "ip_address" not in item:
            e.error(f'allowed_address_pairs[{i}]: expected {{ ip_address = "..." }}')
            continue
        extra = set(item) - {"ip_address", "mac_address"}
        if extra:
            e.error(f"allowed_address_pairs[{i}]: unknown key {sorted(extra)[0]!r}")
        try:
            ip = ip_network(str(item["ip_address"]), strict=False)
        except ValueError as err:
            e.error(f"allowed_address_pairs[{i}].ip_address: {err}")
            continue
        mac = str(item.get("mac_address", port_mac)).lower()
        if not _MAC.match(mac):
            e.error(f"allowed_address_pairs[{i}].mac_address {mac!r}: expected xx:xx:xx:xx:xx:xx")
        pairs.append(AddressPair(ip, mac))
    return pairs


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Read a scenario from TOML text; raise :class:`InputError` listing every mistake."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{source}: not valid TOML: {err}") from None
    problems = _Problems(source, text)
    for key in doc:
        if key not in (
            "name", "firewall_driver", "nodes", "networks", "security_groups", "ports", "routers",
        ):  # fmt: skip
            problems.add(
                key,
                None,
                "unknown top-level key (expected name, firewall_driver, nodes, networks, "
                "security_groups, ports, routers)",
            )
    name = doc.get("name", Path(source).stem if source != "<scenario>" else "scenario")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.add("name", None, f"{name!r}: use 1-20 lower-case letters, digits and '-'")
        name = "scenario"
    nodes = _read_nodes(doc, problems)
    networks = _read_networks(doc, problems)
    groups = _read_security_groups(doc, problems)
    ports = _read_ports(doc, problems, nodes, networks, groups)
    from nodetrace.neutron.scenario_routers import read_routers  # it builds on this module

    routers = read_routers(doc, problems, nodes, networks, ports)
    everything = [n.name for n in nodes] + [p.name for p in ports]
    clashes = sorted({x for x in everything if everything.count(x) > 1})
    if clashes:
        problems.add("names", None, f"a node and a port share the name {clashes[0]!r}")
    driver = _firewall_driver(doc, problems)
    problems.raise_if_any()
    return Scenario(
        name, tuple(nodes), tuple(networks), tuple(groups), tuple(ports), source=source,
        firewall_driver=driver, routers=tuple(routers),
    )  # fmt: skip


def _firewall_driver(doc: Mapping[str, Any], problems: _Problems) -> FirewallDriver:
    """``firewall_driver``, scenario-wide; the agents' packaged default is the hybrid driver."""
    value = doc.get("firewall_driver", FirewallDriver.IPTABLES_HYBRID.value)
    if isinstance(value, str) and value in set(FirewallDriver):
        return FirewallDriver(value)
    lines = problems.text.splitlines()
    line = next(
        (i for i, t in enumerate(lines, 1) if t.lstrip().startswith("firewall_driver")), None
    )
    problems.add("firewall_driver", line, f"{value!r}: expected iptables_hybrid or openvswitch")
    return FirewallDriver.IPTABLES_HYBRID


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; a missing or unreadable file is an :class:`InputError`."""
    path = Path(path)
    if path.is_char_device() or path.is_block_device():
        raise InputError(f"{path}: is a device, not a scenario file")  # /dev/zero never ends
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    return parse_scenario(text, source=str(path))
