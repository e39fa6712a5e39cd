"""Bundles, sosreports and plain folders load into the same snapshot; archives are read without
ever touching a path outside them."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import SourceKind
from nodetrace.model.topology import LinkKind
from nodetrace.snapshot import collect as collector
from nodetrace.snapshot.commands import KNOWN_KINDS, recognise
from nodetrace.snapshot.load import load
from tests.conftest import DATA

SNAP = DATA / "snapshot"
BUNDLE = SNAP / "bundle-mini"
SOS = SNAP / "sos-mini"
TAP = "tap3b1f6a2c-8d"


def test_bundle_loads_with_its_manifest_facts() -> None:
    snap = load(BUNDLE)
    assert snap.source_kind is SourceKind.BUNDLE
    assert (snap.host, snap.kernel, snap.iptables_backend) == ("vm", "6.18.44-fc-v669", Backend.NFT)
    # The default (nft) backend is empty; the node's rules live in the legacy tables.
    rules = snap.main.iptables
    assert rules is not None and rules.backend is Backend.LEGACY
    assert rules.chain("raw", "neutron-openvswi-PREROUTING") is not None
    assert snap.main.ipsets is not None and snap.main.ipsets.get("NIPv4sg1") is not None
    tap = snap.topology.interface(TAP)
    assert tap is not None and tap.veth is not None and tap.veth.peer_netns == "snpva1315b"
    assert [str(m) for m in snap.missing] == [
        "bridge-vlan: failed: RTNETLINK answers: Operation not supported"
    ]
    flows = snap.raw_outputs("ovs-ofctl-dump-flows", bridge="br-tun")
    assert len(flows) == 1 and "tun_id=0x64" in flows[0].text
    assert not snap.diagnostics


def test_sosreport_loads_from_sos_file_names() -> None:
    snap = load(SOS)
    assert snap.source_kind is SourceKind.SOSREPORT
    assert (snap.host, snap.kernel) == ("compute-lab", "6.18.44-fc-v669")
    assert snap.main.iptables is not None and snap.main.iptables.backend is Backend.LEGACY
    assert snap.main.ipsets is not None and snap.main.ipsets.get("NIPv4sg1") is not None
    assert snap.main.sysctls.bridge_nf_call(snap.main.iptables.family) is True
    # The -O OpenFlow13 dump (actions spelled as ofproto/trace prints them) is preferred over
    # the plain OpenFlow 1.0 copy.
    flows = snap.raw_outputs("ovs-ofctl-dump-flows", bridge="br-tun")
    assert len(flows) == 1 and flows[0].text.startswith("OFPST_FLOW reply (OF1.3)")
    assert {r.bridge for r in snap.raw_outputs("ovs-appctl-fdb-show")} == {
        "br-int",
        "br-tun",
        "br-phys",
    }
    assert not snap.diagnostics, [str(d) for d in snap.diagnostics]


def test_bundle_and_sosreport_of_the_same_node_agree_on_its_devices() -> None:
    def shape(path: Path) -> set[tuple[str, LinkKind, str | None]]:
        return {(i.name, i.kind, i.master) for i in load(path).topology.interfaces}

    assert shape(BUNDLE) == shape(SOS)


def test_bundle_archive_reads_like_the_folder(tmp_path: Path) -> None:
    archive = tmp_path / "node.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(BUNDLE, arcname="node")
    a, f = load(archive), load(BUNDLE)
    assert a.topology.interfaces == f.topology.interfaces
    assert a.main.iptables is not None and f.main.iptables is not None
    assert [r.text for r in a.main.iptables.rules()] == [r.text for r in f.main.iptables.rules()]


def test_userspace_conntrack_table_reaches_the_switch(tmp_path: Path) -> None:
    """A folder with ``ovs-appctl dpctl/dump-conntrack`` gives the OpenFlow engine its
    connections, so ``ct()`` recirculations need not assume ``trk|new``."""
    host = BUNDLE / "host"
    shutil.copy(host / "ovs-ofctl-dump-flows.br-tun.txt", tmp_path / "ovs-ofctl dump-flows br-tun")
    shutil.copy(
        DATA / "openflow" / "samples-ovs-dpctl-dump-conntrack.txt",
        tmp_path / "ovs-appctl dpctl/dump-conntrack".replace("/", "_"),
    )
    snap = load(tmp_path)
    assert snap.ovs is not None and snap.ovs.conntrack is not None
    entries = snap.ovs.conntrack.entries
    assert len(entries) == 1 and entries[0].zone == 1


def test_plain_folder_of_command_outputs(tmp_path: Path) -> None:
    host = BUNDLE / "host"
    (tmp_path / "netns" / "qrouter-1").mkdir(parents=True)
    shutil.copy(host / "iptables-legacy-save.txt", tmp_path / "iptables-save")
    shutil.copy(host / "ip-link.json", tmp_path / "ip -d -j link show.json")
    shutil.copy(host / "ovs-ofctl-dump-flows.br-tun.txt", tmp_path / "ovs-ofctl dump-flows br-tun")
    shutil.copy(host / "sysctl.txt", tmp_path / "netns" / "qrouter-1" / "sysctl_-a")
    (tmp_path / "notes.txt").write_text("not a command output\n")
    snap = load(tmp_path)
    assert snap.source_kind is SourceKind.FOLDER
    assert snap.main.iptables is not None and any(True for _ in snap.main.iptables.rules())
    assert snap.topology.interface(TAP) is not None
    assert snap.raw_outputs("ovs-ofctl-dump-flows", bridge="br-tun")
    router = snap.namespace("qrouter-1")
    assert router is not None and router.sysctls.bridge_nf_call(Family.IPV4) is True
    assert {m.what for m in snap.missing} >= {"ipset-save", "ip-route", "ovs-vsctl-list-bridge"}


def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


def test_archive_attacks_are_skipped_and_reported(tmp_path: Path) -> None:
    secret = tmp_path / "outside-rules"
    secret.write_text((BUNDLE / "host" / "iptables-legacy-save.txt").read_text())
    ruleset = (BUNDLE / "host" / "iptables-legacy-save.txt").read_bytes()
    device = tarfile.TarInfo("sos/sos_commands/networking/ipset_save")
    device.type = tarfile.CHRTYPE
    archive = _tar_with(
        tmp_path / "evil.tar.gz",
        [
            _file("sos/sos_commands/networking/ip_-d_address", b""),
            _file("../escape/iptables-save", ruleset),
            _file("/abs/iptables-save", ruleset),
            _file("sos/sos_commands/networking/../../../iptables-save", ruleset),
            _link("sos/sos_commands/networking/iptables-save", str(secret)),
            _link("sos/sos_commands/firewall_tables/iptables-save", "../../../../outside-rules"),
            _link("sos/sos_commands/networking/ip6tables-save", "/etc/passwd", hard=True),
            (device, None),
            _file("sos/sos_commands/kernel/sysctl_-a", b"net.ipv4.ip_forward = 1\n"),
            _link("sos/sos_commands/networking/namespaces/x/ip_netns_exec_x_sysctl_-a",
                  "../../../kernel/sysctl_-a"),
        ],
    )  # fmt: skip
    before = set(tmp_path.rglob("*"))
    snap = load(archive)
    assert set(tmp_path.rglob("*")) == before  # nothing written anywhere
    assert snap.main.iptables is None  # no rule reached us through any escape
    messages = "\n".join(str(d) for d in snap.diagnostics)
    for name in ("../escape/iptables-save", "/abs/iptables-save", "ipset_save"):
        assert name in messages, name
    assert messages.count("leaves the archive") >= 5
    # A link that stays inside the archive is followed.
    inside = snap.namespace("x")
    assert inside is not None and inside.sysctls.get("net.ipv4.ip_forward") == "1"


def test_folder_symlink_out_of_the_snapshot_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    shutil.copy(BUNDLE / "host" / "iptables-legacy-save.txt", outside)
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "iptables-save").symlink_to(outside)
    (folder / "ip-link.json").symlink_to(BUNDLE / "host" / "ip-link.json")
    snap = load(folder)
    assert snap.main.iptables is None
    assert snap.topology.interfaces == ()
    assert sum("leads outside" in str(d) for d in snap.diagnostics) == 2


def test_broken_or_newer_manifest_falls_back_to_reading_file_names(tmp_path: Path) -> None:
    shutil.copytree(BUNDLE, tmp_path / "b")
    manifest = tmp_path / "b" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["version"] = 99
    manifest.write_text(json.dumps(doc))
    snap = load(tmp_path / "b")
    assert snap.source_kind is SourceKind.FOLDER
    assert any("version 99 is not supported" in str(d) for d in snap.diagnostics)
    assert snap.topology.interface(TAP) is not None  # host/ip-link.json by its bundle name


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    from nodetrace.errors import InputError

    with pytest.raises(InputError, match="no such file or folder"):
        load(tmp_path / "nope")
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(InputError, match="not a readable archive"):
        load(tmp_path / "junk.tar.gz")


def test_unreadable_sources_are_named_in_one_line(tmp_path: Path) -> None:
    from nodetrace.errors import InputError

    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(InputError) as bad:
        load(tmp_path / "junk.tar.gz")
    assert str(bad.value) == (
        f"{tmp_path / 'junk.tar.gz'}: not a readable archive (not a tar archive, plain or "
        "compressed)"
    )
    with pytest.raises(InputError) as device:
        load("/dev/null")
    assert str(device.value) == "/dev/null: not a file or folder (a device, fifo or socket)"


@pytest.mark.parametrize(
    ("name", "netns", "kind", "bridge"),
    [
        ("ip_-d_address", None, "ip-addr", None),
        ("ip_-s_-d_link", None, "ip-link", None),
        ("ip_route_show_table_all", None, "ip-route", None),
        ("ip_-6_route_show_table_all", None, "ip6-route", None),
        ("ip_-4_rule_list", None, "ip-rule", None),
        ("ip_-s_-s_neigh_show", None, "ip-neigh", None),
        ("bridge_-s_-s_-d_-t_fdb_show", None, "bridge-fdb", None),
        ("ovs-vsctl_-t_5_show", None, "ovs-vsctl-show", None),
        ("ovs-vsctl_-t_5_list_bridge", None, "ovs-vsctl-list-bridge", None),
        ("ovs-ofctl_-O_OpenFlow13_dump-flows_br-int", None, "ovs-ofctl-dump-flows", "br-int"),
        ("ovs-appctl_fdb.show_br_ex", None, "ovs-appctl-fdb-show", "br_ex"),
        ("ip_netns_exec_qrouter-1_2_iptables-save", "qrouter-1_2", "iptables-save", None),
        ("ip netns exec qdhcp-9 ip -d -j addr show.json", None, "ip-addr", None),
        ("ovs-ofctl-dump-flows.br-int.txt", None, "ovs-ofctl-dump-flows", "br-int"),
        ("conntrack -L -f ipv6", None, "conntrack-ipv6", None),
        ("ovs-appctl_dpctl.dump-conntrack_-m", None, "ovs-appctl-dpctl-dump-conntrack", None),
        ("iptables_-vnxL", None, "iptables-list-filter", None),
        ("iptables_-t_nat_-nvL", None, "iptables-list-nat", None),
        ("ip6tables_-t_raw_-nvL", None, "ip6tables-list-raw", None),
        ("iptables -L -n -v --line-numbers", None, "iptables-list-filter", None),
        ("ip_netns_exec_qrouter-1_iptables_-t_mangle_-nvL", None, "iptables-list-mangle", None),
        ("brctl_show", None, "brctl-show", None),
        (
            "ovs-appctl_bridge.dump-flows_--offload-stats_br-int",
            None,
            "ovs-appctl-bridge-dump-flows",
            "br-int",
        ),
        ("ovs-ofctl_dump-ports-desc_br-tun", None, "ovs-ofctl-show", "br-tun"),
        ("ovs-appctl_ovs.route.show", None, "ovs-appctl-ovs-route-show", None),
        ("ovs-appctl_tnl.arp.show", None, "ovs-appctl-tnl-neigh-show", None),
        ("ovs-appctl tnl/neigh/show", None, "ovs-appctl-tnl-neigh-show", None),
    ],
)
def test_file_names_are_recognised(
    name: str, netns: str | None, kind: str, bridge: str | None
) -> None:
    found = recognise(name, netns=netns)
    assert found is not None
    assert (found.kind, found.bridge) == (kind, bridge)


@pytest.mark.parametrize(
    "name",
    [
        "ip_-o_link",
        "ip_-d_route_show_cache",
        "ip_-4_addr",
        "bridge_-s_-s_-d_-t_mdb_show",
        "x",
        # Without -n the listing prints host and service names that cannot be read back; a
        # single chain is not the table.
        "iptables_-L",
        "iptables_-nvL_INPUT",
        "ovs-appctl_-t_ovs-monitor-ipsec_tunnels.show",
    ],
)
def test_outputs_that_would_mislead_are_not_recognised(name: str) -> None:
    assert recognise(name) is None


def test_every_collected_kind_has_a_reader() -> None:
    opts = collector.Options(conntrack_max=1)
    kinds = {s.kind for s in collector.linux_specs(opts) + collector.ovs_specs(opts)}
    kinds |= {s.kind for s in collector.bridge_specs(opts, "br-int")}
    assert kinds <= KNOWN_KINDS, kinds - KNOWN_KINDS


def test_sosreport_archive_reads_like_its_folder(tmp_path: Path) -> None:
    archive = tmp_path / "sosreport-compute-lab-2026.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(SOS, arcname="sosreport-compute-lab-2026")
    a, f = load(archive), load(SOS)
    assert a.source_kind is SourceKind.SOSREPORT
    assert a.topology.interfaces == f.topology.interfaces
    assert a.host == f.host and not a.diagnostics


LISTINGS = DATA / "iptables" / "listings"


def _sos_with_listings(root: Path) -> Path:
    fw = root / "sos_commands" / "firewall_tables"
    fw.mkdir(parents=True)
    for table in ("raw", "filter"):
        shutil.copy(
            LISTINGS / f"compute-node.nft.iptables_-t_{table}_-nvL",
            fw / f"iptables_-t_{table}_-nvL",
        )
    # The all-tables listing is the filter table again; the richer of the two is read.
    shutil.copy(LISTINGS / "compute-node.nft.iptables_-t_filter_-nvL", fw / "iptables_-vnxL")
    return root


def test_sosreport_without_save_rebuilds_the_ruleset_from_listings(tmp_path: Path) -> None:
    snap = load(_sos_with_listings(tmp_path))
    ruleset = snap.main.iptables
    assert ruleset is not None and set(ruleset.tables) == {"raw", "filter"}
    # Rules per chain as the listing shows them (counted in the file).
    listing = (LISTINGS / "compute-node.nft.iptables_-t_filter_-nvL").read_text()
    chains = listing.split("\n\nChain ")
    expected = {
        block.split()[1 if block.startswith("Chain") else 0]: len(block.strip().splitlines()) - 2
        for block in chains
    }
    assert {n: len(c.rules) for n, c in ruleset.tables["filter"].chains.items()} == expected
    save = snap.missing_of("iptables-save")
    assert save is not None and "rebuilt from `-L` listings" in save.reason
    assert save.command == "iptables-save"
    unlisted = {m.what for m in snap.missing if m.what.startswith("iptables-list-")}
    assert unlisted == {"iptables-list-nat", "iptables-list-mangle"}
    assert any("treated as empty" in n and "rebuilt from an `iptables -L`" in n for n in snap.notes)


def test_brctl_show_gives_the_bridges_ip_link_without_d_does_not(tmp_path: Path) -> None:
    folder = SNAP / "newton-like"
    without = tmp_path / "only-ip-link"
    without.mkdir()
    shutil.copy(folder / "ip_link", without / "ip_link")
    assert load(without).topology.linux_bridges() == ()
    snap = load(folder)
    bridges = {b.name for b in snap.topology.linux_bridges()}
    assert bridges == {"qbr3b1f6a2c-8d", "qbrempty"}
    ports = {i.name for i in snap.topology.ports_of("qbr3b1f6a2c-8d")}
    assert ports == {"qvb3b1f6a2c-8d", "tap3b1f6a2c-8d"}
    assert all(i.is_linux_bridge_port for i in snap.topology.ports_of("qbr3b1f6a2c-8d"))
    assert snap.topology.ports_of("qbrempty") == ()
    assert any("brctl show" in n for n in snap.notes)


def test_brctl_show_alone_names_devices_it_only_knows_by_name(tmp_path: Path) -> None:
    shutil.copy(SNAP / "insights-brctl-show-tabs.txt", tmp_path / "brctl show")
    snap = load(tmp_path)
    assert {b.name for b in snap.topology.linux_bridges()} == {"br0", "virbr9"}
    assert [i.name for i in snap.topology.ports_of("br0")] == ["em1", "vnet0", "vnet1"]
    assert any("only their name and bridge are known" in n for n in snap.notes)


def test_sos_top_level_files_holding_their_target_path(tmp_path: Path) -> None:
    # hotsos keeps sos's top-level symlinks as files holding the target's path.
    shutil.copytree(SOS, tmp_path / "sos")
    root = tmp_path / "sos"
    (root / "hostname").write_text("sos_commands/host/hostname")
    (root / "sos_commands" / "host").mkdir()
    (root / "sos_commands" / "host" / "hostname").write_text("compute4\n")
    assert load(root).host == "compute4"


HOTSOS_OVS = SNAP / "hotsos-ovs"


def test_appctl_flows_are_read_only_without_dump_flows(tmp_path: Path) -> None:
    ovs = tmp_path / "sos_commands" / "openvswitch"
    ovs.mkdir(parents=True)
    appctl = "ovs-appctl_bridge.dump-flows_--offload-stats_br-tun"
    shutil.copy(HOTSOS_OVS / appctl, ovs / appctl)
    shutil.copy(HOTSOS_OVS / "ovs-ofctl_dump-ports-desc_br-tun", ovs)
    snap = load(tmp_path)
    assert snap.ovs is not None
    bridge = snap.ovs.bridge("br-tun")
    assert bridge is not None and bridge.flows is not None
    flows = bridge.flows.flows
    # 43 lines, four of them the hidden table-254 flows ofctl does not show.
    assert len(flows) == 43 and sum(1 for f in flows if f.table == 254) == 4
    assert any("hidden" in n and appctl in n for n in snap.notes)
    assert any("dump-ports-desc" in n for n in snap.notes)
    shutil.copy(HOTSOS_OVS / "ovs-ofctl_dump-flows_br-tun", ovs)
    both = load(tmp_path)
    tun = both.ovs.bridge("br-tun") if both.ovs is not None else None
    assert tun is not None and tun.flows is not None and len(tun.flows.flows) == 39
    assert not any("hidden" in n for n in both.notes)


def test_missing_outputs_name_the_command_that_collects_them() -> None:
    snap = load(SOS)
    for m in snap.missing:
        if m.reason == "not in the snapshot":
            assert m.command, m
    assert all("collect with" in str(m) for m in snap.missing if m.command)


def test_folder_with_no_known_output_lists_the_expected_names(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    snap = load(tmp_path)
    text = " ".join(str(d) for d in snap.diagnostics)
    assert "iptables-save" in text and "ovs-ofctl_dump-flows_br-int" in text


def test_proc_sys_files_stand_in_for_a_missing_sysctl(tmp_path: Path) -> None:
    root = tmp_path / "sos"
    (root / "sos_commands" / "networking").mkdir(parents=True)
    shutil.copy(
        SOS / "sos_commands" / "networking" / "ip_-s_-d_link", root / "sos_commands" / "networking"
    )
    conf = root / "proc" / "sys" / "net" / "ipv4" / "conf"
    (conf / "eth0.100").mkdir(parents=True)
    (conf / "eth0.100" / "rp_filter").write_text("2\n")
    (root / "proc" / "sys" / "net" / "ipv4" / "ip_forward").write_text("1\n")
    snap = load(root)
    assert snap.main.sysctls.rp_filter("eth0.100") == 2
    assert snap.main.sysctls.flag("net.ipv4.ip_forward") is True
    assert snap.missing_of("sysctl") is None
    assert any("proc/sys/net" in n for n in snap.notes)


def test_ip_address_without_d_takes_kinds_from_ip_d_link(tmp_path: Path) -> None:
    sos = SNAP / "addr-without-d"
    snap = load(sos)
    bridge = snap.topology.interface("qbr3b1f6a2c-8d")
    assert bridge is not None and bridge.kind is LinkKind.BRIDGE
    assert [str(a.interface) for a in bridge.addresses] == ["10.0.0.5/24"]
    qvb = snap.topology.interface("qvb3b1f6a2c-8d")
    assert qvb is not None and qvb.kind is LinkKind.VETH and qvb.is_linux_bridge_port
    assert qvb.veth is not None and qvb.veth.peer == "qvo3b1f6a2c-8d"
    # Without the -d listing nothing says what the device is: its kind is unknown, not a NIC.
    alone = tmp_path / "sos_commands" / "networking"
    alone.mkdir(parents=True)
    shutil.copy(sos / "sos_commands" / "networking" / "ip_address", alone)
    plain = load(tmp_path).topology.interface("qbr3b1f6a2c-8d")
    assert plain is not None and plain.kind is LinkKind.UNKNOWN


def test_ip_o_addr_gives_addresses_to_the_devices_of_ip_link() -> None:
    snap = load(SNAP / "addr-oneline")
    bridge = snap.topology.interface("qbr3b1f6a2c-8d")
    assert bridge is not None
    assert [(str(a.interface), a.scope) for a in bridge.addresses[:2]] == [
        ("10.0.0.5/24", "global"),
        ("fd00::5/64", "global"),
    ]
    assert bridge.addresses[2].ip.is_link_local and bridge.addresses[2].scope == "link"
    lo = snap.topology.interface("lo")
    assert lo is not None and [str(a.interface) for a in lo.addresses] == ["127.0.0.1/8", "::1/128"]
    assert not snap.diagnostics
