"""The OpenFlow flows and OVS ports Neutron's OVS agent (native driver) sets up on a node.

br-int: the dead-VLAN drop, ARP/MAC anti-spoofing tables 0/24/25 per hybrid port, provider VLAN
translation, and the ``0 → 58 → 59 → 60 NORMAL`` chain. br-tun: classification by in_port,
tunnel id ↔ local VLAN (tables 3/4/6 and 22), MAC learning into table 20 (table 10 ``learn``),
flooding to every tunnel of the network's type. The physical bridge: NORMAL plus the local VLAN
→ segmentation id rewrite (a provider VLAN) or the local VLAN stripped (a flat network, whose
untagged frames get the local VLAN pushed on their way into br-int). Flows are kept in the
OpenFlow 1.3 form the agent installs (``goto_table``, ``push_vlan``/``set_field``) and can be
rendered as ``ovs-ofctl dump-flows`` prints them in either dialect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network
from typing import assert_never

from nodetrace.model.openflow_spelling import of10_actions
from nodetrace.neutron import naming as n
from nodetrace.neutron.firewall import link_local
from nodetrace.neutron.scenario import IPNetwork, NetworkType, Port

BR_INT = "br-int"
BR_TUN = "br-tun"
BR_PHYS = "br-phys"
"""The lab's physical bridge: provider networks (physnet1) and the tunnel endpoint address."""
PATCH_TUN = "patch-tun"
PATCH_INT = "patch-int"
UNDERLAY_NIC = "und0"
INT_PHYS, PHY_PHYS = n.provider_patch_names(BR_PHYS)

# Table numbers (neutron-lib ovs_constants).
LOCAL_SWITCHING = 0
CANARY_TABLE = 23
ARP_SPOOF_TABLE = 24
MAC_SPOOF_TABLE = 25
LOCAL_EGRESS_TABLE = 30
LOCAL_IP_TABLE = 31
PACKET_RATE_LIMIT = 58
BANDWIDTH_RATE_LIMIT = 59
TRANSIENT_TABLE = 60
TRANSIENT_EGRESS_TABLE = 62
PATCH_LV_TO_TUN = 2
GRE_TUN_TO_LV = 3
VXLAN_TUN_TO_LV = 4
GENEVE_TUN_TO_LV = 6
LEARN_FROM_TUN = 10
UCAST_TO_TUN = 20
FLOOD_TO_TUN = 22
TUN_TABLE = {NetworkType.GRE: GRE_TUN_TO_LV, NetworkType.VXLAN: VXLAN_TUN_TO_LV}

OFPVID_PRESENT = 0x1000


@dataclass(frozen=True, slots=True)
class OvsPort:
    """One OVS port (with its single interface) as ``ovs-vsctl`` would create it."""

    bridge: str
    name: str
    ofport: int
    type: str = ""
    """``""`` (a kernel device: veth), ``patch``, ``vxlan``, ``gre``."""
    tag: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    external_ids: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow, in the OpenFlow 1.3 form the agent installs.

    ``match`` holds the match fields in the order ``ovs-ofctl`` prints them (protocol keyword,
    tunnel id, in_port, VLAN, Ethernet, ARP/IP, ICMP, ND target).
    """

    bridge: str
    table: int
    priority: int
    match: tuple[str, ...]
    actions: str
    cookie: int

    def add_text(self) -> str:
        """A line for ``ovs-ofctl -O OpenFlow13 add-flows``."""
        match = "".join(f",{m}" for m in self.match)
        return f"cookie={self.cookie:#x},table={self.table},priority={self.priority}{match},actions={self.actions}"

    def dump_text(self, *, openflow13: bool = False, names: Mapping[int, str] | None = None) -> str:
        """The line ``ovs-ofctl dump-flows`` prints for this flow, with zero counters.

        ``names`` maps port numbers to names, as ``--names`` shows them.
        """
        match = ",".join((f"priority={self.priority}", *self.match))
        actions = self.actions if openflow13 else of10_actions(self.actions)
        if names:
            match = _IN_PORT.sub(lambda m: f"in_port={_port_name(int(m.group(1)), names)}", match)
            actions = _OUTPUT.sub(
                lambda m: f"{m.group(1)}output:{_port_name(int(m.group(2)), names)}", actions
            )
        age = "" if openflow13 else "idle_age=0, "
        return (
            f" cookie={self.cookie:#x}, duration=0.0s, table={self.table}, n_packets=0, "
            f"n_bytes=0, {age}{match} actions={actions}"
        )


_IN_PORT = re.compile(r"\bin_port=(\d+)")
_OUTPUT = re.compile(r"(^|,)output:(\d+)")
_SIMPLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _port_name(ofport: int, names: Mapping[int, str]) -> str:
    name = names.get(ofport)
    if name is None:
        return str(ofport)
    # ovs-ofctl quotes names that are not plain identifiers (``"patch-tun"``, but ``qvoa``).
    return name if _SIMPLE_NAME.match(name) else f'"{name}"'


@dataclass(frozen=True, slots=True)
class VmPlug:
    """A VM port as the agent binds it: its ``qvo`` ofport and its network's local VLAN."""

    port: Port
    ofport: int
    local_vlan: int


