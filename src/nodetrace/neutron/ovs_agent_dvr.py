"""The OpenFlow flows Neutron's OVS agent adds when it runs distributed (``enable_distributed_routing``).

With DVR every compute node routes its own VMs' traffic in a local copy of the router, so the
router's ``qr-`` ports (same MAC, same address) exist on many nodes at once. The agent keeps
those MACs off the tunnels: a routed frame leaves the node with the node's own *DVR MAC* as its
source, and the receiving node puts the router's MAC back before delivering it.

Facts are from Neutron's own source (master, 2026); every family names where it comes from
(``ovs_dvr_neutron_agent.py`` is ``neutron/plugins/ml2/drivers/openvswitch/agent/``; the
``br_*.py`` files are its ``openflow/native/`` bridges; table numbers are neutron-lib's
``ovs_constants``):

- ``OVSDVRNeutronAgent.setup_dvr_flows_on_integ_br``: table 1 (DVR_TO_SRC_MAC) and 2
  (DVR_TO_SRC_MAC_PHYSICAL) drop at priority 1;
- ``_setup_dvr_flows_on_tun_br``: br-tun table 0 sends what comes from br-int to table 1
  (DVR_PROCESS, replacing the non-DVR flow to table 2: ``setup_default_table`` skips it), table 1
  falls through to 2, table 9 (DVR_NOT_LEARN) to the learning table 10;
- ``br_tun.provision_local_vlan(distributed=True)``: tunnel id → local VLAN goes to table 9;
- ``setup_dvr_mac_flows_on_all_brs``: for every *other* node's DVR MAC (``_add_dvr_mac_for_tun_br``)
  br-int table 0 priority 2 ``in_port=patch-tun,dl_src=MAC`` → table 1 (``br_int.add_dvr_mac_tun``)
  and br-tun table 9 priority 1 ``dl_src=MAC`` → patch-int without learning
  (``br_tun.add_dvr_mac_tun``); for the node's own (``_add_dvr_mac_for_arp``) br-int table 0
  priority 5 ``in_port=patch-tun,dl_dst=MAC`` → table 3 (``add_dvr_gateway_mac_arp_tun``);
- ``_bind_distributed_router_interface_port``, per ``qr-`` port on the node: for each VM port of
  the subnet on the node, br-int table 1 priority 20 ``dl_vlan,dl_dst=VM`` → source MAC set to
  the router's, on to the rate-limit table, and table 60 priority 20 → straight out of the VM's
  port (``br_int.install_dvr_to_src_mac``); table 3 priority 5 ``dl_vlan,dl_dst=own DVR MAC`` →
  the router's MAC as destination, out of ``qr-`` (``install_dvr_dst_mac_for_arp``); br-tun
  table 22 priority 3 drops ARP for the gateway address (``br_dvr_process.install_dvr_process_ipv4``),
  table 1 drops frames to the router's MAC (priority 2) and rewrites its source MAC to the node's
  DVR MAC (priority 1, ``install_dvr_process``); br-int table 0 priority 99 turns an ARP reply
  to the DVR MAC for the router's MAC back to the router (``change_arp_destination_mac``).

- ``setup_dvr_flows_on_phys_br`` for each mapped physical bridge (here br-ex, the external
  network's): table 0 sends what comes from br-int to table 1 (DVR_PROCESS_PHYSICAL, which
  falls through to 2, LOCAL_VLAN_TRANSLATION) and the rest to 3 (DVR_NOT_LEARN_PHYSICAL,
  NORMAL); the non-DVR drop of what comes from br-int moves to table 2, where
  ``br_phys.provision_local_vlan(distributed=True)`` also puts the local → provider VLAN
  rewrite; ``_add_dvr_mac_for_phys_br`` / ``_add_arp_dvr_mac_for_phys_br`` add the DVR MACs'
  flows on the ``int-``/``phy-`` patch pair (br-int tables 2 and 4, the bridge's table 3).

A router interface on a VLAN network gets the same families in br-int's tables 2/4 and the
physical bridge's table 1 (see :func:`_bind_router_interface`).

A flow with the same table, priority and match as one already there replaces it, as an
OpenFlow add does. Not generated: DVR routers' interfaces on flat networks, allowed address
pairs' table 1/60 flows, the native firewall's ``accepted_egress_direct`` flows,
IPv6 (router advertisements).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from nodetrace.neutron.ovs_agent import (
    BR_INT,
    BR_TUN,
    FLOOD_TO_TUN,
    LEARN_FROM_TUN,
    LOCAL_SWITCHING,
    PACKET_RATE_LIMIT,
    PATCH_LV_TO_TUN,
    TRANSIENT_TABLE,
    TUN_TABLE,
    Flow,
    FlowList,
)

DVR_TO_SRC_MAC = 1
DVR_TO_SRC_MAC_PHYSICAL = 2
ARP_DVR_MAC_TO_DST_MAC = 3
ARP_DVR_MAC_TO_DST_MAC_PHYSICAL = 4
DVR_PROCESS_PHYSICAL = 1
LOCAL_VLAN_TRANSLATION = 2
DVR_NOT_LEARN_PHYSICAL = 3
DVR_PROCESS = 1
"""br-tun's table 1 (br-int's table 1 is DVR_TO_SRC_MAC)."""
DVR_NOT_LEARN = 9

DVR_BASE_MAC = "fa:16:3f:00:00:00"
"""``[DEFAULT] dvr_base_mac``'s default: the server draws each host's DVR MAC under it."""


def dvr_macs(scenario_name: str, hosts: Sequence[str]) -> dict[str, str]:
    """A DVR MAC per host. Neutron's server (``neutron/db/dvr_mac_db.py``
    ``_create_dvr_mac_address_retry``) draws a *random* MAC under ``dvr_base_mac`` (its three
    free bytes) the first time a host's agent asks, retrying on a clash; a scenario derives a
    stable one from the scenario and host names instead, also without clashes."""
    prefix = DVR_BASE_MAC.split(":")[:3]
    taken: set[str] = set()
    out: dict[str, str] = {}
    for host in hosts:
        attempt = 0
        while True:
            digest = hashlib.sha256(f"dvr-mac/{scenario_name}/{host}/{attempt}".encode()).digest()
            mac = ":".join([*prefix, *(f"{b:02x}" for b in digest[:3])])
            if mac not in taken:
                break
            attempt += 1
        taken.add(mac)
        out[host] = mac
    return out


@dataclass(frozen=True, slots=True)
class DvrInterface:
    """A distributed router's ``qr-`` port bound on this node, and the VM ports of its subnet
    on the node (``get_ports_on_host_by_subnet``): (MAC, OpenFlow port)."""

    local_vlan: int
    gateway_mac: str
    gateway_ip: IPv4Address
    ofport: int
    vm_ports: tuple[tuple[str, int], ...]
    provider_vlan: int | None = None
    """A VLAN network's segmentation id (``None`` on a tunnel network)."""
    physical_bridge: str = ""
    """The bridge of a VLAN network's physical network."""


