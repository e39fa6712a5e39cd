"""A node whose only output is its hybrid firewall's filter table (the Havana compute node of
Lingxian Kong's post, tests/data/iptables/lingxiankong-havana-compute-filter.txt): chain names
keep 10 characters of the port's UUID, but the physdev rules name its tap whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nodetrace.cli import main
from tests.conftest import DATA

SAVE = DATA / "iptables" / "lingxiankong-havana-compute-filter.txt"


@pytest.fixture
def node(tmp_path: Path) -> Path:
    shutil.copy(SAVE, tmp_path / "iptables-save")
    return tmp_path


def test_the_tap_is_named_by_the_physdev_rules(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(node), "--format", "json"]) == 0
    (port,) = json.loads(capsys.readouterr().out)["ports"]
    # "-A neutron-openvswi-FORWARD -m physdev --physdev-out tap6bc18a88-96 ..." (line 21)
    assert (port["port_id"], port["kind"], port["tap"]) == ("6bc18a88-96", "vm", "tap6bc18a88-96")
    assert port["mac"] == "fa:16:3e:31:e3:11"  # the s chain's --mac-source


def test_a_trace_from_it_ends_unknown_for_lack_of_the_links(
    node: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["trace", str(node), "--from-port", "6bc18a88", "--packet", "tcp,tp_dst=22,tcp_flags=+syn",
         "--format", "json"]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["outcome"] == "unknown"
    assert "ip -d link show" in doc["reason"]
