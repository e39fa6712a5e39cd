"""Why an observation parts from the prediction: the catalogue's rules for the cases the
prediction alone cannot explain.

* The observed netfilter path takes another rule than the rules given say (a step that does
  not fit them, or another rule decided): the rules changed since, or they are another node's
  (``rules-changed``), unless the rules that differ test the connection's state, which the log
  does not carry (then conntrack is named).
* The observation goes on where the prediction drops: the node did not do what its rules or
  flows say (``rules-changed``).
* The observation stops where the prediction goes on: after PREROUTING on a bridge with a
  DNAT and ip_forward=0, br_netfilter cannot route the rewritten packet (``ip-forward-off``);
  after PREROUTING on a routed device, the routing decision dropped it (rp_filter, ip_forward,
  no route: named from the sysctls when they say so); otherwise ``unknown``, naming the outputs
  that would tell.
"""

from __future__ import annotations

from dataclasses import replace

from nodetrace.diagnosis.catalogue import TITLES, CauseId, confirm_link, confirm_rule, in_netns
from nodetrace.diagnosis.facts import matched_states, rule_fact, sysctl_fact, where
from nodetrace.diagnosis.predicted import LOST, Finding, cause
from nodetrace.engine import routing
from nodetrace.model.diagnosis import Cause, Layer
from nodetrace.model.netfilter import NatTarget
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Hook, NetfilterStep, OpenFlowStep, Step, Trace
from nodetrace.model.trace_diff import TraceDiff, describe


def explain_divergence(
    snapshot: Snapshot, observed: Trace, predicted: Trace, view: Trace, found: TraceDiff, netns: str
) -> Finding:
    """The cause of the first difference ``found`` between ``observed`` and ``view`` (the part
    of ``predicted`` the observation could show)."""
    finding = _first_difference(snapshot, observed, view, found, netns)
    first = next((s for s in observed.steps if isinstance(s, NetfilterStep)), None)
    family = first.family if first is not None else Family.IPV4
    if finding.cause.id == CauseId.RULES_CHANGED and not _has_trace_rule(snapshot, netns, family):
        hint = (
            "the snapshot's rules hold no -j TRACE rule, which the log's node had when it "
            "logged: take the snapshot while the TRACE rule is in place (its rule numbers are "
            "then the log's)"
        )
        finding = replace(
            finding, cause=replace(finding.cause, evidence=(*finding.cause.evidence, hint))
        )
    return finding


def _first_difference(
    snapshot: Snapshot, observed: Trace, view: Trace, found: TraceDiff, netns: str
) -> Finding:
    misfit = next((s for s in observed.steps if isinstance(s, NetfilterStep) and s.misfit), None)
    if misfit is not None:
        return _misfit(misfit, netns)
    seen, simulated = found.observed, found.simulated
    if seen is not None and simulated is not None:
        return _other_step(seen, simulated, found, netns)
    if seen is not None:
        return _went_on(seen, view, found, netns)
    if simulated is not None:
        return _stopped(snapshot, observed, view, simulated, found, netns)
    return _outcome_only(observed, view, found, netns)


def _has_trace_rule(snapshot: Snapshot, netns: str, family: Family) -> bool:
    """The namespace's ruleset of ``family`` has a ``-j TRACE`` rule (or is not known)."""
    state = snapshot.namespace(netns)
    ruleset = state.ruleset(family) if state is not None else None
    if ruleset is None:
        return True
    return any(r.target.name == "TRACE" for r in ruleset.rules())


def _step_place(step: Step) -> str:
    if isinstance(step, NetfilterStep):
        number = f" rule {step.number}" if step.number is not None else ""
        return f"{step.table} {step.chain}{number}"
    if isinstance(step, OpenFlowStep):
        return f"{step.bridge} table {step.table}"
    return describe(step)


def _changed(location: str, evidence: list[str], confirm: str) -> Finding:
    layer = Layer.NETFILTER
    return Finding(layer, location, cause(CauseId.RULES_CHANGED, evidence, confirm))


def _misfit(step: NetfilterStep, netns: str) -> Finding:
    evidence = [f"observed {describe(step)}: {step.misfit}"]
    if step.span is not None:
        evidence[0] += f" ({step.span})"
    return _changed(
        _step_place(step), evidence, confirm_rule(step.family, step.table, step.chain, netns)
    )


