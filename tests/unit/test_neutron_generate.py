"""What the generator says Neutron puts on a node, checked against the compute-node reference's
worked example (tests/data/lab/SOURCES.md) and against the agents' rules case by case. The lab
tests check the same output against what the real kernel and OVS print back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nodetrace.neutron import naming as n
from nodetrace.neutron.firewall import PortFilter, node_firewall
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.ovs_agent import of10_actions
from nodetrace.neutron.scenario import load_scenario, parse_scenario
from nodetrace.neutron.synthetic import synthetic_node, synthetic_scenario

DATA = Path(__file__).parents[1] / "data" / "lab"
COOKIE = 0x8F1E2D3C4B5A6978


@pytest.fixture(scope="module")
def reference() -> NodeState:
    scenario = load_scenario(DATA / "reference-node.toml")
    return generate_node(scenario, "compute-01", cookie=COOKIE)


def _save_lines(text: str) -> list[str]:
    # iptables-save prints MAC bytes in lower case (checked in the lab, legacy and nft); the
    # reference's example writes them as the agent hands them to iptables-restore (upper).
    return [
        re.sub(r"--mac-source (\S+)", lambda m: f"--mac-source {m.group(1).lower()}", line)
        for line in text.splitlines()
        if not line.startswith("#")
    ]


def test_reference_iptables_save_is_reproduced_line_for_line(reference: NodeState) -> None:
    expected = _save_lines((DATA / "reference-node.iptables-save.txt").read_text())
    assert _save_lines(reference.firewall.iptables_save) == expected


def test_reference_ipset_is_reproduced(reference: NodeState) -> None:
    expected = (DATA / "reference-node.ipset-save.txt").read_text()
    assert reference.firewall.ipset_restore == expected


def _flow_lines(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        if "cookie=" not in line or "hard_timeout" in line:  # learned at run time
            continue
        line = re.sub(r" (duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*,", "", line)
        out.add(line.strip())
    return out


@pytest.mark.parametrize("bridge", ["br-int", "br-tun"])
def test_reference_flows_are_reproduced(reference: NodeState, bridge: str) -> None:
    expected = _flow_lines((DATA / f"reference-node.{bridge}.dump-flows.txt").read_text())
    generated = _flow_lines(reference.dump_flows_text(bridge, names=True))
    assert expected <= generated
    # The reference leaves out the second VM's flows ("analogous"); nothing else may differ.
    assert all("qvoa7e9c4d1-2b" in line for line in generated - expected)


def test_reference_numbering(reference: NodeState) -> None:
    vm1, vm2 = reference.vm_port("vm1"), reference.vm_port("vm2")
    assert (vm1.zone, vm2.zone) == (4097, 4098)  # sorted by port UUID
    assert (vm1.local_vlan, vm2.local_vlan) == (1, 1)
    assert [t.name for t in reference.tunnels] == ["vxlan-0a000032", "vxlan-0a000033"]
    ports = {p.name: p for p in reference.ovs_ports}
    assert ports["qvo3b1f6a2c-8d"].tag == 1
    assert dict(ports["qvo3b1f6a2c-8d"].external_ids)["iface-id"] == vm1.port.id
    assert dict(ports["vxlan-0a000032"].options)["remote_ip"] == "10.0.0.50"


BASE = """
[[nodes]]
name = "cmp1"
[[nodes]]
name = "cmp2"
[[networks]]
name = "t"
type = "gre"
segmentation_id = 42
cidr = "10.0.0.0/24"
[[networks]]
name = "p"
type = "vlan"
segmentation_id = 300
cidr = "10.1.0.0/24"
[[security_groups]]
name = "sg"
rules = [
  { direction = "ingress", protocol = "tcp", port_range_min = 8000, port_range_max = 8080 },
  { direction = "ingress", protocol = "udp", port = 53, remote_ip_prefix = "192.168.0.0/16" },
  { direction = "ingress", protocol = "icmp", icmp_type = 8, icmp_code = 0 },
  { direction = "ingress", protocol = "47" },
  { direction = "ingress", protocol = "tcp", port = 22 },
  { direction = "ingress", protocol = "tcp", port = 22 },
  { direction = "egress", protocol = "tcp", port = 443, remote_ip_prefix = "10.9.9.9" },
]
[[ports]]
name = "a"
node = "cmp1"
network = "t"
ips = ["10.0.0.5", "fd00::5"]
security_groups = ["sg"]
allowed_address_pairs = [{ ip_address = "10.0.0.128/25", mac_address = "fa:16:3e:aa:aa:aa" }]
[[ports]]
name = "b"
node = "cmp1"
network = "p"
port_security = false
"""


@pytest.fixture(scope="module")
def node() -> NodeState:
    return generate_node(parse_scenario(BASE), "cmp1")


def _chain(save: str, chain: str) -> list[str]:
    prefix = f"-A {chain} "
    return [line[len(prefix) :] for line in save.splitlines() if line.startswith(prefix)]


def test_sg_rules_translate_as_the_agent_writes_them(node: NodeState) -> None:
    a = node.vm_port("a").port
    ingress = _chain(node.firewall.iptables_save, n.chain_name(n.ChainKind.INGRESS, a.id))
    assert ingress[1:] == [
        "-d 10.0.0.5/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
        "-d 255.255.255.255/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
        "-p tcp -m tcp -m multiport --dports 8000:8080 -j RETURN",
        "-s 192.168.0.0/16 -p udp -m udp --dport 53 -j RETURN",
        "-p icmp -m icmp --icmp-type 8/0 -j RETURN",
        "-p gre -j RETURN",
        "-p tcp -m tcp --dport 22 -j RETURN",  # the duplicate is pruned
        '-m state --state INVALID -m comment --comment "Drop packets that appear related to an '
        'existing connection (e.g. TCP ACK/FIN) but do not have an entry in conntrack." -j DROP',
        '-m comment --comment "Send unmatched traffic to the fallback chain." '
        "-j neutron-openvswi-sg-fallback",
    ]
    egress = _chain(node.firewall.iptables_save, n.chain_name(n.ChainKind.EGRESS, a.id))
    assert "-d 10.9.9.9/32 -p tcp -m tcp --dport 443 -j RETURN" in egress


def test_a_trace_rule_goes_first_in_ipv4_raw_prerouting(node: NodeState) -> None:
    filters = [PortFilter(vp.port, vp.zone) for vp in node.vm_ports]
    traced = node_firewall(node.scenario, filters, ipv4_trace="-p icmp")
    raw = traced.iptables_save.split("*nat")[0]
    assert _chain(raw, "PREROUTING") == ["-p icmp -j TRACE", "-j neutron-openvswi-PREROUTING"]
    untraced = node.firewall.iptables_save
    assert traced.iptables_save.replace("-A PREROUTING -p icmp -j TRACE\n", "") == untraced
    assert traced.ip6tables_save == node.firewall.ip6tables_save


def test_address_pairs_come_first_in_the_spoof_chains(node: NodeState) -> None:
    a = node.vm_port("a").port
    spoof = n.chain_name(n.ChainKind.SPOOF, a.id)
    v4 = _chain(node.firewall.iptables_save, spoof)
    assert [r.split(" -m comment")[0] for r in v4] == [
        "-s 10.0.0.128/25 -m mac --mac-source fa:16:3e:aa:aa:aa",
        f"-s 10.0.0.5/32 -m mac --mac-source {a.mac}",
        '-m comment --comment "Drop traffic without an IP/MAC allow rule." -j DROP',
    ]
    v6 = _chain(node.firewall.ip6tables_save, spoof)
    assert v6[0].startswith(f"-s fd00::5/128 -m mac --mac-source {a.mac}")
    assert v6[1].startswith("-s fe80::")  # the link-local address of the port's MAC
    ingress6 = _chain(node.firewall.ip6tables_save, n.chain_name(n.ChainKind.INGRESS, a.id))
    assert ingress6[:4] == [
        "-p ipv6-icmp -m icmp6 --icmpv6-type 130 -j RETURN",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN",
        "-p ipv6-icmp -m icmp6 --icmpv6-type 136 -j RETURN",
        '-m state --state RELATED,ESTABLISHED -m comment --comment "Direct packets associated '
        'with a known session to the RETURN chain." -j RETURN',
    ]
    assert ingress6[4] == "-p ipv6-icmp -m icmp6 --icmpv6-type 134 -j RETURN"  # RA: v6 port
    assert ingress6[5:7] == [
        "-d fd00::5/128 -p udp -m udp --sport 547 --dport 546 -j RETURN",
        "-d fe80::/64 -p udp -m udp --sport 547 --dport 546 -j RETURN",
    ]


def test_port_without_security_gets_accept_rules_and_no_chains(node: NodeState) -> None:
    b = node.vm_port("b")
    assert b.zone is None
    save = node.firewall.iptables_save
    assert n.chain_name(n.ChainKind.INGRESS, b.port.id) not in save
    tap = b.devices.tap
    forward = _chain(save, "neutron-openvswi-FORWARD")
    assert forward[-2:] == [
        f"-m physdev --physdev-out {tap} --physdev-is-bridged -m comment --comment "
        '"Accept all packets when port security is disabled." -j ACCEPT',
        f"-m physdev --physdev-in {tap} --physdev-is-bridged -m comment --comment "
        '"Accept all packets when port security is disabled." -j ACCEPT',
    ]
    assert not [f for f in node.flows if f"in_port={b.ofport}" in f.match and f.table == 0]


def test_anti_spoofing_flows_cover_pairs_and_link_local(node: NodeState) -> None:
    a = node.vm_port("a")
    in_port = f"in_port={a.ofport}"
    t24 = {",".join(f.match) for f in node.flows if f.table == 24 and in_port in f.match}
    assert f"arp,{in_port},arp_spa=10.0.0.5" in t24
    assert f"arp,{in_port},arp_spa=10.0.0.128/25" in t24
    assert f"icmp6,{in_port},icmp_type=136,nd_target=fd00::5" in t24
    t25 = {",".join(f.match) for f in node.flows if f.table == 25}
    assert {f"{in_port},dl_src={a.port.mac}", f"{in_port},dl_src=fa:16:3e:aa:aa:aa"} <= t25


def test_vlan_and_gre_networks_get_their_translation_flows(node: NodeState) -> None:
    nets = {net.type.value: net for net in node.networks}
    gre, vlan = nets["gre"], nets["vlan"]
    dump = node.dump_flows_text("br-int")
    assert (
        f"priority=3,in_port=2,dl_vlan=300 actions=mod_vlan_vid:{vlan.local_vlan},resubmit(,58)"
        in dump
    )
    tun = node.dump_flows_text("br-tun", openflow13=True)
    assert (
        f"table=3, n_packets=0, n_bytes=0, priority=1,tun_id=0x2a "
        f"actions=push_vlan:0x8100,set_field:{4096 + gre.local_vlan}->vlan_vid,goto_table:10"
    ) in tun
    assert "priority=1,dl_vlan=1 actions=pop_vlan,set_field:0x2a->tun_id,output:2" in tun
    phys = node.dump_flows_text("br-phys")
    assert f"priority=4,in_port=2,dl_vlan={vlan.local_vlan} actions=mod_vlan_vid:300,NORMAL" in phys


@pytest.mark.parametrize(
    ("of13", "of10"),
    [
        ("goto_table:58", "resubmit(,58)"),
        ("push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10", "mod_vlan_vid:1,resubmit(,10)"),
        (
            "pop_vlan,set_field:0x40d->tun_id,output:2",
            "strip_vlan,load:0x40d->NXM_NX_TUN_ID[],output:2",
        ),
        ("set_field:4396->vlan_vid,NORMAL", "mod_vlan_vid:300,NORMAL"),
    ],
)
def test_openflow10_rendering(of13: str, of10: str) -> None:
    assert of10_actions(of13) == of10


def test_synthetic_nodes_are_deterministic_and_large() -> None:
    a = synthetic_node(ports=60, seed=3)
    b = synthetic_node(ports=60, seed=3)
    c = synthetic_node(ports=60, seed=4)
    assert a.firewall.iptables_save == b.firewall.iptables_save
    assert a.firewall.iptables_save != c.firewall.iptables_save
    assert len(a.vm_ports) == 60
    assert len(a.tunnels) == 3 * 2  # three peers, VXLAN and GRE
    scenario = synthetic_scenario(ports=500, seed=1)
    assert len(scenario.ports_on("cmp1")) == 500
    assert "match-set" in a.firewall.iptables_save
