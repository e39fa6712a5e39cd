"""What Neutron's L3 agent in ``agent_mode = dvr`` puts on a compute node for a distributed router.

Every node hosting a VM port on one of the router's networks gets the router's own
``qrouter-<uuid>`` namespace with *all* of its ``qr-`` ports, each with the same MAC and
address on every node (they are one Neutron port each). The namespace's sysctls and iptables are
a legacy router's with ``DvrLocalRouter``'s NAT handling (:func:`l3_agent.router_iptables`).

What only DVR does, from ``neutron/agent/l3/dvr_local_router.py``: ``internal_network_added``
calls ``_set_subnet_arp_info`` for each subnet of a ``qr-`` port, which asks the server for every
port of the subnet (``get_ports_by_subnet``, on any host) and writes a *permanent* ARP entry for
each fixed address of the subnet and each single-address allowed address pair, skipping the
routers' own ports (``ROUTER_INTERFACE_OWNERS``); ``ip_lib.IpNeighCommand.add`` defaults to
``nud_state='permanent'``. So a local router never ARPs for a VM, local or remote.

Floating IPs (``dvr_local_router.py``, ``dvr_fip_ns.py``), for a router with an external gateway:

- the node's ``fip-<external network>`` namespace (``FipNamespace.create``: ``Namespace.create``'s
  sysctls, ``ip_nonlocal_bind=1``, its own iptables manager with only ``-j CT --notrack`` in raw)
  holds the node's *agent gateway* port ``fg-`` (an internal port of br-int on the external
  network; ``_create_gateway_port``), with ``proxy_arp=1`` and ``proxy_delay=1`` on it: it answers
  ARP for the floating IPs, which no device holds;
- ``create_rtr_2_fip_link``: a veth ``rfp-`` (router) / ``fpr-`` (fip namespace) with a /31 of
  ``169.254.64.0/18`` (the even address on ``rfp-``), a permanent ARP entry on each side for the
  other end, ``default via <fpr> dev rfp-`` in the router's table 16 (``FIP_RT_TBL``), and in the
  fip namespace ``ip rule iif fpr- lookup N priority N`` with ``N`` the ``fpr-`` address as an
  integer (``_get_snat_idx``) and ``default via <external gateway> dev fg-`` in table N;
- ``floating_ip_added_dist``, per floating IP of a VM port on this node: ``ip rule from <fixed>
  lookup 16`` in the router (a priority from 32768; it comes after ``main``, so east-west traffic
  still routes there), ``<floating IP>/32 via <rfp> dev fpr-`` in the fip namespace;
- ``external_gateway_added``: ``net.ipv4.conf.all.send_redirects=0`` in the router.

Derived (the agent picks them from pools and files the scenario does not have, and says so in
``lab generate --what routers``): the router's /31 (a stable pick in ``169.254.64.0/18`` from its
id), and each floating IP's rule priority (32768, 32769, ... in scenario order per node).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network

from nodetrace.neutron.l3_agent import (
    EXTERNAL_PREFIX,
    INTERNAL_PREFIX,
    L3_WRAP,
    SYSCTLS,
    AddPort,
    AgentTables,
    FipLink,
    Neighbour,
    PolicyRule,
    RouterPort,
    RouterState,
    StaticRoute,
    describe_route,
    describe_rule,
    device_name,
    manager_skeleton,
    namespace_name,
    plug_br_ex,
    plug_internal_port,
    plug_router_port,
    router_iptables,
    snat_namespace_iptables,
)
from nodetrace.neutron.ovs_agent import FlowList
from nodetrace.neutron.scenario import Network, Scenario
from nodetrace.neutron.scenario_routers import AgentGateway, FloatingIp, Router, router_hosts

FIP_NS_PREFIX = "fip-"
SNAT_NS_PREFIX = "snat-"
SNAT_INT_DEV_PREFIX = "sg-"
FIP_EXT_DEV_PREFIX = "fg-"
FIP_2_ROUTER_DEV_PREFIX = "fpr-"
ROUTER_2_FIP_DEV_PREFIX = "rfp-"
FIP_RT_TBL = 16
FIP_PR_START = 32768
DVR_FIP_LL_CIDR = IPv4Network("169.254.64.0/18")
"""neutron-lib's ``DVR_FIP_LL_CIDR``: where the rfp-/fpr- /31s come from."""


