"""Checks on Neutron's ports as the node holds them: conntrack zones shared across networks,
OVS ports of br-int without a local VLAN tag or parked on the dead VLAN, and MAC-learning
entries for ports that are gone or learned on another port than the one the MAC belongs to.

Ports come from the inventory (``neutron/inventory.py``), which says where each value was read;
those sources are the evidence.
"""

from __future__ import annotations

from nodetrace.audit.evidence import capped
from nodetrace.audit.findings import CheckResult, Evidence, Finding, NotRun, Severity
from nodetrace.model.node_inventory import Inventory, PortInfo
from nodetrace.model.ovs_runtime import MacEntry
from nodetrace.model.ovs_switch import BridgeState
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron.inventory import integration_bridge

DEAD_VLAN = 4095
"""The tag Neutron's OVS agent gives a port it cannot wire (``constants.DEAD_VLAN_TAG``, with a
drop flow for it in table 0): the port's traffic goes nowhere."""


def _network(p: PortInfo) -> str | None:
    """The port's network as the node tells it: the segment when known, else the local VLAN."""
    if p.segmentation_id is not None and p.network_type is not None:
        return f"{p.network_type.value} {p.segmentation_id.value}"
    if p.local_vlan is not None:
        return f"local VLAN {p.local_vlan.value}"
    return None


def zone_collisions(snap: Snapshot, inv: Inventory) -> CheckResult:
    """Two ports of different networks in one conntrack zone: their connections share one
    table, so equal addresses in the two networks collide."""
    by_zone: dict[int, list[PortInfo]] = {}
    for p in inv.ports:
        if p.zone is not None:
            by_zone.setdefault(p.zone.value, []).append(p)
    if not by_zone:
        return CheckResult()
    findings: list[Finding] = []
    untold: list[str] = []
    for zone, ports in sorted(by_zone.items()):
        if len(ports) < 2:
            continue
        networks = {p.port_id: _network(p) for p in ports}
        untold += [pid for pid, net in networks.items() if net is None]
        known = {net for net in networks.values() if net is not None}
        if len(known) < 2:
            continue
        evidence = []
        for p in ports:
            assert p.zone is not None
            evidence.append(Evidence(f"port {p.port_id}: zone {zone}", p.zone.source))
            found = p.segmentation_id or p.local_vlan
            if found is not None:
                evidence.append(Evidence(f"port {p.port_id}: {networks[p.port_id]}", found.source))
        findings.append(
            Finding(
                check="conntrack-zone-collision",
                severity=Severity.CRITICAL,
                title=(
                    f"conntrack zone {zone} is shared by {len(ports)} ports of "
                    f"{len(known)} networks ({', '.join(sorted(known))}): connections of "
                    "equal addresses in different networks collide"
                ),
                subject=f"zone {zone}",
                evidence=capped(evidence),
                confirm=f"iptables -t raw -S | grep -- '--zone {zone}'; ovs-vsctl --columns=name,tag list port",
            )
        )
    not_run: tuple[NotRun, ...] = ()
    if untold:
        not_run = (
            NotRun(
                "conntrack-zone-collision",
                f"the network of {len(untold)} zone-sharing ports is not known (first: {untold[0]})",
                "ovs-vsctl --columns=name,tag,other_config list port",
            ),
        )
    return CheckResult(tuple(findings), not_run)


def ovs_port_tags(snap: Snapshot, inv: Inventory) -> CheckResult:
    """Neutron ports of br-int without a tag (a trunk of every local VLAN) or with the dead
    VLAN 4095 (unwired: dropped)."""
    bridge = integration_bridge(snap.ovs) if snap.ovs is not None else None
    if bridge is None or bridge.ovsdb is None:
        return CheckResult(
            not_run=(
                NotRun(
                    "ovs-port-no-tag",
                    "no OVSDB port data of the integration bridge",
                    "ovs-vsctl show",
                ),
            )
        )
    neutron = [
        p
        for p in bridge.ports
        if p.interface is not None
        and p.interface.iface_id is not None
        and not p.interface.is_patch
        and not p.interface.is_tunnel
        and p.port is not None
    ]
    if not any(p.port.tag is not None for p in neutron if p.port is not None):
        return CheckResult(
            not_run=(
                NotRun(
                    "ovs-port-no-tag",
                    f"no Neutron port of {bridge.name} has a tag: not an OVS-agent node (OVN "
                    "does not tag ports), so an untagged port is not an error here",
                ),
            )
        )
    findings: list[Finding] = []
    untagged = [p for p in neutron if p.port is not None and p.port.tag is None]
    dead = [p for p in neutron if p.port is not None and p.port.tag == DEAD_VLAN]
    source = _ovsdb_source(snap)
    for check, ports, severity, what in (
        (
            "ovs-port-no-tag",
            untagged,
            Severity.WARNING,
            "have no tag: NORMAL treats them as trunks of every local VLAN",
        ),
        (
            "ovs-port-dead-vlan",
            dead,
            Severity.WARNING,
            f"carry the dead VLAN {DEAD_VLAN}: the agent could not wire them and drops their traffic",
        ),
    ):
        if not ports:
            continue
        evidence = [
            Evidence(
                f'Port "{p.name}" tag={p.port.tag if p.port else None} iface-id={p.interface.iface_id if p.interface else None}',
                source,
            )
            for p in ports
        ]
        findings.append(
            Finding(
                check=check,
                severity=severity,
                title=f"{len(ports)} Neutron ports of {bridge.name} {what}",
                subject=", ".join(p.name for p in ports[:3]) + (" ..." if len(ports) > 3 else ""),
                evidence=capped(evidence, "ports"),
                confirm=f"ovs-vsctl --columns=name,tag,external_ids list port {ports[0].name}",
            )
        )
    return CheckResult(tuple(findings))


