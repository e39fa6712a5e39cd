"""A whole TRACE log diagnosed against its node's snapshot: the bundled two-node example's
cmp2 log (three packets the lab sent, one dropped by web2's security group) and copies of its
snapshot changed after the log was taken."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from nodetrace.api import explain_log
from nodetrace.diagnosis import CauseId, Layer, diagnose, diagnose_log
from nodetrace.diagnosis.from_log import connection_state, observed_packets, request_for
from nodetrace.diagnosis.log_entry import entry, with_protocol
from nodetrace.engine.walk import FromInterface, ReceivedOn
from nodetrace.model.packet import Family, Packet
from nodetrace.model.trace import Hook, NetfilterStep, Outcome, StepKind, Trace
from nodetrace.parsers.trace_kernel_log import packet_from_dump
from tests.conftest import DATA
from tests.unit.diagnosis_faults import (
    CMP2_LOG,
    DB2_MAC,
    EXAMPLES,
    host,
    insert_rule,
    load,
    node,
    remove_lines,
    web2_to_db2,
)

TRACELOG = DATA / "tracelog"
FALLBACK = (
    '-A neutron-openvswi-sg-fallback -m comment --comment "Default drop rule for unmatched '
    'traffic." -j DROP'
)


def test_the_logged_packets_agree_with_their_snapshot_and_the_drop_is_named(
    tmp_path: Path,
) -> None:
    snap = load(node(tmp_path))
    found = list(diagnose_log(snap, CMP2_LOG))
    assert len(found) == 3
    assert all(d.agrees for d in found)
    accepted, dropped, ping = found
    assert accepted.cause is None and ping.cause is None
    assert dropped.cause is not None and dropped.cause.id == CauseId.RULE_DROP
    assert dropped.layer is Layer.NETFILTER
    assert dropped.location == f"filter neutron-openvswi-sg-fallback rule 1: {FALLBACK}"
    # Predicted from where the log saw each packet enter: db2's bridge, from OVS's side.
    assert accepted.predicted.outcome is Outcome.DELIVERED
    assert "starts entering qbr79645311-20 on qvb79645311-20" in " ".join(accepted.notes)


def test_rules_changed_since_the_log_are_flagged(tmp_path: Path) -> None:
    folder = node(tmp_path)
    insert_rule(folder, "neutron-openvswi-i79645311-2", "-p tcp -m tcp --dport 5432 -j DROP")
    snap = load(folder)
    first = next(iter(diagnose_log(snap, CMP2_LOG)))
    assert not first.agrees
    assert first.cause is not None and first.cause.id == CauseId.RULES_CHANGED
    assert first.layer is Layer.NETFILTER
    assert first.location.startswith("filter neutron-openvswi-i79645311-2")
    assert first.predicted.outcome is Outcome.DROPPED


def test_a_log_of_another_node_cannot_be_predicted_and_says_why(tmp_path: Path) -> None:
    snap = load(node(tmp_path))
    first = next(iter(diagnose_log(snap, EXAMPLES / "two-nodes-cmp1.trace.log")))
    assert not first.compared_with_observation and not first.agrees
    assert first.cause is not None and first.cause.id == CauseId.UNKNOWN
    assert "device tapbf944fec-1e is not in the snapshot" in first.cause.title


def test_an_observation_that_stops_after_prerouting_on_a_bridge(tmp_path: Path) -> None:
    """The node logged PREROUTING only (the bridge did not forward); the snapshot says the
    frame goes on to FORWARD: the bridge is named, and the outputs that would tell why."""
    lines = CMP2_LOG.read_text().splitlines()
    log = tmp_path / "kern.log"
    log.write_text("\n".join(x for x in lines[:17] if ":PREROUTING:" in x or "-PREROUTING:" in x))
    snap = load(node(tmp_path / "snap"))
    (d,) = diagnose_log(snap, log)
    assert not d.agrees and d.cause is not None
    assert d.cause.id == CauseId.UNKNOWN
    assert (d.layer, d.location) == (Layer.BRIDGE, "qbr79645311-20 after PREROUTING")
    assert "bridge fdb show br qbr79645311-20" in d.cause.confirm


def test_a_capture_that_saw_nothing_parts_at_the_first_step(tmp_path: Path) -> None:
    snap = load(node(tmp_path))
    nothing = Trace((), Outcome.ENDS)
    d = diagnose(snap, observed=nothing, request=web2_to_db2(snap))
    assert not d.agrees and d.cause is not None and d.cause.id == CauseId.UNKNOWN
    assert d.divergence is not None and d.divergence.index == 1


def test_the_request_is_built_from_the_first_record(tmp_path: Path) -> None:
    snap = load(node(tmp_path))
    obs = next(iter(observed_packets(snap, CMP2_LOG)))
    request, notes = request_for(snap, obs)
    assert request is not None
    assert str(request.packet.nw_src) == "10.20.0.10" and request.packet.tp_dst == 5432
    assert request.packet.ip_len == 40  # LEN= of the record
    assert request.ct_state is None  # no rule the packet matched tests the state
    assert any("PHYSIN=" in n for n in notes)
    assert "the packet is 40 bytes long (the logged LEN=)" in notes


def test_the_connection_state_comes_from_a_matched_state_rule(tmp_path: Path) -> None:
    """A packet that matched ``--state RELATED,ESTABLISHED`` is simulated as established."""
    snap = load(node(tmp_path))
    ruleset = snap.main.iptables
    assert ruleset is not None
    chain = ruleset.chain("filter", "neutron-openvswi-i79645311-2")
    assert chain is not None
    rule = chain.rules[0]
    assert "--state RELATED,ESTABLISHED" in rule.text
    step = NetfilterStep(
        family=Family.IPV4, table="filter", chain=rule.chain, kind=StepKind.RULE, number=1,
        hook=Hook.FORWARD, rule=rule,
    )  # fmt: skip
    assert connection_state(Trace((step,), Outcome.ENDS)) == ("established", rule.text)
    # A chain's end (return) is no match: it says nothing of the state.
    ended = dataclasses.replace(step, kind=StepKind.RETURN)
    assert connection_state(Trace((ended,), Outcome.ENDS)) == (None, "")


def test_a_monitor_dump_without_protocol_takes_it_from_a_matched_rule() -> None:
    """xtables-monitor prints no IP protocol; the TRACE rule ``-p icmp`` the packet matched
    says it (and the echo request is said to be assumed)."""
    log = TRACELOG / "lab-capture-nft.xtables-monitor"
    rules = TRACELOG / "lab-capture-nft.iptables-save"
    obs = next(iter(explain_log([log], rules=[rules])))
    assert obs.header is not None and obs.header.get("PROTO") is None
    packet, how = with_protocol(packet_from_dump(obs.header), obs.trace)
    assert packet is not None
    assert (packet.nw_proto, packet.icmp_type) == (1, 8)
    assert how.startswith("protocol icmp: the packet matched -A PREROUTING -p icmp -j TRACE")
    assert "an echo request (8) assumed" in how


def test_where_a_record_without_a_bridge_port_entered(tmp_path: Path) -> None:
    """nf_tables names the bridge but not the port: the port is the bridge's other one when a
    ``--physdev-out`` rule says where the packet went; ``IN=`` an OVS internal port with a
    frame addressed to it is the host stack receiving."""
    snap = load(node(tmp_path))
    ruleset = snap.main.iptables
    assert ruleset is not None
    chain = ruleset.chain("filter", "neutron-openvswi-sg-chain")
    assert chain is not None
    to_db2 = next(r for r in chain.rules if "--physdev-out tap79645311-20" in r.text)
    bridge = "qbr79645311-20"
    step = NetfilterStep(
        family=Family.IPV4, table="filter", chain=to_db2.chain, kind=StepKind.RULE,
        number=to_db2.position, hook=Hook.FORWARD, in_dev=bridge, out_dev=bridge, rule=to_db2,
    )  # fmt: skip
    packet = Packet(dl_dst=DB2_MAC)
    start, how = entry(snap, Trace((step,), Outcome.ENDS), step, packet, "")
    assert start == FromInterface("qvb79645311-20")
    assert how.endswith("it left by tap79645311-20, and qbr79645311-20's other port is "
                        "qvb79645311-20")  # fmt: skip
    host = NetfilterStep(
        family=Family.IPV4, table="raw", chain="PREROUTING", kind=StepKind.RULE, number=1,
        hook=Hook.PREROUTING, in_dev="br-phys",
    )  # fmt: skip
    start, _ = entry(snap, Trace((host,), Outcome.ENDS), host, packet, "")
    assert start == ReceivedOn("br-phys")


def test_a_snapshot_taken_without_the_trace_rule_is_named(tmp_path: Path) -> None:
    folder = node(tmp_path)
    assert remove_lines(host(folder, "iptables-legacy-save.txt"), "-A PREROUTING -j TRACE") == 1
    remove_lines(host(folder, "iptables-save.txt"), "-A PREROUTING -j TRACE")
    first = next(iter(diagnose_log(load(folder), CMP2_LOG)))
    assert first.cause is not None and first.cause.id == CauseId.RULES_CHANGED
    assert first.location == "raw PREROUTING rule 2"
    assert "no -j TRACE rule" in first.cause.evidence[-1]