@dataclass(frozen=True, slots=True)
class FipNamespace:
    """A node's ``fip-<external network>`` namespace."""

    namespace: str
    network: Network
    gateway: AgentGateway
    device: str
    """The ``fg-`` port: an internal port of br-int, moved into the namespace."""
    ofport: int
    local_vlan: int
    upstream: IPv4Address
    """The external subnet's gateway: the next hop of every router's table."""
    links: tuple[FipLink, ...]
    rules: tuple[PolicyRule, ...]
    routes: tuple[StaticRoute, ...]
    iptables_save: str

    @property
    def sysctls(self) -> tuple[str, ...]:
        return (
            *SYSCTLS,
            "net.ipv4.ip_nonlocal_bind=1",
            f"net.ipv4.neigh.{self.device}.proxy_delay=1",
            f"net.ipv4.conf.{self.device}.proxy_arp=1",
        )


def fip_link_addresses(router_id: str) -> tuple[IPv4Address, IPv4Address]:
    """(rfp, fpr): a /31 of ``169.254.64.0/18``, derived from the router's id (the agent's
    ``LinkLocalAllocator`` takes any free one and keeps it in a file on the node)."""
    pairs = DVR_FIP_LL_CIDR.num_addresses // 2
    index = int.from_bytes(hashlib.sha256(router_id.encode()).digest()[:4], "big") % pairs
    rfp = DVR_FIP_LL_CIDR.network_address + 2 * index
    return rfp, rfp + 1


def fip_namespace_name(network_id: str) -> str:
    return FIP_NS_PREFIX + network_id


def _fip_iptables() -> str:
    """``FipNamespace.create``: a fresh iptables manager and ``-j CT --notrack`` in raw."""
    t = AgentTables()
    manager_skeleton(t)
    t.add("raw", f"{L3_WRAP}-PREROUTING", "-j CT --notrack")
    return t.render()


def distributed(scenario: Scenario) -> bool:
    """Whether the deployment runs DVR: then every OVS agent runs with
    ``enable_distributed_routing = True`` (agents are configured alike)."""
    return any(r.distributed for r in scenario.routers)