def _other_step(seen: Step, simulated: Step, found: TraceDiff, netns: str) -> Finding:
    if isinstance(seen, NetfilterStep) and isinstance(simulated, NetfilterStep):
        states = {*matched_states(seen.rule), *matched_states(simulated.rule)}
        evidence = [f"step {found.index}: {found.reason}"]
        evidence += [rule_fact(r) for r in (seen.rule, simulated.rule) if r is not None]
        if seen.span is not None:
            evidence.append(f"the observed step: {seen.span}")
        confirm = confirm_rule(seen.family, seen.table, seen.chain, netns)
        if states:
            return _conntrack_differs(seen, states, evidence, netns)
        return _changed(_step_place(seen), evidence, confirm)
    if isinstance(seen, OpenFlowStep):
        evidence = [f"step {found.index}: {found.reason}"]
        confirm = f"ovs-ofctl dump-flows {seen.bridge} table={seen.table}"
        return Finding(
            Layer.OPENFLOW,
            _step_place(seen),
            cause(CauseId.RULES_CHANGED, evidence, confirm,
                  "the observed OpenFlow path contradicts the flows given"),
        )  # fmt: skip
    evidence = [f"step {found.index}: {found.reason}"]
    return Finding(
        Layer.UNKNOWN,
        _step_place(seen),
        cause(CauseId.UNKNOWN, evidence, title=f"the observation parts here: {found.reason}"),
    )


def _conntrack_differs(
    seen: NetfilterStep, states: set[str], evidence: list[str], netns: str
) -> Finding:
    """The two paths part at a rule testing the connection's state: the node's conntrack saw
    another state than the one simulated."""
    seen_states = matched_states(seen.rule)
    confirm = in_netns("conntrack -S", netns) + "; " + in_netns("conntrack -L", netns)
    if "INVALID" in seen_states:
        return Finding(
            Layer.CONNTRACK,
            _step_place(seen),
            cause(CauseId.CONNTRACK_INVALID, evidence, confirm),
        )
    said = ", ".join(sorted(states))
    title = f"the node's conntrack saw another connection state than simulated ({said})"
    return Finding(
        Layer.CONNTRACK,
        _step_place(seen),
        cause(CauseId.UNKNOWN, [*evidence, "the log does not carry the connection's state"],
              confirm, title),
    )  # fmt: skip


def _went_on(seen: Step, view: Trace, found: TraceDiff, netns: str) -> Finding:
    """The observation has steps where the prediction had ended."""
    evidence = [f"step {found.index}: {found.reason}"]
    if view.outcome in LOST:
        evidence.append(f"the rules given drop it: {view.reason}")
    if isinstance(seen, NetfilterStep):
        confirm = confirm_rule(seen.family, seen.table, seen.chain, netns)
        return _changed(_step_place(seen), evidence, confirm)
    if isinstance(seen, OpenFlowStep):
        return Finding(
            Layer.OPENFLOW,
            _step_place(seen),
            cause(CauseId.RULES_CHANGED, evidence, f"ovs-ofctl dump-flows {seen.bridge}",
                  "the observed OpenFlow path contradicts the flows given"),
        )  # fmt: skip
    return Finding(
        Layer.UNKNOWN,
        _step_place(seen),
        cause(CauseId.UNKNOWN, evidence, title=f"the observation goes on: {found.reason}"),
    )


def _last_netfilter(trace: Trace) -> NetfilterStep | None:
    return next((s for s in reversed(trace.steps) if isinstance(s, NetfilterStep)), None)


def _dnat_seen(observed: Trace) -> NetfilterStep | None:
    for step in observed.steps:
        if not isinstance(step, NetfilterStep) or step.rule is None:
            continue
        target = step.rule.target
        if isinstance(target, NatTarget) and target.nat_type in ("DNAT", "REDIRECT"):
            return step
    return None


def _routed_away(snapshot: Snapshot, dnat: NetfilterStep, bridge: str, netns: str) -> str | None:
    """The device the DNAT's new destination is routed out of, when it is not ``bridge``
    (``None`` when it stays on the bridge or cannot be told)."""
    rule = dnat.rule
    target = rule.target if rule is not None else None
    if not isinstance(target, NatTarget) or not target.ranges:
        return None
    address = target.ranges[0].addr_lo
    if address is None:
        return None
    decision = routing.decide(snapshot.topology, address, netns=netns)
    if decision.dev is None or decision.dev == bridge:
        return None
    return decision.dev


