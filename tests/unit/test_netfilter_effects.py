"""What a rule's target does is said once (``Target.effect``): the engine and the log explainer
both follow it, and a verdict maps to a trace's outcome one way."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_interface, ip_network

import pytest

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.engine.walk import FromHost, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.model.packet import Family, Packet, TcpFlag
from nodetrace.model.snapshot import NamespaceState, Snapshot, SourceKind
from nodetrace.model.topology import Address, Interface, Route, Topology
from nodetrace.model.trace import Outcome
from nodetrace.model.verdict import Effect, Verdict
from nodetrace.parsers.iptables_save import parse_iptables_save

PATH = bridge_path("br0", physin="tapa", physout="tapb")
UDP = Packet(nw_src=IPv4Address("10.0.0.1"), nw_dst=IPv4Address("10.0.0.2"), nw_proto=17,
             tp_src=5000, tp_dst=53)  # fmt: skip


def _forward(rule: str, *, table: str = "filter", policy: str = "DROP") -> str:
    chains = {"filter": ("INPUT", "FORWARD", "OUTPUT"), "nat": ("PREROUTING", "INPUT", "OUTPUT",
              "POSTROUTING")}[table]  # fmt: skip
    chain = "FORWARD" if table == "filter" else "PREROUTING"
    head = [f"*{table}", *(f":{c} {policy} [0:0]" for c in chains), ":side - [0:0]"]
    return "\n".join([*head, f"-A {chain} -p udp {rule}", "COMMIT"]) + "\n"


@pytest.mark.parametrize(
    ("target", "effect"),
    [
        ("-j ACCEPT", Effect.ACCEPT),
        ("-j DROP", Effect.DROP),
        ("-j RETURN", Effect.RETURN),
        ("-j QUEUE", Effect.QUEUE),
        ("-j side", Effect.JUMP),
        ("-g side", Effect.GOTO),
        ("-j REJECT --reject-with icmp-port-unreachable", Effect.REJECT),
        ('-j LOG --log-prefix "x "', Effect.CONTINUE),
        ("-j MARK --set-xmark 0x1/0xffffffff", Effect.CONTINUE),
        ("-j NFQUEUE --queue-num 3", Effect.QUEUE),
        ("-j DSCP --set-dscp 0x01", Effect.CONTINUE),
        ("-j FROBNICATE", Effect.UNKNOWN),
    ],
)
def test_a_rule_says_what_its_target_does(target: str, effect: Effect) -> None:
    rules = parse_iptables_save(_forward(target), source="t.save")
    chain = rules.chain("filter", "FORWARD")
    assert chain is not None
    assert chain.rules[0].effect is effect


def test_a_nat_target_accepts() -> None:
    rules = parse_iptables_save(
        _forward("-j DNAT --to-destination 10.0.0.9", table="nat"), source="t.save"
    )
    chain = rules.chain("nat", "PREROUTING")
    assert chain is not None and chain.rules[0].effect is Effect.ACCEPT
    assert chain.rules[0].effect.verdict is Verdict.ACCEPT


@pytest.mark.parametrize(
    "target",
    ["-j ACCEPT", "-j DROP", "-j QUEUE", "-j REJECT", "-j LOG", "-j side", "-g side", "-j RETURN"],
)
def test_the_engine_follows_the_targets_effect(target: str) -> None:
    """A terminal effect is the engine's verdict; anything else falls to the DROP policy (the
    user chain ``side`` is empty, so a jump comes back and a goto ends at the policy)."""
    rules = parse_iptables_save(_forward(target), source="t.save")
    chain = rules.chain("filter", "FORWARD")
    assert chain is not None
    expected = chain.rules[0].effect.verdict or Verdict.DROP
    result = NetfilterEngine(rules).run(UDP, PATH)
    assert result.verdict is expected
    assert result.trace.outcome is Outcome.of(expected)


@pytest.mark.parametrize(
    ("verdict", "outcome"),
    [
        (Verdict.ACCEPT, Outcome.ACCEPTED),
        (Verdict.DROP, Outcome.DROPPED),
        (Verdict.REJECT, Outcome.REJECTED),
        (Verdict.QUEUE, Outcome.UNKNOWN),
        (Verdict.UNKNOWN, Outcome.UNKNOWN),
    ],
)
def test_a_verdict_is_one_outcome(verdict: Verdict, outcome: Outcome) -> None:
    assert Outcome.of(verdict) is outcome


@pytest.mark.parametrize(
    ("word", "effect"),
    [("ACCEPT", Effect.ACCEPT), ("drop", Effect.DROP), ("NFQUEUE", Effect.QUEUE),
     ("GOTO", Effect.GOTO), ("continue", Effect.CONTINUE), ("", Effect.UNKNOWN),
     ("0xfffffffb", Effect.UNKNOWN)],
)  # fmt: skip
def test_a_traced_verdict_word_reads_as_an_effect(word: str, effect: Effect) -> None:
    assert Effect.of_word(word) is effect


def test_a_walk_stopped_by_reject_says_rejected() -> None:
    """The whole-node walk reads the engine's verdict through the same mapping as a trace."""
    topology = Topology(
        (Interface("eth0", ifindex=2, mac="02:00:00:00:00:02",
                   addresses=(Address(ip_interface("192.0.2.10/24")),)),),
        routes=(Route(Family.IPV4, ip_network("0.0.0.0/0"), gateway=IPv4Address("192.0.2.1"),
                      dev="eth0"),
                Route(Family.IPV4, ip_network("192.0.2.0/24"), dev="eth0", scope="link")),
    )  # fmt: skip
    save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    save += "-A OUTPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n"
    snap = Snapshot("hand-made", SourceKind.FOLDER, topology=topology,
                    namespaces=(NamespaceState(iptables=parse_iptables_save(save, source="s")),))  # fmt: skip
    packet = Packet(nw_dst=IPv4Address("203.0.113.7"), nw_proto=6, tp_src=40000, tp_dst=80,
                    tcp_flags=TcpFlag.SYN)  # fmt: skip
    trace = walk(snap, WalkRequest(packet, FromHost()), engines_for(snap))
    assert trace.outcome is Outcome.REJECTED
    assert trace.reason.startswith("rejected by rule 1 of filter OUTPUT (OUTPUT)")
