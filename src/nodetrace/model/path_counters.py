"""The counters along one packet's predicted path, and where their count falls off.

A predicted :class:`~nodetrace.model.trace.Trace` is cut into *hops*: a device receiving or
sending, a netfilter hook at a set of devices, an Open vSwitch bridge's pipeline. Each hop gets
the counters that move when the packet passes it (the rules and flows the trace crossed, the
devices' ``rx``/``tx``) and those that move when it dies there (``rx_dropped``,
``tx_dropped``). :func:`compare` takes two readings (:class:`~nodetrace.model.counters.
CounterTables`) and says per hop how much each counter rose, and where the count *falls off*:
the first hop whose counters did not move while the hop before did.

Pure: the readings come from ``live/counters.py`` (a running node) or from snapshots.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from nodetrace.model.counters import (
    POLICY,
    CounterId,
    CounterRole,
    CounterSource,
    CounterTables,
    flow_identity,
    flow_of_step,
    rule_items,
)
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    NetfilterStep,
    OpenFlowStep,
    StepKind,
    Trace,
)


@dataclass(frozen=True, slots=True)
class PathCounter:
    """A counter watched at a hop, what a rise means, and what it counts in words."""

    id: CounterId
    role: CounterRole
    label: str
    step: int | None = None
    """The trace step (from 1) the counter belongs to, when one step owns it."""
    first_hop: int | None = None
    """The earlier hop this same counter already belongs to (the packet crosses the rule
    twice, as ``FORWARD -j neutron-filter-top`` at both ends of a hybrid port): its rise may
    come from that hop, so it does not decide whether this one counted."""

    @property
    def follows(self) -> bool:
        """Whether the counter says, alone, that the packet passed its hop."""
        return self.role is CounterRole.PASS and self.first_hop is None


@dataclass(frozen=True, slots=True)
class CounterHop:
    """One place on the predicted path with its own counters."""

    index: int
    """From 1, in path order."""
    label: str
    netns: str
    steps: tuple[int, ...]
    """Trace steps (from 1) that happened at this hop."""
    counters: tuple[PathCounter, ...]
    other_copy: bool = False
    """The hop belongs to another copy of a flooded packet than the one the verdict follows
    (a bridge's NORMAL sends a copy out of every port): shown, not used to follow the count."""


@dataclass(frozen=True, slots=True)
class WatchPlan:
    """What to read: the predicted trace, its hops, and the namespace-wide drop counters of
    the namespaces it crosses (conntrack, the kernel's SNMP counters, the datapath)."""

    trace: Trace
    hops: tuple[CounterHop, ...]
    node_wide: tuple[PathCounter, ...]
    notes: tuple[str, ...] = ()
    """What the plan could not attach to a counter (a rule without identity, a flow missing
    from the dump), said rather than skipped."""

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(h.netns for h in self.hops)) or (MAIN_NS,)

    @property
    def bridges(self) -> tuple[str, ...]:
        found = (c.id.owner for h in self.hops for c in h.counters)
        sources = (c.id.source for h in self.hops for c in h.counters)
        return tuple(dict.fromkeys(o for o, s in zip(found, sources, strict=True) if s is _OF))

    @property
    def families(self) -> tuple[str, ...]:
        rules = (c.id for h in self.hops for c in h.counters)
        return tuple(dict.fromkeys(r.owner.split(" ")[0] for r in rules if r.source is _NF))

    def counters(self) -> tuple[PathCounter, ...]:
        return (*(c for h in self.hops for c in h.counters), *self.node_wide)


_NF, _OF = CounterSource.IPTABLES, CounterSource.OPENFLOW
_NAT_NOTE = " [nat: a connection's first packet only]"

NSTAT_DROPS = {
    "IpInDiscards": "IPv4 packets discarded on input (no buffer, bad route...)",
    "IpInHdrErrors": "IPv4 packets with header errors",
    "IpInAddrErrors": "IPv4 packets for an address this namespace does not have",
    "IpOutNoRoutes": "IPv4 packets with no route",
    "IpOutDiscards": "IPv4 packets discarded on output",
    "IpReasmFails": "IPv4 reassemblies that failed",
    "IpFragFails": "IPv4 packets that needed fragmenting but could not be (DF set)",
    "Ip6InDiscards": "IPv6 packets discarded on input",
    "Ip6InNoRoutes": "IPv6 packets with no route (input)",
    "Ip6OutNoRoutes": "IPv6 packets with no route",
    "TcpExtTCPBacklogDrop": "TCP segments dropped: socket backlog full",
}
"""``nstat`` counters that rise when the kernel drops an IP packet, and what each counts."""

