"""Send crafted packets through a running lab and record what really happened to them.

A :class:`LabProbe` watches the whole lab while it is open: a raw socket on every VM's ``eth0``
and on the interface of each outside namespace behind a node's br-ex (did the frame arrive?),
the kernel's TRACE output of every node and of every namespace the lab built for a node (its
routers'; legacy lines from the kernel log, or ``xtables-monitor --trace`` lines for
iptables-nft), with a ``-j TRACE`` rule at the top of each one's raw PREROUTING. Each
:meth:`LabProbe.send` injects one frame, from a VM's ``eth0``, from the outside, or from the
underlay switch (VXLAN/GRE-encapsulated, or VLAN-tagged for provider networks, as a remote node
would send it), and returns an :class:`Observation`: where the frame arrived (after a router's
NAT too), the TRACE lines it caused in each namespace, and ``ofproto/trace`` of the OVS part.

What was captured is also read back, as observed traces (:class:`~nodetrace.model.trace.Trace`),
by nodetrace's own readers (the TRACE-log pipeline of ``nodetrace log``, explained with the ruleset
each node holds, and the ``ofproto/trace`` parser), so that the fidelity suite compares them with
simulated traces step by step (:func:`nodetrace.model.trace_diff.diff`).
"""

from __future__ import annotations

import random
import select
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_interface
from pathlib import Path
from typing import Any

from nodetrace.errors import DiagnosticSink, UsageError
from nodetrace.lab.capture import KernelTraceLog, TraceMonitor
from nodetrace.lab.dvr import fip_netns
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.node import netlink
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.resources import Resources, netns_exists
from nodetrace.lab.router import OUTSIDE_IFNAME, outside_netns, router_netns
from nodetrace.lab.run import Closing, run
from nodetrace.lab.send import Wire, frame_bytes
from nodetrace.lab.state import LabDir, LabInfo, NodeInfo, VmInfo
from nodetrace.model.openflow_trace import ActionRun, Bridge, Message, TableLookup, TraceNode
from nodetrace.model.packet import (
    ETH_TYPE_ARP,
    ETH_TYPE_IPV4,
    ETH_TYPE_IPV6,
    Family,
    IPProto,
    Packet,
)
from nodetrace.model.trace import NetfilterStep, OpenFlowStep, Outcome, Trace
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.l3_agent import BR_EX, EXTERNAL_NIC, RouterState
from nodetrace.neutron.ovs_agent import BR_INT, BR_PHYS, BR_TUN, UNDERLAY_NIC
from nodetrace.neutron.scenario import NetworkType, Scenario, load_scenario
from nodetrace.parsers.flow_syntax import FlowSpec
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree, parse_ovs_appctl_ofproto_trace
from nodetrace.tracelog.observed import ObservedPacket
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import open_bytes

UNDERLAY = "underlay"
REMOTE_MAC = "fa:16:3e:ee:ee:01"
"""The source MAC of a remote VM whose frames are sent in from the underlay."""
VXLAN_PORT = 4789
ARRIVAL_SETTLE = 0.02
"""How long to keep watching after the frame reached its place, for copies elsewhere."""


@dataclass(frozen=True, slots=True)
class Tunnel:
    """How a frame from the underlay is carried to its node."""

    type: NetworkType
    segmentation_id: int
    remote_node: str
    """The node the frame pretends to come from (OVS accepts tunnel packets only from peers)."""
    node: str
    """The node it is sent to."""


OUTSIDE = "outside"
"""Sources and targets ``outside:NODE``: the namespace behind the node's br-ex uplink, standing
for the upstream router and the internet."""


def outside_endpoint(node: str) -> str:
    return f"{OUTSIDE}:{node}"


@dataclass(frozen=True, slots=True)
class TracePoint:
    """Where ``ofproto/trace`` is run for a packet: on ``node``, from a VM's port, from the
    tunnel (or provider VLAN) of ``tunnel``, or from br-ex's uplink (``external``)."""

    node: str
    packet: Packet
    vm: str | None = None
    tunnel: Tunnel | None = None
    external: bool = False


