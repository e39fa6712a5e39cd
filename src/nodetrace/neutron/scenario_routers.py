"""A scenario's ``[[routers]]``: legacy (centralised) Neutron routers, read and checked.

A router lives on one node, has a ``qr-`` port on each of its internal networks, optionally a
``qg-`` port on an external network (its gateway, with SNAT on or off) and floating IPs that map
an external address to a VM port's fixed address::

    [[networks]]
    name = "public"
    type = "vlan"
    segmentation_id = 100
    cidr = "203.0.113.0/24"
    external = true                     # on the provider bridge br-ex

    [[routers]]
    name = "r1"
    node = "net1"
    interfaces = ["private", { network = "db", ip = "10.1.0.254" }]
    external_gateway = { network = "public", ip = "203.0.113.5" }
    enable_snat = true
    floating_ips = [{ port = "web1", address = "203.0.113.10" }]

Addresses nobody gave are derived, and the rule is stated here and in docs/lab.md: a router's
interface takes its network's gateway address, the first host of the subnet (``.1``), as
Neutron's default ``gateway_ip``; the external network's upstream gateway (the router's default
route) is likewise the external subnet's first host; a gateway port without ``ip`` takes the
external subnet's first free host from ``.2`` up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from typing import Any

from nodetrace.neutron.scenario import (
    Network,
    Node,
    Port,
    _entries,
    _Entry,
    _id,
    _name,
    _Problems,
    stable_mac,
    stable_uuid,
)

_ROUTER_KEYS = ("name", "id", "node", "interfaces", "external_gateway", "enable_snat",
                "floating_ips")  # fmt: skip


@dataclass(frozen=True, slots=True)
class RouterInterface:
    """A router's port on one network: ``qr-`` (internal) or ``qg-`` (its gateway)."""

    network: str
    """The network's UUID."""
    port_id: str
    mac: str
    ip: IPv4Address
    prefixlen: int
    ip_derived: str = ""
    """How the address was derived when the scenario did not give it ("" when given)."""


@dataclass(frozen=True, slots=True)
class FloatingIp:
    address: IPv4Address
    port: str
    """The VM port's UUID."""
    fixed_ip: IPv4Address


@dataclass(frozen=True, slots=True)
class Router:
    name: str
    id: str
    node: str
    interfaces: tuple[RouterInterface, ...]
    gateway: RouterInterface | None = None
    upstream_gateway: IPv4Address | None = None
    """The next hop of the default route: the external subnet's first host."""
    enable_snat: bool = True
    floating_ips: tuple[FloatingIp, ...] = ()


def gateway_address(net: IPv4Network) -> IPv4Address:
    """Neutron's default ``gateway_ip``: the subnet's first host."""
    return net.network_address + 1


def router_networks(routers: tuple[Router, ...], node: str) -> frozenset[str]:
    """UUIDs of the networks the routers on ``node`` have a port on."""
    out: set[str] = set()
    for r in routers:
        if r.node == node:
            out.update(i.network for i in r.interfaces)
            if r.gateway is not None:
                out.add(r.gateway.network)
    return frozenset(out)


def read_routers(
    doc: Mapping[str, Any],
    problems: _Problems,
    nodes: list[Node],
    networks: list[Network],
    ports: list[Port],
) -> list[Router]:
    """Every ``[[routers]]`` entry, each mistake recorded in ``problems``."""
    node_names = {n.name for n in nodes}
    nets = {n.name: n for n in networks} | {n.id: n for n in networks}
    vm_ports = {p.name: p for p in ports} | {p.id: p for p in ports}
    used: dict[tuple[str, IPv4Address], str] = {
        (p.network, ip): f"port {p.name!r}"
        for p in ports
        for ip in p.fixed_ips
        if isinstance(ip, IPv4Address)
    }
    for p in ports:
        net = nets.get(p.network)
        if net is not None and net.external:
            problems.add(
                "ports",
                None,
                f"port {p.name!r} is on the external network {net.name!r}: VM ports on external "
                "networks are not modelled (only routers' gateways)",
            )
    routers: list[Router] = []
    names: set[str] = set()
    for e in _entries(doc, "routers", problems, required=False):
        e.check_keys(_ROUTER_KEYS)
        name = _name(e, names)
        router_id = _id(e, "router", name)
        node = e.text("node", required=True) or ""
        if node and node not in node_names:
            e.error(f"node {node!r}: no such node (known: {', '.join(sorted(node_names))})")
        interfaces = _interfaces(e, name, nets, used)
        gateway, upstream = _gateway(e, name, nets, used)
        snat = e.flag("enable_snat", True)
        if not snat and gateway is None:
            e.error("enable_snat = false needs an external_gateway")
        fips = _floating_ips(e, gateway, nets, interfaces, vm_ports, used)
        routers.append(
            Router(name, router_id, node, tuple(interfaces), gateway, upstream, snat, tuple(fips))
        )
    return routers


def _port(router: str, network: Network, kind: str) -> tuple[str, str]:
    port_id = stable_uuid(kind, f"{router}:{network.id}")
    return port_id, stable_mac(port_id)


def _claim(
    e: _Entry,
    used: dict[tuple[str, IPv4Address], str],
    net: Network,
    ip: IPv4Address,
    owner: str,
) -> None:
    other = used.get((net.id, ip))
    if other is not None:
        e.error(f"address {ip} on network {net.name!r} is already used by {other}")
    used[(net.id, ip)] = owner


