"""A node's Neutron ports read back from what the agents left on it, for every release and both
OVS-agent firewall drivers.

Nothing on a compute node lists its Neutron ports; they are inferred from the marks the agents
leave: device names (``tap``/``qbr``/``qvb``/``qvo`` of instances, ``qr-``/``qg-``/``ha-``/
``fg-``/``sg-`` of routers, OVS internal ``tap`` devices of DHCP namespaces, ``rfp-``/``fpr-``
DVR links), OVSDB's ``iface-id``/``attached-mac``, the hybrid firewall's chains and raw-table
zone rules (with the ``Set zone for`` comment since Ocata, without it before), and the native
OVS firewall's flows (see ``flow_facts``). Each value keeps where it was read, and a value the
node does not tell stays unknown with a note saying why.

``inventory(snap)`` is computed once per snapshot and shared by ``show`` and ``trace``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from nodetrace.model.netfilter import Backend, PhysdevMatch
from nodetrace.model.node_inventory import (
    Found,
    Inventory,
    LinuxBridgeSummary,
    MissingFact,
    NamespaceSummary,
    NodeFacts,
    OvsBridgeSummary,
    OvsPortSummary,
    PortInfo,
    PortKind,
    Segment,
)
from nodetrace.model.ovs_switch import BridgeState, OvsSwitch, SwitchPort
from nodetrace.model.ovsdb import pairs_get
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS, Interface, LinkKind
from nodetrace.neutron import naming
from nodetrace.neutron.addresses import spoof_entries
from nodetrace.neutron.flow_facts import (
    BridgeIndex,
    PortFlowFacts,
    SegmentFact,
    add_new,
    index_bridge,
    segments,
)

__all__ = ["Found", "Inventory", "PortInfo", "PortKind", "inventory"]

IPAddress = IPv4Address | IPv6Address

INTEGRATION_BRIDGE = "br-int"
ROUTER_KINDS = {
    "qr-": PortKind.ROUTER_INTERFACE,
    "qg-": PortKind.ROUTER_GATEWAY,
    "ha-": PortKind.HA,
    "fg-": PortKind.FIP_GATEWAY,
    "sg-": PortKind.DVR_SNAT,
    "rfp-": PortKind.ROUTER_LINK,
    "fpr-": PortKind.ROUTER_LINK,
}
HYBRID_DEVICES = ("qbr", "qvb", "qvo")
FIREWALL_OF_WRAP = {naming.OPENVSWITCH_WRAP: "iptables_hybrid", naming.LINUXBRIDGE_WRAP: "iptables"}
CHAIN_PREFIX_LEN = 10
ROUTER_LINK_KEY = "router-link "
NO_DEVICE = ("No such device", "could not open network device")
"""OVSDB interface errors saying the port's Linux device is gone (a stale port)."""


@dataclass
class _Port:
    """What has been found about one port so far, while the node is read."""

    key: str
    devices: dict[str, str] = field(default_factory=dict)
    """Device name → namespace (``MAIN_NS`` also for OVS ports not seen in ``ip link``)."""
    prefixes: set[str] = field(default_factory=set)
    ovs: tuple[BridgeState, SwitchPort] | None = None
    iface_id: Found[str] | None = None
    attached_mac: Found[str] | None = None
    zone_ids: list[str] = field(default_factory=list)
    chains: list[tuple[str, int, str]] = field(default_factory=list)
    """(chain name, rules, wrap)."""
    zones: list[Found[int]] = field(default_factory=list)
    ns_device: Interface | None = None
    stale: str | None = None
    """Why the port's device is gone, when OVSDB says so."""
    main_tap: Interface | None = None
    """The ``tap`` device in the main namespace, when ``ip link`` lists it."""
    agent_veth: bool = False
    """The tap is a veth whose far end is an agent's ``ns-`` device (``ovs_use_veth``)."""
    named_by_rules: dict[str, str] = field(default_factory=dict)
    """Devices the hybrid firewall's physdev rules name (device → the rule): their whole
    names, even when the snapshot has no ``ip link`` to list them."""