@dataclass(frozen=True, slots=True)
class Observation:
    """What the real lab did with one packet."""

    packet: Packet
    source: str
    """A VM name, or ``underlay``."""
    arrived: tuple[str, ...]
    """The VMs whose ``eth0`` received the frame."""
    trace_lines: Mapping[str, tuple[str, ...]]
    """The packet's TRACE output per node, in the lab's format (``trace_format``)."""
    trace_format: str
    """``kernel`` (iptables-legacy, kernel log lines) or ``xtables`` (xtables-monitor --trace)."""
    netfilter: Mapping[str, tuple[Trace, ...]] = field(default_factory=dict)
    """The TRACE output read back per node (and per router namespace, by its name): one
    observed trace per pass through netfilter (a Linux bridge pass is one, a router's forwarding
    another), explained with the ruleset that node or namespace holds."""
    ofproto: Mapping[str, str] = field(default_factory=dict)
    """``ovs-appctl ofproto/trace`` output per node the packet enters OVS on."""
    ofproto_input: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """The bridge and flow ``ofproto/trace`` was given, per node."""
    tunnel: Tunnel | None = None

    @property
    def openflow(self) -> dict[str, Trace]:
        """``ofproto/trace`` of each node read back as an observed trace."""
        return {node: openflow_trace(text) for node, text in self.ofproto.items()}

    def bridge_pass(self, node: str, bridge: str) -> Trace | None:
        """What netfilter did to the packet on its way through Linux bridge ``bridge``."""
        return bridge_pass(self.netfilter.get(node, ()), bridge)

    def namespace_pass(self, netns: str) -> Trace | None:
        """What netfilter did to the packet in a router's namespace (its passes there, joined
        in order); ``None`` when it never got there."""
        passes = self.netfilter.get(netns, ())
        steps = tuple(s for t in passes for s in t.steps if isinstance(s, NetfilterStep))
        if not steps:
            return None
        if len(passes) == 1:
            return passes[0]
        last = passes[-1]
        return Trace(steps, last.outcome, reason=last.reason, packet=passes[0].packet)


def vm_for_address(info: LabInfo, addr: IPv4Address | IPv6Address) -> VmInfo | None:
    for vm in info.vms:
        if any(ip_interface(i).ip == addr for i in vm.ips):
            return vm
    return None


def _first_ip(vm: VmInfo, version: int) -> IPv4Address | IPv6Address | None:
    for text in vm.ips:
        ip = ip_interface(text).ip
        if ip.version == version:
            return ip
    return None


def complete_packet(
    info: LabInfo,
    spec: FlowSpec,
    source: str,
    *,
    to: str | None = None,
    rng: random.Random | None = None,
) -> Packet:
    """Fill in what the user left out: addresses from the source and destination VMs, a random
    IP ID (it identifies the frame on arrival), ports and ICMP fields."""
    rng = rng or random.Random()
    p = spec.packet
    if p.dl_type == ETH_TYPE_ARP:
        return _complete_arp(info, p, source, to)
    if not p.is_ip:
        raise UsageError("lab send sends IP or ARP packets: give ip, tcp, udp, icmp, arp...")
    version = 6 if p.dl_type == ETH_TYPE_IPV6 else 4
    fields: dict[str, object] = {}
    src_vm = info.vm(source) if source != UNDERLAY else None
    dst_vm = info.vm(to) if to else None
    if p.nw_dst is None:
        if dst_vm is None:
            raise UsageError("say where the packet goes: nw_dst=... in --packet, or --to VM")
        fields["nw_dst"] = _first_ip(dst_vm, version)
    elif dst_vm is None:
        dst_vm = vm_for_address(info, p.nw_dst)
    if p.nw_src is None:
        if src_vm is None:
            raise UsageError(
                "a packet from the underlay needs nw_src=... (the remote VM's address)"
            )
        fields["nw_src"] = _first_ip(src_vm, version)
    if p.dl_src == "00:00:00:00:00:00":
        fields["dl_src"] = src_vm.mac if src_vm else REMOTE_MAC
    if p.dl_dst == "00:00:00:00:00:00":
        if dst_vm is None:
            raise UsageError("the destination is not a lab VM: give dl_dst=... in --packet")
        fields["dl_dst"] = dst_vm.mac
    if p.ip_id == 0 and version == 4:
        fields["ip_id"] = rng.randrange(1, 0x10000)
    if p.nw_proto in (IPProto.TCP, IPProto.UDP):
        if p.tp_src is None:
            fields["tp_src"] = rng.randrange(32768, 61000)
        if p.tp_dst is None:
            raise UsageError("give the destination port: tp_dst=... in --packet")
    if p.nw_proto == IPProto.TCP and p.tcp_window == 0:
        fields["tcp_window"] = 64240
    if p.nw_proto in (IPProto.ICMP, IPProto.ICMPV6):
        if p.icmp_type is None:
            fields["icmp_type"] = 8 if p.nw_proto == IPProto.ICMP else 128
            fields["icmp_code"] = 0
        if p.icmp_id is None:
            fields["icmp_id"] = rng.randrange(1, 0x10000)
            fields["icmp_seq"] = 1
    packet = replace(p, **fields)  # type: ignore[arg-type]
    if packet.nw_src is None or packet.nw_dst is None or packet.nw_src.version != version:
        raise UsageError("source and destination must be addresses of the same IP version")
    return packet


