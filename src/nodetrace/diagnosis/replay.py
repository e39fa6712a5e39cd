"""``nodetrace log --rules``: replay each logged packet through the netfilter engine with the
rules given, and flag the packets whose logged path contradicts them.

A log and the rules it is read with may not belong together: the agent rewrote the chains
since the log was taken, or the rules are another node's. Resolving each TRACE line to a rule
catches only what does not fit at all (a number past a chain's end, a chain that does not
exist: :attr:`~nodetrace.model.trace.NetfilterStep.misfit`). Replaying catches the rest: the
packet of the log's first record is run through the hooks the log shows it crossing, with the
devices each hook saw, and the simulated steps are compared with the logged ones
(:func:`~nodetrace.model.trace_diff.diff`).

A log does not carry a packet's connection state, and the ``nat`` table sees only the first
packet of a connection. The state is read from the rules the packet matched when one tests it
(``--ctstate ESTABLISHED``), else the engine's own connection table decides (the packets are
replayed in the log's order, so a reply finds its connection); and a difference that only a
connection state explains (a rule testing the state, a ``nat`` step present on one side only)
is not called a contradiction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nodetrace.diagnosis.facts import matched_states
from nodetrace.diagnosis.from_log import connection_state, has_protocol
from nodetrace.engine.conntrack import STATE_WORDS
from nodetrace.engine.netfilter import CtFacts, HookPath, NetfilterEngine, NodeFacts
from nodetrace.model.netfilter import HookDevices, MarkMatch, Rule
from nodetrace.model.packet import Family
from nodetrace.model.trace import Hook, NetfilterStep, Outcome, PacketDump, Step, Trace
from nodetrace.model.trace_diff import TraceDiff, describe, diff
from nodetrace.parsers.trace_kernel_log import packet_from_dump
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.rulebook import RuleBook


@dataclass(frozen=True, slots=True)
class Contradiction:
    """A logged packet whose path the rules given do not produce."""

    index: int
    """The packet's number in the log's output."""
    step: int | None
    """The first step (from 1) where the log and the replay part; ``None``: only the fate."""
    reason: str
    """One sentence: what the log shows against what the rules give."""

    def __str__(self) -> str:
        return self.reason


class Replay:
    """Replays the packets of one log with one set of rules (an engine per family, kept for
    the whole log so that conntrack follows connections across packets)."""

    def __init__(self, book: RuleBook) -> None:
        self.book = book
        self._engines: dict[Family, NetfilterEngine] = {}
        self.replayed = 0
        self.contradicting = 0

    def check(self, obs: ObservedPacket) -> Contradiction | None:
        """The contradiction between ``obs`` and the rules, or ``None`` when they agree (or
        the log does not carry enough to replay it: no packet headers, no hooks)."""
        found = self._check(obs)
        if found is not None:
            self.contradicting += 1
        return found

    def _check(self, obs: ObservedPacket) -> Contradiction | None:
        observed = obs.trace
        misfit = next(
            (s for s in observed.steps if isinstance(s, NetfilterStep) and s.misfit), None
        )
        if misfit is not None:
            index = observed.steps.index(misfit) + 1
            return Contradiction(obs.index, index, f"{describe(misfit)}: {misfit.misfit}")
        simulated = self.replay(obs)
        if simulated is None:
            return None
        self.replayed += 1
        if simulated.outcome is Outcome.UNKNOWN:
            return None  # the engine cannot tell (an address the rules need is not known)
        found = diff(observed, simulated)
        if found.same or _conntrack_explains(found):
            return None
        if found.observed is None and observed.outcome in _UNDECIDED:
            return None  # the log stops (lines lost, the file's end): nothing it contradicts
        return Contradiction(obs.index, found.index, _sentence(found, simulated))

    def replay(self, obs: ObservedPacket) -> Trace | None:
        """The netfilter trace the rules give for the logged packet along its logged hooks."""
        if obs.log_format not in _FULL_DUMPS or obs.header is None:
            return None
        if not has_protocol(obs.header) or _rewritten(obs.trace, obs.header):
            return None
        path = _hook_path(obs.trace)
        if not path:
            return None
        packet = packet_from_dump(obs.header)
        family = packet.family
        ruleset = self.book.for_family(family) if family is not None else None
        if ruleset is None or family is None:
            return None
        engine = self._engines.get(family)
        if engine is None:
            facts = NodeFacts(backend=ruleset.backend)
            engine = self._engines[family] = NetfilterEngine(
                ruleset, ipsets=self.book.ipsets, facts=facts
            )
        state, _ = connection_state(obs.trace)
        ct = CtFacts(state=STATE_WORDS[state]) if state is not None else None
        # Rules without the TRACE rule the log's node had: trace from the first hook.
        # A kernel TRACE line names a rule by number and prints no rule text: the steps are
        # compared by table, chain, kind and number.
        return engine.run(packet, path, ct=ct, nf_trace=not engine.has_trace_rule).trace


class NamespaceReplay:
    """One :class:`Replay` per namespace of a snapshot: each packet is replayed with the rules
    of the namespace it was explained with (``ObservedPacket.netns``), its conntrack apart."""

    def __init__(self, books: Mapping[str, RuleBook]) -> None:
        self.books = books
        self._replays: dict[str, Replay] = {}

    @property
    def replayed(self) -> int:
        return sum(r.replayed for r in self._replays.values())

    @property
    def contradicting(self) -> int:
        return sum(r.contradicting for r in self._replays.values())

    def check(self, obs: ObservedPacket) -> Contradiction | None:
        if obs.netns is None or obs.netns not in self.books:
            return None
        replay = self._replays.get(obs.netns)
        if replay is None:
            replay = self._replays[obs.netns] = Replay(self.books[obs.netns])
        return replay.check(obs)


_UNDECIDED = frozenset({Outcome.ENDS, Outcome.UNKNOWN})

_FULL_DUMPS = frozenset({"kernel", "journal-json"})
"""Log formats whose records carry every header and device a rule may match (the kernel's
TRACE lines); the nf_tables monitors print no bridge ports, and xtables-monitor no protocol."""

_ADDRESSES = ("SRC", "DST")


def _rewritten(trace: Trace, first: PacketDump) -> bool:
    """The log shows the packet's addresses changed on the way (NAT, or conntrack undoing
    it on a reply): the replay would need the connection the node had."""
    start = tuple(first.get(k) for k in _ADDRESSES)
    for step in trace.steps:
        dump = step.dump if isinstance(step, NetfilterStep) else None
        if dump is not None and tuple(dump.get(k) for k in _ADDRESSES) != start:
            return True
    return False


def _hook_path(trace: Trace) -> HookPath:
    """The hooks the log shows the packet crossing, in order, each with the devices it saw."""
    path: list[tuple[Hook, HookDevices]] = []
    seen = set()
    for step in trace.steps:
        if not isinstance(step, NetfilterStep) or step.hook is None or step.hook in seen:
            continue
        seen.add(step.hook)
        devices = HookDevices(step.in_dev, step.out_dev, step.physin, step.physout)
        path.append((step.hook, devices))
    return tuple(path)


def _conntrack_explains(found: TraceDiff) -> bool:
    """The difference is one a connection's state or mark makes, which a log does not carry
    (a router's ``-m connmark`` rules test the mark an earlier packet saved)."""
    for step in (found.observed, found.simulated):
        if isinstance(step, NetfilterStep) and (
            step.table == "nat" or matched_states(step.rule) or _tests_connmark(step.rule)
        ):
            return True
    return False


def _tests_connmark(rule: Rule | None) -> bool:
    return rule is not None and any(
        isinstance(m, MarkMatch) and m.module == "connmark" for m in rule.matches
    )


def _said(step: Step | None) -> str:
    if step is None:
        return "nothing more"
    if isinstance(step, NetfilterStep):
        number = step.number if step.number is not None else f"0x{step.handle or 0:x}"
        return f"{step.table}:{step.chain}:{step.kind.value}:{number}"
    return describe(step)


def _sentence(found: TraceDiff, simulated: Trace) -> str:
    if found.index is None:
        return f"{found.reason} (the rules given: {simulated.reason or simulated.outcome.value})"
    rule = ""
    if isinstance(found.simulated, NetfilterStep) and found.simulated.rule is not None:
        rule = f" ({found.simulated.rule.text})"
    return (
        f"step {found.index}: the log shows {_said(found.observed)}, the rules give "
        f"{_said(found.simulated)}{rule}"
    )