_cache: list[tuple[Snapshot, Inventory]] = []


def inventory(snap: Snapshot) -> Inventory:
    """Every Neutron port, OVS and Linux bridge and namespace of the node, with their sources."""
    if _cache and _cache[0][0] is snap:
        return _cache[0][1]
    result = _build(snap)
    _cache[:] = [(snap, result)]
    return result


def integration_bridge(switch: OvsSwitch) -> BridgeState | None:
    """br-int, or the bridge holding the most per-port devices when it is named otherwise."""
    named = switch.bridge(INTEGRATION_BRIDGE)
    if named is not None:
        return named
    best, count = None, 0
    for b in switch.bridges:
        n = sum(1 for p in b.ports if naming.parse_neutron_device(p.name) is not None)
        if n > count:
            best, count = b, n
    return best


def _build(snap: Snapshot) -> Inventory:
    ports: dict[str, _Port] = {}

    def port(key: str) -> _Port:
        if key not in ports:
            ports[key] = _Port(key)
        return ports[key]

    switch = snap.ovs
    indexes: dict[str, BridgeIndex] = {}
    segs: dict[int, SegmentFact] = {}
    ovsdb_source = ""
    if switch is not None:
        indexes = {b.name: index_bridge(b) for b in switch.bridges}
        integration = integration_bridge(switch)
        segs = segments(switch, integration.name if integration is not None else None)
        ovsdb_source = switch.ovsdb.source if switch.ovsdb is not None else ""
        _read_ovs(snap, switch, port)
    _read_devices(snap, port)
    _read_zone_rules(snap, port)
    _read_physdev_names(snap, port)
    _read_chains(snap, ports, port)
    hybrid_node = any(p.prefixes & {"qvo", "qbr"} for p in ports.values())
    record_tags = _port_record_tags(snap)
    infos = tuple(
        sorted(
            (
                _port_info(snap, p, indexes, segs, ovsdb_source, hybrid_node, record_tags)
                for p in ports.values()
            ),
            key=lambda p: (p.kind != PortKind.VM, p.port_id),
        )
    )
    return Inventory(
        node=_node(snap),
        ports=infos,
        ovs_bridges=_bridges(switch, indexes),
        linux_bridges=_linux_bridges(snap),
        namespaces=_namespaces(snap),
        segments=tuple(
            Segment(s.local_vlan, s.network_type, s.segmentation_id)
            for _, s in sorted(segs.items())
        ),
        missing=tuple(
            MissingFact(
                m.what + (f" of {m.bridge}" if m.bridge else ""),
                m.reason,
                m.netns if m.netns != MAIN_NS else None,
                _command(m.command, m.netns),
            )
            for m in snap.missing
        ),
        notes=switch.notes if switch is not None else (),
        snapshot_notes=snap.notes,
        diagnostics=tuple(str(d) for d in snap.diagnostics),
    )


def _command(command: str, netns: str) -> str | None:
    if not command:
        return None
    return f"ip netns exec {netns} {command}" if netns != MAIN_NS else command


def _key(device: naming.NeutronDevice, name: str) -> str:
    # A DVR link carries a router's UUID, not a port's: its two ends (rfp- in the router's
    # namespace, fpr- in the fip- namespace) are one entry, apart from the ports' own.
    return f"{ROUTER_LINK_KEY}{device.uuid_prefix}" if device.is_router_link else device.uuid_prefix


def _read_ovs(snap: Snapshot, switch: OvsSwitch, port: Callable[[str], _Port]) -> None:
    for bridge in switch.bridges:
        for p in bridge.ports:
            iface = p.interface
            ids = iface.external_ids if iface is not None else ()
            source = f"OVSDB Interface {p.name} external_ids"
            iface_id = pairs_get(ids, "iface-id")
            device = naming.parse_neutron_device(p.name)
            if device is None and not iface_id:
                continue
            key = (
                _key(device, p.name)
                if device is not None
                else str(iface_id)[: naming.DEVICE_NAME_LEN - 3]
            )
            entry = port(key)
            error = iface.error if iface is not None else None
            if error and any(text in error for text in NO_DEVICE):
                entry.stale = f"OVSDB: {error}"
            else:
                entry.devices.setdefault(p.name, MAIN_NS)
            if device is not None:
                entry.prefixes.add(device.prefix)
            if entry.ovs is None or bridge.name == INTEGRATION_BRIDGE:
                entry.ovs = (bridge, p)
            if iface_id:
                entry.iface_id = Found(iface_id, f"{source}:iface-id")
            mac = pairs_get(ids, "attached-mac")
            if mac:
                entry.attached_mac = Found(mac.lower(), f"{source}:attached-mac")


