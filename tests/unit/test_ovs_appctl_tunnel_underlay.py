"""ovs-vswitchd's tunnel routing table and neighbour cache, as sosreports keep them."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.parsers.ovs_appctl_tunnel_underlay import (
    parse_ovs_appctl_ovs_route_show,
    parse_ovs_appctl_tnl_neigh_show,
)
from tests.conftest import DATA

HOTSOS = DATA / "snapshot" / "hotsos-ovs"


def test_hotsos_route_table() -> None:
    routes = parse_ovs_appctl_ovs_route_show(
        (HOTSOS / "ovs-appctl_ovs.route.show").read_text(), source="route"
    )
    assert len(routes) == 19  # the file's "Cached:" lines
    default = [r for r in routes if r.prefix == ip_network("0.0.0.0/0")]
    assert len(default) == 1
    assert default[0].dev == "br-ens3" and default[0].gateway == ip_address("10.0.0.2")
    assert default[0].src == ip_address("10.0.0.128") and not default[0].local
    own = next(r for r in routes if r.prefix == ip_network("10.0.0.128/32"))
    assert own.local and own.gateway is None and not own.user


def test_neighbour_cache_empty_and_filled() -> None:
    empty = (HOTSOS / "ovs-appctl_tnl.arp.show").read_text()
    assert parse_ovs_appctl_tnl_neigh_show(empty, source="arp") == ()
    # An entry laid out as OVS's tnl_neigh_cache_show() prints it (the sample cache is empty).
    filled = empty + (
        "10.0.0.114                                    52:54:00:AA:bb:cc   br-ens3\n"
        "10.0.0.133                                    52:54:00:11:22:33   br-ens3 STALE\n"
    )
    got = parse_ovs_appctl_tnl_neigh_show(filled, source="arp")
    assert [(str(n.ip), n.mac, n.bridge, n.stale) for n in got] == [
        ("10.0.0.114", "52:54:00:aa:bb:cc", "br-ens3", False),
        ("10.0.0.133", "52:54:00:11:22:33", "br-ens3", True),
    ]


def test_bad_lines_are_reported_with_their_line() -> None:
    sink = DiagnosticSink()
    got = parse_ovs_appctl_ovs_route_show(
        "Route Table:\nCached: 10.0.0.0/24 dev\nnonsense\n", source="r", sink=sink
    )
    assert got == () and [d.pos.line for d in sink.items] == [2, 3]
    with pytest.raises(ParseError):
        parse_ovs_appctl_tnl_neigh_show("10.0.0.1 not-a-mac br\n", source="n")
