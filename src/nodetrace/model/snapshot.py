"""A loaded node: its rulesets, ipsets, sysctls and devices per namespace, its Open vSwitch
state, and an honest list of what the snapshot did not contain.

Whatever the source (a bundle from ``collect``, a sosreport, a folder of command outputs), the
loader produces this one shape, so the walk and ``show`` never care where the facts came from.
Missing facts are data too: the walk states the default it assumed for each of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from nodetrace.errors import Diagnostic
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import Backend, Ruleset
from nodetrace.model.ovs_runtime import DpifShow
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.ovsdb import OvsdbRow
from nodetrace.model.packet import Family
from nodetrace.model.topology import MAIN_NS, OvsRoute, OvsTunnelNeighbour, Topology


@dataclass(frozen=True)
class Sysctls:
    """``key = value`` pairs as read, with typed accessors for the ones that decide a path."""

    values: tuple[tuple[str, str], ...] = ()
    source: str = ""
    _index: dict[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._index.update(self.values)

    def get(self, key: str) -> str | None:
        return self._index.get(key)

    def flag(self, key: str) -> bool | None:
        """``True``/``False`` for a numeric sysctl, ``None`` when it was not captured."""
        number = self.number(key)
        return None if number is None else number != 0

    def number(self, key: str) -> int | None:
        value = self._index.get(key)
        try:
            return int(value.split()[0]) if value is not None else None
        except (ValueError, IndexError):
            return None

    @property
    def br_netfilter_loaded(self) -> bool | None:
        """The ``net.bridge.*`` keys exist only while br_netfilter is loaded.

        ``None`` when no sysctl of the node was captured at all (nothing can be said).
        """
        if not self.values:
            return None
        return any(k.startswith("net.bridge.bridge-nf-") for k in self._index)

    def bridge_nf_call(self, family: Family) -> bool | None:
        """Whether br_netfilter hands bridged frames of ``family`` to ip(6)tables."""
        key = "iptables" if family is Family.IPV4 else "ip6tables"
        value = self.flag(f"net.bridge.bridge-nf-call-{key}")
        if value is None and self.br_netfilter_loaded is False:
            return False
        return value

    def rp_filter(self, device: str) -> int | None:
        """The effective reverse-path filter mode of ``device``: max(all, device), as the
        kernel computes it (0 off, 1 strict, 2 loose)."""
        name = device.replace(".", "/")
        found = (self.number(f"net.ipv4.conf.{n}.rp_filter") for n in ("all", name))
        values = [v for v in found if v is not None]
        return max(values) if values else None

    def forwarding(self, family: Family) -> bool | None:
        if family is Family.IPV4:
            return self.flag("net.ipv4.ip_forward")
        return self.flag("net.ipv6.conf.all.forwarding")


class SourceKind(StrEnum):
    """Where a snapshot came from."""

    BUNDLE = "bundle"
    """A bundle written by ``nodetrace collect`` (manifest.json)."""
    SOSREPORT = "sosreport"
    FOLDER = "folder"
    """A plain folder of files named after their commands."""


@dataclass(frozen=True, slots=True)
class Missing:
    """A fact the snapshot does not have, and why (so the walk can say what it assumed)."""

    what: str
    """The command's kind, as the bundle names it (``iptables-save``, ``ovs-appctl-fdb-show``)."""
    reason: str
    netns: str = MAIN_NS
    bridge: str | None = None
    command: str = ""
    """The command line that would collect it on the node (empty when not known)."""

    def __str__(self) -> str:
        where = f" of {self.bridge}" if self.bridge else ""
        ns = f" in namespace {self.netns}" if self.netns != MAIN_NS else ""
        command = self.command
        if command and self.netns != MAIN_NS:
            command = f"ip netns exec {self.netns} {command}"
        collect = f" (collect with `{command}`)" if command else ""
        return f"{self.what}{where}{ns}: {self.reason}{collect}"


@dataclass(frozen=True, slots=True)
class RawOutput:
    """A command's output kept as text, for the layers that read it themselves.

    ``source`` says where it was read from (file or archive member), for error messages.
    """

    kind: str
    text: str
    source: str
    netns: str = MAIN_NS
    bridge: str | None = None
    flow_filter: str = ""
    """The match a flow dump was limited to (``table=4``); empty for a whole dump."""


