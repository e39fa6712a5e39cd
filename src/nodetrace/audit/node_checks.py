"""Checks on the node's kernel settings and devices: tunnel MTUs against the underlay, MTUs
along a hybrid port's devices, sysctls that break a path (forwarding in router namespaces,
br_netfilter off under the hybrid firewall, strict reverse-path filtering against tunnel
peers) and a conntrack table close to full.

Overheads (outer headers a tunnel adds to the VM's frame, counted against the underlay
device's MTU, which excludes the outer Ethernet header):
VXLAN 50 = inner Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8 (70 over IPv6; Open vSwitch's FAQ,
"How do I configure ... MTU" and the kernel's Documentation/networking/vxlan.rst); GRE 38 =
inner Ethernet 14 + IPv4 20 + GRE 4, 42 with the key Neutron sets (``key=flow``), RFC 2890;
Geneve 50 + options = inner Ethernet 14 + IPv4 20 + UDP 8 + Geneve 8 (RFC 8926), options not
counted (an assumption the finding states).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from nodetrace.audit.evidence import capped, in_netns, sysctl_evidence
from nodetrace.audit.findings import CheckResult, Evidence, Finding, NotRun, Severity
from nodetrace.engine.routing import RouteAction, decide, reverse_path_ok
from nodetrace.model.node_inventory import Inventory, PortInfo, PortKind
from nodetrace.model.ovs_switch import BridgeState, SwitchPort
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS, Interface, LinkKind

BASE_OVERHEAD = {"vxlan": 50, "gre": 38, "geneve": 50}
"""Bytes a tunnel adds over IPv4 (see the module docstring); IPv6 outer headers add 20 more."""

GRE_KEY = 4
IPV6_EXTRA = 20

ROUTER_KINDS = frozenset(
    {
        PortKind.ROUTER_INTERFACE,
        PortKind.ROUTER_GATEWAY,
        PortKind.HA,
        PortKind.FIP_GATEWAY,
        PortKind.DVR_SNAT,
        PortKind.ROUTER_LINK,
    }
)

CONNTRACK_WARNING = 0.75
CONNTRACK_CRITICAL = 0.90
"""Fill ratios of the conntrack table: past the maximum the kernel drops new connections
("nf_conntrack: table full, dropping packet")."""


def _device_text(iface: Interface) -> str:
    return f"{iface.name}: mtu {iface.mtu}" + (f" master {iface.master}" if iface.master else "")


def _device_source(snap: Snapshot) -> str:
    return f"{snap.source} (ip -d link)"


# --- mtu-tunnel ------------------------------------------------------------------------------------


def tunnel_overhead(port: SwitchPort, outer: IPv4Address | IPv6Address) -> int | None:
    kind = port.type or ""
    base = BASE_OVERHEAD.get(kind)
    if base is None:
        return None
    if (
        kind == "gre"
        and port.interface is not None
        and (
            port.interface.in_key is not None
            or port.interface.out_key is not None
            or port.interface.option("key") is not None
        )
    ):
        base += GRE_KEY
    return base + (IPV6_EXTRA if outer.version == 6 else 0)


def _underlay(snap: Snapshot, bridge: BridgeState, remote: IPv4Address | IPv6Address) -> str | None:
    """The device the tunnel's outer packets leave by: Open vSwitch's own routes on a
    userspace datapath, the kernel's otherwise."""
    datapath = bridge.ovsdb.datapath_type if bridge.ovsdb is not None else ""
    if datapath == "netdev" and snap.ovs_routes:
        routes = [
            r for r in snap.ovs_routes if r.prefix.version == remote.version and remote in r.prefix
        ]
        if routes:
            return max(routes, key=lambda r: r.prefix.prefixlen).dev
    decision = decide(snap.topology, remote)
    return decision.dev if decision.action is RouteAction.FORWARD else None


