"""Build a node's legacy Neutron routers for real, and the outside world their gateways reach.

Each router of :class:`~nodetrace.neutron.l3_agent.RouterState` becomes a namespace
``LAB-qrouter-UUID`` (the lab's prefix keeps two labs of one scenario apart); its ``qr-`` and
``qg-`` ports, created by Open vSwitch as internal ports of br-int, are moved into it as the L3
agent's interface driver moves them, and get their MAC, MTU, addresses, the default route,
the agent's sysctls, its iptables and, for a distributed router, the permanent ARP entries the
agent writes for every port of its subnets. A router with IPv6 ports keeps IPv6 on in its
namespace, gets their ``::1`` addresses (``nodad``) and its ip6tables. br-ex's uplink ``ext0`` is a veth whose other end lives in
``LAB-ext-NODE``, the namespace standing for the upstream router and the internet: it holds
each external subnet's gateway address and :data:`INTERNET_ADDRESSES`.
"""

from __future__ import annotations

import os

from pyroute2.netlink.rtnl import ndmsg

from nodetrace.lab.node import link_index, netlink, sysctl, vm_netns
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.neutron.generate import NodeState
from nodetrace.neutron.l3_agent import BR_EX, EXTERNAL_NIC, RouterState

IFA_F_NODAD = 0x02
"""``ip addr add ... nodad``: the address is usable at once, with no duplicate detection."""
INTERNET_ADDRESSES = ("8.8.8.8",)
"""Addresses the outside namespace answers for, beyond the external gateways."""
OUTSIDE_IFNAME = "eth0"


def router_netns(lab: str, router: RouterState) -> str:
    """The lab's name for the router's namespace; a distributed router's copies are told apart
    by their node."""
    if router.router.distributed:
        return f"{lab}-{router.host}-{router.namespace}"
    return f"{lab}-{router.namespace}"


def outside_netns(lab: str, node: str) -> str:
    return f"{lab}-ext-{node}"


def _netns_fd(name: str) -> int:
    return os.open(f"/run/netns/{name}", os.O_RDONLY)


