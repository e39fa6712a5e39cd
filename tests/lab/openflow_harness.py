"""Differential testing of the OpenFlow engine against a real Open vSwitch (userspace datapath).

A :class:`Pipeline` (bridges, ports, flows, static MAC entries) is loaded into a private
ovs-vswitchd in a test namespace; the snapshot nodetrace reads is taken from that switch with the
real commands (``dump-flows``, ``ovs-vsctl list``, ``ovs-ofctl show``, ``fdb/show``) and parsed
by nodetrace's parsers. Each packet is then traced by ``ovs-appctl ofproto/trace`` and by the
engine, and :func:`differences` lists every way the two disagree:

* the bridge, table and matched-flow lines of the trace tree, with OVS's exact indentation (the
  underlay bridge a native tunnel rides on is left out: nodetrace stops at the encapsulation and
  hands the outer packet to the host, as the kernel datapath does);
* the packets leaving: port, VLAN tag and, for tunnels, type, key/VNI, outer source/destination
  and UDP port, taken from OVS's ``Datapath actions``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from pathlib import Path

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.lab.ovs import OvsInstance, start_ovs
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import CommandError, run
from nodetrace.model.openflow_trace import (
    ActionRun,
    Bridge,
    EgressKind,
    Message,
    OpenFlowTrace,
    TableLookup,
    TraceNode,
    TracePass,
)
from nodetrace.model.ovs_runtime import DpifShow
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.trace import OpenFlowStep, Outcome, Trace
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree, parse_ovs_appctl_ofproto_trace
from nodetrace.parsers.ovs_flow_text import split_top
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list
from nodetrace.render.ofproto_trace import ofproto_lines

UNDERLAY = "br-phys"


@dataclass
class PortSpec:
    name: str
    type: str = "internal"
    tag: int | None = None
    trunks: tuple[int, ...] = ()
    vlan_mode: str | None = None
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class Pipeline:
    """What to load into the switch. Tunnel remotes are reached through ``br-phys``."""

    bridges: dict[str, list[PortSpec]]
    flows: dict[str, list[str]]
    fdb: list[tuple[str, str, int, str]] = field(default_factory=list)
    local_ip: str = "10.0.0.11"
    remotes: tuple[str, ...] = ()
    dump_args: tuple[str, ...] = ("-O", "OpenFlow15")
    """How the snapshot's flows are dumped (the form nodetrace then parses)."""
    load_args: tuple[str, ...] = ("-O", "OpenFlow15")
    """How flows are added (OpenFlow 1.0 keeps strip_vlan without a VLAN match legal)."""