def _stopped(
    snapshot: Snapshot,
    observed: Trace,
    view: Trace,
    simulated: Step,
    found: TraceDiff,
    netns: str,
) -> Finding:
    """The observation ends where the prediction goes on."""
    last = _last_netfilter(observed)
    evidence = [f"step {found.index}: {found.reason}"]
    next_hook = simulated.hook if isinstance(simulated, NetfilterStep) else None
    if last is not None and last.hook is Hook.PREROUTING and next_hook in (
        Hook.FORWARD, Hook.INPUT,
    ):  # fmt: skip
        family = last.family
        forward_key = (
            "net.ipv4.ip_forward" if family is not Family.IPV6 else "net.ipv6.conf.all.forwarding"
        )
        state = snapshot.namespace(netns)
        forwarding = state.sysctls.forwarding(family) if state is not None else None
        fact = sysctl_fact(snapshot, netns, forward_key)
        if last.physin:
            dnat = _dnat_seen(observed)
            away = _routed_away(snapshot, dnat, last.in_dev, netns) if dnat else None
            if dnat is not None and forwarding is False and away is not None:
                evidence += [
                    fact,
                    f"the packet's destination was rewritten in PREROUTING ({describe(dnat)})",
                    f"the new destination is routed out of {away}, not back into the bridge",
                    "br_netfilter routes a bridged packet whose destination changed; with "
                    "forwarding off that route fails (bridged-and-DNATed traffic that stays "
                    "on the bridge needs no forwarding) and the packet is dropped",
                ]
                return Finding(
                    Layer.ROUTING,
                    f"{last.in_dev} after PREROUTING (br_netfilter re-route)",
                    cause(CauseId.IP_FORWARD_OFF, evidence, in_netns(f"sysctl {forward_key}", netns)),
                )  # fmt: skip
            evidence.append(
                f"the bridge {last.in_dev} did not forward the frame from {last.physin}: its "
                "forwarding table, a port's link state or MTU decided; the snapshot says it "
                "would pass"
            )
            confirm = (
                in_netns(f"bridge fdb show br {last.in_dev}", netns)
                + "; "
                + confirm_link(last.in_dev, netns)
            )
            return Finding(
                Layer.BRIDGE,
                f"{last.in_dev} after PREROUTING",
                cause(CauseId.UNKNOWN, evidence, confirm,
                      f"{last.in_dev} did not forward the frame; the snapshot cannot tell why"),
            )  # fmt: skip
        rp_keys = ["net.ipv4.conf.all.rp_filter", f"net.ipv4.conf.{last.in_dev}.rp_filter"]
        evidence += [fact, *(sysctl_fact(snapshot, netns, k) for k in rp_keys)]
        if forwarding is False and next_hook is Hook.FORWARD:
            return Finding(
                Layer.ROUTING,
                f"{last.in_dev} (routing decision)",
                cause(CauseId.IP_FORWARD_OFF, evidence, in_netns(f"sysctl {forward_key}", netns)),
            )
        confirm = (
            in_netns(f"sysctl {forward_key} {' '.join(rp_keys)}", netns)
            + "; "
            + in_netns("nstat -az TcpExtIPReversePathFilter IpInAddrErrors IpInNoRoutes", netns)
        )
        return Finding(
            Layer.ROUTING,
            f"{last.in_dev} (routing decision)",
            cause(CauseId.UNKNOWN, evidence, confirm,
                  "the routing decision after PREROUTING dropped it; the snapshot says it "
                  "would pass (rp_filter, ip_forward or routes changed?)"),
        )  # fmt: skip
    evidence.append(f"the snapshot says it goes on: {view.reason}")
    return Finding(
        Layer.UNKNOWN,
        describe(simulated),
        cause(CauseId.UNKNOWN, evidence,
              title=f"the observation ends before {describe(simulated)}, which the snapshot "
              "predicts; nothing in it tells why"),
    )  # fmt: skip


def _outcome_only(observed: Trace, view: Trace, found: TraceDiff, netns: str) -> Finding:
    last = _last_netfilter(observed)
    evidence = [found.reason]
    if last is not None:
        if last.rule is not None:
            evidence.append(rule_fact(last.rule))
        confirm = confirm_rule(last.family, last.table, last.chain, netns)
        return _changed(_step_place(last), evidence, confirm)
    return Finding(
        Layer.UNKNOWN,
        "",
        Cause(CauseId.UNKNOWN.value, TITLES[CauseId.UNKNOWN], tuple(evidence)),
    )


def snapshot_note(snapshot: Snapshot) -> str:
    return where(snapshot)
