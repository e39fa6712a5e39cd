"""The snapshot's facts a cause rests on, each worded with where it was read, so that every
piece of evidence can be checked against the node's own output."""

from __future__ import annotations

from nodetrace.model.netfilter import ConntrackMatch, Rule, StateMatch
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS, Interface


def find_device(snapshot: Snapshot, name: str, netns: str | None = None) -> Interface | None:
    """Device ``name`` (in ``netns`` when given, else the main namespace first, then any)."""
    topology = snapshot.topology
    if netns is not None:
        return topology.interface(name, netns)
    found = topology.interface(name, MAIN_NS)
    if found is not None:
        return found
    return next((i for i in topology.interfaces if i.name == name), None)


def where(snapshot: Snapshot) -> str:
    return f"snapshot {snapshot.source}"


def link_fact(snapshot: Snapshot, dev: Interface) -> str:
    """A device's link as ``ip link`` shows it, with the snapshot it was read from."""
    flags = ["UP" if dev.up else "not UP", "LOWER_UP" if dev.carrier else "NO-CARRIER"]
    mtu = f"mtu {dev.mtu}" if dev.mtu is not None else "mtu not known"
    ns = f" (namespace {dev.netns})" if dev.netns != MAIN_NS else ""
    return f"ip link: {dev.name}{ns} <{','.join(flags)}> {mtu} ({where(snapshot)})"


def sysctl_fact(snapshot: Snapshot, netns: str, key: str) -> str:
    """``key = value`` as the snapshot's sysctl output has it (or that it is not there)."""
    state = snapshot.namespace(netns)
    sysctls = state.sysctls if state is not None else None
    value = sysctls.get(key) if sysctls is not None else None
    source = sysctls.source if sysctls is not None and sysctls.source else where(snapshot)
    if value is None:
        return f"{key}: not in the snapshot's sysctl output ({source})"
    return f"{key} = {value} ({source})"


def rule_fact(rule: Rule) -> str:
    """A rule's text with the file and line it was read from."""
    at = f" ({rule.pos})" if rule.pos is not None else ""
    return f"{rule.text}{at}"


def matched_states(rule: Rule | None) -> tuple[str, ...]:
    """The conntrack states a rule requires (``-m state``/``-m conntrack --ctstate``), when it
    requires some and does not negate them."""
    if rule is None:
        return ()
    for match in rule.matches:
        if isinstance(match, StateMatch) and not match.negated:
            return match.states
        ctstate = match.ctstate if isinstance(match, ConntrackMatch) else None
        if ctstate is not None and not ctstate.negated:
            return tuple(ctstate.value)
    return ()