class OvsLab:
    """One private ovs-vswitchd; :meth:`load` replaces whatever pipeline it had."""

    def __init__(self, res: Resources, name: str, tmp: Path) -> None:
        self.netns = res.add_netns(name)
        self.ovs: OvsInstance = start_ovs(res, self.netns, tmp / f"ovs-{name}")
        self.bridges: list[str] = []
        self.texts: dict[str, str] = {}

    def load(self, p: Pipeline) -> None:
        for br in self.bridges:
            self.ovs.vsctl("--if-exists", "del-br", br)
        self.bridges = []
        for br, ports in p.bridges.items():
            self.ovs.add_bridge(br)
            self.bridges.append(br)
            args = []
            # One transaction per bridge (hundreds of ports take a second); ofport_request keeps
            # the numbering of the listed order, as adding them one by one would.
            for number, port in enumerate(ports, start=1):
                args += ["--", "add-port", br, port.name]
                if port.tag is not None:
                    args.append(f"tag={port.tag}")
                if port.trunks:
                    args.append("trunks=" + ",".join(str(t) for t in port.trunks))
                if port.vlan_mode:
                    args.append(f"vlan_mode={port.vlan_mode}")
                args += ["--", "set", "interface", port.name, f"type={port.type}"]
                args.append(f"ofport_request={number}")
                args += [f"options:{k}={v}" for k, v in port.options.items()]
            if args:
                self.ovs.vsctl(*args, timeout=120)
        if p.remotes:
            self.ovs.add_bridge(UNDERLAY)
            self.bridges.append(UNDERLAY)
            self.ovs.vsctl(
                "add-port", UNDERLAY, "uplink", "--", "set", "interface", "uplink", "type=internal"
            )
            run(["ip", "addr", "add", f"{p.local_ip}/24", "dev", UNDERLAY], netns=self.netns)
            run(["ip", "link", "set", UNDERLAY, "up"], netns=self.netns)
            self.ovs.ofctl("add-flow", UNDERLAY, "priority=0,actions=NORMAL")
            for i, remote in enumerate(p.remotes):
                mac = f"aa:bb:cc:00:00:{i + 1:02x}"
                _retry(lambda r=remote, m=mac: self.ovs.appctl("tnl/neigh/set", UNDERLAY, r, m))
        for br, flows in p.flows.items():
            try:
                self.ovs.ofctl(*p.load_args, "add-flows", br, "-", stdin="\n".join(flows) + "\n")
            except CommandError:
                # Some flows need OpenFlow 1.1+ (push_vlan), others 1.0 (strip_vlan without a
                # VLAN match): add them one by one with whichever version takes them.
                self.ovs.ofctl("del-flows", br)
                for flow in flows:
                    try:
                        self.ovs.ofctl("-O", "OpenFlow15", "add-flow", br, flow)
                    except CommandError:
                        self.ovs.ofctl("add-flow", br, flow)
        for br, port, vlan, mac in p.fdb:
            self.ovs.appctl("fdb/add", br, port, str(vlan), mac)
        self.pipeline = p
        self.dpif = parse_ovs_appctl_dpif_show(self.ovs.appctl("dpif/show"), source="dpif/show")

    def snapshot(self) -> OvsSwitch:
        """Read the switch back the way a node snapshot does, with nodetrace's parsers."""
        bridges = [b for b in self.bridges if b != UNDERLAY]
        texts: dict[str, str] = {}
        flows, shows, fdbs = {}, {}, {}
        for br in bridges:
            texts[f"flows.{br}"] = self.ovs.ofctl(*self.pipeline.dump_args, "dump-flows", br)
            texts[f"show.{br}"] = self.ovs.ofctl("show", br)
            texts[f"fdb.{br}"] = self.ovs.appctl("fdb/show", br)
            flows[br] = parse_ovs_ofctl_dump_flows(texts[f"flows.{br}"], source=f"dump-flows {br}")
            shows[br] = parse_ovs_ofctl_show(texts[f"show.{br}"], source=f"show {br}")
            fdbs[br] = parse_ovs_appctl_fdb_show(texts[f"fdb.{br}"], source=f"fdb/show {br}")
        tables = []
        for t in ("Bridge", "Port", "Interface"):
            texts[f"list.{t}"] = self.ovs.vsctl("--format=json", "list", t)
            tables.append(parse_ovs_vsctl_list(texts[f"list.{t}"], source=f"list {t}"))
        db = ovsdb_from_tables(tables)
        db = type(db)(tuple(b for b in db.bridges if b.name != UNDERLAY), db.ovs_version, db.source)
        self.texts = texts
        return OvsSwitch.build(flows, ovsdb=db, ofctl=shows, fdb=fdbs)

    def trace(
        self, bridge: str, flow: str, ct_next: Sequence[str] = (), generate: bool = False
    ) -> str:
        args = ["ofproto/trace", bridge, flow]
        for s in ct_next:
            args += ["--ct-next", s]
        if generate:
            args.append("-generate")
        return self.ovs.appctl(*args)


def _retry(fn: object, attempts: int = 50) -> None:
    import time

    from nodetrace.lab.run import CommandError

    for i in range(attempts):
        try:
            fn()  # type: ignore[operator]
            return
        except CommandError:
            if i == attempts - 1:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Comparison


def strip_underlay(nodes: Sequence[TraceNode]) -> list[TraceNode]:
    """Drop the underlay bridge OVS walks after ``-> tunneling from ...`` (native tunnels)."""
    out: list[TraceNode] = []
    after_tunnel = False
    for node in nodes:
        if isinstance(node, Bridge) and after_tunnel:
            after_tunnel = False
            continue
        after_tunnel = isinstance(node, Message) and node.text.startswith("tunneling from")
        out.append(_with_children(node, strip_underlay(node.children)))
    return out


def _with_children(node: TraceNode, children: Sequence[TraceNode]) -> TraceNode:
    if not node.children:
        return node
    return replace(node, children=tuple(children))  # type: ignore[call-arg]


