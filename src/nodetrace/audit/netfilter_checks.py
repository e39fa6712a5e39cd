"""Checks on a node's iptables rulesets: host traffic crossing Neutron's chains, rules that
can never match (shadowed, ``--physdev-out`` where no output port is known, chains of ports
that are gone), and jumps to chains that are empty or missing.

Each check reads the typed rules and quotes them with their file and line; a question the
model cannot settle (a match module kept verbatim) is counted as *cannot tell*, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from nodetrace.audit.chain_graph import Reach, hooks_of, reachable
from nodetrace.audit.evidence import (
    capped,
    chain_evidence,
    in_netns,
    iptables_command,
    rule_evidence,
)
from nodetrace.audit.findings import CheckResult, Evidence, Finding, NotRun, Severity
from nodetrace.audit.rule_cover import TERMINAL_EFFECTS, anchors, covers
from nodetrace.model.netfilter import (
    Chain,
    JumpTarget,
    PhysdevMatch,
    Rule,
    Ruleset,
    Table,
    UnknownTarget,
)
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.model.verdict import Effect
from nodetrace.neutron import naming

HOST_HOOKS = ("INPUT", "OUTPUT")
"""filter-table hooks that see only the host's own traffic (to it, from it)."""

NO_OUTPUT_PORT_HOOKS = frozenset({"PREROUTING", "INPUT"})
"""Hooks where br_netfilter has not chosen a bridge output port yet: iptables-extensions(8)
documents ``--physdev-out`` for the FORWARD, OUTPUT and POSTROUTING chains only, and
xt_physdev.c compares the pattern with an empty name when the skb has no output port."""


@dataclass(frozen=True, slots=True)
class _Rules:
    netns: str
    family: Family
    ruleset: Ruleset

    @property
    def where(self) -> str:
        family = "IPv4" if self.family is Family.IPV4 else "IPv6"
        ns = f" in namespace {self.netns}" if self.netns != MAIN_NS else ""
        return f"{family}{ns}"

    def command(self, args: str) -> str:
        return in_netns(self.netns, f"{iptables_command(self.family)} {args}")


def _rulesets(snap: Snapshot) -> Iterator[_Rules]:
    for ns in snap.namespaces:
        for family in (Family.IPV4, Family.IPV6):
            ruleset = ns.ruleset(family)
            if ruleset is not None and any(ruleset.tables.values()):
                yield _Rules(ns.name, family, ruleset)


def no_rules(check: str, snap: Snapshot) -> NotRun | None:
    """The check cannot run when no namespace has a ruleset."""
    if any(True for _ in _rulesets(snap)):
        return None
    return NotRun(check, "the snapshot has no iptables ruleset", "iptables-save")


def _is_sg_chain(name: str) -> bool:
    return name.startswith(tuple(f"{wrap}-" for wrap in naming.WRAPS))


# --- host-through-neutron-chains --------------------------------------------------------------


def host_through_neutron_chains(snap: Snapshot, inv: Inventory) -> CheckResult:
    """INPUT (and OUTPUT) jumping into Neutron's firewall chains: the host's own traffic is
    judged by rules written for VM ports."""
    missing = no_rules("host-through-neutron-chains", snap)
    if missing is not None:
        return CheckResult(not_run=(missing,))
    findings = []
    for rules in _rulesets(snap):
        table = rules.ruleset.tables.get("filter")
        if table is None:
            continue
        for hook in HOST_HOOKS:
            reached = {
                name: r
                for name, r in reachable(table, hook).items()
                if _is_sg_chain(name) and (c := table.chain(name)) is not None and c.rules
            }
            if reached:
                findings.append(_host_finding(rules, table, hook, reached))
    return CheckResult(tuple(findings))


