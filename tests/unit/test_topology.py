"""The topology's lookups on a real node (tests/data/snapshot/golden-cmp1)."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from nodetrace.model.topology import LinkKind, Topology
from nodetrace.snapshot.load import load
from tests.conftest import DATA

TAP, QBR, QVB, QVO = (p + "bd978bef-1a" for p in ("tap", "qbr", "qvb", "qvo"))


@pytest.fixture(scope="module")
def topo() -> Topology:
    return load(DATA / "snapshot" / "golden-cmp1").topology


def test_hybrid_plug_chain_of_devices(topo: Topology) -> None:
    qvb, qvo = topo.interface(QVB), topo.interface(QVO)
    assert qvb is not None and qvo is not None
    assert topo.veth_peer(qvb) == qvo and topo.veth_peer(qvo) == qvb
    assert [p.name for p in topo.ports_of(QBR)] == [TAP, QVB]
    tap = topo.interface(TAP)
    assert tap is not None and tap.kind is LinkKind.VETH
    # The VM end is in the VM's namespace, which a node snapshot does not contain.
    assert tap.veth is not None and tap.veth.peer_netns and topo.veth_peer(tap) is None
    assert QBR in {b.name for b in topo.linux_bridges()}


def test_addresses_and_indexes(topo: Topology) -> None:
    phys = topo.owner_of(ip_address("192.168.50.1"))
    assert phys is not None and phys.name == "br-phys"
    assert topo.owner_of(ip_address("192.168.50.99")) is None
    assert phys.ifindex is not None and topo.by_ifindex(phys.ifindex) == phys
    # qbr's own forwarding entries: one permanent (local) entry per port address.
    local = [e for e in topo.fdb_of(QBR) if e.is_local]
    assert {e.dev for e in local} == {TAP, QVB}


def test_routes_of_the_node(topo: Topology) -> None:
    main = [r for r in topo.routes_in() if r.table == "main"]
    assert [(str(r.dst), r.dev) for r in main if r.dst.version == 4] == [
        ("192.168.50.0/24", "br-phys")
    ]
