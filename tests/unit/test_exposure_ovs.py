"""Exposure of ports the native Open vSwitch firewall filters, from br-int's flows.

The node is a real one (tests/realworld/hotsos-focal-ussuri-dvr-ovsfw: a DVR compute node of
an Ussuri cloud with ``firewall_driver = openvswitch``); each expected class below was read by
hand from its ``ovs-ofctl -O OpenFlow13 dump-flows br-int``, whose line the comment names. The
cross-checks run sampled packets through nodetrace's OpenFlow engine, which evaluates the same
flows one packet at a time (conjunctions and recirculations included): the classes and the
engine must never disagree.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from nodetrace.audit.exposure import NodeExposure, exposure
from nodetrace.audit.exposure_check import cross_check
from nodetrace.audit.exposure_ovs_match import masked_intervals
from nodetrace.cli import main
from nodetrace.model.exposure import CT_STATES, Direction, Fate, HeaderClass
from nodetrace.model.header_space import box_contains
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.snapshot.load import load

REALWORLD = Path(__file__).resolve().parents[1] / "realworld"
NODE = REALWORLD / "hotsos-focal-ussuri-dvr-ovsfw"
FLOWS = "ovs-ofctl_-O_OpenFlow13_dump-flows_br-int"
VM = "0e778df8-ca29-490b-8d54-e238b1e0be1c"
VM_IP = int(IPv4Address("192.168.21.18"))
VM_MAC = 0xFA163EA745CB
MEMBER = int(IPv4Address("192.168.21.4"))  # in the port's remote group (table 82 line 97)
STRANGER = int(IPv4Address("192.168.21.2"))


def _point(src: int, dst: int, proto: int, sport: int, dport: int, ct: str, mac: int = 0) -> tuple[int, ...]:  # fmt: skip
    return (src, dst, proto, sport, dport, 0, CT_STATES.index(ct), mac)


def _holding(classes: tuple[HeaderClass, ...], point: tuple[int, ...], family: Family = Family.IPV4) -> HeaderClass:  # fmt: skip
    holding = [c for c in classes if c.family is family and box_contains(c.box, point)]
    assert len(holding) == 1, holding
    return holding[0]


def _lines(c: HeaderClass) -> list[int]:
    """The dump lines of the flows that decided a class."""
    return [
        int(r.source.rsplit(":", 1)[1]) for r in c.rules if r.source.split(":")[0].endswith(FLOWS)
    ]


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return load(str(NODE))


@pytest.fixture(scope="module")
def inbound(snap: Snapshot) -> tuple[HeaderClass, ...]:
    d = exposure(snap, VM).direction(Direction.INBOUND)
    assert d is not None
    return d.classes


@pytest.fixture(scope="module")
def outbound(snap: Snapshot) -> tuple[HeaderClass, ...]:
    d = exposure(snap, VM).direction(Direction.OUTBOUND)
    assert d is not None
    return d.classes


def test_ssh_from_anywhere_is_let_in_by_its_rule_flow(inbound: tuple[HeaderClass, ...]) -> None:
    c = _holding(inbound, _point(STRANGER, VM_IP, 6, 40000, 22, "NEW"))
    assert c.fate is Fate.ALLOWED
    # line 74: table 81 ct(table=82); line 82: table 82 priority 77 ct_state=+new-est,tcp,
    # tp_dst=22 -> ct(commit),output:9
    assert _lines(c)[:2] == [74, 82]
    assert c.rules[1].kind == "flow" and (c.rules[1].chain, c.rules[1].position) == ("table 82", 77)


def test_other_ports_are_let_in_only_from_the_remote_group(
    inbound: tuple[HeaderClass, ...],
) -> None:
    member = _holding(inbound, _point(MEMBER, VM_IP, 17, 40000, 5000, "NEW"))
    assert member.fate is Fate.ALLOWED
    assert 95 in _lines(member)  # conj_id=17: conjunction of the group's source and the port
    stranger = _holding(inbound, _point(STRANGER, VM_IP, 17, 40000, 5000, "NEW"))
    assert stranger.fate is Fate.DENIED
    assert _lines(stranger)[-1] == 110  # table 93 priority 0 drop, via table 82 ct_state=-est


def test_established_traffic_depends_on_the_direction_of_the_connection(
    inbound: tuple[HeaderClass, ...],
) -> None:
    """Replies (+rpl) pass whatever the rules (line 102); packets in a connection's original
    direction pass only if a rule allows them (lines 78-81): a stranger's UDP is unknown."""
    c = _holding(inbound, _point(STRANGER, VM_IP, 17, 40000, 5000, "ESTABLISHED"))
    assert c.fate is Fate.UNKNOWN
    assert "original direction" in c.reason and "reply" in c.reason
    ssh = _holding(inbound, _point(STRANGER, VM_IP, 6, 40000, 22, "ESTABLISHED"))
    assert ssh.fate is Fate.ALLOWED