def _complete_arp(info: LabInfo, p: Packet, source: str, to: str | None) -> Packet:
    """An ARP message from ``source``: a request for ``to``'s address (broadcast), or a reply
    (``arp_op=2``) sent to ``to``."""
    if source == UNDERLAY:
        raise UsageError("ARP from the underlay is not supported; send it from a VM")
    src = info.vm(source)
    dst = info.vm(to) if to else (vm_for_address(info, p.arp_tpa) if p.arp_tpa else None)
    op = p.arp_op or 1
    fields: dict[str, object] = {"arp_op": op}
    if p.dl_src == "00:00:00:00:00:00":
        fields["dl_src"] = src.mac
    if p.arp_sha is None:
        fields["arp_sha"] = src.mac
    if p.arp_spa is None:
        fields["arp_spa"] = _first_ip(src, 4)
    if p.arp_tpa is None:
        if dst is None:
            raise UsageError("say whose address the ARP is about: arp_tpa=... or --to VM")
        fields["arp_tpa"] = _first_ip(dst, 4)
    if p.dl_dst == "00:00:00:00:00:00":
        if op == 1:
            fields["dl_dst"] = "ff:ff:ff:ff:ff:ff"
        elif dst is not None:
            fields["dl_dst"] = dst.mac
        else:
            raise UsageError("an ARP reply needs its destination: dl_dst=... or --to VM")
    if p.arp_tha is None and op == 2 and dst is not None:
        fields["arp_tha"] = dst.mac
    return replace(p, **fields)  # type: ignore[arg-type]


