"""What a logged step did to the packet, from the rule it names: jump, go on, return, or a verdict.

The TRACE line says *that* a rule matched, never what its target did; the ruleset says that.
Both the legacy explainer (rule found by number) and the nf_tables one (rule found by handle or
text) classify the rule's target here, so they agree on which targets end a table.
"""

from __future__ import annotations

from enum import StrEnum

from nodetrace.model.netfilter import Rule, TargetKind


class Effect(StrEnum):
    CONTINUE = "continue"
    """A non-terminal target (LOG, CT, MARK...) or none: the chain goes on."""
    JUMP = "jump"
    RETURN = "return"
    """Back to the calling chain (RETURN, or the end of a user chain)."""
    ACCEPT = "accept"
    """The table is done with the packet and lets it go on (ACCEPT, and NAT targets)."""
    DROP = "drop"
    REJECT = "reject"
    QUEUE = "queue"
    """Handed to a userspace program (QUEUE, NFQUEUE), which gives the verdict."""
    UNKNOWN = "unknown"


TERMINAL = frozenset({Effect.ACCEPT, Effect.DROP, Effect.REJECT, Effect.QUEUE})

# Extension targets that return XT_CONTINUE (evaluation goes on with the next rule).
_NON_TERMINAL = frozenset(
    {
        "LOG",
        "NFLOG",
        "ULOG",
        "TRACE",
        "CT",
        "NOTRACK",
        "MARK",
        "CONNMARK",
        "CHECKSUM",
        "TCPMSS",
        "TCPOPTSTRIP",
        "CLASSIFY",
        "DSCP",
        "TOS",
        "TTL",
        "HL",
        "ECN",
        "SET",
        "AUDIT",
        "SECMARK",
        "CONNSECMARK",
        "IDLETIMER",
        "LED",
        "RATEEST",
        "HMARK",
        "TEE",
    }
)
# Extension targets that end the table with NF_ACCEPT (NAT rewrites, then accepts).
_ACCEPTING = frozenset({"SNAT", "DNAT", "MASQUERADE", "REDIRECT", "NETMAP", "TPROXY"})


def verdict_effect(word: str) -> Effect:
    """A verdict word as a policy or standard target prints it (``ACCEPT``, ``drop``...)."""
    upper = word.upper()
    if upper == "ACCEPT":
        return Effect.ACCEPT
    if upper == "DROP":
        return Effect.DROP
    if upper == "RETURN":
        return Effect.RETURN
    if upper in ("QUEUE", "NFQUEUE"):
        return Effect.QUEUE
    if upper == "REJECT":
        return Effect.REJECT
    if upper == "CONTINUE":
        return Effect.CONTINUE
    if upper in ("JUMP", "GOTO"):
        return Effect.JUMP
    return Effect.UNKNOWN


def rule_effect(rule: Rule) -> Effect:
    """What the rule's target does when the rule matches."""
    target = rule.target
    kind = target.kind
    if kind is TargetKind.NONE:
        return Effect.CONTINUE
    if kind is TargetKind.CHAIN:
        return Effect.JUMP
    name = target.name
    if kind is TargetKind.VERDICT:
        return verdict_effect(name)
    if name in _NON_TERMINAL:
        return Effect.CONTINUE
    if name in _ACCEPTING:
        return Effect.ACCEPT
    if name == "REJECT":
        return Effect.REJECT
    if name == "NFQUEUE":
        return Effect.QUEUE
    return Effect.UNKNOWN
