"""``collect`` on a real node: a namespace with its own Open vSwitch (userspace datapath), a
hybrid-plugged VM port (tap - qbr - qvb/qvo - br-int), br-tun with a VXLAN port, iptables and
an ipset. The bundle must hold what the tools printed, and load back into a snapshot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodetrace.lab.ovs import OvsInstance, start_ovs
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.model.netfilter import Backend
from nodetrace.snapshot import collect as collector
from nodetrace.snapshot.load import load
from tests.conftest import unique

PORT = "3b1f6a2c-8d4e-4f7a-9b2c-1d5e6f7a8b9c"
TAP, QBR, QVB, QVO = (p + PORT[:11] for p in ("tap", "qbr", "qvb", "qvo"))

RULES = f"""*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-openvswi-PREROUTING - [0:0]
-A PREROUTING -j neutron-openvswi-PREROUTING
-A neutron-openvswi-PREROUTING -m physdev --physdev-in {QVB} -j CT --zone 4097
-A neutron-openvswi-PREROUTING -m physdev --physdev-in {TAP} -j CT --zone 4097
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:neutron-openvswi-sg-chain - [0:0]
-A FORWARD -m physdev --physdev-out {TAP} --physdev-is-bridged -j neutron-openvswi-sg-chain
-A FORWARD -m physdev --physdev-in {TAP} --physdev-is-bridged -j neutron-openvswi-sg-chain
-A neutron-openvswi-sg-chain -m set --match-set NIPv4sg1 src -j ACCEPT
-A neutron-openvswi-sg-chain -j DROP
COMMIT
"""

TUN_FLOWS = """table=0,priority=1,in_port=patch-int,actions=resubmit(,2)
table=0,priority=1,in_port=vxlan-c0a83202,actions=resubmit(,4)
table=0,priority=0,actions=drop
table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,20)
table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,22)
table=4,priority=1,tun_id=0x64,actions=mod_vlan_vid:1,resubmit(,10)
table=10,priority=1,actions=output:patch-int
table=20,priority=0,actions=resubmit(,22)
table=22,priority=1,dl_vlan=1,actions=strip_vlan,load:0x64->NXM_NX_TUN_ID[],output:vxlan-c0a83202
table=22,priority=0,actions=drop
"""


@dataclass(frozen=True)
class MiniNode:
    netns: str
    vm: str
    ovs: OvsInstance


def build_mini_node(lab: Resources, tmp_path: Path) -> MiniNode:
    node = lab.add_netns(unique("snpn"))
    vm = lab.add_netns(unique("snpv"))
    ovs = start_ovs(lab, node, tmp_path / "ovs")
    ovs.add_bridge("br-int")
    ovs.add_bridge("br-tun")
    ovs.add_bridge("br-phys")
    ovs.vsctl(
        "--", "add-port", "br-int", "patch-tun",
        "--", "set", "interface", "patch-tun", "type=patch", "options:peer=patch-int",
        "--", "add-port", "br-tun", "patch-int",
        "--", "set", "interface", "patch-int", "type=patch", "options:peer=patch-tun",
        "--", "add-port", "br-tun", "vxlan-c0a83202",
        "--", "set", "interface", "vxlan-c0a83202", "type=vxlan",
        "options:remote_ip=192.168.50.2", "options:local_ip=192.168.50.1",
        "options:key=flow", "options:dst_port=4789",
    )  # fmt: skip
    ip = ["ip", "-n", node]
    run([*ip, "link", "add", TAP, "type", "veth", "peer", "name", "eth0", "netns", vm])
    run([*ip, "link", "add", QBR, "type", "bridge", "ageing_time", "0"])
    run([*ip, "link", "add", QVB, "type", "veth", "peer", "name", QVO])
    run([*ip, "link", "set", TAP, "master", QBR, "up"])
    run([*ip, "link", "set", QVB, "master", QBR, "up"])
    run([*ip, "link", "set", QBR, "up"])
    run([*ip, "link", "set", QVO, "up"])
    run(["ip", "-n", vm, "addr", "add", "10.10.0.11/24", "dev", "eth0"])
    run(["ip", "-n", vm, "link", "set", "eth0", "up"])
    ovs.vsctl(
        "add-port", "br-int", QVO, "tag=1",
        "--", "set", "interface", QVO, f"external_ids:iface-id={PORT}",
        "external_ids:attached-mac=fa:16:3e:4c:2a:11", "external_ids:iface-status=active",
    )  # fmt: skip
    run([*ip, "link", "add", "und0", "type", "veth", "peer", "name", "und1"])
    ovs.vsctl("add-port", "br-phys", "und0")
    run([*ip, "link", "set", "und0", "up"])
    run([*ip, "addr", "add", "192.168.50.1/24", "dev", "br-phys"])
    run([*ip, "link", "set", "br-phys", "up"])
    ovs.ofctl("add-flow", "br-int", "table=0,priority=0,actions=resubmit(,60)")
    ovs.ofctl("add-flow", "br-int", "table=60,priority=3,actions=NORMAL")
    ovs.ofctl("add-flows", "br-tun", "-", stdin=TUN_FLOWS)
    ovs.ofctl("add-flow", "br-phys", "priority=0,actions=NORMAL")
    run(["ipset", "create", "NIPv4sg1", "hash:net", "family", "inet"], netns=node)
    run(["ipset", "add", "NIPv4sg1", "10.10.0.0/24"], netns=node)
    run(["iptables-legacy-restore"], netns=node, input=RULES)
    return MiniNode(node, vm, ovs)


@pytest.mark.lab
def test_collect_in_a_lab_node_captures_ovs_linux_and_netfilter(
    lab: Resources, tmp_path: Path
) -> None:
    node = build_mini_node(lab, tmp_path)
    out = tmp_path / "bundle"
    collector.collect(
        str(out),
        collector.Options(
            netns=node.netns, ovs_rundir=str(node.ovs.rundir), namespaces=(), conntrack_max=100
        ),
    )
    manifest = json.loads((out / "manifest.json").read_text())
    by_kind = {(c["kind"], c["bridge"]): c for c in manifest["commands"]}
    assert manifest["collector"]["netns"] == node.netns
    for key in [
        ("ovs-vsctl-show", None),
        ("ovs-ofctl-dump-flows", "br-tun"),
        ("ip-link", None),
        ("conntrack-ipv4", None),
        ("ovs-appctl-dpctl-dump-conntrack", None),
    ]:
        assert by_kind[key]["status"] == "ok", by_kind[key]
    assert {b for _, b in by_kind if b} == {"br-int", "br-tun", "br-phys"}
    flows = (out / by_kind["ovs-ofctl-dump-flows", "br-tun"]["file"]).read_text()
    assert "tun_id=0x64" in flows
    fdb = by_kind["ovs-appctl-fdb-show", "br-int"]
    assert fdb["status"] == "ok"
    assert (out / fdb["file"]).read_text().startswith(" port  VLAN  MAC")
    links = json.loads((out / "host/ip-link.json").read_text())
    names = {link["ifname"] for link in links}
    assert {TAP, QBR, QVB, QVO, "br-int", "br-phys", "und0"} <= names
    # The node's view, not the machine's: the VM end of the tap lives in another namespace.
    tap = next(link for link in links if link["ifname"] == TAP)
    assert "link_netnsid" in tap
    saved = (out / "host/iptables-legacy-save.txt").read_text()
    assert f"--physdev-in {TAP}" in saved
    assert "add NIPv4sg1 10.10.0.0/24" in (out / "host/ipset-save.txt").read_text()
    sysctl = (out / "host/sysctl.txt").read_text()
    assert "net.bridge.bridge-nf-call-iptables = 1" in sysctl

    # ...and the bundle loads back into a snapshot with the same facts.
    snap = load(out)
    qvb = snap.topology.interface(QVB)
    assert qvb is not None and snap.topology.veth_peer(qvb) == snap.topology.interface(QVO)
    assert [i.name for i in snap.topology.ports_of(QBR)] == [TAP, QVB]
    rules = snap.main.iptables
    assert rules is not None and rules.backend is Backend.LEGACY
    assert rules.chain("filter", "neutron-openvswi-sg-chain") is not None
    assert snap.raw_outputs("ovs-ofctl-dump-flows", bridge="br-tun")
    assert not snap.diagnostics, [str(d) for d in snap.diagnostics]


@pytest.mark.lab
def test_collect_follows_a_veth_into_a_named_namespace(lab: Resources, tmp_path: Path) -> None:
    node = build_mini_node(lab, tmp_path)
    out = tmp_path / "bundle.tar.gz"
    collector.collect(
        str(out),
        collector.Options(netns=node.netns, ovs_rundir=str(node.ovs.rundir), namespaces=(node.vm,)),
    )
    snap = load(out)
    vm = snap.namespace(node.vm)
    assert vm is not None
    tap = snap.topology.interface(TAP)
    assert tap is not None
    peer = snap.topology.veth_peer(tap)
    assert peer is not None and (peer.name, peer.netns) == ("eth0", node.vm)
    assert [str(a.interface) for a in peer.addresses if a.family.value == "ipv4"] == [
        "10.10.0.11/24"
    ]