def stale_fdb(snap: Snapshot, inv: Inventory) -> CheckResult:
    """MAC-learning entries of OVS bridges for OpenFlow ports that are gone, or for a port's
    own MAC learned on another port of the same VLAN; and a VM's MAC learned on the wrong
    side of its own Linux bridge."""
    findings: list[Finding] = list(_linux_bridge_findings(snap, inv))
    not_run: list[NotRun] = []
    for bridge in snap.ovs.bridges if snap.ovs is not None else ():
        if bridge.fdb is None:
            if bridge.ovsdb is not None:
                not_run.append(
                    NotRun(
                        "fdb-stale",
                        f"{bridge.name}: no MAC table",
                        f"ovs-appctl fdb/show {bridge.name}",
                    )
                )
            continue
        if any(p.ofport is None for p in bridge.ports):
            not_run.append(
                NotRun(
                    "fdb-stale",
                    f"{bridge.name}: OpenFlow port numbers unknown",
                    f"ovs-ofctl show {bridge.name}",
                )
            )
            continue
        findings += _fdb_findings(bridge, _ovsdb_source(snap))
    return CheckResult(tuple(findings), tuple(not_run))


def _fdb_findings(bridge: BridgeState, ovsdb_source: str) -> list[Finding]:
    assert bridge.fdb is not None
    numbers = {p.ofport for p in bridge.ports}
    owner: dict[tuple[str, int], tuple[str, int]] = {}
    for p in bridge.ports:
        mac = p.interface.attached_mac if p.interface is not None else None
        tag = p.port.tag if p.port is not None else None
        if mac and tag is not None and p.ofport is not None:
            owner[(mac.lower(), tag)] = (p.name, p.ofport)
    gone: list[MacEntry] = []
    wrong: list[tuple[MacEntry, str]] = []
    for e in bridge.fdb.entries:
        if e.port not in numbers:
            gone.append(e)
            continue
        home = owner.get((e.mac.lower(), e.vlan))
        if home is not None and home[1] != e.port:
            wrong.append((e, home[0]))
    source = bridge.fdb.source
    out = []
    if gone:
        out.append(
            Finding(
                check="fdb-stale",
                severity=Severity.WARNING,
                title=f"{bridge.name}: {len(gone)} learned MACs point to OpenFlow ports the bridge no longer has",
                subject=f"{bridge.name} MAC table",
                evidence=capped([_entry(e, source) for e in gone], "entries"),
                confirm=f"ovs-appctl fdb/show {bridge.name}; ovs-ofctl show {bridge.name}",
            )
        )
    for e, home_name in wrong:
        port_name = next((p.name for p in bridge.ports if p.ofport == e.port), str(e.port))
        out.append(
            Finding(
                check="fdb-stale",
                severity=Severity.WARNING,
                title=(
                    f"{bridge.name}: {e.mac} (attached-mac of {home_name}) was learned on port "
                    f"{e.port} ({port_name}) in VLAN {e.vlan}: frames for it go to the wrong port"
                ),
                subject=f"{bridge.name} {e.mac}",
                evidence=(
                    _entry(e, source),
                    Evidence(f"{home_name}: external_ids:attached-mac={e.mac}", ovsdb_source),
                ),
                confirm=f"ovs-appctl fdb/show {bridge.name} | grep {e.mac}",
            )
        )
    return out


def _linux_bridge_findings(snap: Snapshot, inv: Inventory) -> list[Finding]:
    """A hybrid port's own MAC learned on its qbr's qvb side: frames for the VM leave toward
    br-int instead of the tap (the MAC was seen arriving from the network: a duplicate or a
    loop)."""
    out = []
    for p in inv.ports:
        qbr = next((d for d in p.devices if d.startswith("qbr")), None)
        if p.mac is None or p.tap is None or qbr is None:
            continue
        mac = p.mac.value.lower()
        for e in snap.topology.fdb_of(qbr):
            if e.mac.lower() != mac or e.dev == p.tap or e.state or e.self_entry:
                continue
            out.append(
                Finding(
                    check="fdb-stale",
                    severity=Severity.WARNING,
                    title=(
                        f"{qbr}: the MAC {mac} of port {p.port_id} was learned on {e.dev}, "
                        f"not on its tap {p.tap}: frames for the VM leave the wrong way"
                    ),
                    subject=f"{qbr} {mac}",
                    evidence=(
                        Evidence(
                            f"{e.mac} dev {e.dev} master {qbr}", f"{snap.source} (bridge fdb)"
                        ),
                        Evidence(f"port {p.port_id}: mac {p.mac.value}", p.mac.source),
                    ),
                    confirm=f"bridge fdb show br {qbr} | grep -i {mac}",
                )
            )
    return out


def _ovsdb_source(snap: Snapshot) -> str:
    """The OVSDB output the ports were read from (the snapshot when it does not say)."""
    ovsdb = snap.ovs.ovsdb if snap.ovs is not None else None
    return ovsdb.source if ovsdb is not None and ovsdb.source else f"{snap.source} (ovs-vsctl)"


def _entry(e: MacEntry, source: str) -> Evidence:
    age = "static" if e.age is None else str(e.age)
    return Evidence(f"{e.port:>5} {e.vlan:>4}  {e.mac}  {age}", str(e.pos) if e.pos else source)
