"""``nodetrace openflow``: trace packets through Open vSwitch bridges offline, as
``ovs-appctl ofproto/trace`` would on the live switch, and say what the answer assumed."""

from __future__ import annotations

import argparse
import difflib
import sys

from nodetrace.cli import add_format
from nodetrace.cli._ovs_inputs import load_ovs_inputs
from nodetrace.cli._report import print_diagnostics
from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.errors import DiagnosticSink, InputError, UsageError
from nodetrace.model.ovs_switch import BridgeState
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.render.json import dumps, openflow_document
from nodetrace.render.ofproto_trace import render_ofproto, render_tree

DESCRIPTION = """\
Trace a packet through a node's OVS bridges from a snapshot: OpenFlow tables from 0, highest
priority first, resubmit/goto_table, NORMAL with the ports' VLAN settings and the MAC table,
patch ports into the peer bridge, tunnel encapsulation, conntrack recirculation, learn. Prints
a trace tree like ofproto/trace, the packets that leave and where, a verdict, and every
assumption (fields not given, ct_state, missing MAC tables...).
"""

EPILOG = """\
inputs: a snapshot (folder, .tar.gz, sosreport) and/or files: ovs-ofctl dump-flows (any form),
ovs-ofctl show, ovs-vsctl show, ovs-vsctl --format=json list Bridge|Port|Interface,
ovs-appctl fdb/show, ovs-appctl dpctl/dump-conntrack, ovs-appctl ovs/route/show,
ovs-appctl tnl/neigh/show, ovs-appctl dpif/show. Per-bridge files are named after their
command (ovs-ofctl_dump-flows_br-int) or given as BRIDGE=FILE.

examples (the bundled example node, from a source checkout):
  nodetrace openflow src/nodetrace/examples/two-nodes-cmp1.snapshot.tar.gz \\
      --bridge br-int --in-port qvobf944fec-1e \\
      --packet icmp,dl_src=fa:16:3e:bb:79:12,dl_dst=fa:16:3e:67:bb:58,nw_src=10.20.0.10,nw_dst=10.20.0.12
  nodetrace openflow src/nodetrace/examples/two-nodes-cmp1.snapshot.tar.gz --format ofproto \\
      --bridge br-int --in-port qvobf944fec-1e \\
      --packet arp,dl_src=fa:16:3e:bb:79:12,dl_dst=ff:ff:ff:ff:ff:ff,arp_spa=10.20.0.10,arp_tpa=10.20.0.99
  nodetrace openflow src/nodetrace/examples/two-nodes-cmp1.snapshot.tar.gz \\
      --bridge br-tun --in-port vxlan-c0a83202 \\
      --packet icmp,tun_id=0x40d,tun_src=192.168.50.2,tun_dst=192.168.50.1,dl_dst=fa:16:3e:bb:79:12
  nodetrace openflow br-tun=flows.txt vsctl.json --bridge br-tun --in-port 2 --packet ...
  nodetrace openflow snapshot/ --bridge br-int --in-port 5 --packet tcp,... --ct-state trk,est

Several --packet are traced in order; with --apply-side-effects flows learned, MACs learned by
NORMAL and connections committed by earlier packets are seen by later ones.
Exit status is 0 whatever the verdict.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "openflow",
        help="trace a packet through OVS bridges (offline ofproto/trace)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="SNAPSHOT_OR_FILES")
    p.add_argument("--bridge", required=True, metavar="BR", help="the bridge the packet enters")
    p.add_argument("--in-port", required=True, metavar="PORT", help="port name, number or LOCAL")
    p.add_argument(
        "--packet",
        required=True,
        action="append",
        metavar="FLOW",
        help="the packet in OVS flow syntax (tun_id/tun_src/tun_dst for tunnel ingress); repeat "
        "to trace several packets",
    )
    p.add_argument(
        "--ct-state",
        action="append",
        default=[],
        metavar="S",
        help="ct_state for the next conntrack recirculation (trk,est / +trk+new ...), like "
        "ofproto/trace --ct-next; repeat for later ones",
    )
    add_format(p, ofproto="as ofproto/trace prints it", json="docs/json.md")
    p.add_argument(
        "--apply-side-effects",
        action="store_true",
        help="let learn(), NORMAL's MAC learning and ct(commit) affect later --packet",
    )
    p.set_defaults(func=run)


def _check_in_port(state: BridgeState, bridge: str, in_port: str) -> None:
    """``--in-port`` by name must be a port of the bridge; a typo gets the names close to it."""
    text = in_port.strip()
    if text.isdigit() or text.upper() == "LOCAL" or state.port_by_name(text) is not None:
        return
    if state.ofctl is not None and state.ofctl.by_name(text) is not None:
        return
    flow_names = state.ports_named_by_flows()
    if text in flow_names:
        return
    names = sorted({p.name for p in state.ports} | flow_names)
    if not names:
        return  # no port table: the engine says what it needs
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UsageError(f"--in-port: port {text!r} is not a port of {bridge}{hint}")


def run(args: argparse.Namespace) -> int:
    sink = DiagnosticSink()
    inputs = load_ovs_inputs(list(args.inputs), args.bridge, sink)
    switch = inputs.switch
    print_diagnostics(sink.items)
    state = switch.bridge(args.bridge)
    if state is None:
        known = ", ".join(b.name for b in switch.bridges)
        raise UsageError(f"bridge {args.bridge!r} is not in the inputs (bridges: {known})")
    if state.flows is None:
        raise InputError(
            f"no flow dump for {args.bridge} among the inputs: its OpenFlow tables are unknown "
            f"(collect them with `ovs-ofctl dump-flows {args.bridge}`)"
        )
    _check_in_port(state, args.bridge, args.in_port)
    engine = OpenFlowEngine(
        switch,
        apply_side_effects=args.apply_side_effects,
        routes=inputs.routes,
        neighbours=inputs.neighbours,
        dpif=inputs.dpif,
    )
    results = []
    for text in args.packet:
        spec = parse_flow(text)
        metadata = [(k, v) for k, v in spec.metadata if k not in ("in_port", "in_port_oxm")]
        flow_port = spec.get("in_port")
        if flow_port is not None and flow_port != args.in_port:
            raise UsageError(f"--packet says in_port={flow_port} but --in-port is {args.in_port}")
        given = frozenset(spec.given) if spec.given is not None else None
        results.append(
            engine.trace(
                args.bridge,
                args.in_port,
                spec.packet,
                metadata,
                given=given,
                ct_states=args.ct_state,
            )
        )
    if args.format == "json":
        for t in results:  # one document per packet, one per line (JSON Lines)
            print(dumps(openflow_document(t, sink.items), indent=None))
        return 0
    render = render_ofproto if args.format == "ofproto" else render_tree
    for i, t in enumerate(results):
        if i:
            print()
        sys.stdout.write(render(t))
    return 0