def tunnel_mtu(snap: Snapshot, inv: Inventory) -> CheckResult:
    """VM MTU + tunnel overhead against the underlay device's MTU, per tunnel type and
    underlay device; and MTUs along each hybrid port's devices."""
    if snap.ovs is None:
        return CheckResult(
            not_run=(
                NotRun("mtu-tunnel", "the snapshot has no Open vSwitch state", "ovs-vsctl show"),
            )
        )
    if not snap.topology.interfaces:
        return CheckResult(
            not_run=(
                NotRun("mtu-tunnel", "the snapshot lists no devices (no MTUs)", "ip -d -j link"),
            )
        )
    findings: list[Finding] = []
    not_run: list[NotRun] = []
    seen: set[tuple[str, str]] = set()
    for bridge in snap.ovs.bridges:
        for port in bridge.ports:
            iface = port.interface
            if iface is None or not iface.is_tunnel or iface.remote_ip is None:
                continue
            try:
                remote = ip_address(iface.remote_ip)
            except ValueError:
                continue  # remote_ip=flow: the flows choose the peer
            overhead = tunnel_overhead(port, remote)
            dev = _underlay(snap, bridge, remote)
            if overhead is None:
                continue
            if dev is None:
                not_run.append(
                    NotRun(
                        "mtu-tunnel",
                        f"{port.name}: no route to {remote} in the snapshot",
                        "ip route show table all",
                    )
                )
                continue
            key = (port.type or "", dev)
            if key in seen:
                continue
            seen.add(key)
            underlay = snap.topology.interface(dev)
            if underlay is None or underlay.mtu is None:
                not_run.append(
                    NotRun(
                        "mtu-tunnel",
                        f"{port.name}: the MTU of its underlay {dev} is not in the snapshot",
                        "ip -d -j link",
                    )
                )
                continue
            finding = _tunnel_finding(snap, inv, port, overhead, underlay)
            if finding is not None:
                findings.append(finding)
    findings += _kernel_tunnel_mtus(snap)
    findings += _port_path_mtus(snap, inv)
    return CheckResult(tuple(findings), tuple(not_run))


KERNEL_TUNNEL_OVERHEAD = {LinkKind.VXLAN: 50, LinkKind.GRETAP: 38, LinkKind.GENEVE: 50}
"""The same overheads for the kernel's own tunnel devices (the linuxbridge agent's ``vxlan-N``)."""


def _kernel_tunnel_mtus(snap: Snapshot) -> list[Finding]:
    """A kernel tunnel device enslaved to a Linux bridge: the bridge's other ports' MTU plus the
    tunnel's overhead against its underlay device (``dev`` of the tunnel, else the device
    holding its local address)."""
    out = []
    for tunnel in snap.topology.interfaces:
        info = tunnel.tunnel
        base = KERNEL_TUNNEL_OVERHEAD.get(tunnel.kind)
        if info is None or base is None or tunnel.master is None:
            continue
        underlay = snap.topology.interface(info.underlay, tunnel.netns) if info.underlay else None
        if underlay is None and info.local is not None:
            underlay = snap.topology.owner_of(info.local, tunnel.netns)
        if underlay is None or underlay.mtu is None:
            continue
        outer_v6 = info.local is not None and info.local.version == 6
        overhead = base + (GRE_KEY if tunnel.kind is LinkKind.GRETAP and info.key else 0)
        overhead += IPV6_EXTRA if outer_v6 else 0
        ports = [
            p for p in snap.topology.ports_of(tunnel.master, tunnel.netns)
            if p.name != tunnel.name and p.mtu is not None and p.mtu + overhead > underlay.mtu
        ]  # fmt: skip
        if not ports:
            continue
        source = _device_source(snap)
        largest = max(p.mtu or 0 for p in ports)
        evidence = [Evidence(_device_text(underlay) + " (underlay)", source)]
        evidence += [Evidence(_device_text(tunnel) + f" ({tunnel.kind.value})", source)]
        evidence += [Evidence(_device_text(p), source) for p in ports]
        out.append(
            Finding(
                check="mtu-tunnel",
                severity=Severity.CRITICAL,
                title=(
                    f"{len(ports)} ports of {tunnel.master} have MTU up to {largest}; with "
                    f"{overhead} bytes of {tunnel.kind.value} overhead ({tunnel.name}) their "
                    f"full-size packets need {largest + overhead} but the underlay "
                    f"{underlay.name} has MTU {underlay.mtu}"
                ),
                subject=f"{tunnel.name} via {underlay.name}",
                evidence=capped(evidence, "ports"),
                confirm=f"ip -d link show {tunnel.name}; ip link show {underlay.name}",
            )
        )
    return out


