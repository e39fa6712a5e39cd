"""``nodetrace show``: the node inventory as text for people.

Values the snapshot does not give are printed as such ("not in the snapshot"), never as the
default Open vSwitch or the kernel would use; where each inferred value was read is in
``--format json`` (``sources``), and notes say what could not be told.
"""

from __future__ import annotations

from nodetrace.model.node_inventory import Inventory, OvsPortSummary, PortInfo, PortKind
from nodetrace.render.screen import PLAIN, Screen

DIAGNOSTICS_SHOWN = 20
LOCAL = 65534


def _port_line(p: OvsPortSummary) -> str:
    number = "LOCAL" if p.ofport == LOCAL else (str(p.ofport) if p.ofport is not None else "?")
    bits: list[str] = []
    if p.tag is not None:
        bits.append(f"tag {p.tag}")
    if p.trunks:
        bits.append("trunks " + ",".join(map(str, p.trunks)))
    if p.peer:
        bits.append(f"peer {p.peer}")
    if p.remote_ip is not None:
        bits.append(f"remote {p.remote_ip} key {p.key or 0}")
    if p.iface_id:
        bits.append(f"Neutron port {p.iface_id}")
    detail = f"  {', '.join(bits)}" if bits else ""
    kind = p.type if p.type is not None else "?"
    return f"    {number:>5} {p.name:<18} {kind:<8} {p.flows:>4} flows{detail}"


def _network(p: PortInfo) -> str:
    if p.network_type is None:
        return ""
    seg = f" {p.segmentation_id.value}" if p.segmentation_id is not None else ""
    return f" ({p.network_type.value}{seg})"


def _port(p: PortInfo, out: list[str], unflowed: set[str]) -> None:
    add = out.append
    mac = f"  mac {p.mac.value}" if p.mac is not None else "  mac unknown"
    kind = "" if p.kind is PortKind.VM else f"  {p.kind.value}"
    add(f"  {p.port_id}{mac}{kind}")
    if p.devices:
        where = f" [netns {p.namespace}]" if p.namespace else ""
        add(f"    devices: {', '.join(p.devices)}{where}")
    if p.bridge is not None:
        tag = f", tag {p.local_vlan.value}" if p.local_vlan is not None else ", tag unknown"
        ofport = p.ofport if p.ofport is not None else "?"
        flows = (
            f"flows of {p.bridge} not captured"
            if p.bridge in unflowed
            else f"{p.flows} flows name its port or MAC"
        )
        add(f"    ovs: {p.bridge} port {ofport} ({p.ovs_port}){tag}{_network(p)}; {flows}")
    if p.ips:
        add(f"    addresses: {', '.join(str(ip.value) for ip in p.ips)}")
    if p.firewall is not None:
        add(f"    firewall: {p.firewall}")
    if p.chains:
        chains = ", ".join(
            f"{name} ({rules} rules)" for name, rules in zip(p.chains, p.chain_rules, strict=True)
        )
        add(f"    chains: {chains}")
    if p.zone is not None:
        add(f"    conntrack zone: {p.zone.value}")
    for note in p.notes:
        add(f"    note: {note}")


