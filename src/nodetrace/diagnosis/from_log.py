"""Each packet of a TRACE log, diagnosed: the walk request is built from what the log saw.

A log record carries the packet's headers (its dump) and the devices netfilter saw it on. The
packet is read from the first record's dump; it starts where that record says it came in:
``PHYSIN=`` (a Linux bridge port: it enters the bridge there), else ``IN=`` (a routed device),
else the host itself (a packet the node sends, first seen in OUTPUT). Its connection state is
read from the rules it matched, when one tests it (``--ctstate ESTABLISHED``), because a log
does not print it. What cannot be derived is said in the diagnosis' notes, and a packet whose
start is not among the snapshot's devices is *unknown*, naming the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from nodetrace.diagnosis.catalogue import CauseId
from nodetrace.diagnosis.counters import DeviceCounters
from nodetrace.diagnosis.diagnose import diagnose
from nodetrace.diagnosis.facts import find_device, matched_states
from nodetrace.diagnosis.log_entry import entry, with_protocol
from nodetrace.engine.walk import Engines, WalkRequest
from nodetrace.errors import DiagnosticSink
from nodetrace.model.diagnosis import Cause, Diagnosis, Layer
from nodetrace.model.packet import Packet
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.model.trace import NetfilterStep, Outcome, PacketDump, StepKind, Trace
from nodetrace.parsers.trace_kernel_log import packet_from_dump
from nodetrace.snapshot.parts import snapshot_ipsets, snapshot_rulesets
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rules_input import load_rulebook
from nodetrace.tracelog.source import open_log

_STATE_ORDER = ("INVALID", "ESTABLISHED", "RELATED", "NEW", "UNTRACKED")
"""When a matched rule allows several states, the one taken (the first of them here): a
packet matching ``RELATED,ESTABLISHED`` is far more often established."""


def observed_packets(
    snapshot: Snapshot,
    log: str | Path,
    *,
    netns: str = MAIN_NS,
    sink: DiagnosticSink | None = None,
) -> Iterator[ObservedPacket]:
    """The packets of ``log``, explained with the snapshot's own rules (namespace ``netns``)."""
    sink = sink if sink is not None else DiagnosticSink()
    book = load_rulebook(
        [],
        [],
        sink,
        taken=snapshot_rulesets(snapshot, netns),
        taken_ipsets=snapshot_ipsets(snapshot, netns),
        taken_from=snapshot.source,
    )
    source = open_log(str(log), sink)
    try:
        yield from Analysis(book=book, sink=sink).packets(source)
    finally:
        source.close()


PROTOCOL_NOT_KNOWN = (
    "the log's packet dump does not print the IP protocol (xtables-monitor's does not), and "
    "no rule the packet matched names it: simulated without one, so no rule testing a "
    "protocol or port matches it"
)


def has_protocol(dump: PacketDump) -> bool:
    """The dump prints the IP protocol (``PROTO=``), without which rules cannot be matched."""
    return dump.get("PROTO") is not None


def connection_state(observed: Trace) -> tuple[str | None, str]:
    """The conntrack state the rules the packet matched imply, and the rule that says it."""
    for step in observed.steps:
        if not isinstance(step, NetfilterStep) or step.kind is not StepKind.RULE:
            continue
        states = matched_states(step.rule)
        for state in _STATE_ORDER:
            if state in states and step.rule is not None:
                return state.lower(), step.rule.text
    return None, ""


def request_for(
    snapshot: Snapshot, obs: ObservedPacket, netns: str = MAIN_NS
) -> tuple[WalkRequest | None, tuple[str, ...]]:
    """The walk request a logged packet implies, and notes on how it was derived (or why it
    could not be)."""
    first = next((s for s in obs.trace.steps if isinstance(s, NetfilterStep)), None)
    dump = obs.header
    if first is None or dump is None:
        return None, ("the log shows no packet headers for this packet",)
    notes: list[str] = [f"packet from the log's first record ({obs.source}:{obs.first_line})"]
    found: Packet | None = packet_from_dump(dump)
    if not has_protocol(dump):
        found, how = with_protocol(packet_from_dump(dump), obs.trace)
        if found is None:
            found = packet_from_dump(dump)
            notes.append(PROTOCOL_NOT_KNOWN)
        else:
            notes.append(f"the dump prints no protocol: {how}")
    packet = found
    assert packet is not None
    if packet.family is None or packet.nw_dst is None:
        return None, (*notes, "the logged headers carry no IP destination")
    named = first.physin or first.in_dev
    if named and find_device(snapshot, named, netns) is None:
        ns = f" in namespace {netns}" if netns != MAIN_NS else ""
        return None, (
            *notes,
            f"device {named} is not in the snapshot{ns} (a log of another node, or the "
            "device was removed since?)",
        )
    start, how = entry(snapshot, obs.trace, first, packet, netns)
    notes.append(how)
    if start is None:
        return None, tuple(notes)
    state, said_by = connection_state(obs.trace)
    if state is not None:
        notes.append(f"connection state {state.upper()}: the packet matched {said_by}")
    else:
        notes.append("connection state: as the snapshot's conntrack decides (the log does not say)")
    if packet.ip_len is not None:
        notes.append(f"the packet is {packet.ip_len} bytes long (the logged LEN=)")
    return WalkRequest(packet=packet, start=start, ct_state=state), tuple(notes)