class LabProbe(Closing):
    """Watch a lab while packets are sent through it (see the module docstring).

    ``mute_vms`` makes the VMs' own kernels ignore what arrives (a raw-table DROP inside each
    VM namespace, after the packet socket has seen the frame), so no reply or reset changes the
    conntrack state between the packets of an experiment.
    """

    def __init__(self, lab: LabDir, info: LabInfo, *, mute_vms: bool = False) -> None:
        if info.status != "ready":
            raise UsageError(f"lab {info.name} is not ready")
        self.lab = lab
        self.info = info
        self.mute_vms = mute_vms
        self.scenario: Scenario = load_scenario(lab.path / "scenario.toml")
        self.states: dict[str, NodeState] = {
            node.name: generate_node(self.scenario, node.name) for node in info.nodes
        }
        self.trace_format = "kernel" if info.backend == "legacy" else "xtables"
        self.routers: dict[str, tuple[str, RouterState]] = {
            router_netns(info.name, r): (node, r)
            for node, state in self.states.items()
            for r in state.routers
        }
        """Each router's namespace: its node and what the L3 agent set up there."""
        self.node_namespaces: dict[str, str] = {
            ns: node.name for node in info.nodes for ns in node.namespaces
        }
        """Every namespace the lab built for a node besides its own (its routers'), by name:
        TRACE output is read in each, whatever the agent that made it."""
        self._namespace_devices: dict[str, set[str]] = {}
        self.outsides: dict[str, str] = {
            outside_endpoint(node): outside_netns(info.name, node)
            for node, state in self.states.items()
            if BR_EX in state.bridges and netns_exists(outside_netns(info.name, node))
        }
        """``outside:NODE`` → the namespace behind the node's br-ex uplink."""
        self._stack = ExitStack()
        self._wires: dict[str, Wire] = {}
        self._monitors: dict[str, TraceMonitor] = {}
        self._kernel_log: KernelTraceLog | None = None
        self._rules: list[tuple[str, list[str]]] = []
        self._rng = random.Random()
        self._inputs: dict[str, tuple[str, str]] = {}
        self._books: dict[str, RuleBook] = {}

    # --- setup and teardown -------------------------------------------------------------

    def __enter__(self) -> LabProbe:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def close(self) -> None:
        self._stack.close()

    def _traced(self) -> dict[str, str]:
        """Where TRACE output is read, by name: each node (its own namespace) and each router
        (its namespace's name)."""
        return {n.name: n.netns for n in self.info.nodes} | {ns: ns for ns in self.node_namespaces}

    def _open(self) -> None:
        ipt = f"iptables-{self.info.backend}"
        for where, netns in self._traced().items():
            # A router's namespace has IPv4 rules only (the L3 agent's; IPv6 is off there).
            extra = where in self.node_namespaces
            tools = (ipt,) if extra else (ipt, f"ip6tables-{self.info.backend}")
            for tool in tools:
                if self.info.backend == "nft":
                    self._add_trace_rule_fresh(netns, tool)
                else:
                    self._add_rule(
                        netns, tool, ["-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"]
                    )
        if self.mute_vms:
            # The outside too: an answer from 8.8.8.8 would change the router's conntrack.
            muted = [vm.netns for vm in self.info.vms] + list(self.outsides.values())
            for netns in muted:
                for tool in (ipt, f"ip6tables-{self.info.backend}"):
                    self._add_rule(
                        netns, tool, ["-t", "raw", "-I", "PREROUTING", "1", "-j", "DROP"]
                    )
        self._books = {where: self._live_rules(netns) for where, netns in self._traced().items()}
        for netns in self.node_namespaces:
            with netlink(netns) as nl:
                names = {str(link.get_attr("IFLA_IFNAME")) for link in nl.get_links()}
            self._namespace_devices[netns] = names - {"lo"}
        for vm in self.info.vms:
            self._wires[vm.name] = self._stack.enter_context(Wire.open(_Host(vm.netns)))
        for endpoint, netns in self.outsides.items():
            self._wires[endpoint] = self._stack.enter_context(Wire.open(_Host(netns)))
        self.announce_vms()
        if self.trace_format == "kernel":
            res = Resources(Ledger(self.lab.ledger_path))
            self._kernel_log = self._stack.enter_context(KernelTraceLog(res))
        else:
            for where, netns in self._traced().items():
                self._monitors[where] = self._stack.enter_context(
                    TraceMonitor(netns, self.lab.path, "xtables")
                )

    def _add_trace_rule_fresh(self, netns: str, tool: str) -> None:
        """Put ``-j TRACE`` on top of raw PREROUTING by restoring the whole raw table with it.

        nf_tables numbers a table's chains and rules from one counter: a fresh
        ``iptables-nft-restore`` gives the chains 1..N and the rules N+1... in the order of
        their lines, which is what a prediction from ``iptables-nft-save`` can assume. A rule
        inserted later (``iptables-nft -I``) takes the next free handle instead, so every
        TRACE line of the raw table would name handles no saved ruleset shows. Restoring the
        table (without ``--noflush``) deletes and recreates it: its handles start afresh.
        """
        saved = run([f"{tool}-save", "-t", "raw"], netns=netns).stdout
        lines = saved.splitlines()
        if "*raw" not in lines:
            lines = ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", "COMMIT"]
        # Rules follow the chain declarations: the TRACE rule goes before the first one.
        at = next(
            (i for i, line in enumerate(lines) if line.startswith("-A ") or line == "COMMIT"),
        )
        lines.insert(at, "-A PREROUTING -j TRACE")
        run([f"{tool}-restore"], netns=netns, input="\n".join(lines) + "\n")
        self._stack.callback(
            run, [tool, "-t", "raw", "-D", "PREROUTING", "-j", "TRACE"], netns=netns, check=False
        )

    def _live_rules(self, netns: str) -> RuleBook:
        """The rules a node's kernel holds (its ``-j TRACE`` rule included), which its TRACE
        output is explained with, as ``nodetrace log --rules`` would."""
        book = RuleBook()
        for family, tool in ((Family.IPV4, "iptables"), (Family.IPV6, "ip6tables")):
            save = f"{tool}-{self.info.backend}-save"
            text = run([save], netns=netns).stdout
            book.rulesets[family] = parse_iptables_save(
                text, source=f"{save} in {netns}", family=family
            )
        return book

    def _add_rule(self, netns: str, tool: str, insert: list[str]) -> None:
        run([tool, *insert], netns=netns)
        delete = [a if a != "-I" else "-D" for a in insert]
        delete.remove("1")
        self._stack.callback(run, [tool, *delete], netns=netns, check=False)

    # --- sending ------------------------------------------------------------------------

    def announce_vms(self, *, settle: float = 0.1) -> None:
        """Have every VM send a gratuitous ARP, as running VMs keep doing.

        br-int learns each VM's MAC on its qvo port and the other nodes' br-tun learn it behind
        the tunnel (table 20), so unicast frames go to their VM instead of being flooded to all.
        """
        gateways = {
            p.network.name: p.interface.ip for _, r in self.routers.values() for p in r.internal
        }
        for vm in self.info.vms:
            ip = _first_ip(vm, 4)
            if not isinstance(ip, IPv4Address):
                continue
            wire = self._wires[vm.name]
            wire.send(frame_of(_arp_request(vm.mac, ip, ip)))
            if vm.network in gateways:
                # Asking for its gateway, as a VM does before its first routed packet, teaches
                # the router the VM's MAC (a request for the router's own address is learnt).
                wire.send(frame_of(_arp_request(vm.mac, ip, gateways[vm.network])))
        for endpoint in self.outsides:
            node = endpoint.split(":", 1)[1]
            mac, ip = self.outside_mac(endpoint), self._upstream(node)
            if ip is None:
                continue
            for _, r in self.routers.values():
                if r.gateway is not None and r.router.node == node:
                    request = _arp_request(mac, ip, r.gateway.interface.ip)
                    self._wires[endpoint].send(frame_of(request))
        self._announce_dvr_ports()
        time.sleep(settle)

    def _announce_dvr_ports(self) -> None:
        """A gratuitous ARP from each port of a snat- or fip- namespace (sg-, qg-, fg-), as
        their first packets in a running cloud do: every br-int learns where those MACs live
        (behind the tunnel, or on the node) instead of flooding frames for them."""
        ports: list[tuple[str, str, str, IPv4Address]] = []
        for node, state in self.states.items():
            for snat in state.snat_routers:
                netns = router_netns(self.info.name, snat)
                ports += [(netns, p.device, p.interface.mac, p.interface.ip) for p in snat.ports]
            for fip in state.fip_namespaces:
                netns = fip_netns(self.info.name, node, fip)
                ports.append((netns, fip.device, fip.gateway.mac, fip.gateway.ip))
        for netns, device, mac, ip in ports:
            with Wire.open(_Host(netns, device)) as wire:
                wire.send(frame_of(_arp_request(mac, ip, ip)))

    def _upstream(self, node: str) -> IPv4Address | None:
        """The outside's own address on the node's external network (the routers' next hop)."""
        return next(
            (
                r.router.upstream_gateway
                for n, r in self.routers.values()
                if n == node and r.router.upstream_gateway is not None
            ),
            None,
        )

    def outside_mac(self, endpoint: str) -> str:
        """The MAC of the outside's interface on br-ex's uplink."""
        return _mac_of(self.outsides[endpoint], OUTSIDE_IFNAME)

    def node(self, name: str) -> NodeInfo:
        return self.info.node(name)

    def ovs(self, node: str) -> OvsInstance:
        n_ = self.info.node(node)
        return OvsInstance(n_.netns, Path(n_.ovs_rundir))

    def send(
        self,
        packet: Packet,
        source: str,
        *,
        tunnel: Tunnel | None = None,
        wait: float = 0.3,
        ofproto: bool = True,
        trace_at: Sequence[TracePoint] | None = None,
        expect: str | None = None,
    ) -> Observation:
        """Inject ``packet`` at ``source`` (a VM, ``outside:NODE``, or ``underlay`` with
        ``tunnel``) and observe. ``trace_at``: where ``ofproto/trace`` runs (by default where
        the packet enters OVS, and on the far node of a tunnel). ``expect``: where it is meant
        to arrive; the wait ends early once it has (else after the first arrival anywhere),
        and in any case after ``wait`` seconds."""
        for wire in self._wires.values():
            wire.drain()
        if self._kernel_log is not None:
            self._kernel_log.records()
        marks = {name: len(m.text().splitlines()) for name, m in self._monitors.items()}
        if source == UNDERLAY:
            if tunnel is None:
                raise UsageError("a packet from the underlay needs its tunnel (or VLAN) and node")
            self._send_from_underlay(packet, tunnel)
        else:
            self._wires[source].send(frame_of(packet))
        arrived = self._arrivals(packet, wait, expect)
        lines, passes = self._traces(packet, marks)
        self._inputs = {}
        if not ofproto:
            traces = {}
        elif trace_at is not None:
            traces = {p.node: self._trace_point(p) for p in trace_at}
        else:
            traces = self._ofproto(packet, source, tunnel)
        return Observation(
            packet,
            source,
            arrived,
            lines,
            self.trace_format,
            passes,
            traces,
            dict(self._inputs),
            tunnel,
        )

    def _arrivals(self, packet: Packet, wait: float, expect: str | None) -> tuple[str, ...]:
        """Where the frame arrived, watching every wire at once: a routed packet crosses two
        nodes and a router, and reaches its place later than a flooded copy reaches a VM next
        door, or than some other frame (an ARP probe) reaches any wire."""
        arrived: list[str] = []
        deadline = time.monotonic() + wait
        settle: float | None = None
        while True:
            for name, wire in self._wires.items():
                frames = wire.receive(timeout=0.0)
                if name not in arrived and any(_same_packet(f.data, packet) for f in frames):
                    arrived.append(name)
            done = expect in arrived if expect is not None else bool(arrived)
            if done and settle is None:
                # Copies flooded elsewhere arrive about as fast: a moment more for them.
                settle = time.monotonic() + ARRIVAL_SETTLE
            now = time.monotonic()
            end = min(deadline, settle) if settle is not None else deadline
            if now >= end:
                return tuple(arrived)
            select.select([w.sock for w in self._wires.values()], [], [], end - now)

    def _traces(
        self, packet: Packet, marks: Mapping[str, int]
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[Trace, ...]]]:
        """The packet's TRACE lines and its passes through netfilter, per node."""
        captured: dict[str, list[str]] = {}
        if self._kernel_log is not None:
            # One kernel log for all nodes: each reads it with its own rules and keeps the
            # passes through its own devices.
            everywhere = set().union(*(self._devices_in(w) for w in self._traced()))
            lines = self._kernel_log.lines(devices=everywhere, settle=0.05)
            captured = {where: lines for where in self._traced()}
        for name, monitor in self._monitors.items():
            monitor.wait_drained(limit=2.0)
            captured[name] = monitor.text().splitlines()[marks[name] :]
        lines_of: dict[str, tuple[str, ...]] = {}
        passes_of: dict[str, tuple[Trace, ...]] = {}
        for where, lines in captured.items():
            devices = self._devices_in(where)
            mine = [
                p
                for p in read_passes(lines, self._books.get(where), source=f"TRACE on {where}")
                if _same_packet_seen(p.trace.packet, packet)
                and (self._kernel_log is None or devices & _devices_of(p.trace))
            ]
            passes_of[where] = tuple(p.trace for p in mine)
            lines_of[where] = _lines_of(lines, mine)
        return lines_of, passes_of

    def _devices_in(self, where: str) -> set[str]:
        """The devices whose TRACE lines belong to ``where`` (a node, or a router's namespace):
        the kernel log mixes every namespace's lines."""
        if where in self._namespace_devices:
            return self._namespace_devices[where]
        return _all_devices([self.states[where]])

    def _send_from_underlay(self, packet: Packet, tunnel: Tunnel) -> None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import GRE, Dot1Q, Ether
        from scapy.layers.vxlan import VXLAN
        from scapy.packet import Raw

        node = self.info.node(tunnel.node)
        dst_mac = _mac_of(node.netns, BR_PHYS)
        # The frame pretends to come from the remote node, MAC included: OVS learns tunnel
        # neighbours from what it receives, and a foreign MAC here would send the node's later
        # tunnel traffic for that peer to the underlay switch instead.
        src_mac = _mac_of(self.info.node(tunnel.remote_node).netns, BR_PHYS)
        inner = frame_of(packet)
        if tunnel.type is NetworkType.VLAN:
            eth = Ether(inner)
            frame = bytes(
                Ether(src=eth.src, dst=eth.dst)
                / Dot1Q(vlan=tunnel.segmentation_id, type=eth.type)
                / eth.payload
            )
        else:
            outer = Ether(src=src_mac, dst=dst_mac) / IP(
                src=self.info.node(tunnel.remote_node).underlay_ip,
                dst=node.underlay_ip,
                ttl=64,
                flags="DF",
                id=self._rng.randrange(1, 0x10000),
            )
            encap: Any
            if tunnel.type is NetworkType.VXLAN:
                encap = UDP(sport=self._rng.randrange(32768, 61000), dport=VXLAN_PORT) / VXLAN(
                    vni=tunnel.segmentation_id, flags=0x08
                )
            else:
                encap = GRE(key_present=1, key=tunnel.segmentation_id, proto=0x6558)
            frame = bytes(outer / encap / Raw(inner))
        with Wire.open(_Host(self.info.underlay_netns, "underlay")) as wire:
            wire.send(frame)

    def _ofproto(self, packet: Packet, source: str, tunnel: Tunnel | None) -> dict[str, str]:
        """``ofproto/trace`` where the packet enters OVS, and on the far node if it tunnels."""
        out: dict[str, str] = {}
        address = packet.nw_dst if packet.nw_dst is not None else packet.arp_tpa
        dst_vm = vm_for_address(self.info, address) if address is not None else None
        if source != UNDERLAY:
            vm = self.info.vm(source)
            state = self.states[vm.node]
            vp = state.vm_port(vm.name)
            out[vm.node] = self._trace(vm.node, BR_INT, packet.flow_text(in_port=vp.ofport))
            if dst_vm is not None and dst_vm.node != vm.node:
                out[dst_vm.node] = self._trace_arrival(
                    packet, vp.network.type, vp.network.segmentation_id, vm.node, dst_vm.node
                )
        elif tunnel is not None:
            out[tunnel.node] = self._trace_arrival(
                packet, tunnel.type, tunnel.segmentation_id, tunnel.remote_node, tunnel.node
            )
        return out

    def _trace_point(self, point: TracePoint) -> str:
        if point.vm is not None:
            vm = self.info.vm(point.vm)
            ofport = self.states[vm.node].vm_port(vm.name).ofport
            return self._trace(point.node, BR_INT, point.packet.flow_text(in_port=ofport))
        if point.tunnel is not None:
            t = point.tunnel
            return self._trace_arrival(
                point.packet, t.type, t.segmentation_id, t.remote_node, t.node
            )
        state = self.states[point.node]
        uplink = next(p for p in state.bridge_ports(BR_EX) if p.name == EXTERNAL_NIC)
        return self._trace(point.node, BR_EX, point.packet.flow_text(in_port=uplink.ofport))

    def _trace_arrival(
        self, packet: Packet, kind: NetworkType, seg: int, from_node: str, node: str
    ) -> str:
        state = self.states[node]
        if kind is NetworkType.VLAN:
            und = next(p for p in state.bridge_ports(BR_PHYS) if p.name == UNDERLAY_NIC)
            return self._trace(
                node, BR_PHYS, replace(packet, dl_vlan=seg).flow_text(in_port=und.ofport)
            )
        remote = self.info.node(from_node).underlay_ip
        port = next(t for t in state.tunnels if t.type is kind and t.remote_ip == remote)
        return self._trace(
            node,
            BR_TUN,
            packet.flow_text(
                in_port=port.ofport,
                tun_id=hex(seg),
                tun_src=remote,
                tun_dst=self.info.node(node).underlay_ip,
            ),
        )

    def _trace(self, node: str, bridge: str, flow: str) -> str:
        self._inputs[node] = (bridge, flow)
        ovs = self.ovs(node)
        ctl = str(ovs.rundir / "ovs-vswitchd.ctl")
        proc = run(
            ["ovs-appctl", "-t", ctl, "ofproto/trace", bridge, flow], env=ovs.env, check=False
        )
        return (
            proc.stdout if proc.returncode == 0 else f"ofproto/trace failed: {proc.stderr.strip()}"
        )


