"""A scenario's ``[[routers]]``: legacy (centralised) and distributed Neutron routers, read and
checked.

A legacy router lives on one node, has a ``qr-`` port on each of its internal networks, optionally a
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

A distributed router (DVR) has no ``node``: ``distributed = true`` puts a copy of it (the same
``qr-`` ports, MACs and addresses) on every node that hosts a VM port on one of its networks, as
Neutron's L3 agent in ``agent_mode = dvr`` does; VMs there are routed on their own node::

    [[routers]]
    name = "r1"
    distributed = true
    interfaces = ["blue", "green"]

    external_gateway = { network = "public" }
    floating_ips = [{ port = "blue1", address = "203.0.113.10" }]

Modelled for distributed routers: east-west routing between tunnel (VXLAN/GRE) and VLAN networks with the
hybrid iptables firewall; floating IPs: every node of the router gets the external network's
``fip-`` namespace with its *agent gateway* port (``fg-``, one per node and external network,
Neutron's ``network:floatingip_agent_gateway``), and a floating IP lives on the node of its VM
port; centralised SNAT: a node with ``agent_mode = "dvr_snat"`` (the L3 agent's option of that
name; a node without it is a compute node, ``dvr``) hosts the router's ``snat-`` namespace with
the gateway's ``qg-`` port and one ``sg-`` port per internal network (Neutron's
``network:router_centralized_snat``, its address derived like a gateway's: the first free host
from ``.2`` up), and every copy of the router sends what has no floating IP there. With several
``dvr_snat`` nodes the first one in the file gets the router (Neutron's scheduler picks one);
with none, a VM without a floating IP has no way out, as in Neutron.

Not modelled yet (each one a reported mistake, never a silent fallback): ``enable_snat = false``,
centralised floating IPs, flat tenant networks, the native OVS firewall, and a scenario
mixing distributed routers with legacy gateways.

Addresses nobody gave are derived, and the rule is stated here and in docs/lab.md: a router's
interface takes its network's gateway address, the first host of the subnet (``.1``), as
Neutron's default ``gateway_ip``; the external network's upstream gateway (the router's default
route) is likewise the external subnet's first host; a gateway port without ``ip`` takes the
external subnet's first free host from ``.2`` up; so does each agent gateway port, after every
router's own addresses, node by node in scenario order.

IPv6: a legacy router's interface on a network with an ``ipv6_cidr`` also gets that subnet's
gateway address, always derived (the first host, ``::1``, Neutron's default ``gateway_ip``; a
VM port holding it is a reported mistake). IPv6 on a distributed router's network and an
external network with an ``ipv6_cidr`` are refused, not approximated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from nodetrace.neutron.scenario import (
    Network,
    NetworkType,
    Node,
    Port,
    _entries,
    _Entry,
    _entry_lines,
    _id,
    _name,
    _Problems,
    stable_mac,
    stable_uuid,
)

_ROUTER_KEYS = ("name", "id", "node", "distributed", "interfaces", "external_gateway",
                "enable_snat", "floating_ips")  # fmt: skip


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
    ip6: IPv6Address | None = None
    """A legacy router's address on the network's IPv6 subnet (``ipv6_cidr``), if it has one."""
    prefixlen6: int = 0
    ip6_derived: str = ""


@dataclass(frozen=True, slots=True)
class AgentGateway:
    """A node's ``fg-`` port on an external network (``network:floatingip_agent_gateway``),
    shared by every distributed router with a gateway on that network."""

    node: str
    network: str
    port_id: str
    mac: str
    ip: IPv4Address
    prefixlen: int
    ip_derived: str


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
    """The node of a legacy router; ``""`` for a distributed one (see :func:`router_hosts`)."""
    interfaces: tuple[RouterInterface, ...]
    gateway: RouterInterface | None = None
    upstream_gateway: IPv4Address | None = None
    """The next hop of the default route: the external subnet's first host."""
    enable_snat: bool = True
    floating_ips: tuple[FloatingIp, ...] = ()
    distributed: bool = False
    """DVR: a ``qrouter-`` namespace on every node hosting a VM port on one of its networks."""
    agent_gateways: tuple[AgentGateway, ...] = ()
    """A distributed router's nodes' ``fg-`` ports on its external network."""
    snat_node: str = ""
    """The ``dvr_snat`` node holding a distributed router's ``snat-`` namespace; "" if none."""
    snat_ports: tuple[RouterInterface, ...] = ()
    """Its ``sg-`` ports, one per internal network, in the order of the interfaces."""


def router_hosts(router: Router, nodes: Sequence[Node], ports: Sequence[Port]) -> tuple[str, ...]:
    """The nodes the router's namespace is on, in scenario order: its node for a legacy router;
    for a distributed one, every node with a VM port on one of its networks (the server's
    ``_get_dvr_hosts_for_router`` in ``neutron/db/l3_dvrscheduler_db.py``, compute ports only),
    and its ``dvr_snat`` node."""
    if not router.distributed:
        return (router.node,)
    nets = {i.network for i in router.interfaces}
    hosting = {p.node for p in ports if p.network in nets}
    if router.snat_node:  # scheduled there, VMs or not (DvrEdgeRouter)
        hosting.add(router.snat_node)
    return tuple(n.name for n in nodes if n.name in hosting)