class PacketDiagnoser:
    """Diagnoses logged packets one at a time against one snapshot, compiling its engines
    once per connection state (for a live capture: call it with each packet as it comes)."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        netns: str = MAIN_NS,
        device_counters: DeviceCounters | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.netns = netns
        self.device_counters = device_counters
        """How much device counters grew while the packets were captured (``diagnose``)."""
        self._engines: dict[str | None, Engines] = {}

    def __call__(self, obs: ObservedPacket) -> Diagnosis:
        from nodetrace.engine.walk_adapters import engines_for

        request, notes = request_for(self.snapshot, obs, self.netns)
        if request is None:
            return _cannot_predict(obs, notes)
        engines = self._engines.get(request.ct_state)
        if engines is None:
            engines = engines_for(self.snapshot, ct_state=request.ct_state)
            self._engines[request.ct_state] = engines
        diagnosis = diagnose(
            self.snapshot,
            observed=obs.trace,
            request=request,
            engines=engines,
            notes=notes,
            device_counters=self.device_counters,
        )
        if PROTOCOL_NOT_KNOWN in notes and not diagnosis.agrees:
            diagnosis = _protocol_needed(diagnosis)
        return diagnosis


def diagnose_packets(
    snapshot: Snapshot,
    packets: Iterable[ObservedPacket],
    *,
    netns: str = MAIN_NS,
    device_counters: DeviceCounters | None = None,
) -> Iterator[tuple[ObservedPacket, Diagnosis]]:
    """Each logged packet with its diagnosis (engines compiled once per connection state)."""
    diagnoser = PacketDiagnoser(snapshot, netns=netns, device_counters=device_counters)
    for obs in packets:
        yield obs, diagnoser(obs)


def diagnose_log(
    snapshot: Snapshot,
    log: str | Path,
    *,
    netns: str = MAIN_NS,
    sink: DiagnosticSink | None = None,
) -> Iterator[Diagnosis]:
    """Each packet of the TRACE log ``log`` diagnosed against ``snapshot`` (namespace
    ``netns``). Malformed lines go to ``sink``; an unreadable log raises
    :class:`~nodetrace.errors.InputError`."""
    packets = observed_packets(snapshot, log, netns=netns, sink=sink)
    for _, diagnosis in diagnose_packets(snapshot, packets, netns=netns):
        yield diagnosis


def _protocol_needed(diagnosis: Diagnosis) -> Diagnosis:
    """A divergence of a packet simulated without its protocol says nothing of the node."""
    parted = diagnosis.divergence
    evidence = (str(parted),) if parted is not None else ()
    cause = Cause(
        CauseId.UNKNOWN.value,
        "the log does not print the packet's protocol, and the simulated path parts from the "
        "logged one: the data cannot tell why",
        (*evidence, PROTOCOL_NOT_KNOWN),
    )
    return replace(diagnosis, layer=Layer.UNKNOWN, location="", cause=cause)


def _cannot_predict(obs: ObservedPacket, notes: tuple[str, ...]) -> Diagnosis:
    why = notes[-1] if notes else "the log does not say where the packet entered"
    predicted = Trace((), Outcome.UNKNOWN, None, f"no prediction: {why}")
    cause = Cause(
        CauseId.UNKNOWN.value,
        f"no prediction for this packet: {why}",
        (f"{obs.source}:{obs.first_line}-{obs.last_line}", *notes),
    )
    return Diagnosis(obs.trace, predicted, None, Layer.UNKNOWN, "", cause, notes)
