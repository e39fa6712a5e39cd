"""A node's packet counters as data: which counter (:class:`CounterId`), and every counter
table one reading of a node gave (:class:`CounterTables`), with the reason for each table it
could not read.

``nodetrace live watch`` reads these tables twice on a running node and ``nodetrace diff``
takes them from two snapshots; both look a counter up here, so a rule or a flow is found the
same way in both: by its identity (a rule by its chain and text, a flow by bridge, table,
priority, cookie and match), never by its position, which changes whenever an agent inserts a
rule or a flow before it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from nodetrace.model.netfilter import Chain, Rule, Ruleset
from nodetrace.model.openflow import Flow, FlowDump
from nodetrace.model.packet import Family
from nodetrace.model.topology import MAIN_NS


class CounterSource(StrEnum):
    """Where a counter is read, as the command that prints it."""

    IPTABLES = "iptables"
    """A rule's or a built-in chain's policy packet counter (``iptables-save -c``)."""
    OPENFLOW = "openflow"
    """A flow's ``n_packets`` (``ovs-ofctl dump-flows``)."""
    DEVICE = "device"
    """A Linux device's counters (``ip -s -j link``)."""
    OVS_INTERFACE = "ovs-interface"
    """An Open vSwitch interface's ``statistics`` column (``ovs-vsctl list Interface``)."""
    DATAPATH = "datapath"
    """The datapath's lookups (``ovs-appctl dpctl/show -s``): ``lost`` upcalls are drops."""
    CONNTRACK = "conntrack"
    """The connection tracker's statistics of a namespace (``conntrack -S``), summed over CPUs."""
    NSTAT = "nstat"
    """The kernel's SNMP counters of a namespace (``nstat -asz``)."""


class CounterRole(StrEnum):
    """What a rise of the counter means for the packet followed."""

    PASS = "pass"
    """It counts the packet going by: it should rise once per packet."""
    DROP = "drop"
    """It counts packets lost: a rise says something was dropped there (perhaps another
    packet: drop counters are shared with all traffic)."""
    INFO = "info"
    """It counts only some of the packets (a ``nat`` rule sees a connection's first packet
    only) or lags (Open vSwitch's interface statistics): shown, not used to say where the
    count falls off."""


@dataclass(frozen=True, slots=True, order=True)
class CounterId:
    """One counter: its source, namespace, what owns it and the counter's own name.

    ``owner`` is a device, a bridge, or ``FAMILY TABLE CHAIN`` for a rule; ``item`` is the
    rule's text (``policy`` for a built-in chain's policy), the flow's identity
    (:func:`flow_identity`), or empty for a device's or a namespace's own counters.
    """

    source: CounterSource
    netns: str
    owner: str
    item: str
    name: str

    def __str__(self) -> str:
        ns = f" [netns {self.netns}]" if self.netns != MAIN_NS else ""
        item = f" {self.item}" if self.item else ""
        owner = f"{self.owner}{item}" if self.owner else item.strip()
        return f"{self.source.value} {owner} {self.name}{ns}".replace("  ", " ")


Stats = Mapping[str, int]
"""Named counters of one device, datapath or namespace (``rx_packets``, ``IpInDiscards``)."""


