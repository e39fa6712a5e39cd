"""The whole node: carry one packet from where it enters to where it ends, across OVS bridges,
veth pairs, Linux bridges with br_netfilter, the host's routing and netfilter, and tunnels.

Each layer is decided by its own engine (OpenFlow, netfilter, :mod:`linux_bridge`,
:mod:`routing`); this module only knows which layer comes next: a device's transmit is its veth
peer's receive, a Linux bridge port hands frames to its bridge, an OVS port to its bridge's
pipeline, a device with addresses to the host stack. Copies (floods) are followed one after the
other, every hop is counted against a bound, and every default taken is written down.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TypeVar

from nodetrace.engine import linux_bridge, routing
from nodetrace.engine.netfilter import HookPath
from nodetrace.engine.walk_engines import (
    BridgeRunner,
    HookResult,
    HookRunner,
    Metadata,
    OfOutput,
    PathCall,
)
from nodetrace.errors import UsageError
from nodetrace.model.netfilter import HookDevices, NatTarget, Rule, Ruleset
from nodetrace.model.openflow_trace import TunnelEncap
from nodetrace.model.ovs_switch import OvsSwitch, SwitchPort
from nodetrace.model.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    Family,
    IPProto,
    Packet,
    total_length,
)
from nodetrace.model.packet_origin import FieldOrigin, Origin
from nodetrace.model.snapshot import NamespaceState, Snapshot
from nodetrace.model.topology import MAIN_NS, Interface, LinkKind, Topology
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    Hook,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    Step,
    Trace,
)
from nodetrace.model.verdict import Verdict

MAX_HOPS = 64
"""Devices a packet may cross before the walk calls it a loop (OVS bounds resubmits alike)."""
MAX_COPIES = 16
"""Flooded copies followed; the rest are listed but not walked."""

VXLAN_PORT = 4789
GENEVE_PORT = 6081

MTU_ALWAYS_FITS = 1280
"""Bytes that fit every MTU a node sets (IPv6's minimum link MTU): a packet no longer than
this needs no MTU to be known; a longer one crossing a device of unknown MTU is assumed to fit,
and said."""
VLAN_HLEN = 4
"""``is_skb_forwardable`` (veth, Linux bridge) lets a frame exceed the MTU by a VLAN tag."""
ETH_HLEN = 14

IPAddress = IPv4Address | IPv6Address
T = TypeVar("T")


# -- where a packet starts, and what it is meant to reach --------------------------------


@dataclass(frozen=True, slots=True)
class FromInterface:
    """The packet is received on a device (a VM's tap: the VM sent it; a NIC: the wire)."""

    name: str
    netns: str = MAIN_NS


@dataclass(frozen=True, slots=True)
class FromHost:
    """The host stack sends the packet (it starts in OUTPUT)."""

    netns: str = MAIN_NS


@dataclass(frozen=True, slots=True)
class FromOvsPort:
    """The packet enters an OVS bridge's pipeline on a port (a tunnel port: already decapsulated)."""

    bridge: str
    port: str


@dataclass(frozen=True, slots=True)
class FromNamespaceDevice:
    """A namespace's own stack sends the frame out of one of its devices (a DHCP server's
    or a router's port: an OVS internal port moved into its namespace)."""

    name: str
    netns: str
    sender: str = ""
    """Who sends, in words, when the namespace is not the one named (it is not known)."""


@dataclass(frozen=True, slots=True)
class ReceivedOn:
    """The host stack receives the packet on device ``name``: it starts in PREROUTING with
    ``IN=name``, whatever the device is (an OVS bridge's internal port, a routed NIC). This is
    what a TRACE record with ``IN=`` and no ``PHYSIN=`` says."""

    name: str
    netns: str = MAIN_NS


Start = FromInterface | FromHost | FromOvsPort | FromNamespaceDevice | ReceivedOn


@dataclass(frozen=True, slots=True)
class ToDevice:
    """The packet is meant for whatever sits behind this device (a VM behind its tap)."""

    name: str
    netns: str = MAIN_NS
    label: str = ""


@dataclass(frozen=True, slots=True)
class ToHost:
    netns: str = MAIN_NS


Target = ToDevice | ToHost


@dataclass(frozen=True, slots=True)
class PeerHint:
    """A veth pairing the node's data does not state but its naming does (Neutron's hybrid
    plug makes ``qvbX`` and ``qvoX`` the two ends of one veth): followed, and said."""

    device: str
    peer: str
    source: str
    netns: str = MAIN_NS


@dataclass(frozen=True, slots=True)
class WalkRequest:
    packet: Packet
    start: Start
    metadata: Metadata = ()
    ct_state: str | None = None
    target: Target | None = None
    flow: tuple[FieldOrigin, ...] = ()
    """The packet field by field with its origin (given, derived, assumed); the engines
    report which fields outside the given and derived ones the outcome depended on."""
    peer_hints: tuple[PeerHint, ...] = ()
    """Veth pairings known from names only, used where the snapshot does not say the peer."""


@dataclass(frozen=True, slots=True)
class Engines:
    netfilter: HookRunner
    openflow: BridgeRunner


# -- the walk's bookkeeping ---------------------------------------------------------------


@dataclass
class _End:
    outcome: Outcome
    where: str
    reason: str
    step: int | None
    target: Target | None = None
    """The endpoint reached, as a target (to compare with what the packet was meant for)."""
    incidental: bool = False
    """A flooded copy that died only because it was not for that place (not the verdict)."""
    loop: bool = False
    """The walk stopped at its hop bound."""
    copy: tuple[int, ...] = ()
    """Which copy of each flood on the way this end belongs to (see ``_Walk.copy``)."""


@dataclass
class _Walk:
    snap: Snapshot
    switch: OvsSwitch | None
    engines: Engines
    request: WalkRequest
    steps: list[Step] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    ends: list[_End] = field(default_factory=list)
    hops: int = 0
    ovs_ports: dict[str, tuple[str, SwitchPort]] = field(default_factory=dict)
    inner_packet: Packet | None = None
    """The inner packet of an encapsulated frame the walk started with."""
    flood_depth: int = 0
    """How many floods the current copy descends from."""
    copy: tuple[int, ...] = ()
    """The copy being walked: its number in each flood it descends from. A decision taken on
    one copy's path is no part of another copy's verdict."""
    looked: list[tuple[tuple[str, ...], str, tuple[int, ...]]] = field(default_factory=list)
    """Fields neither given nor derived that a decision depended on, where, and on which copy."""
    outer: bool = False
    """The packet being walked is a tunnel's outer packet, built by the node itself."""
    given_fields: frozenset[str] | None = None
    watched: frozenset[str] = frozenset()
    """Fields with an assumed value: every rule or flow that looks at one is noted."""
    _device_netns: dict[str, str] | None = None
    resting_node: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    """Defaults taken for node settings the snapshot lacks, which the outcome depends on, and
    on which copy."""
    encap_overhead: tuple[int, int, str] | None = None
    """Of the outer packet being walked: the inner packet's length, the bytes the tunnel
    adds, and the tunnel type (for the words of an MTU drop)."""

    def __post_init__(self) -> None:
        if self.switch is not None:
            for b in self.switch.bridges:
                for p in b.ports:
                    self.ovs_ports.setdefault(p.name, (b.name, p))
        flow = self.request.flow
        if flow:
            stated = {f.field for f in flow if f.origin is not Origin.ASSUMED}
            # The TTL's assumed value is kept as it is (ofproto/trace would zero it).
            stated |= {f.field for f in flow if f.field == "nw_ttl"}
            self.given_fields = frozenset(stated | {k for k, _ in self.request.metadata})
            self.watched = frozenset(
                f.field for f in flow if f.origin is Origin.ASSUMED and f.field != "nw_ttl"
            )

    # -- recording --------------------------------------------------------------------

    def assume(self, text: str) -> None:
        if text and text not in self.assumptions:
            self.assumptions.append(text)

    def rest_on(self, text: str) -> None:
        """An assumption about the node (not the packet) that the path depends on."""
        self.assume(text)
        if (text, self.copy) not in self.resting_node:
            self.resting_node.append((text, self.copy))

    def look(self, names: tuple[str, ...], where: str) -> None:
        """A decision at ``where`` depended on the field ``names`` (aliases of one field)."""
        if not self.outer and self.request.flow:
            self.looked.append((names, where, self.copy))

    def look_if_assumed(self, name: str, where: str) -> None:
        """The walk itself decided on ``name``: worth saying only when it was assumed."""
        if name in self.watched:
            self.look((name,), where)

    def device(self, action: DeviceAction, device: str, detail: str = "") -> int:
        self.steps.append(DeviceStep(action, device, detail))
        return len(self.steps) - 1

    def end(
        self,
        outcome: Outcome,
        where: str,
        reason: str,
        step: int | None = None,
        target: Target | None = None,
        *,
        not_for_here: bool = False,
    ) -> None:
        """The current copy ends. ``not_for_here``: it died only because the place it was
        flooded to had no use for it (a device down, a MAC not addressed to it)."""
        if step is None:
            action = DeviceAction.DELIVER if outcome is Outcome.DELIVERED else DeviceAction.OUTPUT
            step = self.device(action, where, reason)
        incidental = not_for_here and self.flood_depth > 0
        self.ends.append(_End(outcome, where, reason, step, target, incidental, copy=self.copy))

    def deliver(self, dev: Interface, reason: str) -> None:
        """The packet reaches whatever sits behind ``dev`` (a VM, the wire, another node)."""
        self.end(Outcome.DELIVERED, dev.name, reason, target=ToDevice(dev.name, dev.netns))

    def hop(self, where: str) -> bool:
        """Count a hop; ``False`` (and the packet ends) once the bound is reached."""
        self.hops += 1
        if self.hops > MAX_HOPS:
            if not any(e.loop for e in self.ends):
                self.end(
                    Outcome.UNKNOWN,
                    where,
                    f"more than {MAX_HOPS} devices crossed: a forwarding loop, or a path too "
                    "long to follow",
                )
                self.ends[-1].loop = True
            return False
        return True

    # -- namespaces and engines -------------------------------------------------------

    def ns(self, netns: str) -> NamespaceState:
        return self.snap.namespace(netns) or NamespaceState(name=netns)

    def local_addresses(self, netns: str) -> tuple[IPAddress, ...]:
        return tuple(a.ip for i in self.snap.topology.in_namespace(netns) for a in i.addresses)

    def netfilter(
        self, netns: str, packet: Packet, hooks: HookPath, *, routed: bool = False
    ) -> HookResult:
        """Run one skb through ``hooks`` of namespace ``netns``; record the steps. ``routed``:
        the IP layer forwards it, lowering its TTL before FORWARD."""
        family = packet.family or Family.IPV4
        state = self.ns(netns)
        ruleset = state.ruleset(family)
        if ruleset is None:
            command = "iptables-save" if family is Family.IPV4 else "ip6tables-save"
            missing = self.snap.missing_of(command, netns=netns)
            why = f" ({missing.reason})" if missing else ""
            ns = f" of namespace {netns}" if netns != MAIN_NS else ""
            run = f"ip netns exec {netns} {command}" if netns != MAIN_NS else command
            return HookResult(
                Verdict.UNKNOWN, (), packet,
                f"the packet crosses {family.value} netfilter{ns}, but the snapshot has no "
                f"`{command}` output{why}: collect it with `{run}`",
            )  # fmt: skip
        if state.other_backend:
            self.assume(
                f"rules exist in both iptables backends in namespace {netns or 'main'}: only "
                f"the {ruleset.backend.value} ruleset is simulated; the kernel applies both"
            )
        call = PathCall(netns, hooks, self.request.ct_state, routed)
        result = self.engines.netfilter.run_path(ruleset, state.ipsets, packet, call)
        if self.watched and not self.outer:
            for names, where in _rules_looking_at(ruleset, result.steps, packet, self.watched):
                self.look(names, where)
        base = len(self.steps)
        self.steps.extend(result.steps)
        # Each namespace has its own conntrack table and rules: say whose an assumption is.
        where = f"namespace {netns}: " if netns != MAIN_NS else ""
        for a in result.assumptions:
            self.assume(where + a)
        if result.decisive_step is not None:
            result = dataclasses.replace(result, decisive_step=base + result.decisive_step)
        return result

    def packet_after(self, netns: str, packet: Packet, hooks: HookPath) -> Packet:
        """The packet as ``hooks`` leave it (DNAT changes where it is routed), steps unkept."""
        state = self.ns(netns)
        ruleset = state.ruleset(packet.family or Family.IPV4)
        if ruleset is None:
            return packet
        call = PathCall(netns, hooks, self.request.ct_state)
        return self.engines.netfilter.run_path(ruleset, state.ipsets, packet, call).packet

    # -- the layers -------------------------------------------------------------------

    def iface(self, name: str, netns: str) -> Interface | None:
        return self.snap.topology.interface(name, netns)

    def netns_of(self, name: str) -> str:
        """The namespace of an OVS internal port's device: Neutron moves qr-, qg-, tap (DHCP)
        and the like into the namespaces of their routers and DHCP servers."""
        if self.snap.topology.interface(name, MAIN_NS) is not None:
            return MAIN_NS
        if self._device_netns is None:
            self._device_netns = {}
            for i in self.snap.topology.interfaces:
                self._device_netns.setdefault(i.name, i.netns)
        return self._device_netns.get(name, MAIN_NS)

    def receive(self, name: str, netns: str, packet: Packet, meta: Metadata) -> None:
        """A frame arrives on device ``name`` (from the wire, a VM, or the veth peer)."""
        if not self.hop(name):
            return
        dev = self.iface(name, netns)
        if name in self.ovs_ports and self.netns_of(name) == netns:
            bridge, port = self.ovs_ports[name]
            if port.type == "internal" or port.ofport == 65534:
                # The kernel transmitting on an OVS internal port is OVS receiving on it; a
                # frame *arriving* at it from OVS is the kernel's receive (handled by the caller).
                self.host_receive(name, netns, packet, meta)
                return
            self.ovs(bridge, name, packet, meta)
            return
        if dev is None:
            ns = f" (namespace {netns})" if netns else ""
            self.end_missing(
                Interface(name, netns),
                f"device {name} is not in the snapshot{ns}",
                [("ip -d link show", netns)],
            )
            return
        if dev.is_linux_bridge_port and dev.master is not None:
            self.bridge_pass(dev, packet, meta)
            return
        if dev.master is not None and dev.master_kind == "openvswitch":
            self.end(
                Outcome.UNKNOWN,
                name,
                f"{name} is a kernel-datapath OVS port but the snapshot has no OVS state for it",
            )
            return
        if dev.kind in (LinkKind.VXLAN, LinkKind.GRE, LinkKind.GRETAP, LinkKind.GENEVE):
            self.end(Outcome.UNKNOWN, name, f"{name}: a kernel tunnel device not bridged")
            return
        self.host_receive(name, netns, packet, meta)

    def transmit(self, name: str, netns: str, packet: Packet, meta: Metadata) -> None:
        """The kernel sends a frame out of device ``name``: where does it go next?"""
        dev = self.iface(name, netns)
        # An OVS internal port is one device on the node: a namespace's device of that name
        # the snapshot does not list is that port.
        if name in self.ovs_ports and (dev is None or self.netns_of(name) == netns):
            bridge, port = self.ovs_ports[name]
            if port.type == "internal" or port.ofport == 65534:
                self.device(DeviceAction.ENTER, name, f"into {bridge} from the host (LOCAL)")
                if self.hop(name):
                    self.ovs(bridge, name, packet, meta)
                return
        if dev is None:
            if not self.follow_hint(name, netns, packet, meta):
                self.end_missing(
                    Interface(name, netns),
                    f"device {name} is not in the snapshot",
                    [("ip -d link show", netns)],
                )
            return
        if dev.kind is LinkKind.VETH:
            self.cross_veth(dev, packet, meta)
            return
        if dev.kind in _SENDING_KINDS and self.link_drops(dev):
            return
        if dev.kind in (LinkKind.TAP, LinkKind.TUN):
            self.deliver(dev, f"delivered to the process holding {dev.name} (the VM's NIC)")
            return
        if dev.kind is LinkKind.BRIDGE:
            self.bridge_local_out(dev, packet, meta)
            return
        if dev.kind is LinkKind.LOOPBACK:
            self.host_receive(name, netns, packet, meta)
            return
        if _kind_not_known(dev):
            self.unknown_device(dev, packet, meta)
            return
        if dev.kind is LinkKind.OPENVSWITCH:
            # An OVS device (an internal port) whose bridge the snapshot's OVS state lacks.
            self.end_missing(
                dev,
                f"{dev.name} is an Open vSwitch device, but the snapshot does not say which "
                "bridge's port it is, so the pipeline it enters is unknown",
                [("ovs-vsctl show", MAIN_NS)],
            )
            return
        if dev.kind in (LinkKind.PHYSICAL, LinkKind.BOND, LinkKind.VLAN, LinkKind.OTHER):
            self.deliver(dev, f"sent out of {dev.name} onto the wire")
            return
        self.end(
            Outcome.UNKNOWN, dev.name, f"sending out of a {dev.kind.value} device is not modelled"
        )

    def cross_veth(self, dev: Interface, packet: Packet, meta: Metadata) -> None:
        """Sent on a veth: the packet is received by its peer, or leaves the snapshot."""
        peer = self.snap.topology.veth_peer(dev)
        if peer is None:
            self.peer_not_found(dev, packet, meta)
            return
        info = dev.veth
        if info is not None and info.derived:
            self.assume(f"{dev.name} → {peer.name}: {info.derived}")
        if self.veth_drops(dev, peer, packet):
            return
        crosses = peer.netns != dev.netns
        self.device(
            DeviceAction.VETH,
            f"{dev.name} → {peer.name}",
            "veth: conntrack and the TRACE flag are reset (skb_scrub_packet)"
            + (
                f"; the mark too, across namespaces (into namespace {peer.netns})"
                if crosses
                else ""
            ),
        )
        if crosses and packet.skb_mark:
            # skb_scrub_packet with xnet: a packet changing namespace loses its mark.
            packet = dataclasses.replace(packet, skb_mark=0)
        self.receive(peer.name, peer.netns, packet, meta)

    def veth_drops(self, dev: Interface, peer: Interface, packet: Packet) -> bool:
        """veth_xmit drops the frame: the sending end is down or has no carrier (its peer
        is down), or the frame is longer than the peer accepts (``is_skb_forwardable``)."""
        if not dev.up:
            self.end(
                Outcome.DROPPED,
                dev.name,
                f"{dev.name} is down: the kernel sends nothing on it ({dev.name}'s tx_dropped "
                "counts the packet)",
            )
            return True
        if not peer.up or not dev.carrier:
            why = f"its veth peer {peer.name} is down" if not peer.up else "it has no carrier"
            self.end(
                Outcome.DROPPED,
                dev.name,
                f"{dev.name} has no carrier: {why}; veth_xmit drops the frame "
                f"({dev.name}'s tx_dropped rises)",
            )
            return True
        allowance = 0 if packet.dl_vlan is not None else VLAN_HLEN
        too_long = self.exceeds_mtu(peer, packet, allowance)
        if too_long:
            self.end(
                Outcome.DROPPED,
                dev.name,
                f"{too_long}: the veth drops it on the way to {peer.name} "
                f"({dev.name}'s tx_dropped and {peer.name}'s rx_dropped rise)",
            )
            return True
        return False

    def link_drops(self, dev: Interface) -> bool:
        """Sending on a device that is down or has no carrier: the kernel drops the frame and
        counts it in the device's tx_dropped (a tap without carrier: no process, no VM,
        holds it open)."""
        if dev.up and dev.carrier:
            return False
        if not dev.up:
            why = f"{dev.name} is down: the kernel sends nothing on it"
        elif dev.kind in (LinkKind.TAP, LinkKind.TUN):
            why = (
                f"{dev.name} has no carrier: no process (no VM) holds it open, so nothing "
                "reads the frame"
            )
        else:
            why = f"{dev.name} has no carrier (the link is down at its other end)"
        self.end(Outcome.DROPPED, dev.name, f"{why}; {dev.name}'s tx_dropped rises")
        return True

    def exceeds_mtu(self, dev: Interface, packet: Packet, allowance: int = 0) -> str:
        """Why ``packet`` is too long for ``dev`` (empty when it fits or has no length).

        ``allowance``: bytes a frame may exceed the MTU by where the kernel checks the whole
        frame against MTU + Ethernet header + a VLAN tag (veth, Linux bridge)."""
        if packet.family is None:
            return ""
        length = total_length(packet)
        if length <= MTU_ALWAYS_FITS:
            return ""
        if dev.mtu is None:
            self.rest_on(
                f"the MTU of {dev.name} is not in the snapshot (`ip link show {dev.name}`): "
                f"the {length}-byte packet is assumed to fit"
            )
            return ""
        if length <= dev.mtu + allowance:
            return ""
        return (
            f"the packet is {length} bytes{self.encap_note(packet)}, more than the MTU of "
            f"{dev.name} ({dev.mtu})"
        )

    def encap_note(self, packet: Packet) -> str:
        """How a tunnel's outer packet came to its length (inner packet + encapsulation)."""
        overhead = self.encap_overhead
        if overhead is None or not self.outer:
            return ""
        inner, added, kind = overhead
        return f" (a {kind} packet: the inner {inner} bytes + {added} of encapsulation)"

    def peer_not_found(self, dev: Interface, packet: Packet, meta: Metadata) -> None:
        """A veth whose peer is not among the snapshot's devices: it leaves the node when the
        peer's namespace is one whose devices were never part of the snapshot (a VM's, another
        node's); otherwise what is behind it is unknown, never a wire."""
        info = dev.veth
        outside = (
            info is not None
            and info.peer_netns is not None
            and info.peer_netns != dev.netns
            and info.peer_netns not in _namespaces_with_devices(self.snap.topology)
        )
        if outside:
            self.deliver_outside(dev)
            return
        if self.follow_hint(dev.name, dev.netns, packet, meta):
            return
        if self.reached_target(dev):
            return
        ns = f" in namespace {dev.netns}" if dev.netns != MAIN_NS else ""
        if info is not None and info.peer_netnsid is not None and info.peer_netns is None:
            self.end_missing(
                dev,
                f"the peer of veth {dev.name}{ns} is in another namespace (netnsid "
                f"{info.peer_netnsid}) that the snapshot does not name",
                ("ip netns list", MAIN_NS),
            )
            return
        where = info.peer_netns if info is not None and info.peer_netns else dev.netns
        self.end_missing(
            dev,
            f"the peer of veth {dev.name}{ns} is not in the snapshot",
            ("ip -d link show", where),
        )

    def deliver_outside(self, dev: Interface) -> None:
        """A veth whose peer lives in a namespace the snapshot does not cover: the packet
        leaves the node (to a VM's namespace behind its tap, or whatever the other end is
        plugged into)."""
        info = dev.veth
        where = f"namespace {info.peer_netns}" if info and info.peer_netns else "another namespace"
        self.deliver(dev, f"leaves the node through {dev.name} to its peer in {where}")

    def unknown_device(self, dev: Interface, packet: Packet, meta: Metadata) -> None:
        """Sent out of a device whose kind the snapshot does not tell: a NIC (the wire) or
        one end of a veth (another namespace, OVS) cannot be told apart, so the walk ends
        unknown unless the device's name pairs it (and says so)."""
        if self.follow_hint(dev.name, dev.netns, packet, meta) or self.reached_target(dev):
            return
        if dev.ifindex is None and dev.mac is None and dev.master is not None:
            known = f"it is only named as a port of {dev.master}"
        else:
            known = "the snapshot's `ip link`/`ip address` has no `-d` details"
        needed = [("ip -d link show", dev.netns)]
        kinds = "a NIC, or one end of a veth"
        if self.ovs_port_list_missing():
            # An OVS internal port moved into a namespace shows no master there.
            kinds = "a NIC, one end of a veth, or an Open vSwitch port"
            needed.append(("ovs-vsctl show", MAIN_NS))
        self.end_missing(
            dev, f"what {dev.name} is ({kinds}) is not in the snapshot: {known}", needed
        )

    def ovs_port_list_missing(self) -> bool:
        """The node runs Open vSwitch, but the snapshot does not list its ports."""
        if self.switch is not None and any(b.ports for b in self.switch.bridges):
            return False
        return bool(self.snap.ovs_evidence or self.snap.ovs_bridge_names)

    def toward_target(self) -> frozenset[str]:
        """Devices on the target's side of its Linux bridge: the target, the bridge, its ports
        and their veth peers (stated or hinted), one of which is the OVS port leading there."""
        near = _target_bridge_devices(self, self.request.target)
        peers = {h.peer for h in self.request.peer_hints if h.device in near}
        for name in near:
            dev = self.snap.topology.interface(name)
            peer = self.snap.topology.veth_peer(dev) if dev is not None else None
            if peer is not None:
                peers.add(peer.name)
        return near | peers

    def reached_target(self, dev: Interface) -> bool:
        """The device is the one the packet is meant for (a VM's NIC named by its port)."""
        target = self.request.target
        if isinstance(target, ToDevice) and target.name == dev.name and target.label:
            self.deliver(
                dev,
                f"delivered to {target.label} (the snapshot has no link details of "
                f"{dev.name}; the port's devices name it the VM's)",
            )
            return True
        return False

    def follow_hint(self, name: str, netns: str, packet: Packet, meta: Metadata) -> bool:
        """Cross to the peer the device's name gives, when the snapshot does not say it."""
        hint = next(
            (h for h in self.request.peer_hints if h.device == name and h.netns == netns), None
        )
        if hint is None:
            return False
        if not self.hop(name):
            return True
        self.rest_on(
            f"{name} taken as a veth to {hint.peer}: {hint.source}; the snapshot does not "
            f"say what {name} is (`ip -d link show` would)"
        )
        self.device(
            DeviceAction.VETH,
            f"{name} → {hint.peer}",
            f"veth by name ({hint.source}): conntrack and the TRACE flag are reset",
        )
        self.receive(hint.peer, hint.netns, packet, meta)
        return True

    def end_missing(
        self, dev: Interface, what: str, needed: list[tuple[str, str]] | tuple[str, str]
    ) -> None:
        """The path goes on where the snapshot lacks these command outputs: unknown, naming
        each missing output (command, namespace) and how to collect it."""
        wanted = [needed] if isinstance(needed, tuple) else needed
        said = []
        for command, netns in wanted:
            ns = f" in namespace {netns}" if netns != MAIN_NS else ""
            run = f"ip netns exec {netns} {command}" if netns != MAIN_NS else command
            said.append(f"`{command}`{ns} (collect it with `{run}`)")
        self.end(Outcome.UNKNOWN, dev.name, f"{what}; missing: {'; '.join(said)}")

    # -- Linux bridge with br_netfilter ----------------------------------------------

    def br_netfilter_on(self, bridge: Interface, packet: Packet) -> bool:
        family = packet.family
        if family is None:
            return False  # ARP goes to arptables, other protocols to nothing
        sysctls = self.ns(bridge.netns).sysctls
        info = bridge.bridge
        per_bridge = bool(
            info and (info.nf_call_iptables if family is Family.IPV4 else info.nf_call_ip6tables)
        )
        on = sysctls.bridge_nf_call(family)
        if on is None:
            self.rest_on(
                "bridge-nf-call sysctls not captured: br_netfilter assumed loaded and on "
                "(its default), so bridged IP frames go through iptables"
            )
            return True
        return on or per_bridge

    def bridge_pass(self, port: Interface, packet: Packet, meta: Metadata) -> None:
        """A frame enters Linux bridge ``port.master`` on ``port``."""
        assert port.master is not None
        bridge = self.iface(port.master, port.netns)
        if bridge is None:
            self.end(Outcome.UNKNOWN, port.master, f"bridge {port.master} is not in the snapshot")
            return
        self.device(DeviceAction.BRIDGE, bridge.name, f"enters on port {port.name}")
        self.look_if_assumed("dl_dst", f"Linux bridge {bridge.name} (forwarding by MAC)")
        if packet.dl_vlan is not None:
            self.assume("a VLAN-tagged frame on a Linux bridge: br_netfilter skips it")
        nf = self.br_netfilter_on(bridge, packet) and packet.dl_vlan is None
        if not nf and packet.family is not None:
            self.device(
                DeviceAction.BRIDGE,
                bridge.name,
                "br_netfilter is off (bridge-nf-call-iptables=0 or not loaded): iptables does "
                "not see this frame",
            )
        pre = (Hook.PREROUTING, HookDevices(in_dev=bridge.name, physin=port.name))
        decision = linux_bridge.forward(
            self.snap.topology, bridge, port, packet.dl_dst, packet.dl_vlan
        )
        self.device(DeviceAction.BRIDGE, bridge.name, decision.reason)
        if decision.action is linux_bridge.BridgeAction.DROP:
            if nf and decision.fdb_entry is not None:
                # br_netfilter's PREROUTING runs before the forwarding-table lookup.
                result = self.netfilter(bridge.netns, packet, (pre,))
                if not self.hook_passed(result, bridge.name):
                    return
            self.end(Outcome.DROPPED, bridge.name, decision.reason)
            return
        for name, why in decision.disabled:
            self.device(DeviceAction.BRIDGE, bridge.name, f"not flooded to {name}: {why}")
            self.end(
                Outcome.DROPPED,
                name,
                f"{why}: the bridge disables the port and sends it nothing "
                f"({name}'s tx_dropped does not count it)",
            )
        if (
            decision.action is linux_bridge.BridgeAction.FLOOD
            and not decision.out_ports
            and not decision.local_copy
        ):
            if not decision.disabled:
                self.end(Outcome.DROPPED, bridge.name, "flooded, but the bridge has no other port")
            return
        outs = decision.out_ports
        copies = len(outs) + int(decision.local_copy)
        if nf and copies > 1:
            self.assume(
                f"{bridge.name}: each copy of the flooded frame is evaluated as its own pass "
                "(PREROUTING is shown again for every copy)"
            )
        self.flood_depth += copies > 1
        path = self.copy
        for i, out in enumerate(outs[:MAX_COPIES]):
            if copies > 1:
                self.copy = (*path, i)
                self.device(DeviceAction.BRIDGE, bridge.name, f"copy {i + 1} of {copies} → {out}")
            self.bridge_forward(bridge, port.name, out, packet, meta, pre if nf else None)
        self.copy = path
        if len(outs) > MAX_COPIES:
            self.assume(f"{bridge.name}: only the first {MAX_COPIES} flooded copies are followed")
        if decision.action is linux_bridge.BridgeAction.LOCAL or decision.local_copy:
            if copies > 1:
                self.device(DeviceAction.BRIDGE, bridge.name, f"copy {copies} of {copies} → host")
            self.device(DeviceAction.DELIVER, bridge.name, "up the host stack from the bridge")
            # br_pass_frame_up: with br_netfilter, PREROUTING already ran in the bridge (and
            # ip_sabotage_in skips it); without, the IP stack runs it with IN=<bridge>.
            self.host_stack(
                bridge.name, bridge.netns, packet, meta,
                pre=pre if nf else (Hook.PREROUTING, HookDevices(in_dev=bridge.name)),
                physin=port.name if nf else None,
            )  # fmt: skip
        self.flood_depth -= copies > 1

    def bridge_forward(
        self,
        bridge: Interface,
        physin: str,
        out: str,
        packet: Packet,
        meta: Metadata,
        pre: tuple[Hook, HookDevices] | None,
    ) -> None:
        if pre is not None:
            result = self.netfilter(
                bridge.netns,
                packet,
                (
                    pre,
                    (Hook.FORWARD, HookDevices(bridge.name, bridge.name, physin, out)),
                    (Hook.POSTROUTING, HookDevices("", bridge.name, physin, out)),
                ),
            )
            if not self.hook_passed(result, bridge.name):
                return
            packet = result.packet
        port = self.iface(out, bridge.netns)
        allowance = 0 if packet.dl_vlan is not None else VLAN_HLEN
        too_long = self.exceeds_mtu(port, packet, allowance) if port is not None else ""
        if too_long:
            self.end(
                Outcome.DROPPED,
                out,
                f"{too_long}: a Linux bridge does not fragment; {bridge.name} drops the frame "
                "without a word (br_dev_queue_push_xmit: no ICMP is sent)",
            )
            return
        self.device(DeviceAction.OUTPUT, out, f"{bridge.name} sends it out of {out}")
        self.transmit(out, bridge.netns, packet, meta)

    def bridge_local_out(self, bridge: Interface, packet: Packet, meta: Metadata) -> None:
        """The host sends out of a bridge device: the bridge forwards from its own port."""
        decision = linux_bridge.forward(
            self.snap.topology, bridge, bridge, packet.dl_dst, packet.dl_vlan
        )
        self.device(DeviceAction.BRIDGE, bridge.name, f"sent by the host: {decision.reason}")
        if not decision.out_ports:
            self.end(Outcome.DROPPED, bridge.name, decision.reason)
            return
        path = self.copy
        for i, out in enumerate(decision.out_ports[:MAX_COPIES]):
            if len(decision.out_ports) > 1:
                self.copy = (*path, i)
            self.transmit(out, bridge.netns, packet, meta)
        self.copy = path

    def hook_passed(self, result: HookResult, where: str) -> bool:
        if result.verdict is Verdict.ACCEPT:
            return True
        outcome = Outcome.of(result.verdict)
        reason = result.reason or f"netfilter: {result.verdict.value}"
        self.end(outcome, where, reason, step=result.decisive_step)
        return False

    # -- the host stack ----------------------------------------------------------------

    def host_receive(self, name: str, netns: str, packet: Packet, meta: Metadata) -> None:
        """An IP packet received on a routed device: PREROUTING, routing, INPUT or FORWARD."""
        if packet.family is None:
            if packet.dl_type == ETH_TYPE_ARP:
                self.host_arp(name, netns, packet)
            else:
                self.end(Outcome.UNKNOWN, name, f"non-IP frame (0x{packet.dl_type:04x}) on {name}")
            return
        dev = self.iface(name, netns)
        if dev is not None and not dev.up:
            self.end(
                Outcome.DROPPED,
                name,
                f"{name} is down: the host does not receive on it",
                not_for_here=True,
            )
            return
        mac = dev.mac.lower() if dev is not None and dev.mac else None
        dst = packet.dl_dst.lower()
        if mac is not None and dst != mac and not linux_bridge.is_multicast(dst):
            self.end(
                Outcome.DROPPED,
                name,
                f"the frame is for {dst}, not {name}'s address {mac}: the host's IP layer "
                "drops it (PACKET_OTHERHOST)",
                not_for_here=True,
            )
            return
        self.device(DeviceAction.ROUTE, name, "received by the host stack")
        self.host_stack(name, netns, packet, meta, pre=(Hook.PREROUTING, HookDevices(in_dev=name)))

    def host_stack(
        self,
        name: str,
        netns: str,
        packet: Packet,
        meta: Metadata,
        *,
        pre: tuple[Hook, HookDevices],
        physin: str | None = None,
    ) -> None:
        """PREROUTING (``pre``), the routing decision on the packet it leaves, then INPUT, or
        FORWARD and POSTROUTING, all as one pass of one skb."""
        if packet.dl_type == ETH_TYPE_ARP:
            self.host_arp(name, netns, packet)
            return
        if packet.family is None or packet.nw_dst is None:
            self.end(Outcome.UNKNOWN, name, "the host stack needs an IP destination")
            return
        routed = self.packet_after(netns, packet, (pre,))
        assert routed.nw_dst is not None
        sysctls = self.ns(netns).sysctls
        mode = sysctls.rp_filter(name)
        if mode and routed.nw_src is not None and routed.family is Family.IPV4:
            ok, why = routing.reverse_path_ok(self.snap.topology, routed.nw_src, name, mode, netns)
            if not ok and not self.prerouting_only(netns, packet, pre, name):
                return
            if ok is None:
                self.end(Outcome.UNKNOWN, name, why)
                return
            if not ok:
                self.look_if_assumed("nw_src", f"rp_filter on {name}")
                self.end(Outcome.DROPPED, name, why)
                return
        decision = routing.decide(
            self.snap.topology, routed.nw_dst, src=routed.nw_src, iif=name,
            mark=routed.skb_mark, netns=netns,
        )  # fmt: skip
        self.look_if_assumed("nw_dst", f"the routing decision on {name}")
        forwarding = sysctls.forwarding(packet.family)
        routed_on = decision.action is not routing.RouteAction.LOCAL
        expired = routed_on and routed.nw_ttl <= 1
        ends = decision.action in _ROUTE_ENDS or (routed_on and (forwarding is False or expired))
        if ends and not self.prerouting_only(netns, packet, pre, name):
            return
        step = self.route_step(decision, name)
        if step is None:
            return
        if decision.action is routing.RouteAction.LOCAL:
            result = self.netfilter(
                netns, packet, (pre, (Hook.INPUT, HookDevices(in_dev=name, physin=physin)))
            )
            if self.hook_passed(result, name):
                self.local_delivery(name, netns, result.packet, meta)
            return
        if forwarding is False:
            self.end(
                Outcome.DROPPED,
                name,
                f"not for this host and forwarding is off (ip_forward=0): {routed.nw_dst}",
                step=step,
            )
            return
        if forwarding is None:
            self.rest_on(
                f"ip_forward of namespace {netns or 'main'} not captured: forwarding assumed on"
            )
        if expired:
            self.look_if_assumed("nw_ttl", f"ip_forward on {name}")
            error = "ICMP time-exceeded" if packet.family is Family.IPV4 else "ICMPv6 time-exceeded"
            self.end(
                Outcome.DROPPED,
                name,
                f"TTL {routed.nw_ttl} cannot be lowered further: ip_forward drops it before "
                f"FORWARD and answers {error} to {routed.nw_src}",
                step=step,
            )
            return
        out = decision.dev or ""
        result = self.netfilter(
            netns,
            packet,
            (
                pre,
                (Hook.FORWARD, HookDevices(in_dev=name, out_dev=out, physin=physin)),
                # ip_output hands POSTROUTING skb->dev, still the device it came in on.
                (Hook.POSTROUTING, HookDevices(in_dev=name, out_dev=out, physin=physin)),
            ),
            routed=True,
        )
        if not self.hook_passed(result, name):
            return
        self.send(out, netns, result.packet, meta, decision)

    def prerouting_only(
        self, netns: str, packet: Packet, pre: tuple[Hook, HookDevices], name: str
    ) -> bool:
        """PREROUTING alone, its steps kept, for a packet the routing decision after it will
        end (rp_filter, ip_forward, no route): the kernel runs the hook (and TRACE logs it)
        before ``ip_route_input``. ``False`` when PREROUTING itself ended the packet."""
        result = self.netfilter(netns, packet, (pre,))
        return self.hook_passed(result, name)

    def host_arp(self, name: str, netns: str, packet: Packet) -> None:
        """ARP reaching the host stack: answered when it asks for one of the host's addresses
        in that namespace, otherwise ignored (arp_process finds no local target)."""
        tpa = packet.arp_tpa
        if tpa is not None and tpa in self.local_addresses(netns):
            where = f"namespace {netns}" if netns != MAIN_NS else "the host"
            refused = self.arp_ignored(name, netns, packet)
            if refused:
                self.end(Outcome.DROPPED, name, f"ARP for {tpa}, an address of {where}: "
                         f"{refused}, so it is not answered")  # fmt: skip
                return
            self.end(Outcome.DELIVERED, name, f"ARP for {tpa}, an address of {where}: answered "
                     f"on {name}", target=ToHost(netns))  # fmt: skip
            return
        proxied = self.proxy_arp(name, netns, packet) if tpa is not None else ""
        if proxied:
            self.end(Outcome.DELIVERED, name, proxied, target=ToHost(netns))
            return
        self.end(
            Outcome.DROPPED, name,
            f"ARP for {tpa or 'no address'} reaches the host on {name}: not one of its "
            "addresses, so it is not answered",
            not_for_here=True,
        )  # fmt: skip

    def proxy_arp(self, name: str, netns: str, packet: Packet) -> str:
        """Why the stack answers an ARP request for someone else's address with ``name``'s own
        MAC (proxy ARP, as Neutron's fip namespaces do on ``fg-``); "" if it does not.

        The kernel (``arp_process``/``arp_fwd_proxy``) answers when ``proxy_arp`` is on for
        the device (``all`` or its own), forwarding is on, and the route to the target from the
        sender leaves through *another* device; medium ids (``medium_id``) are assumed 0."""
        sysctls = self.ns(netns).sysctls
        found = [
            sysctls.number(f"net.ipv4.conf.{d.replace('.', '/')}.proxy_arp") for d in ("all", name)
        ]
        if not any(v for v in found if v is not None):
            if all(v is None for v in found):
                self.rest_on(f"proxy_arp of {name} not captured: 0 (off) assumed")
            return ""
        forwarding = sysctls.number(f"net.ipv4.conf.{name.replace('.', '/')}.forwarding")
        if forwarding == 0:
            return ""
        tpa, spa = packet.arp_tpa, packet.arp_spa
        assert tpa is not None
        decision = routing.decide(self.snap.topology, tpa, src=spa, iif=name, netns=netns)
        if decision.action is not routing.RouteAction.FORWARD or decision.dev in (None, name):
            return ""
        return (
            f"ARP for {tpa}, not an address of this namespace: answered on {name} with its own "
            f"MAC by proxy ARP (proxy_arp=1; the route to {tpa} leaves through {decision.dev})"
        )

    def arp_ignored(self, name: str, netns: str, packet: Packet) -> str:
        """Why ``arp_ignore`` (the larger of ``all`` and the device's, as the kernel takes it)
        keeps the host from answering a request for one of its addresses; "" if it answers.
        Neutron sets 1 in its routers' namespaces: only the receiving device's own addresses."""
        found = [
            self.ns(netns).sysctls.number(f"net.ipv4.conf.{dev.replace('.', '/')}.arp_ignore")
            for dev in ("all", name)
        ]
        values = [v for v in found if v is not None]
        if not values:
            self.rest_on(f"arp_ignore of {name} not captured: 0 (answer for any address) assumed")
            return ""
        mode = max(values)
        tpa = packet.arp_tpa
        if mode == 8:
            return f"arp_ignore=8 on {name} answers no request"
        if mode == 3:
            scopes = {
                a.scope
                for i in self.snap.topology.in_namespace(netns)
                for a in i.addresses
                if a.ip == tpa
            }
            host_only = scopes == {"host"}
            return "arp_ignore=3 does not answer for host-scope addresses" if host_only else ""
        if mode not in (1, 2):  # 0, and the reserved 4-7: the kernel answers
            return ""
        dev = self.iface(name, netns)
        own = [a.interface for a in dev.addresses if a.ip == tpa] if dev else []
        if not own:
            return f"arp_ignore={mode} answers only for {name}'s own addresses"
        spa = packet.arp_spa
        if mode == 2 and (spa is None or not any(spa in i.network for i in own)):
            return f"arp_ignore=2 answers only senders in {name}'s subnet of that address"
        return ""

    def local_out(self, netns: str, packet: Packet, meta: Metadata) -> None:
        """A packet the host itself sends: OUTPUT, routing, POSTROUTING, out of a device."""
        assert packet.nw_dst is not None
        decision = routing.decide(
            self.snap.topology, packet.nw_dst, src=packet.nw_src, mark=packet.skb_mark,
            netns=netns,
        )  # fmt: skip
        if self.route_step(decision, "host") is None:
            return
        if packet.nw_src is None and decision.route is not None:
            src = decision.route.prefsrc or self.source_for(decision.dev, netns)
            if src is not None:
                packet = dataclasses.replace(packet, nw_src=src)
                how = (
                    "the route's preferred source"
                    if decision.route.prefsrc
                    else (f"the address of {decision.dev}, the device the route leaves by")
                )
                self.assume(f"nw_src not given: {src}, {how} (as the kernel picks it)")
        if decision.action is routing.RouteAction.FORWARD:
            rerouted = self.reroute_after_output(netns, packet, decision)
            if rerouted is None:
                return
            decision = rerouted
        if decision.action is routing.RouteAction.LOCAL:
            result = self.netfilter(
                netns,
                packet,
                (
                    (Hook.OUTPUT, HookDevices(out_dev="lo")),
                    (Hook.POSTROUTING, HookDevices(out_dev="lo")),
                    (Hook.PREROUTING, HookDevices(in_dev="lo")),
                    (Hook.INPUT, HookDevices(in_dev="lo")),
                ),
            )
            if self.hook_passed(result, "host"):
                self.local_delivery("lo", netns, result.packet, meta)
            return
        out = decision.dev or ""
        result = self.netfilter(
            netns,
            packet,
            ((Hook.OUTPUT, HookDevices(out_dev=out)), (Hook.POSTROUTING, HookDevices(out_dev=out))),
        )
        if self.hook_passed(result, "host"):
            self.send(out, netns, result.packet, meta, decision)

    def reroute_after_output(
        self, netns: str, packet: Packet, decision: routing.RouteDecision
    ) -> routing.RouteDecision | None:
        """ip_route_me_harder: a destination that nat OUTPUT changed (DNAT, REDIRECT to the
        loopback) is routed again; ``None`` when that second decision ends the packet."""
        ruleset = self.ns(netns).ruleset(packet.family or Family.IPV4)
        if ruleset is None or not _rewrites_destinations(ruleset):
            return decision
        after = self.packet_after(
            netns, packet, ((Hook.OUTPUT, HookDevices(out_dev=decision.dev or "")),)
        )
        if after.nw_dst is None or after.nw_dst == packet.nw_dst:
            return decision
        again = routing.decide(
            self.snap.topology, after.nw_dst, src=after.nw_src, mark=after.skb_mark, netns=netns
        )
        said = f"nat OUTPUT sent it to {after.nw_dst}: {again.reason}"
        return again if self.route_step(again, "host", said) is not None else None

    def route_step(self, decision: routing.RouteDecision, where: str, said: str = "") -> int | None:
        """Record a routing decision as a step (its number); ``None`` when the decision ends
        the packet (no route known, or one that drops)."""
        if decision.assumption:
            self.assume(decision.assumption)
        step = self.device(DeviceAction.ROUTE, where, said or decision.reason)
        ends = _ROUTE_ENDS.get(decision.action)
        if ends is None:
            return step
        self.end(ends, where, decision.reason, step=step)
        return None

    def source_for(self, dev: str | None, netns: str) -> IPAddress | None:
        iface = self.iface(dev, netns) if dev else None
        if iface is None:
            return None
        for a in iface.addresses:
            if a.scope == "global":
                return a.ip
        return None

    def send(
        self,
        out: str,
        netns: str,
        packet: Packet,
        meta: Metadata,
        decision: routing.RouteDecision,
    ) -> None:
        """After POSTROUTING: resolve the next hop's MAC and transmit on ``out``."""
        nexthop = decision.gateway or packet.nw_dst
        dev = self.iface(out, netns)
        if nexthop is not None and dev is not None:
            neigh = self.snap.topology.neighbour(nexthop, out, netns)
            src_mac = dev.mac or packet.dl_src
            if neigh is not None and neigh.mac is not None and neigh.usable:
                packet = dataclasses.replace(packet, dl_src=src_mac, dl_dst=neigh.mac)
            else:
                self.assume(
                    f"no usable neighbour entry for {nexthop} on {out}: the frame's "
                    "destination MAC is kept as given (ARP would resolve it first)"
                )
                packet = dataclasses.replace(packet, dl_src=src_mac)
        if dev is not None and not self.ip_fits(dev, packet):
            return
        self.device(DeviceAction.OUTPUT, out, f"host sends it out of {out}")
        if self.hop(out):
            self.transmit(out, netns, packet, meta)

    def ip_fits(self, dev: Interface, packet: Packet) -> bool:
        """The IP layer's MTU check on the way out of ``dev``: a longer IPv4 packet without
        DF is fragmented (the first fragment is followed); with DF, or IPv6 (routers never
        fragment it), the packet is dropped and an ICMP error tells the sender the MTU."""
        too_long = self.exceeds_mtu(dev, packet)
        if not too_long:
            return True
        if packet.family is Family.IPV4 and not packet.ip_df:
            self.assume(
                f"{too_long}: the host fragments it (no DF); the walk follows it whole "
                "(nstat IpFragCreates counts the fragments)"
            )
            return True
        if self.outer and self.encap_overhead is not None:
            error = "ICMP fragmentation-needed to the inner packet's sender where it can"
            counter = "the tunnel's tx_dropped or nstat IpFragFails rises"
        elif packet.family is Family.IPV4:
            error = f"ICMP fragmentation-needed (mtu {dev.mtu}) to {packet.nw_src}"
            counter = "nstat IpFragFails rises"
        else:
            error = f"ICMPv6 packet-too-big (mtu {dev.mtu}) to {packet.nw_src}"
            counter = "nstat Ip6InTooBigErrors (forwarded) or Ip6FragFails (sent) rises"
        df = "DF is set" if packet.family is Family.IPV4 else "IPv6 is never fragmented on the way"
        self.end(
            Outcome.DROPPED,
            dev.name,
            f"{too_long} and {df}: the kernel drops it and answers {error}; {counter}",
        )
        return False

    def local_delivery(self, name: str, netns: str, packet: Packet, meta: Metadata) -> None:
        """INPUT accepted: a socket, or a tunnel endpoint that decapsulates."""
        vport = self.kernel_tunnel_for(packet, netns)
        if vport is not None:
            bridge, port = vport
            self.decapsulate(bridge, port, packet, dict(self.request.metadata), "kernel vport")
            return
        what = _describe_l4(packet)
        self.end(
            Outcome.DELIVERED,
            "host",
            f"delivered to the host's {what} (INPUT accepted on {name})",
            target=ToHost(netns),
        )

    def kernel_tunnel_for(self, packet: Packet, netns: str) -> tuple[str, SwitchPort] | None:
        """The OVS tunnel port a VXLAN/GRE packet to this host belongs to (kernel datapath:
        the vport's device, ``vxlan_sys_4789`` or ``gre_sys``, hands it to the bridge)."""
        kind = _tunnel_kind(packet)
        if kind is None or packet.nw_src is None or self.switch is None or netns != MAIN_NS:
            return None
        return self.tunnel_port(kind, packet.nw_src, packet.tp_dst)

    # -- Open vSwitch ------------------------------------------------------------------

    def tunnel_port(
        self, kind: str, remote: IPAddress, dst_port: int | None
    ) -> tuple[str, SwitchPort] | None:
        """The OVS tunnel port that accepts a packet of this type from ``remote``."""
        if self.switch is None:
            return None
        fallback: tuple[str, SwitchPort] | None = None
        for b in self.switch.bridges:
            for p in b.ports:
                iface = p.interface
                if iface is None or iface.type != kind:
                    continue
                other_port = dst_port is not None and iface.dst_port not in (None, dst_port)
                if kind in ("vxlan", "geneve") and other_port:
                    continue
                remote_ip = iface.remote_ip
                if remote_ip == str(remote):
                    return b.name, p
                if remote_ip == "flow" and fallback is None:
                    fallback = (b.name, p)
        return fallback

    def given_for(self, meta: Metadata) -> frozenset[str] | None:
        """The fields an OpenFlow pass may take as stated (the rest it reports when used)."""
        if self.given_fields is None:
            return None
        return self.given_fields | {k for k, _ in meta}

    def datapath(self, bridge: str) -> str:
        """The bridge's datapath type; OVS's default (``system``) when the snapshot does not
        say, and then the walk says it assumed it."""
        state = self.switch.bridge(bridge) if self.switch is not None else None
        dp = state.ovsdb.datapath_type if state is not None and state.ovsdb is not None else None
        if dp is None:
            self.rest_on(
                f"{bridge}: datapath type not in the snapshot (`ovs-vsctl list bridge`): the "
                "kernel datapath (system), OVS's default, assumed"
            )
        return dp or "system"

    def ovs(self, bridge: str, port: str, packet: Packet, meta: Metadata) -> None:
        """Run a bridge's OpenFlow pipeline and follow every packet that leaves it."""
        if self.switch is None:
            self.end(
                Outcome.UNKNOWN,
                port,
                f"{port} is an OVS port, but the snapshot has no Open vSwitch flows and ports",
            )
            return
        self.device(DeviceAction.ENTER, bridge, f"OpenFlow pipeline, in_port={port}")
        if packet.skb_mark and self.datapath(bridge) == "netdev":
            # The userspace datapath reads the frame off the device (AF_PACKET, a tap's fd):
            # the skb and its mark stay in the kernel, and OVS starts with pkt_mark 0.
            packet = dataclasses.replace(packet, skb_mark=0)
        state = self.switch.bridge(bridge)
        if state is None or state.flows is None:
            command = f"ovs-ofctl dump-flows {bridge}"
            self.end(
                Outcome.UNKNOWN, bridge,
                f"no `{command}` output in the snapshot: the pipeline of {bridge} is not known; "
                f"collect it with `{command}`",
            )  # fmt: skip
            return
        given = None if self.outer else self.given_for(meta)
        try:
            result = self.engines.openflow.run(bridge, port, packet, meta, given)
        except UsageError as err:
            # The snapshot does not say what the engine needs (a port's OpenFlow number).
            self.end(Outcome.UNKNOWN, bridge, _snapshot_gap(str(err)))
            return
        base = len(self.steps)
        self.steps.extend(result.steps)
        for a in result.assumptions:
            self.assume(a)
        for name, where in result.consulted:
            self.look(_ALIASES.get(name, (name,)), where)
        if self.watched and not self.outer:
            normal = next(
                (s for s in result.steps if isinstance(s, OpenFlowStep) and "NORMAL" in s.actions),
                None,
            )
            if normal is not None:
                where = f"{normal.bridge} table {normal.table} (NORMAL switching)"
                self.look_if_assumed("dl_dst", where)
        if result.verdict is not Verdict.ACCEPT or not result.outputs:
            outcome = Outcome.UNKNOWN if result.verdict is Verdict.UNKNOWN else Outcome.DROPPED
            step = base + result.decisive_step if result.decisive_step is not None else None
            self.end(outcome, bridge, result.reason or "no packet left the bridge", step=step)
            return
        outs = result.outputs
        copies = len(outs) > 1
        if len(outs) > MAX_COPIES:
            # Of a flood too wide to follow whole, the copy headed for the target goes first.
            toward = self.toward_target()
            outs = tuple(sorted(outs, key=lambda o: o.port not in toward))
        self.flood_depth += copies
        path = self.copy
        for i, out in enumerate(outs[:MAX_COPIES]):
            if copies:
                self.copy = (*path, i)
                self.device(DeviceAction.OUTPUT, out.port, f"following copy {i + 1} of {len(outs)}")
            self.ovs_output(out)
        self.copy = path
        self.flood_depth -= copies
        if len(outs) > MAX_COPIES:
            self.assume(f"{bridge}: only the first {MAX_COPIES} output copies are followed")

    def ovs_output(self, out: OfOutput) -> None:
        if out.encap is not None:
            self.encapsulate(out)
            return
        state = self.switch.bridge(out.bridge) if self.switch is not None else None
        sp = state.port_by_name(out.port) if state is not None else None
        if sp is not None and (sp.type == "internal" or sp.ofport == 65534):
            if self.native_tunnel_pop(out):
                return
            self.device(DeviceAction.OUTPUT, out.port, f"{out.bridge} hands it to the host")
            if self.hop(out.port):
                self.host_receive(out.port, self.netns_of(out.port), out.packet, out.metadata)
            return
        self.transmit_from_ovs(out.port, out.packet, out.metadata)

    def transmit_from_ovs(self, name: str, packet: Packet, meta: Metadata) -> None:
        """OVS outputs on a system device: the kernel transmits on it."""
        dev = self.iface(name, MAIN_NS)
        if dev is None:
            if not self.follow_hint(name, MAIN_NS, packet, meta):
                self.end(
                    Outcome.UNKNOWN, name,
                    f"OVS port {name} has no Linux device in the snapshot; missing: "
                    "`ip -d link show`; collect it with `ip -d link show`",
                )  # fmt: skip
            return
        if not dev.up:
            self.end(
                Outcome.DROPPED,
                name,
                f"{name} is down: Open vSwitch cannot send on it (the kernel refuses the send "
                "on a device that is not up)",
            )
            return
        too_long = self.exceeds_mtu(dev, packet)
        if too_long:
            self.end(
                Outcome.DROPPED,
                name,
                f"{too_long}: Open vSwitch does not fragment and drops it (the kernel datapath "
                f"counts it in {name}'s tx_errors; the userspace one logs 'error sending "
                f"Ethernet packet on {name}: Message too long', and no counter rises)",
            )
            return
        if dev.kind is LinkKind.VETH:
            self.cross_veth(dev, packet, meta)
            return
        self.transmit(name, MAIN_NS, packet, meta)

    def native_tunnel_pop(self, out: OfOutput) -> bool:
        """Userspace datapath: a tunnel packet for a local endpoint is decapsulated by OVS."""
        if self.datapath(out.bridge) != "netdev":
            return False
        packet = out.packet
        kind = _tunnel_kind(packet)
        if kind is None or packet.nw_src is None or packet.nw_dst is None:
            return False
        if packet.nw_dst not in self.local_addresses(MAIN_NS):
            return False
        found = self.tunnel_port(kind, packet.nw_src, packet.tp_dst)
        if found is None:
            return False
        bridge, port = found
        self.assume(
            "userspace datapath (netdev): OVS decapsulates tunnel packets for its own endpoints "
            "(native tunneling, tnl_pop); the host's netfilter never sees the outer packet"
        )
        self.decapsulate(bridge, port, packet, dict(self.request.metadata), "native tunnel pop")
        return True

    def decapsulate(
        self, bridge: str, port: SwitchPort, outer: Packet, given: dict[str, str], how: str
    ) -> None:
        inner = self.inner_packet or outer
        meta = dict(given)
        meta["tun_src"] = str(outer.nw_src)
        meta["tun_dst"] = str(outer.nw_dst)
        if "tun_id" not in meta:
            key = port.interface.in_key if port.interface is not None else None
            if key is not None and key != "flow":
                meta["tun_id"] = key
            else:
                self.assume("tunnel key not given (tun_id=...): 0 assumed")
                meta["tun_id"] = "0"
        self.device(
            DeviceAction.DECAP,
            port.name,
            f"{how}: {_tunnel_kind(outer)} from {outer.nw_src}, key {meta['tun_id']}",
        )
        if self.hop(port.name):
            was_outer, self.outer = self.outer, False
            try:
                self.ovs(bridge, port.name, inner, tuple(meta.items()))
            finally:
                self.outer = was_outer

    def encapsulate(self, out: OfOutput) -> None:
        encap = out.encap
        assert encap is not None
        if encap.dst is None:
            self.end(Outcome.UNKNOWN, out.port, "tunnel port without a fixed remote_ip (flow)")
            return
        outer = _outer_packet(encap, out.packet, self)
        inner_length = total_length(out.packet) if out.packet.family is not None else None
        if inner_length is not None and outer.ip_len is not None:
            self.encap_overhead = (inner_length, outer.ip_len - inner_length, encap.type)
        proto = "GRE" if outer.nw_proto == IPProto.GRE else f"UDP {outer.tp_dst}"
        self.device(
            DeviceAction.ENCAP, out.port, f"outer packet {outer.nw_src} → {outer.nw_dst} {proto}"
        )
        if not self.hop(out.port):
            return
        was_outer, self.outer = self.outer, True
        try:
            if self.datapath(out.bridge) == "netdev":
                self.native_tunnel_push(out, outer)
                return
            # Kernel datapath: the vport's kernel device sends the outer packet as the host would.
            self.local_out(MAIN_NS, outer, ())
        finally:
            self.outer = was_outer

    def native_tunnel_push(self, out: OfOutput, outer: Packet) -> None:
        """Userspace datapath: OVS routes the outer packet itself and sends it through the
        bridge that owns the route (its LOCAL port), not through the host's netfilter."""
        assert outer.nw_dst is not None
        decision = routing.decide(self.snap.topology, outer.nw_dst, netns=MAIN_NS)
        dev = decision.dev
        if decision.action is routing.RouteAction.UNKNOWN:
            self.end(Outcome.UNKNOWN, out.port, f"native tunnel: {decision.reason}")
            return
        if decision.action is not routing.RouteAction.FORWARD or dev not in self.ovs_ports:
            self.end(
                Outcome.DROPPED,
                out.port,
                f"native tunnel: no route to {outer.nw_dst} through an OVS bridge "
                f"({decision.reason})",
            )
            return
        self.assume(
            "userspace datapath (netdev): OVS routes and sends the outer packet itself "
            "(native tunneling, tnl_push), through the underlay bridge's pipeline"
        )
        underlay, _ = self.ovs_ports[dev]
        iface = self.iface(dev, MAIN_NS)
        nexthop = decision.gateway or outer.nw_dst
        neigh = self.snap.topology.neighbour(nexthop, dev, MAIN_NS)
        dl_dst = neigh.mac if neigh is not None and neigh.mac else outer.dl_dst
        if neigh is None or neigh.mac is None:
            self.assume(
                f"no neighbour entry for {nexthop} on {dev}: the outer destination MAC is "
                "unknown (OVS's tnl/arp cache was not captured)"
            )
        outer = dataclasses.replace(
            outer, dl_src=iface.mac if iface and iface.mac else outer.dl_src, dl_dst=dl_dst
        )
        self.device(DeviceAction.ENTER, underlay, f"tunneling to {outer.nw_dst} via {dev}")
        self.ovs(underlay, dev, outer, ())


_SENDING_KINDS = frozenset(
    {LinkKind.TAP, LinkKind.TUN, LinkKind.PHYSICAL, LinkKind.BOND, LinkKind.VLAN}
)
"""Devices the walk hands a frame to for sending (a VM's NIC, the wire): their link state
decides whether it leaves."""

_ROUTE_ENDS = {
    routing.RouteAction.UNKNOWN: Outcome.UNKNOWN,
    routing.RouteAction.DROP: Outcome.DROPPED,
}
"""The routing decisions that end a packet, and how."""

_CACHE_SIZE = 8
"""Snapshots (topologies, rulesets) whose derived facts are kept: a walk reuses them."""


def _once_per(cache: dict[int, tuple[object, T]], of: object, compute: Callable[[], T]) -> T:
    """``compute()`` for the object ``of``, computed once while it is among the last few."""
    found = cache.get(id(of))
    if found is not None and found[0] is of:
        return found[1]
    value = compute()
    if len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[id(of)] = (of, value)
    return value


_netns_cache: dict[int, tuple[object, frozenset[str]]] = {}


def _namespaces_with_devices(topology: Topology) -> frozenset[str]:
    """The namespaces whose devices the snapshot lists (computed once per topology)."""
    return _once_per(
        _netns_cache, topology, lambda: frozenset(i.netns for i in topology.interfaces)
    )


_dnat_cache: dict[int, tuple[object, bool]] = {}


def _rewrites_destinations(ruleset: Ruleset) -> bool:
    """The nat table has a DNAT or REDIRECT rule (so a route may have to be taken again)."""
    nat = ruleset.tables.get("nat")
    return _once_per(
        _dnat_cache,
        ruleset,
        lambda: (
            nat is not None
            and any(
                isinstance(r.target, NatTarget) and r.target.nat_type in ("DNAT", "REDIRECT")
                for c in nat.chains.values()
                for r in c.rules
            )
        ),
    )


def _kind_not_known(dev: Interface) -> bool:
    """The snapshot does not say what the device is: ``ip`` without ``-d`` (UNKNOWN), or a
    name known only as a bridge's port (``brctl show``: no index, no MAC)."""
    if dev.kind is LinkKind.UNKNOWN:
        return True
    return dev.kind is LinkKind.PHYSICAL and dev.ifindex is None and dev.mac is None


def _snapshot_gap(message: str) -> str:
    """An engine's usage error met inside a snapshot, said without its command's options."""
    return message.replace(", or give --in-port as a number", "")


_ALIASES = {
    "ipv6_src": ("nw_src",),
    "ipv6_dst": ("nw_dst",),
    "vlan_tci": ("dl_vlan",),
    "nw_src": ("nw_src", "arp_spa"),
    "nw_dst": ("nw_dst", "arp_tpa"),
    "tp_src": ("tp_src", "icmp_type"),
    "tp_dst": ("tp_dst", "icmp_code"),
}
"""The OpenFlow engine's storage names, as the packet fields a user writes."""

_RULE_OPTIONS = {
    "-s": "nw_src", "--source": "nw_src", "--src-range": "nw_src",
    "-d": "nw_dst", "--destination": "nw_dst", "--dst-range": "nw_dst",
    "--sport": "tp_src", "--source-port": "tp_src", "--sports": "tp_src",
    "--source-ports": "tp_src",
    "--dport": "tp_dst", "--destination-port": "tp_dst", "--dports": "tp_dst",
    "--destination-ports": "tp_dst",
    "--mac-source": "dl_src",
    "--icmp-type": "icmp_type", "--icmpv6-type": "icmp_type",
    "--tcp-flags": "tcp_flags", "--syn": "tcp_flags",
    "--ttl-eq": "nw_ttl", "--ttl-lt": "nw_ttl", "--ttl-gt": "nw_ttl",
    "--tos": "nw_tos", "--dscp": "nw_tos", "--dscp-class": "nw_tos",
}  # fmt: skip
"""iptables options and the packet field each one compares."""

_rule_field_cache: dict[str, frozenset[str]] = {}


def _rule_fields(text: str) -> frozenset[str]:
    """The packet fields one rule's matches compare (from its iptables-save text)."""
    found = _rule_field_cache.get(text)
    if found is None:
        words = text.split()
        fields = {_RULE_OPTIONS[w] for w in words if w in _RULE_OPTIONS}
        for i, w in enumerate(words[:-2]):
            if w == "--match-set":
                flags = words[i + 2].split(",")
                fields |= {"nw_src" if f == "src" else "nw_dst" for f in flags[:1]}
        found = _rule_field_cache[text] = frozenset(fields)
    return found


_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp", 136: "udplite"}


def _fails_on_known(rule: Rule, packet: Packet, watched: frozenset[str]) -> bool:
    """The rule's fixed part fails on a field that is not watched: it never looked further."""
    ip = rule.ip
    if ip.proto is not None:
        name = _PROTO_NAMES.get(packet.nw_proto, str(packet.nw_proto))
        same = ip.proto.value in (name, str(packet.nw_proto)) or (
            packet.nw_proto == 58 and ip.proto.value in ("icmpv6", "icmp6")
        )
        if same == ip.proto.negated:
            return True
    for spec, address, name in (
        (ip.src, packet.nw_src, "nw_src"),
        (ip.dst, packet.nw_dst, "nw_dst"),
    ):
        if spec is None or name in watched or address is None:
            continue
        if address.version != spec.value.version:
            return True
        if (address in spec.value) == spec.negated:
            return True
    return False


_ComparingRules = dict[tuple[str, str], tuple[tuple[Rule, frozenset[str]], ...]]
_comparing_cache: dict[int, tuple[object, _ComparingRules]] = {}


def _comparing_rules(ruleset: Ruleset) -> _ComparingRules:
    """Per chain, the rules that compare any packet field, with those fields (computed once
    per ruleset: a Neutron node's chains are thousands of physdev jumps that compare none)."""

    def build() -> _ComparingRules:
        index: dict[tuple[str, str], list[tuple[Rule, frozenset[str]]]] = {}
        for rule in ruleset.rules():
            fields = _rule_fields(rule.text)
            if fields:
                index.setdefault((rule.table, rule.chain), []).append((rule, fields))
        return {k: tuple(v) for k, v in index.items()}

    return _once_per(_comparing_cache, ruleset, build)


def _rules_looking_at(
    ruleset: Ruleset, steps: tuple[NetfilterStep, ...], packet: Packet, watched: frozenset[str]
) -> list[tuple[tuple[str, ...], str]]:
    """Rules that compared a watched field: in each chain a pass went through, every rule up
    to the last one it reached was evaluated (those that did not match are not steps), unless
    its addresses or protocol already ruled the packet out."""
    reached: dict[tuple[str, str], int] = {}
    for step in steps:
        if step.number is not None:
            key = (step.table, step.chain)
            reached[key] = max(reached.get(key, 0), step.number)
    comparing = _comparing_rules(ruleset)
    out: list[tuple[tuple[str, ...], str]] = []
    for (table, chain_name), last in reached.items():
        for rule, compared in comparing.get((table, chain_name), ()):
            if rule.position > last:
                break
            fields = compared & watched
            if not fields or _fails_on_known(rule, packet, watched):
                continue
            for name in fields:
                out.append(((name,), f"{table}:{chain_name} rule {rule.position}"))
    return out


def _tunnel_kind(packet: Packet) -> str | None:
    if packet.nw_proto == IPProto.GRE:
        return "gre"
    if packet.nw_proto == IPProto.UDP and packet.tp_dst == VXLAN_PORT:
        return "vxlan"
    if packet.nw_proto == IPProto.UDP and packet.tp_dst == GENEVE_PORT:
        return "geneve"
    return None


def _outer_packet(encap: TunnelEncap, inner: Packet, walk: _Walk) -> Packet:
    """The outer IPv4 header a tunnel port writes (UDP for VXLAN/Geneve, GRE otherwise)."""
    local = encap.src
    if local is None:
        assert encap.dst is not None
        back = routing.decide(walk.snap.topology, encap.dst, netns=MAIN_NS)
        if back.route is not None and back.route.prefsrc is not None:
            local = back.route.prefsrc
        else:
            local = walk.source_for(back.dev, MAIN_NS)
    # Open vSwitch sets DF on the outer packet unless the port says df_default=false.
    length = _outer_length(encap, inner)
    if encap.type in ("vxlan", "geneve"):
        port = encap.dst_port or (VXLAN_PORT if encap.type == "vxlan" else GENEVE_PORT)
        walk.assume("the outer UDP source port is a hash of the inner flow: not computed (0 shown)")
        return Packet(
            dl_type=ETH_TYPE_IPV4, nw_src=local, nw_dst=encap.dst, nw_proto=IPProto.UDP,
            tp_src=0, tp_dst=port, ip_df=True, ip_len=length,
        )  # fmt: skip
    return Packet(
        dl_type=ETH_TYPE_IPV4, nw_src=local, nw_dst=encap.dst, nw_proto=IPProto.GRE, ip_df=True,
        ip_len=length,
    )  # fmt: skip


ENCAP_HEADER = {"vxlan": 8 + 8, "geneve": 8 + 8, "gre": 4}
"""Bytes a tunnel puts between the outer IP header and the inner Ethernet frame: UDP and the
VXLAN/Geneve header (Geneve options not counted); GRE's base header (a key adds 4)."""


def _outer_length(encap: TunnelEncap, inner: Packet) -> int | None:
    """The outer IPv4 packet's total length: outer IP header, the tunnel's header, the inner
    Ethernet header and the inner IP packet (VXLAN: inner + 50 bytes; GRE with a key: + 42)."""
    if inner.family is None:
        return None
    header = ENCAP_HEADER.get(encap.type)
    if header is None:
        return None
    if encap.type == "gre" and encap.key is not None:
        header += 4
    return 20 + header + ETH_HLEN + total_length(inner)


def _describe_l4(packet: Packet) -> str:
    if packet.nw_proto == IPProto.TCP and packet.tp_dst is not None:
        return f"TCP port {packet.tp_dst} (socket)"
    if packet.nw_proto == IPProto.UDP and packet.tp_dst is not None:
        return f"UDP port {packet.tp_dst} (socket)"
    if packet.nw_proto in (IPProto.ICMP, IPProto.ICMPV6):
        return "ICMP handler"
    return "stack"


# -- the entry point -------------------------------------------------------------------


def walk(
    snapshot: Snapshot,
    request: WalkRequest,
    engines: Engines,
    *,
    switch: OvsSwitch | None = None,
) -> Trace:
    """Follow ``request.packet`` through the node from ``request.start``; one trace."""
    w = _Walk(snapshot, switch, engines, request)
    start = request.start
    packet = request.packet
    meta = request.metadata
    given = dict(meta)
    if isinstance(start, FromInterface):
        outer = _outer_from_metadata(w, packet, given, start)
        local = w.ovs_ports.get(start.name) if start.netns == MAIN_NS else None
        if outer is None and local is not None and local[0] == start.name:
            # A bridge's own port (LOCAL), as ofproto/trace's in_port=LOCAL: the host's frame
            # enters the bridge's pipeline.
            w.device(DeviceAction.ENTER, start.name, f"into {start.name} from the host (LOCAL)")
            w.ovs(start.name, start.name, packet, meta)
            return _trace(w)
        w.device(DeviceAction.ENTER, start.name, "received")
        if outer is not None:
            w.inner_packet = packet
            w.outer = True
            w.receive(start.name, start.netns, outer, ())
        else:
            w.receive(start.name, start.netns, packet, meta)
    elif isinstance(start, FromHost):
        w.device(DeviceAction.ENTER, "host", "sent by the host (OUTPUT)")
        if packet.nw_dst is None:
            w.end(Outcome.UNKNOWN, "host", "a packet from the host needs a destination address")
        else:
            w.local_out(start.netns, packet, meta)
    elif isinstance(start, ReceivedOn):
        w.device(DeviceAction.ENTER, start.name, "received by the host stack")
        w.host_receive(start.name, start.netns, packet, meta)
    elif isinstance(start, FromNamespaceDevice):
        where = start.sender or (
            f"namespace {start.netns}" if start.netns != MAIN_NS else "the host"
        )
        w.device(DeviceAction.OUTPUT, start.name, f"sent by {where} out of {start.name}")
        w.transmit(start.name, start.netns, packet, meta)
    else:
        w.device(DeviceAction.ENTER, start.bridge, f"in_port={start.port}")
        w.ovs(start.bridge, start.port, packet, meta)
    return _trace(w)


def _outer_from_metadata(
    w: _Walk, packet: Packet, given: dict[str, str], start: FromInterface
) -> Packet | None:
    """``tun_src``/``tun_dst`` given for a frame entering a non-tunnel device mean: the wire
    carries this packet encapsulated; build the outer packet it arrives in."""
    if "tun_src" not in given or "tun_dst" not in given:
        return None
    try:
        src, dst = ip_address(given["tun_src"]), ip_address(given["tun_dst"])
    except ValueError:
        return None
    kind = "vxlan"
    found = None
    for k in ("vxlan", "gre", "geneve"):
        found = w.tunnel_port(k, src, None)
        iface = found[1].interface if found is not None else None
        if iface is not None and iface.remote_ip == str(src):
            kind = k
            break
    if found is None:
        w.assume("tunnel type not known from the snapshot: VXLAN assumed")
    dev = w.iface(start.name, start.netns)
    mac = dev.mac if dev is not None and dev.mac else "00:00:00:00:00:00"
    owner = w.snap.topology.owner_of(dst, start.netns)
    if owner is not None and owner.mac:
        mac = owner.mac
    w.assume(
        f"the frame on {start.name} is {kind} from {src} to {dst} carrying the given packet; "
        f"its outer destination MAC is {mac}"
    )
    if kind == "gre":
        return Packet(
            dl_dst=mac, dl_type=ETH_TYPE_IPV4, nw_src=src, nw_dst=dst, nw_proto=IPProto.GRE
        )
    port = VXLAN_PORT if kind == "vxlan" else GENEVE_PORT
    if found is not None and found[1].interface is not None and found[1].interface.dst_port:
        port = found[1].interface.dst_port
    return Packet(
        dl_dst=mac, dl_type=ETH_TYPE_IPV4, nw_src=src, nw_dst=dst, nw_proto=IPProto.UDP,
        tp_src=0, tp_dst=port,
    )  # fmt: skip


def _reached(end: _End, target: Target) -> bool:
    if end.target is None:
        return False
    if isinstance(target, ToHost):
        return isinstance(end.target, ToHost)
    return isinstance(end.target, ToDevice) and end.target.name == target.name


def _target_bridge_devices(w: _Walk, target: Target | None) -> frozenset[str]:
    """The target device, the Linux bridge it is a port of, and that bridge's other ports."""
    if not isinstance(target, ToDevice):
        return frozenset()
    topology = w.snap.topology
    dev = topology.interface(target.name, target.netns)
    if dev is None or dev.master is None:
        return frozenset({target.name})
    ports = topology.ports_of(dev.master, target.netns)
    return frozenset({target.name, dev.master, *(p.name for p in ports)})


def _trace(w: _Walk) -> Trace:
    ends = w.ends
    target = w.request.target
    if not ends:
        return Trace(tuple(w.steps), Outcome.UNKNOWN, None, "the walk ended nowhere",
                     tuple(w.assumptions), w.request.packet)  # fmt: skip
    chosen: _End
    extra = ""
    if target is not None:
        hit = [e for e in ends if _reached(e, target)]
        if hit:
            chosen = hit[0]
        else:
            bad = [
                e
                for e in ends
                if e.outcome in (Outcome.DROPPED, Outcome.REJECTED, Outcome.UNKNOWN)
                and not e.incidental
            ]
            # A copy stopped on the target's own Linux bridge speaks for the target; copies
            # flooded elsewhere (out of the uplink, to other VMs) only say where else it went.
            near = _target_bridge_devices(w, target)
            bad.sort(key=lambda e: e.where not in near)
            chosen = bad[0] if bad else ends[0]
            if chosen.outcome is Outcome.DELIVERED:
                chosen = _End(
                    Outcome.DROPPED,
                    chosen.where,
                    f"never reached {_target_text(target)}: it went to {chosen.where}",
                    chosen.step,
                )
    elif any(e.loop for e in ends):
        chosen = next(e for e in ends if e.loop)
    else:
        relevant = [e for e in ends if not e.incidental] or ends
        delivered = [e for e in relevant if e.outcome is Outcome.DELIVERED]
        chosen = delivered[0] if delivered else relevant[0]
    if len(ends) > 1:
        others = "; ".join(f"{e.outcome.value} at {e.where}" for e in ends if e is not chosen)
        extra = f" (other copies: {others})"
    resting = _resting_on(w, chosen.copy)
    node = [t for t, copy in w.resting_node if _on_path(copy, chosen.copy)]
    short = [r.split(" (", 1)[0] for r in resting] + [r.split(":", 1)[0] for r in node]
    resting += node
    if short:
        extra += "; resting on: " + ", ".join(short)
    return Trace(
        steps=tuple(w.steps),
        outcome=chosen.outcome,
        verdict_step=chosen.step,
        reason=chosen.reason + extra,
        assumptions=tuple(w.assumptions),
        packet=w.request.packet,
        flow=w.request.flow,
        resting_on=tuple(resting),
    )


def _on_path(copy: tuple[int, ...], end: tuple[int, ...]) -> bool:
    """Whether a decision taken on ``copy`` lies on the path of the end reached by ``end``."""
    return end[: len(copy)] == copy


def _resting_on(w: _Walk, end: tuple[int, ...]) -> list[str]:
    """The assumed or unset field values the decisions on the path to the end ``end`` depended
    on, with where."""
    flow = {f.field: f for f in w.request.flow}
    out: list[str] = []
    seen: set[str] = set()
    for f in w.request.flow:
        if f.origin is Origin.ASSUMED and f.value == "(none)":
            seen.add(f.field)
            out.append(f"no {f.field} ({f.source})")
    for names, where, copy in w.looked:
        if not _on_path(copy, end):
            continue
        name = next((n for n in names if n in flow), names[0])
        if name in seen:
            continue
        origin = flow.get(name)
        if origin is None:
            seen.add(name)
            out.append(f"{name}=0 (not given, taken as 0: {where} looked at it)")
        elif origin.origin is Origin.ASSUMED:
            seen.add(name)
            out.append(f"{name}={origin.value} (assumed: {where} looked at it)")
    return out


def _target_text(target: Target) -> str:
    if isinstance(target, ToHost):
        return "the host"
    return target.label or target.name