@dataclass(frozen=True, slots=True)
class LocalNetwork:
    """A network present on the node with the local VLAN the agent gave it."""

    network_id: str
    type: NetworkType
    segmentation_id: int
    local_vlan: int


@dataclass(frozen=True, slots=True)
class TunnelPort:
    type: NetworkType
    remote_ip: str
    name: str
    ofport: int


class FlowList:
    """Flows being generated for a node, all with the agent's cookie."""

    def __init__(self, cookie: int) -> None:
        self.cookie = cookie
        self.items: list[Flow] = []

    def add(
        self, bridge: str, table: int, priority: int, match: Sequence[str], actions: str
    ) -> None:
        self.items.append(Flow(bridge, table, priority, tuple(match), actions, self.cookie))

    def goto(self, bridge: str, table: int, priority: int, match: Sequence[str], dest: int) -> None:
        self.add(bridge, table, priority, match, f"goto_table:{dest}")


def _masked(net: IPNetwork) -> str:
    """An address match as OVS prints it: plain for a host, ``addr/prefix`` otherwise."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    if isinstance(net, IPv4Network):
        return str(net)
    return f"{net.network_address}/{net.netmask}"


def br_int_flows(
    flows: FlowList,
    plugs: Sequence[VmPlug],
    networks: Sequence[LocalNetwork],
    *,
    int_phys_ofport: int | None,
) -> None:
    """br-int: ``setup_default_table``, provider VLAN translation, per-port anti-spoofing."""
    f = flows
    f.add(BR_INT, LOCAL_SWITCHING, 65535, ["vlan_tci=0x0fff/0x1fff"], "drop")
    if int_phys_ofport is not None:
        f.add(BR_INT, LOCAL_SWITCHING, 2, [f"in_port={int_phys_ofport}"], "drop")
        for net in networks:
            if net.type.is_provider:
                into_local_vlan(f, net, int_ofport=int_phys_ofport)
    for plug in plugs:
        _anti_spoofing(f, plug)
    f.goto(BR_INT, LOCAL_SWITCHING, 0, [], PACKET_RATE_LIMIT)
    f.add(BR_INT, CANARY_TABLE, 0, [], "drop")
    f.add(BR_INT, ARP_SPOOF_TABLE, 0, [], "drop")
    f.goto(BR_INT, LOCAL_EGRESS_TABLE, 0, [], PACKET_RATE_LIMIT)
    f.goto(BR_INT, LOCAL_IP_TABLE, 0, [], PACKET_RATE_LIMIT)
    f.goto(BR_INT, PACKET_RATE_LIMIT, 0, [], BANDWIDTH_RATE_LIMIT)
    f.goto(BR_INT, BANDWIDTH_RATE_LIMIT, 0, [], TRANSIENT_TABLE)
    f.add(BR_INT, TRANSIENT_TABLE, 1, [], "NORMAL")
    f.add(BR_INT, TRANSIENT_EGRESS_TABLE, 3, [], "NORMAL")


def _anti_spoofing(f: FlowList, plug: VmPlug) -> None:
    """``setup_arp_spoofing_protection``: only for ports with port security enabled.

    An allowed address pair covering everything (``/0``) turns the protection off, as in the
    agent.
    """
    port = plug.port
    if not port.port_security:
        return
    addresses: list[IPNetwork] = [ip_network(ip) for ip in port.fixed_ips]
    addresses += [p.ip for p in port.allowed_address_pairs]
    if any(a.prefixlen == 0 for a in addresses):
        return
    macs = sorted({port.mac} | {p.mac for p in port.allowed_address_pairs})
    v6: set[IPNetwork] = {a for a in addresses if a.version == 6}
    v6 |= {ip_network(link_local(mac)) for mac in macs}
    v4 = sorted(
        (a for a in addresses if a.version == 4),
        key=lambda a: (int(a.network_address), a.prefixlen),
    )
    in_port = f"in_port={plug.ofport}"
    for addr in sorted(v6, key=lambda a: (int(a.network_address), a.prefixlen)):
        f.goto(
            BR_INT,
            ARP_SPOOF_TABLE,
            2,
            ["icmp6", in_port, "icmp_type=136", f"nd_target={_masked(addr)}"],
            PACKET_RATE_LIMIT,
        )
    f.goto(BR_INT, LOCAL_SWITCHING, 10, ["icmp6", in_port, "icmp_type=136"], ARP_SPOOF_TABLE)
    for mac in macs:
        f.goto(BR_INT, MAC_SPOOF_TABLE, 2, [in_port, f"dl_src={mac}"], LOCAL_EGRESS_TABLE)
    f.goto(BR_INT, LOCAL_SWITCHING, 9, [in_port], MAC_SPOOF_TABLE)
    for addr in v4:
        f.goto(
            BR_INT,
            ARP_SPOOF_TABLE,
            2,
            ["arp", in_port, f"arp_spa={_masked(addr)}"],
            MAC_SPOOF_TABLE,
        )
    f.goto(BR_INT, LOCAL_SWITCHING, 10, ["arp", in_port], ARP_SPOOF_TABLE)


def br_tun_flows(
    flows: FlowList,
    networks: Sequence[LocalNetwork],
    tunnels: Sequence[TunnelPort],
    *,
    patch_int_ofport: int,
) -> None:
    """br-tun: ``setup_default_table``, ``setup_tunnel_port`` and ``provision_local_vlan``."""
    f = flows
    f.goto(BR_TUN, 0, 1, [f"in_port={patch_int_ofport}"], PATCH_LV_TO_TUN)
    for tun in tunnels:
        f.goto(BR_TUN, 0, 1, [f"in_port={tun.ofport}"], TUN_TABLE[tun.type])
    f.add(BR_TUN, 0, 0, [], "drop")
    f.goto(BR_TUN, PATCH_LV_TO_TUN, 0, ["dl_dst=00:00:00:00:00:00/01:00:00:00:00:00"], UCAST_TO_TUN)
    f.goto(BR_TUN, PATCH_LV_TO_TUN, 0, ["dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"], FLOOD_TO_TUN)
    for table in (GRE_TUN_TO_LV, VXLAN_TUN_TO_LV, GENEVE_TUN_TO_LV):
        f.add(BR_TUN, table, 0, [], "drop")
    learn = (
        f"learn(table={UCAST_TO_TUN},hard_timeout=300,priority=1,cookie={f.cookie:#x},"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[])"
    )
    f.add(BR_TUN, LEARN_FROM_TUN, 1, [], f"{learn},output:{patch_int_ofport}")
    f.goto(BR_TUN, UCAST_TO_TUN, 0, [], FLOOD_TO_TUN)
    f.add(BR_TUN, FLOOD_TO_TUN, 0, [], "drop")
    for net in networks:
        if not net.type.is_tunnel:
            continue
        f.add(
            BR_TUN,
            TUN_TABLE[net.type],
            1,
            [f"tun_id={net.segmentation_id:#x}"],
            f"push_vlan:0x8100,set_field:{net.local_vlan | OFPVID_PRESENT}->vlan_vid,goto_table:{LEARN_FROM_TUN}",
        )
        outputs = [t.ofport for t in tunnels if t.type is net.type]
        if outputs:
            f.add(
                BR_TUN,
                FLOOD_TO_TUN,
                1,
                [f"dl_vlan={net.local_vlan}"],
                f"pop_vlan,set_field:{net.segmentation_id:#x}->tun_id,"
                + ",".join(f"output:{o}" for o in outputs),
            )


def br_phys_flows(
    flows: FlowList, networks: Sequence[LocalNetwork], *, phy_ofport: int | None
) -> None:
    """The physical bridge: NORMAL, and the local VLAN → provider VLAN rewrite from br-int."""
    f = flows
    f.add(BR_PHYS, 0, 0, [], "NORMAL")
    if phy_ofport is None:
        return
    f.add(BR_PHYS, 0, 2, [f"in_port={phy_ofport}"], "drop")
    for net in networks:
        if net.type.is_provider:
            out_of_local_vlan(f, BR_PHYS, net, phy_ofport=phy_ofport)


# A network on a physical bridge (``OVSNeutronAgent.provision_local_vlan``:
# ``_local_vlan_for_vlan`` and ``_local_vlan_for_flat``) gets one flow on each side of the
# int-br-X/phy-br-X patch: br_int.py's and br_phys.py's ``provision_local_vlan`` of the native
# OpenFlow driver, with ``segmentation_id=None`` for a flat network.

VLAN_NONE = "vlan_tci=0x0000/0x1fff"
"""``vlan_vid=OFPVID_NONE``, as ``ovs-ofctl`` prints it: an untagged frame."""


def into_local_vlan(flows: FlowList, net: LocalNetwork, *, int_ofport: int) -> None:
    """br-int table 0, priority 3, on what comes from the physical bridge: a VLAN network's
    tag becomes the local VLAN; a flat network's untagged frame gets the local VLAN pushed."""
    local = f"set_field:{net.local_vlan | OFPVID_PRESENT}->vlan_vid,goto_table:{PACKET_RATE_LIMIT}"
    in_port = f"in_port={int_ofport}"
    match net.type:
        case NetworkType.VLAN:
            flows.add(
                BR_INT, LOCAL_SWITCHING, 3, [in_port, f"dl_vlan={net.segmentation_id}"], local
            )
        case NetworkType.FLAT:
            flows.add(BR_INT, LOCAL_SWITCHING, 3, [in_port, VLAN_NONE], f"push_vlan:0x8100,{local}")
        case NetworkType.VXLAN | NetworkType.GRE:
            raise ValueError(f"a {net.type} network is not on a physical bridge")
        case _ as unreachable:
            assert_never(unreachable)


