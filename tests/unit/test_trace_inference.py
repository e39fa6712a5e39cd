"""``nodetrace trace`` completes the packet from the node and says how, field by field.

On the bundled two-node example (src/nodetrace/examples/two-nodes.README.md: web1 10.20.0.10
and db1 10.20.0.12 on cmp1, web2 10.20.0.11 and db2 10.20.0.13 on cmp2; db accepts TCP 5432 from
members of the web group) and the lab snapshot tests/data/snapshot/golden-cmp1. What is asserted
is what a user reads: the ``Flow:`` header with each field's origin, the verdict, what it rests
on, and the unknown that names the missing output.
"""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from nodetrace.cli import main
from tests.conftest import DATA

EXAMPLES = Path(__file__).parents[2] / "src" / "nodetrace" / "examples"
CMP1 = EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz"
WEB1, DB1 = "bf944fec-1eba-58c7-953e-5bdbb9270a27", "7eb6fb94-79bd-5c16-9f28-85c1a9a40e27"
GOLDEN = DATA / "snapshot" / "golden-cmp1"
SYN_5432 = "tcp,tp_dst=5432,tcp_flags=+syn"


def _trace(capsys: pytest.CaptureFixture[str], snap: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["trace", str(snap), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _origin(out: str, field: str) -> str:
    """The header line that says where ``field`` came from."""
    return next(line.strip() for line in out.splitlines() if line.startswith(f"  {field}="))


def _flow(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("Flow: "))


def _verdict(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("Verdict: "))


def _unpacked(tmp_path: Path, archive: Path, drop: tuple[str, ...] = ()) -> Path:
    """The archive's snapshot as a folder, without the command outputs named in ``drop``."""
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    root = next(p.parent for p in tmp_path.rglob("manifest.json"))
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["commands"] = [c for c in manifest["commands"] if c["kind"] not in drop]
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_arp_between_two_ports_is_filled_from_the_ports_and_reaches_the_vm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without arp_spa the OVS anti-spoofing table 24 dropped every ARP of the VM."""
    code, out, _ = _trace(capsys, CMP1, "--from-port", WEB1, "--to-port", DB1, "--packet", "arp")
    assert code == 0
    assert _origin(out, "arp_spa").startswith(
        f"arp_spa=10.20.0.10         derived: the address of port {WEB1}: iptables chain "
        "neutron-openvswi-sbf944fec-1 rule 1"
    )
    assert _origin(out, "arp_tpa").startswith(
        f"arp_tpa=10.20.0.12         derived: the address of port {DB1}: iptables chain "
        "neutron-openvswi-s7eb6fb94-7 rule 1"
    )
    assert _origin(out, "arp_sha") == (
        "arp_sha=fa:16:3e:bb:79:12  derived: the sender's MAC (dl_src)"
    )
    assert (
        _origin(out, "dl_dst") == "dl_dst=ff:ff:ff:ff:ff:ff   derived: an ARP request is broadcast"
    )
    assert _origin(out, "arp_op") == "arp_op=1                   assumed: not given: a request"
    assert _verdict(out).startswith(
        "Verdict: DELIVERED: leaves the node through tap7eb6fb94-79 to its peer in namespace "
        "example-db1"
    )


def test_from_the_tap_completes_the_packet_as_from_the_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The VM of web1 sends on its tap: the same packet and verdict whichever way it is named."""
    code, by_port, _ = _trace(
        capsys, CMP1, "--from-port", WEB1, "--to-port", DB1, "--packet", SYN_5432
    )
    assert code == 0
    code, by_tap, _ = _trace(
        capsys, CMP1, "--from", "tapbf944fec-1e", "--packet", SYN_5432 + ",nw_dst=10.20.0.12"
    )
    assert code == 0
    flow = (
        "Flow: dl_src=fa:16:3e:bb:79:12,dl_dst=fa:16:3e:67:bb:58,dl_type=0x0800,"
        "nw_src=10.20.0.10,nw_dst=10.20.0.12,nw_proto=6,nw_ttl=64,tp_src=32768,tp_dst=5432,"
        "tcp_flags=syn"
    )
    assert _flow(by_port) == _flow(by_tap) == flow
    for out in (by_port, by_tap):
        assert _verdict(out).startswith(
            "Verdict: DELIVERED: leaves the node through tap7eb6fb94-79"
        )
        assert _origin(out, "nw_src").startswith(
            f"nw_src=10.20.0.10         derived: the address of port {WEB1}"
        )
        assert _origin(out, "tp_src") == (
            "tp_src=32768              assumed: not given: the first port of Linux's default "
            "ephemeral range 32768-60999 (the sender picks one in its own "
            "net.ipv4.ip_local_port_range)"
        )
    assert "dl_dst=fa:16:3e:67:bb:58  derived: the MAC of port " + DB1 in by_tap


def test_to_port_alone_states_its_unknown_sender_and_rests_on_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Over the tunnel the sender is elsewhere: its address is a stated stand-in, never 0.0.0.0,
    and db1's security group (TCP 5432 only from web members) looks at it."""
    code, out, _ = _trace(capsys, CMP1, "--to-port", DB1, "--packet", SYN_5432)
    assert code == 0
    assert _origin(out, "nw_src") == (
        "nw_src=192.0.2.1          assumed: not given and the sender is elsewhere: a "
        "documentation address stands for any sender; give nw_src= for a real one"
    )
    assert _origin(out, "dl_src").startswith(
        "dl_src=fa:16:3e:72:14:9e  derived: a MAC br-int learned from the tunnel side in VLAN 1 "
        "(ovs-appctl fdb/show br-int, port 1)"
    )
    assert _verdict(out) == (
        "Verdict: DROPPED: dropped by rule 1 of filter neutron-openvswi-sg-fallback (FORWARD); "
        "resting on: nw_src=192.0.2.1"
    )
    resting = out.split("Resting on values neither given nor found on the node:\n")[1]
    assert resting.splitlines()[0] == (
        "  - nw_src=192.0.2.1 (assumed: filter:neutron-openvswi-i7eb6fb94-7 rule 4 looked at it)"
    )
    assert "nw_src=0.0.0.0" not in out


def test_a_vm_on_another_node_gets_no_made_up_mac(capsys: pytest.CaptureFixture[str]) -> None:
    """db2 (10.20.0.13) lives on cmp2: nothing on cmp1 maps its address to a MAC."""
    code, out, _ = _trace(
        capsys, CMP1, "--from-port", WEB1, "--packet", SYN_5432 + ",nw_dst=10.20.0.13"
    )
    assert code == 0
    assert _origin(out, "dl_dst") == (
        "dl_dst=00:00:00:00:00:00  assumed: not given, and nothing on the node maps 10.20.0.13 "
        "to a MAC (no port, namespace address, ARP responder flow, neighbour entry or router "
        "interface has it); give dl_dst="
    )
    assert "resting on: dl_dst=00:00:00:00:00:00" in _verdict(out)


def test_given_fields_are_listed_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _trace(
        capsys, CMP1, "--from-port", WEB1, "--packet",
        "tcp,nw_dst=10.20.0.12,dl_dst=fa:16:3e:67:bb:58,tp_src=40000,tp_dst=5432,tcp_flags=+syn",
    )  # fmt: skip
    assert code == 0
    given = next(line for line in out.splitlines() if line.startswith("  given: "))
    assert given == "  given: dl_dst, dl_type, nw_dst, nw_proto, tp_src, tp_dst, tcp_flags"
    assert "tp_src=40000" in _flow(out)
    assert "resting on" not in _verdict(out)


def test_json_carries_the_flow_with_origins(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _trace(capsys, CMP1, "--to-port", DB1, "--packet", SYN_5432, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    origins = {f["field"]: (f["value"], f["origin"]) for f in doc["flow"]}
    assert origins["nw_dst"] == ("10.20.0.12", "derived")
    assert origins["nw_src"] == ("192.0.2.1", "assumed")
    assert origins["tp_dst"] == ("5432", "given")
    assert origins["tun_id"] == ("0x40d", "derived")
    assert doc["resting_on"][0].startswith("nw_src=192.0.2.1 (assumed: ")


def test_no_routing_table_is_unknown_naming_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(GOLDEN, snap)
    manifest = json.loads((snap / "manifest.json").read_text())
    manifest["commands"] = [
        c for c in manifest["commands"] if c["kind"] not in ("ip-route", "ip6-route")
    ]
    (snap / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = _trace(
        capsys, snap, "--from-host", "--packet", "icmp,nw_dst=192.168.50.2,icmp_type=8"
    )
    assert code == 0
    assert _verdict(out) == (
        "Verdict: UNKNOWN: no `ip route show table all` output in the snapshot: collect it with "
        "`ip route show table all`"
    )


def test_missing_ipsets_are_named_as_the_snapshot_lacks_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """db1's rule matches web members by ipset; without `ipset save` the answer is unknown,
    said without an option `trace` does not have."""
    snap = _unpacked(tmp_path, CMP1, drop=("ipset-save",))
    code, out, err = _trace(
        capsys, snap, "--from-port", WEB1, "--to-port", DB1, "--packet", SYN_5432
    )
    assert code == 0 and err == ""
    assert _verdict(out).startswith("Verdict: UNKNOWN: ")
    assert "the snapshot has no `ipset save` output (collect it with `ipset save`)" in out
    assert "--ipsets" not in out and "--in-port" not in out


@pytest.mark.parametrize(
    ("device", "message"),
    [
        (
            "tapbf944fec-1f",
            "nodetrace: error: --from tapbf944fec-1f: no such device in the snapshot; did you "
            "mean tapbf944fec-1e, qvobf944fec-1e, qvbbf944fec-1e?",
        ),
        ("zzz", "nodetrace: error: --from zzz: no such device in the snapshot"),
    ],
)
def test_unknown_from_device_is_one_line_naming_close_matches(
    capsys: pytest.CaptureFixture[str], device: str, message: str
) -> None:
    code, out, err = _trace(capsys, CMP1, "--from", device, "--packet", "arp")
    assert code == 2 and out == ""
    assert err.splitlines() == [message]


# A real node (tests/realworld/SOURCES.md, hotsos-focal-ussuri-dvr-ovsfw): the OVS firewall, DVR,
# VM port 0e778df8 with 192.168.21.18 on the network of local VLAN 3; its router's qr- port has
# 192.168.21.1; br-tun's ARP responder (table 21) knows the remote 192.168.21.4.
HOTSOS = Path(__file__).parents[1] / "realworld" / "hotsos-focal-ussuri-dvr-ovsfw"
VM = "0e778df8-ca29-490b-8d54-e238b1e0be1c"
QROUTER = "qrouter-984c22fd-64b3-4fa1-8ddd-87090f401ce5"


def test_remote_address_gets_its_mac_from_the_arp_responder(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _trace(
        capsys, HOTSOS, "--from-port", VM, "--packet", "tcp,nw_dst=192.168.21.4,tp_dst=22"
    )
    assert code == 0
    assert _origin(out, "dl_dst") == (
        "dl_dst=fa:16:3e:06:b5:50  derived: br-tun table 21 ARP responder flow for 192.168.21.4 "
        f"({HOTSOS}/sos_commands/openvswitch/ovs-ofctl_-O_OpenFlow13_dump-flows_br-tun:35)"
    )
    # With that MAC br-tun unicasts to the node that has it instead of flooding every tunnel.
    assert re.search(
        r"br-tun table 20 priority 2 +dl_vlan=3,dl_dst=fa:16:3e:06:b5:50 "
        r"actions=pop_vlan,set_field:0x4d1->tun_id,output:3$",
        out,
        re.M,
    )


def test_arp_for_the_gateway_is_answered_by_the_router_in_its_namespace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _trace(capsys, HOTSOS, "--from-port", VM, "--packet", "arp,arp_tpa=192.168.21.1")
    assert code == 0
    assert _origin(out, "arp_spa").startswith(
        f"arp_spa=192.168.21.18      derived: the address of port {VM}: br-int table 71 flow"
    )
    assert _verdict(out).startswith(
        f"Verdict: DELIVERED: ARP for 192.168.21.1, an address of namespace {QROUTER}: answered "
        "on qr-3a70b31c-3f"
    )


def test_off_subnet_destination_goes_to_the_gateways_mac(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _trace(
        capsys,
        HOTSOS,
        "--from-port",
        VM,
        "--packet",
        "tcp,nw_dst=8.8.8.8,tp_dst=443,tcp_flags=+syn",
    )
    assert code == 0
    assert _origin(out, "dl_dst") == (
        "dl_dst=fa:16:3e:76:19:dd  derived: the gateway: router interface qr-3a70b31c-3f in "
        f"namespace {QROUTER} on 192.168.21.0/24 (ip address), as 8.8.8.8 is outside the "
        "sender's subnet"
    )
    # The router routes it in its own namespace (DVR: table 16 to the fip namespace).
    assert re.search(
        r"◇ qr-3a70b31c-3f +table 16: default via 169.254.88.135 dev rfp-984c22fd-6", out
    )


def test_a_ports_ovs_side_devices_say_who_sends(capsys: pytest.CaptureFixture[str]) -> None:
    """Received on web1's qvo: web1 sent it. Received on db1's qvb: it is on its way to db1."""
    code, out, _ = _trace(capsys, CMP1, "--from", "qvobf944fec-1e", "--packet", SYN_5432)
    assert code == 0
    assert _origin(out, "dl_src").startswith(
        f"dl_src=fa:16:3e:bb:79:12  derived: the MAC of port {WEB1}"
    )
    assert _origin(out, "nw_src").startswith(
        f"nw_src=10.20.0.10         derived: the address of port {WEB1}"
    )
    # Nothing says where it goes: the verdict says it rests on that.
    assert _origin(out, "nw_dst") == (
        "nw_dst=(none)             assumed: not given and no --to-port: nothing says where the "
        "packet goes"
    )
    assert "resting on: no nw_dst" in _verdict(out)
    code, out, _ = _trace(capsys, CMP1, "--from", "qvb7eb6fb94-79", "--packet", SYN_5432)
    assert code == 0
    assert _origin(out, "nw_dst").startswith(
        f"nw_dst=10.20.0.12         derived: the address of port {DB1}"
    )
    assert _origin(out, "dl_dst").startswith(
        f"dl_dst=fa:16:3e:67:bb:58  derived: the MAC of port {DB1}"
    )
    assert _verdict(out) == (
        "Verdict: DROPPED: dropped by rule 1 of filter neutron-openvswi-sg-fallback (FORWARD); "
        "resting on: nw_src=192.0.2.1"
    )