@dataclass(frozen=True, slots=True)
class PhysicalBridge:
    """A bridge of ``bridge_mappings`` with its patch pair to br-int."""

    bridge: str
    int_ofport: int
    """br-int's ``int-`` patch port."""
    phys_ofport: int
    """The bridge's ``phy-`` patch port."""


@dataclass(frozen=True, slots=True)
class DvrNode:
    """What the distributed OVS agent on one node needs to know."""

    dvr_mac: str
    peer_dvr_macs: tuple[str, ...]
    """Every other host's DVR MAC (``get_dvr_mac_address_list``)."""
    patch_int_ofport: int | None
    """br-tun's patch to br-int; ``None`` without tunnels."""
    patch_tun_ofport: int | None
    interfaces: tuple[DvrInterface, ...]
    physical: tuple[PhysicalBridge, ...] = ()


def _install(flows: FlowList, bridge: str, table: int, priority: int, match: Sequence[str],
             actions: str) -> None:  # fmt: skip
    """An OpenFlow add: a flow with the same table, priority and match is replaced."""
    key = (bridge, table, priority, tuple(match))
    flows.items = [f for f in flows.items if (f.bridge, f.table, f.priority, f.match) != key]
    flows.add(bridge, table, priority, match, actions)


def _distributed_tunnel_tables(flows: FlowList) -> None:
    """``provision_local_vlan(distributed=True)``: the tunnel-to-VLAN flows go on to table 9."""
    tun_tables = set(TUN_TABLE.values())
    learn = f"goto_table:{LEARN_FROM_TUN}"
    flows.items = [
        Flow(
            f.bridge, f.table, f.priority, f.match,
            f.actions.removesuffix(learn) + f"goto_table:{DVR_NOT_LEARN}", f.cookie,
        )
        if f.bridge == BR_TUN and f.table in tun_tables and f.priority == 1
        and f.actions.endswith(learn)
        else f
        for f in flows.items
    ]  # fmt: skip