def _arp_request(mac: str, spa: IPv4Address, tpa: IPv4Address) -> Packet:
    return Packet(dl_src=mac, dl_dst="ff:ff:ff:ff:ff:ff", dl_type=ETH_TYPE_ARP, arp_op=1,
                  arp_spa=spa, arp_tpa=tpa, arp_sha=mac)  # fmt: skip


def _mac_of(netns: str, ifname: str) -> str:
    with netlink(netns) as nl:
        return str(nl.get_links(nl.link_lookup(ifname=ifname)[0])[0].get_attr("IFLA_ADDRESS"))


@dataclass(frozen=True, slots=True)
class _Host:
    netns: str
    ifname: str = "eth0"


def _all_devices(states: Iterable[NodeState]) -> set[str]:
    out: set[str] = set()
    for st in states:
        for vp in st.vm_ports:
            out |= {vp.devices.tap, vp.devices.qbr, vp.devices.qvb}
    return out


def _devices_of(trace: Trace) -> set[str]:
    out: set[str] = set()
    for s in trace.steps:
        if isinstance(s, NetfilterStep):
            out |= {s.in_dev, s.out_dev, s.physin or "", s.physout or ""}
    return out - {""}


def _same_packet_seen(seen: Packet | None, sent: Packet) -> bool:
    """Whether a TRACE record shows ``sent``: for IPv4 the same IP ID and one address of the
    two unchanged (a router's NAT rewrites the other one, never both), else the same
    addresses."""
    if seen is None or not sent.is_ip:
        return False
    if sent.dl_type == ETH_TYPE_IPV4:
        return seen.ip_id == sent.ip_id and (
            seen.nw_src == sent.nw_src or seen.nw_dst == sent.nw_dst
        )
    return (seen.nw_src, seen.nw_dst) == (sent.nw_src, sent.nw_dst)


