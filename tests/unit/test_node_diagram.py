"""The node diagram as a user sees it: the bundled two-node lab's bridges, patch links,
tunnels to the other node, each VM's tap/qbr/qvb/qvo chain with its MAC and addresses, a
traced packet's path marked hop by hop; a 500-port-style node folded so it stays readable;
a snapshot with hostile names drawn as inert text."""

from __future__ import annotations

import os
import re
import shutil
import xml.etree.ElementTree as ET
from ipaddress import ip_interface, ip_network
from pathlib import Path

import pytest

import nodetrace
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.ovsdb import Bridge, OvsdbConfig, Port
from nodetrace.model.ovsdb import Interface as DbInterface
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot, SourceKind
from nodetrace.model.topology import (
    MAIN_NS,
    Address,
    BridgeInfo,
    Interface,
    LinkKind,
    Route,
    Topology,
    VethInfo,
)
from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.neutron.inventory import inventory
from nodetrace.render.diagram_graph import FOLD_ABOVE
from nodetrace.render.node_diagram import (
    Diagram,
    Hop,
    PathMarks,
    node_diagram,
    path_marks,
    standalone_svg,
)

# Skipped only on a developer machine without Graphviz; on CI (which installs it) never.
pytestmark = pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("CI"), reason="Graphviz's dot"
)

EXAMPLES = Path(nodetrace.__file__).parent / "examples"
SVG = "{http://www.w3.org/2000/svg}"
WEB1, DB1 = "bf944fec", "7eb6fb94"
KINDS = {
    "ovs-bridge",
    "ovs-port",
    "linux-bridge",
    "veth",
    "tap",
    "tunnel",
    "uplink",
    "router-port",
    "other",
}


