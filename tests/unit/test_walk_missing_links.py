"""Where the snapshot does not say what a device is, or where a veth leads, the whole-node walk
ends *unknown* naming the output that would tell, never "onto the wire" or "dropped".

Real data: tests/realworld/hotsos-focal-ussuri-dvr-2021-partial (a DVR compute node's sosreport,
canonical/hotsos @ 7e5a36b9; `ip address show` per namespace, no `-d`, Open vSwitch known only
from `ovs-appctl dpctl/show`) and tests/realworld/xenial-2016-hybrid-aio (qvb devices known only
from `brctl show`); see tests/realworld/SOURCES.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from nodetrace.api import trace_request
from nodetrace.engine.walk import walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import Interface, LinkKind, Topology, VethInfo
from nodetrace.model.trace import Outcome, Trace
from nodetrace.snapshot.load import load
from tests.conftest import DATA

REALWORLD = DATA.parent / "realworld"
QROUTER = "qrouter-1e086be2-93c2-4740-921d-3e3237f23959"
FIP = "fip-7553f34c-b718-4a4b-8bbd-2d7a1cd5cf62"
TO_THE_INTERNET = (
    "tcp,dl_src=fa:16:3e:0e:72:db,dl_dst=fa:16:3e:4f:73:da,nw_src=192.168.21.8,"
    "nw_dst=8.8.8.8,tp_src=40000,tp_dst=443,tcp_flags=+syn"
)


@pytest.fixture(scope="module")
def dvr() -> Snapshot:
    return load(REALWORLD / "hotsos-focal-ussuri-dvr-2021-partial")


def _args(**given: Any) -> dict[str, Any]:
    return {"netns": ""} | given


def _trace(snap: Snapshot, args: dict[str, Any], *, hints: bool = True) -> Trace:
    request, _ = trace_request(snap, **args)
    if not hints:
        request = dataclasses.replace(request, peer_hints=())
    return walk(snap, request, engines_for(snap), switch=snap.ovs)


def _with(snap: Snapshot, name: str, netns: str, **changes: object) -> Snapshot:
    """The same snapshot with one device changed."""
    t = snap.topology
    ifaces = tuple(
        dataclasses.replace(i, **changes) if (i.name, i.netns) == (name, netns) else i  # type: ignore[arg-type]
        for i in t.interfaces
    )
    return dataclasses.replace(
        snap, topology=Topology(ifaces, t.routes, t.rules, t.neighbours, t.fdb)
    )


def _vm_to_the_internet(snap: Snapshot) -> Trace:
    args = _args(from_device="qr-aa623763-fd", netns=QROUTER, packet=TO_THE_INTERNET)
    return _trace(snap, args)


def _fg(snap: Snapshot) -> Interface:
    fg = snap.topology.interface("fg-7450b342-b1", FIP)
    assert fg is not None
    return fg


def test_an_ovs_device_without_its_bridge_names_the_ovs_output(dvr: Snapshot) -> None:
    """fg- is an OVS internal port (dpctl/show) that no `ovs-vsctl show` places on a bridge:
    the packet reaches it through the fip namespace, and the answer is unknown there."""
    if _fg(dvr).kind is not LinkKind.OPENVSWITCH:
        pytest.skip("the reader does not type fg- from dpctl/show")
    trace = _vm_to_the_internet(dvr)
    assert trace.outcome is Outcome.UNKNOWN
    assert trace.reason.startswith(
        "fg-7450b342-b1 is an Open vSwitch device, but the snapshot does not say which bridge's "
        "port it is, so the pipeline it enters is unknown; missing: `ovs-vsctl show`"
    )


def test_a_device_of_unknown_kind_is_not_a_wire(dvr: Snapshot) -> None:
    snap = _with(dvr, "fg-7450b342-b1", FIP, kind=LinkKind.UNKNOWN)
    trace = _vm_to_the_internet(snap)
    assert trace.outcome is Outcome.UNKNOWN
    assert "onto the wire" not in trace.reason
    assert (
        f"missing: `ip -d link show` in namespace {FIP} (collect it with `ip netns exec {FIP} "
        "ip -d link show`); `ovs-vsctl show` (collect it with `ovs-vsctl show`)"
    ) in trace.reason
    # Without any sign of Open vSwitch on the node only the link details are missing.
    quiet = dataclasses.replace(snap, ovs_evidence="", ovs_bridge_names=())
    trace = _vm_to_the_internet(quiet)
    assert trace.outcome is Outcome.UNKNOWN
    assert "what fg-7450b342-b1 is (a NIC, or one end of a veth) is not in the snapshot" in (
        trace.reason
    )
    assert "ovs-vsctl" not in trace.reason


def test_a_veth_whose_peer_namespace_is_not_named_is_unknown(dvr: Snapshot) -> None:
    """rfp- with its peer's netnsid but no `ip netns list` ids to name the namespace: the
    packet does not "leave the node", its way on is unknown."""
    snap = _with(dvr, "rfp-1e086be2-9", QROUTER, detail=VethInfo(peer_ifindex=2, peer_netnsid=7))
    trace = _vm_to_the_internet(snap)
    assert trace.outcome is Outcome.UNKNOWN
    assert trace.reason.startswith(
        f"the peer of veth rfp-1e086be2-9 in namespace {QROUTER} is in another namespace "
        "(netnsid 7) that the snapshot does not name; missing: `ip netns list`"
    )


def test_a_veth_followed_into_the_fip_namespace_and_its_policy_routes(dvr: Snapshot) -> None:
    """The qrouter's `from 192.168.21.8 lookup 16` sends it out of rfp-; its peer fpr- in the
    fip namespace routes it by `iif fpr-1e086be2-9 lookup 2852018311` to fg-."""
    trace = _vm_to_the_internet(dvr)
    details = [getattr(s, "detail", "") for s in trace.steps]
    assert any(d.endswith(f"(into namespace {FIP})") for d in details)
    assert "table 2852018311: default via 10.100.0.1 dev fg-7450b342-b1" in details


def test_a_port_known_only_from_brctl_is_unknown_without_its_pair() -> None:
    """qvb0695f2ca-bf is only a port of qbr0695f2ca-bf in `brctl show`: without the hybrid
    plug's naming the walk cannot cross it, and says which output would tell."""
    snap = load(REALWORLD / "xenial-2016-hybrid-aio")
    args = _args(
        from_port="0695f2ca-bf", to_port="839737e6-15",
        packet="tcp,tp_src=40000,tp_dst=22,tcp_flags=+syn",
    )  # fmt: skip
    bare = _trace(snap, args, hints=False)
    assert bare.outcome is Outcome.UNKNOWN
    assert bare.reason.startswith(
        "what qvb0695f2ca-bf is (a NIC, or one end of a veth) is not in the snapshot: it is only "
        "named as a port of qbr0695f2ca-bf; missing: `ip -d link show`"
    )
    paired = _trace(snap, args)
    assert paired.outcome is Outcome.UNKNOWN
    assert "`ovs-ofctl dump-flows br-int`" in paired.reason
    assert any(
        r.startswith("qvb0695f2ca-bf taken as a veth to qvo0695f2ca-bf: the hybrid plug's veth "
                     "pair of port 0695f2ca-bf")
        for r in paired.resting_on
    )  # fmt: skip