def _lines_of(lines: Sequence[str], passes: Sequence[ObservedPacket]) -> tuple[str, ...]:
    numbers = sorted({n for p in passes for n in range(p.first_line, p.last_line + 1)})
    return tuple(lines[n - 1] for n in numbers)


def read_passes(
    lines: Sequence[str], rules: RuleBook | None, *, source: str
) -> list[ObservedPacket]:
    """Every packet pass in TRACE output of any format (kernel log, ``xtables-monitor``,
    ``nft monitor``), read, grouped and explained as ``nodetrace log`` does."""
    sink = DiagnosticSink()
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return list(Analysis(book=rules, sink=sink).packets(open_bytes(source, text.encode(), sink)))


def bridge_pass(passes: Iterable[Trace], bridge: str) -> Trace | None:
    """The netfilter steps of a packet's way through Linux bridge ``bridge`` (its device is IN
    or OUT), from the observed passes; ``None`` when the packet never got there."""
    through = [t for t in passes if bridge in _devices_of(t)]
    steps = tuple(
        s
        for t in through
        for s in t.steps
        if isinstance(s, NetfilterStep) and bridge in (s.in_dev, s.out_dev)
    )
    if not steps:
        return None
    if len(through) == 1 and steps == through[0].steps:
        return through[0]
    last = through[-1]
    return Trace(steps, last.outcome, reason=last.reason, packet=through[0].packet)