CONNTRACK_DROPS = {
    "invalid": "packets conntrack found invalid (INVALID state)",
    "insert_failed": "connections that could not be inserted (a race or a clash)",
    "drop": "packets dropped because the table was full",
    "early_drop": "connections evicted to make room",
    "error": "packets with errors (ICMP errors conntrack could not match)",
}
"""``conntrack -S`` counters that count lost packets or connections."""

DATAPATH_DROPS = {"lost": "upcalls lost: packets the datapath could not hand to ovs-vswitchd"}


class HopState(StrEnum):
    MOVED = "moved"
    STILL = "still"
    """Every pass counter of the hop was read twice and none rose."""
    UNKNOWN = "unknown"
    """No pass counter of the hop could be read twice."""
    OTHER_COPY = "other-copy"
    """The hop is on another copy of a flooded packet (:attr:`CounterHop.other_copy`)."""
    NOT_FOLLOWED = "not-followed"
    """The hop has no counter that counts every packet (only ``nat`` rules, which see a
    connection's first packet): it neither continues nor breaks the count."""


@dataclass(frozen=True, slots=True)
class CounterChange:
    counter: PathCounter
    before: int | None
    after: int | None
    why_unknown: str = ""

    @property
    def delta(self) -> int | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before


@dataclass(frozen=True, slots=True)
class HopChange:
    hop: CounterHop
    changes: tuple[CounterChange, ...]
    state: HopState
    count: int | None = None
    """How many packets the hop counted at most: the smallest rise of its counters that
    follow the packet (each counts ours and other traffic); ``None`` when none was read."""

    @property
    def drops(self) -> tuple[CounterChange, ...]:
        return tuple(
            c for c in self.changes if c.counter.role is CounterRole.DROP and (c.delta or 0) > 0
        )


@dataclass(frozen=True, slots=True)
class FallOff:
    """Where the count stops: the last hop that counted what reached it, and the first one
    that counted fewer than half of it (:func:`falls_short`)."""

    last_moved: int | None
    """Index of the last hop that counted before the fall (``None``: no hop counted)."""
    first_still: int
    """Index of the hop that fell short."""
    last_counter: CounterChange | None = None
    """The last counter, in path order, that still counted (in the hop that fell short when
    its first counters did, as rules before the one that drops)."""
    first_silent: CounterChange | None = None
    """The first counter after it that fell short."""
    counted: int = 0
    """What the hop that fell short counted."""
    reaching: int = 0
    """What every hop before it counted at least."""


@dataclass(frozen=True, slots=True)
class WatchResult:
    plan: WatchPlan
    hops: tuple[HopChange, ...]
    node_wide: tuple[CounterChange, ...]
    seconds: float
    falls_off: FallOff | None
    reached_end: bool
    """The last hop of the path counted (the predicted fate was reached)."""
    unknown: tuple[CounterChange, ...] = field(default=())
    """Every counter that could not be read in one of the two readings, with why."""

    @property
    def drops(self) -> tuple[CounterChange, ...]:
        hop_drops = (c for h in self.hops for c in h.drops)
        wide = (c for c in self.node_wide if (c.delta or 0) > 0)
        return (*hop_drops, *wide)


# ---------------------------------------------------------------------------------------------
# The plan


