"""From a scenario to what Neutron puts on each node: devices, OVS ports and flows, iptables, ipsets.

:func:`generate_node` is the one entry point the lab and the benchmarks use. It allocates what
the agents allocate (local VLANs in network order, conntrack zones from 4097 in port-UUID order,
OpenFlow port numbers in plugging order) and returns a :class:`NodeState` that renders every
piece as the text the real tools take or print.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from nodetrace.neutron import dvr_router, l3_agent
from nodetrace.neutron import naming as n
from nodetrace.neutron import ovs_agent as agent
from nodetrace.neutron.firewall import NodeFirewall, PortFilter, node_firewall
from nodetrace.neutron.ovs_agent import (
    BR_INT,
    BR_PHYS,
    BR_TUN,
    Flow,
    LocalNetwork,
    OvsPort,
    TunnelPort,
    VmPlug,
)
from nodetrace.neutron.ovs_agent_dvr import (
    DvrInterface,
    DvrNode,
    PhysicalBridge,
    dvr_flows,
    dvr_macs,
)
from nodetrace.neutron.ovs_firewall import NO_IPTABLES, native_firewall_flows, uses_native_firewall
from nodetrace.neutron.scenario import Network, NetworkType, Node, Port, Scenario
from nodetrace.neutron.scenario_routers import router_networks

BRIDGES = (BR_INT, BR_TUN, BR_PHYS)


@dataclass(frozen=True, slots=True)
class VmPort:
    """One VM port on its node, with every name and number the agents gave it."""

    port: Port
    network: Network
    devices: n.PortDevices
    local_vlan: int
    zone: int | None
    """The conntrack zone; ``None`` when port security is off (no zone rules)."""
    ofport: int

    @property
    def mtu(self) -> int:
        return self.network.mtu


@dataclass(frozen=True, slots=True)
class NodeState:
    """Everything Neutron's agents and os-vif set up on one node."""

    scenario: Scenario
    node: Node
    cookie: int
    vm_ports: tuple[VmPort, ...]
    networks: tuple[LocalNetwork, ...]
    ovs_ports: tuple[OvsPort, ...]
    tunnels: tuple[TunnelPort, ...]
    flows: tuple[Flow, ...]
    firewall: NodeFirewall
    routers: tuple[l3_agent.RouterState, ...] = ()
    """The L3 agent's routers on this node: legacy ones, then distributed ones."""
    fip_namespaces: tuple[dvr_router.FipNamespace, ...] = ()
    """The L3 agent's ``fip-`` namespaces (distributed routers with floating IPs)."""
    snat_routers: tuple[l3_agent.RouterState, ...] = ()
    """The ``snat-`` namespaces of the distributed routers scheduled here (``dvr_snat``)."""
    dvr_mac: str | None = None
    """The node's DVR MAC when the OVS agent runs distributed (derived: see
    :func:`~nodetrace.neutron.ovs_agent_dvr.dvr_macs`)."""

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def bridges(self) -> tuple[str, ...]:
        """The OVS bridges of the node: br-ex too when a router has its gateway here."""
        extra = (l3_agent.BR_EX,) if any(p.bridge == l3_agent.BR_EX for p in self.ovs_ports) else ()
        return BRIDGES + extra

    def dvr_namespaces_text(self) -> str:
        """The snat and fip namespaces as ``lab generate --what routers`` prints them, after
        the routers."""
        return "".join(l3_agent.describe(r) for r in self.snat_routers) + "".join(
            dvr_router.describe_fip(f) for f in self.fip_namespaces
        )

    def vm_port(self, name_or_id: str) -> VmPort:
        for vp in self.vm_ports:
            if name_or_id in (vp.port.name, vp.port.id):
                return vp
        raise KeyError(name_or_id)

    def bridge_ports(self, bridge: str) -> tuple[OvsPort, ...]:
        return tuple(p for p in self.ovs_ports if p.bridge == bridge)

    def bridge_flows(self, bridge: str) -> tuple[Flow, ...]:
        return tuple(f for f in self.flows if f.bridge == bridge)

    def port_names(self, bridge: str) -> dict[int, str]:
        return {p.ofport: p.name for p in self.bridge_ports(bridge)}

    def add_flows_text(self, bridge: str) -> str:
        """Input for ``ovs-ofctl -O OpenFlow13 add-flows BRIDGE -``."""
        return "".join(f.add_text() + "\n" for f in self.bridge_flows(bridge))

    def dump_flows_text(self, bridge: str, *, openflow13: bool = False, names: bool = False) -> str:
        """What ``ovs-ofctl dump-flows BRIDGE`` prints right after the agent started (no
        learned flows, zero counters); ``openflow13`` for ``-O OpenFlow13``, ``names`` for
        ``--names``."""
        header = (
            "OFPST_FLOW reply (OF1.3) (xid=0x2):" if openflow13 else "NXST_FLOW reply (xid=0x4):"
        )
        port_names = self.port_names(bridge) if names else None
        lines = [header] + [
            f.dump_text(openflow13=openflow13, names=port_names) for f in self.bridge_flows(bridge)
        ]
        return "".join(line + "\n" for line in lines)