@dataclass(frozen=True, slots=True)
class DatapathPort:
    """A port of the kernel datapath (``ovs-appctl dpctl/show``): its device is an Open vSwitch
    port, of the given type (``internal``, ``system``, ``vxlan``...), on an unnamed bridge."""

    datapath: str
    number: int
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class OvsdbRecord:
    """One OVSDB record listed on its own (``ovs-vsctl list port qvoX``, perhaps grep-filtered
    to a few columns): what it says of the named row, where ``ovs-vsctl show`` says nothing."""

    table: str
    """``Port`` or ``Interface``."""
    name: str
    """The row's name, as the command gave it."""
    row: OvsdbRow
    source: str


@dataclass(frozen=True)
class NamespaceState:
    """The netfilter and kernel settings of one network namespace."""

    name: str = MAIN_NS
    iptables: Ruleset | None = None
    """The IPv4 ruleset the node's default ``iptables-save`` showed."""
    ip6tables: Ruleset | None = None
    other_backend: tuple[Ruleset, ...] = ()
    """Rulesets of the *other* iptables backend when it holds rules too: the kernel applies
    both, and the engine simulates only the default one (the walk says so)."""
    ipsets: IpSets | None = None
    sysctls: Sysctls = field(default_factory=Sysctls)

    def ruleset(self, family: Family) -> Ruleset | None:
        return self.iptables if family is Family.IPV4 else self.ip6tables


@dataclass(frozen=True)
class Snapshot:
    """Everything known about one node, and what is not known."""

    source: str
    source_kind: SourceKind
    host: str = ""
    kernel: str = ""
    kernel_source: str = ""
    """The output the kernel release was read from, when not ``uname``."""
    collected_at: str = ""
    iptables_backend: Backend = Backend.UNKNOWN
    topology: Topology = field(default_factory=Topology)
    namespaces: tuple[NamespaceState, ...] = (NamespaceState(),)
    ovs: OvsSwitch | None = None
    """The node's Open vSwitch (bridges, ports, flows, MAC tables); ``None`` when the source
    has none of the Open vSwitch outputs nodetrace reads."""
    ovs_routes: tuple[OvsRoute, ...] | None = None
    """Open vSwitch's own routing table (``ovs-appctl ovs/route/show``): where a userspace
    tunnel's outer packet goes; ``None`` when the snapshot does not have it."""
    ovs_tunnel_neighbours: tuple[OvsTunnelNeighbour, ...] | None = None
    """Open vSwitch's tunnel neighbour cache (``ovs-appctl tnl/neigh/show``): the outer MACs."""
    ovs_dpif: DpifShow | None = None
    """The datapath's ports (``ovs-appctl dpif/show``), for the ``Datapath actions`` line."""
    ovs_evidence: str = ""
    """A file showing that the node runs Open vSwitch (``ovs-vsctl list-br``, ``ovs-appctl
    dpctl/show``, any output of an OVS tool), even when ``ovs`` is ``None``: then its state
    is missing, not absent. Empty when the snapshot holds no trace of Open vSwitch."""
    ovsdb_records: tuple[OvsdbRecord, ...] = ()
    """Single OVSDB records the snapshot holds (see :class:`OvsdbRecord`)."""
    datapath_ports: tuple[DatapathPort, ...] = ()
    """The kernel datapath's ports from ``ovs-appctl dpctl/show``, when the snapshot has it."""
    ovs_bridge_names: tuple[str, ...] = ()
    """Bridge names ``ovs-vsctl list-br`` gave (the only bridge facts of such a snapshot)."""
    raw: tuple[RawOutput, ...] = ()
    """Command outputs kept as text (Open vSwitch state, conntrack), by kind."""
    missing: tuple[Missing, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    """Every malformed line met while loading, with file, line and reason."""
    notes: tuple[str, ...] = ()
    """How facts were obtained when not from the preferred output: a ruleset rebuilt from an
    ``iptables -L`` listing, flows read from ``ovs-appctl bridge/dump-flows``, Linux bridges
    known only from ``brctl show``. Each says what that means for the answers."""

    def namespace(self, name: str = MAIN_NS) -> NamespaceState | None:
        return next((ns for ns in self.namespaces if ns.name == name), None)

    @property
    def main(self) -> NamespaceState:
        ns = self.namespace(MAIN_NS)
        return ns if ns is not None else NamespaceState()

    def raw_outputs(
        self, kind: str, *, netns: str = MAIN_NS, bridge: str | None = None
    ) -> tuple[RawOutput, ...]:
        return tuple(
            r
            for r in self.raw
            if r.kind == kind and r.netns == netns and (bridge is None or r.bridge == bridge)
        )

    def missing_of(self, what: str, *, netns: str = MAIN_NS) -> Missing | None:
        return next((m for m in self.missing if m.what == what and m.netns == netns), None)
