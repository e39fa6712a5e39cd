"""Where a packet goes when an action outputs it: to a port, through a patch port into the peer
bridge, into a tunnel, to NORMAL's choice, to every port (FLOOD/ALL) or to the controller.

These are the translator's output methods (:class:`Outputs`, mixed into
:class:`~nodetrace.engine.openflow_xlate.Xlate`), following ``compose_output_action__``,
``patch_port_output``, ``xlate_normal`` and ``flood_packets`` of ovs-vswitchd.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from nodetrace.engine.openflow_compile import (
    CompiledBridge,
    encapsulation,
    is_placeholder,
    number_for_name,
    ref_number,
    unmapped_ports,
)
from nodetrace.engine.openflow_state import (
    CT_KEYS,
    TCI1,
    TPID0,
    TPID1,
    TUNNEL_KEYS,
    VLAN_CFI,
    State,
    format_flow,
    mac_int,
    packet_from_state,
)
from nodetrace.engine.ovs_normal import normal, xvlan_output, xvlan_put
from nodetrace.engine.ovs_tunnel_route import neighbour_lookup, route_lookup
from nodetrace.model.openflow import (
    LOCAL_PORT,
    RESERVED_PORT_NUMBERS,
    PortRef,
    ReservedPort,
)
from nodetrace.model.openflow_trace import (
    Bridge,
    Egress,
    EgressKind,
    Encapsulated,
    Leaves,
    Message,
    NativeTunnel,
    NodeKind,
    ToController,
    TraceNode,
    TunnelEncap,
    TunnelHeaders,
    TunnelOutput,
    TunnelRoute,
)
from nodetrace.model.ovs_switch import SwitchPort
from nodetrace.model.ovsdb import pairs_get
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Packet
from nodetrace.model.trace import DeviceAction, DeviceStep, OpenFlowStep

if TYPE_CHECKING:
    from nodetrace.engine.openflow import OpenFlowEngine
    from nodetrace.engine.openflow_xlate import _Node

IN_PORT = RESERVED_PORT_NUMBERS[ReservedPort.IN_PORT]
_TABLE = RESERVED_PORT_NUMBERS[ReservedPort.TABLE]
_NORMAL = RESERVED_PORT_NUMBERS[ReservedPort.NORMAL]
_FLOOD = RESERVED_PORT_NUMBERS[ReservedPort.FLOOD]
_ALL = RESERVED_PORT_NUMBERS[ReservedPort.ALL]
_CONTROLLER = RESERVED_PORT_NUMBERS[ReservedPort.CONTROLLER]
_NONE = RESERVED_PORT_NUMBERS[ReservedPort.NONE]
_NO_OVS_ROUTES = (
    "OVS's own routes (ovs-appctl ovs/route/show) were not given, so a native tunnel's outer "
    "packet (userspace datapath) is not followed through the underlay bridge OVS sends it by"
)
_UDP_PORTS = {"vxlan": 4789, "geneve": 6081, "gtpu": 2152, "stt": 7471, "lisp": 4341}
"""OVS's default destination port of each UDP tunnel type."""