def _read_devices(snap: Snapshot, port: Callable[[str], _Port]) -> None:
    for iface in snap.topology.interfaces:
        device = naming.parse_neutron_device(iface.name)
        if device is None:
            continue
        entry = port(_key(device, iface.name))
        entry.devices[iface.name] = iface.netns
        entry.prefixes.add(device.prefix)
        if iface.netns != MAIN_NS and (entry.ns_device is None or device.prefix == "rfp-"):
            # A DVR link is sent through from its router's end (rfp-).
            entry.ns_device = iface
        if iface.netns == MAIN_NS and device.prefix == "tap":
            entry.main_tap = iface
            peer = snap.topology.veth_peer(iface) if iface.kind is LinkKind.VETH else None
            if peer is not None and peer.name.startswith("ns-"):
                entry.agent_veth = True
                entry.devices[peer.name] = peer.netns
                if peer.netns != MAIN_NS:
                    entry.ns_device = peer


def _read_physdev_names(snap: Snapshot, port: Callable[[str], _Port]) -> None:
    """The hybrid firewall names each port's tap in physdev rules (``--physdev-out tapX``):
    the whole device name, where chain names keep only 10 characters of the UUID."""
    rules = snap.main.iptables
    filt = rules.tables.get("filter") if rules is not None else None
    for chain in filt.chains.values() if filt is not None else ():
        for rule in chain.rules:
            for m in rule.matches:
                if not isinstance(m, PhysdevMatch):
                    continue
                for name in (m.physdev_in, m.physdev_out):
                    if name is None or name.negated or not name.value.startswith("tap"):
                        continue
                    device = naming.parse_neutron_device(name.value)
                    if device is None:
                        continue
                    entry = port(_key(device, name.value))
                    entry.prefixes.add(device.prefix)
                    where = f" ({rule.pos})" if rule.pos is not None else ""
                    entry.named_by_rules.setdefault(
                        name.value, f"iptables filter {rule.chain} rule {rule.position}{where}"
                    )


def _read_zone_rules(snap: Snapshot, port: Callable[[str], _Port]) -> None:
    rules = snap.main.iptables
    if rules is None:
        return
    raw = rules.tables.get("raw")
    for chain in raw.chains.values() if raw is not None else ():
        for rule in chain.rules:
            zone = naming.zone_rule_from_text(rule.text)
            if zone is None:
                continue
            device = naming.parse_neutron_device(zone.device)
            if device is None:
                continue
            entry = port(_key(device, zone.device))
            entry.prefixes.add(device.prefix)
            where = f" ({rule.pos})" if rule.pos is not None else ""
            entry.zones.append(
                Found(zone.zone, f"iptables raw {rule.chain} rule {rule.position}{where}")
            )
            if zone.port_id is not None and len(zone.port_id) == 36:
                entry.zone_ids.append(zone.port_id)


def _read_chains(snap: Snapshot, ports: dict[str, _Port], port: Callable[[str], _Port]) -> None:
    rules = snap.main.iptables
    if rules is None:
        return
    filt = rules.tables.get("filter")
    by_prefix: dict[str, list[str]] = {}
    for key in ports:
        by_prefix.setdefault(key[:CHAIN_PREFIX_LEN], []).append(key)
    for chain in filt.chains.values() if filt is not None else ():
        parsed = naming.parse_chain_name(chain.name)
        if parsed is None:
            continue
        keys = [
            k for k in by_prefix.get(parsed.port_prefix, []) if not k.startswith(ROUTER_LINK_KEY)
        ]
        key = keys[0] if len(keys) == 1 else parsed.port_prefix
        port(key).chains.append((chain.name, len(chain.rules), parsed.wrap))


