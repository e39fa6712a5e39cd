"""Checks on the ipsets rules refer to: a set a rule names but ``ipset save`` does not hold
(the rule's sources are unknown, or the node's state is torn), and an empty set (a security
group's remote-group rule that lets nobody in).
"""

from __future__ import annotations

from nodetrace.audit.evidence import capped, in_netns, rule_evidence
from nodetrace.audit.findings import CheckResult, Evidence, Finding, NotRun, Severity
from nodetrace.model.netfilter import Rule, Ruleset, SetMatch
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS


def _set_rules(ruleset: Ruleset) -> dict[str, list[Rule]]:
    out: dict[str, list[Rule]] = {}
    for rule in ruleset.rules():
        for m in rule.matches:
            if isinstance(m, SetMatch):
                out.setdefault(m.set_name, []).append(rule)
    return out


def _requires(rule: Rule, name: str) -> bool:
    """Whether ``rule`` needs a member of set ``name`` (``--match-set``, not ``! --match-set``)."""
    return any(
        isinstance(m, SetMatch) and m.set_name == name and not m.negated for m in rule.matches
    )


def ipset_references(snap: Snapshot, inv: Inventory) -> CheckResult:
    """``ipset-missing`` and ``ipset-empty``, per namespace."""
    findings: list[Finding] = []
    not_run: list[NotRun] = []
    for ns in snap.namespaces:
        used: dict[str, list[tuple[Rule, Ruleset]]] = {}
        for family in (Family.IPV4, Family.IPV6):
            ruleset = ns.ruleset(family)
            if ruleset is None:
                continue
            for name, rules in _set_rules(ruleset).items():
                used.setdefault(name, []).extend((r, ruleset) for r in rules)
        if not used:
            continue
        if ns.ipsets is None:
            ns_text = f" of namespace {ns.name}" if ns.name != MAIN_NS else ""
            not_run.append(
                NotRun(
                    "ipset-missing",
                    f"rules{ns_text} use {len(used)} ipsets but the snapshot has no "
                    "`ipset save` output",
                    in_netns(ns.name, "ipset save"),
                )
            )
            continue
        for name, uses in sorted(used.items()):
            found = ns.ipsets.get(name)
            evidence = [rule_evidence(r, rs) for r, rs in uses]
            if found is None:
                findings.append(
                    Finding(
                        check="ipset-missing",
                        severity=Severity.CRITICAL,
                        title=(
                            f"{len(uses)} rules match ipset {name}, which `ipset save` does "
                            "not list"
                        ),
                        subject=f"ipset {name}",
                        evidence=capped(
                            [Evidence(f"no `create {name}` line", ns.ipsets.source), *evidence],
                            "rules",
                        ),
                        confirm=in_netns(ns.name, f"ipset list {name}"),
                    )
                )
            elif not found.members and (
                positive := [(r, rs) for r, rs in uses if _requires(r, name)]
            ):
                created = Evidence(
                    f"create {name} {found.type_name} (no members)",
                    str(found.pos) if found.pos else ns.ipsets.source,
                )
                findings.append(
                    Finding(
                        check="ipset-empty",
                        severity=Severity.WARNING,
                        title=(
                            f"ipset {name} is empty: the {len(positive)} rules that require a "
                            "member match no packet (a remote security group with no member here)"
                        ),
                        subject=f"ipset {name}",
                        evidence=capped(
                            [created, *(rule_evidence(r, rs) for r, rs in positive)], "rules"
                        ),
                        confirm=in_netns(ns.name, f"ipset list {name}"),
                    )
                )
    return CheckResult(tuple(findings), tuple(not_run))