def node_cookie(scenario: Scenario, node: str) -> int:
    """The agent's flow cookie is random per start; a scenario's is derived from its names."""
    digest = hashlib.sha256(f"{scenario.name}/{node}".encode()).digest()
    return int.from_bytes(digest[:8], "big") | (1 << 63)


def generate_node(
    scenario: Scenario,
    node_name: str,
    *,
    wrap: str = n.OPENVSWITCH_WRAP,
    cookie: int | None = None,
    zones: Mapping[str, int] | None = None,
) -> NodeState:
    """What Neutron puts on ``node_name``: raise ``KeyError`` for an unknown node.

    ``zones`` pins conntrack zones by port id (as a restarted agent reads them back); the rest
    are allocated from 4097 in port-UUID order, as a fresh agent does.
    """
    node = scenario.node(node_name)
    cookie = node_cookie(scenario, node_name) if cookie is None else cookie
    ports = scenario.ports_on(node_name)
    has_vlan = any(n_.type.is_provider and not n_.external for n_ in scenario.networks)
    on_routers = router_networks(scenario.routers, node_name, scenario.nodes, scenario.ports)
    tunnel_types = scenario.tunnel_types

    local: list[LocalNetwork] = []
    lvid: dict[str, int] = {}
    for net in scenario.networks:
        if any(p.network == net.id for p in ports) or net.id in on_routers:
            lvid[net.id] = len(lvid) + 1
            if not net.external:  # on br-ex, with the router's flows (l3_agent)
                local.append(LocalNetwork(net.id, net.type, net.segmentation_id, lvid[net.id]))

    ovs_ports: list[OvsPort] = []

    def add_port(
        bridge: str,
        name: str,
        *,
        type: str = "",
        tag: int | None = None,
        options: tuple[tuple[str, str], ...] = (),
        external_ids: tuple[tuple[str, str], ...] = (),
    ) -> OvsPort:
        # Ports are numbered in the order they are plugged; the lab requests these numbers.
        ofport = 1 + sum(1 for p in ovs_ports if p.bridge == bridge)
        port = OvsPort(bridge, name, ofport, type, tag, options, external_ids)
        ovs_ports.append(port)
        return port

    patch_int: OvsPort | None = None
    if tunnel_types:
        add_port(BR_INT, agent.PATCH_TUN, type="patch", options=(("peer", agent.PATCH_INT),))
        patch_int = add_port(
            BR_TUN, agent.PATCH_INT, type="patch", options=(("peer", agent.PATCH_TUN),)
        )
    add_port(BR_PHYS, agent.UNDERLAY_NIC)
    int_phys = phy = None
    if has_vlan:
        int_phys = add_port(
            BR_INT, agent.INT_PHYS, type="patch", options=(("peer", agent.PHY_PHYS),)
        )
        phy = add_port(BR_PHYS, agent.PHY_PHYS, type="patch", options=(("peer", agent.INT_PHYS),))
    tunnels: list[TunnelPort] = []
    for ttype in tunnel_types:
        for peer in scenario.nodes:
            if peer.name == node_name:
                continue
            name = n.tunnel_port_name(ttype.value, peer.underlay_ip)
            p = add_port(
                BR_TUN,
                name,
                type=ttype.value,
                options=agent.tunnel_options(str(node.underlay_ip), str(peer.underlay_ip)),
            )
            tunnels.append(TunnelPort(ttype, str(peer.underlay_ip), name, p.ofport))

    zone_of: dict[str, int] = dict(zones or {})
    next_zone = max([n.ZONE_START - 1, *zone_of.values()]) + 1
    for port in sorted(ports, key=lambda p: p.id):
        if port.port_security and port.id not in zone_of:
            zone_of[port.id] = next_zone
            next_zone += 1

    native = uses_native_firewall(scenario)
    vm_ports: list[VmPort] = []
    for port in ports:
        dev = n.PortDevices.for_port(port.id)
        qvo = add_port(
            BR_INT,
            dev.tap if native else dev.qvo,  # the native firewall needs no qbr: tap in br-int
            tag=lvid[port.network],
            external_ids=agent.vm_external_ids(port),
        )
        vm_ports.append(
            VmPort(
                port,
                scenario.network(port.network),
                dev,
                lvid[port.network],
                # The native firewall's zone is the network's local VLAN (reg6).
                (lvid[port.network] if native else zone_of.get(port.id))
                if port.port_security
                else None,
                qvo.ofport,
            )
        )

    flows = agent.FlowList(cookie)
    plugs = [VmPlug(vp.port, vp.ofport, vp.local_vlan) for vp in vm_ports]
    # The native firewall does its own anti-spoofing (table 71): no per-port tables 24/25.
    int_phys_ofport = int_phys.ofport if int_phys else None
    agent.br_int_flows(flows, [] if native else plugs, local, int_phys_ofport=int_phys_ofport)
    if native:
        native_firewall_flows(flows, scenario, plugs)
    if patch_int is not None:
        agent.br_tun_flows(flows, local, tunnels, patch_int_ofport=patch_int.ofport)
    agent.br_phys_flows(flows, local, phy_ofport=phy.ofport if phy else None)
    routers = l3_agent.node_routers(scenario, node_name, lvid, add_port, flows)
    dvr_mac = None
    fip_namespaces: tuple[dvr_router.FipNamespace, ...] = ()
    snat_routers: tuple[l3_agent.RouterState, ...] = ()
    if dvr_router.distributed(scenario):
        dvr, fip_namespaces, snat_routers = dvr_router.node_dvr_routers(
            scenario, node_name, lvid, add_port, flows
        )
        # The sg- ports get the same DVR_TO_SRC_MAC flows as VM ports
        # (_bind_centralized_snat_port_on_dvr_subnet).
        local_ports = [(vp.network.id, vp.port.mac, vp.ofport) for vp in vm_ports]
        local_ports += [
            (p.network.id, p.interface.mac, p.ofport) for r in snat_routers for p in r.internal
        ]
        routers += dvr
        macs = dvr_macs(scenario.name, [n_.name for n_ in scenario.nodes])
        dvr_mac = macs[node_name]
        patch_tun = next((p for p in ovs_ports if p.name == agent.PATCH_TUN), None)
        dvr_flows(
            flows,
            DvrNode(
                dvr_mac,
                tuple(m for host, m in macs.items() if host != node_name),
                patch_int.ofport if patch_int is not None else None,
                patch_tun.ofport if patch_tun is not None else None,
                tuple(
                    DvrInterface(
                        port.local_vlan,
                        port.interface.mac,
                        port.interface.ip,
                        port.ofport,
                        tuple(
                            (mac, ofport)
                            for net_id, mac, ofport in local_ports
                            if net_id == port.network.id
                        ),
                        port.network.segmentation_id
                        if port.network.type is NetworkType.VLAN
                        else None,
                        BR_PHYS,
                    )
                    for r in dvr
                    for port in r.internal
                ),
                _physical_bridges(ovs_ports),
            ),
        )

    firewall = (
        NO_IPTABLES
        if native
        else node_firewall(scenario, [PortFilter(vp.port, vp.zone) for vp in vm_ports], wrap=wrap)
    )
    return NodeState(
        scenario,
        node,
        cookie,
        tuple(vm_ports),
        tuple(local),
        tuple(ovs_ports),
        tuple(tunnels),
        tuple(flows.items),
        firewall,
        routers=routers,
        fip_namespaces=fip_namespaces,
        snat_routers=snat_routers,
        dvr_mac=dvr_mac,
    )


def _physical_bridges(ports: list[OvsPort]) -> tuple[PhysicalBridge, ...]:
    """The mapped bridges with their patch pair to br-int (br-phys for VLAN networks, br-ex)."""
    out = []
    for bridge in (BR_PHYS, l3_agent.BR_EX):
        int_name, phy_name = n.provider_patch_names(bridge)
        int_port = next((p for p in ports if p.bridge == BR_INT and p.name == int_name), None)
        phy_port = next((p for p in ports if p.bridge == bridge and p.name == phy_name), None)
        if int_port is not None and phy_port is not None:
            out.append(PhysicalBridge(bridge, int_port.ofport, phy_port.ofport))
    return tuple(out)


def generate(scenario: Scenario, *, wrap: str = n.OPENVSWITCH_WRAP) -> dict[str, NodeState]:
    """Every node of the scenario, by name."""
    return {node.name: generate_node(scenario, node.name, wrap=wrap) for node in scenario.nodes}