class Outputs(ABC):
    """Output actions; the translator provides the state and reporting they use."""

    engine: OpenFlowEngine
    state: State
    bridge: CompiledBridge
    packet: Packet
    trace: list[_Node]
    egress: list[Egress]
    drops: list[tuple[OpenFlowStep | DeviceStep | None, str]]
    pass_index: int
    touched: set[str]
    conntracked: bool
    stack: list[int]
    table_id: int
    exit: bool
    error: str
    orig_tun_dst: int
    carrying: NativeTunnel | None
    """While a native tunnel's outer packet crosses the underlay bridge: that tunnel."""
    underived: dict[int, str]
    """Per pass, why its ``Datapath actions`` cannot be derived (the first reason met)."""
    flooded: set[int]
    """Passes that flooded: their copies leave in OVS's port hash order, not derived."""
    routes_missing_said: bool
    leaving_cache: dict[tuple[tuple[str, int], ...], tuple[Packet, str]]

    @abstractmethod
    def report(self, node: TraceNode) -> _Node: ...

    @abstractmethod
    def say(self, level: NodeKind, text: str) -> None: ...

    @abstractmethod
    def note(self, text: str) -> None: ...

    @abstractmethod
    def stop(self, reason: str) -> None: ...

    @abstractmethod
    def _table_action(self, in_port: int, table_id: int, is_last: bool) -> None: ...

    # -- output ------------------------------------------------------------------------------

    def _port(self, ref: PortRef) -> int:
        return ref_number(self.bridge, ref)

    def _output(self, port: int, last: bool) -> None:
        in_port = self.state.get("in_port", 0)
        if port == IN_PORT:
            self._compose_output(in_port, last)
        elif port == _TABLE:
            self._table_action(in_port, 0, False)
        elif port == _NORMAL:
            self._normal()
        elif port in (_FLOOD, _ALL):
            self._flood(port == _ALL, last)
        elif port == _CONTROLLER:
            self._controller("action")
        elif port == _NONE:
            pass
        elif port != in_port:
            self._compose_output(port, last)
        else:
            self.say(NodeKind.WARN, "skipping output to input port")
            self.drops.append((None, f"{self.bridge.name}: output to the input port is skipped"))

    def _compose_output(self, port: int, last: bool) -> None:
        bridge = self.bridge
        sp = bridge.ports.get(port)
        if sp is None and port in bridge.names:
            # Named by a flow but in no port list: what kind of port it is stays unknown.
            name = bridge.names[port]
            self.note(
                f"{bridge.name}: port {name} is named by its flows but not listed by "
                f"ovs-vsctl show or ovs-ofctl show {bridge.name}; treated as a plain port"
            )
            sp = SwitchPort(name, None, name)
        if sp is None and bridge.unnumbered:
            self.stop(f"{bridge.name}: output to port {port}: {unmapped_ports(bridge, (port,))}")
        if sp is None:
            if bridge.ports_known:
                self.say(NodeKind.WARN, "Nonexistent output port")
                self.drops.append(
                    (None, f"{bridge.name}: output to port {port}, which does not exist")
                )
                return
            self.note(
                f"{bridge.name}: port {port} is not in the snapshot's port list; "
                "treated as a plain port"
            )
            sp = SwitchPort(f"port {port}", port, f"port {port}")
        if "NO_FWD" in sp.config:
            self.say(NodeKind.DETAIL, "OFPPC_NO_FWD set, skipping output")
            return
        iface = sp.interface
        if iface is not None and iface.is_patch:
            peer = self.engine.switch.peer_of(bridge.name, sp)
            if peer is None and iface.peer is not None:
                # The peer may exist on the node and be cut from the snapshot's listing.
                self.report(
                    Message(
                        NodeKind.WARN, f"patch port {sp.name} has no peer in the snapshot", True
                    )
                )
                self.stop(
                    f"{bridge.name}: the peer {iface.peer} of patch port {sp.name} is in no "
                    "bridge of the snapshot's OVSDB (ovs-vsctl show): where the packet goes "
                    "next is unknown"
                )
            if peer is None:
                self.report(Message(NodeKind.WARN, f"patch port {sp.name} has no peer", True))
                self.drops.append((None, f"{bridge.name}: patch port {sp.name} has no peer"))
                return
            self._patch_output(sp, self.engine.bridges[peer[0].name], peer[1], last)
            return
        if iface is not None and iface.is_tunnel:
            self._tunnel_output(sp)
            return
        self._egress(sp, port, EgressKind.PORT, None)

    def _egress(
        self,
        sp: SwitchPort,
        port: int,
        kind: EgressKind,
        encap: TunnelEncap | None,
        encap_text: str = "",
    ) -> None:
        packet, flow = self._leaving()
        tci1 = self.state.get(TCI1, 0)
        e = Egress(
            self.bridge.name,
            sp.name,
            sp.ofport if sp.ofport is not None else None,
            kind,
            packet,
            flow,
            encap,
            sp.type,
            self.pass_index,
            tci1 & 0xFFF if tci1 & VLAN_CFI else None,
            self.carrying if encap is None else None,
        )
        self.egress.append(e)
        if encap is not None:
            self.report(
                Encapsulated(sp.name, encap, DeviceStep(DeviceAction.ENCAP, sp.name, encap_text))
            )
        else:
            vlan = f"VLAN {packet.dl_vlan}" if packet.dl_vlan is not None else "untagged"
            step = DeviceStep(DeviceAction.OUTPUT, sp.name, f"{self.bridge.name}, {vlan}")
            self.report(Leaves(self.bridge.name, sp.name, packet.dl_vlan, step))

    def _leaving(self) -> tuple[Packet, str]:
        """The packet as it leaves, and its flow text; a flood sends one state many times."""
        # Keyed by bridge too: a stand-in in_port prints as the name it has in this bridge.
        key = ((self.bridge.name, -1), *self.state.items())
        found = self.leaving_cache.get(key)
        if found is None:
            found = (
                packet_from_state(self.state, self.packet),
                format_flow(self.state, self.bridge.placeholders),
            )
            self.leaving_cache[key] = found
        return found

    def _underive(self, reason: str) -> None:
        self.underived.setdefault(self.pass_index, reason)

    def _underive_flood(self, copies: int) -> None:
        if copies > 1:
            self.flooded.add(self.pass_index)

    def _controller(self, reason: str) -> None:
        self._underive("the packet goes to the controller (a userspace action)")
        self.egress.append(
            Egress(
                self.bridge.name,
                "CONTROLLER",
                None,
                EgressKind.CONTROLLER,
                *self._leaving(),
                pass_index=self.pass_index,
            )
        )
        self.report(
            ToController(
                reason,
                DeviceStep(DeviceAction.OUTPUT, "CONTROLLER", f"{self.bridge.name}: {reason}"),
            )
        )

    def _patch_output(
        self,
        sp: SwitchPort,
        peer: CompiledBridge,
        peer_port: SwitchPort,
        last: bool,
        step: DeviceStep | None = None,
    ) -> None:
        saved_state = dict(self.state)
        saved = (self.bridge, self.trace, self.conntracked, self.stack, self.table_id)
        s = self.state
        s["in_port"] = (
            peer_port.ofport
            if peer_port.ofport is not None
            else number_for_name(peer, peer_port.name)
        )
        s["metadata"] = 0
        for k in TUNNEL_KEYS:
            s.pop(k, None)
        for i in range(16):
            s.pop(f"reg{i}", None)
        s.pop("actset_output", None)
        for k in CT_KEYS:
            s.pop(k, None)
        node = self.report(
            Bridge(
                peer.name,
                step=step
                or DeviceStep(
                    DeviceAction.PATCH,
                    sp.name,
                    f"{self.bridge.name} -> {peer.name} via {peer_port.name}",
                ),
            )
        )
        self.trace = node.children
        self.bridge = peer
        self.touched.add(peer.name)
        self.conntracked = False
        self.stack = []
        try:
            self._table_action(s["in_port"], 0, last)
        finally:
            self.bridge, self.trace, self.conntracked, self.stack, self.table_id = saved
            self.state.clear()
            self.state.update(saved_state)
            self.exit = False
            self.error = ""

    def _tunnel_output(self, sp: SwitchPort) -> None:
        iface = sp.interface
        assert iface is not None
        s = self.state
        template = self.bridge.tunnels[sp.name]
        cache_key = (
            self.bridge.name,
            sp.name,
            s.get("tun_id", 0),
            s.get("tun_src", 0),
            s.get("tun_dst", 0),
            s.get("dl_type", 0),
            s.get("nw_tos", 0),
            s.get("nw_ttl", 0),
        )
        encaps = self.engine.encap_cache
        found = encaps.get(cache_key)
        if found is None:
            encap = encapsulation(template, s)
            found = encaps[cache_key] = (encap, encap.describe() if encap else "")
        encap, text = found
        if encap is None:
            self.say(NodeKind.WARN, "Tunneling decided against output")
            return
        if encap.dst is not None and self.orig_tun_dst and int(encap.dst) == self.orig_tun_dst:
            self.say(NodeKind.WARN, "Not tunneling to our own address")
            return
        native = (
            self.bridge.state.ovsdb is not None
            and self.bridge.state.ovsdb.datapath_type == "netdev"
        )
        self.report(TunnelOutput(native))
        if native and self.engine.routes is not None:
            self._native_tunnel_output(sp, encap, text)
            return
        if encap.src is None:
            self.note(
                f"{sp.name}: no local_ip; the outer source address comes from the host's routes"
            )
        if native and not self.routes_missing_said:
            self.routes_missing_said = True
            self.note(_NO_OVS_ROUTES)
        self._egress(sp, sp.ofport or 0, EgressKind.TUNNEL, encap, text)

    def _native_tunnel_output(self, sp: SwitchPort, encap: TunnelEncap, text: str) -> None:
        """Userspace datapath: OVS routes the outer packet itself (its own routing table, its
        tunnel neighbour cache) and sends it through the bridge that owns the route, entered by
        that bridge's LOCAL port (``native_tunnel_output``, ``tnl_route_lookup_flow``)."""
        routes = self.engine.routes
        assert routes is not None and encap.dst is not None
        mark = self.state.get("pkt_mark", 0)
        route = route_lookup(routes, encap.dst, mark)
        src_route = route_lookup(routes, encap.src, mark) if encap.src is not None else None
        underlay = self.engine.bridges.get(route.dev) if route is not None else None
        local = underlay.ports.get(LOCAL_PORT) if underlay is not None else None
        if encap.src is not None and (src_route is None or not src_route.local):
            why = f"local_ip {encap.src} is not a local address in ovs/route/show"
        elif route is None:
            why = f"no route to {encap.dst} in ovs/route/show"
        elif underlay is None or local is None or local.name != route.dev:
            why = f"the route to {encap.dst} leaves by {route.dev}, which is not an OVS bridge"
        else:
            why = ""
        if why:
            self.say(NodeKind.WARN, "native tunnel routing failed")
            self.drops.append((None, f"{sp.name}: native tunnel routing failed: {why}"))
            return
        assert route is not None and underlay is not None and local is not None
        nexthop = route.gateway or encap.dst
        src = encap.src or route.src
        if encap.src is None and src is not None:
            encap = replace(encap, src=src)  # the route's source, as OVS writes it
            text = encap.describe()
        self.report(TunnelRoute(nexthop, route.dev))
        smac = local.interface.mac_in_use if local.interface is not None else None
        if smac is None and underlay.state.ofctl is not None:
            shown = underlay.state.ofctl.by_name(local.name)
            smac = shown.mac if shown is not None else None
        neighbours = self.engine.neighbours
        if neighbours is None:
            self.note(
                "OVS's tunnel neighbour cache (ovs-appctl tnl/neigh/show) was not given: the "
                f"outer MAC for {nexthop} is unknown, so the packet is followed only to its "
                f"encapsulation (not through {underlay.name})"
            )
            self._egress(sp, sp.ofport or 0, EgressKind.TUNNEL, encap, text)
            return
        neighbour = neighbour_lookup(neighbours, underlay.name, nexthop)
        if neighbour is None:
            request = "ARP" if nexthop.version == 4 else "ND"
            self.say(
                NodeKind.DETAIL,
                f"neighbor cache miss for {nexthop} on bridge {underlay.name}, "
                f"sending {request} request",
            )
            self.stop(
                f"{underlay.name} has no tunnel neighbour entry for {nexthop} "
                f"(tnl/neigh/show): OVS sends an {request} request and drops this packet; later "
                "packets go out once the neighbour answers"
            )
        assert neighbour is not None
        if neighbour.stale:
            self.note(
                f"{underlay.name}: the tunnel neighbour entry for {nexthop} was stale when "
                f"captured (tnl/neigh/show); its MAC {neighbour.mac} is used"
            )
        if smac is None:
            self.note(
                f"{underlay.name}: the MAC of its LOCAL port is not in the snapshot "
                f"(ovs-ofctl show {underlay.name}); the outer source MAC is unknown, 0 shown"
            )
        self.report(Encapsulated(sp.name, encap, DeviceStep(DeviceAction.ENCAP, sp.name, text)))
        self.report(TunnelHeaders(smac, src, neighbour.mac, nexthop))
        self.touched.add(underlay.name)
        saved = dict(self.state)
        self._outer_headers(encap, src, smac, neighbour.mac)
        self.carrying = NativeTunnel(encap, sp.name, self.bridge.name, underlay.name, smac,
                                     neighbour.mac)  # fmt: skip
        try:
            self._patch_output(
                sp, underlay, local, False,
                DeviceStep(DeviceAction.ENTER, underlay.name, f"tunneling to {nexthop} via "
                           f"{route.dev}: outer packet {src} -> {encap.dst}"),
            )  # fmt: skip
        finally:
            self.carrying = None
            self.state.clear()
            self.state.update(saved)

    def _outer_headers(self, encap: TunnelEncap, src: object, smac: str | None, dmac: str) -> None:
        """The flow after ``tnl_push``: OVS's propagate_tunnel_data_to_flow()."""
        s = self.state
        s["dl_dst"] = mac_int(dmac)
        s["dl_src"] = mac_int(smac) if smac else 0
        for key in ("vlan_tci", TPID0, TCI1, TPID1):
            s.pop(key, None)
        assert encap.dst is not None
        if encap.dst.version == 4:
            s["dl_type"] = ETH_TYPE_IPV4
            s["nw_dst"] = int(encap.dst)
            s["nw_src"] = int(src) if isinstance(src, IPv4Address) else 0
        else:
            s["dl_type"] = ETH_TYPE_IPV6
            s["ipv6_dst"] = int(encap.dst)
            s["ipv6_src"] = int(src) if isinstance(src, IPv6Address) else 0
        s["nw_frag"] = 0
        s["nw_tos"] = encap.tos
        s["nw_ttl"] = encap.ttl
        s["tp_src"] = 0
        if encap.type == "gre" or encap.type == "ip6gre":
            s["nw_proto"] = 47
            s["tp_dst"] = 0
        else:
            s["nw_proto"] = 17
            s["tp_dst"] = encap.dst_port or _UDP_PORTS.get(encap.type, 0)

    def _flood(self, all_ports: bool, last: bool) -> None:
        # OVS walks its port hash table; the order only matters for the order of sub-traces.
        in_port = self.state.get("in_port", 0)
        self._underive_flood(len(self.bridge.ports) - 1)
        for number in sorted(self.bridge.ports):
            sp = self.bridge.ports[number]
            if number == in_port:
                continue
            if all_ports or "NO_FLOOD" not in sp.config:
                self._compose_output(number, last)

    def _normal(self) -> None:
        bridge = self.bridge
        db = bridge.state.ovsdb
        forward_bpdu = db is not None and pairs_get(db.other_config, "forward-bpdu") == "true"
        in_port = self.state.get("in_port", 0)
        if in_port not in bridge.bundles.by_port and (
            is_placeholder(in_port) or not bridge.ports_known
        ):
            # OVS drops a packet from a port that is no bundle; here the port exists (a flow
            # or the trace names it) but the snapshot does not list it with its settings.
            name = bridge.names.get(in_port, str(in_port))
            source = f"ovs-vsctl show / ovs-ofctl show {bridge.name}"
            self.stop(
                f"{bridge.name} NORMAL: input port {name} is not in the snapshot's port list "
                f"({source}): its bundle and VLAN settings are unknown"
            )
        snooping = db is not None and db.mcast_snooping_enable
        decision = normal(
            self.state,
            bridge.bundles,
            bridge.macs,
            forward_bpdu=forward_bpdu,
            mcast_snooping=snooping,
        )
        dropping = [m.text for m in decision.reports if "dropping" in m.text]
        for message in decision.reports:
            self.report(message)
        if dropping:  # the first line is the specific one (the second says "disallowed VLAN")
            self.drops.append((None, f"{bridge.name} NORMAL: {dropping[0]}"))
        if decision.unknown:
            self.stop(f"{bridge.name} NORMAL: {decision.unknown}")
        if decision.learned is not None and self.engine.apply_side_effects:
            mac, vlan, port = decision.learned
            bridge.macs[(mac, vlan)] = port
        if any("flooding" in m.text for m in decision.reports) and bridge.state.fdb is None:
            self.note(
                f"{bridge.name}: no MAC table in the snapshot, so NORMAL floods "
                "(give ovs-appctl fdb/show to know the learned port)"
            )
        if bridge.state.ovsdb is None:
            self.note(
                f"{bridge.name}: no OVSDB port configuration; NORMAL treated every port "
                "as a trunk of all VLANs"
            )
        elif bridge.vlan_modes_derived:
            self.note(
                f"{bridge.name}: vlan_mode is not in ovs-vsctl show; NORMAL derived it from "
                "tag/trunks as ovs-vswitchd does when the column is empty"
            )
        self._underive_flood(len(decision.outputs))
        for bundle, xvlan in decision.outputs:
            if not bundle.ports:
                continue
            if len(bundle.ports) > 1:
                self.stop(
                    f"{bridge.name} NORMAL: {bundle.name} is a bond; which member it uses "
                    "depends on a hash nodetrace does not model"
                )
            sp = bundle.ports[0]
            if sp.ofport is None:
                self.note(f"{bridge.name}: {sp.name} has no known OpenFlow number")
            s = self.state
            saved = (s.get("vlan_tci", 0), s.get(TPID0, 0), s.get(TCI1, 0), s.get(TPID1, 0))
            xvlan_put(s, xvlan_output(bundle, xvlan))
            self._compose_output(
                sp.ofport if sp.ofport is not None else number_for_name(bridge, sp.name), False
            )
            s["vlan_tci"], s[TPID0], s[TCI1], s[TPID1] = saved
