"""An Ubuntu 24.04 (OpenStack 2024.1) compute node with the iptables hybrid firewall, as a blog
post shows it: prompts inside the outputs, a br-int dump cut with "...", no iptables-save (see
ubuntu-noble-hybrid-compute/README.md). Expected values were read by hand from the files; the
comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "ubuntu-noble-hybrid-compute"


def _ports(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    return {p["port_id"]: p for p in run_json(capsys, "show", str(NODE))["ports"]}


def test_three_hybrid_vm_ports_and_their_vnis(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _ports(capsys)
    assert set(ports) == {"271f9531-54", "6b5d65c3-82", "7d4e020e-fd"}
    assert {p["kind"] for p in ports.values()} == {"vm"}
    # brctl show lines 4-9 (tabs) and ovs-vsctl show lines 26-38
    assert sorted(ports["6b5d65c3-82"]["devices"]) == [
        "qbr6b5d65c3-82",
        "qvb6b5d65c3-82",
        "qvo6b5d65c3-82",
        "tap6b5d65c3-82",
    ]
    # ovs-vsctl show line 27 (tag 1), 30 (tag 2), 37 (tag 1)
    assert [ports[p]["tag"] for p in sorted(ports)] == [1, 2, 1]
    # dump-flows br-tun lines 8-9: tun_id=0x3e3 -> mod_vlan_vid:1, tun_id=0x1ba -> mod_vlan_vid:2
    assert [(ports[p]["network_type"], ports[p]["segmentation_id"]) for p in sorted(ports)] == [
        ("vxlan", 995),
        ("vxlan", 442),
        ("vxlan", 995),
    ]
    # nothing published gives MAC, IP or zone of these ports
    assert {(p["mac"], p["zone"]) for p in ports.values()} == {(None, None)}
    # dump-flows br-int line 3: priority=10,icmp6,in_port="qvo7d4e020e-fd" names this port
    assert ports["7d4e020e-fd"]["flows"] >= 1


def test_linux_bridges_include_the_empty_ones(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    bridges = {b["name"]: sorted(b["ports"]) for b in doc["linux_bridges"]}
    # brctl show line 3 (docker0) and line 10 (virbr0): no interfaces
    assert bridges["docker0"] == [] and bridges["virbr0"] == []
    assert bridges["qbr271f9531-54"] == ["qvb271f9531-54", "tap271f9531-54"]  # lines 4-5


def test_the_prompts_and_the_cut_are_reported_not_read_as_flows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["show", str(NODE)])
    out, err = capsys.readouterr()
    assert code == 0
    # dump-flows br-int line 4 is "...": the dump is incomplete and the output must say so
    assert "ovs-ofctl dump-flows br-int:4" in out + err


def test_an_unknown_vni_is_dropped_by_br_tun_table_4(capsys: pytest.CaptureFixture[str]) -> None:
    packet = "tun_id=0x64,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.1.57"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-ac10010a", "--packet", packet)
    assert doc["outcome"] == "dropped"
    verdict = doc["steps"][doc["verdict_step"]]
    # dump-flows br-tun line 10: table=4, priority=0 actions=drop
    assert (verdict["bridge"], verdict["table"], verdict["priority"]) == ("br-tun", 4, 0)


def test_vni_995_into_br_int_is_unknown_because_the_dump_was_cut(
    capsys: pytest.CaptureFixture[str],
) -> None:
    packet = "tun_id=0x3e3,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.0.1.57"
    doc = run_json(capsys, "trace", str(NODE), "--from", "vxlan-ac10010a", "--packet", packet)
    flows = [
        (s["bridge"], s["table"], s["priority"]) for s in doc["steps"] if s["type"] == "openflow"
    ]
    # dump-flows br-tun line 8: table=4 priority=1 tun_id=0x3e3 -> mod_vlan_vid:1, then br-int,
    # whose dump holds only 3 of its flows ("..." on line 4): no verdict can rest on it
    assert ("br-tun", 4, 1) in flows
    assert doc["outcome"] == "unknown"
