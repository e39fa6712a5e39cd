"""Build one compute node of a lab: its namespace, Open vSwitch, hybrid-plugged VMs and rules.

The node is exactly what :func:`nodetrace.neutron.generate.generate_node` describes: br-int,
br-tun and br-phys (userspace datapath) with the agent's ports and flows, each VM a namespace
whose ``eth0`` is the peer of the ``tap`` in the port's ``qbr`` Linux bridge, the ``qvb``/``qvo``
pair into br-int, and the firewall's iptables rules and ipsets loaded with the real restore
tools. Links and addresses go through netlink (pyroute2); OVS and iptables through their tools.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import NetNS

from nodetrace.lab.ovs import OvsInstance, start_ovs
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import CommandError, run
from nodetrace.lab.state import NodeInfo, VmInfo
from nodetrace.neutron.generate import NodeState, VmPort
from nodetrace.neutron.ovs_agent import BR_PHYS, UNDERLAY_NIC
from nodetrace.neutron.ovs_firewall import uses_native_firewall
from nodetrace.neutron.scenario import IPAddress

BACKENDS = ("legacy", "nft")
OPENFLOW_PROTOCOLS = "OpenFlow10,OpenFlow13"
"""The agent talks OpenFlow 1.3; 1.0 stays on so plain ``ovs-ofctl`` works too."""
UNDERLAY_PREFIX = 24


@contextlib.contextmanager
def netlink(netns: str) -> Iterator[Any]:
    """A pyroute2 handle on an existing namespace (``flags=0``: never create one by accident)."""
    handle = NetNS(netns, flags=0)
    try:
        yield handle
    finally:
        handle.close()


def link_index(nl: Any, ifname: str) -> int:
    """The index of ``ifname`` in the namespace ``nl`` talks to; a clear error if it is not
    there (yet)."""
    found = nl.link_lookup(ifname=ifname)
    if not found:
        raise CommandError(f"interface {ifname} did not appear")
    return int(found[0])


def _veth_into(nl: Any, ifname: str, peer: str, peer_netns: str) -> None:
    """A veth pair whose ``peer`` end is created right inside ``peer_netns``."""
    fd = os.open(f"/run/netns/{peer_netns}", os.O_RDONLY)
    try:
        nl.link("add", ifname=ifname, kind="veth", peer={"ifname": peer, "net_ns_fd": fd})
    finally:
        os.close(fd)


def sysctl(netns: str, *settings: str) -> None:
    """Set sysctls inside ``netns`` (``key=value``), all in one call."""
    run(["sysctl", "-q", "-w", *settings], netns=netns)


@dataclass(frozen=True, slots=True)
class BuiltNode:
    info: NodeInfo
    vms: tuple[VmInfo, ...]
    ovs: OvsInstance


def vm_netns(lab: str, vm: str) -> str:
    return f"{lab}-{vm}"


def node_netns(lab: str, node: str) -> str:
    return f"{lab}-{node}"


def build_node(
    res: Resources,
    state: NodeState,
    *,
    lab: str,
    rundir: Path,
    backend: str,
    underlay_netns: str,
    underlay_port: str,
) -> BuiltNode:
    """Create the node ``state`` describes; every namespace and daemon goes through ``res``.

    ``underlay_port`` names the node's end of the underlay cable inside ``underlay_netns``,
    where the caller attaches it to the underlay switch.
    """
    if backend not in BACKENDS:
        raise CommandError(f"iptables backend {backend!r}: expected legacy or nft")
    netns = res.add_netns(node_netns(lab, state.name))
    # IPv6 off on the node's own devices keeps router solicitations and DAD out of traces;
    # bridged IPv6 frames of VMs still pass (and still reach ip6tables).
    sysctl(
        netns,
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
        "net.bridge.bridge-nf-call-iptables=1",
        "net.bridge.bridge-nf-call-ip6tables=1",
    )
    with netlink(netns) as nl:
        _veth_into(nl, UNDERLAY_NIC, underlay_port, underlay_netns)
        nl.link("set", index=link_index(nl, UNDERLAY_NIC), state="up")
    native = uses_native_firewall(state.scenario)
    vms = tuple(_plug_vm(res, netns, vp, lab, native=native) for vp in state.vm_ports)
    from nodetrace.lab import metadata, router  # they build on this module

    router.plug_outside(res, state, lab=lab, node_netns=netns)
    ovs = start_ovs(res, netns, rundir)
    _configure_ovs(ovs, state)
    with netlink(netns) as nl:
        br = link_index(nl, BR_PHYS)
        nl.addr("add", index=br, address=str(state.node.underlay_ip), prefixlen=UNDERLAY_PREFIX)
        nl.link("set", index=br, state="up")
    for bridge in state.bridges:
        text = state.add_flows_text(bridge)
        if text:
            ovs.ofctl("-O", "OpenFlow13", "add-flows", bridge, "-", stdin=text)
    load_firewall(netns, state, backend)
    routers = router.build_routers(res, state, lab=lab, node_netns=netns, backend=backend)
    metadata.start_metadata_proxies(res, state, lab=lab, rundir=rundir)
    info = NodeInfo(state.name, netns, str(rundir), str(state.node.underlay_ip), routers)
    return BuiltNode(info, vms, ovs)


def load_firewall(netns: str, state: NodeState, backend: str) -> None:
    """ipsets first (rules name them), then both families with the chosen iptables."""
    fw = state.firewall
    if not fw.iptables_save and not fw.ip6tables_save:
        return  # the native OVS firewall: security groups are flows, iptables stays empty
    if fw.ipsets:
        run(["ipset", "restore"], netns=netns, input=fw.ipset_restore)
    run([f"iptables-{backend}-restore"], netns=netns, input=fw.iptables_save)
    run([f"ip6tables-{backend}-restore"], netns=netns, input=fw.ip6tables_save)


def _plug_vm(res: Resources, node_ns: str, vp: VmPort, lab: str, *, native: bool) -> VmInfo:
    """os-vif's plug (hybrid, or the tap straight into br-int for the native OVS firewall),
    with a namespace standing in for the VM behind the tap."""
    port, dev, mtu = vp.port, vp.devices, vp.mtu
    vm_ns = res.add_netns(vm_netns(lab, port.name))
    if not port.ips(6):
        sysctl(vm_ns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    else:
        # No duplicate address detection: the addresses are usable as soon as `up` returns.
        sysctl(vm_ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    if native:
        # The native OVS firewall: the tap itself is the br-int port, no qbr/qvb/qvo.
        with netlink(node_ns) as nl:
            _veth_into(nl, dev.tap, "eth0", vm_ns)
            nl.link("set", index=link_index(nl, dev.tap), mtu=mtu, state="up")
    else:
        _hybrid_plug(node_ns, vm_ns, vp)
    addresses = [_with_prefix(ip, vp) for ip in port.fixed_ips]
    with netlink(vm_ns) as nl:
        eth = link_index(nl, "eth0")
        nl.link("set", index=eth, address=port.mac, mtu=mtu)
        for ip, plen in addresses:
            nl.addr("add", index=eth, address=ip, prefixlen=plen)
        nl.link("set", index=eth, state="up")
    # OVS's userspace datapath reads the veth through AF_PACKET and never fills in checksums the
    # kernel left partial: without this, ICMP works but TCP and UDP are dropped as corrupt.
    run(["ethtool", "-K", "eth0", "tx", "off"], netns=vm_ns)
    ips = tuple(f"{ip}/{plen}" for ip, plen in addresses)
    return VmInfo(port.name, port.node, vm_ns, port.id, port.mac, ips, vp.network.name, mtu)


def _hybrid_plug(node_ns: str, vm_ns: str, vp: VmPort) -> None:
    """os-vif's hybrid plug: tap → qbr Linux bridge → qvb/qvo veth into br-int."""
    dev, mtu = vp.devices, vp.mtu
    with netlink(node_ns) as nl:
        _veth_into(nl, dev.tap, "eth0", vm_ns)
        nl.link("add", ifname=dev.qbr, kind="bridge", br_ageing_time=0)
        nl.link("add", ifname=dev.qvb, kind="veth", peer={"ifname": dev.qvo})
        qbr = link_index(nl, dev.qbr)
        for ifname in (dev.tap, dev.qvb, dev.qvo):
            nl.link("set", index=link_index(nl, ifname), mtu=mtu)
        for ifname in (dev.tap, dev.qvb):
            nl.link("set", index=link_index(nl, ifname), master=qbr)
        for ifname in (dev.qbr, dev.tap, dev.qvb, dev.qvo):
            nl.link("set", index=link_index(nl, ifname), state="up")


