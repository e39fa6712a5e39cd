"""What traffic a VM port's firewall lets in and out, exactly: ``exposure(snapshot, port)``.

For a port of the hybrid iptables firewall the answer is computed, not sampled: the whole
header space of each family is walked symbolically (``exposure_eval.py``) along the hooks a
frame crosses on the port's ``qbr`` bridge (compute-node.md §4.2), with the devices the kernel
passes to each hook:

- inbound: PREROUTING, FORWARD, POSTROUTING from ``qvb`` to ``tap`` (the ``i`` chain);
- outbound: the same from ``tap`` to ``qvb`` (the ``o`` and ``s`` chains);
- to the host: PREROUTING and INPUT from ``tap`` (the ``o`` chain again, from INPUT).

Each direction comes back as disjoint classes (``model/exposure.py``), allowed, denied or
unknown, each with the rules that decided it. A port the native Open vSwitch firewall filters
has its bridge's flows walked the same way instead (``exposure_ovs.py``). A family whose
ruleset or flows the snapshot lacks is unknown: never allowed or denied by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv6Address

from nodetrace.audit.exposure_eval import HookPath, Outcome, PathEvaluator
from nodetrace.audit.exposure_match import MatchCompiler
from nodetrace.audit.exposure_ovs import ASSUMPTIONS as OVS_ASSUMPTIONS
from nodetrace.audit.exposure_ovs import (
    direction_path,
    family_classes,
    no_host_path,
    port_start,
)
from nodetrace.audit.exposure_ovs_walk import FlowWalker
from nodetrace.engine.netfilter import bridge_path, input_path
from nodetrace.errors import UsageError
from nodetrace.model.exposure import (
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Box,
    Dim,
    Direction,
    DirectionExposure,
    Fate,
    HeaderClass,
    PortExposure,
    RuleRef,
    universe,
)
from nodetrace.model.header_space import HeaderSet, coalesce, iv_normal, with_dim
from nodetrace.model.netfilter import Rule
from nodetrace.model.node_inventory import PortInfo, PortKind
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.neutron import naming
from nodetrace.neutron.inventory import inventory
from nodetrace.neutron.ports import find_port

NOT_NATED = (
    "connections are taken as not NATed: --ctstate SNAT/DNAT never match (a bridged "
    "packet's connection is NATed only if a nat rule rewrote it, which the classes say)"
)


def start_set(family: Family, atoms: int) -> HeaderSet:
    """Every packet of ``family``, as three boxes: port protocols (ports 0-65535), ICMP
    (type and code 0-255) and the rest (no layer-4 words, written as 0)."""
    u = universe(family, atoms)
    ports = tuple((p, p) for p in sorted(PORT_PROTOCOLS))
    icmp = tuple((p, p) for p in sorted(ICMP_PROTOCOLS))
    rest: list[tuple[int, int]] = []
    lo = 0
    for p in sorted(PORT_PROTOCOLS | ICMP_PROTOCOLS):
        if p > lo:
            rest.append((lo, p - 1))
        lo = p + 1
    rest.append((lo, 255))
    return HeaderSet(
        [
            with_dim(u, Dim.PROTO, iv_normal(ports)),
            with_dim(
                with_dim(with_dim(u, Dim.PROTO, icmp), Dim.L4A, ((0, 255),)), Dim.L4B, ((0, 255),)
            ),
            with_dim(
                with_dim(with_dim(u, Dim.PROTO, tuple(rest)), Dim.L4A, ((0, 0),)),
                Dim.L4B,
                ((0, 0),),
            ),
        ]
    )


@dataclass(frozen=True, slots=True)
class PortPaths:
    """The hook paths of one hybrid-plugged port, per direction."""

    inbound: HookPath
    outbound: HookPath
    to_host: HookPath
    bridge: str
    qvb: str
    tap: str

    def of(self, direction: Direction) -> HookPath:
        return {
            Direction.INBOUND: self.inbound,
            Direction.OUTBOUND: self.outbound,
            Direction.TO_HOST: self.to_host,
        }[direction]

    def describe(self, direction: Direction) -> str:
        hooks = ",".join(h.value for h, _ in self.of(direction))
        if direction is Direction.INBOUND:
            return f"{hooks} on {self.bridge}: {self.qvb} -> {self.tap}"
        if direction is Direction.OUTBOUND:
            return f"{hooks} on {self.bridge}: {self.tap} -> {self.qvb}"
        return f"{hooks} on {self.bridge}: from {self.tap} to the node"


def hybrid_paths(port: PortInfo) -> PortPaths | None:
    """The paths of a hybrid-plugged port, from its device names (its own or those its id
    gives: Neutron names them all from the port UUID)."""
    tap = port.tap or naming.tap_name(port.port_id)
    key = tap[len("tap") :]
    qbr = next((d for d in port.devices if d.startswith("qbr")), "qbr" + key)
    qvb = next((d for d in port.devices if d.startswith("qvb")), "qvb" + key)
    return PortPaths(
        inbound=bridge_path(qbr, physin=qvb, physout=tap),
        outbound=bridge_path(qbr, physin=tap, physout=qvb),
        to_host=input_path(qbr, physin=tap),
        bridge=qbr,
        qvb=qvb,
        tap=tap,
    )


class NodeExposure:
    """One node's rulesets compiled once, then any number of ports (a 500-port node shares
    every chain but the ports' own)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.ns = snapshot.namespace(MAIN_NS)
        self._walkers: dict[tuple[str, Family], FlowWalker | None] = {}

    @cached_property
    def local_addresses(self) -> dict[str, tuple[IPv4Address | IPv6Address, ...]] | None:
        """The main namespace's addresses per device, as ``nodetrace iptables`` gives the
        engine; ``None`` when the snapshot lists no device."""
        devices = self.snapshot.topology.in_namespace(MAIN_NS)
        return {i.name: tuple(a.ip for a in i.addresses) for i in devices} or None

    @cached_property
    def evaluators(self) -> dict[Family, PathEvaluator | str]:
        out: dict[Family, PathEvaluator | str] = {}
        for family in Family:
            ruleset = self.ns.ruleset(family) if self.ns is not None else None
            if ruleset is None:
                kind = "iptables-save" if family is Family.IPV4 else "ip6tables-save"
                missing = self.snapshot.missing_of(kind)
                why = f": {missing.reason}" if missing is not None else ""
                out[family] = f"the snapshot has no {kind} output{why}"
                continue
            ipsets = self.ns.ipsets if self.ns is not None else None
            compiler = MatchCompiler(family, ipsets, universe(family), self.local_addresses)
            atoms = compiler.prepare_atoms(list(ruleset.rules()))
            compiler.u = universe(family, atoms)
            out[family] = PathEvaluator(ruleset, compiler, self.local_addresses)
        return out

    @cached_property
    def atoms(self) -> tuple[str, ...]:
        labels: list[str] = []
        for family, ev in self.evaluators.items():
            if isinstance(ev, PathEvaluator):
                labels += [f"{family.value}: {a.label()}" for a in ev.compiler.atoms]
        return tuple(labels)

    def ports(self) -> tuple[PortInfo, ...]:
        """The node's VM ports."""
        return tuple(p for p in inventory(self.snapshot).ports if p.kind is PortKind.VM)

    def exposure(self, port: PortInfo) -> PortExposure:
        if port.firewall == "openvswitch":
            return self._ovs_port(port)
        paths = hybrid_paths(port) if port.firewall in ("iptables_hybrid", None) else None
        if port.firewall is None and not port.chains:
            return self._unknown_port(
                port,
                "no firewall of this port is in the snapshot (no Neutron chains, no firewall "
                "flows): what filters it cannot be told",
            )
        if paths is None:
            return self._unknown_port(
                port, f"firewall {port.firewall}: only the hybrid iptables firewall is evaluated"
            )
        directions = tuple(self._direction(paths, d) for d in Direction)
        notes: tuple[str, ...] = ()
        if port.tap is None:
            notes = (
                f"the snapshot lists no tap device of this port: its name {paths.tap} is made "
                "from the port id, as Neutron names it",
            )
        return PortExposure(port.port_id, paths.tap, port.firewall, self.atoms, directions, notes)

    def flow_walker(self, bridge: str, family: Family) -> FlowWalker | None:
        """br-int's flows of one family, indexed once for all of the node's ports."""
        key = (bridge, family)
        if key not in self._walkers:
            state = self.snapshot.ovs.bridge(bridge) if self.snapshot.ovs is not None else None
            self._walkers[key] = (
                FlowWalker(state, family, universe(family))
                if state is not None and state.flows is not None
                else None
            )
        return self._walkers[key]

    def _ovs_port(self, port: PortInfo) -> PortExposure:
        """A port of the native Open vSwitch firewall: its bridge's flows walked."""
        bridge = port.bridge or "br-int"
        walkers = {f: self.flow_walker(bridge, f) for f in Family}
        if port.ofport is None or not any(walkers.values()):
            what = "its OpenFlow port number" if port.ofport is None else f"{bridge}'s flows"
            return self._unknown_port(
                port, f"the native Open vSwitch firewall filters this port, but {what} "
                "is not in the snapshot",
            )  # fmt: skip
        any_walker = next(w for w in walkers.values() if w is not None)
        start = port_start(
            any_walker.bridge,
            port.ofport,
            port.zone.value if port.zone is not None else None,
            port.mac.value if port.mac is not None else None,
        )
        directions = []
        for direction in Direction:
            classes: list[HeaderClass] = []
            for family, walker in walkers.items():
                if direction is Direction.TO_HOST:
                    classes.append(no_host_path(family, universe(family)))
                elif walker is None:
                    reason = f"{bridge}'s flows are not in the snapshot"
                    classes.append(HeaderClass(family, universe(family), Fate.UNKNOWN, (), reason))
                else:
                    classes += family_classes(walker, start, direction, start_set(family, 0))
            path = (
                "" if direction is Direction.TO_HOST else direction_path(bridge, start, direction)
            )
            directions.append(
                DirectionExposure(direction, path, tuple(classes), (*OVS_ASSUMPTIONS, *start.notes))
            )
        tap = port.tap or port.ovs_port
        return PortExposure(port.port_id, tap, port.firewall, (), tuple(directions))

    def _unknown_port(self, port: PortInfo, reason: str) -> PortExposure:
        directions = tuple(
            DirectionExposure(
                d,
                "",
                tuple(
                    HeaderClass(f, universe(f, _atoms_of(self, f)), Fate.UNKNOWN, (), reason)
                    for f in Family
                ),
            )
            for d in Direction
        )
        return PortExposure(
            port.port_id, port.tap, port.firewall, self.atoms, directions, (reason,)
        )

    def _direction(self, paths: PortPaths, direction: Direction) -> DirectionExposure:
        classes: list[HeaderClass] = []
        assumptions: list[str] = [NOT_NATED]
        for family, ev in self.evaluators.items():
            if isinstance(ev, str):
                classes.append(HeaderClass(family, universe(family), Fate.UNKNOWN, (), ev))
                continue
            bridged = self._bridged_filtering(family)
            start = start_set(family, len(ev.compiler.atoms))
            if bridged is False:
                key = "iptables" if family is Family.IPV4 else "ip6tables"
                reason = (
                    f"net.bridge.bridge-nf-call-{key} = 0: bridged frames never reach "
                    f"{key}, so no rule filters them"
                )
                fate = Fate.ALLOWED if direction is not Direction.TO_HOST else None
                if fate is not None:
                    classes.extend(HeaderClass(family, b, fate, (), reason) for b in start.boxes)
                    continue
            if bridged is None:
                key = "iptables" if family is Family.IPV4 else "ip6tables"
                assumptions.append(
                    f"net.bridge.bridge-nf-call-{key} assumed 1 (br_netfilter hands bridged "
                    "frames to the rules); the snapshot has no sysctl saying"
                )
            outcomes = ev.run(paths.of(direction), start)
            classes.extend(_classes(family, outcomes))
            for note in (*ev.assumptions, *ev.notes):
                if note not in assumptions:
                    assumptions.append(note)
        return DirectionExposure(
            direction, paths.describe(direction), tuple(classes), tuple(assumptions)
        )

    def _bridged_filtering(self, family: Family) -> bool | None:
        if self.ns is None:
            return None
        return self.ns.sysctls.bridge_nf_call(family)