def plug_outside(res: Resources, state: NodeState, *, lab: str, node_netns: str) -> str | None:
    """The outside namespace and br-ex's uplink cable to it; before OVS opens ``ext0``.

    ``None`` when no router of the node has a gateway (no br-ex)."""
    if BR_EX not in state.bridges:
        return None
    outside = res.add_netns(outside_netns(lab, state.name))
    sysctl(outside, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    gateways = sorted(
        {
            (r.router.upstream_gateway, r.gateway.interface.prefixlen)
            for r in state.routers + state.snat_routers
            if r.gateway is not None and r.router.upstream_gateway is not None
        }
        | {(f.upstream, f.gateway.prefixlen) for f in state.fip_namespaces}
    )
    with netlink(node_netns) as nl:
        fd = _netns_fd(outside)
        try:
            nl.link(
                "add",
                ifname=EXTERNAL_NIC,
                kind="veth",
                peer={"ifname": OUTSIDE_IFNAME, "net_ns_fd": fd},
            )
        finally:
            os.close(fd)
        nl.link("set", index=link_index(nl, EXTERNAL_NIC), state="up")
    with netlink(outside) as nl:
        eth = link_index(nl, OUTSIDE_IFNAME)
        for ip, plen in gateways:
            nl.addr("add", index=eth, address=str(ip), prefixlen=plen)
        lo = link_index(nl, "lo")
        for address in INTERNET_ADDRESSES:
            nl.addr("add", index=lo, address=address, prefixlen=32)
        nl.link("set", index=eth, state="up")
    # OVS's userspace datapath leaves partial checksums unfilled (see lab.node._plug_vm).
    run(["ethtool", "-K", OUTSIDE_IFNAME, "tx", "off"], netns=outside)
    return outside


def build_routers(
    res: Resources, state: NodeState, *, lab: str, node_netns: str, backend: str
) -> tuple[str, ...]:
    """Every router of the node, once Open vSwitch has created their ports; their namespaces."""
    built = []
    for router in state.routers + state.snat_routers:
        netns = res.add_netns(router_netns(lab, router))
        # A device's own settings need the device: they wait until the ports moved in.
        own = tuple(s for s in router.sysctls if any(f".{p.device}." in s for p in router.ports))
        # IPv6 stays off in a router without IPv6 ports (its ip6tables are not generated);
        # with them, no duplicate address detection, so addresses work as soon as they are set.
        v6 = (
            ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
            if router.has_ipv6
            else ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        )
        sysctl(netns, *v6, *(s for s in router.sysctls if s not in own))
        with netlink(node_netns) as nl:
            fd = _netns_fd(netns)
            try:
                for port in router.ports:
                    nl.link("set", index=link_index(nl, port.device), net_ns_fd=fd)
            finally:
                os.close(fd)
        if own:
            sysctl(netns, *own)
        with netlink(netns) as nl:
            for port in router.ports:
                idx = link_index(nl, port.device)
                nl.link("set", index=idx, address=port.interface.mac, mtu=port.network.mtu)
                nl.link("set", index=idx, state="up")
            for device, cidr in router.addresses:
                ip, plen = cidr.split("/")
                nl.addr("add", index=link_index(nl, device), address=ip, prefixlen=int(plen))
            for device, cidr in router.addresses6:
                ip, plen = cidr.split("/")
                nl.addr(
                    "add",
                    index=link_index(nl, device),
                    address=ip,
                    prefixlen=int(plen),
                    flags=IFA_F_NODAD,
                )
            for entry in router.neighbours:
                nl.neigh(
                    "add",
                    dst=str(entry.ip),
                    lladdr=entry.mac,
                    ifindex=link_index(nl, entry.device),
                    state=ndmsg.states["permanent"],
                )
            route = router.default_route
            if route is not None:
                via, device = route
                nl.route("add", dst="0.0.0.0/0", gateway=str(via), oif=link_index(nl, device))
        run([f"iptables-{backend}-restore"], netns=netns, input=router.iptables_save)
        if router.ip6tables_save:
            run([f"ip6tables-{backend}-restore"], netns=netns, input=router.ip6tables_save)
        built.append(netns)
    if state.fip_namespaces or any(r.rules or r.routes for r in state.routers):
        from nodetrace.lab.dvr import build_fip_namespaces  # it builds on this module

        built += build_fip_namespaces(
            res,
            state,
            lab=lab,
            node_netns=node_netns,
            router_netns={r.router.id: router_netns(lab, r) for r in state.routers},
            backend=backend,
        )
    route_vms(state, lab=lab)
    return tuple(built)


def route_vms(state: NodeState, *, lab: str) -> None:
    """A default route in each VM whose network has a router interface, via that interface's
    address: what the VM learns from DHCP (the subnet's ``gateway_ip``). A VM with an IPv6
    address on a routed IPv6 subnet also gets a static IPv6 default route via the router's
    ``::1``: the lab simplification of the router advertisements radvd would send."""
    ifaces = [i for r in state.scenario.routers for i in r.interfaces]
    gateways = {i.network: i.ip for i in ifaces}
    gateways6 = {i.network: i.ip6 for i in ifaces if i.ip6 is not None}
    for vp in state.vm_ports:
        via = gateways.get(vp.network.id)
        if via is None:
            continue
        via6 = gateways6.get(vp.network.id) if vp.port.ips(6) else None
        with netlink(vm_netns(lab, vp.port.name)) as nl:
            eth = link_index(nl, "eth0")
            nl.route("add", dst="0.0.0.0/0", gateway=str(via), oif=eth)
            if via6 is not None:
                nl.route("add", dst="::/0", gateway=str(via6), oif=eth)