def openflow_trace(text: str) -> Trace:
    """A real ``ofproto/trace`` as an observed trace: each table lookup a step, in order, and
    the last pass's datapath actions the outcome (``drop`` or none: dropped).

    After a native tunnel output OVS also walks the *outer* packet through the underlay
    bridge; that pass is about the outer headers and is left out (the walk covers it).
    """
    sink = DiagnosticSink()
    observed = parse_ovs_appctl_ofproto_trace(text, source="ofproto/trace", sink=sink)
    if not observed.passes:
        return Trace((), Outcome.UNKNOWN, reason=text.strip() or "no ofproto/trace output")
    steps: list[OpenFlowStep] = []
    for p in observed.passes:
        lookups = _lookups(observed_tree(p), "")
        forked = next((s for s in reversed(steps) if "ct(" in s.actions), None)
        if steps and forked is not None and lookups:
            # A pass resumed after ct() is headed with the bridge the trace began on, not the
            # bridge whose ct() forked it (br-tun for a packet from a tunnel, whose ct() ran
            # in br-int): its first bridge's lookups belong to the forking bridge.
            header = lookups[0].bridge
            lookups = [replace(s, bridge=forked.bridge) if s.bridge == header else s
                       for s in lookups]  # fmt: skip
        steps += lookups
    last = observed.passes[-1]
    if last.failure is not None or last.datapath_actions is None:
        reason = last.failure or "ofproto/trace printed no datapath actions"
        return Trace(tuple(steps), Outcome.UNKNOWN, reason=reason)
    actions = last.datapath_actions.strip()
    outcome = Outcome.DELIVERED if _outputs(actions) else Outcome.DROPPED
    return Trace(tuple(steps), outcome, reason=f"datapath actions: {actions or 'none'}")


