"""A Fuel (Mitaka) DVR compute node of which only its fip- and qrouter- namespaces were
published (see fuel-mitaka-dvr-compute/README.md). Expected values were read by hand from the
files; the comment beside each names the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "fuel-mitaka-dvr-compute"
FIP = "fip-cb1f1abb-443c-49df-b863-ba4cebf10d18"
QROUTER = "qrouter-517ba029-f811-4af8-9cfd-6cef0babd1d1"


def _by_device(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    doc = run_json(capsys, "show", str(NODE))
    return {d: p for p in doc["ports"] for d in p["devices"]}


def test_dvr_namespaces_and_their_ports(capsys: pytest.CaptureFixture[str]) -> None:
    ports = _by_device(capsys)
    fg, qr = ports["fg-73de653f-c4"], ports["qr-22378d26-ea"]
    # ip netns exec fip-... ip a lines 14-16
    assert (fg["kind"], fg["namespace"], fg["mac"]) == ("fip_gateway", FIP, "fa:16:3e:6f:c7:c5")
    assert "172.30.89.129" in fg["ips"]
    # ip netns exec qrouter-... ip a lines 16-18
    assert (qr["kind"], qr["namespace"], qr["mac"]) == (
        "router_interface",
        QROUTER,
        "fa:16:3e:b0:bc:f0",
    )
    # the rfp/fpr veth pair between the two namespaces (not on OVS): one entry holding both
    # ends, sent through from the router's end
    rfp = ports["rfp-517ba029-f"]
    assert ports["fpr-517ba029-f"] is rfp
    assert (rfp["kind"], rfp["tap"], rfp["namespace"]) == ("router_link", "rfp-517ba029-f", QROUTER)
    assert (rfp["bridge"], rfp["tag"]) == (None, None)
    # qrouter ip a lines 10-13: the floating IP sits on rfp- next to the /31 link address
    assert {"169.254.106.114", "172.30.89.140"} <= set(rfp["ips"])
    assert not [p for p in ports.values() if p["kind"] == "vm"]


def test_namespaces(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    spaces = {n["name"]: set(n["interfaces"]) for n in doc["namespaces"]}
    # ip netns lines 2-3
    assert spaces == {
        FIP: {"lo", "fpr-517ba029-f", "fg-73de653f-c4"},
        QROUTER: {"lo", "rfp-517ba029-f", "qr-22378d26-ea"},
    }


def test_the_floating_ip_path_rests_on_missing_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    # a packet from the outside for the floating IP arrives on fg-; neither the fip namespace's
    # rules (iptables-save) nor its routes (ip route / ip rule) were published: unknown, never
    # dropped, at the first of them the packet meets (PREROUTING runs before routing)
    packet = "icmp,nw_src=172.30.0.11,nw_dst=172.30.89.140,icmp_type=8,icmp_code=0"
    doc = run_json(
        capsys,
        "trace",
        str(NODE),
        "--from",
        "fg-73de653f-c4",
        "--netns",
        FIP,
        "--packet",
        packet + ",dl_dst=fa:16:3e:6f:c7:c5",
    )
    assert doc["outcome"] == "unknown"
    assert f"ip netns exec {FIP} iptables-save" in doc["reason"]