def _atoms_of(node: NodeExposure, family: Family) -> int:
    ev = node.evaluators.get(family)
    return len(ev.compiler.atoms) if isinstance(ev, PathEvaluator) else 0


def rule_ref(rule: Rule) -> RuleRef:
    source = f"{rule.pos.file}:{rule.pos.line}" if rule.pos is not None else ""
    return RuleRef(rule.table, rule.chain, rule.position, rule.text, source)


def _classes(family: Family, outcomes: list[Outcome]) -> list[HeaderClass]:
    """Outcomes grouped by fate, rules and reason, each group's boxes merged where they can be."""
    groups: dict[tuple[Fate, tuple[int, ...], str], list[Box]] = {}
    for o in outcomes:
        groups.setdefault((o.fate, tuple(id(r) for r in o.trail), o.reason), []).extend(o.boxes)
    trails = {tuple(id(r) for r in o.trail): o.trail for o in outcomes}
    out: list[HeaderClass] = []
    for (fate, key, reason), boxes in groups.items():
        refs = tuple(rule_ref(r) for r in trails[key])
        out.extend(HeaderClass(family, b, fate, refs, reason) for b in coalesce(boxes))
    return out


def exposure(snapshot: Snapshot, port: str | PortInfo) -> PortExposure:
    """The exact inbound, outbound and host-bound traffic ``port``'s rules allow.

    ``port``: a port UUID, prefix or device name (as ``nodetrace trace`` takes), or a port of
    the node's inventory.
    """
    info = find_port(snapshot, port) if isinstance(port, str) else port
    if info.kind is not PortKind.VM:
        raise UsageError(f"port {info.port_id} is a {info.kind.value} port, not a VM's")
    return NodeExposure(snapshot).exposure(info)