def plan_counters(snapshot: Snapshot, trace: Trace, *, start_netns: str = MAIN_NS) -> WatchPlan:
    """The hops of ``trace`` (predicted on ``snapshot``) and the counters to watch at each."""
    builder = _PlanBuilder(snapshot, start_netns)
    for number, step in enumerate(trace.steps, start=1):
        match step:
            case DeviceStep():
                builder.device(number, step)
            case NetfilterStep():
                builder.netfilter(number, step)
            case OpenFlowStep():
                builder.openflow(number, step)
    hops = builder.finish(_other_copies(trace))
    namespaces = tuple(dict.fromkeys(h.netns for h in hops)) or (start_netns,)
    wide: list[PathCounter] = []
    for ns in namespaces:
        where = f" in namespace {ns}" if ns != MAIN_NS else ""
        for name, what in CONNTRACK_DROPS.items():
            counter = CounterId(CounterSource.CONNTRACK, ns, "", "", name)
            wide.append(PathCounter(counter, CounterRole.DROP, what + where))
        for name, what in NSTAT_DROPS.items():
            counter = CounterId(CounterSource.NSTAT, ns, "", "", name)
            wide.append(PathCounter(counter, CounterRole.DROP, what + where))
    if any(c.id.source is _OF for h in hops for c in h.counters):
        for name, what in DATAPATH_DROPS.items():
            counter = CounterId(CounterSource.DATAPATH, MAIN_NS, "", "", name)
            wide.append(PathCounter(counter, CounterRole.DROP, what))
    return WatchPlan(trace, hops, tuple(wide), tuple(builder.notes))


@dataclass
class _Open:
    key: tuple[object, ...]
    label: str
    netns: str
    steps: list[int]
    counters: list[PathCounter]