def dvr_flows(flows: FlowList, node: DvrNode) -> None:
    """Add the distributed agent's flows to a node's flows (the non-DVR ones already there)."""
    f = flows
    # setup_dvr_flows_on_integ_br
    f.add(BR_INT, DVR_TO_SRC_MAC, 1, [], "drop")
    f.add(BR_INT, DVR_TO_SRC_MAC_PHYSICAL, 1, [], "drop")
    for phys in node.physical:
        _physical_bridge(f, node, phys)
    for iface in node.interfaces:
        if iface.provider_vlan is not None:
            _bind_router_interface(f, node, iface)
    patch_int, patch_tun = node.patch_int_ofport, node.patch_tun_ofport
    if patch_int is None or patch_tun is None:
        return
    # setup_dvr_flows_on_tun_br
    _install(f, BR_TUN, 0, 1, [f"in_port={patch_int}"], f"goto_table:{DVR_PROCESS}")
    f.add(BR_TUN, DVR_NOT_LEARN, 0, [], f"goto_table:{LEARN_FROM_TUN}")
    f.add(BR_TUN, DVR_PROCESS, 0, [], f"goto_table:{PATCH_LV_TO_TUN}")
    _distributed_tunnel_tables(f)
    # setup_dvr_mac_flows_on_all_brs
    f.goto(BR_INT, LOCAL_SWITCHING, 5, [f"in_port={patch_tun}", f"dl_dst={node.dvr_mac}"],
           ARP_DVR_MAC_TO_DST_MAC)  # fmt: skip
    for mac in node.peer_dvr_macs:
        f.goto(BR_INT, LOCAL_SWITCHING, 2, [f"in_port={patch_tun}", f"dl_src={mac}"],
               DVR_TO_SRC_MAC)  # fmt: skip
        f.add(BR_TUN, DVR_NOT_LEARN, 1, [f"dl_src={mac}"], f"output:{patch_int}")
    for iface in node.interfaces:
        if iface.provider_vlan is None:
            _bind_router_interface(f, node, iface)