def _host_finding(rules: _Rules, table: Table, hook: str, reached: dict[str, Reach]) -> Finding:
    wraps = {name.split("-")[0] + "-" + name.split("-")[1] for name in reached}
    sg_chains = {naming.sg_chain(w) for w in wraps if w in naming.WRAPS}
    dropping = [
        rule
        for name in reached
        for rule in table.chains[name].rules
        if rule.effect in (Effect.DROP, Effect.REJECT)
    ]
    to_sg = sorted(n for n in reached if n in sg_chains)
    direction = "to" if hook == "INPUT" else "from"
    if to_sg:
        severity = Severity.CRITICAL
        title = (
            f"traffic {direction} the host's own addresses reaches {to_sg[0]}, where VM "
            "ports' security groups (and its final ACCEPT) decide it"
        )
    elif dropping:
        severity = Severity.WARNING
        title = (
            f"traffic {direction} the host crosses {len(reached)} Neutron security-group "
            f"chains from filter {hook}; {len(dropping)} of their rules drop or reject"
        )
    else:
        severity = Severity.INFO
        title = (
            f"traffic {direction} the host crosses {len(reached)} Neutron chains "
            f"from filter {hook} (none of their rules drops)"
        )
    path_rules: dict[int, Rule] = {}
    for reach in sorted(reached.values(), key=lambda r: len(r.path)):
        for rule in reach.path:
            path_rules.setdefault(id(rule), rule)
    evidence = [rule_evidence(r, rules.ruleset) for r in path_rules.values()]
    evidence += [rule_evidence(r, rules.ruleset) for r in dropping[:3]]
    chains = ", ".join(sorted(reached)[:3]) + (" ..." if len(reached) > 3 else "")
    return Finding(
        check="host-through-neutron-chains",
        severity=severity,
        title=f"{title} ({rules.where})",
        subject=f"filter {hook} -> {chains}",
        evidence=capped(evidence, "rules"),
        confirm=rules.command(f"-t filter -S {hook}"),
    )


# --- shadowed-rule -------------------------------------------------------------------------------


def shadowed_rules(snap: Snapshot, inv: Inventory) -> CheckResult:
    """Rules that no packet can reach: an earlier rule of the same chain matches every packet
    they match and ends the chain."""
    missing = no_rules("shadowed-rule", snap)
    if missing is not None:
        return CheckResult(not_run=(missing,))
    findings: list[Finding] = []
    undecided: list[tuple[Rule, Rule]] = []
    for rules in _rulesets(snap):
        # The same shadow in every per-port chain (Neutron writes them alike) is one finding.
        groups: dict[tuple[str, ...], list[tuple[Rule, Rule]]] = {}
        for table in rules.ruleset.tables.values():
            for chain in table.chains.values():
                for first, later in _shadows(chain, undecided):
                    key = (table.name, _generic(first), _generic(later))
                    groups.setdefault(key, []).append((first, later))
        findings += [_shadow_finding(rules, pairs) for pairs in groups.values()]
    not_run: tuple[NotRun, ...] = ()
    if undecided:
        first, later = undecided[0]
        modules = ", ".join(first.unknown_parts) or "a match"
        not_run = (
            NotRun(
                "shadowed-rule",
                f"{len(undecided)} rule pairs cannot be told: the earlier rule has a match "
                f"nodetrace does not evaluate (first: {first.pos} {modules} before "
                f"{later.pos})",
            ),
        )
    return CheckResult(tuple(findings), not_run)


def _shadows(chain: Chain, undecided: list[tuple[Rule, Rule]]) -> Iterator[tuple[Rule, Rule]]:
    """Pairs (earlier, later) where the earlier rule takes every packet of the later one."""
    rules = chain.rules
    keys = [anchors(r) for r in rules]
    by_slot: dict[tuple[int, str], list[int]] = {}
    for index, key in enumerate(keys):
        for slot, name in enumerate(key):
            if name is not None:
                by_slot.setdefault((slot, name), []).append(index)
    shadowed: set[int] = set()
    for i, first in enumerate(rules):
        if first.effect not in TERMINAL_EFFECTS:
            continue
        key = keys[i]
        anchored = next((s for s, anchor in enumerate(key) if anchor is not None), None)
        if anchored is not None:
            candidates = [j for j in by_slot[(anchored, key[anchored] or "")] if j > i]
        else:
            candidates = list(range(i + 1, len(rules)))
        for j in candidates:
            if j in shadowed or any(
                a is not None and a != b for a, b in zip(key, keys[j], strict=True)
            ):
                continue
            verdict = covers(first, rules[j])
            if verdict is True:
                shadowed.add(j)
                yield first, rules[j]
            elif verdict is None:
                undecided.append((first, rules[j]))


def _generic(rule: Rule) -> str:
    """A rule's text with its own chain's name taken out (and the port in it), so the same rule
    of many per-port chains reads the same."""
    text = rule.text.replace(f"-A {rule.chain} ", "-A CHAIN ", 1)
    parsed = naming.parse_chain_name(rule.chain)
    return text.replace(parsed.port_prefix, "PORT") if parsed is not None else text