def _lookups(nodes: Sequence[TraceNode], bridge: str) -> list[OpenFlowStep]:
    out: list[OpenFlowStep] = []
    tunnelled = False
    for node in nodes:
        match node:
            case Bridge():
                if not tunnelled:
                    out += _lookups(node.children, node.name)
                tunnelled = False
            case TableLookup(match="reg0=0x2", priority=0):
                # A miss in a table of a bridge entered after the first: ofproto/trace shows
                # OVS's own hidden rule, which nodetrace's steps call a miss (no flow matched).
                out.append(OpenFlowStep(bridge, node.table, None, "", _actions(node), node.cookie))
                out += _lookups(node.children, bridge)
            case TableLookup():
                out.append(
                    OpenFlowStep(
                        bridge, node.table, node.priority, node.match, _actions(node), node.cookie
                    )
                )
                out += _lookups(node.children, bridge)
            case Message() if node.text.startswith("tunneling from "):
                tunnelled = True
            case _:  # every other node: the lookups under it, if any
                out += _lookups(node.children, bridge)
    return out


def _actions(lookup: TableLookup) -> str:
    """The actions a lookup ran, as a dump joins them.

    ``ct()`` prints what it runs inside on lines of their own right after it (each
    ``exec``/``nat`` action, or ``drop`` when it has none): they belong to the ct action.
    """
    out: list[str] = []
    inside = 0
    for a in lookup.children:
        if not isinstance(a, ActionRun):
            continue
        if inside:
            inside -= 1
            continue
        out.append(a.action)
        if a.action.startswith("ct("):
            inside = _ct_nested(a.action) or 1
    return ",".join(out)


def _outputs(datapath_actions: str) -> bool:
    """Whether datapath actions send the packet anywhere: a port number, a tunnel push or an
    output inside a clone. Actions that only act on it (``ct(commit,...)``, ``set(...)``) or
    ``drop`` leave it dropped."""
    for action in _top_level(datapath_actions):
        if action.isdigit() or action.startswith(("tnl_push(", "userspace(", "lb_output(")):
            return True
        if action.startswith("clone(") and _outputs(action[len("clone(") : -1]):
            return True
    return False


def _ct_nested(action: str) -> int:
    """How many actions ``ct(...)`` runs inside: its ``nat`` and each of its ``exec`` actions."""
    args = _top_level(action[len("ct(") : -1])
    count = sum(1 for x in args if x == "nat" or x.startswith("nat("))
    for x in args:
        if x.startswith("exec(") and x.endswith(")"):
            count += len(_top_level(x[len("exec(") : -1]))
    return count


def _top_level(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses and brackets."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in parts if p]


def frame_of(packet: Packet) -> bytes:
    """The frame for an IP packet (:func:`frame_bytes`) or an ARP message."""
    if packet.dl_type != ETH_TYPE_ARP:
        return frame_bytes(packet)
    from scapy.layers.l2 import ARP, Ether

    return bytes(
        Ether(src=packet.dl_src, dst=packet.dl_dst)
        / ARP(
            op=packet.arp_op or 1,
            hwsrc=packet.arp_sha or packet.dl_src,
            psrc=str(packet.arp_spa),
            hwdst=packet.arp_tha or "00:00:00:00:00:00",
            pdst=str(packet.arp_tpa),
        )
    )


def _same_packet(data: bytes, packet: Packet) -> bool:
    """True if the frame carries ``packet`` (same addresses and, for IPv4, the same IP ID)."""
    if packet.dl_type == ETH_TYPE_ARP:
        if len(data) < 42 or data[12:14] != b"\x08\x06":
            return False
        return (
            int.from_bytes(data[20:22], "big") == (packet.arp_op or 1)
            and ip_address(data[28:32]) == packet.arp_spa
            and ip_address(data[38:42]) == packet.arp_tpa
        )
    if packet.dl_type == ETH_TYPE_IPV4:
        if len(data) < 34 or data[12:14] != b"\x08\x00":
            return False
        # One address may have been rewritten by a router's NAT on the way (never both).
        return int.from_bytes(data[18:20], "big") == packet.ip_id and (
            ip_address(data[26:30]) == packet.nw_src or ip_address(data[30:34]) == packet.nw_dst
        )
    if len(data) < 54 or data[12:14] != b"\x86\xdd":
        return False
    return ip_address(data[22:38]) == packet.nw_src and ip_address(data[38:54]) == packet.nw_dst


@contextmanager
def probing(lab: LabDir, *, mute_vms: bool = False) -> Iterator[LabProbe]:
    info = lab.read_info()
    if info is None:
        raise UsageError(f"lab {lab.name} was not completely built")
    with LabProbe(lab, info, mute_vms=mute_vms) as probe:
        yield probe