def gateway_address(net: IPv4Network) -> IPv4Address:
    """Neutron's default ``gateway_ip``: the subnet's first host."""
    return net.network_address + 1


def gateway_address6(net: IPv6Network) -> IPv6Address:
    """Neutron's default ``gateway_ip`` of an IPv6 subnet: its first host (``::1``)."""
    return net.network_address + 1


def router_networks(
    routers: tuple[Router, ...], node: str, nodes: Sequence[Node], ports: Sequence[Port]
) -> frozenset[str]:
    """UUIDs of the networks the routers on ``node`` have a port on."""
    out: set[str] = set()
    for r in routers:
        if node in router_hosts(r, nodes, ports):
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
        distributed = e.flag("distributed", False)
        node = ""
        if distributed:
            _check_distributed(e, doc, nets)
        else:
            node = e.text("node", required=True) or ""
        if node and node not in node_names:
            e.error(f"node {node!r}: no such node (known: {', '.join(sorted(node_names))})")
        interfaces = _interfaces(e, name, nets, used, ports, distributed=distributed)
        gateway, upstream = _gateway(e, name, nets, used)
        snat = e.flag("enable_snat", True)
        if not snat and gateway is None:
            e.error("enable_snat = false needs an external_gateway")
        fips = _floating_ips(e, gateway, nets, interfaces, vm_ports, used)
        routers.append(
            Router(
                name, router_id, node, tuple(interfaces), gateway, upstream, snat, tuple(fips),
                distributed,
            )
        )  # fmt: skip
    _check_dvr_mix(doc, problems, routers)
    snat_nodes = [n for n, mode in read_agent_modes(doc, problems).items() if mode == "dvr_snat"]
    if snat_nodes:
        routers = [_with_snat(r, snat_nodes[0], nets, used, problems) for r in routers]
    return _with_agent_gateways(routers, nodes, ports, nets, used, problems)


AGENT_MODES = ("dvr", "dvr_snat")
"""The L3 agent modes a scenario's nodes may have (``[DEFAULT] agent_mode``)."""


def read_agent_modes(doc: Mapping[str, Any], problems: _Problems) -> dict[str, str]:
    """Each node's ``agent_mode``: ``dvr`` unless it says ``dvr_snat``."""
    raw = doc.get("nodes", [])
    if not isinstance(raw, list):
        return {}  # reported with the nodes
    lines = _entry_lines(problems.text, "nodes")
    out: dict[str, str] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue  # reported with the nodes
        mode = item.get("agent_mode", "dvr")
        if mode not in AGENT_MODES:
            problems.add(
                f"nodes[{i}]", lines[i] if i < len(lines) else None,
                f"agent_mode = {mode!r}: expected {' or '.join(AGENT_MODES)}",
            )  # fmt: skip
            mode = "dvr"
        out[item["name"]] = mode
    return out


def _with_snat(
    r: Router,
    node: str,
    nets: Mapping[str, Network],
    used: dict[tuple[str, IPv4Address], str],
    problems: _Problems,
) -> Router:
    """A distributed router with a gateway, scheduled on the ``dvr_snat`` node ``node``: its
    ``sg-`` ports (``_create_snat_intf_ports_if_not_exists`` on the server)."""
    if not r.distributed or r.gateway is None:
        return r
    ports = []
    for iface in r.interfaces:
        net = nets[iface.network]
        cidr = net.cidr
        assert isinstance(cidr, IPv4Network)
        found = next((h for h in cidr.hosts() if h > gateway_address(cidr)
                      and (net.id, h) not in used), None)  # fmt: skip
        if found is None:
            problems.add("routers", None, f"router {r.name!r}: no free address left in {cidr} "
                         "for its centralised SNAT port")  # fmt: skip
            continue
        used[(net.id, found)] = f"the SNAT port of router {r.name!r}"
        port_id = stable_uuid("router-snat", f"{r.name}:{net.id}")
        ports.append(
            RouterInterface(
                net.id,
                port_id,
                stable_mac(port_id),
                found,
                cidr.prefixlen,
                f"the first free address of {cidr} from .2 up",
            )
        )
    return replace(r, snat_node=node, snat_ports=tuple(ports))


