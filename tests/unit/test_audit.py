"""``nodetrace audit``: each check finds its problem on a snapshot that has it and stays quiet
on one that does not.

Snapshots are the bundled examples (real lab captures, src/nodetrace/examples/SOURCES.md) and the
real sosreport-shaped nodes of tests/data/snapshot (SOURCES.md there), unmodified, or a copy in
``tmp_path`` with one fact changed the way it goes wrong on real nodes (a rule added, an MTU
lowered, a sysctl set to 0). Where an unmodified example really has a finding, the test says
why it is real.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

import nodetrace
from nodetrace.audit import Finding, Severity, audit, audit_report
from nodetrace.snapshot.load import load

EXAMPLES = Path(nodetrace.__file__).parent / "examples"
DATA = Path(__file__).resolve().parents[1] / "data" / "snapshot"
CMP1 = EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz"
V4_RULES = "host/iptables-legacy-save.txt"


def example_copy(tmp_path: Path, node: str = "cmp1") -> Path:
    """The bundled example of ``node``, unpacked into ``tmp_path`` so one fact can be changed."""
    with tarfile.open(EXAMPLES / f"two-nodes-{node}.snapshot.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / node


def edit(root: Path, member: str, old: str, new: str) -> None:
    path = root / member
    text = path.read_text()
    assert old in text, f"{member} does not hold {old!r}"
    path.write_text(text.replace(old, new, 1))


def of(check: str, snapshot: Path) -> list[Finding]:
    return [f for f in audit(load(snapshot)) if f.check == check]


def not_run(check: str, snapshot: Path) -> list[str]:
    return [n.reason for n in audit_report(load(snapshot)).not_run if n.check == check]


# --- host-through-neutron-chains -------------------------------------------------------------------


def test_host_traffic_through_neutron_chains_on_the_example() -> None:
    """Real: the example's filter INPUT jumps to neutron-openvswi-INPUT (line 19), whose rules
    send VM packets for the host into the ports' egress chains, which drop (the seed's point)."""
    found = [f for f in of("host-through-neutron-chains", CMP1) if "(IPv4)" in f.title]
    assert len(found) == 1
    finding = found[0]
    assert finding.severity is Severity.WARNING
    first = finding.evidence[0]
    assert first.text == "[filter] -A INPUT -j neutron-openvswi-INPUT"
    assert first.source.endswith("cmp1/host/iptables-legacy-save.txt:19")
    assert any("neutron-openvswi-o7eb6fb94-7" in e.text for e in finding.evidence)
    assert finding.confirm == "iptables -t filter -S INPUT"


def test_no_host_finding_without_the_input_jump(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    edit(root, V4_RULES, "-A INPUT -j neutron-openvswi-INPUT\n", "")
    assert not [f for f in of("host-through-neutron-chains", root) if "(IPv4)" in f.title]


def test_input_reaching_the_sg_chain_is_critical(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    edit(root, V4_RULES, "-A INPUT -j neutron-openvswi-INPUT\n",
         "-A INPUT -j neutron-openvswi-INPUT\n-A INPUT -j neutron-openvswi-sg-chain\n")  # fmt: skip
    found = [f for f in of("host-through-neutron-chains", root) if "(IPv4)" in f.title]
    assert [f.severity for f in found] == [Severity.CRITICAL]
    assert "neutron-openvswi-sg-chain" in found[0].title
    assert any(
        e.text == "[filter] -A INPUT -j neutron-openvswi-sg-chain" for e in found[0].evidence
    )


# --- shadowed-rule -----------------------------------------------------------------------------------


def test_shadowed_rules_of_the_example_are_real() -> None:
    """Real: each egress chain returns every packet at rule 6 (``-j RETURN``, the security
    group's "egress to anywhere"), so its INVALID drop (7) and fallback jump (8) never run."""
    found = of("shadowed-rule", CMP1)
    subjects = sorted(f.subject for f in found)
    assert subjects == [
        "filter neutron-openvswi-o7eb6fb94-7 rule 7",
        "filter neutron-openvswi-o7eb6fb94-7 rule 8",
    ]
    assert all("and the same in 1 more chains" in f.title for f in found)
    assert found[0].evidence[0].text == "[filter] -A neutron-openvswi-o7eb6fb94-7 -j RETURN"


def test_a_broader_earlier_rule_shadows_a_later_one(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    set_rule = (
        "-A neutron-openvswi-i7eb6fb94-7 -p tcp -m tcp --dport 5432 -m set --match-set "
        "NIPv4fcc7e558-aa2c-5754-938e- src -j RETURN\n"
    )
    edit(root, V4_RULES, set_rule,
         "-A neutron-openvswi-i7eb6fb94-7 -s 10.20.0.0/16 -p tcp -m tcp --dport 5000:6000 -j DROP\n"
         + set_rule)  # fmt: skip
    found = [f for f in of("shadowed-rule", root) if "i7eb6fb94-7" in f.subject]
    assert [f.subject for f in found] == []  # the set may hold sources outside 10.20.0.0/16
    edit(root, V4_RULES, "-s 10.20.0.0/16 -p tcp", "-p tcp")
    found = [f for f in of("shadowed-rule", root) if "i7eb6fb94-7" in f.subject]
    assert [f.subject for f in found] == ["filter neutron-openvswi-i7eb6fb94-7 rule 5"]
    assert found[0].severity is Severity.WARNING  # DROP hides a RETURN: the policy differs
    assert "--dport 5000:6000 -j DROP" in found[0].evidence[0].text


def test_an_unknown_match_makes_it_cannot_tell(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    edit(root, V4_RULES, "-A neutron-openvswi-i7eb6fb94-7 -p icmp",
         "-A neutron-openvswi-i7eb6fb94-7 -p tcp -m tcp --dport 5432 -m time --timestart 09:00 "
         "-j DROP\n-A neutron-openvswi-i7eb6fb94-7 -p tcp -m tcp --dport 5432 -j RETURN\n"
         "-A neutron-openvswi-i7eb6fb94-7 -p icmp")  # fmt: skip
    assert not [f for f in of("shadowed-rule", root) if "i7eb6fb94-7" in f.subject]
    reasons = not_run("shadowed-rule", root)
    assert len(reasons) == 1 and "-m time" in reasons[0]


# --- physdev-out-never-matches ----------------------------------------------------------------------


def test_physdev_out_in_prerouting_never_matches() -> None:
    """Real: the nat table's "port is trusted" rules match --physdev-out in a chain reached
    only from PREROUTING, where br_netfilter has no output port; the filter FORWARD ones
    (valid there) are not reported."""
    found = [f for f in of("physdev-out-never-matches", CMP1) if "(IPv4)" in f.title]
    assert [f.subject for f in found] == ["nat neutron-openvswi-PREROUTING"]
    assert len(found[0].evidence) == 3
    assert all("--physdev-out tap" in e.text for e in found[0].evidence)


def test_physdev_out_moved_to_forward_is_not_reported(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    path = root / V4_RULES
    path.write_text(
        path.read_text().replace("-m physdev --physdev-out tap", "-m physdev --physdev-in tap")
    )
    assert not [f for f in of("physdev-out-never-matches", root) if "(IPv4)" in f.title]


# --- stale-port-chain --------------------------------------------------------------------------------


def test_chains_of_a_port_without_devices(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    edit(root, V4_RULES, ":neutron-openvswi-sg-chain - [0:0]\n",
         ":neutron-openvswi-sg-chain - [0:0]\n:neutron-openvswi-i0badbeef-0 - [0:0]\n")  # fmt: skip
    edit(root, V4_RULES, "-A neutron-openvswi-sg-chain -j ACCEPT\n",
         "-A neutron-openvswi-sg-chain -m physdev --physdev-out tap0badbeef-00 --physdev-is-bridged "
         "-j neutron-openvswi-i0badbeef-0\n-A neutron-openvswi-sg-chain -j ACCEPT\n"
         "-A neutron-openvswi-i0badbeef-0 -j RETURN\n")  # fmt: skip
    found = of("stale-port-chain", root)
    assert [f.subject for f in found] == ["port 0badbeef-0"]
    texts = [e.text for e in found[0].evidence]
    assert texts[0] == "[filter] :neutron-openvswi-i0badbeef-0 - (1 rules)"
    assert any("--physdev-out tap0badbeef-00" in t for t in texts)
    assert not of("stale-port-chain", CMP1)


# --- jump-to-empty-chain / jump-to-missing-chain ---------------------------------------------------


def test_jumps_to_empty_chains_of_the_example() -> None:
    """Real: neutron-openvswi-local and neutron-openvswi-OUTPUT have no rule in the example."""
    found = [f for f in of("jump-to-empty-chain", CMP1) if "(IPv4)" in f.title]
    assert len(found) == 1
    assert found[0].severity is Severity.INFO
    assert "filter neutron-openvswi-local" in found[0].title
    assert not of("jump-to-missing-chain", CMP1)


def test_a_chain_with_a_rule_is_not_empty(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    edit(root, V4_RULES, "-A neutron-filter-top -j neutron-openvswi-local\n",
         "-A neutron-filter-top -j neutron-openvswi-local\n-A neutron-openvswi-local -j RETURN\n")  # fmt: skip
    found = [f for f in of("jump-to-empty-chain", root) if "(IPv4)" in f.title]
    assert "neutron-openvswi-local" not in found[0].title


# --- ipsets -------------------------------------------------------------------------------------------


def test_ipset_missing_and_empty(tmp_path: Path) -> None:
    assert not of("ipset-missing", CMP1) and not of("ipset-empty", CMP1)
    root = example_copy(tmp_path)
    ipsets = root / "host/ipset-save.txt"
    original = ipsets.read_text()
    ipsets.write_text(original.splitlines(keepends=True)[0])  # only the create line
    found = of("ipset-empty", root)
    assert [f.subject for f in found] == ["ipset NIPv4fcc7e558-aa2c-5754-938e-"]
    assert "--match-set NIPv4fcc7e558-aa2c-5754-938e- src" in found[0].evidence[1].text
    ipsets.write_text("")
    found = of("ipset-missing", root)
    assert [f.severity for f in found] == [Severity.CRITICAL]
    assert not of("ipset-empty", root)


# --- OpenFlow ------------------------------------------------------------------------------------------


BR_INT_FLOWS = "host/ovs-ofctl-dump-flows.br-int.txt"
TABLE0_ARP = (
    " cookie=0x9edc78f2692734da, duration=1.812s, table=0, n_packets=1, n_bytes=42, idle_age=0, "
    "priority=10,arp,in_port=2 actions=resubmit(,24)\n"
)


def test_flows_for_missing_ofports(tmp_path: Path) -> None:
    assert not of("flow-missing-ofport", CMP1)
    root = example_copy(tmp_path)
    edit(root, BR_INT_FLOWS, TABLE0_ARP, TABLE0_ARP
         + " cookie=0x1, duration=1.0s, table=0, n_packets=0, n_bytes=0, priority=12,in_port=42 actions=output:43\n")  # fmt: skip
    found = sorted(of("flow-missing-ofport", root), key=lambda f: f.subject)
    assert [f.subject for f in found] == ["br-int port 42", "br-int port 43"]
    assert "never match" in found[0].title and "lost" in found[1].title
    assert found[0].evidence[0].text.startswith("br-int: table=0, priority=12, in_port=42")


def test_flow_shadowed_by_a_higher_priority_superset(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    assert not of("shadowed-flow", root)
    edit(root, BR_INT_FLOWS, TABLE0_ARP, TABLE0_ARP
         + " cookie=0x1, duration=1.0s, table=0, n_packets=0, n_bytes=0, priority=11,in_port=2 actions=drop\n")  # fmt: skip
    found = of("shadowed-flow", root)
    assert [f.subject for f in found] == ["br-int table 0"]
    assert "3 flows of br-int table 0 can never match" in found[0].title
    shadowed = {e.text.split(", ")[1] for e in found[0].evidence[1:] if e.text.startswith("br-int")}
    assert shadowed == {"priority=10", "priority=9"}
    assert found[0].severity is Severity.WARNING


def test_shadowed_flows_of_a_real_node_agree_with_its_counters() -> None:
    """Real (canonical/hotsos's compute node): br-data's NORMAL flow at priority 0 was last hit
    62956 s ago, when the catch-all priority=1 flow was added; br-int's table 60 priority 20
    flow for fa:16:3e:a7:45:cb was added 3 s before the priority 90 one and never hit."""
    found = {f.subject: f for f in of("shadowed-flow", DATA / "hotsos-ovsfw")}
    assert set(found) == {"br-data table 0", "br-int table 60"}
    counters = found["br-data table 0"].evidence[-1].text
    assert "n_packets=380" in counters and "before the covering flow was added" in counters
    assert "n_packets=0" in found["br-int table 60"].evidence[-1].text


# --- MTU -------------------------------------------------------------------------------------------------


def _set_mtu(root: Path, device: str, mtu: int) -> None:
    for member in ("host/ip-link.json", "host/ip-addr.json"):
        path = root / member
        links = json.loads(path.read_text())
        for link in links:
            if link["ifname"] == device:
                link["mtu"] = mtu
        path.write_text(json.dumps(links))


def test_tunnel_mtu_against_the_underlay(tmp_path: Path) -> None:
    """The example's VMs have MTU 1450: 1450 + 50 (VXLAN) fits br-phys's 1500 exactly."""
    assert not of("mtu-tunnel", CMP1)
    root = example_copy(tmp_path)
    _set_mtu(root, "br-phys", 1490)
    found = of("mtu-tunnel", root)
    assert len(found) == 1 and found[0].severity is Severity.CRITICAL
    assert "need 1500 but the underlay br-phys has MTU 1490" in found[0].title
    assert found[0].evidence[0].text == "br-phys: mtu 1490 (underlay)"
    assert len(found[0].evidence) == 4  # the underlay and the three VM taps


def test_tunnel_mtu_on_a_real_mini_node() -> None:
    """Real: the sosreport of the lab's mini node has its tap at 1500 over a 1500 underlay."""
    found = of("mtu-tunnel", DATA / "sos-mini")
    assert len(found) == 1
    assert "need 1550 but the underlay br-phys has MTU 1500" in found[0].title


def test_mtu_along_a_hybrid_port(tmp_path: Path) -> None:
    assert not of("mtu-port-path", CMP1)
    root = example_copy(tmp_path)
    _set_mtu(root, "qvb7eb6fb94-79", 1400)
    found = of("mtu-port-path", root)
    assert [f.subject for f in found] == ["7eb6fb94-79bd-5c16-9f28-85c1a9a40e27"]
    assert "qvb7eb6fb94-79 has 1400" in found[0].title


# --- sysctls ------------------------------------------------------------------------------------------------


SYSCTL = "host/sysctl.txt"


def test_bridge_nf_call_off_under_the_hybrid_firewall(tmp_path: Path) -> None:
    assert not of("bridge-nf-call-off", CMP1)
    root = example_copy(tmp_path)
    edit(
        root,
        SYSCTL,
        "net.bridge.bridge-nf-call-iptables = 1",
        "net.bridge.bridge-nf-call-iptables = 0",
    )
    found = of("bridge-nf-call-off", root)
    assert [f.subject for f in found] == ["net.bridge.bridge-nf-call-iptables"]
    assert found[0].severity is Severity.CRITICAL
    assert found[0].evidence[0].text == "net.bridge.bridge-nf-call-iptables = 0"
    assert "3 ports" in found[0].title


def test_conntrack_near_max(tmp_path: Path) -> None:
    """The real mini sosreport counts 1 of 262144 entries: no finding."""
    assert not of("conntrack-near-max", DATA / "sos-mini")
    assert not_run("conntrack-near-max", CMP1)  # collect does not read the two counters
    root = tmp_path / "sos"
    _copy_tree(DATA / "sos-mini", root)
    edit(root, "sos_commands/kernel/sysctl_-a", "net.netfilter.nf_conntrack_count = 1",
         "net.netfilter.nf_conntrack_count = 250000")  # fmt: skip
    found = of("conntrack-near-max", root)
    assert [f.severity for f in found] == [Severity.CRITICAL]
    assert "250000 of 262144" in found[0].title


def _copy_tree(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)


def _add_namespace(root: Path, netns: str, files: dict[str, str]) -> None:
    manifest_path = root.parent / root.name / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["namespaces"] = [*manifest.get("namespaces", []), netns]
    for kind, text in files.items():
        member = f"netns/{netns}/{kind}.txt"
        (root / member).parent.mkdir(parents=True, exist_ok=True)
        (root / member).write_text(text)
        manifest["commands"].append(
            {"kind": kind, "file": member, "netns": netns, "bridge": None, "status": "ok"}
        )
    manifest_path.write_text(json.dumps(manifest))


ROUTER_LINKS = json.dumps([
    {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "mtu": 65536,
     "operstate": "UNKNOWN", "link_type": "loopback", "address": "00:00:00:00:00:00"},
    {"ifindex": 7, "ifname": "qr-0badbeef-00", "flags": ["BROADCAST", "UP", "LOWER_UP"],
     "mtu": 1450, "operstate": "UNKNOWN", "link_type": "ether", "address": "fa:16:3e:00:00:01",
     "linkinfo": {"info_kind": "openvswitch"}},
])  # fmt: skip


def test_ip_forward_off_in_a_router_namespace(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    netns = "qrouter-0badbeef-0000-4000-8000-000000000001"
    _add_namespace(root, netns, {"ip-link": ROUTER_LINKS, "sysctl": "net.ipv4.ip_forward = 1\n"})
    assert not of("ip-forward-off", root)
    (root / f"netns/{netns}/sysctl.txt").write_text("net.ipv4.ip_forward = 0\n")
    found = of("ip-forward-off", root)
    assert [f.subject for f in found] == [netns]
    assert found[0].evidence[0].text == "net.ipv4.ip_forward = 0"
    assert found[0].confirm == f"ip netns exec {netns} sysctl net.ipv4.ip_forward"


def test_router_namespaces_without_sysctls_cannot_be_checked() -> None:
    reasons = not_run("ip-forward-off", DATA / "hotsos-ovsfw")
    assert len(reasons) == 3 and all("not captured" in r for r in reasons)


# --- conntrack zones ---------------------------------------------------------------------------------------


def test_zone_shared_across_networks(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    path = root / V4_RULES
    path.write_text(path.read_text().replace("--zone 4098", "--zone 4097"))
    assert not of("conntrack-zone-collision", root)  # both ports are on VLAN 1 (vxlan 1037)
    ports = root / "host/ovs-vsctl-list-port.json"
    data = json.loads(ports.read_text())
    name, tag = data["headings"].index("name"), data["headings"].index("tag")
    for row in data["data"]:
        if row[name] == "qvobf944fec-1e":
            row[tag] = 2
    ports.write_text(json.dumps(data))
    edit(root, "host/ovs-vsctl-show.txt", 'Port qvobf944fec-1e\n            tag: 1',
         'Port qvobf944fec-1e\n            tag: 2')  # fmt: skip
    found = of("conntrack-zone-collision", root)
    assert [f.subject for f in found] == ["zone 4097"]
    assert "2 ports of 2 networks" in found[0].title


# --- OVS ports and MAC tables ---------------------------------------------------------------------------------


def _retag(root: Path, port: str, tag: int | None) -> None:
    ports = root / "host/ovs-vsctl-list-port.json"
    data = json.loads(ports.read_text())
    name, column = data["headings"].index("name"), data["headings"].index("tag")
    for row in data["data"]:
        if row[name] == port:
            row[column] = tag if tag is not None else ["set", []]
    ports.write_text(json.dumps(data))
    show = root / "host/ovs-vsctl-show.txt"
    text = show.read_text()
    old = f"Port {port}\n            tag: 1\n"
    assert old in text
    new = f"Port {port}\n" + (f"            tag: {tag}\n" if tag is not None else "")
    show.write_text(text.replace(old, new))


def test_dead_vlan_and_untagged_ports(tmp_path: Path) -> None:
    assert not of("ovs-port-dead-vlan", CMP1) and not of("ovs-port-no-tag", CMP1)
    root = example_copy(tmp_path)
    _retag(root, "qvo2b4b9950-c7", 4095)
    _retag(root, "qvo7eb6fb94-79", None)
    assert [f.subject for f in of("ovs-port-dead-vlan", root)] == ["qvo2b4b9950-c7"]
    assert [f.subject for f in of("ovs-port-no-tag", root)] == ["qvo7eb6fb94-79"]


FDB = "host/ovs-appctl-fdb-show.br-int.txt"


def test_stale_and_misplaced_mac_entries(tmp_path: Path) -> None:
    assert not of("fdb-stale", CMP1)
    root = example_copy(tmp_path)
    edit(root, FDB, "    2     1  fa:16:3e:bb:79:12    1\n",
         "    1     1  fa:16:3e:bb:79:12    1\n   42     1  fa:16:3e:00:00:42    7\n")  # fmt: skip
    found = sorted(of("fdb-stale", root), key=lambda f: f.subject)
    assert [f.subject for f in found] == ["br-int MAC table", "br-int fa:16:3e:bb:79:12"]
    gone, wrong = found
    assert "attached-mac of qvobf944fec-1e" in wrong.title and "port 1 (patch-tun)" in wrong.title
    assert wrong.evidence[0].source.endswith("ovs-appctl-fdb-show.br-int.txt:3")
    assert gone.evidence[0].text.split() == ["42", "1", "fa:16:3e:00:00:42", "7"]


def test_wrong_port_macs_on_a_real_node() -> None:
    """Real (canonical/hotsos): br-int learned the MACs of the router's qg- and sg- ports on
    int-br-data and patch-tun (frames with those sources came from outside the node)."""
    found = of("fdb-stale", DATA / "hotsos-ovsfw")
    assert sorted(f.subject for f in found) == [
        "br-int fa:16:3e:87:45:fc",
        "br-int fa:16:3e:e8:64:ce",
    ]


# --- the whole report -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "snapshot", [CMP1, EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz", DATA / "hotsos-ovsfw"]
)
def test_every_finding_cites_a_source_and_a_command(snapshot: Path) -> None:
    report = audit_report(load(snapshot))
    assert report.findings
    ids = set(report.checks)
    for f in report.findings:
        assert f.check in ids and f.evidence and f.confirm
        assert all(e.source for e in f.evidence)
    order = [f.severity for f in report.findings]
    assert order == sorted(order, key=[Severity.CRITICAL, Severity.WARNING, Severity.INFO].index)


# --- rp_filter and missing chains ----------------------------------------------------------------------------------


def _kernel_datapath(root: Path) -> None:
    """The example's bridges as a kernel-datapath node runs them (the lab used userspace)."""
    for member in ("host/ovs-vsctl-show.txt", "host/ovs-vsctl-list-bridge.json"):
        path = root / member
        path.write_text(path.read_text().replace("netdev", "system"))


def test_strict_rp_filter_against_the_tunnel_peer(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    _kernel_datapath(root)
    edit(root, SYSCTL, "net.ipv4.conf.all.rp_filter = 0", "net.ipv4.conf.all.rp_filter = 1")
    assert not of("rp-filter-strict", root)  # the route back to 192.168.50.2 is via br-phys
    routes = root / "host/ip-route.json"
    table = json.loads(routes.read_text())
    table.insert(0, {"type": "unicast", "dst": "192.168.50.2", "dev": "und0", "table": "main",
                     "protocol": "static", "scope": "link", "flags": []})  # fmt: skip
    routes.write_text(json.dumps(table))
    found = of("rp-filter-strict", root)
    assert [f.subject for f in found] == ["vxlan-c0a83202 on br-phys"]
    assert "leaves by und0, not br-phys" in found[0].title
    assert found[0].evidence[0].text == "net.ipv4.conf.all.rp_filter = 1"


def test_userspace_datapath_tunnels_skip_rp_filter(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    edit(root, SYSCTL, "net.ipv4.conf.all.rp_filter = 0", "net.ipv4.conf.all.rp_filter = 1")
    assert not of("rp-filter-strict", root)


def test_jump_to_a_chain_the_ruleset_does_not_define(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    edit(root, V4_RULES, "-A INPUT -j neutron-openvswi-INPUT\n",
         "-A INPUT -j neutron-openvswi-INPUT\n-A INPUT -j neutron-openvswi-gone\n")  # fmt: skip
    found = of("jump-to-missing-chain", root)
    assert [f.subject for f in found] == ["filter neutron-openvswi-gone"]
    assert found[0].evidence[0].text == "[filter] -A INPUT -j neutron-openvswi-gone"


def test_vm_mac_learned_on_the_qvb_side_of_its_bridge(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    path = root / "host/bridge-fdb.json"
    entries = json.loads(path.read_text())
    entries.append({"mac": "fa:16:3e:bb:79:12", "ifname": "qvbbf944fec-1e", "flags": [],
                    "master": "qbrbf944fec-1e"})  # fmt: skip
    path.write_text(json.dumps(entries))
    found = of("fdb-stale", root)
    assert [f.subject for f in found] == ["qbrbf944fec-1e fa:16:3e:bb:79:12"]
    assert "learned on qvbbf944fec-1e, not on its tap tapbf944fec-1e" in found[0].title


def test_untagged_ports_on_a_node_that_tags_none_are_not_reported(tmp_path: Path) -> None:
    """OVN leaves br-int's ports untagged: without one tagged Neutron port, no finding."""
    root = example_copy(tmp_path)
    for port in ("qvobf944fec-1e", "qvo7eb6fb94-79", "qvo2b4b9950-c7"):
        _retag(root, port, None)
    assert not of("ovs-port-no-tag", root)
    assert not_run("ovs-port-no-tag", root)


def test_negated_set_matches_are_not_counted_as_matching_nothing(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    ipsets = root / "host/ipset-save.txt"
    ipsets.write_text(ipsets.read_text().splitlines(keepends=True)[0])
    edit(root, V4_RULES, "-m set --match-set NIPv4fcc7e558-aa2c-5754-938e- src",
         "-m set ! --match-set NIPv4fcc7e558-aa2c-5754-938e- src")  # fmt: skip
    assert not of("ipset-empty", root)


def test_br_netfilter_not_loaded(tmp_path: Path) -> None:
    root = example_copy(tmp_path)
    path = root / SYSCTL
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith("net.bridge.")))  # fmt: skip
    found = of("bridge-nf-call-off", root)
    assert len(found) == 2  # iptables and ip6tables both hold Neutron's chains
    assert all("br_netfilter is not loaded" in f.title for f in found)


def test_kernel_vxlan_device_on_a_linux_bridge(tmp_path: Path) -> None:
    """The linuxbridge agent's layout: a ``vxlan-N`` device in the network's bridge, riding on
    the device that holds its local address."""
    root = example_copy(tmp_path)
    vxlan = {"ifindex": 90, "ifname": "vxlan-1037", "flags": ["BROADCAST", "UP", "LOWER_UP"],
             "mtu": 1450, "operstate": "UNKNOWN", "link_type": "ether", "address": "02:00:00:00:10:37",
             "master": "qbr7eb6fb94-79",
             "linkinfo": {"info_kind": "vxlan", "info_data": {"id": 1037, "local": "192.168.50.1",
                                                              "port": 4789, "learning": False},
                          "info_slave_kind": "bridge"}}  # fmt: skip
    for member in ("host/ip-link.json", "host/ip-addr.json"):
        path = root / member
        path.write_text(json.dumps([*json.loads(path.read_text()), {**vxlan, "addr_info": []}]))
    assert not [f for f in of("mtu-tunnel", root) if f.subject.startswith("vxlan-1037")]
    _set_mtu(root, "tap7eb6fb94-79", 1500)
    _set_mtu(root, "qvb7eb6fb94-79", 1500)
    found = [f for f in of("mtu-tunnel", root) if f.subject.startswith("vxlan-1037")]
    assert [f.subject for f in found] == ["vxlan-1037 via br-phys"]
    assert "need 1550 but the underlay br-phys has MTU 1500" in found[0].title
