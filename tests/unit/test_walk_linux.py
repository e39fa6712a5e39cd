"""The Linux pieces of the walk: bridge forwarding and the routing decision, on real captures."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_address

import pytest

from nodetrace.engine.linux_bridge import BridgeAction, forward
from nodetrace.engine.routing import RouteAction, decide, reverse_path_ok
from nodetrace.model.topology import BridgeInfo, FdbEntry, Topology
from nodetrace.parsers import bridge_json, ip_json
from nodetrace.snapshot.load import load
from tests.conftest import DATA

SNAP = DATA / "snapshot"
TAP, QBR, QVB = (p + "3b1f6a2c-8d" for p in ("tap", "qbr", "qvb"))


@pytest.fixture(scope="module")
def node() -> Topology:
    return load(SNAP / "bundle-mini").topology


def _bridge(topo: Topology, name: str):  # type: ignore[no-untyped-def]
    iface = topo.interface(name)
    assert iface is not None
    return iface


def test_qbr_floods_unicast_because_it_never_learns(node: Topology) -> None:
    d = forward(node, _bridge(node, QBR), _bridge(node, QVB), "fa:16:3e:4c:2a:11")
    assert (d.action, d.out_ports) == (BridgeAction.FLOOD, (TAP,))
    assert "ageing_time 0" in d.reason


def test_frame_to_a_port_address_goes_up_the_stack(node: Topology) -> None:
    qvb = _bridge(node, QVB)
    assert qvb.mac is not None and qvb.mac != _bridge(node, QBR).mac
    d = forward(node, _bridge(node, QBR), _bridge(node, TAP), qvb.mac.upper())
    assert d.action is BridgeAction.LOCAL and f"port {QVB}" in d.reason


def test_broadcast_floods_and_keeps_a_local_copy(node: Topology) -> None:
    d = forward(node, _bridge(node, QBR), _bridge(node, TAP), "ff:ff:ff:ff:ff:ff")
    assert (d.action, d.out_ports, d.local_copy) == (BridgeAction.FLOOD, (QVB,), True)


def _learning(node: Topology, *entries: FdbEntry) -> Topology:
    """The same node with a learning qbr and extra forwarding entries."""
    ifaces = tuple(
        dataclasses.replace(i, detail=BridgeInfo(ageing_time=30000)) if i.name == QBR else i
        for i in node.interfaces
    )
    return Topology(ifaces, node.routes, node.rules, node.neighbours, node.fdb + entries)


def test_learned_entry_forwards_and_missing_one_floods(node: Topology) -> None:
    mac = "fa:16:3e:4c:2a:11"
    topo = _learning(node, FdbEntry(mac, TAP, QBR))
    d = forward(topo, _bridge(topo, QBR), _bridge(topo, QVB), mac)
    assert (d.action, d.out_ports) == (BridgeAction.FORWARD, (TAP,))
    assert "learned entry" in d.reason
    d = forward(topo, _bridge(topo, QBR), _bridge(topo, QVB), "fa:16:3e:00:00:99")
    assert d.action is BridgeAction.FLOOD and "not in" in d.reason
    d = forward(topo, _bridge(topo, QBR), _bridge(topo, TAP), mac)
    assert d.action is BridgeAction.DROP and "came in on" in d.reason


def test_static_vxlan_entry_from_a_real_fdb() -> None:
    misc = SNAP / "iproute-misc"
    topo = Topology(
        ip_json.parse_ip_link((misc / "ip-link.json").read_text(), source="l"),
        fdb=bridge_json.parse_bridge_fdb((misc / "bridge-fdb.json").read_text(), source="f"),
    )
    brq, vx = topo.interface("brq200"), topo.interface("vxlan-200")
    assert brq is not None and vx is not None
    # A frame from a port that is not in brq200: only vxlan-200 is a port, so the
    # static entry sends it back where it came from and the bridge drops it.
    d = forward(topo, brq, vx, "fa:16:3e:aa:bb:cc")
    assert d.action is BridgeAction.DROP


def test_routes_decide_local_forward_and_drop() -> None:
    misc = SNAP / "iproute-misc"
    topo = Topology(
        ip_json.parse_ip_link((misc / "ip-link.json").read_text(), source="l"),
        routes=ip_json.parse_ip_route((misc / "ip-route.json").read_text(), source="r"),
        rules=ip_json.parse_ip_rule((misc / "ip-rule.json").read_text(), source="u"),
    )
    local = decide(topo, ip_address("192.168.100.1"))
    assert (local.action, local.dev) == (RouteAction.LOCAL, "eth1")
    onlink = decide(topo, ip_address("192.168.101.7"), iif="eth1")
    assert (onlink.action, onlink.dev, onlink.gateway) == (RouteAction.FORWARD, "eth2", None)
    multi = decide(topo, ip_address("10.50.1.1"))
    assert (multi.dev, str(multi.gateway)) == ("eth1", "192.168.100.9")
    assert multi.assumption is not None and "multipath" in multi.assumption
    assert decide(topo, ip_address("10.66.0.1")).action is RouteAction.DROP
    # Rule 101: from 10/8 arriving on eth1 is blackholed before main is consulted.
    black = decide(topo, ip_address("192.168.101.7"), src=ip_address("10.1.1.1"), iif="eth1")
    assert black.action is RouteAction.DROP and "ip rule 101" in black.reason
    nowhere = decide(topo, ip_address("8.8.8.8"))
    assert nowhere.action is RouteAction.DROP and "no route" in nowhere.reason
    ok, _ = reverse_path_ok(topo, ip_address("192.168.100.7"), "eth1", 1)
    bad, why = reverse_path_ok(topo, ip_address("192.168.100.7"), "eth2", 1)
    assert ok and not bad and "strict" in why
    assert reverse_path_ok(topo, ip_address("192.168.100.7"), "eth2", 2)[0]


def _link(index: int, name: str, kind: str, **extra: object) -> dict[str, object]:
    """An object as `ip -d -j link show` prints it (the keys the reader uses)."""
    link: dict[str, object] = {
        "ifindex": index,
        "ifname": name,
        "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
        "mtu": 1500,
        "address": f"02:00:00:00:00:{index:02x}",
        "linkinfo": {"info_kind": kind},
    }
    master = extra.pop("master", None)
    if master is not None:
        link["master"] = master
        link["linkinfo"] |= {
            "info_slave_kind": "bridge",
            "info_slave_data": {"state": "forwarding"},
        }  # type: ignore[operator]
    link |= extra
    return link


def test_a_bridge_loop_ends_at_the_hop_bound(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two bridges joined by two veth pairs: a broadcast circles for ever in the kernel; the
    walk stops at its bound and says why."""
    import json

    from nodetrace.engine.walk import MAX_HOPS, FromInterface, WalkRequest, walk
    from nodetrace.engine.walk_adapters import engines_for
    from nodetrace.model.packet import Packet
    from nodetrace.model.trace import Outcome

    links = [
        _link(
            1,
            "br0",
            "bridge",
            linkinfo={"info_kind": "bridge", "info_data": {"ageing_time": 30000}},
        ),
        _link(
            2,
            "br1",
            "bridge",
            linkinfo={"info_kind": "bridge", "info_data": {"ageing_time": 30000}},
        ),
        _link(3, "in0", "veth", master="br0", link_index=9, link_netnsid=0),
        _link(4, "x0", "veth", master="br0", link="y0"),
        _link(5, "y0", "veth", master="br1", link="x0"),
        _link(6, "x1", "veth", master="br0", link="y1"),
        _link(7, "y1", "veth", master="br1", link="x1"),
    ]
    (tmp_path / "ip-link.json").write_text(json.dumps(links))
    (tmp_path / "sysctl.txt").write_text("net.bridge.bridge-nf-call-iptables = 0\n")
    snap = load(tmp_path)
    packet = Packet(dl_src="02:00:00:00:00:99", dl_dst="ff:ff:ff:ff:ff:ff",
                    nw_src=ip_address("10.0.0.1"), nw_dst=ip_address("10.0.0.255"), nw_proto=17,
                    tp_src=68, tp_dst=67)  # fmt: skip
    trace = walk(snap, WalkRequest(packet, FromInterface("in0")), engines_for(snap))
    assert trace.outcome is Outcome.UNKNOWN
    assert f"more than {MAX_HOPS} devices crossed" in trace.reason
