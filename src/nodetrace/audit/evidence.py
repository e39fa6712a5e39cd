"""How an audit quotes the node: a rule, a flow, a sysctl or a device as an :class:`Evidence`,
and the read-only command that shows the same fact on the node (run in the right namespace).

Kept in one place so every check cites its sources the same way and a reader can follow any
finding back to the file and line it came from.
"""

from __future__ import annotations

from nodetrace.audit.findings import Evidence
from nodetrace.model.netfilter import Chain, Rule, Ruleset
from nodetrace.model.openflow import Flow
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Sysctls
from nodetrace.model.topology import MAIN_NS

MAX_EVIDENCE = 12
"""Lines quoted per finding; the rest are counted in one closing line, so a node with 500 ports
gives a readable report."""


def in_netns(netns: str, command: str) -> str:
    """``command`` as run in namespace ``netns`` (the main namespace: as it is)."""
    return command if netns == MAIN_NS else f"ip netns exec {netns} {command}"


def iptables_command(family: Family) -> str:
    return "iptables" if family is Family.IPV4 else "ip6tables"


def rule_evidence(rule: Rule, ruleset: Ruleset) -> Evidence:
    where = str(rule.pos) if rule.pos is not None else ruleset.source
    return Evidence(f"[{rule.table}] {rule.text}", where)


def chain_evidence(chain: Chain, table: str, ruleset: Ruleset) -> Evidence:
    where = str(chain.pos) if chain.pos is not None else ruleset.source
    policy = chain.policy or "-"
    return Evidence(f"[{table}] :{chain.name} {policy} ({len(chain.rules)} rules)", where)


def flow_evidence(bridge: str, flow: Flow, dump_source: str) -> Evidence:
    where = str(flow.span) if flow.span is not None else dump_source
    match = f"{flow.match_text} " if flow.match_text else ""
    text = f"{bridge}: table={flow.table}, priority={flow.priority}, {match}actions={flow.actions_text}"
    return Evidence(text.replace(", , ", ", "), where)


def sysctl_evidence(sysctls: Sysctls, key: str) -> Evidence:
    value = sysctls.get(key)
    return Evidence(f"{key} = {value if value is not None else '(not captured)'}", sysctls.source)


def capped(evidence: list[Evidence], what: str = "lines") -> tuple[Evidence, ...]:
    """At most :data:`MAX_EVIDENCE` lines, and one that counts the rest."""
    if len(evidence) <= MAX_EVIDENCE:
        return tuple(evidence)
    rest = len(evidence) - (MAX_EVIDENCE - 1)
    shown = evidence[: MAX_EVIDENCE - 1]
    return (*shown, Evidence(f"... and {rest} more {what}", evidence[MAX_EVIDENCE - 1].source))