def flow_lookups(nodes: Sequence[TraceNode], bridge: str = "") -> list[OpenFlowStep]:
    """The table lookups of a trace tree, as shared steps, in the order OVS made them.

    OVS floods in the order of its port hash table, which a snapshot cannot reproduce, so the
    bridges entered by one FLOOD/ALL/NORMAL-flood are put in a fixed order. A lookup's actions
    are left out: how a dump spells them depends on its OpenFlow version
    (:func:`line_differences` compares them where the dump speaks OVS's spelling).
    """
    out: list[OpenFlowStep] = []
    flooded: list[list[OpenFlowStep]] = []
    flooding = False
    for node in nodes:
        if node.extra:
            continue
        if isinstance(node, ActionRun) or (
            isinstance(node, Message) and node.text.endswith("flooding")
        ):
            out += [s for group in sorted(flooded, key=repr) for s in group]
            flooded = []
            flooding = isinstance(node, Message) or node.action in ("FLOOD", "ALL")
        if isinstance(node, Bridge):
            steps = flow_lookups(node.children, node.name)
            if flooding:
                flooded.append(steps)
            else:
                out += steps
        elif isinstance(node, TableLookup):
            out.append(OpenFlowStep(bridge, node.table, node.priority, node.match, "", node.cookie))
            out += flow_lookups(node.children, bridge)
        else:
            out += flow_lookups(node.children, bridge)
    return out + [s for group in sorted(flooded, key=repr) for s in group]


@dataclass(frozen=True)
class Out:
    port: str
    vlan: int | None
    tunnel: tuple[object, ...] | None = None

    def __str__(self) -> str:
        tail = f" tunnel={self.tunnel}" if self.tunnel else ""
        return f"{self.port} vlan={self.vlan}{tail}"


def _kv(body: str) -> dict[str, str]:
    out = {}
    for part in split_top(body):
        k, _, v = part.partition("=")
        out[k] = v
    return out


def datapath_outputs(actions: str, dpif: DpifShow, vlan: int | None) -> list[Out]:
    """Interpret OVS's datapath actions: which ports the packet leaves by, tagged how."""
    outs: list[Out] = []

    def walk(
        tokens: list[str], vlans: list[int], encap: tuple[object, ...] | None, done: list[bool]
    ) -> None:
        for tok in tokens:
            if tok.isdigit():
                if encap is not None:
                    if not done[0]:
                        outs.append(Out(str(encap[0]), vlans[0] if vlans else None, encap[1:]))
                        done[0] = True
                    continue
                port = dpif.by_dp_port(int(tok))
                outs.append(Out(port.name if port else f"dp{tok}", vlans[0] if vlans else None))
            elif tok.startswith("push_vlan("):
                vlans.insert(0, int(_kv(tok[10:-1])["vid"], 0))
            elif tok == "pop_vlan":
                if vlans:
                    vlans.pop(0)
            elif tok.startswith("clone("):
                walk(split_top(tok[6:-1]), list(vlans), encap, [False])
            elif tok.startswith("tnl_push("):
                encap = _tnl(tok, dpif)
                done = [False]
        return

    walk(split_top(actions), [vlan] if vlan is not None else [], None, [False])
    return outs


def _tnl(tok: str, dpif: DpifShow) -> tuple[object, ...]:
    ipv4 = _kv(re.search(r"ipv4\(([^)]*)\)", tok).group(1))  # type: ignore[union-attr]
    src, dst = ip_address(ipv4["src"]), ip_address(ipv4["dst"])
    # tnl_port() is the datapath's shared vxlan_sys/gre_sys port: find the OpenFlow tunnel
    # port by its remote address instead.
    port = next((p for p in dpif.ports if f"remote_ip={dst}" in p.detail), None)
    port_no = port.dp_port if port else 0
    if "vxlan(" in tok:
        key: int | None = int(re.search(r"vni=(0x[0-9a-f]+|\d+)", tok).group(1), 0)  # type: ignore[union-attr]
        kind = "vxlan"
        udp = int(re.search(r"udp\([^)]*dst=(\d+)", tok).group(1))  # type: ignore[union-attr]
    elif "geneve(" in tok:
        key = int(re.search(r"vni=(0x[0-9a-f]+|\d+)", tok).group(1), 0)  # type: ignore[union-attr]
        kind = "geneve"
        udp = int(re.search(r"udp\([^)]*dst=(\d+)", tok).group(1))  # type: ignore[union-attr]
    else:
        m = re.search(r"\),key=(0x[0-9a-f]+|\d+)\)", tok)
        key = int(m.group(1), 0) if m else None
        kind = "gre"
        udp = None
    return (port.name if port else f"dp{port_no}", kind, key, src, dst, udp)


