"""``nodetrace show SNAPSHOT``: what is on this node — bridges and their ports, the VMs by
Neutron port with their devices, chains and flows, the other namespaces, and what the snapshot
lacks.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

from nodetrace.cli import EXIT_NOTHING_USABLE
from nodetrace.model.netfilter import Backend
from nodetrace.model.openflow import Flow, Output, PortName, PortNumber
from nodetrace.model.ovs_switch import BridgeState, SwitchPort
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.neutron import naming
from nodetrace.render.json import dumps
from nodetrace.snapshot.load import load

PREFIX_LEN = naming.MAX_CHAIN_LEN_WRAP - 1
"""Characters of the port UUID every Neutron name keeps: chains keep 10 (``i`` + 10), devices
11 (``tap`` + 11); the shorter one joins them."""


@dataclass(frozen=True)
class PortLine:
    ofport: int | None
    name: str
    kind: str
    detail: str
    flows: int


@dataclass(frozen=True)
class BridgeSummary:
    name: str
    datapath: str
    fail_mode: str
    flows: int | None
    ports: tuple[PortLine, ...]


@dataclass(frozen=True)
class LinuxBridgeSummary:
    name: str
    netns: str
    learning: str
    netfilter: str
    ports: tuple[str, ...]


@dataclass(frozen=True)
class ChainSummary:
    name: str
    rules: int


@dataclass
class VmSummary:
    """One Neutron port plugged into this node."""

    port: str
    """The full port UUID when OVSDB names it (``iface-id``), else the prefix in device names."""
    mac: str | None = None
    devices: list[str] = field(default_factory=list)
    ovs: str = ""
    """``br-int port 5 (qvo...), tag 1``."""
    chains: list[ChainSummary] = field(default_factory=list)
    zone: int | None = None
    flows: int = 0


@dataclass(frozen=True)
class NodeSummary:
    source: str
    source_kind: str
    host: str
    kernel: str
    collected_at: str
    iptables: str
    br_netfilter: str
    ovs_bridges: tuple[BridgeSummary, ...]
    linux_bridges: tuple[LinuxBridgeSummary, ...]
    vms: tuple[VmSummary, ...]
    namespaces: tuple[str, ...]
    missing: tuple[str, ...]
    notes: tuple[str, ...]
    diagnostics: tuple[str, ...]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "show",
        help="summarise a node snapshot: bridges, ports, VMs, chains and flows",
        description="Read a snapshot (bundle, sosreport or folder of command outputs; folder "
        "or archive) and summarise the node: Open vSwitch and Linux bridges with their ports, "
        "the VMs by Neutron port with their devices, iptables chains and OpenFlow flows, the "
        "other namespaces, and what the snapshot does not contain.",
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    snap = load(args.snapshot)
    summary = summarise(snap)
    if args.format == "json":
        print(dumps(summary, indent=2))
    else:
        sys.stdout.write(render(summary))
    if (
        not snap.raw
        and snap.ovs is None
        and not snap.topology.interfaces
        and not any(ns.iptables is not None for ns in snap.namespaces)
    ):
        print(f"nodetrace: error: nothing usable: {args.snapshot} holds no known command output",
              file=sys.stderr)  # fmt: skip
        return EXIT_NOTHING_USABLE
    return 0


def _port_flows(flows: tuple[Flow, ...], port: SwitchPort) -> int:
    count = 0
    for f in flows:
        ref = f.in_port
        hit = (isinstance(ref, PortNumber) and ref.number == port.ofport) or (
            isinstance(ref, PortName) and ref.name == port.name
        )
        if not hit:
            for a in f.actions:
                if isinstance(a, Output) and (
                    (isinstance(a.port, PortNumber) and a.port.number == port.ofport)
                    or (isinstance(a.port, PortName) and a.port.name == port.name)
                ):
                    hit = True
                    break
        count += int(hit)
    return count


def _port_line(bridge: BridgeState, port: SwitchPort) -> PortLine:
    iface, db = port.interface, port.port
    kind = port.type or "system"
    bits: list[str] = []
    if db is not None and db.tag is not None:
        bits.append(f"tag {db.tag}")
    if db is not None and db.trunks:
        bits.append("trunks " + ",".join(map(str, db.trunks)))
    if iface is not None:
        if iface.peer:
            bits.append(f"peer {iface.peer}")
        if iface.is_tunnel:
            bits.append(f"remote {iface.remote_ip} key {iface.out_key or 0}")
        if iface.iface_id:
            bits.append(f"Neutron port {iface.iface_id}")
    flows = bridge.flows.flows if bridge.flows is not None else ()
    return PortLine(
        port.ofport, port.name, kind or "system", ", ".join(bits), _port_flows(flows, port)
    )


def summarise(snap: Snapshot) -> NodeSummary:
    bridges: list[BridgeSummary] = []
    vms: dict[str, VmSummary] = {}

    def vm(prefix: str) -> VmSummary:
        key = prefix[:PREFIX_LEN]
        if key not in vms:
            vms[key] = VmSummary(port=prefix)
        found = vms[key]
        if len(prefix) > len(found.port):
            found.port = prefix
        return found

    if snap.ovs is not None:
        for b in snap.ovs.bridges:
            ports = tuple(
                _port_line(b, p) for p in sorted(b.ports, key=lambda p: (p.ofport or 0, p.name))
            )
            dp = b.ovsdb.datapath_type if b.ovsdb is not None else ""
            fail = b.ovsdb.fail_mode if b.ovsdb is not None else ""
            bridges.append(
                BridgeSummary(
                    b.name, dp or "system", fail or "standalone",
                    len(b.flows.flows) if b.flows is not None else None, ports,
                )
            )  # fmt: skip
            for p, line in zip(
                sorted(b.ports, key=lambda p: (p.ofport or 0, p.name)), ports, strict=True
            ):
                iface = p.interface
                device = naming.parse_device_name(p.name)
                port_id = iface.iface_id if iface is not None and iface.iface_id else None
                if port_id is None and device is not None:
                    port_id = device.port_prefix
                if port_id is None:
                    continue
                v = vm(port_id)
                v.ovs = f"{b.name} port {p.ofport} ({p.name})" + (
                    f", tag {p.port.tag}" if p.port is not None and p.port.tag is not None else ""
                )
                v.flows += line.flows
                if iface is not None and iface.attached_mac:
                    v.mac = iface.attached_mac
    linux: list[LinuxBridgeSummary] = []
    topo = snap.topology
    for ns in topo.namespaces:
        for br in topo.linux_bridges(ns):
            info = br.bridge
            learning = (
                "never learns (ageing_time 0): floods"
                if info is not None and info.ageing_time == 0
                else "learns"
            )
            sysctl = (snap.namespace(ns) or snap.main).sysctls.bridge_nf_call(Family.IPV4)
            nf = (
                "iptables sees bridged IPv4"
                if sysctl or (info and info.nf_call_iptables)
                else ("br_netfilter off" if sysctl is False else "br_netfilter state unknown")
            )
            members = tuple(p.name for p in topo.ports_of(br.name, ns))
            linux.append(LinuxBridgeSummary(br.name, ns, learning, nf, members))
    for link in topo.in_namespace(MAIN_NS):
        found = naming.parse_device_name(link.name)
        if found is not None:
            vm(found.port_prefix).devices.append(link.name)
    rules = snap.main.iptables
    if rules is not None:
        filt = rules.tables.get("filter")
        for chain in filt.chains.values() if filt is not None else ():
            parsed = naming.parse_chain_name(chain.name)
            if parsed is None:
                continue
            v = vm(parsed.port_prefix)
            v.chains.append(ChainSummary(chain.name, len(chain.rules)))
        raw_texts = [r.text for r in rules.rules() if r.table == "raw"]
        for z in naming.zones_from_rule_texts(raw_texts):
            v = vm(z.port_id)
            v.zone = z.zone
    ns_lines = []
    for state in snap.namespaces:
        if state.name == MAIN_NS:
            continue
        count = sum(1 for _ in topo.in_namespace(state.name))
        nrules = sum(1 for _ in state.iptables.rules()) if state.iptables is not None else 0
        ns_lines.append(f"{state.name}: {count} interfaces, {nrules} iptables rules")
    backend = snap.main.iptables.backend if snap.main.iptables is not None else Backend.UNKNOWN
    ipt = backend.value if snap.main.iptables is not None else "no ruleset"
    if snap.main.other_backend:
        ipt += " (rules in the other backend too: the kernel applies both)"
    brnf = snap.main.sysctls.bridge_nf_call(Family.IPV4)
    return NodeSummary(
        source=snap.source,
        source_kind=snap.source_kind.value,
        host=snap.host,
        kernel=snap.kernel,
        collected_at=snap.collected_at,
        iptables=ipt,
        br_netfilter={True: "on", False: "off", None: "unknown"}[brnf],
        ovs_bridges=tuple(bridges),
        linux_bridges=tuple(linux),
        vms=tuple(sorted(vms.values(), key=lambda v: v.port)),
        namespaces=tuple(ns_lines),
        missing=tuple(str(m) for m in snap.missing),
        notes=snap.ovs.notes if snap.ovs is not None else (),
        diagnostics=tuple(str(d) for d in snap.diagnostics),
    )


def render(s: NodeSummary) -> str:
    out: list[str] = []
    add = out.append
    add(f"Node {s.host or '?'}  kernel {s.kernel or '?'}  ({s.source_kind} {s.source})")
    if s.collected_at:
        add(f"  collected {s.collected_at}")
    add(f"  iptables: {s.iptables}; br_netfilter (bridge-nf-call-iptables): {s.br_netfilter}")
    add("")
    add("Open vSwitch bridges" if s.ovs_bridges else "Open vSwitch: not in the snapshot")
    for b in s.ovs_bridges:
        flows = "flows not captured" if b.flows is None else f"{b.flows} flows"
        add(f"  {b.name} ({b.datapath} datapath, fail_mode {b.fail_mode}, {flows})")
        for p in b.ports:
            number = (
                "LOCAL" if p.ofport == 65534 else (str(p.ofport) if p.ofport is not None else "?")
            )
            detail = f"  {p.detail}" if p.detail else ""
            add(f"    {number:>5} {p.name:<18} {p.kind:<8} {p.flows:>4} flows{detail}")
    add("")
    add("Linux bridges" if s.linux_bridges else "Linux bridges: none")
    for lb in s.linux_bridges:
        where = f" [netns {lb.netns}]" if lb.netns else ""
        add(f"  {lb.name}{where}: {lb.learning}; {lb.netfilter}")
        add(f"    ports: {', '.join(lb.ports) or '(none)'}")
    add("")
    add(f"VMs by Neutron port ({len(s.vms)})" if s.vms else "VMs: no Neutron ports found")
    for v in s.vms:
        mac = f"  mac {v.mac}" if v.mac else ""
        add(f"  {v.port}{mac}")
        if v.devices:
            add(f"    devices: {', '.join(sorted(v.devices))}")
        if v.ovs:
            add(f"    ovs: {v.ovs}; {v.flows} flows name this port")
        if v.chains:
            chains = ", ".join(f"{c.name} ({c.rules} rules)" for c in v.chains)
            add(f"    chains: {chains}")
        if v.zone is not None:
            add(f"    conntrack zone: {v.zone}")
    if s.namespaces:
        add("")
        add("Other namespaces")
        for line in s.namespaces:
            add(f"  {line}")
    if s.missing or s.notes:
        add("")
        add("Not in the snapshot")
        for m in (*s.missing, *s.notes):
            add(f"  {m}")
    if s.diagnostics:
        add("")
        add(f"Problems reading the snapshot ({len(s.diagnostics)})")
        for d in s.diagnostics[:20]:
            add(f"  {d}")
        if len(s.diagnostics) > 20:
            add(f"  ... and {len(s.diagnostics) - 20} more (--format json lists all)")
    return "\n".join(out) + "\n"
