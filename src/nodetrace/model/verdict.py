"""What netfilter and OpenFlow decide about a packet, and what a rule's target does.

Every layer speaks these two words: the netfilter and OpenFlow engines return a :class:`Verdict`,
the whole-node walk reads it, and a ruleset's targets say their :class:`Effect` (the one place
is ``Target.effect`` in :mod:`nodetrace.model.netfilter`), which the engine and the TRACE-log
explainer both follow. A whole trace's fate is :class:`nodetrace.model.trace.Outcome`.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """What one engine decided about one packet."""

    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"
    """Dropped with an error sent back (``-j REJECT``)."""
    QUEUE = "queue"
    """Handed to a userspace program (QUEUE, NFQUEUE), which gives the verdict."""
    UNKNOWN = "unknown"
    """A match, target or input the engine cannot evaluate; the result says which."""


class Effect(StrEnum):
    """What a rule's target does to evaluation when the rule matches."""

    CONTINUE = "continue"
    """A non-terminal target (LOG, CT, MARK...) or none: the chain goes on."""
    JUMP = "jump"
    GOTO = "goto"
    """Like a jump, but no return address is pushed."""
    RETURN = "return"
    """Back to the calling chain (RETURN, or the end of a user chain)."""
    ACCEPT = "accept"
    """The table is done with the packet and lets it go on (ACCEPT, and NAT targets)."""
    DROP = "drop"
    REJECT = "reject"
    QUEUE = "queue"
    UNKNOWN = "unknown"
    """A target nodetrace does not model."""

    @property
    def verdict(self) -> Verdict | None:
        """The verdict a terminal effect gives the table; ``None`` when evaluation goes on."""
        return _TERMINAL.get(self)

    @classmethod
    def of_word(cls, word: str) -> Effect:
        """A verdict word as a policy, a standard target or a trace event prints it
        (``ACCEPT``, ``drop``, ``NFQUEUE``, ``JUMP``...); an unknown word is UNKNOWN."""
        upper = word.upper()
        if upper == "NFQUEUE":
            return cls.QUEUE
        try:
            return cls(upper.lower())
        except ValueError:
            return cls.UNKNOWN


_TERMINAL = {
    Effect.ACCEPT: Verdict.ACCEPT,
    Effect.DROP: Verdict.DROP,
    Effect.REJECT: Verdict.REJECT,
    Effect.QUEUE: Verdict.QUEUE,
}