def _tunnel_finding(
    snap: Snapshot, inv: Inventory, port: SwitchPort, overhead: int, underlay: Interface
) -> Finding | None:
    kind = port.type or ""
    vlans = {s.local_vlan for s in inv.segments if s.network_type.value == kind}
    too_big: list[tuple[PortInfo, Interface]] = []
    for p in inv.ports:
        if p.local_vlan is None or p.local_vlan.value not in vlans or p.tap is None:
            continue
        tap = snap.topology.interface(p.tap)
        assert underlay.mtu is not None
        if tap is not None and tap.mtu is not None and tap.mtu + overhead > underlay.mtu:
            too_big.append((p, tap))
    if not too_big:
        return None
    source = _device_source(snap)
    evidence = [Evidence(_device_text(underlay) + " (underlay)", source)]
    evidence += [Evidence(f"{_device_text(tap)} (port {p.port_id})", source) for p, tap in too_big]
    largest = max(tap.mtu or 0 for _, tap in too_big)
    options = " + options (not counted)" if kind == "geneve" else ""
    return Finding(
        check="mtu-tunnel",
        severity=Severity.CRITICAL,
        title=(
            f"{len(too_big)} VM ports on {kind} networks have MTU up to {largest}; with "
            f"{overhead} bytes of {kind} overhead{options} their full-size packets need "
            f"{largest + overhead} but the underlay {underlay.name} has MTU {underlay.mtu}"
        ),
        subject=f"{port.name} via {underlay.name}",
        evidence=capped(evidence, "ports"),
        confirm=f"ip link show {underlay.name}; ovs-vsctl list interface {port.name}",
    )


def _port_path_mtus(snap: Snapshot, inv: Inventory) -> list[Finding]:
    """A hybrid port's frames cross tap, qbr, qvb and qvo: a smaller MTU on the way drops the
    frames the VM may send (a bridge drops a frame longer than its output port's MTU)."""
    out = []
    for p in inv.ports:
        if p.kind is not PortKind.VM or p.tap is None:
            continue
        tap = snap.topology.interface(p.tap)
        if tap is None or tap.mtu is None:
            continue
        path = [snap.topology.interface(d) for d in p.devices if d != p.tap]
        smaller = [d for d in path if d is not None and d.mtu is not None and d.mtu < tap.mtu]
        if not smaller:
            continue
        source = _device_source(snap)
        evidence = [Evidence(_device_text(tap), source)]
        evidence += [Evidence(_device_text(d), source) for d in smaller]
        out.append(
            Finding(
                check="mtu-port-path",
                severity=Severity.WARNING,
                title=(
                    f"port {p.port_id}: {p.tap} has MTU {tap.mtu} but "
                    + ", ".join(f"{d.name} has {d.mtu}" for d in smaller)
                    + ": larger frames are dropped on the way"
                ),
                subject=p.port_id,
                evidence=tuple(evidence),
                confirm="ip link show | grep -A1 "
                + (p.tap[3:] if p.tap.startswith("tap") else p.tap),
            )
        )
    return out


# --- sysctls --------------------------------------------------------------------------------------


