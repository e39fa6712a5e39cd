"""A packet for a VM whose MAC no table holds is flooded to every port of its VLAN. On an older
sosreport (no `ovs-appctl fdb/show`, no `ip -d`) a VLAN can hold more ports than the walk
follows copies of: the copy headed for the VM must be among those followed, and the verdict must
speak of that VM, never of another VM's security group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.synthetic_sosreport import write_sosreport
from nodetrace.cli import main
from nodetrace.engine.walk import MAX_COPIES
from nodetrace.neutron import synthetic_node


@pytest.fixture(scope="module")
def crowded_vlan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """A node whose one network holds more VM ports than the walk follows copies of; the
    last-plugged port of that network, and how many ports share it."""
    state = synthetic_node(ports=MAX_COPIES + 8, networks=1, seed=3)
    root = write_sosreport(state, tmp_path_factory.mktemp("sos") / "node")
    return root, state.vm_ports[-1].port.id, len(state.vm_ports)


def test_the_copy_for_the_vm_is_followed_first(
    capsys: pytest.CaptureFixture[str], crowded_vlan: tuple[Path, str, int]
) -> None:
    root, port, count = crowded_vlan
    assert count > MAX_COPIES
    code = main(["trace", str(root), "--to-port", port, "--packet", "arp", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    # An ARP request is broadcast: every VM port of the VLAN gets a copy, and the one behind
    # the target's tap is where the verdict is read.
    assert doc["outcome"] == "delivered"
    verdict = doc["steps"][doc["verdict_step"] - 1]  # numbered from 1, as the text shows
    assert verdict["device"] == "tap" + port[:11]
    assert any(f"only the first {MAX_COPIES}" in a for a in doc["assumptions"])


def test_a_verdict_rests_only_on_what_its_own_copy_looked_at(
    capsys: pytest.CaptureFixture[str], crowded_vlan: tuple[Path, str, int]
) -> None:
    """The SYN's source address is assumed (the sender is behind the tunnel). Every copy of the
    flood meets some VM's ingress chain, which may look at it; the verdict for the target rests
    only on the rules its own copy met, never on another VM's chain."""
    root, port, _ = crowded_vlan
    code = main(
        ["trace", str(root), "--to-port", port, "--packet", "tcp,tp_dst=22,tcp_flags=+syn",
         "--format", "json"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    chains = [r for r in doc["resting_on"] if "neutron-openvswi-i" in r]
    assert all(f"neutron-openvswi-i{port[:10]}" in r for r in chains), chains