def node_dvr_routers(
    scenario: Scenario,
    node: str,
    local_vlans: Mapping[str, int],
    add_port: AddPort,
    flows: FlowList,
) -> tuple[tuple[RouterState, ...], tuple[FipNamespace, ...], tuple[RouterState, ...]]:
    """The distributed routers with a namespace on ``node``, their ``qr-`` ports plugged; the
    node's fip namespaces (with br-ex, when a router has a gateway); the ``snat-`` namespaces
    of the routers scheduled on it."""
    routers = [
        r
        for r in scenario.routers
        if r.distributed and node in router_hosts(r, scenario.nodes, scenario.ports)
    ]
    external = sorted(
        {r.gateway.network for r in routers if r.gateway is not None},
        key=lambda net_id: local_vlans[net_id],
    )
    if external:
        plug_br_ex(scenario, [scenario.network(e) for e in external], local_vlans, add_port, flows)
    on_node = {p.id for p in scenario.ports_on(node)}
    fips = [f for r in routers for f in r.floating_ips if f.port in on_node]
    priority = {f.address: FIP_PR_START + i for i, f in enumerate(fips)}
    states = []
    snat_states = []
    links: dict[str, list[tuple[FipLink, tuple[FloatingIp, ...]]]] = {}
    for router in routers:
        internal = tuple(
            plug_router_port(scenario, i, INTERNAL_PREFIX, local_vlans, add_port)
            for i in router.interfaces
        )
        mine = tuple(f for f in router.floating_ips if f.port in on_node)
        link = None
        if router.gateway is not None:
            net = scenario.network(router.gateway.network)
            rfp_ip, fpr_ip = fip_link_addresses(router.id)
            link = FipLink(
                device_name(ROUTER_2_FIP_DEV_PREFIX, router.id),
                device_name(FIP_2_ROUTER_DEV_PREFIX, router.id),
                rfp_ip, fpr_ip, net.mtu, fip_namespace_name(net.id),
            )  # fmt: skip
            links.setdefault(net.id, []).append((link, mine))
        rules = tuple(PolicyRule(priority[f.address], FIP_RT_TBL, src=f.fixed_ip) for f in mine)
        routes: tuple[StaticRoute, ...] = ()
        if link is not None:
            routes = (StaticRoute("default", link.fpr_ip, link.rfp, FIP_RT_TBL),)
        redirects = snat_redirects(router, internal)
        rules += tuple(rule for rule, _, _ in redirects)
        routes += tuple(route for _, route, _ in redirects)
        sysctls = SYSCTLS + (("net.ipv4.conf.all.send_redirects=0",) if link else ())
        sysctls += tuple(sysctl for _, _, sysctl in redirects)
        if node == router.snat_node:
            snat_states.append(_snat_namespace(scenario, router, node, local_vlans, add_port))
        states.append(
            RouterState(
                router,
                namespace_name(router.id),
                internal,
                None,
                router_iptables(
                    router, internal, None,
                    rfp=link.rfp if link is not None else None, floating_ips=mine,
                ),
                sysctls=sysctls,
                neighbours=subnet_arp_entries(scenario, router, internal),
                host=node,
                fip_link=link,
                rules=rules,
                routes=routes,
            )
        )  # fmt: skip
    namespaces = tuple(
        _fip_namespace(scenario, node, scenario.network(net_id), links[net_id], local_vlans, add_port)
        for net_id in external
    )  # fmt: skip
    return tuple(states), namespaces, tuple(snat_states)


def snat_redirects(
    router: Router, internal: tuple[RouterPort, ...]
) -> list[tuple[PolicyRule, StaticRoute, str]]:
    """``_snat_redirect_modify`` per ``qr-`` port with an ``sg-`` port on its subnet: ``ip rule
    from <qr address>/<prefix> lookup N priority N`` with ``N`` the ``qr-`` address as an
    integer (``_get_snat_idx``), ``default via <sg- address> dev qr-`` in table N, and
    ``send_redirects=0`` on the ``qr-`` device."""
    out = []
    for port in internal:
        sg = next((p for p in router.snat_ports if p.network == port.network.id), None)
        if sg is None:
            continue
        idx = int(port.interface.ip)
        out.append(
            (
                PolicyRule(idx, idx, src=port.interface.ip, src_len=port.interface.prefixlen),
                StaticRoute("default", sg.ip, port.device, idx),
                f"net.ipv4.conf.{port.device}.send_redirects=0",
            )
        )
    return out


def _snat_namespace(
    scenario: Scenario,
    router: Router,
    node: str,
    local_vlans: Mapping[str, int],
    add_port: AddPort,
) -> RouterState:
    """``DvrEdgeRouter`` on its ``dvr_snat`` node: ``SnatNamespace.create`` (``Namespace``'s
    sysctls, ``ip_nonlocal_bind=1``, ``nf_conntrack_tcp_loose=0``), ``_plug_snat_port`` for
    each ``sg-`` port, ``_external_gateway_added`` for ``qg-`` (its address, the default route
    via the external subnet's gateway) and :func:`l3_agent.snat_namespace_iptables`."""
    assert router.gateway is not None
    sg = tuple(
        plug_router_port(scenario, p, SNAT_INT_DEV_PREFIX, local_vlans, add_port)
        for p in router.snat_ports
    )
    qg = plug_router_port(scenario, router.gateway, EXTERNAL_PREFIX, local_vlans, add_port)
    return RouterState(
        router,
        SNAT_NS_PREFIX + router.id,
        sg,
        qg,
        snat_namespace_iptables(router, sg, qg),
        sysctls=(*SYSCTLS, "net.ipv4.ip_nonlocal_bind=1", "net.netfilter.nf_conntrack_tcp_loose=0"),
        host=node,
    )


