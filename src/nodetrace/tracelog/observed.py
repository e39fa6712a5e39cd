"""What ``nodetrace log`` says about one packet: its explained trace plus where it came from."""

from __future__ import annotations

from dataclasses import dataclass

from nodetrace.model.packet import Family
from nodetrace.model.trace import Outcome, PacketDump, Trace


@dataclass(frozen=True, slots=True)
class Conclusion:
    """A packet's outcome and the step that decided it; all the summary needs of a packet."""

    outcome: Outcome
    verdict_step: int | None
    egress: str | None
    reason: str
    deciding: str | None = None
    """``table:chain:kind:number`` (or ``table:chain:rule:position``) of the step that dropped
    or rejected the packet, or of the last step of a trace that ends without a verdict (for the
    summary's top dropping rules and "where traces end")."""
    deciding_rule: str | None = None
    """The rule text of that step, when a ruleset gave it."""


@dataclass(frozen=True, slots=True)
class ObservedPacket:
    """One pass of one packet through netfilter, as a log showed it, explained.

    ``index`` is the packet's place in the output (1-based, in order of first appearance).
    ``occurrence`` > 1 marks a later pass of a packet already seen: a retransmission or copy
    when ``same_ports`` is true, a second bridge pass (after a veth) when false.
    """

    index: int
    trace: Trace
    conclusion: Conclusion
    source: str
    first_line: int
    last_line: int
    family: Family | None
    header: PacketDump | None
    """The packet fields of the first record, as printed."""
    log_format: str
    """``kernel``, ``xtables-monitor`` or ``nft-monitor``."""
    trace_id: str | None = None
    occurrence: int = 1
    same_ports: bool | None = None
    time: str | None = None
    """The logger's time stamp of the first record, as printed."""
    warnings: tuple[str, ...] = ()
    netns: str | None = None
    """The namespace whose rules explained it, when a snapshot's namespaces were told apart
    (:mod:`nodetrace.tracelog.namespace_books`)."""
