"""A Juju-charmed Queens compute node with DVR and local DHCP, as a forum post shows it: one
`ovs-vsctl show` with a prompt and a sudo warning, a broken br-tun/br-ex (see
juju-queens-dvr-compute/README.md). Expected values were read by hand from the files; the
comment beside each names the file and line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "juju-queens-dvr-compute"


def _by_ovs_port(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return {p["ovs_port"]: p for p in run_json(capsys, "show", str(NODE))["ports"]}


def test_dvr_ports_and_vms(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _by_ovs_port(capsys)
    # ovs-vsctl show lines 18-20 and 25-30: three qvo ports, tag 2
    vms = {n for n, p in ports.items() if p["kind"] == "vm"}
    assert vms == {"qvob6c9a70b-e1", "qvofab40efd-a8", "qvo182811ec-a3"}
    assert {ports[n]["tag"] for n in vms} == {2}
    # lines 34-37: fg-3d8b97c3-83, tag 3, internal: the DVR FIP namespace's gateway port
    assert (ports["fg-3d8b97c3-83"]["kind"], ports["fg-3d8b97c3-83"]["tag"]) == ("fip_gateway", 3)
    # lines 21-24: qr-ff4035c9-57, tag 2: the distributed router's interface on the VMs' net
    assert ports["qr-ff4035c9-57"]["kind"] == "router_interface"
    # nothing published gives a MAC, an address, a zone or the network of any port
    assert {(p["mac"], p["zone"], p["network_type"]) for p in ports.values()} == {
        (None, None, None)
    }


def test_the_bare_tap_is_not_a_vm(capsys: pytest.CaptureFixture[str]) -> None:
    dhcp = _by_ovs_port(capsys)["tape3b1974f-d6"]
    # lines 11-13: a plain tap on br-int on a host where every port is hybrid-plugged (qvo);
    # neutron port-show line 8: device_owner network:dhcp (ovs_use_veth DHCP port)
    assert dhcp["kind"] != "vm"
    assert dhcp["tag"] == 1


def test_patch_ports_without_a_peer_bridge(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: {p["name"]: p for p in b["ports"]} for b in doc["ovs_bridges"]}
    assert set(bridges) == {"br-ex", "br-int"}  # line 6-7: no br-tun at all
    assert bridges["br-int"]["patch-tun"]["peer"] == "patch-int"  # lines 38-41
    assert "patch-int" not in {p for b in bridges.values() for p in b}
    # br-ex (line 6) has no Port line: fail_mode and ports are simply not there
    ex = next(b for b in doc["ovs_bridges"] if b["name"] == "br-ex")
    assert ex["fail_mode"] is None


def test_a_vm_packet_cannot_be_decided(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "icmp,nw_src=10.0.0.5,nw_dst=10.0.0.1,icmp_type=8,icmp_code=0"
    code = main(
        ["trace", str(NODE), "--from-port", "b6c9a70b-e1", "--packet", packet, "--format", "json"]
    )
    out, err = capsys.readouterr()
    # no tap/qbr device, no iptables-save, no flows: unknown, or a one-line refusal (exit 2)
    assert code in (0, 2), err
    if code == 0:
        assert json.loads(out)["outcome"] == "unknown"
    else:
        assert len(err.strip().splitlines()) == 1