def render_show(inv: Inventory, screen: Screen = PLAIN) -> str:
    out: list[str] = []
    add = out.append

    def section(title: str) -> None:
        out.extend(("", title))

    node = inv.node
    host = node.hostname.value if node.hostname is not None else "(hostname not in the snapshot)"
    kernel = node.kernel.value if node.kernel is not None else "?"
    add(f"Node {host}  kernel {kernel}  ({node.source_kind} {node.source})")
    if node.collected_at:
        add(f"  collected {node.collected_at}")
    brnf = {True: "on", False: "off", None: "unknown"}[node.br_netfilter]
    add(f"  iptables: {node.iptables}; br_netfilter (bridge-nf-call-iptables): {brnf}")
    add("")
    if inv.ovs_bridges:
        add("Open vSwitch bridges")
    elif node.ovs_evidence:
        add(
            f"Open vSwitch: runs on this node ({node.ovs_evidence}), but its bridges, ports and "
            "flows are not in the snapshot (see below)"
        )
        if node.ovs_bridge_names:
            add(f"  bridges (ovs-vsctl list-br): {', '.join(node.ovs_bridge_names)}")
    else:
        add("Open vSwitch: not in the snapshot")
    for b in inv.ovs_bridges:
        flows = "flows not captured" if b.flows is None else f"{b.flows} flows"
        dp = (
            f"{b.datapath_type} datapath"
            if b.datapath_type
            else "datapath type not in the snapshot"
        )
        fail = f"fail_mode {b.fail_mode}" if b.fail_mode else "fail_mode not in the snapshot"
        add(f"  {b.name} ({dp}, {fail}, {flows})")
        for sp in b.ports:
            add(_port_line(sp))
    section("Linux bridges" if inv.linux_bridges else "Linux bridges: none")
    for lb in inv.linux_bridges:
        where = f" [netns {lb.namespace}]" if lb.namespace else ""
        learning = (
            "never learns (ageing_time 0): floods"
            if lb.ageing_time == 0
            else ("learns" if lb.ageing_time is not None else "learning not in the snapshot")
        )
        nf = {
            True: "iptables sees bridged IPv4",
            False: "br_netfilter off",
            None: "br_netfilter state unknown",
        }[lb.nf_call_iptables]
        add(f"  {lb.name}{where}: {learning}; {nf}")
        add(f"    ports: {', '.join(lb.ports) or '(none)'}")
    if inv.segments:
        section("Networks by local VLAN")
        for s in inv.segments:
            seg = f" {s.segmentation_id.value}" if s.segmentation_id is not None else ""
            add(f"  VLAN {s.local_vlan}: {s.network_type.value}{seg}")
    unflowed = {b.name for b in inv.ovs_bridges if b.flows is None}
    vms = [p for p in inv.ports if p.kind is PortKind.VM]
    others = [p for p in inv.ports if p.kind is not PortKind.VM]
    section(f"VMs by Neutron port ({len(vms)})" if vms else "VMs: no Neutron ports found")
    for vm in vms:
        _port(vm, out, unflowed)
    if others:
        section(f"Other Neutron ports ({len(others)})")
        for other in others:
            _port(other, out, unflowed)
    if inv.namespaces:
        section("Other namespaces")
        for space in inv.namespaces:
            rules = (
                f"{space.iptables_rules} iptables rules"
                if space.iptables_rules is not None
                else "iptables rules not in the snapshot"
            )
            names = f" ({', '.join(space.interfaces)})" if space.interfaces else ""
            add(f"  {space.name}: {len(space.interfaces)} interfaces{names}, {rules}")
    if inv.missing or inv.notes:
        section("Not in the snapshot")
        for m in inv.missing:
            ns = f" in namespace {m.namespace}" if m.namespace else ""
            collect = f" (collect with `{m.command}`)" if m.command else ""
            add(f"  {m.what}{ns}: {m.reason}{collect}")
        for note in inv.notes:
            add(f"  {note}")
    if inv.snapshot_notes:
        section("How the snapshot was read")
        for note in inv.snapshot_notes:
            add(f"  {note}")
    if inv.diagnostics:
        section(f"Problems reading the snapshot ({len(inv.diagnostics)})")
        for d in inv.diagnostics[:DIAGNOSTICS_SHOWN]:
            add(f"  {d}")
        if len(inv.diagnostics) > DIAGNOSTICS_SHOWN:
            rest = len(inv.diagnostics) - DIAGNOSTICS_SHOWN
            add(f"  ... and {rest} more (--format json lists all)")
    section("Where each value was read: --format json (sources).")
    # A line too wide for the screen continues below itself, indented one step further.
    wrapped = [x for line in out for x in screen.wrap(line, len(line) - len(line.lstrip()) + 4)]
    return "\n".join(wrapped) + "\n"