def nodetrace_outputs(trace: OpenFlowTrace, pass_index: int) -> list[Out]:
    outs = []
    for e in trace.egress:
        if e.pass_index != pass_index or e.kind is EgressKind.CONTROLLER:
            continue
        tunnel = None
        if e.encap is not None:
            tunnel = (e.encap.type, e.encap.key, e.encap.src, e.encap.dst, e.encap.dst_port)
        outs.append(Out(e.port, e.packet.dl_vlan, tunnel))
    return outs


def _vlan_of(flow: str) -> int | None:
    m = re.search(r"(?:^|,)dl_vlan=(\d+)", flow)
    return int(m.group(1)) if m else None


def differences(ovs_text: str, nt: OpenFlowTrace, dpif: DpifShow) -> list[str]:
    """Everything that differs between OVS's trace and nodetrace's, as readable lines."""
    problems: list[str] = []
    observed = parse_ovs_appctl_ofproto_trace(ovs_text, source="ofproto/trace")
    if len(observed.passes) != len(nt.passes):
        problems.append(f"passes: OVS {len(observed.passes)}, nodetrace {len(nt.passes)}")
    for index, (o, n) in enumerate(zip(observed.passes, nt.passes, strict=False)):
        seen = Trace(tuple(flow_lookups(strip_underlay(observed_tree(o)))), Outcome.ENDS)
        difference = seen.diff(Trace(tuple(flow_lookups(n.nodes)), Outcome.ENDS))
        if not difference.same:
            problems.append(f"pass {index}: {difference}")
        expected = (
            [] if o.failure else datapath_outputs(o.datapath_actions or "", dpif, _vlan_of(o.flow))
        )
        got = nodetrace_outputs(nt, index)
        got = [_relax(g, e) for g, e in zip(got, _pairing(got, expected), strict=True)]
        if sorted(map(str, expected)) != sorted(map(str, got)):
            problems.append(
                f"pass {index}: outputs differ: OVS {sorted(map(str, expected))} "
                f"nodetrace {sorted(map(str, got))} (datapath actions: {o.datapath_actions})"
            )
    return problems


def _pairing(got: list[Out], expected: list[Out]) -> list[Out | None]:
    return [next((e for e in expected if e.port == g.port), None) for g in got]


def _relax(g: Out, e: Out | None) -> Out:
    """A tunnel without local_ip takes its source from OVS's routing; nodetrace says "routing"."""
    if e is not None and g.tunnel and e.tunnel and g.tunnel[2] is None:
        return Out(g.port, g.vlan, (g.tunnel[0], g.tunnel[1], e.tunnel[2], *g.tunnel[3:]))
    return g


def nodetrace_trace(
    engine: OpenFlowEngine, bridge: str, flow: str, ct: Sequence[str] = ()
) -> OpenFlowTrace:
    spec = parse_flow(flow)
    in_port = spec.get("in_port")
    assert in_port is not None
    metadata = [(k, v) for k, v in spec.metadata if k != "in_port"]
    return engine.trace(bridge, in_port, spec.packet, metadata, ct_states=ct)


def _without_route_details(nodes: Sequence[TraceNode]) -> list[TraceNode]:
    """OVS's native-tunnel routing lines need the host's routes and ARP cache, which nodetrace
    does not take; they are the only trace lines it does not reproduce."""
    return [
        _with_children(n, _without_route_details(n.children))
        for n in nodes
        if not (isinstance(n, Message) and n.text.startswith(("tunneling to ", "tunneling from ")))
    ]


def line_differences(ovs_text: str, nt: OpenFlowTrace) -> list[str]:
    """Every line of the trace trees, actions and details included, must be OVS's (when the
    dump prints actions in the OpenFlow version the flows were added with)."""
    import difflib

    observed = parse_ovs_appctl_ofproto_trace(ovs_text)
    problems = []
    for o, n in zip(observed.passes, nt.passes, strict=False):
        tree = _without_route_details(strip_underlay(observed_tree(o)))
        ovs_lines = [x for x in ofproto_lines(TracePass(o.flow, tuple(tree), None)) if x.strip()]
        nt_lines = [x for x in ofproto_lines(n) if x.strip()]
        if ovs_lines != nt_lines:
            problems += list(
                difflib.unified_diff(ovs_lines, nt_lines, "ovs", "nodetrace", lineterm="")
            )
    return problems
