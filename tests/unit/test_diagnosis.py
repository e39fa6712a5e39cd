"""Each cause of the catalogue, put into a copy of a real node's snapshot (the bundled
two-node lab's cmp2), is found at the right layer with the right id; the unbroken snapshot
names no cause for the same packet."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from nodetrace.diagnosis import CauseId, Layer, diagnose
from nodetrace.engine.walk import WalkRequest
from nodetrace.model.diagnosis import Diagnosis
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Hook, NetfilterStep, Outcome
from tests.unit.diagnosis_faults import (
    DB2_MAC,
    add_neighbour,
    edit_link,
    host,
    insert_rule,
    load,
    node,
    remove_lines,
    replace_text,
    set_sysctl,
    underlay_to_host,
    web2_to_db1,
    web2_to_db2,
)

BR_PHYS_MAC = "52:37:ef:4c:c8:4e"
TO_HOST = f"tcp,nw_src=10.99.0.5,nw_dst=192.168.50.2,tp_dst=22,dl_dst={BR_PHYS_MAC}"
THROUGH_HOST = f"tcp,nw_src=192.168.50.7,nw_dst=192.168.50.9,tp_dst=22,dl_dst={BR_PHYS_MAC}"


def sized(request: WalkRequest, length: int) -> WalkRequest:
    """The same packet, ``length`` bytes long (IP total length)."""
    return dataclasses.replace(request, packet=dataclasses.replace(request.packet, ip_len=length))


def predict(snap: Snapshot, request: WalkRequest) -> Diagnosis:
    return diagnose(snap, observed=None, request=request)


def assert_passes(d: Diagnosis) -> None:
    assert d.cause is None, d.cause
    assert d.predicted.outcome is Outcome.DELIVERED, d.predicted.reason


def test_a_drop_rule_in_a_security_group_chain(tmp_path: Path) -> None:
    assert_passes(predict(load(node(tmp_path / "a")), web2_to_db2(load(node(tmp_path / "a")))))
    folder = node(tmp_path / "b")
    insert_rule(folder, "neutron-openvswi-i79645311-2", "-p tcp -m tcp --dport 5432 -j DROP")
    snap = load(folder)
    d = predict(snap, web2_to_db2(snap))
    assert d.cause is not None and d.cause.id == CauseId.RULE_DROP
    assert d.layer is Layer.NETFILTER
    rule = "-A neutron-openvswi-i79645311-2 -p tcp -m tcp --dport 5432 -j DROP"
    assert d.location == f"filter neutron-openvswi-i79645311-2 rule 1: {rule}"
    # The rule as read, with its file and line, and a read-only command that lists its counter.
    (evidence,) = d.cause.evidence
    assert evidence.startswith(rule) and evidence.endswith("iptables-legacy-save.txt:31)")
    assert d.cause.confirm == (
        "iptables -t filter -L neutron-openvswi-i79645311-2 -n -v --line-numbers"
    )


def test_a_missing_openflow_flow(tmp_path: Path) -> None:
    folder = node(tmp_path)
    assert remove_lines(host(folder, "ovs-ofctl-dump-flows.br-int.txt"), "table=60", "NORMAL") == 1
    snap = load(folder)
    d = predict(snap, web2_to_db2(snap))
    assert d.cause is not None and d.cause.id == CauseId.FLOW_MISSING
    assert (d.layer, d.location) == (Layer.OPENFLOW, "br-int table 60")
    assert "ovs-ofctl dump-flows br-int table=60" in d.cause.confirm
    assert "ofproto/trace br-int 'tcp,in_port=qvo85f28c5a-9f," in d.cause.confirm


def test_one_veth_end_down(tmp_path: Path) -> None:
    folder = node(tmp_path)
    # As the kernel shows it: the end set down, and its peer left without carrier.
    edit_link(folder, "qvb79645311-20", up=False)
    edit_link(folder, "qvo79645311-20", carrier=False)
    snap = load(folder)
    d = predict(snap, web2_to_db2(snap))
    assert d.cause is not None and d.cause.id == CauseId.LINK_DOWN
    assert d.layer is Layer.DEVICE
    assert d.location == "qvo79645311-20 (no carrier: peer qvb79645311-20 down)"
    assert any("qvb79645311-20 <not UP,NO-CARRIER>" in e for e in d.cause.evidence)
    assert "tx_dropped" in d.predicted.reason
    assert d.cause.confirm == "ip -s -d link show qvo79645311-20"


def test_a_vm_tap_without_carrier(tmp_path: Path) -> None:
    folder = node(tmp_path)
    edit_link(folder, "tap79645311-20", carrier=False)
    snap = load(folder)
    d = predict(snap, web2_to_db2(snap))
    assert d.cause is not None and d.cause.id == CauseId.LINK_DOWN
    assert (d.layer, d.location) == (Layer.DEVICE, "tap79645311-20 (no carrier)")


@pytest.mark.parametrize(
    ("device", "exceeded"),
    [
        ("tap79645311-20", "tap79645311-20 (mtu 1000)"),  # the bridge's out port
        ("qvb79645311-20", "qvb79645311-20 (mtu 1000)"),  # the far end of OVS's veth
    ],
)
def test_an_mtu_too_small_on_the_path(tmp_path: Path, device: str, exceeded: str) -> None:
    base = load(node(tmp_path / "a"))
    assert_passes(predict(base, sized(web2_to_db2(base), 1400)))
    folder = node(tmp_path / "b")
    edit_link(folder, device, mtu=1000)
    snap = load(folder)
    request = web2_to_db2(snap)
    assert_passes(predict(snap, sized(request, 1000)))  # the allowance: a frame of MTU + 4
    d = predict(snap, sized(request, 1400))
    assert d.cause is not None and d.cause.id == CauseId.MTU
    assert (d.layer, d.location) == (Layer.DEVICE, exceeded)
    assert "the packet: 1400 bytes (its IP length as given)" in d.cause.evidence


def test_an_mtu_too_small_for_the_tunnel_overhead(tmp_path: Path) -> None:
    base = load(node(tmp_path / "a"))
    packet = "tcp,tp_dst=80,tcp_flags=+syn"
    assert_passes(predict(base, sized(web2_to_db1(base, packet), 1400)))
    folder = node(tmp_path / "b")
    edit_link(folder, "und0", mtu=1400)
    snap = load(folder)
    assert_passes(predict(snap, sized(web2_to_db1(snap, packet), 1350)))
    d = predict(snap, sized(web2_to_db1(snap, packet), 1400))
    assert d.cause is not None and d.cause.id == CauseId.MTU
    assert (d.layer, d.location) == (Layer.DEVICE, "und0 (mtu 1400)")
    # VXLAN over IPv4 adds 50 bytes: the outer packet is 1450.
    assert "1450 bytes (a vxlan packet: the inner 1400 bytes + 50 of encapsulation)" in (
        d.predicted.reason
    )


def test_rp_filter(tmp_path: Path) -> None:
    base = load(node(tmp_path / "a"))
    assert_passes(predict(base, underlay_to_host(base, TO_HOST)))
    folder = node(tmp_path / "b")
    set_sysctl(folder, "net.ipv4.conf.all.rp_filter", 1)
    snap = load(folder)
    d = predict(snap, underlay_to_host(snap, TO_HOST))
    assert d.cause is not None and d.cause.id == CauseId.RP_FILTER
    # PREROUTING runs (and TRACE logs it) before the routing decision that drops it.
    hooks = {s.hook for s in d.predicted.steps if isinstance(s, NetfilterStep)}
    assert hooks == {Hook.PREROUTING}
    assert (d.layer, d.location) == (Layer.ROUTING, "br-phys (rp_filter)")
    assert any(e.startswith("net.ipv4.conf.all.rp_filter = 1 (") for e in d.cause.evidence)
    assert d.cause.confirm.startswith("sysctl net.ipv4.conf.all.rp_filter")


def test_ip_forward_off(tmp_path: Path) -> None:
    on = node(tmp_path / "a")
    set_sysctl(on, "net.ipv4.ip_forward", 1)
    add_neighbour(on, "192.168.50.9", "br-phys", "52:54:00:00:00:09")
    base = load(on)
    assert_passes(predict(base, underlay_to_host(base, THROUGH_HOST)))
    off = node(tmp_path / "b")
    set_sysctl(off, "net.ipv4.ip_forward", 0)
    add_neighbour(off, "192.168.50.9", "br-phys", "52:54:00:00:00:09")
    snap = load(off)
    d = predict(snap, underlay_to_host(snap, THROUGH_HOST))
    assert d.cause is not None and d.cause.id == CauseId.IP_FORWARD_OFF
    assert (d.layer, d.location) == (Layer.ROUTING, "br-phys (ip_forward=0)")
    assert any(e.startswith("net.ipv4.ip_forward = 0 (") for e in d.cause.evidence)


def test_conntrack_invalid(tmp_path: Path) -> None:
    snap = load(node(tmp_path))
    packet = "tcp,tp_dst=22,tcp_flags=+ack"
    assert_passes(predict(snap, web2_to_db2(snap, packet, ct_state="est")))
    d = predict(snap, web2_to_db2(snap, packet, ct_state="inv"))
    assert d.cause is not None and d.cause.id == CauseId.CONNTRACK_INVALID
    assert d.layer is Layer.CONNTRACK
    assert d.location.startswith("filter neutron-openvswi-i79645311-2 rule 6: ")
    assert "--state INVALID" in d.location


def test_a_stale_ovs_mac_entry(tmp_path: Path) -> None:
    folder = node(tmp_path)
    # db2's MAC learned on patch-tun (port 1) instead of its own port (3).
    table = host(folder, "ovs-appctl-fdb-show.br-int.txt")
    replace_text(table, f"    3     1  {DB2_MAC}", f"    1     1  {DB2_MAC}")
    snap = load(folder)
    d = predict(snap, web2_to_db2(snap))
    assert d.cause is not None and d.cause.id == CauseId.FDB_STALE
    assert (d.layer, d.location) == (Layer.BRIDGE, f"br-int MAC learning table ({DB2_MAC})")
    assert d.cause.confirm == f"ovs-appctl fdb/show br-int | grep -i {DB2_MAC}"


def test_a_stale_linux_bridge_fdb_entry(tmp_path: Path) -> None:
    folder = node(tmp_path)
    # A static entry putting db2's MAC behind qvb (the OVS side) of its own bridge.
    replace_text(
        host(folder, "bridge-fdb.json"),
        "[",
        f'[{{"mac": "{DB2_MAC}", "ifname": "qvb79645311-20", "flags": [], '
        '"master": "qbr79645311-20", "state": "static"}, ',
    )
    snap = load(folder)
    d = predict(snap, web2_to_db2(snap))
    assert d.cause is not None and d.cause.id == CauseId.FDB_STALE
    assert (d.layer, d.location) == (Layer.BRIDGE, f"qbr79645311-20 forwarding table ({DB2_MAC})")
    assert any("dev qvb79645311-20 master qbr79645311-20 static" in e for e in d.cause.evidence)


def test_vm_not_reading_from_the_taps_counters(tmp_path: Path) -> None:
    snap = load(node(tmp_path))
    request = web2_to_db2(snap)
    quiet = diagnose(snap, observed=None, request=request, device_counters={})
    assert quiet.cause is None
    d = diagnose(
        snap,
        observed=None,
        request=request,
        device_counters={"tap79645311-20": {"tx_dropped": 3, "tx_packets": 0}},
    )
    assert d.cause is not None and d.cause.id == CauseId.VM_NOT_READING
    assert (d.layer, d.location) == (Layer.DEVICE, "tap79645311-20 (tx_dropped)")


def test_a_prediction_the_snapshot_cannot_make_is_unknown_naming_what_is_missing(
    tmp_path: Path,
) -> None:
    folder = node(tmp_path)
    (folder / "host" / "ovs-ofctl-dump-flows.br-int.txt").unlink()
    snap = load(folder)
    d = predict(snap, web2_to_db2(snap))
    assert d.cause is not None and d.cause.id == CauseId.UNKNOWN
    assert d.layer is Layer.UNKNOWN
    assert "ovs-ofctl dump-flows br-int" in d.cause.title


def test_no_route_for_a_tunnels_outer_packet(tmp_path: Path) -> None:
    folder = node(tmp_path)
    routes = host(folder, "ip-route.json")
    kept = [r for r in json.loads(routes.read_text()) if r["dst"] != "192.168.50.0/24"]
    routes.write_text(json.dumps(kept))
    snap = load(folder)
    d = predict(snap, web2_to_db1(snap, "tcp,tp_dst=80,tcp_flags=+syn"))
    assert d.cause is not None and d.cause.id == CauseId.NO_ROUTE
    assert (d.layer, d.location) == (Layer.TUNNEL, "vxlan-c0a83201 (outer packet)")
