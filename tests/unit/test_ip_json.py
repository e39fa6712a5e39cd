"""iproute2 output (JSON and text) becomes the same topology facts, from real captures."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.packet import Family
from nodetrace.model.topology import Interface, LinkKind, RouteType
from nodetrace.parsers import bridge_json, ip_json, ip_text
from nodetrace.parsers.sysctl import parse_sysctl
from tests.conftest import DATA

SNAP = DATA / "snapshot"
BUNDLE = SNAP / "bundle-mini" / "host"
SOS = SNAP / "sos-mini" / "sos_commands" / "networking"
MISC = SNAP / "iproute-misc"
TAP, QBR, QVB, QVO = (p + "3b1f6a2c-8d" for p in ("tap", "qbr", "qvb", "qvo"))


def _read(path: Path) -> str:
    return path.read_text()


def _by_name(interfaces: tuple[Interface, ...]) -> dict[str, Interface]:
    return {i.name: i for i in interfaces}


def _json_links() -> dict[str, Interface]:
    return _by_name(ip_json.parse_ip_addr(_read(BUNDLE / "ip-addr.json"), source="ip-addr.json"))


def _text_links() -> dict[str, Interface]:
    return _by_name(
        ip_text.parse_ip_link_text(_read(SOS / "ip_-d_address"), source="ip_-d_address")
    )


@pytest.mark.parametrize("links", [_json_links, _text_links], ids=["json", "text"])
def test_hybrid_port_devices_are_recognised(links) -> None:  # type: ignore[no-untyped-def]
    got = links()
    tap, qbr, qvb, qvo = got[TAP], got[QBR], got[QVB], got[QVO]
    assert (tap.kind, tap.master, tap.master_kind) == (LinkKind.VETH, QBR, "bridge")
    assert tap.bridge_port is not None and tap.bridge_port.flood
    # The VM end is in another namespace: only its ifindex and namespace are known.
    assert tap.veth is not None and tap.veth.peer is None and tap.veth.peer_ifindex == 2
    assert qbr.kind is LinkKind.BRIDGE and qbr.bridge is not None
    assert qbr.bridge.ageing_time == 0  # os-vif's qbr never learns: it floods
    assert qvb.veth is not None and qvb.veth.peer == QVO
    assert qvo.veth is not None and qvo.veth.peer == QVB and qvo.master is None
    phys = got["br-phys"]
    assert phys.kind is LinkKind.TAP  # an OVS userspace bridge's LOCAL port is a tap
    assert str(phys.addresses[0].interface) == "192.168.50.1/24"


def test_json_and_text_give_the_same_devices() -> None:
    as_json, as_text = _json_links(), _text_links()
    assert set(as_json) == set(as_text)
    for name in as_json:
        j, t = as_json[name], as_text[name]
        assert (j.kind, j.master, j.master_kind, j.up, j.mtu) == (
            t.kind,
            t.master,
            t.master_kind,
            t.up,
            t.mtu,
        ), name


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_vxlan_devices_multipath_routes_rules_neighbours_and_fdb(fmt: str) -> None:
    if fmt == "json":
        links = _by_name(ip_json.parse_ip_link(_read(MISC / "ip-link.json"), source="l"))
        routes = ip_json.parse_ip_route(_read(MISC / "ip-route.json"), source="r")
        rules = ip_json.parse_ip_rule(_read(MISC / "ip-rule.json"), source="u")
        neigh = ip_json.parse_ip_neigh(_read(MISC / "ip-neigh.json"), source="n")
        fdb = bridge_json.parse_bridge_fdb(_read(MISC / "bridge-fdb.json"), source="f")
    else:
        links = _by_name(ip_text.parse_ip_link_text(_read(MISC / "ip-d-link.txt"), source="l"))
        routes = ip_text.parse_ip_route_text(_read(MISC / "ip-route.txt"), source="r")
        rules = ip_text.parse_ip_rule_text(_read(MISC / "ip-rule.txt"), source="u")
        neigh = ip_text.parse_ip_neigh_text(_read(MISC / "ip-neigh.txt"), source="n")
        fdb = ip_text.parse_bridge_fdb_text(_read(MISC / "bridge-fdb.txt"), source="f")
    vx = links["vxlan-200"].tunnel
    assert vx is not None
    assert (vx.key, vx.local, vx.underlay, vx.learning, vx.dst_port) == (
        200,
        ip_address("192.168.100.1"),
        "eth1",
        False,
        4789,
    )
    external = links["vxlan_sys_4789"].tunnel
    assert external is not None and external.external and external.key is None

    multipath = next(r for r in routes if r.dst == ip_network("10.50.0.0/16"))
    assert [(str(h.gateway), h.dev, h.weight) for h in multipath.nexthops] == [
        ("192.168.100.9", "eth1", 1),
        ("192.168.101.9", "eth2", 2),
    ]
    assert next(r for r in routes if r.dst == ip_network("10.66.0.0/16")).type is (
        RouteType.BLACKHOLE
    )
    local = next(r for r in routes if r.dst == ip_network("192.168.100.1/32"))
    assert (local.type, local.table, local.dev) == (RouteType.LOCAL, "local", "eth1")

    by_prio = {r.priority: r for r in rules}
    assert (by_prio[100].fwmark, by_prio[100].fwmask, by_prio[100].table) == (1, 0xFF, "200")
    assert by_prio[101].action == "blackhole"
    assert by_prio[101].src == ip_network("10.0.0.0/8") and by_prio[101].iif == "eth1"
    assert by_prio[32766].table == "main"

    states = {str(n.ip): n for n in neigh}
    assert states["192.168.100.9"].mac == "fa:16:3e:00:00:09" and states["192.168.100.9"].usable
    assert not states["192.168.101.9"].usable  # FAILED

    remote = next(e for e in fdb if e.dev == "vxlan-200" and e.self_entry)
    assert remote.dst == ip_address("192.168.100.2") and remote.mac == "00:00:00:00:00:00"
    static = next(e for e in fdb if e.mac == "fa:16:3e:aa:bb:cc")
    assert (static.master, static.state, static.is_local) == ("brq200", "static", False)
    own = next(e for e in fdb if e.dev == "vxlan-200" and e.state == "permanent" and e.master)
    assert own.is_local


def test_cut_json_keeps_complete_entries_and_says_where() -> None:
    full = _read(BUNDLE / "ip-link.json")
    cut = full[: full.index('"ifname":"qbr3b1f6a2c-8d"') + 10]
    sink = DiagnosticSink()
    got = ip_json.parse_ip_link(cut, source="ip-link.json", sink=sink)
    assert [i.name for i in got][-1] == TAP  # every object before the cut survives
    assert len(sink.errors) == 1
    assert "ip-link.json:1" in str(sink.errors[0]) and "cut short" in str(sink.errors[0])
    with pytest.raises(ParseError):
        ip_json.parse_ip_link(cut, source="ip-link.json")
    # A command that failed before printing anything but `[` (bridge vlan on this kernel).
    assert ip_json.parse_ip_link("[", source="x", sink=DiagnosticSink()) == ()


def test_text_noise_is_reported_with_its_line_and_the_rest_is_kept() -> None:
    """The insights fixture starts with three "Message truncated" lines before the first link."""
    sink = DiagnosticSink()
    got = ip_text.parse_ip_link_text(
        _read(SNAP / "insights-ip-addr-mixed.txt"), source="ip_addr", sink=sink
    )
    assert [e.pos.line for e in sink.errors] == [1, 2, 3]
    names = [i.name for i in got]
    assert names == ["lo", "eth7", "tunl0", "tunl1", "bond1.57", "ip.tun2"]
    eth7 = _by_name(got)["eth7"]
    assert eth7.master == "bond1" and not eth7.carrier
    bond = _by_name(got)["bond1.57"]
    assert str(bond.addresses[0].interface) == "10.192.4.171/27"


def test_bond_slaves_from_ip_d_s_link() -> None:
    got = _by_name(
        ip_text.parse_ip_link_text(_read(SNAP / "insights-ip-d-s-link-bond.txt"), source="x")
    )
    assert got["bond0"].kind is LinkKind.BOND
    assert got["enp1s0"].master == "bond0" and got["enp1s0"].master_kind == "bond"
    assert got["enp1s0"].kind is LinkKind.PHYSICAL


def test_old_route_text_with_double_spaces_and_ipv6_cache_lines() -> None:
    sink = DiagnosticSink()
    got = ip_text.parse_ip_route_text(
        _read(SNAP / "insights-ip-route-show-table-all.txt"), source="r", sink=sink
    )
    v4_default = next(r for r in got if r.dst == ip_network("0.0.0.0/0"))
    assert (str(v4_default.gateway), v4_default.dev) == ("192.168.23.250", "enp0s25")
    # The IPv6 routes in an IPv4 listing are recognised by their own addresses.
    v6 = [r for r in got if r.family is Family.IPV6]
    assert any(r.type is RouteType.UNREACHABLE for r in v6)
    assert not sink.errors


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("net.bridge.bridge-nf-call-iptables = 1\n", "net.bridge.bridge-nf-call-iptables", "1"),
        (
            "net.ipv4.tcp_rmem = 4096\t131072\t6291456\n",
            "net.ipv4.tcp_rmem",
            "4096\t131072\t6291456",
        ),
        ("net.ipv4.ip_forward=0\n", "net.ipv4.ip_forward", "0"),
        ("net.ipv4.conf.eth0/100.rp_filter = 2\n", "net.ipv4.conf.eth0/100.rp_filter", "2"),
    ],
    ids=["spaces", "tabs-in-value", "conf-style", "dotted-interface"],
)
def test_sysctl_lines(text: str, key: str, expected: str) -> None:
    assert parse_sysctl(text, source="s").get(key) == expected


def test_sysctl_accessors_follow_the_kernel() -> None:
    s = parse_sysctl(
        "net.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.eth0/100.rp_filter = 2\n"
        "net.ipv4.ip_forward = 1\n",
        source="s",
    )
    assert s.rp_filter("eth0.100") == 2  # max(all, interface)
    assert s.forwarding(Family.IPV4) is True
    # No net.bridge keys but other sysctls present: br_netfilter is not loaded.
    assert s.br_netfilter_loaded is False
    assert s.bridge_nf_call(Family.IPV4) is False
    sink = DiagnosticSink()
    parse_sysctl("net.a = 1\nthis is not one\n", source="s", sink=sink)
    assert [str(e.pos) for e in sink.errors] == ["s:2"]


def test_bundle_sysctls_say_br_netfilter_is_on() -> None:
    s = parse_sysctl(_read(BUNDLE / "sysctl.txt"), source="sysctl.txt")
    assert s.br_netfilter_loaded and s.bridge_nf_call(Family.IPV4) is True