def forwarding_in_routers(snap: Snapshot, inv: Inventory) -> CheckResult:
    """ip_forward=0 in a namespace holding router ports: it routes nothing."""
    router_ns = sorted({p.namespace or MAIN_NS for p in inv.ports if p.kind in ROUTER_KINDS})
    findings: list[Finding] = []
    not_run: list[NotRun] = []
    for name in router_ns:
        ns = snap.namespace(name)
        forwarding = ns.sysctls.forwarding(Family.IPV4) if ns is not None else None
        label = name or "the main namespace"
        if forwarding is None:
            not_run.append(
                NotRun(
                    "ip-forward-off",
                    f"{label} holds router ports but its net.ipv4.ip_forward was not captured",
                    in_netns(name, "sysctl net.ipv4.ip_forward"),
                )
            )
            continue
        if forwarding or ns is None:
            continue
        ports = [
            p for p in inv.ports if (p.namespace or MAIN_NS) == name and p.kind in ROUTER_KINDS
        ]
        evidence = [sysctl_evidence(ns.sysctls, "net.ipv4.ip_forward")]
        evidence += [
            Evidence(f"{p.kind.value} port {p.port_id} ({', '.join(p.devices)})", "inventory")
            for p in ports
        ]
        findings.append(
            Finding(
                check="ip-forward-off",
                severity=Severity.CRITICAL,
                title=f"{label} holds {len(ports)} router ports but net.ipv4.ip_forward = 0: it routes nothing",
                subject=label,
                evidence=capped(evidence, "ports"),
                confirm=in_netns(name, "sysctl net.ipv4.ip_forward"),
            )
        )
    return CheckResult(tuple(findings), tuple(not_run))


def bridge_nf_call(snap: Snapshot, inv: Inventory) -> CheckResult:
    """Hybrid (or linuxbridge) firewall ports while br_netfilter does not hand bridged frames
    to iptables: every security group of those ports is bypassed."""
    ports = [p for p in inv.ports if p.firewall in ("iptables_hybrid", "iptables")]
    if not ports:
        return CheckResult()
    sysctls = snap.main.sysctls
    if not sysctls.values:
        return CheckResult(
            not_run=(
                NotRun(
                    "bridge-nf-call-off",
                    "no sysctl of the node was captured",
                    "sysctl -a --pattern bridge-nf-call",
                ),
            )
        )
    findings: list[Finding] = []
    for family, key in ((Family.IPV4, "iptables"), (Family.IPV6, "ip6tables")):
        if sysctls.bridge_nf_call(family) is not False or not _neutron_rules(snap, family):
            continue
        loaded = sysctls.br_netfilter_loaded
        bypassed = []
        untold: list[str] = []
        for p in ports:
            qbr = next((d for d in p.devices if d.startswith("qbr")), None)
            bridge = snap.topology.interface(qbr) if qbr else None
            info = bridge.bridge if bridge is not None else None
            per_bridge = (
                None
                if info is None
                else (info.nf_call_iptables if family is Family.IPV4 else info.nf_call_ip6tables)
            )
            if not per_bridge or loaded is False:
                bypassed.append(p)
            if info is None and qbr is not None and loaded:
                untold.append(qbr)
        if not bypassed:
            continue
        sysctl_key = f"net.bridge.bridge-nf-call-{key}"
        evidence = [
            sysctl_evidence(sysctls, sysctl_key)
            if loaded
            else Evidence(
                "no net.bridge.bridge-nf-* key: br_netfilter is not loaded", sysctls.source
            )
        ]
        evidence += [
            Evidence(
                f"{qbr}: its own nf_call_{key} is not in the snapshot (ip -d link): assumed "
                "off, the kernel's default",
                _device_source(snap),
            )
            for qbr in untold[:1]
        ]
        evidence += [
            Evidence(f"port {p.port_id}: firewall {p.firewall}", "inventory") for p in bypassed
        ]
        findings.append(
            Finding(
                check="bridge-nf-call-off",
                severity=Severity.CRITICAL,
                title=(
                    f"{len(bypassed)} ports use the {bypassed[0].firewall} firewall but "
                    + (f"{sysctl_key} = 0" if loaded else "br_netfilter is not loaded")
                    + f": {key} never sees their bridged traffic, so their security groups are bypassed"
                ),
                subject=sysctl_key,
                evidence=capped(evidence, "ports"),
                confirm=f"sysctl {sysctl_key}; lsmod | grep br_netfilter",
            )
        )
    return CheckResult(tuple(findings))


