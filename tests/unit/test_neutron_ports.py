"""Finding the port a user names (``--from-port``/``--to-port``): full UUID, prefix, device name;
absent and ambiguous names are one-line errors listing what the node holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.errors import UsageError
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron.inventory import PortKind
from nodetrace.neutron.ports import find_port
from nodetrace.neutron.trace_ends import tunnel_arrival
from nodetrace.snapshot.load import load
from tests.conftest import DATA

GOLDEN = DATA / "snapshot" / "golden-cmp1"
HOTSOS = DATA / "snapshot" / "hotsos-ovsfw"
A = "bd978bef-1a3e-5d0f-adb8-919cbf6bd238"


@pytest.fixture(scope="module")
def golden() -> Snapshot:
    return load(GOLDEN)


@pytest.mark.parametrize(
    "wanted",
    [A, A[:8], A[:13], "tapbd978bef-1a", "qvbbd978bef-1a", "qvobd978bef-1a", "qbrbd978bef-1a"],
)
def test_a_port_is_found_by_uuid_prefix_or_any_of_its_devices(
    golden: Snapshot, wanted: str
) -> None:
    port = find_port(golden, wanted)
    assert (port.port_id, port.tap, port.ovs_port) == (A, "tapbd978bef-1a", "qvobd978bef-1a")


def test_an_absent_prefix_names_the_ports_there_and_makes_up_no_device(golden: Snapshot) -> None:
    with pytest.raises(UsageError) as err:
        find_port(golden, "deadbeef")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("port deadbeef: no port of this node has this UUID")
    assert A in message and "tapdeadbeef" not in message


def test_an_absent_device_name_is_an_error(golden: Snapshot) -> None:
    with pytest.raises(UsageError, match=r"^port tapdeadbeef-00: no such device on this node"):
        find_port(golden, "tapdeadbeef-00")


def test_a_prefix_shorter_than_8_characters_is_refused(golden: Snapshot) -> None:
    with pytest.raises(UsageError, match="give at least 8 characters"):
        find_port(golden, A[:7])


VSCTL_TWO_TAPS = """\
0b6e2b3c-0000-4000-8000-000000000003
    Bridge br-int
        Port "tap3b1f6a2c-8d"
            tag: 1
            Interface "tap3b1f6a2c-8d"
        Port "tap3b1f6a2c-9e"
            tag: 2
            Interface "tap3b1f6a2c-9e"
"""


def test_a_prefix_two_ports_share_is_ambiguous_and_both_are_named(tmp_path: Path) -> None:
    (tmp_path / "ovs-vsctl show").write_text(VSCTL_TWO_TAPS)
    snap = load(tmp_path)
    with pytest.raises(UsageError) as err:
        find_port(snap, "3b1f6a2c")
    message = str(err.value)
    assert "2 ports match" in message
    assert "3b1f6a2c-8d" in message and "3b1f6a2c-9e" in message
    # More of the UUID than the device names carry still finds the one port they name.
    assert find_port(snap, "3b1f6a2c-9e11-4f7a-9b2c-1d5e6f7a8b9c").ovs_port == "tap3b1f6a2c-9e"


def test_router_port_is_found_by_its_device() -> None:
    snap = load(HOTSOS)
    port = find_port(snap, "qr-3a70b31c-3f")
    assert port.kind is PortKind.ROUTER_INTERFACE
    assert port.namespace == "qrouter-984c22fd-64b3-4fa1-8ddd-87090f401ce5"


def test_to_port_alone_arrives_over_the_tunnel_of_the_ports_vlan() -> None:
    """The port `show` lists with tag 3 has that local VLAN for --to-port too (VNI 0x4d1)."""
    snap = load(HOTSOS)
    port = find_port(snap, "0e778df8")
    assert port.local_vlan is not None and port.local_vlan.value == 3
    arrival = tunnel_arrival(snap, port, {"tun_src": "10.0.0.114"})
    meta, notes = dict(arrival.metadata), [arrival.note] if arrival.note else []
    assert (arrival.bridge, arrival.port) == ("br-tun", "vxlan-0a000072")
    assert (meta["tun_id"], meta["tun_dst"]) == ("0x4d1", "10.0.0.128")
    assert notes == []