def _with_prefix(ip: IPAddress, vp: VmPort) -> tuple[str, int]:
    """The address with its network's prefix length (a host route if the network has no cidr
    of that family)."""
    cidr = vp.network.subnet(ip.version)
    if cidr is not None:
        return str(ip), cidr.prefixlen
    return str(ip), ip.max_prefixlen


def _configure_ovs(ovs: OvsInstance, state: NodeState) -> None:
    """Bridges and every port in one transaction, then a check that each came up as planned.

    ``ofport_request`` pins the port numbers the generated flows use.
    """
    args: list[str] = []
    for bridge in state.bridges:
        args += [
            "--", "add-br", bridge,
            "--", "set", "bridge", bridge, "datapath_type=netdev", "fail-mode=secure",
            f"protocols={OPENFLOW_PROTOCOLS}",
        ]  # fmt: skip
    for p in state.ovs_ports:
        args += ["--", "add-port", p.bridge, p.name]
        if p.tag is not None:
            args.append(f"tag={p.tag}")
        iface = ["--", "set", "interface", p.name, f"ofport_request={p.ofport}"]
        if p.type:
            iface.append(f"type={p.type}")
        iface += [f"options:{k}={_quote(v)}" for k, v in p.options]
        iface += [f"external_ids:{k}={_quote(v)}" for k, v in p.external_ids]
        args += iface
    ovs.vsctl(*args)
    check_ovs_ports(ovs, state.ovs_ports, state.bridges)


def _quote(value: str) -> str:
    # ovs-vsctl parses values as OVSDB atoms: strings with ':' or '-' need quotes.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_ovs_ports(ovs: OvsInstance, ports: Sequence[Any], bridges: Sequence[str]) -> None:
    """Fail loudly if a bridge or port has an error or a different number than requested
    (``ovs-vsctl`` itself exits 0 when a netdev could not be opened)."""
    columns = ("--format=csv", "--data=bare", "--no-headings", "--columns=name,ofport,error")
    out = ovs.vsctl(*columns, "list", "interface")
    seen: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        name, ofport, error = [*line.split(",", 2), "", ""][:3]
        seen[name] = (ofport, error.strip('"'))
    problems = []
    for bridge in bridges:
        ofport, error = seen.get(bridge, ("", "missing"))
        if error:
            problems.append(f"bridge {bridge}: {error}")
    for p in ports:
        ofport, error = seen.get(p.name, ("", "missing"))
        if error:
            problems.append(f"port {p.name}: {error}")
        elif ofport != str(p.ofport):
            problems.append(f"port {p.name}: got OpenFlow port {ofport}, wanted {p.ofport}")
    if problems:
        raise CommandError("Open vSwitch did not set up the node: " + "; ".join(problems))