def _kind(entry: _Port, firewall_flows: bool, hybrid_node: bool) -> tuple[PortKind, str | None]:
    """The port's kind, and a note when the node cannot tell it.

    ``firewall_flows``: the native firewall filters the port (DHCP and router ports are
    trusted and get none). ``hybrid_node``: VM ports of this node are hybrid-plugged (qvo), so
    a plain tap on br-int is an agent's veth (``ovs_use_veth``), not an instance.
    """
    for prefix, kind in ROUTER_KINDS.items():
        if prefix in entry.prefixes:
            return kind, None
    hybrid = entry.prefixes & set(HYBRID_DEVICES) or entry.chains or entry.zones
    if hybrid or firewall_flows or "vhu" in entry.prefixes:
        return PortKind.VM, None
    spaces = {ns for name, ns in entry.devices.items() if name.startswith(("tap", "ns-"))}
    if any(ns.startswith("qdhcp-") for ns in spaces):
        return PortKind.DHCP, None
    ovs_type = entry.ovs[1].type if entry.ovs is not None else None
    if ovs_type == "internal":
        return PortKind.DHCP, None
    if not entry.prefixes & {"tap", "ns-"}:
        return PortKind.UNKNOWN, None
    tap = entry.main_tap
    if entry.agent_veth or "ns-" in entry.prefixes:
        return PortKind.UNKNOWN, (
            "a veth into a namespace (ovs_use_veth): an agent's port (DHCP, load balancer), "
            "not an instance; its namespace is not in the snapshot"
        )
    if tap is not None and tap.kind is LinkKind.TAP:
        return PortKind.VM, None
    if ovs_type is None:
        return PortKind.UNKNOWN, (
            "a tap on OVS whose OVSDB type and Linux device are not in the snapshot: an "
            "instance's or a DHCP port cannot be told (ovs-vsctl show and ip link would tell)"
        )
    if hybrid_node:
        return PortKind.UNKNOWN, (
            "a plain tap on br-int where this node's instances are hybrid-plugged (qvo): an "
            "agent's veth (ovs_use_veth, e.g. DHCP) rather than an instance; its namespace "
            "is not in the snapshot"
        )
    return PortKind.VM, None