@dataclass(frozen=True)
class CounterTables:
    """Every counter one reading of a node gave, by source; ``unreadable`` says, per source
    and namespace (or bridge), why a table could not be read: its counters are *unknown*,
    never zero."""

    rulesets: Mapping[tuple[str, Family], Ruleset] = field(default_factory=dict)
    flows: Mapping[str, FlowDump] = field(default_factory=dict)
    links: Mapping[str, Mapping[str, Stats]] = field(default_factory=dict)
    """Namespace -> device -> counters."""
    ovs_interfaces: Mapping[str, Stats] = field(default_factory=dict)
    datapaths: Mapping[str, Stats] = field(default_factory=dict)
    conntrack: Mapping[str, Stats] = field(default_factory=dict)
    nstat: Mapping[str, Stats] = field(default_factory=dict)
    unreadable: Mapping[tuple[CounterSource, str], str] = field(default_factory=dict)
    """(source, namespace or bridge) -> why that table is not known."""
    taken_at: str = ""

    def value(self, counter: CounterId) -> int | str:
        """The counter's value, or why it is unknown (a sentence)."""
        match counter.source:
            case CounterSource.IPTABLES:
                return self._rule_value(counter)
            case CounterSource.OPENFLOW:
                dump = self.flows.get(counter.owner)
                if dump is None:
                    return self._why(counter, counter.owner, "no flow dump of this bridge")
                flow = find_flow(dump, counter.item)
                if flow is None:
                    return f"no flow {counter.item} on {counter.owner} in this reading"
                if flow.stats is None or flow.stats.n_packets is None:
                    return "the dump has no n_packets (taken with --no-stats)"
                return flow.stats.n_packets
            case CounterSource.DEVICE:
                links = self.links.get(counter.netns)
                if links is None:
                    return self._why(counter, counter.netns, "no ip -s link output")
                return _stat(links.get(counter.owner), counter, f"no device {counter.owner}")
            case CounterSource.OVS_INTERFACE:
                if not self.ovs_interfaces:
                    return self._why(counter, MAIN_NS, "no Open vSwitch interface statistics")
                stats = self.ovs_interfaces.get(counter.owner)
                return _stat(stats, counter, f"no Open vSwitch interface {counter.owner}")
            case CounterSource.DATAPATH:
                if not self.datapaths:
                    return self._why(counter, MAIN_NS, "no ovs-appctl dpctl/show -s output")
                values = [s[counter.name] for s in self.datapaths.values() if counter.name in s]
                return sum(values) if values else f"no datapath prints {counter.name}"
            case CounterSource.CONNTRACK:
                stats = self.conntrack.get(counter.netns)
                if stats is None:
                    return self._why(counter, counter.netns, "no conntrack -S output")
                return _stat(stats, counter, "")
            case CounterSource.NSTAT:
                stats = self.nstat.get(counter.netns)
                if stats is None:
                    return self._why(counter, counter.netns, "no nstat output")
                return _stat(stats, counter, "")

    def _why(self, counter: CounterId, where: str, default: str) -> str:
        return self.unreadable.get((counter.source, where), default)

    def _rule_value(self, counter: CounterId) -> int | str:
        family_word, table, chain_name = [*counter.owner.split(" "), "", "", ""][:3]
        try:
            family = Family(family_word)
        except ValueError:
            return f"{counter.owner}: not FAMILY TABLE CHAIN"
        ruleset = self.rulesets.get((counter.netns, family))
        if ruleset is None:
            where = counter.netns
            return self.unreadable.get(
                (CounterSource.IPTABLES, where), f"no {family.value} ruleset in this reading"
            )
        chain = ruleset.chain(table, chain_name)
        if chain is None:
            return f"no chain {chain_name} in table {table} in this reading"
        if counter.item == POLICY:
            if chain.counters is None:
                return "the ruleset was saved without counters (iptables-save -c)"
            return chain.counters[0]
        rule = find_rule(chain, counter.item)
        if rule is None:
            return f"no rule `{counter.item}` in {table} {chain_name} in this reading"
        if rule.counters is None:
            return "the ruleset was saved without counters (iptables-save -c)"
        return rule.counters[0]


POLICY = "policy"
"""The ``item`` of a built-in chain's policy counter."""


def _stat(stats: Stats | None, counter: CounterId, missing: str) -> int | str:
    if stats is None:
        return missing
    value = stats.get(counter.name)
    return value if value is not None else f"{counter.name} is not printed by this node's tools"


def rule_items(chain: Chain) -> Iterator[tuple[str, Rule]]:
    """Each rule of ``chain`` with its identity: its text, followed by ``#N`` for the N-th
    (N > 1) rule of the same text, so that duplicates stay apart."""
    seen: dict[str, int] = {}
    for rule in chain.rules:
        seen[rule.text] = seen.get(rule.text, 0) + 1
        n = seen[rule.text]
        yield (rule.text if n == 1 else f"{rule.text} #{n}"), rule


def find_rule(chain: Chain, item: str) -> Rule | None:
    return next((rule for key, rule in rule_items(chain) if key == item), None)


def flow_identity(flow: Flow) -> str:
    """What names a flow across two dumps, whatever its position: the key OpenFlow itself
    uses (table, priority, match) and the cookie the agent gave it."""
    match = flow.match_text or "(all packets)"
    return f"table={flow.table} priority={flow.priority} cookie={flow.cookie:#x} {match}"


def find_flow(dump: FlowDump, identity: str) -> Flow | None:
    return next((f for f in dump.flows if flow_identity(f) == identity), None)


def flow_of_step(
    dump: FlowDump, table: int, priority: int | None, match: str, cookie: int | None
) -> Flow | None:
    """The flow an OpenFlow step names (a trace keeps table, priority, match as printed and,
    when the dump showed it, the cookie)."""
    return next(
        (
            f
            for f in dump.flows
            if f.table == table
            and f.priority == priority
            and f.match_text == match
            and (cookie is None or f.cookie == cookie)
        ),
        None,
    )