def _with_agent_gateways(
    routers: list[Router],
    nodes: list[Node],
    ports: list[Port],
    nets: Mapping[str, Network],
    used: dict[tuple[str, IPv4Address], str],
    problems: _Problems,
) -> list[Router]:
    """Each node of a distributed router with a gateway gets one ``fg-`` port per external
    network (the server creates it when the node's agent first asks); addresses are derived
    like a gateway's, after every router's."""
    made: dict[tuple[str, str], AgentGateway] = {}
    out = []
    for r in routers:
        if not r.distributed or r.gateway is None:
            out.append(r)
            continue
        net = nets[r.gateway.network]
        cidr = net.cidr
        assert isinstance(cidr, IPv4Network)
        mine = []
        for node in router_hosts(r, nodes, ports):
            key = (node, net.id)
            if key not in made:
                found = next((h for h in cidr.hosts() if h > gateway_address(cidr)
                              and (net.id, h) not in used), None)  # fmt: skip
                if found is None:
                    problems.add(
                        "routers", None,
                        f"router {r.name!r}: no free address left in {cidr} for the agent "
                        f"gateway port of {node}",
                    )  # fmt: skip
                    continue
                used[(net.id, found)] = f"the agent gateway port of {node}"
                port_id = stable_uuid("agent-gateway", f"{node}:{net.id}")
                made[key] = AgentGateway(
                    node, net.id, port_id, stable_mac(port_id), found, cidr.prefixlen,
                    f"the first free address of {cidr} from .2 up",
                )  # fmt: skip
            mine.append(made[key])
        out.append(replace(r, agent_gateways=tuple(mine)))
    return out


def _check_distributed(e: _Entry, doc: Mapping[str, Any], nets: Mapping[str, Network]) -> None:
    """What a distributed router may use today; the rest is said, not approximated."""
    if "node" in e.data:
        e.error(
            "node: a distributed router runs on every node hosting a VM port on its networks; "
            "remove node"
        )
    if e.data.get("enable_snat", True) is not True:
        e.error("enable_snat = false is not modelled for distributed routers")
    if doc.get("firewall_driver", "iptables_hybrid") != "iptables_hybrid":
        e.error("distributed routers are modelled with firewall_driver = iptables_hybrid only")
    raw = e.data.get("interfaces", [])
    for item in raw if isinstance(raw, list) else []:
        ref = item.get("network") if isinstance(item, dict) else item
        net = nets.get(str(ref))
        if net is not None and not (net.type.is_tunnel or net.type is NetworkType.VLAN):
            e.error(
                f"interfaces: network {net.name!r} is {net.type.value}: distributed routers "
                "are modelled on tunnel (vxlan, gre) and vlan networks only"
            )


def _check_dvr_mix(doc: Mapping[str, Any], problems: _Problems, routers: list[Router]) -> None:
    """DVR turns every OVS agent distributed: a flat tenant network (untagged frames, matched
    with no VLAN in the DVR tables) and a legacy router's gateway beside it are not modelled."""
    if not any(r.distributed for r in routers):
        return
    vlan = [
        n.get("name")
        for n in doc.get("networks", [])
        if isinstance(n, dict) and n.get("type") == "flat" and not n.get("external", False)
    ]
    if vlan:
        problems.add(
            "routers", None,
            f"distributed routers with flat tenant networks ({', '.join(map(str, vlan))}) are "
            "not modelled (their untagged DVR flows)",
        )  # fmt: skip
    if any(r.gateway is not None for r in routers if not r.distributed):
        problems.add(
            "routers", None,
            "distributed routers beside a legacy router with an external gateway are not "
            "modelled (br-ex's DVR tables)",
        )  # fmt: skip


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
    ports: Sequence[Port] = (),
    *,
    distributed: bool = False,
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
        iface = RouterInterface(net.id, port_id, mac, ip, cidr.prefixlen, derived)
        if net.ipv6_cidr is not None:
            if distributed:
                e.error(
                    f"{where}: network {net.name!r} has an ipv6_cidr: IPv6 through distributed "
                    "routers is not modelled (legacy routers only)"
                )
                continue
            iface = _with_ipv6(e, iface, net, net.ipv6_cidr, ports, f"{where}: network")
        out.append(iface)
    return out


def _with_ipv6(
    e: _Entry,
    iface: RouterInterface,
    net: Network,
    cidr6: IPv6Network,
    ports: Sequence[Port],
    where: str,
) -> RouterInterface:
    """The interface's address on the network's IPv6 subnet: always derived, as Neutron's
    default ``gateway_ip`` (the subnet's first host, ``::1``); a VM port holding it is an
    error."""
    ip6 = gateway_address6(cidr6)
    holder = next((p.name for p in ports if p.network == net.id and ip6 in p.fixed_ips), None)
    if holder is not None:
        e.error(f"{where} {net.name!r}: its IPv6 gateway address {ip6} is used by port {holder!r}")
    derived = f"the IPv6 gateway address of {net.name} ({cidr6}'s first host)"
    return replace(iface, ip6=ip6, prefixlen6=cidr6.prefixlen, ip6_derived=derived)


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
    if net.ipv6_cidr is not None:
        e.error(
            f"external_gateway: network {net.name!r} has an ipv6_cidr: an IPv6 external gateway "
            "is not modelled (IPv6 is routed between a legacy router's internal networks only)"
        )
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
