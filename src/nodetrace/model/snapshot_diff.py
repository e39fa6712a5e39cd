"""What changed on a node between two snapshots: counters that grew, rules and flows added,
removed or changed, ipset members, devices; and, for one packet, how its fate differs.

Rules are matched per namespace, family, table and chain by their text (the N-th copy of the
same text with the N-th), flows per bridge by their identity (table, priority, cookie and
match, :func:`~nodetrace.model.counters.flow_identity`): never by position, which shifts for
every rule or flow an agent inserts before them. A flow of the same identity with other actions
is *changed*; a rule whose text changed is one removed and one added (iptables has no identity
for a rule but its text). Pure: both snapshots' counters come in as
:class:`~nodetrace.model.counters.CounterTables`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from nodetrace.model.counters import (
    POLICY,
    CounterId,
    CounterSource,
    CounterTables,
    Stats,
    flow_identity,
    rule_items,
)
from nodetrace.model.ipset import IpSet
from nodetrace.model.netfilter import Ruleset
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import Interface
from nodetrace.model.trace import Trace
from nodetrace.model.trace_diff import TraceDiff, diff


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class RuleChange:
    change: Change
    netns: str
    family: str
    table: str
    chain: str
    text: str
    """The rule's text; for a chain added or removed, or whose policy changed, ``:CHAIN
    POLICY`` as iptables-save prints it."""
    position_a: int | None = None
    position_b: int | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FlowChange:
    change: Change
    bridge: str
    identity: str
    actions_a: str | None
    actions_b: str | None


@dataclass(frozen=True, slots=True)
class SetChange:
    change: Change
    netns: str
    name: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceChange:
    change: Change
    netns: str
    name: str
    details: tuple[str, ...] = ()
    """For a changed device: what changed (``up: yes -> no``, ``mtu: 1500 -> 1400``)."""


@dataclass(frozen=True, slots=True)
class CounterGrowth:
    counter: CounterId
    before: int
    after: int

    @property
    def delta(self) -> int:
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class PacketFate:
    """One packet traced on both snapshots and where the two traces part."""

    packet: str
    a: Trace
    b: Trace
    divergence: TraceDiff


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    a: str
    b: str
    rules: tuple[RuleChange, ...]
    flows: tuple[FlowChange, ...]
    sets: tuple[SetChange, ...]
    devices: tuple[DeviceChange, ...]
    grown: tuple[CounterGrowth, ...]
    """Counters that rose from A to B (rules, policies, flows, devices)."""
    reset: tuple[CounterGrowth, ...]
    """Counters lower in B than in A: reset (a rule re-inserted, a device re-created, a
    restart) rather than grown; said so that no one reads them as a rise."""
    not_compared: tuple[str, ...]
    """Counter tables only one snapshot (or neither) holds: their changes are unknown."""
    fate: PacketFate | None = None

    @property
    def same(self) -> bool:
        changes = (self.rules, self.flows, self.sets, self.devices, self.grown)
        fate_same = self.fate is None or self.fate.divergence.same
        return not any(changes) and fate_same


def diff_snapshots(
    a: Snapshot,
    b: Snapshot,
    counters_a: CounterTables,
    counters_b: CounterTables,
    *,
    fate: tuple[str, Trace, Trace] | None = None,
) -> SnapshotDiff:
    """Everything that differs from ``a`` to ``b``; ``fate``: a packet and its two traces."""
    grown: list[CounterGrowth] = []
    reset: list[CounterGrowth] = []
    for counter, before, after in _matched_counters(counters_a, counters_b):
        if after > before:
            grown.append(CounterGrowth(counter, before, after))
        elif after < before:
            reset.append(CounterGrowth(counter, before, after))
    packet = None
    if fate is not None:
        text, trace_a, trace_b = fate
        packet = PacketFate(text, trace_a, trace_b, diff(trace_a, trace_b))
    return SnapshotDiff(
        a.source,
        b.source,
        tuple(_rule_changes(counters_a, counters_b)),
        tuple(_flow_changes(counters_a, counters_b)),
        tuple(_set_changes(a, b)),
        tuple(_device_changes(a, b)),
        tuple(grown),
        tuple(reset),
        tuple(_not_compared(counters_a, counters_b)),
        packet,
    )


# ---------------------------------------------------------------------------------------------
# Rules


def _rule_changes(a: CounterTables, b: CounterTables) -> Iterator[RuleChange]:
    for key in dict.fromkeys([*a.rulesets, *b.rulesets]):
        ns, family = key
        ra, rb = a.rulesets.get(key), b.rulesets.get(key)
        if ra is None or rb is None:
            continue  # said in not_compared
        yield from _ruleset_changes(ns, family.value, ra, rb)


def _ruleset_changes(ns: str, family: str, a: Ruleset, b: Ruleset) -> Iterator[RuleChange]:
    tables = dict.fromkeys([*a.tables, *b.tables])
    for table in tables:
        ta, tb = a.tables.get(table), b.tables.get(table)
        chains = dict.fromkeys([*(ta.chains if ta else {}), *(tb.chains if tb else {})])
        for name in chains:
            ca = ta.chains.get(name) if ta else None
            cb = tb.chains.get(name) if tb else None
            either = cb or ca
            head = f":{name} {either.policy or '-'}" if either is not None else f":{name}"
            if ca is None or cb is None:
                # A whole chain: its rules are not listed one by one, only counted.
                change = Change.ADDED if ca is None else Change.REMOVED
                count = len(either.rules) if either is not None else 0
                detail = f"chain {change.value} with {count} rules"
                yield RuleChange(change, ns, family, table, name, head, detail=detail)
                continue
            if ca.policy != cb.policy:
                detail = f"policy {ca.policy} -> {cb.policy}"
                yield RuleChange(Change.CHANGED, ns, family, table, name, head, detail=detail)
            rules_a = dict(rule_items(ca)) if ca else {}
            rules_b = dict(rule_items(cb)) if cb else {}
            for item, rule in rules_a.items():
                if item not in rules_b:
                    yield RuleChange(Change.REMOVED, ns, family, table, name, rule.text,
                                     position_a=rule.position)  # fmt: skip
            for item, rule in rules_b.items():
                if item not in rules_a:
                    yield RuleChange(Change.ADDED, ns, family, table, name, rule.text,
                                     position_b=rule.position)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Flows


def _flow_changes(a: CounterTables, b: CounterTables) -> Iterator[FlowChange]:
    for bridge in dict.fromkeys([*a.flows, *b.flows]):
        da, db = a.flows.get(bridge), b.flows.get(bridge)
        if da is None or db is None:
            continue
        fa = {flow_identity(f): f for f in da.flows}
        fb = {flow_identity(f): f for f in db.flows}
        for identity, flow in fa.items():
            other = fb.get(identity)
            if other is None:
                yield FlowChange(Change.REMOVED, bridge, identity, flow.actions_text, None)
            elif other.actions_text != flow.actions_text:
                yield FlowChange(
                    Change.CHANGED, bridge, identity, flow.actions_text, other.actions_text
                )
        for identity, flow in fb.items():
            if identity not in fa:
                yield FlowChange(Change.ADDED, bridge, identity, None, flow.actions_text)


# ---------------------------------------------------------------------------------------------
# Counters


def _matched_counters(a: CounterTables, b: CounterTables) -> Iterator[tuple[CounterId, int, int]]:
    """Every counter both readings hold, in a stable order: rules (and policies), flows,
    devices, Open vSwitch interfaces, then the namespace-wide tables."""
    for key in a.rulesets:
        rb = b.rulesets.get(key)
        if rb is None:
            continue
        ns, family = key
        for table in a.rulesets[key].tables.values():
            for chain in table.chains.values():
                owner = f"{family.value} {table.name} {chain.name}"
                cb = rb.chain(table.name, chain.name)
                if cb is None:
                    continue
                if chain.counters is not None and cb.counters is not None:
                    counter = CounterId(CounterSource.IPTABLES, ns, owner, POLICY, "packets")
                    yield counter, chain.counters[0], cb.counters[0]
                others = dict(rule_items(cb))
                for item, rule in rule_items(chain):
                    other = others.get(item)
                    if other is None or rule.counters is None or other.counters is None:
                        continue
                    counter = CounterId(CounterSource.IPTABLES, ns, owner, item, "packets")
                    yield counter, rule.counters[0], other.counters[0]
    for bridge, dump in a.flows.items():
        other_dump = b.flows.get(bridge)
        if other_dump is None:
            continue
        flows_b = {flow_identity(f): f for f in other_dump.flows}
        for flow in dump.flows:
            identity = flow_identity(flow)
            counted = flows_b.get(identity)
            before = flow.stats.n_packets if flow.stats else None
            after = counted.stats.n_packets if counted is not None and counted.stats else None
            if before is not None and after is not None:
                yield (
                    CounterId(CounterSource.OPENFLOW, "", bridge, identity, "n_packets"),
                    before,
                    after,
                )
    for ns, devices in a.links.items():
        for device, stats in devices.items():
            yield from _stats(
                CounterSource.DEVICE, ns, device, stats, b.links.get(ns, {}).get(device)
            )
    for name, stats in a.ovs_interfaces.items():
        yield from _stats(CounterSource.OVS_INTERFACE, "", name, stats, b.ovs_interfaces.get(name))
    for ns, stats in a.conntrack.items():
        yield from _stats(CounterSource.CONNTRACK, ns, "", stats, b.conntrack.get(ns))
    for ns, stats in a.nstat.items():
        yield from _stats(CounterSource.NSTAT, ns, "", stats, b.nstat.get(ns))
    for name, stats in a.datapaths.items():
        yield from _stats(CounterSource.DATAPATH, "", name, stats, b.datapaths.get(name))


_DEVICE_COUNTERS = (
    "rx_packets",
    "rx_dropped",
    "rx_errors",
    "tx_packets",
    "tx_dropped",
    "tx_errors",
)


def _stats(
    source: CounterSource,
    ns: str,
    owner: str,
    before: Stats,
    after: Stats | None,
) -> Iterator[tuple[CounterId, int, int]]:
    """The named counters both readings hold (a device's packet, drop and error counts;
    every counter of a namespace or a datapath)."""
    if after is None:
        return
    device = source in (CounterSource.DEVICE, CounterSource.OVS_INTERFACE)
    for name in _DEVICE_COUNTERS if device else tuple(before):
        x, y = before.get(name), after.get(name)
        if x is not None and y is not None:
            yield CounterId(source, ns, owner, "", name), x, y


def _not_compared(a: CounterTables, b: CounterTables) -> Iterator[str]:
    """Tables one side lacks: what was read from the other cannot be compared."""
    sides = (("A", a, b), ("B", b, a))
    for label, side, other in sides:
        for (source, where), why in sorted(side.unreadable.items()):
            if (source, where) in other.unreadable and label == "B":
                continue  # said once, from A
            both = (source, where) in other.unreadable
            who = "both snapshots" if both else f"snapshot {label}"
            place = f" of {where}" if where else ""
            yield f"{source.value}{place} ({who}): {why}"


# ---------------------------------------------------------------------------------------------
# Ipsets and devices


def _set_changes(a: Snapshot, b: Snapshot) -> Iterator[SetChange]:
    names = dict.fromkeys([*(s.name for s in a.namespaces), *(s.name for s in b.namespaces)])
    for ns in names:
        sa, sb = a.namespace(ns), b.namespace(ns)
        ia = sa.ipsets if sa is not None else None
        ib = sb.ipsets if sb is not None else None
        if ia is None or ib is None:
            continue
        for name in dict.fromkeys([*ia.sets, *ib.sets]):
            xa, xb = ia.get(name), ib.get(name)
            if xa is None and xb is not None:
                yield SetChange(Change.ADDED, ns, name, added=_members(xb))
                continue
            if xb is None and xa is not None:
                yield SetChange(Change.REMOVED, ns, name, removed=_members(xa))
                continue
            if xa is None or xb is None:
                continue
            ma, mb = _members(xa), _members(xb)
            added = tuple(m for m in mb if m not in ma)
            removed = tuple(m for m in ma if m not in mb)
            if added or removed:
                yield SetChange(Change.CHANGED, ns, name, added, removed)


def _members(ipset: IpSet) -> tuple[str, ...]:
    """Each member as ipset prints it, without its options (a timeout counts down)."""
    return tuple(dict.fromkeys((m.text.split() or [""])[0] for m in ipset.members))


def _device_changes(a: Snapshot, b: Snapshot) -> Iterator[DeviceChange]:
    da = {(i.netns, i.name): i for i in a.topology.interfaces}
    db = {(i.netns, i.name): i for i in b.topology.interfaces}
    for key, iface in da.items():
        other = db.get(key)
        if other is None:
            yield DeviceChange(Change.REMOVED, key[0], key[1])
            continue
        details = tuple(_device_details(iface, other))
        if details:
            yield DeviceChange(Change.CHANGED, key[0], key[1], details)
    for key in db:
        if key not in da:
            yield DeviceChange(Change.ADDED, key[0], key[1])


def _device_details(a: Interface, b: Interface) -> Iterator[str]:
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    if a.up != b.up:
        yield f"up: {yes(a.up)} -> {yes(b.up)}"
    if a.carrier != b.carrier:
        yield f"carrier: {yes(a.carrier)} -> {yes(b.carrier)}"
    if a.mtu != b.mtu:
        yield f"mtu: {a.mtu} -> {b.mtu}"
    if a.master != b.master:
        yield f"master: {a.master or '-'} -> {b.master or '-'}"
    if a.mac != b.mac:
        yield f"mac: {a.mac or '-'} -> {b.mac or '-'}"