def test_invalid_packets_are_dropped(inbound: tuple[HeaderClass, ...]) -> None:
    c = _holding(inbound, _point(MEMBER, VM_IP, 6, 40000, 22, "INVALID"))
    assert c.fate is Fate.DENIED  # line 100: table 82 ct_state=+inv+trk -> resubmit(,93)


def test_dhcp_replies_pass_before_conntrack(inbound: tuple[HeaderClass, ...]) -> None:
    for ct in ("NEW", "UNTRACKED"):
        c = _holding(inbound, _point(STRANGER, VM_IP, 17, 67, 68, ct))
        assert c.fate is Fate.ALLOWED and _lines(c) == [72]  # table 81 udp 67->68 output:9


def test_untracked_and_later_fragments_cannot_reach_the_rules(
    inbound: tuple[HeaderClass, ...],
) -> None:
    untracked = _holding(inbound, _point(STRANGER, VM_IP, 6, 40000, 22, "UNTRACKED"))
    assert untracked.fate is Fate.IMPOSSIBLE
    later = (STRANGER, VM_IP, 6, 0, 0, 1, CT_STATES.index("NEW"), 0)
    assert _holding(inbound, later).fate is Fate.IMPOSSIBLE


def test_outbound_checks_the_source_mac_and_address(outbound: tuple[HeaderClass, ...]) -> None:
    own = _holding(outbound, _point(VM_IP, MEMBER, 6, 40000, 443, "NEW", VM_MAC))
    assert own.fate is Fate.ALLOWED  # line 32: table 71 priority 65 -> ct(table=72)
    assert _lines(own)[0] == 32
    spoofed = _holding(
        outbound, _point(int(IPv4Address("10.9.9.9")), MEMBER, 6, 40000, 443, "NEW", VM_MAC)
    )
    assert spoofed.fate is Fate.DENIED  # line 44: table 71 priority 10 -> resubmit(,93)
    other_mac = _holding(outbound, _point(VM_IP, MEMBER, 6, 40000, 443, "NEW", VM_MAC + 1))
    assert other_mac.fate is Fate.DENIED


def test_a_flow_on_a_field_the_walk_does_not_know_makes_packets_unknown(
    outbound: tuple[HeaderClass, ...],
) -> None:
    """Line 36: neighbour advertisements are allowed only for nd_target = the port's own
    address, which is not a dimension of the classes."""
    point = (int(IPv6Address("fe80::f816:3eff:fea7:45cb")), 0, 58, 136, 0, 0, 0, VM_MAC)
    c = _holding(outbound, point, Family.IPV6)
    assert c.fate is Fate.UNKNOWN and "nd_target" in c.reason


@pytest.mark.parametrize(
    "node", ["hotsos-focal-ussuri-dvr-ovsfw", "rdo-yoga-ovsfw-compute", "rdo-caracal-ovsfw-compute"]
)
def test_classes_agree_with_the_openflow_engine_on_real_nodes(node: str) -> None:
    snap = load(str(REALWORLD / node))
    result = cross_check(NodeExposure(snap), 1500, seed=11)
    assert not result.disagreements, result.disagreements[:5]
    assert result.agreed >= 250, vars(result)


def test_audit_exposure_names_flows_in_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(NODE), "--exposure", "--port", VM[:8]]) == 0
    text = capsys.readouterr().out
    assert "firewall openvswitch" in text
    assert "by br-int table 81 priority 90 > br-int table 82 priority 77" in text
    assert main(["audit", str(NODE), "--exposure", "--port", VM[:8], "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    inbound = next(d for d in doc["ports"][0]["directions"] if d["direction"] == "inbound")
    rules = [r for c in inbound["classes"] for r in c["rules"]]
    assert rules and all(r["kind"] == "flow" and r["table"] == "br-int" for r in rules)


@pytest.mark.parametrize(
    ("value", "mask", "width", "expected"),
    [
        (0x400, 0xFC00, 16, ((0x400, 0x7FF),)),  # a port range as Neutron writes it
        (22, 0xFFFF, 16, ((22, 22),)),
        (0, 0, 8, ((0, 255),)),
        (1, 0x5, 4, ((1, 1), (3, 3), (9, 9), (11, 11))),  # bits 0 and 2 fixed
    ],
)
def test_masked_values_become_intervals(value: int, mask: int, width: int, expected: tuple[tuple[int, int], ...]) -> None:  # fmt: skip
    assert masked_intervals(value, mask, width) == expected


def test_a_mask_with_too_many_runs_is_not_listed() -> None:
    assert masked_intervals(0, 1, 32) is None
