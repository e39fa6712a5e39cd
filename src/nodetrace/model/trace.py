"""One trace type for what a log *observed* and what an engine *simulated*.

A trace is an ordered list of typed steps (netfilter rules, OpenFlow flows, devices crossed),
the assumptions it rests on, and an outcome. Because observed and simulated traces share these
types, they render the same way and can be diffed step by step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from nodetrace.errors import SourcePos
from nodetrace.model.packet import Family, Packet
from nodetrace.model.packet_origin import FieldOrigin
from nodetrace.model.verdict import Verdict

if TYPE_CHECKING:
    from nodetrace.model.netfilter import Rule
    from nodetrace.model.trace_diff import TraceDiff


class Hook(StrEnum):
    """Netfilter hooks, named as the built-in chains that hang off them."""

    PREROUTING = "PREROUTING"
    INPUT = "INPUT"
    FORWARD = "FORWARD"
    OUTPUT = "OUTPUT"
    POSTROUTING = "POSTROUTING"


class StepKind(StrEnum):
    """The third field of a legacy TRACE prefix (``table:chain:KIND:number``)."""

    RULE = "rule"
    RETURN = "return"
    POLICY = "policy"


@dataclass(frozen=True, slots=True)
class SourceSpan:
    """The input lines one record was read from (a wrapped record spans several)."""

    file: str
    first_line: int
    last_line: int

    @property
    def start(self) -> SourcePos:
        return SourcePos(self.file, self.first_line)

    def __str__(self) -> str:
        if self.first_line == self.last_line:
            return f"{self.file}:{self.first_line}"
        return f"{self.file}:{self.first_line}-{self.last_line}"


@dataclass(frozen=True, slots=True)
class PacketDump:
    """The packet fields of one TRACE record, exactly as the source printed them.

    ``fields`` keeps every ``KEY=value`` pair and bare flag (``DF``, ``SYN``) in order, so the
    record can be printed back unchanged and nothing the kernel said is lost. Flags are stored
    with an empty value.
    """

    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)


@dataclass(frozen=True, slots=True)
class NetfilterStep:
    """One netfilter event: a rule that matched, a chain's end (``return``) or a policy.

    ``number`` is the kernel's 1-based position (legacy TRACE); nf_tables sources give a rule
    ``handle`` and a ``verdict`` word instead. ``rule`` is the ruleset's rule the step names,
    when a ruleset was given and the step could be resolved; ``note`` says why it could not.
    """

    family: Family
    table: str
    chain: str
    kind: StepKind
    number: int | None
    hook: Hook | None = None
    in_dev: str = ""
    out_dev: str = ""
    physin: str | None = None
    physout: str | None = None
    handle: int | None = None
    verdict: str | None = None
    rule_text: str | None = None
    """The rule as the source itself printed it (xtables-monitor, nft monitor)."""
    rule: Rule | None = None
    note: str | None = None
    dump: PacketDump | None = None
    packet: Packet | None = None
    span: SourceSpan | None = None
    traced: bool = True
    """Whether the kernel would log this step (the packet was marked for TRACE by then); a
    simulation keeps untraced steps too, so a view can show the whole path."""
    misfit: str | None = None
    """Why the step does not fit the ruleset it was explained with (unknown chain, number past
    the chain's end, kind that the rule's form contradicts): usually the rules changed since."""


@dataclass(frozen=True, slots=True)
class OpenFlowStep:
    """One OpenFlow table lookup: the flow that matched (or none) and the actions it ran."""

    bridge: str
    table: int
    priority: int | None
    match: str
    """The matched flow's match as OVS prints it; empty when no flow matched."""
    actions: str
    cookie: int | None = None
    note: str | None = None
    source: SourceSpan | None = None
    """The dump line(s) the matched flow was read from."""


class DeviceAction(StrEnum):
    """What happened to a packet between tables: the layers the walk crosses."""

    ENTER = "enter"
    VETH = "veth"
    BRIDGE = "bridge"
    PATCH = "patch"
    ENCAP = "encap"
    DECAP = "decap"
    ROUTE = "route"
    DELIVER = "deliver"
    OUTPUT = "output"
    RECIRC = "recirc"
    """The datapath recirculates the packet (after ``ct(table=N)``): the pipeline resumes."""


@dataclass(frozen=True, slots=True)
class DeviceStep:
    """The packet crosses a device or leaves the node (veth peer, Linux bridge, tunnel, tap)."""

    action: DeviceAction
    device: str
    detail: str = ""


Step = NetfilterStep | OpenFlowStep | DeviceStep


class Outcome(StrEnum):
    """A whole trace's fate (an engine's decision about one packet is a :class:`Verdict`)."""

    ACCEPTED = "accepted"
    """Netfilter let the packet through the last hook it was seen in."""
    DROPPED = "dropped"
    REJECTED = "rejected"
    ENDS = "ends"
    """The record stops without a verdict: the packet left netfilter or lines are missing."""
    DELIVERED = "delivered"
    """The whole-node walk handed the packet to its destination (VM, host, wire)."""
    UNKNOWN = "unknown"
    """An engine met a match or action it cannot evaluate; ``reason`` names it."""

    @classmethod
    def of(cls, verdict: Verdict) -> Outcome:
        """The fate of a trace that ends with ``verdict`` (a queued packet's is unknown: the
        userspace program decides it)."""
        return _OUTCOME_OF.get(verdict, cls.UNKNOWN)


_OUTCOME_OF = {
    Verdict.ACCEPT: Outcome.ACCEPTED,
    Verdict.DROP: Outcome.DROPPED,
    Verdict.REJECT: Outcome.REJECTED,
}


@dataclass(frozen=True, slots=True)
class Trace:
    """A packet's path with its outcome and everything the answer assumed."""

    steps: tuple[Step, ...]
    outcome: Outcome
    verdict_step: int | None = None
    """Index into ``steps`` of the step that decided the outcome, if one did."""
    reason: str = ""
    assumptions: tuple[str, ...] = ()
    packet: Packet | None = None
    flow: tuple[FieldOrigin, ...] = ()
    """A simulated trace's packet field by field, with where each value came from."""
    resting_on: tuple[str, ...] = ()
    """Assumed values the outcome depends on (fields neither given nor derived)."""

    def diff(self, simulated: Trace) -> TraceDiff:
        """Where this (observed) trace and ``simulated`` first part: see :mod:`.trace_diff`."""
        from nodetrace.model.trace_diff import diff  # trace_diff imports this module

        return diff(self, simulated)
