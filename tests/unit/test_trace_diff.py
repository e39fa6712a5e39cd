"""Observed against simulated traces: the first step where they part, and why."""

from __future__ import annotations

from dataclasses import replace

from nodetrace.model.packet import Family
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    Hook,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    StepKind,
    Trace,
)
from nodetrace.model.trace_diff import diff


def nf(chain: str, number: int, kind: StepKind = StepKind.RULE, **kw: object) -> NetfilterStep:
    fields: dict[str, object] = {
        "in_dev": "qbr1",
        "out_dev": "qbr1",
        "physin": "tap1",
        "physout": "qvb1",
        "hook": Hook.FORWARD,
    }
    fields.update(kw)
    return NetfilterStep(Family.IPV4, "filter", chain, kind, number, **fields)  # type: ignore[arg-type]


BRIDGE_PASS = (
    nf("FORWARD", 1),
    nf("neutron-filter-top", 1),
    nf("neutron-filter-top", 1, StepKind.RETURN),
    nf("FORWARD", 3),
    nf("neutron-openvswi-sg-chain", 2),
    nf("neutron-openvswi-i1", 4),
)


def test_identical_traces_agree_and_say_how_much() -> None:
    trace = Trace(BRIDGE_PASS, Outcome.ACCEPTED)
    result = diff(trace, trace)
    assert result.same
    assert result.index is None
    assert str(result) == "the traces agree (6 steps, accepted)"


def test_trace_diff_method_is_the_same_comparison() -> None:
    observed = Trace(BRIDGE_PASS, Outcome.ACCEPTED)
    simulated = Trace(BRIDGE_PASS[:3], Outcome.ACCEPTED)
    assert observed.diff(simulated) == diff(observed, simulated)


def test_a_divergence_in_the_middle_is_named_with_its_position_counted_from_one() -> None:
    observed = Trace(BRIDGE_PASS, Outcome.DROPPED)
    simulated_steps = list(BRIDGE_PASS)
    simulated_steps[4] = nf("neutron-openvswi-sg-chain", 3)
    result = diff(observed, Trace(tuple(simulated_steps), Outcome.DROPPED))
    assert not result.same
    assert result.index == 5
    assert result.observed == BRIDGE_PASS[4]
    assert result.simulated == simulated_steps[4]
    assert str(result) == (
        "step 5: the rule number differs: observed filter:neutron-openvswi-sg-chain:rule:2 "
        "IN=qbr1 OUT=qbr1 PHYSIN=tap1 PHYSOUT=qvb1, simulated "
        "filter:neutron-openvswi-sg-chain:rule:3 IN=qbr1 OUT=qbr1 PHYSIN=tap1 PHYSOUT=qvb1"
    )


def test_a_shorter_simulation_is_named_at_the_first_step_it_lacks() -> None:
    result = diff(Trace(BRIDGE_PASS, Outcome.ACCEPTED), Trace(BRIDGE_PASS[:4], Outcome.ACCEPTED))
    assert (result.same, result.index, result.simulated) == (False, 5, None)
    assert result.observed == BRIDGE_PASS[4]
    assert "where the simulation had ended" in result.reason


def test_a_shorter_observation_is_named_too() -> None:
    result = diff(Trace(BRIDGE_PASS[:2], Outcome.ENDS), Trace(BRIDGE_PASS, Outcome.ACCEPTED))
    assert (result.same, result.index, result.observed) == (False, 3, None)
    assert result.simulated == BRIDGE_PASS[2]
    assert "where the observed trace had ended" in result.reason


def test_simulated_steps_the_kernel_would_not_log_are_skipped() -> None:
    untraced = nf("PREROUTING", 1, hook=Hook.PREROUTING, traced=False)
    simulated = Trace((untraced, *BRIDGE_PASS), Outcome.ACCEPTED)
    assert diff(Trace(BRIDGE_PASS, Outcome.ACCEPTED), simulated).same


def test_netfilter_steps_differ_on_each_field_the_kernel_prints() -> None:
    step = BRIDGE_PASS[0]
    changes = {
        "family": {"family": Family.IPV6},
        "table": {"table": "mangle"},
        "chain": {"chain": "INPUT"},
        "kind": {"kind": StepKind.POLICY},
        "rule number": {"number": 2},
        "hook": {"hook": Hook.INPUT},
        "input device": {"in_dev": "qbr2"},
        "output device": {"out_dev": "eth0"},
        "bridge input port": {"physin": "tap2"},
        "bridge output port": {"physout": "tap2"},
    }
    for name, change in changes.items():
        other = replace(step, **change)  # type: ignore[arg-type]
        result = diff(Trace((step,), Outcome.ENDS), Trace((other,), Outcome.ENDS))
        assert (result.same, result.index) == (False, 1), name
        assert result.reason.startswith(f"the {name} differs:"), result.reason


