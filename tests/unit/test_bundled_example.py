"""The bundled example (``./run-example``) fits together: its ruleset is the one that produced its
log. Every logged packet, explained against the bundled ruleset as ``nodetrace log`` does, is
what the netfilter engine predicts for the same packet crossing the same devices, and every
accepted packet's MAC is one the anti-spoofing rule it passed names. The files are regenerated
by ``bench/regenerate_example.py`` (src/nodetrace/examples/SOURCES.md)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.errors import DiagnosticSink
from nodetrace.model.netfilter import MacMatch, Ruleset
from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.model.trace_diff import diff
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import open_log

EXAMPLES = Path(str(files("nodetrace") / "examples"))
LOG = EXAMPLES / "lab-legacy-trace.dmesg"
RULES = EXAMPLES / "lab-rules.iptables-save"


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return parse_iptables_save(RULES.read_text(), source=RULES.name)


@pytest.fixture(scope="module")
def packets(ruleset: Ruleset) -> list[ObservedPacket]:
    sink = DiagnosticSink()
    analysis = Analysis(book=RuleBook({ruleset.family: ruleset}, sources=(RULES.name,)), sink=sink)
    source = open_log(str(LOG), sink)
    try:
        found = list(analysis.packets(source))
    finally:
        source.close()
    assert not sink.items, [str(d) for d in sink.items]
    return found


def _steps(obs: ObservedPacket) -> list[NetfilterStep]:
    return [s for s in obs.trace.steps if isinstance(s, NetfilterStep)]


def test_the_log_tells_the_story_sources_md_tells(packets: list[ObservedPacket]) -> None:
    outcomes = [obs.trace.outcome for obs in packets]
    assert outcomes == [Outcome.ACCEPTED, Outcome.ACCEPTED, Outcome.DROPPED]
    ping, reply, spoofed = (obs.trace.packet for obs in packets)
    assert ping is not None and reply is not None and spoofed is not None
    assert (ping.icmp_type, reply.icmp_type, spoofed.icmp_type) == (8, 0, 8)
    assert (reply.nw_src, reply.nw_dst) == (ping.nw_dst, ping.nw_src)
    assert str(spoofed.nw_src) == "10.0.0.5"
    dropped_by = packets[2].conclusion.deciding or ""
    assert dropped_by.startswith("filter:neutron-openvswi-s"), dropped_by


def test_every_step_fits_the_bundled_ruleset(packets: list[ObservedPacket]) -> None:
    for obs in packets:
        steps = _steps(obs)
        assert steps
        misfits = [(s.chain, s.number, s.misfit) for s in steps if s.misfit is not None]
        assert not misfits, f"packet {obs.index}: {misfits}"
        assert all(s.rule is not None for s in steps if s.kind.value == "rule"), obs.index


def test_the_engine_predicts_every_logged_packet(
    ruleset: Ruleset, packets: list[ObservedPacket]
) -> None:
    engine = NetfilterEngine(ruleset)  # one engine: the reply finds the ping's connection
    for obs in packets:
        steps = _steps(obs)
        forward = next(s for s in steps if s.physout)
        assert obs.trace.packet is not None and steps[0].physin is not None
        path = bridge_path(steps[0].in_dev, physin=steps[0].physin, physout=forward.physout or "")
        simulated = engine.run(obs.trace.packet, path).trace
        difference = diff(obs.trace, simulated)
        assert difference.same, f"packet {obs.index}: {difference}"


def test_accepted_packets_come_from_the_mac_their_anti_spoofing_rule_allows(
    packets: list[ObservedPacket],
) -> None:
    for obs in (o for o in packets if o.trace.outcome is Outcome.ACCEPTED):
        assert obs.trace.packet is not None
        allowed = [
            m.source.value
            for s in _steps(obs)
            if s.rule is not None
            for m in s.rule.matches
            if isinstance(m, MacMatch) and m.source is not None and not m.source.negated
        ]
        assert allowed, f"packet {obs.index} passed no anti-spoofing rule"
        assert set(allowed) == {obs.trace.packet.dl_src}, f"packet {obs.index}"
