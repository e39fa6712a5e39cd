"""How a userspace (netdev) Open vSwitch picks a native tunnel's route and next-hop MAC: its
own routing table (``ovs/route/show``) by longest prefix, a route to one of the host's own
addresses winning a tie, and its tunnel neighbour cache (``tnl/neigh/show``) per bridge.

This mirrors ``ovs_router_lookup`` and ``tnl_neigh_lookup`` of ovs-vswitchd; the OpenFlow
translator uses it in ``native_tunnel_output`` (``openflow_output.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from nodetrace.model.topology import OvsRoute, OvsTunnelNeighbour

IPAddress = IPv4Address | IPv6Address


def _network(route: OvsRoute) -> IPv4Network | IPv6Network:
    """OVS keeps IPv4 routes as IPv4-mapped IPv6; a table printed that way is read back."""
    prefix = route.prefix
    if isinstance(prefix, IPv6Network) and prefix.prefixlen >= 96:
        mapped = prefix.network_address.ipv4_mapped
        if mapped is not None:
            return IPv4Network((mapped, prefix.prefixlen - 96))
    return prefix


def route_lookup(routes: Sequence[OvsRoute], address: IPAddress, mark: int = 0) -> OvsRoute | None:
    best: OvsRoute | None = None
    best_key = (-1, False)
    for r in routes:
        net = _network(r)
        if (r.mark or 0) != mark or net.version != address.version or address not in net:
            continue
        key = (net.prefixlen, r.local)
        if key > best_key:
            best, best_key = r, key
    return best


def neighbour_lookup(
    neighbours: Sequence[OvsTunnelNeighbour], bridge: str, ip: IPAddress
) -> OvsTunnelNeighbour | None:
    return next((n for n in neighbours if n.bridge == bridge and n.ip == ip), None)
