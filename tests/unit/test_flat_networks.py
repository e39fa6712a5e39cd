"""Flat networks in scenarios, and the flows the OVS agent installs for them.

The expected flows are those of the agent's native OpenFlow driver for a network without a
segment (``provision_local_vlan`` in br_int.py and br_phys.py with ``segmentation_id=None``):
into br-int, an untagged frame from the physical bridge's patch gets the local VLAN pushed
(priority 3, table 0, ``vlan_vid=OFPVID_NONE``); out of the physical bridge, the local VLAN is
popped (priority 4). That real Open vSwitch holds exactly these is checked in the lab
(tests/lab/test_flat_external.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.errors import InputError
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.l3_agent import BR_EX, EXTERNAL_NIC, INT_EX, PHY_EX
from nodetrace.neutron.ovs_agent import BR_INT, BR_PHYS, INT_PHYS, PHY_PHYS
from nodetrace.neutron.scenario import (
    NO_SEGMENT,
    NetworkType,
    load_scenario,
    parse_scenario,
)

EXAMPLE = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/flat-external.toml"

BASE = """\
[[nodes]]
name = "cmp1"

[[networks]]
name = "provider"
type = "flat"
cidr = "198.51.100.0/24"

[[ports]]
name = "vm1"
node = "cmp1"
network = "provider"
"""


def _ofport(state: NodeState, bridge: str, name: str) -> int:
    return next(p.ofport for p in state.bridge_ports(bridge) if p.name == name)


def _flows(state: NodeState, bridge: str, *, openflow13: bool = True) -> list[str]:
    """The bridge's flows as ``ovs-ofctl dump-flows`` prints them, from ``priority=`` on."""
    text = state.dump_flows_text(bridge, openflow13=openflow13)
    return [line.split("n_bytes=0, ")[1] for line in text.splitlines()[1:]]


def test_a_flat_network_has_no_segment_and_the_physical_networks_mtu() -> None:
    net = parse_scenario(BASE).networks[0]
    assert net.type is NetworkType.FLAT
    assert net.segmentation_id == NO_SEGMENT
    assert net.mtu == 1500
    assert net.physical_network == "physnet1"
    assert not net.type.is_tunnel and net.type.is_provider


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('type = "flat"', 'type = "flat"\nsegmentation_id = 5'),
            "<scenario>:4: networks[0]: a flat network has no segmentation_id",
        ),
        (
            ('name = "provider"', 'name = "provider"\nexternal = false'),
            None,  # no mistake: the control case
        ),
    ],
    ids=["segment", "control"],
)
def test_flat_mistakes_are_reported_with_line_and_reason(
    change: tuple[str, str], message: str | None
) -> None:
    text = BASE.replace(*change)
    if message is None:
        parse_scenario(text)
        return
    with pytest.raises(InputError) as err:
        parse_scenario(text)
    assert message in str(err.value)


def test_a_physical_network_carries_one_flat_network() -> None:
    second = '\n[[networks]]\nname = "other"\ntype = "flat"\ncidr = "198.51.101.0/24"\n'
    with pytest.raises(InputError, match=r":14: networks\[1\]: physical network physnet1 "):
        parse_scenario(BASE + second)
    # One flat network on physnet1 and one on the external network are two physical networks.
    parse_scenario(
        BASE
        + second.replace('cidr = "198.51.101.0/24"', 'cidr = "198.51.101.0/24"\nexternal = true')
    )


def test_a_flat_provider_network_is_pushed_into_br_int_and_popped_out_of_br_phys() -> None:
    state = generate_node(parse_scenario(BASE), "cmp1")
    int_phys = _ofport(state, BR_INT, INT_PHYS)
    phy = _ofport(state, BR_PHYS, PHY_PHYS)
    lvid = state.vm_port("vm1").local_vlan
    assert (
        f"priority=3,in_port={int_phys},vlan_tci=0x0000/0x1fff "
        f"actions=push_vlan:0x8100,set_field:{lvid | 0x1000}->vlan_vid,goto_table:58"
    ) in _flows(state, BR_INT)
    assert f"priority=4,in_port={phy},dl_vlan={lvid} actions=pop_vlan,NORMAL" in _flows(
        state, BR_PHYS
    )
    # No VLAN id is ever matched or set for the flat network on the physical side.
    assert not [f for f in _flows(state, BR_INT) if f"in_port={int_phys},dl_vlan=" in f]


