"""Build what a distributed router adds on a node beyond its ``qrouter-`` namespace: the
``fip-`` namespaces with their ``fg-`` ports, the ``rfp-``/``fpr-`` veths to the routers, and
the policy rules and routes on both sides (``nodetrace.neutron.dvr_router`` says where each
comes from).

Runs once Open vSwitch has created the ``fg-`` internal ports and the routers' namespaces
exist. The veths are made as the agent makes them (``ip link add rfp- type veth peer name fpr-
netns fip-``), so the kernel picks their MACs; the permanent ARP entries on each side are
written with the MACs it picked.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address

from pyroute2.netlink.rtnl import ndmsg

from nodetrace.lab.node import link_index, netlink, sysctl
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.neutron.dvr_router import FipNamespace
from nodetrace.neutron.generate import NodeState
from nodetrace.neutron.l3_agent import FipLink, PolicyRule, StaticRoute

PERMANENT = ndmsg.states["permanent"]


def fip_netns(lab: str, node: str, fip: FipNamespace) -> str:
    """The lab's name for a node's fip namespace (each node has one per external network)."""
    return f"{lab}-{node}-{fip.namespace}"


def _mac(nl: object, ifname: str) -> str:
    link = nl.get_links(link_index(nl, ifname))[0]  # type: ignore[attr-defined]
    return str(link.get_attr("IFLA_ADDRESS"))


def build_fip_namespaces(
    res: Resources,
    state: NodeState,
    *,
    lab: str,
    node_netns: str,
    router_netns: dict[str, str],
    backend: str,
) -> tuple[str, ...]:
    """Every fip namespace of the node, linked to its routers; then the routers' rules and
    routes toward them. ``router_netns`` maps a router's id to its lab namespace."""
    built = []
    for fip in state.fip_namespaces:
        netns = res.add_netns(fip_netns(lab, state.name, fip))
        _move(fip.device, node_netns, netns)
        # After the move: some settings are fg-'s own.
        sysctl(
            netns,
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            *fip.sysctls,
        )
        with netlink(netns) as nl:
            idx = link_index(nl, fip.device)
            nl.link("set", index=idx, address=fip.gateway.mac, mtu=fip.network.mtu, state="up")
            nl.addr("add", index=idx, address=str(fip.gateway.ip), prefixlen=fip.gateway.prefixlen)
            for link in fip.links:
                router = next(r for r in state.routers if r.fip_link == link)
                with netlink(router_netns[router.router.id]) as rnl:
                    _link(link, netns, nl, rnl)
            _rules_and_routes(nl, fip.rules, fip.routes)
        run([f"iptables-{backend}-restore"], netns=netns, input=fip.iptables_save)
        built.append(netns)
    for router in state.routers:
        if router.rules or router.routes:
            with netlink(router_netns[router.router.id]) as nl:
                _rules_and_routes(nl, router.rules, router.routes)
    return tuple(built)


def _move(device: str, from_netns: str, to_netns: str) -> None:
    """``_create_gateway_port``: the internal port OVS made goes into the fip namespace."""
    fd = os.open(f"/run/netns/{to_netns}", os.O_RDONLY)
    try:
        with netlink(from_netns) as nl:
            nl.link("set", index=link_index(nl, device), net_ns_fd=fd)
    finally:
        os.close(fd)


def _link(link: FipLink, fip_ns: str, fip_nl: object, router_nl: object) -> None:
    """``create_rtr_2_fip_link``: the veth, its /31, and each side's permanent ARP entry
    (with the MAC the kernel gave the other end)."""
    fd = os.open(f"/run/netns/{fip_ns}", os.O_RDONLY)
    try:
        router_nl.link(  # type: ignore[attr-defined]
            "add", ifname=link.rfp, kind="veth", peer={"ifname": link.fpr, "net_ns_fd": fd}
        )
    finally:
        os.close(fd)
    ends = ((router_nl, link.rfp, link.rfp_ip), (fip_nl, link.fpr, link.fpr_ip))
    macs = {}
    for nl, ifname, ip in ends:
        idx = link_index(nl, ifname)
        nl.link("set", index=idx, mtu=link.mtu, state="up")  # type: ignore[attr-defined]
        nl.addr("add", index=idx, address=str(ip), prefixlen=31)  # type: ignore[attr-defined]
        macs[ifname] = _mac(nl, ifname)
    for (nl, ifname, _), (_, other, other_ip) in zip(ends, reversed(ends), strict=True):
        _neighbour(nl, ifname, other_ip, macs[other])


def _neighbour(nl: object, ifname: str, ip: IPv4Address, mac: str) -> None:
    nl.neigh(  # type: ignore[attr-defined]
        "add", dst=str(ip), lladdr=mac, ifindex=link_index(nl, ifname), state=PERMANENT
    )


def _rules_and_routes(
    nl: object, rules: tuple[PolicyRule, ...], routes: tuple[StaticRoute, ...]
) -> None:
    for rule in rules:
        args: dict[str, object] = {"table": rule.table, "priority": rule.priority}
        if rule.src is not None:
            args |= {"src": str(rule.src), "src_len": rule.src_len}
        if rule.iif is not None:
            args["iifname"] = rule.iif
        nl.rule("add", **args)  # type: ignore[attr-defined]
    for route in routes:
        extra: dict[str, object] = {} if route.table is None else {"table": route.table}
        dst = "0.0.0.0/0" if route.dst == "default" else route.dst
        nl.route(  # type: ignore[attr-defined]
            "add", dst=dst, gateway=str(route.via), oif=link_index(nl, route.device), **extra
        )