class _PlanBuilder:
    def __init__(self, snapshot: Snapshot, netns: str) -> None:
        self.snapshot = snapshot
        self.netns = netns
        self.hops: list[_Open] = []
        self.notes: list[str] = []
        self.ovs_ports = {
            p.name for b in (snapshot.ovs.bridges if snapshot.ovs else ()) for p in b.ports
        }

    # -- where a device is ------------------------------------------------------------------

    def locate(self, device: str) -> str:
        """The namespace of ``device``: the current one when it has it, else the one
        namespace that does; the current one (said) when none or several do."""
        topo = self.snapshot.topology
        if topo.interface(device, self.netns) is not None:
            return self.netns
        holders = [ns for ns in topo.namespaces if topo.interface(device, ns) is not None]
        if len(holders) == 1:
            self.netns = holders[0]
        elif len(holders) > 1:
            note = f"{device} exists in namespaces {', '.join(holders)}: read in {self.netns!r}"
            if note not in self.notes:
                self.notes.append(note)
        return self.netns

    # -- hops -------------------------------------------------------------------------------

    def open(self, key: tuple[object, ...], label: str, netns: str, number: int) -> _Open:
        if self.hops and self.hops[-1].key == key:
            hop = self.hops[-1]
        else:
            hop = _Open(key, label, netns, [], [])
            self.hops.append(hop)
        hop.steps.append(number)
        return hop

    def attach(self, number: int) -> None:
        """A step without counters of its own belongs to the hop it happens in."""
        if self.hops:
            self.hops[-1].steps.append(number)

    def device(self, number: int, step: DeviceStep) -> None:
        match step.action:
            case DeviceAction.ENTER:
                bridge = self.snapshot.ovs.bridge(step.device) if self.snapshot.ovs else None
                if bridge is not None:
                    hop = self.open(("bridge", step.device), f"{step.device} (OpenFlow)",
                                    MAIN_NS, number)  # fmt: skip
                    port = _in_port(step.detail)
                    if port and port in self.ovs_ports:
                        hop.counters += _ovs_iface(port, "rx", number)
                    return
                self.receive(number, step.device, "received on")
            case DeviceAction.VETH:
                ends = step.device.split(" → ")
                peer = ends[-1].strip()
                self.receive(number, peer, "veth peer receives on")
            case DeviceAction.OUTPUT:
                ns = MAIN_NS if step.device in self.ovs_ports else self.locate(step.device)
                hop = self.open(("tx", ns, step.device), f"sent out of {step.device}", ns, number)
                hop.counters += _link(ns, step.device, "tx", number)
                if step.device in self.ovs_ports:
                    hop.counters += _ovs_iface(step.device, "tx", number)
            case DeviceAction.DELIVER:
                last = self.hops[-1] if self.hops else None
                if last is not None and last.key[0] == "tx" and last.key[-1] == step.device:
                    last.steps.append(number)
                    return
                ns = self.locate(step.device)
                hop = self.open(("tx", ns, step.device), f"sent out of {step.device}", ns, number)
                hop.counters += _link(ns, step.device, "tx", number)
            case (
                DeviceAction.BRIDGE
                | DeviceAction.PATCH
                | DeviceAction.ENCAP
                | DeviceAction.DECAP
                | DeviceAction.ROUTE
                | DeviceAction.RECIRC
            ):
                # No counter of their own: a Linux bridge counts only frames for the host, a
                # patch port none; encapsulation and routing show in the next device's counters.
                self.attach(number)

    def receive(self, number: int, device: str, words: str) -> None:
        ns = self.locate(device)
        hop = self.open(("rx", ns, device), f"{words} {device}", ns, number)
        hop.counters += _link(ns, device, "rx", number)

    def netfilter(self, number: int, step: NetfilterStep) -> None:
        ns = self.netns
        devices = (step.hook, step.in_dev, step.out_dev, step.physin, step.physout)
        where = _hook_words(step)
        hop = self.open(("hook", ns, step.family, *devices), where, ns, number)
        owner = f"{step.family.value} {step.table} {step.chain}"
        role = CounterRole.INFO if step.table == "nat" else CounterRole.PASS
        if step.rule is not None:
            item = self.rule_item(step, ns)
            if item is None:
                return
            label = f"{step.table} {step.chain} rule {step.rule.position}: {step.rule.text}"
            label += _NAT_NOTE if role is CounterRole.INFO else ""
            counter = CounterId(_NF, ns, owner, item, "packets")
            hop.counters.append(PathCounter(counter, role, label, number))
        elif step.kind is StepKind.POLICY:
            counter = CounterId(_NF, ns, owner, POLICY, "packets")
            label = f"{step.table} {step.chain} policy"
            label += _NAT_NOTE if role is CounterRole.INFO else ""
            hop.counters.append(PathCounter(counter, role, label, number))

    def rule_item(self, step: NetfilterStep, ns: str) -> str | None:
        state = self.snapshot.namespace(ns)
        ruleset = state.ruleset(step.family) if state is not None else None
        chain = ruleset.chain(step.table, step.chain) if ruleset is not None else None
        rule = step.rule
        if chain is not None and rule is not None:
            for item, candidate in rule_items(chain):
                if candidate is rule or candidate.position == rule.position:
                    return item
        self.notes.append(f"step {step.table} {step.chain}: its rule is not in the ruleset read")
        return None

    def openflow(self, number: int, step: OpenFlowStep) -> None:
        hop = self.open(("bridge", step.bridge), f"{step.bridge} (OpenFlow)", MAIN_NS, number)
        bridge = self.snapshot.ovs.bridge(step.bridge) if self.snapshot.ovs else None
        dump = bridge.flows if bridge is not None else None
        if not step.match and step.priority is None:
            return  # a table miss: no flow counts it
        flow = (
            flow_of_step(dump, step.table, step.priority, step.match, step.cookie)
            if dump is not None
            else None
        )
        if flow is None:
            self.notes.append(
                f"{step.bridge} table {step.table} priority {step.priority}: the flow is not "
                "in the dump read: its n_packets is not watched"
            )
            return
        counter = CounterId(_OF, MAIN_NS, step.bridge, flow_identity(flow), "n_packets")
        label = f"{step.bridge} table {step.table} priority {step.priority}"
        label += f" {step.match}" if step.match else ""
        hop.counters.append(PathCounter(counter, CounterRole.PASS, label, number))

    def finish(self, other_copies: frozenset[int]) -> tuple[CounterHop, ...]:
        out: list[CounterHop] = []
        first: dict[CounterId, int] = {}
        for hop in self.hops:
            index = len(out) + 1
            side = all(step in other_copies for step in hop.steps)
            counters: dict[CounterId, PathCounter] = {}
            for counter in hop.counters:
                if counter.id in counters:
                    continue
                earlier = index if side else first.setdefault(counter.id, index)
                if earlier != index:
                    counter = dataclasses.replace(counter, first_hop=earlier)
                counters[counter.id] = counter
            out.append(
                CounterHop(index, hop.label, hop.netns, tuple(hop.steps),
                           tuple(counters.values()), side)
            )  # fmt: skip
        return tuple(out)


_COPY_MARK = re.compile(r"^(?:following )?copy (\d+) of (\d+)(?: → .*)?$")
"""How the walk marks the start of each copy of a flooded packet it follows (an Open vSwitch
output, ``following copy 2 of 4``; a Linux bridge, ``copy 1 of 3 → tapX``)."""


