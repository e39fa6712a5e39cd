"""The result of tracing a packet through OVS bridges: a tree in the shape of ``ofproto/trace``,
the packets that leave (port, bridge, encapsulation), learned flows, and what it all assumed.

The tree mirrors OVS's own trace nodes (bridge, table, action, detail, warning, error, thaw),
each kind with its own fields and no display text, so :mod:`nodetrace.render.ofproto_trace` can
print it exactly as ``ovs-appctl ofproto/trace`` does, or otherwise. The same trace flattens
into the shared :class:`~nodetrace.model.trace.OpenFlowStep` / ``DeviceStep`` sequence that a
whole-node walk joins with netfilter steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, cast

from nodetrace.model.packet import Packet
from nodetrace.model.trace import DeviceStep, OpenFlowStep, Outcome, Trace

IPAddress = IPv4Address | IPv6Address


class NodeKind(StrEnum):
    """The kinds of ``ofproto/trace`` nodes; they decide indentation and prefixes."""

    BRIDGE = "bridge"
    TABLE = "table"
    ACTION = "action"
    DETAIL = "detail"
    """Printed `` -> text``."""
    WARN = "warn"
    """Printed `` >> text``."""
    ERROR = "error"
    """Printed `` >>>> text <<<<``."""
    THAW = "thaw"


class _Node:
    """What every trace node answers; each kind below overrides what it has. A kind's field of
    one of these names needs a default: without one, ``dataclass`` would take the property."""

    __slots__ = ()

    @property
    def kind(self) -> NodeKind:
        return NodeKind.DETAIL

    @property
    def children(self) -> tuple[TraceNode, ...]:
        return ()

    @property
    def step(self) -> OpenFlowStep | DeviceStep | None:
        """The shared step this node stands for (table lookups, patch/tunnel/output crossings)."""
        return None

    @property
    def extra(self) -> bool:
        """Added by nodetrace (an output, an encapsulation); ``ofproto/trace`` prints no such
        line."""
        return False

    def walk(self) -> Iterator[TraceNode]:
        yield cast("TraceNode", self)
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class Bridge(_Node):
    """A bridge's pipeline entered: the first, a patch port's peer, a native tunnel's underlay."""

    name: str
    children: tuple[TraceNode, ...] = ()
    step: DeviceStep | None = None
    kind: ClassVar[NodeKind] = NodeKind.BRIDGE


@dataclass(frozen=True, slots=True)
class TableLookup(_Node):
    """One table's lookup and the flow it found, as ``ofproto/trace`` identifies that flow."""

    table: int
    match: str
    """The flow's match as ``ofproto/trace`` prints it (ports by number); OVS's internal
    no-packet-in rule (``reg0=0x2``) when a table of a bridge entered later misses."""
    priority: int | None
    """``None`` when no flow matched (``No match.``)."""
    cookie: int = 0
    children: tuple[TraceNode, ...] = ()
    step: OpenFlowStep | None = None
    kind: ClassVar[NodeKind] = NodeKind.TABLE


@dataclass(frozen=True, slots=True)
class Thaw(_Node):
    """A recirculation taking the pipeline up again (``thaw``, ``Resuming from table N``)."""

    resume_table: int | None = None
    """The table resumed at; ``None`` for the ``thaw`` node that holds it."""
    children: tuple[TraceNode, ...] = ()
    step: DeviceStep | None = None
    kind: ClassVar[NodeKind] = NodeKind.THAW


@dataclass(frozen=True, slots=True)
class ActionRun(_Node):
    """An action executed, in OVS's flow syntax (``drop`` when a flow has none)."""

    action: str
    kind: ClassVar[NodeKind] = NodeKind.ACTION


@dataclass(frozen=True, slots=True)
class Message(_Node):
    """What the translator says of an action, in OVS's words (a detail, warning or error)."""

    level: NodeKind
    """``DETAIL``, ``WARN`` or ``ERROR``."""
    text: str
    extra: bool = False

    @property
    def kind(self) -> NodeKind:
        return self.level


@dataclass(frozen=True, slots=True)
class Recirculate(_Node):
    """``ct(table=N)``: a clone of the packet goes on at table N after conntrack."""

    table: int


@dataclass(frozen=True, slots=True)
class ConntrackCleared(_Node):
    """After ``ct``: the packet continues untracked, its conntrack fields cleared."""


@dataclass(frozen=True, slots=True)
class Learned(_Node):
    """A ``learn`` action's flow: added, or only shown when side effects are suppressed."""

    flow: LearnedFlow

    @property
    def extra(self) -> bool:
        return not self.flow.applied


@dataclass(frozen=True, slots=True)
class TunnelOutput(_Node):
    """An output to a tunnel port, by the datapath (``native``: userspace) or the kernel."""

    native: bool