@pytest.fixture(scope="module")
def cmp1() -> Snapshot:
    return nodetrace.load_snapshot(EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz")


@pytest.fixture(scope="module")
def cmp2() -> Snapshot:
    return nodetrace.load_snapshot(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz")


def _tree(diagram: Diagram | str) -> ET.Element:
    return ET.fromstring(diagram.svg if isinstance(diagram, Diagram) else diagram)


def _classes(el: ET.Element) -> set[str]:
    return set(el.get("class", "").split())


def _nodes(root: ET.Element) -> dict[str, ET.Element]:
    """Drawn devices by name (the SVG's ``data-device``)."""
    return {
        str(g.get("data-device")): g
        for g in root.iter(f"{SVG}g")
        if "node" in _classes(g) and g.get("data-device") is not None
    }


def _edges(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "edge" in _classes(g)]


def _joined(root: ET.Element, a: ET.Element, b: ET.Element, kind: str) -> bool:
    ends = {a.get("id"), b.get("id")}
    return any(kind in _classes(e) and {e.get("data-from"), e.get("data-to")} == ends
               for e in _edges(root))  # fmt: skip


def _text(el: ET.Element) -> str:
    return " ".join(t.text or "" for t in el.iter(f"{SVG}text"))


def _rect(el: ET.Element) -> tuple[float, float, float, float]:
    r = el.find(f"{SVG}rect")
    assert r is not None
    return tuple(float(r.get(k, "0")) for k in ("x", "y", "width", "height"))  # type: ignore[return-value]


# -- the bundled two-node lab -----------------------------------------------------------------


def test_the_bridges_their_patch_link_and_the_uplink_are_drawn(cmp1: Snapshot) -> None:
    root = _tree(node_diagram(cmp1, inventory=inventory(cmp1)))
    nodes = _nodes(root)
    assert cmp1.ovs is not None
    for bridge in cmp1.ovs.bridges:
        assert "ovs-bridge" in _classes(nodes[bridge.name])
        for port in bridge.ports:
            if port.name != bridge.name:
                assert _joined(root, nodes[bridge.name], nodes[port.name], "port"), port.name
    assert "ovs-port" in _classes(nodes["patch-int"])
    assert _joined(root, nodes["patch-int"], nodes["patch-tun"], "patch")
    # und0 is br-phys's only system port, a veth whose far end is outside the node.
    assert "uplink" in _classes(nodes["und0"])
    # br-phys holds the underlay address the tunnel leaves from.
    assert "192.168.50.1/24" in _text(nodes["br-phys"])
    assert _joined(root, nodes["vxlan-c0a83202"], nodes["br-phys"], "underlay")


def test_each_node_tunnels_to_the_other_nodes_underlay_address(
    cmp1: Snapshot, cmp2: Snapshot
) -> None:
    for here, there in ((cmp1, cmp2), (cmp2, cmp1)):
        nodes = _nodes(_tree(node_diagram(here)))
        tunnels = [g for g in nodes.values() if "tunnel" in _classes(g)]
        assert tunnels
        remote_addresses = {str(a.ip) for i in there.topology.interfaces for a in i.addresses}
        for tunnel in tunnels:
            shown = re.search(r"VXLAN → (\S+)", _text(tunnel))
            assert shown is not None, _text(tunnel)
            assert shown.group(1) in remote_addresses


@pytest.mark.parametrize("node", ["cmp1", "cmp2"])
def test_each_vm_port_is_its_tap_qbr_qvb_qvo_chain_with_mac_and_addresses(
    node: str, request: pytest.FixtureRequest
) -> None:
    snap: Snapshot = request.getfixturevalue(node)
    inv = inventory(snap)
    root = _tree(node_diagram(snap, inventory=inv))
    nodes = _nodes(root)
    clusters = [g for g in root.iter(f"{SVG}g") if {"cluster", "port"} <= _classes(g)]
    assert inv.ports
    for port in inv.ports:
        short = port.port_id[:11]
        tap, qbr, qvb, qvo = (nodes[f"{p}{short}"] for p in ("tap", "qbr", "qvb", "qvo"))
        assert "linux-bridge" in _classes(qbr)
        assert _joined(root, nodes["br-int"], qvo, "port")
        assert _joined(root, qvo, qvb, "veth")
        assert _joined(root, qbr, qvb, "port") and _joined(root, qbr, tap, "port")
        region = next(c for c in clusters if port.port_id in " ".join(c.itertext()))
        heading = " ".join(region.itertext())
        assert port.mac is not None and port.mac.value in heading
        for ip in port.ips:
            assert str(ip.value) in heading
        # The region encloses the port's devices.
        rx, ry, rw, rh = _rect(region)
        for device in (tap, qbr, qvb, qvo):
            x, y, w, h = _rect(device)
            assert rx <= x and ry <= y and x + w <= rx + rw and y + h <= ry + rh


def test_the_svg_is_well_formed_and_dot_placed_the_devices_apart(cmp1: Snapshot) -> None:
    text = standalone_svg(cmp1, inventory=inventory(cmp1))
    assert text.startswith("<?xml")
    root = _tree(text.split("\n", 1)[1])
    assert root.find(f"{SVG}style") is not None
    rects = [_rect(g) for g in _nodes(root).values()]
    assert len(rects) >= 15
    for i, (x, y, w, h) in enumerate(rects):
        for x2, y2, w2, h2 in rects[i + 1 :]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y
    # Without a stylesheet asked for, the page brings its own.
    assert _tree(node_diagram(cmp1)).find(f"{SVG}style") is None


def test_elements_map_each_device_to_its_drawing(cmp1: Snapshot) -> None:
    diagram = node_diagram(cmp1)
    root = _tree(diagram)
    by_id = {g.get("id"): g for g in root.iter(f"{SVG}g")}
    for (netns, name), element in diagram.elements.items():
        assert by_id[element].get("data-device") == name
        assert by_id[element].get("data-netns") == netns


# -- the path ---------------------------------------------------------------------------------


def test_a_delivered_trace_marks_its_hops_in_walk_order(cmp1: Snapshot) -> None:
    inv = inventory(cmp1)
    trace = nodetrace.trace(cmp1, "tcp,tp_dst=5432,tcp_flags=+syn", from_port=WEB1, to_port=DB1)
    assert trace.outcome is Outcome.DELIVERED
    marks = path_marks(trace)
    web1 = next(p for p in inv.ports if p.port_id.startswith(WEB1))
    db1 = next(p for p in inv.ports if p.port_id.startswith(DB1))
    devices = [h.device for h in marks.hops]
    assert web1.ovs_port is not None and db1.ovs_port is not None
    assert devices[0] == web1.tap and devices[-1] == db1.tap
    assert devices.index(web1.ovs_port) < devices.index("br-int") < devices.index(db1.ovs_port)
    assert [h.index for h in marks.hops] == list(range(1, len(marks.hops) + 1))
    # Every step belongs to exactly one hop, in order; the deciding one is the last hop's.
    steps = [s for h in marks.hops for s in h.steps]
    assert steps == list(range(1, len(trace.steps) + 1))
    assert [h.state for h in marks.hops] == ["passed"] * (len(marks.hops) - 1) + ["decided"]
    assert trace.verdict_step is not None
    assert trace.verdict_step + 1 in marks.hops[-1].steps

    root = _tree(node_diagram(cmp1, inventory=inv, paths=[marks]))
    nodes = _nodes(root)
    for hop in marks.hops:
        assert {"hop", f"hop-{hop.state}"} <= _classes(nodes[hop.device])
        assert hop.index in map(int, nodes[hop.device].get("data-hops", "").split())
    for a, b in zip(marks.hops, marks.hops[1:], strict=False):
        ends = {nodes[a.device].get("id"), nodes[b.device].get("id")}
        assert any(
            "path" in _classes(e) and {e.get("data-from"), e.get("data-to")} == ends
            for e in _edges(root)
        ), (a.device, b.device)
    # The port not on the path is not marked.
    other = next(p for p in inv.ports if p not in (web1, db1))
    assert other.tap is not None and "hop" not in _classes(nodes[other.tap])


def test_a_dropped_trace_marks_the_dropping_hop(cmp1: Snapshot) -> None:
    trace = nodetrace.trace(cmp1, "tcp,tp_dst=22,tcp_flags=+syn", from_port=WEB1, to_port=DB1)
    assert trace.outcome is Outcome.DROPPED and trace.verdict_step is not None
    marks = path_marks(trace)
    dropped = [h for h in marks.hops if h.state == "dropped"]
    assert len(dropped) == 1 and trace.verdict_step + 1 in dropped[0].steps
    # The security group drops it on the receiving VM's bridge, before its tap.
    assert dropped[0].device.startswith("qbr" + DB1) and dropped[0] is marks.hops[-1]
    nodes = _nodes(_tree(node_diagram(cmp1, paths=[marks])))
    assert "hop-dropped" in _classes(nodes[dropped[0].device])
    assert "hop" not in _classes(nodes["tap" + DB1 + "-79"])


def test_an_observed_path_is_drawn_apart_from_the_predicted_one(cmp1: Snapshot) -> None:
    trace = nodetrace.trace(cmp1, "tcp,tp_dst=22,tcp_flags=+syn", from_port=WEB1, to_port=DB1)
    predicted = path_marks(trace)
    observed = PathMarks(predicted.hops[:3], observed=True)
    root = _tree(node_diagram(cmp1, paths=[predicted, observed]))
    nodes = _nodes(root)
    seen = {h.device for h in observed.hops}
    for hop in predicted.hops:
        assert ("observed" in _classes(nodes[hop.device])) == (hop.device in seen)
    assert any({"path", "observed"} <= _classes(e) for e in _edges(root))


def test_a_logged_packet_is_marked_where_netfilter_saw_it(cmp2: Snapshot) -> None:
    log = EXAMPLES / "two-nodes-cmp2.trace.log"
    snapshot = EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"
    packets = list(nodetrace.explain_log([log], rules=[snapshot]))
    dropped = [p.trace for p in packets if p.trace.outcome is Outcome.DROPPED]
    assert len(dropped) == 1
    (trace,) = dropped
    marks = path_marks(trace, observed=True)
    first = trace.steps[0]
    assert isinstance(first, NetfilterStep) and first.physin is not None
    # In through the bridge port the kernel logged, dropped at the bridge netfilter ran on.
    assert [h.device for h in marks.hops] == [first.physin, first.in_dev]
    assert [h.state for h in marks.hops] == ["passed", "dropped"]
    nodes = _nodes(_tree(node_diagram(cmp2, paths=[marks])))
    assert {"hop-dropped", "observed"} <= _classes(nodes[first.in_dev])
    assert "linux-bridge" in _classes(nodes[first.in_dev])


def test_a_hop_without_its_namespace_is_found_by_a_unique_name(cmp1: Snapshot) -> None:
    hop = Hop(1, "br-int", "some-other-namespace", (1,), "unknown")
    nodes = _nodes(_tree(node_diagram(cmp1, paths=[PathMarks((hop,))])))
    assert "hop-unknown" in _classes(nodes["br-int"])


# -- a large node ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Snapshot, Inventory]:
    from bench.synthetic_bundle import write_bundle
    from nodetrace.neutron import synthetic_node

    state = synthetic_node(ports=60, seed=2, networks=2)
    snap = nodetrace.load_snapshot(write_bundle(state, tmp_path_factory.mktemp("n") / "b"))
    return snap, inventory(snap)


def test_a_large_node_folds_each_busy_vlan_into_one_searchable_box(
    large: tuple[Snapshot, Inventory],
) -> None:
    snap, inv = large
    root = _tree(node_diagram(snap, inventory=inv))
    groups = [g for g in root.iter(f"{SVG}g") if "group" in _classes(g)]
    assert groups and all(int(g.get("data-count", "0")) > FOLD_ABOVE for g in groups)
    assert sum(int(g.get("data-count", "0")) for g in groups) == len(inv.ports)
    search = " ".join(g.get("data-search", "") for g in groups).split()
    for port in inv.ports:
        assert port.port_id in search and port.tap in search
        assert port.mac is not None and port.mac.value in search
        assert all(str(ip.value) in search for ip in port.ips)
    assert len(_nodes(root)) < 20


def test_focus_and_paths_keep_their_ports_drawn_device_by_device(
    large: tuple[Snapshot, Inventory],
) -> None:
    snap, inv = large
    focused, pathed = inv.ports[0], inv.ports[-1]
    assert focused.tap is not None and pathed.tap is not None
    hop = Hop(1, pathed.tap, MAIN_NS, (1,), "decided")
    diagram = node_diagram(
        snap, inventory=inv, focus=[focused.port_id[:8]], paths=[PathMarks((hop,))]
    )
    nodes = _nodes(_tree(diagram))
    for port in (focused, pathed):
        for device in port.devices:
            assert device in nodes
    assert "hop-decided" in _classes(nodes[pathed.tap])
    groups = [g for g in _tree(diagram).iter(f"{SVG}g") if "group" in _classes(g)]
    assert sum(int(g.get("data-count", "0")) for g in groups) == len(inv.ports) - 2


# -- namespaces ---------------------------------------------------------------------------------

ROUTER_NS = "qrouter-5d1c2b7e-0000-4000-8000-000000000001"
DHCP_NS = "qdhcp-9a8b7c6d-0000-4000-8000-000000000002"


def _router_snapshot() -> Snapshot:
    """A network node's shape: a router and a DHCP server in their namespaces, plugged into
    br-int as OVS internal ports, the router's gateway on br-ex with the NIC eth1."""

    def internal(name: str, port_id: str) -> DbInterface:
        return DbInterface(name, "internal", external_ids=(("iface-id", port_id),))

    def patch(name: str, peer: str) -> Port:
        return Port(name, (DbInterface(name, "patch", options=(("peer", peer),)),))

    interfaces = (
        Interface("qr-1a2b3c4d-5e", ROUTER_NS, kind=LinkKind.OPENVSWITCH,
                  addresses=(Address(ip_interface("10.0.0.1/24")),)),
        Interface("qg-2b3c4d5e-6f", ROUTER_NS, kind=LinkKind.OPENVSWITCH,
                  addresses=(Address(ip_interface("203.0.113.5/24")),)),
        Interface("tap3c4d5e6f-70", DHCP_NS, kind=LinkKind.OPENVSWITCH,
                  addresses=(Address(ip_interface("10.0.0.2/24")),)),
        Interface("eth1", kind=LinkKind.PHYSICAL),
    )  # fmt: skip
    ovsdb = OvsdbConfig(
        bridges=(
            Bridge("br-int", ports=(
                Port("qr-1a2b3c4d-5e",
                     (internal("qr-1a2b3c4d-5e", "1a2b3c4d-5e00-4000-8000-000000000003"),), tag=1),
                Port("tap3c4d5e6f-70",
                     (internal("tap3c4d5e6f-70", "3c4d5e6f-7000-4000-8000-000000000005"),), tag=1),
                patch("int-br-ex", "phy-br-ex"),
            )),
            Bridge("br-ex", ports=(
                Port("qg-2b3c4d5e-6f",
                     (internal("qg-2b3c4d5e-6f", "2b3c4d5e-6f00-4000-8000-000000000004"),)),
                Port("eth1", (DbInterface("eth1"),)),
                patch("phy-br-ex", "int-br-ex"),
            )),
        )
    )  # fmt: skip
    return Snapshot(
        source="network-node",
        source_kind=SourceKind.FOLDER,
        topology=Topology(interfaces=interfaces, namespaces=(MAIN_NS, ROUTER_NS, DHCP_NS)),
        ovs=OvsSwitch.build({}, ovsdb=ovsdb),
    )


def test_namespaces_are_regions_holding_their_router_and_dhcp_ports() -> None:
    snap = _router_snapshot()
    inv = inventory(snap)
    diagram = node_diagram(snap, inventory=inv)
    root = _tree(diagram)
    nodes = _nodes(root)
    regions = {
        g.get("data-netns"): g for g in root.iter(f"{SVG}g") if {"cluster", "netns"} <= _classes(g)
    }
    assert set(regions) == {ROUTER_NS, DHCP_NS}
    for port in inv.ports:
        (device,) = port.devices
        node = nodes[device]
        assert node.get("data-netns") == port.namespace
        assert port.port_id in (node.get("data-search") or "").split()
        rx, ry, rw, rh = _rect(regions[port.namespace])
        x, y, w, h = _rect(node)
        assert rx <= x and ry <= y and x + w <= rx + rw and y + h <= ry + rh
        assert diagram.elements[(port.namespace or MAIN_NS, device)] == node.get("id")
    assert "router-port" in _classes(nodes["qr-1a2b3c4d-5e"])
    assert "router-port" in _classes(nodes["qg-2b3c4d5e-6f"])
    assert "10.0.0.1/24" in _text(nodes["qr-1a2b3c4d-5e"])
    assert _joined(root, nodes["br-int"], nodes["qr-1a2b3c4d-5e"], "port")
    assert _joined(root, nodes["br-ex"], nodes["qg-2b3c4d5e-6f"], "port")
    assert _joined(root, nodes["int-br-ex"], nodes["phy-br-ex"], "patch")
    assert "uplink" in _classes(nodes["eth1"])


def test_a_tunnel_without_local_ip_rides_on_the_device_routing_its_remote() -> None:
    tunnel = DbInterface("vxlan-1", "vxlan", options=(("remote_ip", "192.168.60.7"),))
    ovsdb = OvsdbConfig(bridges=(Bridge("br-tun", ports=(Port("vxlan-1", (tunnel,)),)),))
    topology = Topology(
        interfaces=(
            Interface("eth0", addresses=(Address(ip_interface("10.1.0.5/16")),)),
            Interface("eth1", addresses=(Address(ip_interface("192.168.60.2/24")),)),
        ),
        routes=(
            Route(Family.IPV4, ip_network("0.0.0.0/0"), dev="eth0"),
            Route(Family.IPV4, ip_network("192.168.60.0/24"), dev="eth1"),
        ),
    )
    snap = Snapshot(
        source="t",
        source_kind=SourceKind.FOLDER,
        topology=topology,
        ovs=OvsSwitch.build({}, ovsdb=ovsdb),
    )
    root = _tree(node_diagram(snap))
    nodes = _nodes(root)
    assert _joined(root, nodes["vxlan-1"], nodes["eth1"], "underlay")
    assert not _joined(root, nodes["vxlan-1"], nodes["eth0"], "underlay")


def test_a_tap_plugged_straight_into_br_int_carries_its_neutron_port() -> None:
    port_id = "4d5e6f70-8100-4000-8000-000000000006"
    tap = DbInterface(
        "tap4d5e6f70-81",
        external_ids=(("iface-id", port_id), ("attached-mac", "fa:16:3e:12:34:56")),
    )
    ovsdb = OvsdbConfig(bridges=(Bridge("br-int", ports=(Port(tap.name, (tap,), tag=3),)),))
    snap = Snapshot(
        source="native",
        source_kind=SourceKind.FOLDER,
        topology=Topology(interfaces=(Interface(tap.name, kind=LinkKind.TAP),)),
        ovs=OvsSwitch.build({}, ovsdb=ovsdb),
    )
    inv = inventory(snap)
    assert [p.port_id for p in inv.ports] == [port_id]
    root = _tree(node_diagram(snap, inventory=inv))
    node = _nodes(root)[tap.name]
    assert "tap" in _classes(node)
    assert port_id in _text(node) and "fa:16:3e:12:34:56" in _text(node)
    assert "tag 3" in _text(node)
    assert _joined(root, _nodes(root)["br-int"], node, "port")


# -- hostile input ------------------------------------------------------------------------------

HOSTILE = (
    "<script>alert(1)</script>",
    '"><svg onload=alert(2)>',
    "javascript:alert(3)",
    "]]><!--&amp;-->",
    "a&b'c\"d",
)


def _hostile_snapshot() -> Snapshot:
    ns = "<script>ns</script>"
    script, quote, js, cdata, amp = HOSTILE
    interfaces = (
        Interface(script, kind=LinkKind.VETH, detail=VethInfo(peer_ifindex=7, peer_netns=ns)),
        Interface(quote, netns=ns, ifindex=7, kind=LinkKind.VETH,
                  addresses=(Address(ip_interface("10.0.0.1/24")),)),
        Interface(js, kind=LinkKind.BRIDGE, detail=BridgeInfo()),
        Interface(amp, kind=LinkKind.TAP, master=js, master_kind="bridge"),
        Interface(cdata, kind=LinkKind.UNKNOWN, mac="javascript:void(0)"),
    )  # fmt: skip
    ovsdb = OvsdbConfig(
        bridges=(
            Bridge(
                "br-int",
                ports=(
                    Port(script, (DbInterface(script),), tag=5),
                    Port(
                        "t1",
                        (DbInterface("t1", "vxlan", options=(("remote_ip", js),)),),
                    ),
                    Port("p1", (DbInterface("p1", "patch", options=(("peer", cdata),)),)),
                ),
            ),
        )
    )
    return Snapshot(
        source="hostile",
        source_kind=SourceKind.FOLDER,
        topology=Topology(interfaces=interfaces, namespaces=(MAIN_NS, ns)),
        ovs=OvsSwitch.build({}, ovsdb=ovsdb),
    )


def test_hostile_names_are_drawn_as_inert_escaped_text() -> None:
    snap = _hostile_snapshot()
    text = standalone_svg(snap)
    root = _tree(text.split("\n", 1)[1])
    allowed_ids = re.compile(r"[a-z]\d+\Z")
    names = set()
    for el in root.iter():
        tag = el.tag.removeprefix(SVG)
        assert tag in {"svg", "g", "rect", "text", "title", "path", "style"}, tag
        for attr, value in el.attrib.items():
            assert not attr.lower().startswith("on")
            assert "href" not in attr.lower()
            if attr == "id":
                assert allowed_ids.match(value), value
            if attr == "class":
                words = set(value.split())
                assert words <= KINDS | {
                    "node", "edge", "cluster", "netns", "port", "vlan", "patch", "veth",
                    "underlay", "clusters", "edges", "nodes", "node-diagram", "name", "detail",
                    "heading", "chain", "compact", "group", "folded",
                }, value  # fmt: skip
        if tag == "g" and el.get("data-device") is not None:
            names.add(el.get("data-device"))
    assert set(HOSTILE) <= names
    shown = "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG}title"))
    for name in HOSTILE:
        assert name in shown
    assert "<script" not in text.lower().replace("&lt;script", "")
    nodes = _nodes(root)
    # A veth whose peer is in the snapshot is no way out of the node.
    assert "veth" in _classes(nodes[HOSTILE[0]])
    assert _joined(root, nodes[HOSTILE[0]], nodes[HOSTILE[1]], "veth")
    assert "other" in _classes(nodes[HOSTILE[3]])  # a device of unknown kind
    assert "kind not in the snapshot" in _text(nodes[HOSTILE[3]])
    assert "tunnel" in _classes(nodes["t1"]) and HOSTILE[2] in _text(nodes["t1"])
    assert f"patch → {HOSTILE[3]}" in _text(nodes["p1"])
    regions = [g for g in root.iter(f"{SVG}g") if {"cluster", "netns"} <= _classes(g)]
    assert [r.get("data-netns") for r in regions] == ["<script>ns</script>"]