def test_the_openflow10_dump_spells_them_as_ovs_ofctl_does() -> None:
    state = generate_node(parse_scenario(BASE), "cmp1")
    int_phys = _ofport(state, BR_INT, INT_PHYS)
    phy = _ofport(state, BR_PHYS, PHY_PHYS)
    lvid = state.vm_port("vm1").local_vlan
    assert (
        f"idle_age=0, priority=3,in_port={int_phys},vlan_tci=0x0000/0x1fff "
        f"actions=mod_vlan_vid:{lvid},resubmit(,58)"
    ) in _flows(state, BR_INT, openflow13=False)
    assert f"idle_age=0, priority=4,in_port={phy},dl_vlan={lvid} actions=strip_vlan,NORMAL" in (
        _flows(state, BR_PHYS, openflow13=False)
    )


def test_a_vlan_provider_network_keeps_its_translation() -> None:
    """The control: a VLAN network on the same bridge still maps its id both ways."""
    text = BASE.replace('type = "flat"', 'type = "vlan"\nsegmentation_id = 300')
    state = generate_node(parse_scenario(text), "cmp1")
    int_phys = _ofport(state, BR_INT, INT_PHYS)
    phy = _ofport(state, BR_PHYS, PHY_PHYS)
    lvid = state.vm_port("vm1").local_vlan
    assert (
        f"priority=3,in_port={int_phys},dl_vlan=300 "
        f"actions=set_field:{lvid | 0x1000}->vlan_vid,goto_table:58"
    ) in _flows(state, BR_INT)
    assert (
        f"priority=4,in_port={phy},dl_vlan={lvid} actions=set_field:{300 | 0x1000}->vlan_vid,NORMAL"
    ) in _flows(state, BR_PHYS)


def test_a_flat_external_network_leaves_br_ex_untagged() -> None:
    state = generate_node(load_scenario(EXAMPLE), "net1")
    uplink = next(p for p in state.bridge_ports(BR_EX) if p.name == EXTERNAL_NIC)
    assert uplink.tag is None  # a trunk of untagged frames, not an access port of some VLAN
    int_ex = _ofport(state, BR_INT, INT_EX)
    phy_ex = _ofport(state, BR_EX, PHY_EX)
    router = state.routers[0]
    assert router.gateway is not None
    lvid = router.gateway.local_vlan
    assert (
        f"priority=3,in_port={int_ex},vlan_tci=0x0000/0x1fff "
        f"actions=push_vlan:0x8100,set_field:{lvid | 0x1000}->vlan_vid,goto_table:58"
    ) in _flows(state, BR_INT)
    assert f"priority=4,in_port={phy_ex},dl_vlan={lvid} actions=pop_vlan,NORMAL" in _flows(
        state, BR_EX
    )


def test_the_example_puts_both_flat_networks_on_their_own_bridges() -> None:
    scenario = load_scenario(EXAMPLE)
    nets = {n.name: n for n in scenario.networks}
    assert {n.type for n in nets.values()} == {NetworkType.VXLAN, NetworkType.FLAT}
    assert (nets["provider"].physical_network, nets["public"].physical_network) == (
        "physnet1",
        "external",
    )
    # cmp2 has only the provider network's VM: no br-ex there, a flat flow on br-phys.
    cmp2 = generate_node(scenario, "cmp2")
    assert BR_EX not in cmp2.bridges
    assert any("actions=pop_vlan,NORMAL" in f for f in _flows(cmp2, BR_PHYS))