def _fip_namespace(
    scenario: Scenario,
    node: str,
    net: Network,
    links: list[tuple[FipLink, tuple[FloatingIp, ...]]],
    local_vlans: Mapping[str, int],
    add_port: AddPort,
) -> FipNamespace:
    """``create_or_update_gateway_port`` and, per router, ``create_rtr_2_fip_link`` and
    ``floating_ip_added_dist``."""
    gateway = next(
        g
        for r in scenario.routers
        for g in r.agent_gateways
        if g.node == node and g.network == net.id
    )
    device = device_name(FIP_EXT_DEV_PREFIX, gateway.port_id)
    port = plug_internal_port(device, gateway.mac, gateway.port_id, local_vlans[net.id], add_port)
    cidr = net.cidr
    assert isinstance(cidr, IPv4Network)
    upstream = cidr.network_address + 1
    rules, routes = [], []
    for link, fips in links:
        table = int(link.fpr_ip)
        rules.append(PolicyRule(table, table, iif=link.fpr))
        routes.append(StaticRoute("default", upstream, device, table))
        routes += [StaticRoute(f"{f.address}/32", link.rfp_ip, link.fpr) for f in fips]
    return FipNamespace(
        fip_namespace_name(net.id), net, gateway, device, port.ofport, local_vlans[net.id],
        upstream, tuple(link for link, _ in links), tuple(rules), tuple(routes), _fip_iptables(),
    )  # fmt: skip


def describe_fip(fip: FipNamespace) -> str:
    """A fip namespace as ``lab generate --what routers`` prints it."""
    g = fip.gateway
    lines = [f"# {fip.namespace} (floating IPs of network {fip.network.name})"]
    lines += [f"# sysctl {s}" for s in fip.sysctls]
    lines.append(
        f"# {fip.device} {g.mac} {g.ip}/{g.prefixlen} ({g.ip_derived}): br-int port "
        f"{fip.ofport}, tag {fip.local_vlan} (agent gateway port of {g.node})"
    )
    for link in fip.links:
        lines.append(f"# {link.fpr} {link.fpr_ip}/31: veth to {link.rfp} {link.rfp_ip}/31")
        lines.append(
            f"# neigh {link.rfp_ip} lladdr <MAC of {link.rfp}> dev {link.fpr} nud permanent"
        )
    lines += [describe_rule(r) for r in fip.rules]
    lines += [describe_route(r) for r in fip.routes]
    return "\n".join(lines) + "\n" + fip.iptables_save


def subnet_arp_entries(
    scenario: Scenario, router: Router, internal: tuple[RouterPort, ...]
) -> tuple[Neighbour, ...]:
    """``_set_subnet_arp_info`` for each ``qr-`` port: every port of its subnet, any host,
    then the router's ``sg-`` port on it (``get_snat_interfaces``)."""
    out: list[Neighbour] = []
    for port in internal:
        out += [
            Neighbour(port.device, sg.ip, sg.mac)
            for sg in router.snat_ports
            if sg.network == port.network.id
        ]
        subnet = ip_network(port.cidr, strict=False)
        for vm in scenario.ports:
            if vm.network != port.network.id:
                continue
            out += [
                Neighbour(port.device, ip, vm.mac)
                for ip in vm.fixed_ips
                if isinstance(ip, IPv4Address) and ip in subnet
            ]
            out += [
                Neighbour(port.device, pair.ip.network_address, pair.mac)
                for pair in vm.allowed_address_pairs
                if pair.ip.prefixlen == 32 and isinstance(pair.ip.network_address, IPv4Address)
            ]
    return tuple(out)