def _shadow_finding(rules: _Rules, pairs: list[tuple[Rule, Rule]]) -> Finding:
    first, later = pairs[0]
    same = first.target == later.target
    # A shadowed rule with another verdict means the policy someone wrote is not the one
    # applied; one with the same verdict is dead weight.
    severity = Severity.INFO if same else Severity.WARNING
    evidence = [rule_evidence(first, rules.ruleset), rule_evidence(later, rules.ruleset)]
    if later.counters is not None:
        evidence.append(
            Evidence(f"counters of the later rule: {later.counters[0]} packets", str(later.pos))
        )
    for f, lt in pairs[1:]:
        evidence += [rule_evidence(f, rules.ruleset), rule_evidence(lt, rules.ruleset)]
    more = f" (and the same in {len(pairs) - 1} more chains)" if len(pairs) > 1 else ""
    return Finding(
        check="shadowed-rule",
        severity=severity,
        title=(
            f"{later.table} {later.chain} rule {later.position} can never match: rule "
            f"{first.position} matches all its packets first and ends the chain "
            f"({first.target.name or 'no target'}){more} ({rules.where})"
        ),
        subject=f"{later.table} {later.chain} rule {later.position}",
        evidence=capped(evidence, "rules"),
        confirm=rules.command(f"-t {later.table} -L {later.chain} -n -v --line-numbers"),
    )


# --- physdev-out-never-matches ------------------------------------------------------------------


def physdev_at_wrong_hook(snap: Snapshot, inv: Inventory) -> CheckResult:
    """``--physdev-out``/``--physdev-is-out`` in chains reached only from PREROUTING or INPUT:
    no bridge output port is known there, so the rule never matches."""
    missing = no_rules("physdev-out-never-matches", snap)
    if missing is not None:
        return CheckResult(not_run=(missing,))
    findings = []
    for rules in _rulesets(snap):
        for table in rules.ruleset.tables.values():
            hooks = hooks_of(table)
            for name, chain in table.chains.items():
                reached_from = hooks.get(name)
                if not reached_from or not reached_from <= NO_OUTPUT_PORT_HOOKS:
                    continue
                dead = [r for r in chain.rules if _needs_output_port(r)]
                if dead:
                    findings.append(_physdev_finding(rules, table, chain, reached_from, dead))
    return CheckResult(tuple(findings))


def _needs_output_port(rule: Rule) -> bool:
    for m in rule.matches:
        if not isinstance(m, PhysdevMatch):
            continue
        if m.physdev_out is not None and not m.physdev_out.negated:
            return True
        if m.is_out is not None and not m.is_out.negated and m.is_out.value:
            return True
    return False


def _physdev_finding(
    rules: _Rules, table: Table, chain: Chain, hooks: frozenset[str], dead: list[Rule]
) -> Finding:
    verdicts = {r.target.name for r in dead}
    return Finding(
        check="physdev-out-never-matches",
        severity=Severity.WARNING,
        title=(
            f"{len(dead)} rules of {table.name} {chain.name} match --physdev-out but the "
            f"chain is reached only from {'/'.join(sorted(hooks))}, where no bridge output "
            f"port is known: they never match ({', '.join(sorted(verdicts))}) ({rules.where})"
        ),
        subject=f"{table.name} {chain.name}",
        evidence=capped([rule_evidence(r, rules.ruleset) for r in dead], "rules"),
        confirm=rules.command(f"-t {table.name} -L {chain.name} -n -v --line-numbers"),
    )


# --- stale-port-chain ------------------------------------------------------------------------------


def stale_port_chains(snap: Snapshot, inv: Inventory) -> CheckResult:
    """Per-port Neutron chains (and the rules naming the port's devices) whose port has no
    device left on the node: the agent did not clean up after the port left."""
    missing = no_rules("stale-port-chain", snap)
    if missing is not None:
        return CheckResult(not_run=(missing,))
    if not any(True for _ in snap.topology.in_namespace(MAIN_NS)):
        return CheckResult(
            not_run=(
                NotRun(
                    "stale-port-chain",
                    "the snapshot lists no devices, so a port's absence cannot be told",
                    "ip -d -j link",
                ),
            )
        )
    present = {
        parsed.port_prefix
        for iface in snap.topology.in_namespace(MAIN_NS)
        if (parsed := naming.parse_device_name(iface.name)) is not None
    }
    if snap.ovs is not None:
        for bridge in snap.ovs.bridges:
            for port in bridge.ports:
                parsed = naming.parse_device_name(port.name)
                if parsed is not None:
                    present.add(parsed.port_prefix)
    findings = []
    for rules in _rulesets(snap):
        if rules.netns != MAIN_NS:
            continue
        stale: dict[str, list[Evidence]] = {}
        for table in rules.ruleset.tables.values():
            for name, chain in table.chains.items():
                parsed_chain = naming.parse_chain_name(name)
                if parsed_chain is None:
                    continue
                prefix = parsed_chain.port_prefix
                if any(p.startswith(prefix) for p in present):
                    continue
                stale.setdefault(prefix, []).append(
                    chain_evidence(chain, table.name, rules.ruleset)
                )
        if not stale:
            continue
        naming_rules = _rules_naming(rules.ruleset, set(stale))
        for prefix, evidence in sorted(stale.items()):
            evidence += naming_rules.get(prefix, [])
            findings.append(
                Finding(
                    check="stale-port-chain",
                    severity=Severity.WARNING,
                    title=(
                        f"Neutron chains of port {prefix}... remain but none of its devices "
                        f"(tap/qvb/qbr/qvo{prefix}...) exists on the node ({rules.where})"
                    ),
                    subject=f"port {prefix}",
                    evidence=capped(evidence, "rules"),
                    confirm=f"ip -br link | grep {prefix}; {rules.command('-S')} | grep {prefix}",
                )
            )
    return CheckResult(tuple(findings))


