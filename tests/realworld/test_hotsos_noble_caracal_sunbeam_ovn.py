"""noble-sunbeam: an Ubuntu 24.04 hypervisor deployed by Canonical Sunbeam (snap
``openstack-hypervisor`` 2024.1, Caracal) with ML2/OVN and Open vSwitch 3.3.0 inside the snap, no
instance yet. Its sosreport (test data of canonical/hotsos, see SOURCES.md) names every OVS file
after the snap's command (``openstack-hypervisor.ovs-vsctl_-t_5_show``), has no networking or
kernel plugin output, and its plain ``ovs-ofctl dump-flows br-ex`` holds an error (br-ex speaks
only OpenFlow 1.3/1.5), so br-ex's flows are in the ``-O OpenFlow13`` dump. The top-level
``date`` symlink points to a file the sosreport does not hold; it is kept as found.

Every expected value was read by hand from the dataset's files; the comment beside it names the
file (under ``sos_commands/openvswitch/``, ``openstack-hypervisor.`` shortened to ``oh.``) and
line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "hotsos-noble-caracal-sunbeam-ovn"


def _show(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return run_json(capsys, "show", str(NODE))


def test_node_identity(capsys: pytest.CaptureFixture[str]) -> None:
    node = _show(capsys)["node"]
    assert node["hostname"] == "noble-sunbeam"  # ../host/hostname line 1
    # No kernel plugin output and no uname file; ../host/hostnamectl_status line 8 tells it:
    # "Kernel: Linux 6.8.0-59-generic".
    assert node["kernel"] == "6.8.0-59-generic"


def test_bridges_from_the_snap_named_files(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _show(capsys)
    bridges = {b["name"]: b for b in doc["ovs_bridges"]}
    assert set(bridges) == {"br-ex", "br-int"}  # oh.ovs-vsctl_-t_5_show lines 2 and 7
    # oh.ovs-vsctl_-t_5_show line 8 "fail_mode: secure"; lines 2-6 none for br-ex, whose
    # oh.ovs-vsctl_-t_5_list_bridge_br-ex line 8 is "fail_mode : []"
    assert (bridges["br-int"]["fail_mode"], bridges["br-ex"]["fail_mode"]) == ("secure", None)
    assert {b["datapath_type"] for b in bridges.values()} == {"system"}  # lines 3 and 9
    # Each bridge has only its internal port (lines 4-6, 10-12; oh.ovs-ofctl_show_br-int
    # line 5 "LOCAL(br-int)").
    assert [p["name"] for p in bridges["br-int"]["ports"]] == ["br-int"]
    assert [p["name"] for p in bridges["br-ex"]["ports"]] == ["br-ex"]
    assert doc["ports"] == []  # no instance, no Neutron port on this hypervisor


def test_host_traffic_into_br_int_is_dropped_by_ovn_table_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no logical port bound, ovn-controller's br-int has only its default flows: table 0
    "priority=0 actions=drop" (oh.ovs-ofctl_dump-flows_br-int line 2)."""
    doc = run_json(
        capsys,
        "trace",
        str(NODE),
        "--from",
        "br-int",
        "--packet",
        "udp,dl_src=5e:c1:79:5d:36:6d,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=10.194.140.193,"
        "nw_dst=10.194.140.255,udp_src=40000,udp_dst=53",
    )
    assert doc["outcome"] == "dropped"
    verdict = doc["steps"][doc["verdict_step"]]
    assert (verdict["type"], verdict["bridge"], verdict["table"], verdict["priority"]) == (
        "openflow",
        "br-int",
        0,
        0,
    )
    # The OpenFlow 1.3 dump of br-int (ovn_host plugin) is the one read: same flow, line 2.
    assert (
        Path(verdict["source"]["file"]).name
        == "openstack-hypervisor.ovs-ofctl_-O_OpenFlow13_dump-flows_br-int"
    )
    assert verdict["source"]["first_line"] == 2


def test_br_ex_flows_come_from_the_openflow13_dump(capsys: pytest.CaptureFixture[str]) -> None:
    """The plain dump of br-ex is an error ("version negotiation failed", oh.ovs-ofctl_dump-
    flows_br-ex lines 1-2); oh.ovs-ofctl_-O_OpenFlow13_dump-flows_br-ex line 2 holds its one
    flow, "priority=0 actions=NORMAL". br-ex has no port but its own, so NORMAL outputs nowhere."""
    doc = run_json(
        capsys,
        "trace",
        str(NODE),
        "--from",
        "br-ex",
        "--packet",
        "udp,dl_src=12:35:c4:7b:52:44,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=10.194.140.193,"
        "nw_dst=10.194.140.255,udp_src=40000,udp_dst=53",
    )
    normal = [s for s in doc["steps"] if s["type"] == "openflow" and s["bridge"] == "br-ex"]
    assert normal and normal[0]["actions"] == "NORMAL"
    assert (
        Path(normal[0]["source"]["file"]).name
        == "openstack-hypervisor.ovs-ofctl_-O_OpenFlow13_dump-flows_br-ex"
    )
    assert normal[0]["source"]["first_line"] == 2
    assert doc["outcome"] == "dropped"