def _port_info(
    snap: Snapshot,
    entry: _Port,
    indexes: dict[str, BridgeIndex],
    segs: dict[int, SegmentFact],
    ovsdb_source: str,
    hybrid_node: bool,
    record_tags: dict[str, Found[int]],
) -> PortInfo:
    bridge, sw = entry.ovs if entry.ovs is not None else (None, None)
    ofport = sw.ofport if sw is not None else None
    index = indexes.get(bridge.name) if bridge is not None else None
    numbered_by_flows = False
    if ofport is None and sw is not None and index is not None:
        ofport = index.numbers_from_flows.get(sw.name)
        numbered_by_flows = ofport is not None
    facts: PortFlowFacts | None = (
        index.ports.get(ofport) if index is not None and ofport is not None else None
    )
    kind, kind_note = _kind(entry, facts is not None and facts.firewall_flows > 0, hybrid_node)
    notes: list[str] = [kind_note] if kind_note else []
    if numbered_by_flows and sw is not None:
        notes.append(
            f"OpenFlow port number {ofport} of {sw.name} read from the firewall's reg5 load "
            "(no ovs-ofctl show or OVSDB ofport in the snapshot)"
        )

    port_id = entry.key
    if entry.key.startswith(ROUTER_LINK_KEY):
        port_id = entry.key.removeprefix(ROUTER_LINK_KEY)
    if entry.iface_id is not None:
        port_id = entry.iface_id.value
    elif entry.zone_ids:
        port_id = entry.zone_ids[0]

    chains = tuple(c[0] for c in entry.chains)
    firewall = next((FIREWALL_OF_WRAP.get(c[2]) for c in entry.chains), None)
    if firewall is None and entry.zones:
        firewall = "iptables_hybrid"
    if firewall is None and facts is not None and (facts.firewall_flows or facts.reg6):
        # The native firewall loads reg5/reg6 for every port it handles; trusted ports
        # (router, DHCP) get no filtering flows but are still its ports.
        firewall = "openvswitch"
    if firewall is None and kind is PortKind.VM and entry.prefixes & set(HYBRID_DEVICES):
        # Nova plugs a port through qbr/qvb/qvo only when the agent's firewall is the hybrid
        # iptables one.
        firewall = "iptables_hybrid"
        notes.append(
            "firewall iptables_hybrid derived from the hybrid plugging (qbr/qvb/qvo devices): "
            "its chains and zone rules are not in the snapshot (iptables-save would show them)"
        )

    macs: list[Found[str]] = []
    ips: list[Found[IPAddress]] = []

    if entry.attached_mac is not None:
        add_new(macs, entry.attached_mac)
    if entry.chains:
        rulesets = (snap.main.iptables, snap.main.ip6tables)
        for spoof in spoof_entries(rulesets, entry.key):
            if spoof.mac is not None:
                add_new(macs, Found(spoof.mac, spoof.source))
            if spoof.ip is not None:
                add_new(ips, Found(spoof.ip, spoof.source))
    if facts is not None:
        for m in facts.macs:
            add_new(macs, m)
        for ip in facts.ips:
            add_new(ips, ip)
    dev = entry.ns_device
    if dev is not None and kind is not PortKind.VM:
        if dev.mac:
            add_new(macs, Found(dev.mac.lower(), f"ip link: {dev.name} in namespace {dev.netns}"))
        ends = [dev]
        if kind is PortKind.ROUTER_LINK:
            # Both ends of the DVR link have their own address (169.254.x.y/31 each).
            ends += [
                i
                for name, ns in entry.devices.items()
                if name != dev.name and (i := snap.topology.interface(name, ns)) is not None
            ]
        for end in ends:
            for a in end.addresses:
                if a.scope != "host":
                    add_new(ips, Found(a.ip, f"ip address: {end.name} in namespace {end.netns}"))
    if len(macs) > 1:
        notes.append(
            f"{len(macs)} MACs may send from this port (allowed address pairs): "
            + ", ".join(m.value for m in macs)
            + f"; {macs[0].value} taken as its own"
        )
    if kind is PortKind.VM and not macs:
        notes.append(
            "MAC unknown: no OVSDB attached-mac (ovs-vsctl list Interface), anti-spoofing "
            "rule or firewall flow names it"
        )

    local_vlan = _local_vlan(sw, facts, firewall, ovsdb_source, record_tags)
    if local_vlan is None and sw is not None:
        notes.append(
            f"local VLAN unknown: {sw.name} has no OVSDB tag and no flow names its VLAN "
            "(ovs-vsctl show and ovs-ofctl dump-flows br-int would tell)"
        )
    seg = segs.get(local_vlan.value) if local_vlan is not None else None
    if local_vlan is not None and seg is None:
        notes.append(
            f"network of local VLAN {local_vlan.value} unknown: no br-tun or provider bridge "
            "flow in the snapshot maps it (ovs-ofctl dump-flows of br-tun and br-int would tell)"
        )

    zone: Found[int] | None = entry.zones[0] if entry.zones else None
    if zone is None and facts is not None and facts.reg6 is not None:
        why = (
            "reg6, the zone of the firewall's ct(zone=NXM_NX_REG6[0..15])"
            if facts.firewall_flows
            else "reg6, the conntrack zone the native firewall uses for this port's network "
            "(the port itself is trusted: its own packets are not filtered)"
        )
        zone = Found(facts.reg6.value, f"{facts.reg6.source}: {why}")
    if len({z.value for z in entry.zones}) > 1:
        notes.append(
            "several conntrack zones: " + ", ".join(f"{z.value} ({z.source})" for z in entry.zones)
        )

    devices = tuple(
        name for name, _ in sorted(entry.devices.items(), key=lambda kv: (kv[1] != MAIN_NS, kv[0]))
    )
    tap, namespace = _sending_device(snap, entry, kind, sw)
    if entry.stale is not None:
        notes.append(f"its device is gone ({entry.stale}): a stale OVS port")
    elif kind is PortKind.VM and tap is None:
        notes.append(
            f"no tap{entry.key} device in the snapshot (ip link show would list it): the VM's "
            "side cannot be traced from"
        )
    elif tap is not None and tap in entry.named_by_rules and tap not in entry.devices:
        notes.append(
            f"{tap} is named by {entry.named_by_rules[tap]}; the snapshot's `ip link` does not "
            "list it"
        )
    flows = 0
    if index is not None:
        flows = index.flows_naming(
            ofport, (m.value for m in macs), sw.name if sw is not None else None
        )
    return PortInfo(
        port_id=port_id,
        kind=kind,
        devices=devices,
        tap=tap,
        namespace=namespace,
        bridge=bridge.name if bridge is not None else None,
        ovs_port=sw.name if sw is not None else None,
        ofport=ofport,
        firewall=firewall,
        local_vlan=local_vlan,
        network_type=seg.network_type if seg is not None else None,
        segmentation_id=seg.segmentation_id if seg is not None else None,
        mac=macs[0] if macs else None,
        ips=tuple(sorted(ips, key=lambda ip: ip.value.version)),
        zone=zone,
        chains=chains,
        flows=flows,
        macs=tuple(macs),
        chain_rules=tuple(c[1] for c in entry.chains),
        notes=tuple(notes),
    )