@dataclass(frozen=True, slots=True)
class TunnelRoute(_Node):
    """A native tunnel's outer packet routed by OVS's own table: next hop and device."""

    nexthop: IPAddress
    dev: str


@dataclass(frozen=True, slots=True)
class TunnelHeaders(_Node):
    """A native tunnel's outer Ethernet and IP addresses, from OVS's neighbour cache."""

    smac: str | None
    """``None`` when the snapshot lacks the underlay LOCAL port's MAC."""
    src: IPAddress | None
    dmac: str
    nexthop: IPAddress


@dataclass(frozen=True, slots=True)
class Leaves(_Node):
    """The packet leaves the traced bridges by a port (nodetrace's line)."""

    bridge: str
    port: str
    vlan: int | None
    step: DeviceStep | None = None
    extra: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Encapsulated(_Node):
    """The packet leaves by a tunnel port with these outer headers (nodetrace's line)."""

    port: str
    encap: TunnelEncap
    step: DeviceStep | None = None
    extra: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class ToController(_Node):
    """The packet is sent to the OpenFlow controller (nodetrace's line)."""

    reason: str
    step: DeviceStep | None = None
    extra: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class Verbatim(_Node):
    """A line of a real ``ofproto/trace`` output that nodetrace reads no fields from, kept as
    printed so that it still renders and compares."""

    shown_as: NodeKind
    text: str
    children: tuple[TraceNode, ...] = ()

    @property
    def kind(self) -> NodeKind:
        return self.shown_as


TraceNode = (
    Bridge | TableLookup | Thaw | ActionRun | Message | Recirculate | ConntrackCleared | Learned
    | TunnelOutput | TunnelRoute | TunnelHeaders | Leaves | Encapsulated | ToController | Verbatim
)  # fmt: skip
"""One node of a trace tree; :mod:`nodetrace.render.ofproto_trace` prints each."""


class EgressKind(StrEnum):
    PORT = "port"
    TUNNEL = "tunnel"
    CONTROLLER = "controller"


@dataclass(frozen=True, slots=True)
class TunnelEncap:
    """The outer headers a tunnel port adds, from its OVSDB options and the packet's tun_*."""

    type: str
    key: int | None
    """The VNI / GRE key; ``None`` when the port sends no key."""
    src: IPAddress | None
    """``None`` when ``local_ip`` is not set: the host routing table picks it."""
    dst: IPAddress | None
    dst_port: int | None = None
    tos: int = 0
    ttl: int = 0
    flags: tuple[str, ...] = ()

    def describe(self) -> str:
        key = f"key 0x{self.key:x}" if self.key is not None else "no key"
        vni = (
            f"VNI 0x{self.key:x}"
            if self.key is not None and self.type in ("vxlan", "geneve")
            else key
        )
        src = str(self.src) if self.src is not None else "(source from routing)"
        port = f" port {self.dst_port}" if self.dst_port else ""
        return f"{self.type} {vni} {src} -> {self.dst}{port}"


@dataclass(frozen=True, slots=True)
class NativeTunnel:
    """A tunnel output a userspace (netdev) switch sends on itself: the encapsulation, the
    tunnel port, and the underlay bridge whose LOCAL port the outer packet enters by."""

    encap: TunnelEncap
    port: str
    bridge: str
    underlay: str
    smac: str | None
    """The underlay LOCAL port's MAC (outer source); ``None`` when the snapshot lacks it."""
    dmac: str


@dataclass(frozen=True, slots=True)
class Egress:
    """A packet leaving the traced bridges."""

    bridge: str
    port: str
    """The port name, or ``port N`` when only the number is known."""
    ofport: int | None
    kind: EgressKind
    packet: Packet
    """The frame as it leaves (VLAN tag, rewritten addresses)."""
    flow: str
    """The whole flow as it leaves, in OVS flow syntax (including registers and tunnel)."""
    encap: TunnelEncap | None = None
    interface_type: str | None = None
    pass_index: int = 0
    """0 for the first pass, N for the Nth conntrack recirculation."""
    inner_vlan: int | None = None
    carries: NativeTunnel | None = None
    """Set when ``packet`` is the outer packet of a native tunnel (userspace datapath) that OVS
    sent on through the underlay bridge; ``encap`` is then ``None``."""

    def describe(self) -> str:
        if self.kind is EgressKind.CONTROLLER:
            return f"{self.bridge}: to the OpenFlow controller"
        vlan = f" VLAN {self.packet.dl_vlan}" if self.packet.dl_vlan is not None else " untagged"
        text = f"{self.bridge} port {self.port}" + (
            f" ({self.ofport})" if self.ofport is not None else ""
        )
        if self.encap is not None:
            return f"{text}: {self.encap.describe()}"
        if self.carries is not None:
            return (
                f"{text}{vlan}: outer packet {self.packet.dl_src} -> {self.packet.dl_dst} "
                f"of {self.carries.encap.describe()}"
            )
        return text + vlan


