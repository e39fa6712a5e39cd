"""``nodetrace trace`` and ``nodetrace show`` on a real lab snapshot (tests/data/snapshot/
golden-cmp1, node cmp1 of tests/data/snapshot/golden.toml). The verdicts asserted here are the ones
the lab itself showed for the same packets (tests/lab/test_walk_golden.py proves them live)."""

from __future__ import annotations

import json
import shutil
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.engine.walk import FromInterface, WalkRequest, walk
from nodetrace.engine.walk_adapters import conntrack_state, engines_for
from nodetrace.errors import UsageError
from nodetrace.model.packet import Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Outcome, Trace
from nodetrace.snapshot.load import load
from tests.conftest import DATA

SNAP = DATA / "snapshot" / "golden-cmp1"
A, B = "bd978bef-1a3e-5d0f-adb8-919cbf6bd238", "a264014c-b643-5dec-bfbe-07d3eb573bd3"
SSH = "tcp,nw_src=10.30.0.10,nw_dst=10.30.0.11,tp_src=40000,tp_dst=22,tcp_flags=+syn"
PING = "icmp,nw_src=10.30.0.10,nw_dst=10.30.0.11,icmp_type=8,icmp_code=0"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["trace", str(SNAP), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_ssh_between_vms_of_one_node_is_delivered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--from-port", A, "--to-port", B, "--packet", SSH)
    assert code == 0
    assert "Verdict: DELIVERED" in out
    derived = next(line for line in out.splitlines() if line.startswith("  dl_src="))
    assert derived.split() == [
        "dl_src=fa:16:3e:10:94:fc", "derived:", "the", "MAC", "of", "port", f"{A}:", "OVSDB",
        "Interface", "qvobd978bef-1a", "external_ids:attached-mac",
    ]  # fmt: skip


def test_ports_alone_give_the_packet_their_addresses(capsys: pytest.CaptureFixture[str]) -> None:
    """Without nw_src/nw_dst the ports' addresses come from their anti-spoofing chains, said."""
    code, out, _ = _run(
        capsys, "--from-port", A, "--to-port", B, "--packet", "tcp,tp_dst=22,tcp_flags=+syn"
    )
    assert code == 0
    assert "Verdict: DELIVERED" in out
    lines = out.splitlines()
    src = next(line for line in lines if line.startswith("  nw_src="))
    dst = next(line for line in lines if line.startswith("  nw_dst="))
    assert src.startswith("  nw_src=10.30.0.10 ")
    assert f"derived: the address of port {A}: iptables chain neutron-openvswi-sbd978bef-1" in src
    assert dst.startswith("  nw_dst=10.30.0.11 ")
    assert f"derived: the address of port {B}: iptables chain neutron-openvswi-sa264014c-b" in dst


def test_ping_is_dropped_by_the_security_group_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "--from-port", A[:8], "--to-port", B[:8], "--packet", PING, "--format", "json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["outcome"] == "dropped"
    step = doc["steps"][doc["verdict_step"] - 1]  # numbered from 1, as the text shows
    assert step["type"] == "netfilter"
    assert (step["chain"], step["number"], step["physout"]) == (
        "neutron-openvswi-sg-fallback",
        1,
        "tapa264014c-b6",
    )


def test_kernel_format_prints_trace_lines_of_both_bridge_passes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(
        capsys, "--from-port", A, "--to-port", B, "--packet", SSH + ",ip_id=7", "--format", "kernel"
    )
    lines = out.splitlines()
    assert code == 0 and lines
    assert all(line.startswith("TRACE: ") and line.endswith(" ") for line in lines)
    assert any("PHYSIN=tapbd978bef-1a" in line for line in lines)  # a's qbr pass
    assert any("PHYSOUT=tapa264014c-b6" in line for line in lines)  # b's qbr pass


def test_ofproto_format_lists_the_openflow_tables(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "--from-port", A, "--to-port", B, "--packet", SSH, "--format", "ofproto"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == 'bridge("br-int")'
    assert " 25. in_port=2,dl_src=fa:16:3e:10:94:fc, priority 2, cookie 0x981c82819321c470" in lines
    assert " 60. priority 1, cookie 0x981c82819321c470" in lines
    assert lines[lines.index(" 60. priority 1, cookie 0x981c82819321c470") + 1] == "    NORMAL"


def test_to_port_alone_arrives_over_the_tunnel(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, "--to-port", A, "--packet", "icmp,dl_src=fa:16:3e:92:6d:18,nw_src=10.30.0.12,"
        "nw_dst=10.30.0.10,icmp_type=8",
    )  # fmt: skip
    assert code == 0
    assert "Verdict: DELIVERED" in out
    assert "arrives on vxlan-c0a83202 (from 192.168.50.2) with tun_id=0x40d" in out


def test_host_sends_to_the_other_node_through_ovs(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--from-host", "--packet", "icmp,nw_dst=192.168.50.2,icmp_type=8")
    assert code == 0
    assert "Verdict: DELIVERED: leaves the node through und0" in out
    assert "OUTPUT" in out and "POSTROUTING" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from-port", "deadbeef", "--packet", PING], "no port of this node has this UUID"),
        (["--from-port", "bd97", "--packet", PING], "at least 8 characters"),
        (["--from", "eth9", "--packet", PING], "no such device"),
        (["--from-port", A, "--packet", "icmp,nw_srcx=1"], "unknown flow field"),
        (["--packet", PING], "say where the packet starts"),
        (["--from-port", A, "--packet", PING, "--ct-state", "wobbly"], "--ct-state"),
    ],
    ids=["unknown-port", "short-prefix", "unknown-device", "bad-flow", "no-start", "bad-ct"],
)
def test_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and "Traceback" not in err


def test_ct_state_for_a_packet_without_addresses_is_an_assumption_not_a_crash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(
        capsys, "--from-port", A, "--packet", "tcp,tp_dst=22", "--ct-state", "est"
    )
    assert code == 0 and "Traceback" not in err
    assert (
        "conntrack state given: ESTABLISHED, but the packet has no IP addresses, so no "
        "connection can hold it" in out
    )


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("new", "NEW"),
        ("ESTABLISHED", "ESTABLISHED"),
        ("+trk+est", "ESTABLISHED"),
        ("rel", "RELATED"),
    ],
)
def test_ct_state_words(text: str, state: str) -> None:
    assert conntrack_state(text).value == state
    with pytest.raises(UsageError):
        conntrack_state("+trk+new+est")