def _other_copies(trace: Trace) -> frozenset[int]:
    """Steps (from 1) that belong to another copy of a flooded packet than the one the
    deciding step is on; and the outputs a bridge's pipeline listed before the walk followed
    each copy (each is repeated at the start of its copy).

    The walk follows copies depth first, each from its marker to the next marker of the same
    flood (an inner flood's copies nest inside one copy of the outer one). Those copies all
    happen on the node, but each may end early by prediction (a copy handed to a bridge's own
    port that is down): only the deciding copy's hops follow the count.
    """
    paths: list[tuple[tuple[int, int], ...]] = []
    stack: list[list[int]] = []  # [flood id, copies, current copy]
    listing: set[int] = set()
    floods = 0
    for number, step in enumerate(trace.steps, start=1):
        m = _COPY_MARK.match(step.detail) if isinstance(step, DeviceStep) else None
        if m is not None:
            i, n = int(m.group(1)), int(m.group(2))
            if i == 1:
                floods += 1
                stack.append([floods, n, 1])
                listing.update(_listed_outputs(trace, number))
            else:
                while stack and not (stack[-1][1] == n and stack[-1][2] == i - 1):
                    stack.pop()
                if stack:
                    stack[-1][2] = i
        paths.append(tuple((f, c) for f, _, c in stack))
    if not floods:
        return frozenset()
    deciding = trace.verdict_step if trace.verdict_step is not None else len(paths) - 1
    chosen = dict(paths[deciding])
    side = {
        number
        for number, path in enumerate(paths, start=1)
        if any(chosen.get(flood, copy) != copy for flood, copy in path)
    }
    return frozenset(side | listing)


def _listed_outputs(trace: Trace, marker: int) -> set[int]:
    """The output steps a bridge's pipeline printed for every port before the walk follows
    the first copy (at step ``marker``): since the last lookup of the bridge that floods.
    Lookups of other bridges among them (a patch port's peer) stay: their flows count."""
    steps = trace.steps[: marker - 1]
    enters = [
        (n, s.device)
        for n, s in enumerate(steps)
        if isinstance(s, DeviceStep) and s.action is DeviceAction.ENTER
    ]
    if not enters:
        return set()
    enter, bridge = enters[-1]
    lookups = [
        n
        for n, s in enumerate(steps)
        if n > enter and isinstance(s, OpenFlowStep) and s.bridge == bridge
    ]
    last = lookups[-1] if lookups else enter
    return {n + 1 for n in range(last + 1, len(steps)) if isinstance(steps[n], DeviceStep)}


def _in_port(detail: str) -> str:
    marker = "in_port="
    return detail.split(marker, 1)[1].split()[0].strip(",") if marker in detail else ""


def _hook_words(step: NetfilterStep) -> str:
    parts = [f"{step.hook.value if step.hook else step.chain} ({step.family.value})"]
    if step.in_dev:
        parts.append(f"in {step.in_dev}" + (f" (port {step.physin})" if step.physin else ""))
    if step.out_dev:
        parts.append(f"out {step.out_dev}" + (f" (port {step.physout})" if step.physout else ""))
    return " ".join(parts)


def _link(ns: str, device: str, way: str, step: int) -> list[PathCounter]:
    what = "received" if way == "rx" else "sent"
    return [
        PathCounter(CounterId(CounterSource.DEVICE, ns, device, "", f"{way}_packets"),
                    CounterRole.PASS, f"{device} packets {what}", step),
        PathCounter(CounterId(CounterSource.DEVICE, ns, device, "", f"{way}_dropped"),
                    CounterRole.DROP, f"{device} {way} dropped", step),
    ]  # fmt: skip