@dataclass(frozen=True, slots=True)
class LearnedFlow:
    """A flow a ``learn`` action adds (or would add, when side effects are not applied)."""

    bridge: str
    table: int
    priority: int
    match: str
    actions: str
    cookie: int = 0
    idle_timeout: int = 0
    hard_timeout: int = 0
    applied: bool = False

    def text(self) -> str:
        parts = [f"table={self.table} {self.match} priority={self.priority}".replace("  ", " ")]
        if self.cookie:
            parts.append(f"cookie={self.cookie:#x}")
        if self.idle_timeout:
            parts.append(f"idle={self.idle_timeout}")
        if self.hard_timeout:
            parts.append(f"hard={self.hard_timeout}")
        parts.append(f"actions={self.actions}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class UnsetField:
    """A packet field the user did not give that a table lookup (or an action) depended on:
    the engine took it as 0, as ``ofproto/trace`` does, and the verdict rests on that."""

    field: str
    """The engine's storage name (``nw_src`` also holds ``arp_spa``)."""
    names: tuple[str, ...]
    """The flow-syntax names a user would give it by (``nw_src``, ``arp_spa``)."""
    bridge: str
    table: int
    action: str = ""
    """The action that looked (``dec_ttl``), empty for a table lookup."""

    @property
    def where(self) -> str:
        place = f"{self.bridge} table {self.table}"
        return f"{self.action} in {place}" if self.action else place

    @property
    def note(self) -> str:
        """The assumption as the trace states it."""
        return (
            f"{'/'.join(self.names)} was not given: taken as 0, as ofproto/trace does "
            f"({self.where} looked at it)"
        )


@dataclass(frozen=True, slots=True)
class TracePass:
    """One translation: the first, or one conntrack recirculation (``recirc_id`` > 0)."""

    flow: str
    """The packet as the pass starts, in OVS flow syntax."""
    nodes: tuple[TraceNode, ...]
    final_flow: str | None
    """``None`` when the flow is unchanged at the end."""
    recirc_id: int = 0
    ct_state: str | None = None
    ct_state_default: bool = False
    """True when ``ct_state`` is the default ``trk|new`` (nothing said otherwise)."""
    nat: str | None = None
    """For a recirculation after ``ct(nat)``: how the addresses were replaced."""
    zone: int | None = None
    datapath_actions: str | None = None
    """OVS's ``Datapath actions:`` for this pass, or ``(not derived: why)``."""


@dataclass(frozen=True, slots=True)
class OpenFlowTrace:
    bridge: str
    in_port: str
    packet: Packet
    passes: tuple[TracePass, ...]
    egress: tuple[Egress, ...]
    outcome: Outcome
    verdict: str
    """One line: where the packet went or why it stopped."""
    reason: str = ""
    assumptions: tuple[str, ...] = ()
    learned: tuple[LearnedFlow, ...] = ()
    verdict_step: int | None = None
    """Index into :attr:`steps` of the step that decided a drop, when one did."""
    unset: tuple[UnsetField, ...] = ()
    """Fields left out that the trace depended on; each is also stated in ``assumptions``."""

    @property
    def steps(self) -> tuple[OpenFlowStep | DeviceStep, ...]:
        nodes = (n for p in self.passes for node in p.nodes for n in node.walk())
        return tuple(n.step for n in nodes if n.step is not None)

    def as_trace(self) -> Trace:
        """The shared trace type, for the whole-node walk and the generic renderers."""
        return Trace(
            steps=self.steps,
            outcome=self.outcome,
            verdict_step=self.verdict_step,
            reason=self.reason or self.verdict,
            assumptions=self.assumptions,
            packet=self.packet,
        )


@dataclass(frozen=True, slots=True)
class ObservedLine:
    """One line of an ``ofproto/trace`` tree as OVS printed it."""

    indent: int
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class ObservedPass:
    """One section of a real ``ofproto/trace`` output (the first, or a recirculation)."""

    flow: str
    lines: tuple[ObservedLine, ...]
    final_flow: str | None
    megaflow: str | None = None
    datapath_actions: str | None = None
    header: str = ""
    """For a recirculation: ``recirc(0x2) - resume conntrack with ...``."""
    failure: str | None = None
    """``Translation failed (...)`` when OVS gave up."""


@dataclass(frozen=True, slots=True)
class ObservedTrace:
    passes: tuple[ObservedPass, ...]
    source: str = ""