def _neutron_rules(snap: Snapshot, family: Family) -> bool:
    """Whether the main namespace's ruleset of ``family`` holds Neutron's firewall chains."""
    ruleset = snap.main.ruleset(family)
    if ruleset is None:
        return False
    return any(name.startswith("neutron-") for t in ruleset.tables.values() for name in t.chains)


def rp_filter_tunnels(snap: Snapshot, inv: Inventory) -> CheckResult:
    """Strict rp_filter on the device tunnel packets arrive on, when the route back to the
    remote VTEP leaves by another device: the kernel drops every encapsulated packet."""
    if snap.ovs is None:
        return CheckResult()
    sysctls = snap.main.sysctls
    findings: list[Finding] = []
    not_run: list[NotRun] = []
    for bridge in snap.ovs.bridges:
        datapath = bridge.ovsdb.datapath_type if bridge.ovsdb is not None else ""
        if datapath == "netdev":
            continue  # a userspace datapath's tunnel packets never reach the kernel's IP stack
        for port in bridge.ports:
            iface = port.interface
            if (
                iface is None
                or not iface.is_tunnel
                or iface.remote_ip is None
                or iface.local_ip is None
            ):
                continue
            try:
                remote, local = ip_address(iface.remote_ip), ip_address(iface.local_ip)
            except ValueError:
                continue
            owner = snap.topology.owner_of(local)
            if owner is None:
                continue
            mode = sysctls.rp_filter(owner.name)
            if mode is None:
                not_run.append(
                    NotRun(
                        "rp-filter-strict",
                        f"rp_filter of {owner.name} not captured",
                        f"sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.{owner.name}.rp_filter",
                    )
                )
                continue
            ok, why = reverse_path_ok(snap.topology, remote, owner.name, mode)
            if ok is not False:
                continue
            findings.append(
                Finding(
                    check="rp-filter-strict",
                    severity=Severity.CRITICAL,
                    title=f"tunnel {port.name}: packets from {remote} arrive on {owner.name} (it holds {local}); {why}",
                    subject=f"{port.name} on {owner.name}",
                    evidence=(
                        sysctl_evidence(sysctls, "net.ipv4.conf.all.rp_filter"),
                        sysctl_evidence(sysctls, f"net.ipv4.conf.{owner.name}.rp_filter"),
                        Evidence(
                            f"{port.name}: options remote_ip={remote}, local_ip={local}",
                            snap.ovs.ovsdb.source if snap.ovs.ovsdb is not None else snap.source,
                        ),
                    ),
                    confirm=f"ip route get {remote}; sysctl net.ipv4.conf.{owner.name}.rp_filter",
                )
            )
    return CheckResult(tuple(findings), tuple(not_run))


def conntrack_fill(snap: Snapshot, inv: Inventory) -> CheckResult:
    """nf_conntrack_count against nf_conntrack_max."""
    sysctls = snap.main.sysctls
    count = sysctls.number("net.netfilter.nf_conntrack_count")
    max_key = "net.netfilter.nf_conntrack_max"
    maximum = sysctls.number(max_key)
    if maximum is None:
        max_key = "net.nf_conntrack_max"
        maximum = sysctls.number(max_key)
    if count is None or maximum is None:
        return CheckResult(
            not_run=(
                NotRun(
                    "conntrack-near-max",
                    "nf_conntrack_count and nf_conntrack_max were not captured",
                    "sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max",
                ),
            )
        )
    if maximum <= 0 or count < CONNTRACK_WARNING * maximum:
        return CheckResult()
    severity = Severity.CRITICAL if count >= CONNTRACK_CRITICAL * maximum else Severity.WARNING
    return CheckResult(
        (
            Finding(
                check="conntrack-near-max",
                severity=severity,
                title=f"the conntrack table holds {count} of {maximum} entries ({100 * count // maximum}%): when full, new connections are dropped",
                subject="nf_conntrack",
                evidence=(
                    sysctl_evidence(sysctls, "net.netfilter.nf_conntrack_count"),
                    sysctl_evidence(sysctls, max_key),
                ),
                confirm="sysctl net.netfilter.nf_conntrack_count net.netfilter.nf_conntrack_max; dmesg | grep 'table full'",
            ),
        )
    )