def _port_record_tags(snap: Snapshot) -> dict[str, Found[int]]:
    """Tags from single Port records (``ovs-vsctl list port qvoX``, maybe ``| grep tag``),
    for ports an ``ovs-vsctl show`` of the snapshot does not list."""
    out: dict[str, Found[int]] = {}
    for record in snap.ovsdb_records:
        tag = record.row.get("tag") if record.table == "Port" else None
        if isinstance(tag, int) and not isinstance(tag, bool):
            out[record.name] = Found(tag, f"OVSDB Port {record.name} tag ({record.source})")
    return out


def _local_vlan(
    sw: SwitchPort | None,
    facts: PortFlowFacts | None,
    firewall: str | None,
    ovsdb_source: str,
    record_tags: dict[str, Found[int]],
) -> Found[int] | None:
    if sw is not None and sw.port is not None and sw.port.tag is not None:
        where = f" ({ovsdb_source})" if ovsdb_source else ""
        return Found(sw.port.tag, f"OVSDB Port {sw.name} tag{where}")
    if sw is not None and sw.name in record_tags:
        return record_tags[sw.name]
    if facts is None:
        return None
    if facts.vlan is not None:
        return facts.vlan
    if firewall == "openvswitch" and facts.reg6 is not None:
        return Found(
            facts.reg6.value,
            f"{facts.reg6.source}: the native firewall loads the port's local VLAN into reg6",
        )
    return None


def _sending_device(
    snap: Snapshot, entry: _Port, kind: PortKind, sw: SwitchPort | None
) -> tuple[str | None, str | None]:
    """The device the port's VM or namespace sends from, and that namespace."""
    if kind is PortKind.VM:
        tap = naming.tap_name(entry.key)
        if tap in entry.devices and snap.topology.interface(tap) is not None:
            return tap, None
        vhu = next((d for d in entry.devices if d.startswith("vhu")), None)
        if vhu is not None:
            return vhu, None
        if sw is not None and sw.name == tap and entry.stale is None:
            return tap, None
        if tap in entry.named_by_rules and entry.stale is None:
            return tap, None  # named by the firewall's rules; `ip link` would show it
        return None, None
    if entry.ns_device is not None:
        return entry.ns_device.name, entry.ns_device.netns
    if sw is not None and entry.stale is None:
        return sw.name, None
    return next(iter(entry.devices), None), None