def test_established_reply_passes_where_a_new_ping_is_dropped() -> None:
    snap = load(SNAP)
    packet = Packet(
        dl_src="fa:16:3e:10:94:fc", dl_dst="fa:16:3e:31:3f:2e", nw_src=ip("10.30.0.10"),
        nw_dst=ip("10.30.0.11"), nw_proto=1, icmp_type=8, icmp_code=0,
    )  # fmt: skip
    start = FromInterface("tapbd978bef-1a")
    new = walk(snap, WalkRequest(packet, start), engines_for(snap), switch=snap.ovs)
    est = walk(
        snap, WalkRequest(packet, start, ct_state="est"), engines_for(snap, ct_state="est"),
        switch=snap.ovs,
    )  # fmt: skip
    assert new.outcome is Outcome.DROPPED
    assert est.outcome is Outcome.DELIVERED


def ip(text: str) -> IPv4Address | IPv6Address:
    return ip_address(text)


def test_show_lists_bridges_vms_chains_and_flows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(SNAP)]) == 0
    out = capsys.readouterr().out
    assert "br-int (netdev datapath, fail_mode secure" in out
    assert f"  {A}  mac fa:16:3e:10:94:fc" in out
    assert "chains: neutron-openvswi-ibd978bef-1 (" in out
    assert "qbrbd978bef-1a: never learns (ageing_time 0): floods; iptables sees bridged IPv4" in out
    assert "vxlan-c0a83202     vxlan" in out and "gre-c0a83202       gre" in out
    assert main(["show", str(SNAP), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    vm = next(v for v in doc["ports"] if v["port_id"] == A)
    assert (vm["kind"], vm["zone"], vm["flows"]) == ("vm", 4099, 6)
    assert vm["chains"] == [
        "neutron-openvswi-ibd978bef-1",
        "neutron-openvswi-obd978bef-1",
        "neutron-openvswi-sbd978bef-1",
    ]
    # The OVS side as fields, not as a sentence to take apart.
    assert (vm["bridge"], vm["ovs_port"], vm["ofport"], vm["tag"]) == (
        "br-int", "qvobd978bef-1a", 2, 1,
    )  # fmt: skip
    assert (vm["mac"], vm["ips"], vm["network_type"], vm["segmentation_id"]) == (
        "fa:16:3e:10:94:fc", ["10.30.0.10", "fe80::f816:3eff:fe10:94fc"], "vxlan", 1037,
    )  # fmt: skip
    assert vm["sources"]["zone"].startswith("iptables raw neutron-openvswi-PREROUTING rule")
    br_int = next(b for b in doc["ovs_bridges"] if b["name"] == "br-int")
    assert (br_int["datapath_type"], br_int["fail_mode"]) == ("netdev", "secure")
    qvo = next(p for p in br_int["ports"] if p["name"] == "qvobd978bef-1a")
    assert (qvo["ofport"], qvo["tag"], qvo["type"]) == (2, 1, "system")


def test_show_of_a_native_firewall_node_gives_mac_addresses_zone_and_no_default_fail_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A real charm-deployed node (canonical/hotsos sosreport): the VM's MAC, IPs and zone come
    from OVSDB and the OVS firewall's flows; DHCP-less DVR router ports are not VMs."""
    snap = DATA / "snapshot" / "hotsos-ovsfw"
    assert main(["show", str(snap)]) == 0
    out = capsys.readouterr().out
    assert "VMs by Neutron port (1)" in out
    assert "  0e778df8-ca29-490b-8d54-e238b1e0be1c  mac fa:16:3e:a7:45:cb" in out
    assert "    addresses: 192.168.21.18, fe80::f816:3eff:fea7:45cb" in out
    assert "br-ex (system datapath, fail_mode not in the snapshot, 1 flows)" in out
    assert main(["show", str(snap), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["node"]["hostname"] == "compute4"
    vm = next(p for p in doc["ports"] if p["kind"] == "vm")
    assert (vm["tag"], vm["zone"], vm["firewall"]) == (3, 3, "openvswitch")
    assert vm["sources"]["ips"][0].startswith("br-int table 71 flow arp,reg5=0x9,in_port=9")
    assert sorted(p["kind"] for p in doc["ports"] if p["kind"] != "vm") == [
        "dvr_snat", "fip_gateway", "ha", "router_gateway", "router_interface", "router_link",
    ]  # fmt: skip
    # One entry for the DVR link, holding both of its ends.
    link = next(p for p in doc["ports"] if p["kind"] == "router_link")
    assert sorted(link["devices"]) == ["fpr-984c22fd-6", "rfp-984c22fd-6"]
    br_ex = next(b for b in doc["ovs_bridges"] if b["name"] == "br-ex")
    assert br_ex["fail_mode"] is None


def test_show_of_a_missing_snapshot_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["show", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_show_of_a_folder_with_no_known_output_says_nothing_is_usable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a command output\n")
    assert main(["show", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"nodetrace: error: nothing usable: {tmp_path} holds no known command output"
    )


def _copy(tmp_path: Path) -> Path:
    """A copy of the snapshot that a test may change."""
    dst = tmp_path / "snap"
    shutil.copytree(SNAP, dst)
    return dst


def _ping_from_a(
    snap: Snapshot, *, dl_dst: str = "fa:16:3e:31:3f:2e", nw_dst: str = "10.30.0.11"
) -> Trace:
    """The walk of a ping from VM a (10.30.0.10), to VM b unless told otherwise."""
    packet = Packet(
        dl_src="fa:16:3e:10:94:fc", dl_dst=dl_dst, nw_src=ip("10.30.0.10"), nw_dst=ip(nw_dst),
        nw_proto=1, icmp_type=8,
    )  # fmt: skip
    request = WalkRequest(packet, FromInterface("tapbd978bef-1a"))
    return walk(snap, request, engines_for(snap), switch=snap.ovs)


def _with_files(tmp_path: Path, **replacements: str) -> Path:
    dst = _copy(tmp_path)
    for name, text in replacements.items():
        (dst / "host" / name.replace("_", "-")).write_text(text)
    return dst


def test_br_netfilter_off_means_no_iptables_for_bridged_frames(tmp_path: Path) -> None:
    sysctl = (
        (SNAP / "host" / "sysctl.txt")
        .read_text()
        .replace("net.bridge.bridge-nf-call-iptables = 1", "net.bridge.bridge-nf-call-iptables = 0")
    )
    path = _with_files(tmp_path, **{"sysctl.txt": sysctl})
    snap = load(path)
    trace = _ping_from_a(snap)
    # Without br_netfilter the security group never sees the ping: it reaches b.
    assert trace.outcome is Outcome.DELIVERED
    assert not any(type(s).__name__ == "NetfilterStep" for s in trace.steps)
    assert any("br_netfilter is off" in getattr(s, "detail", "") for s in trace.steps)


def test_missing_ruleset_makes_the_answer_unknown_not_a_guess(tmp_path: Path) -> None:
    dst = _copy(tmp_path)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["commands"] = [c for c in manifest["commands"] if "iptables" not in c["kind"]]
    (dst / "manifest.json").write_text(json.dumps(manifest))
    snap = load(dst)
    trace = _ping_from_a(snap)
    assert trace.outcome is Outcome.UNKNOWN
    assert trace.reason == (
        "the packet crosses ipv4 netfilter, but the snapshot has no `iptables-save` output "
        "(not in the snapshot): collect it with `iptables-save`"
    )


def test_kernel_datapath_sends_the_outer_packet_through_the_host_stack(tmp_path: Path) -> None:
    """The same node with OVS's kernel datapath: the vport's tunnel device hands the outer UDP
    packet to the host, which routes it (OUTPUT, POSTROUTING with OUT=br-phys) and sends it
    into br-phys through its LOCAL port (compute-node.md §3.4). No lab can check this one:
    this machine's kernel has no openvswitch module, so it follows the reference."""
    dst = _copy(tmp_path)
    bridges = dst / "host" / "ovs-vsctl-list-bridge.json"
    bridges.write_text(bridges.read_text().replace('"netdev"', '"system"'))
    show = dst / "host" / "ovs-vsctl-show.txt"
    show.write_text(show.read_text().replace("datapath_type: netdev", "datapath_type: system"))
    snap = load(dst)
    trace = _ping_from_a(snap, dl_dst="fa:16:3e:92:6d:18", nw_dst="10.30.0.12")
    assert trace.outcome is Outcome.DELIVERED, trace.reason
    outer = [
        s for s in trace.steps
        if type(s).__name__ == "NetfilterStep" and getattr(s, "out_dev", "") == "br-phys"
    ]  # fmt: skip
    assert {s.hook.value for s in outer if s.hook} == {"OUTPUT", "POSTROUTING"}
    assert not any("native tunneling" in a for a in trace.assumptions)


def test_a_sosreport_traces_like_a_bundle_of_the_same_node() -> None:
    """sos-mini and bundle-mini are two captures of the same mini node (one by sosreport's
    commands, one by collect): the walk takes the same path through both."""
    from nodetrace.model.trace import NetfilterStep, OpenFlowStep

    def path(name: str) -> tuple[Outcome, list[tuple[str, ...]]]:
        snap = load(DATA / "snapshot" / name)
        packet = Packet(
            dl_src="fa:16:3e:4c:2a:11", dl_dst="fa:16:3e:00:00:13", nw_src=ip("10.10.0.11"),
            nw_dst=ip("10.10.0.13"), nw_proto=1, icmp_type=8,
        )  # fmt: skip
        t = walk(snap, WalkRequest(packet, FromInterface("tap3b1f6a2c-8d")), engines_for(snap),
                 switch=snap.ovs)  # fmt: skip
        steps = [
            (s.bridge, str(s.table)) if isinstance(s, OpenFlowStep)
            else (s.table, s.chain, str(s.number)) if isinstance(s, NetfilterStep)
            else (s.action.value, s.device)
            for s in t.steps
        ]  # fmt: skip
        return t.outcome, steps

    sos, bundle = path("sos-mini"), path("bundle-mini")
    # The flooded copies may come in another order (OVS port order differs between
    # `ovs-vsctl show` and the JSON tables); each copy takes the same path.
    assert sos[0] == bundle[0]
    assert sorted(sos[1]) == sorted(bundle[1])
    assert ("br-tun", "22") in sos[1] and ("br-phys", "0") in sos[1]