def test_a_field_one_source_does_not_carry_is_not_compared() -> None:
    # nf_tables names rules by handle, a legacy log by number; a log may not know the hook.
    legacy = replace(BRIDGE_PASS[0], hook=None, handle=None)
    simulated = replace(BRIDGE_PASS[0], handle=7)
    assert diff(Trace((legacy,), Outcome.ENDS), Trace((simulated,), Outcome.ENDS)).same
    nft = replace(BRIDGE_PASS[0], number=None, handle=7, physin=None, physout=None, verdict="JUMP")
    jump = replace(simulated, verdict="JUMP:neutron-filter-top")
    assert diff(Trace((nft,), Outcome.ENDS), Trace((jump,), Outcome.ENDS)).same
    other = replace(nft, handle=8)
    result = diff(Trace((other,), Outcome.ENDS), Trace((jump,), Outcome.ENDS))
    assert result.reason.startswith("the rule handle differs:")
    accept = replace(nft, verdict="ACCEPT")
    result = diff(Trace((accept,), Outcome.ENDS), Trace((jump,), Outcome.ENDS))
    assert result.reason.startswith("the verdict differs:")


def of(table: int, priority: int | None, match: str, actions: str) -> OpenFlowStep:
    return OpenFlowStep("br-int", table, priority, match, actions)


def test_openflow_steps_compare_bridge_table_priority_match_and_actions() -> None:
    step = of(0, 10, "in_port=2", "resubmit(,24)")
    changes = {
        "bridge": replace(step, bridge="br-tun"),
        "table": replace(step, table=1),
        "priority": replace(step, priority=9),
        "match": replace(step, match="in_port=3"),
        "actions": replace(step, actions="drop"),
    }
    for name, other in changes.items():
        result = diff(Trace((step,), Outcome.DROPPED), Trace((other,), Outcome.DROPPED))
        assert result.reason.startswith(f"the {name} differs:"), result.reason
    # The cookie and where the flow was read from are not what OVS's trace is compared on.
    same = replace(step, cookie=0x1234, note="from the dump")
    assert diff(Trace((step,), Outcome.DROPPED), Trace((same,), Outcome.DROPPED)).same


def test_a_table_miss_differs_from_a_priority_zero_flow() -> None:
    miss = of(24, None, "", "drop")
    catch_all = of(24, 0, "", "drop")
    result = diff(Trace((miss,), Outcome.DROPPED), Trace((catch_all,), Outcome.DROPPED))
    assert str(result) == (
        "step 1: the priority differs: observed br-int table 24 (no match), "
        "simulated br-int table 24 (priority 0, any: drop)"
    )


def test_steps_of_different_layers_differ() -> None:
    result = diff(
        Trace((of(0, 10, "in_port=2", "NORMAL"),), Outcome.DELIVERED),
        Trace((BRIDGE_PASS[0],), Outcome.DELIVERED),
    )
    assert result.index == 1
    assert result.reason.startswith("observed br-int table 0 (priority 10, in_port=2: NORMAL)")


def test_device_steps_are_compared_only_when_both_traces_have_them() -> None:
    flows = (of(0, 10, "in_port=2", "NORMAL"),)
    walked = Trace((DeviceStep(DeviceAction.VETH, "qvo1"), *flows), Outcome.DELIVERED)
    assert diff(Trace(flows, Outcome.DELIVERED), walked).same
    other = Trace((DeviceStep(DeviceAction.VETH, "qvo2"), *flows), Outcome.DELIVERED)
    result = diff(other, walked)
    assert (result.index, result.reason) == (
        1,
        "the device differs: observed veth qvo2, simulated veth qvo1",
    )


def test_outcomes_differ_after_agreeing_steps() -> None:
    result = diff(Trace(BRIDGE_PASS, Outcome.DROPPED), Trace(BRIDGE_PASS, Outcome.ACCEPTED))
    assert not result.same
    assert (result.index, result.observed, result.simulated) == (None, None, None)
    assert str(result) == (
        "the 6 steps agree, but the packet was observed dropped and simulated accepted"
    )


def test_an_observation_that_does_not_say_the_fate_is_not_a_difference() -> None:
    for undecided in (Outcome.ENDS, Outcome.UNKNOWN):
        result = diff(Trace(BRIDGE_PASS, undecided), Trace(BRIDGE_PASS, Outcome.DROPPED))
        assert result.same
        assert str(result) == "the traces agree (6 steps)"


def test_a_simulation_that_cannot_say_the_fate_differs() -> None:
    result = diff(Trace(BRIDGE_PASS, Outcome.DROPPED), Trace(BRIDGE_PASS, Outcome.UNKNOWN))
    assert not result.same


def test_an_openflow_10_dump_spells_some_actions_otherwise() -> None:
    # ofproto/trace prints the flow as added (OpenFlow 1.3); ovs-ofctl's default dump cannot.
    traced = of(0, 9, "in_port=3", "goto_table:25")
    dumped = of(0, 9, "in_port=3", "resubmit(,25)")
    assert diff(Trace((traced,), Outcome.DROPPED), Trace((dumped,), Outcome.DROPPED)).same
    tagged = of(4, 1, "tun_id=0x7a0", "push_vlan:0x8100,set_field:4097->vlan_vid,goto_table:10")
    dumped_tagged = of(4, 1, "tun_id=0x7a0", "mod_vlan_vid:1,resubmit(,10)")
    assert diff(Trace((tagged,), Outcome.ENDS), Trace((dumped_tagged,), Outcome.ENDS)).same
    other = of(0, 9, "in_port=3", "resubmit(,24)")
    result = diff(Trace((traced,), Outcome.DROPPED), Trace((other,), Outcome.DROPPED))
    assert result.reason.startswith("the actions differs:")