def _bridges(
    switch: OvsSwitch | None, indexes: dict[str, BridgeIndex]
) -> tuple[OvsBridgeSummary, ...]:
    if switch is None:
        return ()
    out = []
    for b in switch.bridges:
        index = indexes.get(b.name)
        ports = []
        for p in sorted(b.ports, key=lambda p: (p.ofport or 0, p.name)):
            iface, db = p.interface, p.port
            ports.append(
                OvsPortSummary(
                    name=p.name,
                    ofport=p.ofport,
                    type=(iface.type or "system") if iface is not None else None,
                    tag=db.tag if db is not None else None,
                    trunks=db.trunks if db is not None else (),
                    peer=iface.peer if iface is not None else None,
                    remote_ip=iface.remote_ip if iface is not None and iface.is_tunnel else None,
                    local_ip=iface.local_ip if iface is not None and iface.is_tunnel else None,
                    key=iface.out_key if iface is not None and iface.is_tunnel else None,
                    iface_id=iface.iface_id if iface is not None else None,
                    flows=index.flows_naming(p.ofport, name=p.name) if index is not None else 0,
                )
            )
        db_bridge = b.ovsdb
        out.append(
            OvsBridgeSummary(
                name=b.name,
                datapath_type=(db_bridge.datapath_type or None) if db_bridge is not None else None,
                fail_mode=(db_bridge.fail_mode or None) if db_bridge is not None else None,
                flows=len(b.flows.flows) if b.flows is not None else None,
                ports=tuple(ports),
            )
        )
    return tuple(out)


def _linux_bridges(snap: Snapshot) -> tuple[LinuxBridgeSummary, ...]:
    topo = snap.topology
    out = []
    for ns in topo.namespaces:
        for br in topo.linux_bridges(ns):
            info = br.bridge
            sysctl = (snap.namespace(ns) or snap.main).sysctls.bridge_nf_call(Family.IPV4)
            nf: bool | None = sysctl
            if info is not None and info.nf_call_iptables:
                nf = True
            out.append(
                LinuxBridgeSummary(
                    name=br.name,
                    namespace=ns,
                    ageing_time=info.ageing_time if info is not None else None,
                    nf_call_iptables=nf,
                    ports=tuple(p.name for p in topo.ports_of(br.name, ns)),
                )
            )
    return tuple(out)


def _namespaces(snap: Snapshot) -> tuple[NamespaceSummary, ...]:
    names = [n for n in snap.topology.namespaces if n != MAIN_NS]
    names += [s.name for s in snap.namespaces if s.name != MAIN_NS and s.name not in names]
    out = []
    for name in names:
        state = snap.namespace(name)
        rules = None
        if state is not None and state.iptables is not None:
            rules = sum(1 for _ in state.iptables.rules())
        interfaces = tuple(i.name for i in snap.topology.in_namespace(name))
        out.append(NamespaceSummary(name, interfaces, rules))
    return tuple(out)


def _node(snap: Snapshot) -> NodeFacts:
    host: Found[str] | None = None
    if snap.host and "/" not in snap.host and " " not in snap.host.strip():
        host = Found(snap.host.strip(), f"{snap.source_kind.value}: the node's hostname")
    kernel_source = snap.kernel_source or f"{snap.source_kind.value}: uname -r"
    kernel = Found(snap.kernel, kernel_source) if snap.kernel else None
    main = snap.main
    ipt = "no ruleset"
    if main.iptables is not None:
        backend = main.iptables.backend
        ipt = (
            backend.value
            if backend is not Backend.UNKNOWN
            else "ruleset read; iptables backend: not in the snapshot (`iptables -V` would tell)"
        )
    if main.other_backend:
        ipt += " (rules in the other backend too: the kernel applies both)"
    return NodeFacts(
        hostname=host,
        kernel=kernel,
        collected_at=snap.collected_at or None,
        source=snap.source,
        source_kind=snap.source_kind.value,
        iptables=ipt,
        br_netfilter=main.sysctls.bridge_nf_call(Family.IPV4),
        ovs_evidence=snap.ovs_evidence or None if snap.ovs is None else None,
        ovs_bridge_names=snap.ovs_bridge_names if snap.ovs is None else (),
    )
