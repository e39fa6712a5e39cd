"""How real nodes' data is read: filtered and elided flow dumps, namespaces only `ip netns`
lists, veths known only from `NAME@ifN ... link-netns`, snap-named sos files, Open vSwitch
evident but not captured, the kernel from `hostnamectl`, the iptables backend of a listing.

The datasets are the real-world corpus (tests/realworld/SOURCES.md names their sources)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.errors import DiagnosticSink, Severity
from nodetrace.model.netfilter import Backend
from nodetrace.model.topology import LinkKind
from nodetrace.parsers.ip_text import parse_ip_link_text, parse_ip_netns_text
from nodetrace.parsers.ovs_appctl_dpctl_show import parse_ovs_appctl_dpctl_show
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.snapshot.commands import recognise
from nodetrace.snapshot.load import load

REAL = Path(__file__).parents[1] / "realworld"
KOLLA = REAL / "kolla-ocata-hybrid-aio"
YOGA = REAL / "rdo-yoga-ovsfw-compute"
HOTSOS = REAL / "hotsos-focal-ussuri-dvr-ovsfw"
PARTIAL = REAL / "hotsos-focal-ussuri-dvr-2021-partial"
SUNBEAM = REAL / "hotsos-noble-caracal-sunbeam-ovn"
CARACAL_CONTROLLER = REAL / "rdo-caracal-ovsfw-controller"
QDHCP = "qdhcp-4a71fbfd-f1d7-44ba-9c9b-9815316243bd"
QROUTER = "qrouter-984c22fd-64b3-4fa1-8ddd-87090f401ce5"
FIP = "fip-32981f34-497a-4fae-914a-8576055c8d0d"


def _show_json(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, Any]:
    assert main(["show", str(path), "--format", "json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


# -- 1. a dump limited to a match -------------------------------------------------------


def test_a_filtered_dump_names_its_bridge_and_keeps_the_filter() -> None:
    found = recognise("ovs-ofctl dump-flows br-tun table=4")
    assert found is not None
    assert (found.kind, found.bridge, found.flow_filter) == (
        "ovs-ofctl-dump-flows",
        "br-tun",
        "table=4",
    )
    # sos-style names split the match on `_` too; the filter is quoted as the name has it
    sos = recognise("ovs-ofctl_dump-flows_br-int_arp,in_port=1")
    assert sos is not None and (sos.bridge, sos.flow_filter) == ("br-int", "arp,in_port=1")
    # a bridge whose name holds `_` is still one bridge
    plain = recognise("ovs-ofctl_dump-flows_br_ex")
    assert plain is not None and (plain.bridge, plain.flow_filter) == ("br_ex", "")
    piped = recognise("ovs-ofctl show br-int | grep 3e399bf2-31")
    assert piped is not None and (piped.kind, piped.bridge) == ("ovs-ofctl-show", "br-int")
    # a grep-filtered device listing would pass for the whole: not read
    assert recognise("ip a | grep qvo") is None


def test_a_whole_dump_wins_over_a_filtered_one() -> None:
    snap = load(KOLLA)
    assert snap.ovs is not None
    assert {b.name for b in snap.ovs.bridges} == {"br-int", "br-ex", "br-tun"}
    br_tun = snap.ovs.bridge("br-tun")
    assert br_tun is not None and br_tun.flows is not None
    assert br_tun.flows.complete and len(br_tun.flows.flows) == 13


def test_a_filtered_dump_alone_is_an_incomplete_flow_table(tmp_path: Path) -> None:
    shutil.copy(KOLLA / "ovs-ofctl dump-flows br-tun table=4", tmp_path)
    snap = load(tmp_path)
    assert snap.ovs is not None
    br_tun = snap.ovs.bridge("br-tun")
    assert br_tun is not None and br_tun.flows is not None
    assert br_tun.flows.tables == (4,)
    assert not br_tun.flows.complete
    assert "table=4" in br_tun.flows.incomplete_reason
    (gap,) = [m for m in snap.missing if m.what == "ovs-ofctl-dump-flows"]
    assert (gap.bridge, gap.command) == ("br-tun", "ovs-ofctl dump-flows br-tun")
    assert gap.reason.startswith("incomplete")
    assert any("br-tun flows are incomplete" in n for n in snap.notes)


# -- 2. elided dumps ----------------------------------------------------------------------


def test_an_elided_dump_is_incomplete_and_not_an_error() -> None:
    snap = load(YOGA)
    assert snap.ovs is not None
    br_int, br_tun = snap.ovs.bridge("br-int"), snap.ovs.bridge("br-tun")
    assert br_int is not None and br_int.flows is not None
    # "(...)" on line 1 of `ovs-ofctl dump-flows br-int`
    assert not br_int.flows.complete
    assert "line 1" in br_int.flows.incomplete_reason
    assert br_tun is not None and br_tun.flows is not None and br_tun.flows.complete
    assert not [
        d
        for d in snap.diagnostics
        if "dump-flows br-int" in str(d) and d.severity is Severity.ERROR
    ]
    gap = next(m for m in snap.missing if m.what == "ovs-ofctl-dump-flows")
    assert gap.bridge == "br-int"


@pytest.mark.parametrize("marker", ["(...)", "...", "…", "[...]", "<snip>"])
def test_every_elision_marker_makes_a_dump_incomplete(marker: str) -> None:
    text = (
        " cookie=0x0, duration=1.0s, table=0, n_packets=0, n_bytes=0, priority=1 actions=NORMAL\n"
        f"{marker}\n"
    )
    dump = parse_ovs_ofctl_dump_flows(text, source="f")
    assert len(dump.flows) == 1 and not dump.complete and "line 2" in dump.incomplete_reason


def test_a_dump_without_elision_is_complete() -> None:
    text = " cookie=0x0, table=0, priority=1 actions=NORMAL\n"
    assert parse_ovs_ofctl_dump_flows(text, source="f").complete


# -- 3. namespaces only `ip netns` lists --------------------------------------------------


def test_a_namespace_only_ip_netns_lists_is_kept_with_its_outputs_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = load(KOLLA)
    assert QDHCP in snap.topology.namespaces
    assert snap.namespace(QDHCP) is not None
    gap = next(m for m in snap.missing if m.netns == QDHCP and m.what == "ip-link")
    assert f"ip netns exec {QDHCP} ip" in str(gap)
    doc = _show_json(capsys, KOLLA)
    assert QDHCP in {n["name"] for n in doc["namespaces"]}
    commands = [m["command"] for m in doc["missing"] if m["namespace"] == QDHCP]
    assert f"ip netns exec {QDHCP} iptables-save" in commands


def test_an_elided_ip_netns_line_is_not_a_namespace() -> None:
    ids = parse_ip_netns_text((CARACAL_CONTROLLER / "ip netns").read_text(), source="ip netns")
    assert [n.name for n in ids] == ["qrouter-e6efd80e-9468-4787-a6f8-1648486cc1d6"]


# -- 4. veths of `ip address` without -d --------------------------------------------------


def test_rfp_and_fpr_are_one_veth_across_namespaces() -> None:
    topo = load(HOTSOS).topology
    rfp = topo.interface("rfp-984c22fd-6", QROUTER)
    fpr = topo.interface("fpr-984c22fd-6", FIP)
    assert rfp is not None and fpr is not None
    assert rfp.kind is LinkKind.VETH and rfp.veth is not None
    assert "@if2" in rfp.veth.derived and "link-netns" in rfp.veth.derived
    assert topo.veth_peer(rfp) == fpr and topo.veth_peer(fpr) == rfp
    # fg- (no @ifN) stays what ip said: an ether device
    fg = topo.interface("fg-c8dcce74-c4", FIP)
    assert fg is not None and fg.kind is not LinkKind.VETH


def test_a_veth_known_by_netnsid_only_finds_its_peer_from_the_other_end(tmp_path: Path) -> None:
    (tmp_path / "ip netns").write_text("fip-1\nqrouter-1\n")
    ns = tmp_path / "namespaces"
    (ns / "qrouter-1").mkdir(parents=True)
    (ns / "fip-1").mkdir()
    (ns / "qrouter-1" / "ip_address_show").write_text(
        "2: rfp-1@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n"
        "    link/ether be:18:38:f7:b6:52 brd ff:ff:ff:ff:ff:ff link-netns fip-1\n"
    )
    (ns / "fip-1" / "ip_address_show").write_text(
        "3: fpr-1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n"
        "    link/ether 12:0e:b9:fe:c0:22 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n"
    )
    topo = load(tmp_path).topology
    fpr = topo.interface("fpr-1", "fip-1")
    assert fpr is not None and fpr.veth is not None
    assert fpr.veth.peer_netns == "qrouter-1" and "matched by ifindex" in fpr.veth.derived
    peer = topo.veth_peer(fpr)
    assert peer is not None and peer.name == "rfp-1"


def test_ip_d_details_replace_a_derived_veth() -> None:
    text = (
        "2: rfp-1@if3: <UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n"
        "    link/ether be:18:38:f7:b6:52 brd ff:ff:ff:ff:ff:ff link-netns fip-1\n"
        "    veth\n"
    )
    (iface,) = parse_ip_link_text(text, source="ip -d link")
    assert iface.veth is not None and iface.veth.derived == ""


# -- 5. a snap's command aliases ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("openstack-hypervisor.ovs-vsctl_-t_5_show", "ovs-vsctl-show"),
        ("microovn.ovs-ofctl_dump-flows_br-int", "ovs-ofctl-dump-flows"),
        ("openstack-hypervisor.ovs-appctl_fdb.show_br-int", "ovs-appctl-fdb-show"),
    ],
)
def test_a_snap_alias_is_its_command(name: str, kind: str) -> None:
    found = recognise(name)
    assert found is not None and found.kind == kind


def test_an_error_output_falls_back_to_another_spelling(tmp_path: Path) -> None:
    """Sunbeam's plain dump of br-ex holds only ovs-ofctl's error. Put that error in place of
    the preferred OpenFlow 1.3 dump: the flows come from the next spelling, OpenFlow 1.5, and
    the note says why."""
    copy = tmp_path / "sunbeam"
    shutil.copytree(SUNBEAM, copy, symlinks=True)
    ovs = copy / "sos_commands" / "openvswitch"
    error = (ovs / "openstack-hypervisor.ovs-ofctl_dump-flows_br-ex").read_text()
    (ovs / "openstack-hypervisor.ovs-ofctl_-O_OpenFlow13_dump-flows_br-ex").write_text(error)
    snap = load(copy)
    assert snap.ovs is not None
    br_ex = snap.ovs.bridge("br-ex")
    assert br_ex is not None and br_ex.flows is not None
    assert br_ex.flows.source.endswith(
        "openstack-hypervisor.ovs-ofctl_-O_OpenFlow15_dump-flows_br-ex"
    )
    assert any("holds only an error" in n for n in snap.notes)


# -- 6. Open vSwitch evident but not captured ---------------------------------------------


def test_a_node_running_ovs_without_its_outputs_names_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = load(PARTIAL)
    assert snap.ovs is None
    assert snap.ovs_evidence.endswith("ovs-appctl_dpctl.show_-s_system_ovs-system")
    assert snap.ovs_bridge_names == ("br-data", "br-ex", "br-int", "br-tun")
    commands = {m.command for m in snap.missing}
    assert {"ovs-vsctl show", "ovs-ofctl dump-flows br-int"} <= commands
    # dpctl/show: "port 9: fg-7450b342-b1 (internal)"
    fg = snap.topology.interface("fg-7450b342-b1", "fip-7553f34c-b718-4a4b-8bbd-2d7a1cd5cf62")
    assert fg is not None and fg.kind is LinkKind.OPENVSWITCH
    assert main(["show", str(PARTIAL)]) == 0
    out = capsys.readouterr().out
    assert "Open vSwitch: not in the snapshot" not in out
    assert "Open vSwitch: runs on this node" in out
    assert "bridges (ovs-vsctl list-br): br-data, br-ex, br-int, br-tun" in out
    assert "(collect with `ovs-ofctl dump-flows br-int`)" in out


def test_a_node_without_any_sign_of_ovs_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    node = REAL / "fuel-mitaka-dvr-compute"
    assert load(node).ovs_evidence == ""
    assert main(["show", str(node)]) == 0
    assert "Open vSwitch: not in the snapshot" in capsys.readouterr().out


# -- 7. the kernel from hostnamectl --------------------------------------------------------


def test_the_kernel_comes_from_hostnamectl_when_there_is_no_uname(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snap = load(SUNBEAM)
    assert snap.kernel == "6.8.0-59-generic"
    assert snap.kernel_source.endswith("sos_commands/host/hostnamectl_status: Kernel")
    doc = _show_json(capsys, SUNBEAM)
    assert "hostnamectl_status" in doc["node"]["sources"]["kernel"]


# -- 8. show prints how the snapshot was read ----------------------------------------------


def test_show_prints_the_snapshot_notes(capsys: pytest.CaptureFixture[str]) -> None:
    snap = load(YOGA)
    assert snap.notes
    assert main(["show", str(YOGA)]) == 0
    out = capsys.readouterr().out
    assert "How the snapshot was read" in out
    assert all(f"  {n}" in out for n in snap.notes)
    doc = _show_json(capsys, YOGA)
    assert doc["snapshot_notes"] == list(snap.notes)


# -- 10. the backend of a ruleset rebuilt from listings ------------------------------------


def _listing_only(tmp_path: Path) -> Path:
    shutil.copy(HOTSOS / "sos_commands/firewall_tables/iptables_-vnxL", tmp_path / "iptables -vnxL")
    return tmp_path


@pytest.mark.parametrize(
    ("version", "backend"),
    [
        ("iptables v1.8.4 (nf_tables)\n", Backend.NFT),
        ("iptables v1.8.4 (legacy)\n", Backend.LEGACY),
    ],
)
def test_the_backend_of_a_listing_comes_from_iptables_version(
    tmp_path: Path, version: str, backend: Backend
) -> None:
    node = _listing_only(tmp_path)
    (node / "iptables -V").write_text(version)
    snap = load(node)
    assert snap.main.iptables is not None and snap.main.iptables.backend is backend
    assert snap.iptables_backend is backend


def test_a_listing_without_version_has_an_unknown_backend_and_show_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = _listing_only(tmp_path)
    snap = load(node)
    assert snap.main.iptables is not None and snap.main.iptables.backend is Backend.UNKNOWN
    assert main(["show", str(node)]) == 0
    assert "iptables backend: not in the snapshot" in capsys.readouterr().out


# -- what only some nodes give: datapath ports, single OVSDB records -----------------------


def test_dpctl_show_lists_the_datapath_ports_with_their_types() -> None:
    path = PARTIAL / "sos_commands/openvswitch/ovs-appctl_dpctl.show_-s_system_ovs-system"
    ports = parse_ovs_appctl_dpctl_show(path.read_text(), source=str(path))
    by_name = {p.name: (p.number, p.type) for p in ports}
    assert by_name["fg-7450b342-b1"] == (9, "internal")
    assert by_name["vxlan_sys_4789"] == (1, "vxlan")
    assert by_name["tap1d798b14-c4"] == (13, "system")  # no type printed: a system port
    assert {p.datapath for p in ports} == {"system@ovs-system"}


def test_a_single_port_record_gives_the_tag_show_does_not() -> None:
    found = recognise("ovs-vsctl list port qvo3e399bf2-31 | grep tag")
    assert found is not None and (found.kind, found.bridge) == (
        "ovs-vsctl-record-port",
        "qvo3e399bf2-31",
    )
    snap = load(REAL / "devstack-2022-hybrid-compute")
    (record,) = snap.ovsdb_records
    assert (record.table, record.name, record.row.get("tag")) == ("Port", "qvo3e399bf2-31", 2)


def test_an_elided_device_listing_keeps_the_devices_around_the_cut() -> None:
    text = (
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n"
        "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
        "...\n"
        "    link/ether fa:16:3e:00:00:01 brd ff:ff:ff:ff:ff:ff\n"
        "9: tap1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN\n"
        "    link/ether fe:16:3e:00:00:02 brd ff:ff:ff:ff:ff:ff\n"
    )
    sink = DiagnosticSink()
    lo, tap = parse_ip_link_text(text, source="ip link", sink=sink)
    # the orphan link/ether line after the cut belongs to a device whose header was cut
    assert (lo.name, lo.mac, tap.name, tap.mac) == (
        "lo",
        "00:00:00:00:00:00",
        "tap1",
        "fe:16:3e:00:00:02",
    )
    assert [d.severity for d in sink.items] == [Severity.WARNING]


def test_the_collection_time_is_dates_output_not_timedatectls_label() -> None:
    # The top-level `date` of this report links to timedatectl ("Local time: Thu 2022-02-10
    # 16:19:48 UTC"); sos_commands/date/date holds date's own output.
    snap = load(HOTSOS)
    assert snap.collected_at == "Thu Feb 10 16:19:17 UTC 2022"