def _rules_naming(ruleset: Ruleset, prefixes: set[str]) -> dict[str, list[Evidence]]:
    """Rules that name one of the stale ports' devices or chains, by port prefix."""
    out: dict[str, list[Evidence]] = {}
    for rule in ruleset.rules():
        for prefix in prefixes:
            if prefix in rule.text:
                out.setdefault(prefix, []).append(rule_evidence(rule, ruleset))
    return out


# --- jump-to-empty-chain / jump-to-missing-chain ----------------------------------------------------


def jumps_to_empty_or_missing(snap: Snapshot, inv: Inventory) -> CheckResult:
    """Jumps whose target chain is missing (the ruleset cannot be loaded back as it is) or has
    no rule (the jump does nothing)."""
    missing = no_rules("jump-to-missing-chain", snap)
    if missing is not None:
        return CheckResult(not_run=(missing,))
    findings = []
    for rules in _rulesets(snap):
        # Neutron's agents create empty wrapper chains on purpose: one finding per ruleset.
        empty: dict[tuple[str, str], list[Rule]] = {}
        for table in rules.ruleset.tables.values():
            for rule in (r for c in table.chains.values() for r in c.rules):
                target = rule.target
                if _undeclared_chain(rule) is not None and not rules.ruleset.incomplete:
                    findings.append(_missing_finding(rules, table, rule))
                    continue
                if not isinstance(target, JumpTarget):
                    continue
                chain = table.chain(target.chain)
                if chain is None and not rules.ruleset.incomplete:
                    findings.append(_missing_finding(rules, table, rule))
                elif chain is not None and not chain.rules and not target.goto:
                    empty.setdefault((table.name, target.chain), []).append(rule)
        if empty:
            findings.append(_empty_finding(rules, empty))
    return CheckResult(tuple(findings))


def _undeclared_chain(rule: Rule) -> str | None:
    """The chain a rule jumps to that its table does not declare. The parser keeps such a
    ``-j name`` as an unknown target; every iptables target extension is named in upper case,
    so an option-less unknown target with a lower-case letter can only be a chain."""
    target = rule.target
    if (
        isinstance(target, UnknownTarget)
        and not target.options
        and target.target != target.target.upper()
    ):
        return target.target
    return None


def _missing_finding(rules: _Rules, table: Table, rule: Rule) -> Finding:
    target = rule.jump_chain or _undeclared_chain(rule) or ""
    return Finding(
        check="jump-to-missing-chain",
        severity=Severity.CRITICAL,
        title=(
            f"{table.name} {rule.chain} rule {rule.position} jumps to {target}, which the "
            f"ruleset does not define ({rules.where})"
        ),
        subject=f"{table.name} {target}",
        evidence=(rule_evidence(rule, rules.ruleset),),
        confirm=rules.command(f"-t {table.name} -S {target}"),
    )


def _empty_finding(rules: _Rules, empty: dict[tuple[str, str], list[Rule]]) -> Finding:
    evidence = []
    for (table, name), jumps in empty.items():
        chain = rules.ruleset.tables[table].chains[name]
        evidence.append(chain_evidence(chain, table, rules.ruleset))
        evidence += [rule_evidence(r, rules.ruleset) for r in jumps]
    count = sum(len(j) for j in empty.values())
    names = [f"{table} {name}" for table, name in empty]
    first_table, first_name = next(iter(empty))
    return Finding(
        check="jump-to-empty-chain",
        severity=Severity.INFO,
        title=(
            f"{count} rules jump to {len(names)} chains without rules "
            f"({', '.join(names[:3])}{' ...' if len(names) > 3 else ''}): those jumps do "
            f"nothing ({rules.where})"
        ),
        subject=", ".join(names[:3]) + (" ..." if len(names) > 3 else ""),
        evidence=capped(evidence, "lines"),
        confirm=rules.command(f"-t {first_table} -S {first_name}"),
    )