def _ovs_iface(port: str, way: str, step: int) -> list[PathCounter]:
    """A port's counters as Open vSwitch keeps them. Its packet count is shown but does not
    decide whether the hop counted: ovs-vswitchd refreshes the column only every few seconds
    (``stats-update-interval``, 5 s by default), so a short interval would read it still."""
    what = "received" if way == "rx" else "sent"
    return [
        PathCounter(CounterId(CounterSource.OVS_INTERFACE, MAIN_NS, port, "", f"{way}_packets"),
                    CounterRole.INFO,
                    f"Open vSwitch port {port} packets {what} [refreshed every few seconds]", step),
        PathCounter(CounterId(CounterSource.OVS_INTERFACE, MAIN_NS, port, "", f"{way}_dropped"),
                    CounterRole.DROP, f"Open vSwitch port {port} {way} dropped", step),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Two readings


def change_of(counter: PathCounter, before: CounterTables, after: CounterTables) -> CounterChange:
    a, b = before.value(counter.id), after.value(counter.id)
    why = next((v for v in (a, b) if isinstance(v, str)), "")
    return CounterChange(
        counter, a if isinstance(a, int) else None, b if isinstance(b, int) else None, why
    )


def compare(
    plan: WatchPlan, before: CounterTables, after: CounterTables, *, seconds: float
) -> WatchResult:
    """How each counter of ``plan`` rose between two readings, and where the count fell off."""
    hops = tuple(_hop_change(h, before, after) for h in plan.hops)
    wide = tuple(change_of(c, before, after) for c in plan.node_wide)
    unknown = tuple(c for c in (*(c for h in hops for c in h.changes), *wide) if c.delta is None)
    falls = _fall_off(hops)
    followed = [h for h in hops if h.count is not None]
    reached = falls is None and bool(followed) and (followed[-1].count or 0) > 0
    return WatchResult(plan, hops, wide, seconds, falls, reached, unknown)


def _followed(changes: Sequence[CounterChange]) -> list[CounterChange]:
    """The counters that say whether the packet passed: its own pass counters, else (every
    one is shared with an earlier hop) those."""
    own = [c for c in changes if c.counter.follows]
    return own or [c for c in changes if c.counter.role is CounterRole.PASS]


def _hop_change(hop: CounterHop, before: CounterTables, after: CounterTables) -> HopChange:
    changes = tuple(change_of(c, before, after) for c in hop.counters)
    passing = _followed(changes)
    read = [c.delta for c in passing if c.delta is not None]
    count = min(read) if read else None
    if hop.other_copy:
        return HopChange(hop, changes, HopState.OTHER_COPY, None)
    if not passing:
        state = HopState.NOT_FOLLOWED
    elif count is None:
        state = HopState.UNKNOWN
    else:
        state = HopState.MOVED if count > 0 else HopState.STILL
    return HopChange(hop, changes, state, count)


def falls_short(count: int, reaching: int) -> bool:
    """Whether a hop that counted ``count`` lost the packets: fewer than half of the
    ``reaching`` ones the hops before it all counted. Counters are shared, so the other
    traffic of a hop can only add to its count; half leaves room for the frames that one
    device counts and the next layer does not (an ARP request counts on a tap, not in
    iptables)."""
    return count * 2 < reaching


def _fall_off(hops: Sequence[HopChange]) -> FallOff | None:
    """The first hop that counted fewer than half of what every hop before it counted
    (hops that could not be read are passed over: they neither break nor continue the
    count). When the first hop read counted nothing, nothing was counted at all."""
    reaching: int | None = None
    previous: HopChange | None = None
    for hop in hops:
        if hop.count is None:
            continue
        if reaching is None or previous is None:
            if hop.count == 0:
                return FallOff(None, hop.hop.index, counted=0, reaching=0)
            reaching, previous = hop.count, hop
            continue
        if falls_short(hop.count, reaching):
            last, first = _edge(previous, hop, reaching)
            return FallOff(previous.hop.index, hop.hop.index, last, first, hop.count, reaching)
        reaching, previous = min(reaching, hop.count), hop
    return None


def _edge(
    moved: HopChange, short: HopChange, reaching: int
) -> tuple[CounterChange | None, CounterChange | None]:
    """The last counter, in path order, that counted what reached it and the first that fell
    short: within the hop that fell short when its first counters still counted (a rule
    before the one that drops), else across the two hops."""
    followed = [c for c in _followed(short.changes) if c.delta is not None]
    first = next((c for c in followed if falls_short(c.delta or 0, reaching)), None)
    if first is None:
        return None, None
    before = followed[: followed.index(first)]
    if before:
        return before[-1], first
    rose = [c for c in _followed(moved.changes) if c.delta]
    return (rose[-1] if rose else None), first