def _physical_bridge(f: FlowList, node: DvrNode, phys: PhysicalBridge) -> None:
    """``setup_dvr_flows_on_phys_br``, ``provision_local_vlan(distributed=True)`` and the DVR
    MACs on one mapped bridge and its patch pair."""
    br, phy, int_ = phys.bridge, f"in_port={phys.phys_ofport}", f"in_port={phys.int_ofport}"
    # The local-to-provider VLAN rewrites the agent made in table 0 belong in table 2.
    f.items = [
        Flow(x.bridge, LOCAL_VLAN_TRANSLATION, x.priority, x.match, x.actions, x.cookie)
        if x.bridge == br and x.table == 0 and x.priority == 4 and x.match[:1] == (phy,)
        else x
        for x in f.items
    ]
    _install(f, br, 0, 2, [phy], f"goto_table:{DVR_PROCESS_PHYSICAL}")
    f.goto(br, 0, 1, [], DVR_NOT_LEARN_PHYSICAL)
    f.goto(br, DVR_PROCESS_PHYSICAL, 0, [], LOCAL_VLAN_TRANSLATION)
    f.add(br, LOCAL_VLAN_TRANSLATION, 2, [phy], "drop")
    f.add(br, DVR_NOT_LEARN_PHYSICAL, 1, [], "NORMAL")
    f.goto(BR_INT, LOCAL_SWITCHING, 5, [int_, f"dl_dst={node.dvr_mac}"],
           ARP_DVR_MAC_TO_DST_MAC_PHYSICAL)  # fmt: skip
    for mac in node.peer_dvr_macs:
        f.goto(BR_INT, LOCAL_SWITCHING, 4, [int_, f"dl_src={mac}"], DVR_TO_SRC_MAC_PHYSICAL)
        f.add(br, DVR_NOT_LEARN_PHYSICAL, 2, [f"dl_src={mac}"], f"output:{phys.phys_ofport}")


def _bind_router_interface(f: FlowList, node: DvrNode, iface: DvrInterface) -> None:
    """``_bind_distributed_router_interface_port`` for an IPv4 subnet. On a VLAN network the
    agent matches the *provider* VLAN in br-int's tables 2 and 60 (what arrives from the
    physical bridge is not translated yet) but the local one everywhere else, and the
    DVR_PROCESS work happens in the physical bridge's table 1, going on to its table 2; the
    ARP block still goes to table 22, the tunnel bridge's number (``br_dvr_process``)."""
    vlan = f"dl_vlan={iface.local_vlan}"
    if iface.provider_vlan is None:
        to_src, arp_table, to_src_vlan = DVR_TO_SRC_MAC, ARP_DVR_MAC_TO_DST_MAC, vlan
        process = (BR_TUN, DVR_PROCESS, PATCH_LV_TO_TUN)
    else:
        to_src, arp_table = DVR_TO_SRC_MAC_PHYSICAL, ARP_DVR_MAC_TO_DST_MAC_PHYSICAL
        to_src_vlan = f"dl_vlan={iface.provider_vlan}"
        process = (iface.physical_bridge, DVR_PROCESS_PHYSICAL, LOCAL_VLAN_TRANSLATION)
    for mac, ofport in iface.vm_ports:
        _install(f, BR_INT, to_src, 20, [to_src_vlan, f"dl_dst={mac}"],
                 f"set_field:{iface.gateway_mac}->eth_src,goto_table:{PACKET_RATE_LIMIT}")  # fmt: skip
        _install(f, BR_INT, TRANSIENT_TABLE, 20, [to_src_vlan, f"dl_dst={mac}"],
                 f"pop_vlan,output:{ofport}")  # fmt: skip
    _install(f, BR_INT, arp_table, 5, [vlan, f"dl_dst={node.dvr_mac}"],
             f"set_field:{iface.gateway_mac}->eth_dst,pop_vlan,output:{iface.ofport}")  # fmt: skip
    bridge, table, then = process
    _install(f, bridge, FLOOD_TO_TUN, 3, ["arp", vlan, f"arp_tpa={iface.gateway_ip}"], "drop")
    _install(f, bridge, table, 2, [vlan, f"dl_dst={iface.gateway_mac}"], "drop")
    _install(f, bridge, table, 1, [vlan, f"dl_src={iface.gateway_mac}"],
             f"set_field:{node.dvr_mac}->eth_src,goto_table:{then}")  # fmt: skip
    _install(f, BR_INT, LOCAL_SWITCHING, 99,
             ["arp", f"dl_dst={node.dvr_mac}", "arp_op=2", f"arp_tha={iface.gateway_mac}"],
             f"set_field:{iface.gateway_mac}->eth_dst,goto_table:{PACKET_RATE_LIMIT}")  # fmt: skip