def out_of_local_vlan(flows: FlowList, bridge: str, net: LocalNetwork, *, phy_ofport: int) -> None:
    """The physical bridge's table 0, priority 4, on what comes from br-int: the local VLAN
    becomes the provider VLAN, or is stripped for a flat network; then NORMAL."""
    match net.type:
        case NetworkType.VLAN:
            actions = f"set_field:{net.segmentation_id | OFPVID_PRESENT}->vlan_vid,NORMAL"
        case NetworkType.FLAT:
            actions = "pop_vlan,NORMAL"
        case NetworkType.VXLAN | NetworkType.GRE:
            raise ValueError(f"a {net.type} network is not on a physical bridge")
        case _ as unreachable:
            assert_never(unreachable)
    flows.add(bridge, 0, 4, [f"in_port={phy_ofport}", f"dl_vlan={net.local_vlan}"], actions)


def uplink_tag(net_type: NetworkType, segmentation_id: int) -> int | None:
    """The tag of a provider bridge's uplink in the lab: an access port of a VLAN network's id
    (the lab's kernel has no VLAN devices to untag it); none for a flat network, whose frames
    are untagged on the wire anyway."""
    return None if net_type is NetworkType.FLAT else segmentation_id


def tunnel_options(local_ip: str, remote_ip: str) -> tuple[tuple[str, str], ...]:
    """The interface options ``add_tunnel_port`` sets (default UDP port, DF set)."""
    return (
        ("df_default", "true"),
        ("egress_pkt_mark", "0"),
        ("in_key", "flow"),
        ("local_ip", local_ip),
        ("out_key", "flow"),
        ("remote_ip", remote_ip),
    )


def vm_external_ids(port: Port) -> tuple[tuple[str, str], ...]:
    """What os-vif writes on the qvo interface; the agent finds the port by ``iface-id``."""
    return (
        ("attached-mac", port.mac),
        ("iface-id", port.id),
        ("iface-status", "active"),
        ("vm-uuid", port.device_id),
    )