def _v4_subnet(e: _Entry, net: Network, what: str) -> IPv4Network | None:
    if not isinstance(net.cidr, IPv4Network):
        e.error(f"{what} {net.name!r}: a router port needs an IPv4 cidr on the network")
        return None
    return net.cidr


def _address(e: _Entry, text: object, net: IPv4Network, what: str) -> IPv4Address | None:
    try:
        ip = ip_address(str(text))
    except ValueError:
        e.error(f"{what} {text!r}: not an IP address")
        return None
    if not isinstance(ip, IPv4Address) or ip not in net:
        e.error(f"{what} {ip} is outside the network's subnet {net}")
        return None
    return ip


def _interfaces(
    e: _Entry,
    router: str,
    nets: Mapping[str, Network],
    used: dict[tuple[str, IPv4Address], str],
) -> list[RouterInterface]:
    raw = e.data.get("interfaces", [])
    if not isinstance(raw, list):
        e.error('interfaces: expected a list like ["private", { network = "db", ip = "..." }]')
        return []
    out: list[RouterInterface] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"interfaces[{i}]"
        if isinstance(item, str):
            item = {"network": item}
        if not isinstance(item, dict) or set(item) - {"network", "ip"} or "network" not in item:
            e.error(f'{where}: expected a network name or {{ network = "...", ip = "..." }}')
            continue
        net = nets.get(str(item["network"]))
        if net is None:
            e.error(f"{where}: network {item['network']!r}: no such network")
            continue
        if net.external:
            e.error(f"{where}: {net.name!r} is an external network: use external_gateway")
            continue
        if net.id in seen:
            e.error(f"{where}: the router has an interface on {net.name!r} already")
        seen.add(net.id)
        cidr = _v4_subnet(e, net, f"{where}: network")
        if cidr is None:
            continue
        derived = ""
        if "ip" in item:
            ip = _address(e, item["ip"], cidr, f"{where}: ip")
            if ip is None:
                continue
        else:
            ip = gateway_address(cidr)
            derived = f"the gateway address of {net.name} ({cidr}'s first host)"
        _claim(e, used, net, ip, f"router {router!r}")
        port_id, mac = _port(router, net, "router-interface")
        out.append(RouterInterface(net.id, port_id, mac, ip, cidr.prefixlen, derived))
    return out


def _gateway(
    e: _Entry,
    router: str,
    nets: Mapping[str, Network],
    used: dict[tuple[str, IPv4Address], str],
) -> tuple[RouterInterface | None, IPv4Address | None]:
    raw = e.data.get("external_gateway")
    if raw is None:
        return None, None
    if isinstance(raw, str):
        raw = {"network": raw}
    if not isinstance(raw, dict) or set(raw) - {"network", "ip"} or "network" not in raw:
        e.error('external_gateway: expected { network = "...", ip = "..." }')
        return None, None
    net = nets.get(str(raw["network"]))
    if net is None:
        e.error(f"external_gateway: network {raw['network']!r}: no such network")
        return None, None
    if not net.external:
        e.error(f"external_gateway: network {net.name!r} is not external (external = true)")
        return None, None
    cidr = _v4_subnet(e, net, "external_gateway: network")
    if cidr is None:
        return None, None
    upstream = gateway_address(cidr)
    used.setdefault((net.id, upstream), "the external network's gateway")
    derived = ""
    if "ip" in raw:
        ip = _address(e, raw["ip"], cidr, "external_gateway: ip")
        if ip is None:
            return None, None
    else:
        free = (h for h in cidr.hosts() if h > upstream and (net.id, h) not in used)
        found = next(free, None)
        if found is None:
            e.error(f"external_gateway: no free address left in {cidr}")
            return None, None
        ip = found
        derived = f"the first free address of {cidr} from .2 up"
    _claim(e, used, net, ip, f"router {router!r}")
    port_id, mac = _port(router, net, "router-gateway")
    return RouterInterface(net.id, port_id, mac, ip, cidr.prefixlen, derived), upstream


def _floating_ips(
    e: _Entry,
    gateway: RouterInterface | None,
    nets: Mapping[str, Network],
    interfaces: list[RouterInterface],
    vm_ports: Mapping[str, Port],
    used: dict[tuple[str, IPv4Address], str],
) -> list[FloatingIp]:
    raw = e.data.get("floating_ips", [])
    if not isinstance(raw, list):
        e.error('floating_ips: expected a list like [{ port = "web1", address = "..." }]')
        return []
    if raw and gateway is None:
        e.error("floating_ips need an external_gateway")
        return []
    out: list[FloatingIp] = []
    for i, item in enumerate(raw):
        where = f"floating_ips[{i}]"
        if not isinstance(item, dict) or set(item) != {"port", "address"}:
            e.error(f'{where}: expected {{ port = "...", address = "..." }}')
            continue
        assert gateway is not None
        port = vm_ports.get(str(item["port"]))
        if port is None:
            e.error(f"{where}: port {item['port']!r}: no such port")
            continue
        if port.network not in {i.network for i in interfaces}:
            e.error(f"{where}: port {port.name!r} is on a network the router has no interface on")
            continue
        fixed = next((ip for ip in port.fixed_ips if isinstance(ip, IPv4Address)), None)
        if fixed is None:
            e.error(f"{where}: port {port.name!r} has no IPv4 address")
            continue
        ext = nets[gateway.network]
        cidr = ext.cidr
        assert isinstance(cidr, IPv4Network)
        address = _address(e, item["address"], cidr, f"{where}: address")
        if address is None:
            continue
        _claim(e, used, ext, address, f"floating IP of {port.name!r}")
        out.append(FloatingIp(address, port.id, fixed))
    return out
