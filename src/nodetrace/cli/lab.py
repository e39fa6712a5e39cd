"""``nodetrace lab``: build mini compute nodes in namespaces, use them, prove the engines on them.

Subcommands: ``generate`` (what Neutron would put on a node, no namespaces), ``up``, ``down``,
``status``, ``exec``, ``send``, ``snapshot`` and ``fidelity``. Labs live in
``/run/nodetrace/labs/NAME`` (``--root`` or ``NODETRACE_LAB_ROOT`` to change it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nodetrace.cli import ExamplesFormatter
from nodetrace.errors import InputError, UsageError
from nodetrace.neutron.generate import BRIDGES, generate_node
from nodetrace.neutron.scenario import load_scenario

SCENARIO = "src/nodetrace/examples/scenarios/two-nodes.toml"
"""The bundled scenario the examples use (from a source checkout)."""

EXAMPLES = {
    "lab": f"""\
examples:
  nodetrace lab generate {SCENARIO} --what flows --bridge br-tun
  sudo nodetrace lab up {SCENARIO}
  sudo nodetrace lab send --from web1 --to db2 --packet 'tcp,tp_dst=5432,tcp_flags=+syn'
  sudo nodetrace lab down
  nodetrace lab SUBCOMMAND --help     (each subcommand's options, with examples)
""",
    "generate": f"""\
examples:
  nodetrace lab generate {SCENARIO}                    # the first node's iptables-save
  nodetrace lab generate {SCENARIO} --node cmp2 --what ipsets
  nodetrace lab generate {SCENARIO} --what flows --bridge br-tun --openflow13
""",
    "up": f"""\
examples:
  sudo nodetrace lab up {SCENARIO}
  sudo nodetrace lab up {SCENARIO} --name try2 --iptables legacy
""",
    "down": """\
examples:
  sudo nodetrace lab down
  sudo nodetrace lab down --name try2 --force
""",
    "status": """\
examples:
  sudo nodetrace lab status
  sudo nodetrace lab status --name two-nodes --json
""",
    "exec": """\
examples:
  sudo nodetrace lab exec web1 -- ping -c1 10.20.0.12
  sudo nodetrace lab exec cmp1 -- ovs-ofctl dump-flows br-int
""",
    "snapshot": """\
examples:
  sudo nodetrace lab snapshot cmp1 -o cmp1.tar.gz
  nodetrace show cmp1.tar.gz
""",
    "send": """\
examples:
  sudo nodetrace lab send --from web1 --to db2 --packet 'tcp,tp_dst=5432,tcp_flags=+syn'
  sudo nodetrace lab send --from underlay --to db1 --packet 'icmp,nw_src=10.20.0.99'
  sudo nodetrace lab send --from web1 --to db1 --packet icmp --snapshot snaps/ --json
""",
    "fidelity": """\
examples:
  sudo nodetrace lab fidelity --cases 100 --seed 1
  sudo nodetrace lab fidelity --cases 20 --iptables nft --report /tmp/fidelity.json
  sudo nodetrace lab fidelity --cases 120 --seed 3 --shapes ovs-firewall,legacy-router
""",
}
"""Each subcommand's ``examples:`` epilog."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="mini compute nodes in network namespaces (real OVS, real iptables)",
        description="Build OpenStack-like compute nodes from a scenario file in network "
        "namespaces: Open vSwitch with Neutron's flows, hybrid-plugged VMs behind qbr bridges "
        "with Neutron's iptables rules, VXLAN/GRE tunnels between nodes. Needs root.",
        epilog=EXAMPLES["lab"],
        formatter_class=ExamplesFormatter,
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)

    def add(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A subcommand whose --help ends with its examples."""
        made: argparse.ArgumentParser = sub.add_parser(
            name, epilog=EXAMPLES[name], formatter_class=ExamplesFormatter, **kwargs
        )
        return made

    def common(p: argparse.ArgumentParser, *, name: bool = True) -> None:
        if name:
            p.add_argument("--name", help="the lab's name (default: the only lab that is up)")
        p.add_argument("--root", help="where labs keep their state (default /run/nodetrace/labs)")

    gen = add(
        "generate",
        help="print what Neutron would put on a node (iptables, ipsets, flows); no namespaces",
    )
    gen.add_argument("scenario", help="scenario file (TOML)")
    gen.add_argument("--node", help="node name (default: the first node)")
    gen.add_argument(
        "--what",
        choices=("iptables", "ip6tables", "ipsets", "flows", "ports", "routers"),
        default="iptables",
        help="which piece to print (default iptables)",
    )
    gen.add_argument(
        "--bridge", choices=(*BRIDGES, "br-ex"), default="br-int", help="for --what flows"
    )
    gen.add_argument("--openflow13", action="store_true", help="flows as -O OpenFlow13 prints them")
    gen.set_defaults(func=run_generate)

    up = add("up", help="build a lab from a scenario file")
    up.add_argument("scenario", help="scenario file (TOML; see docs/lab.md)")
    up.add_argument("--name", help="the lab's name (default: the scenario's name)")
    up.add_argument(
        "--iptables",
        choices=("nft", "legacy"),
        default="nft",
        help="iptables backend (default nft)",
    )
    common(up, name=False)
    up.set_defaults(func=run_up)

    down = add("down", help="remove a lab: exactly what `up` created")
    common(down)
    down.add_argument(
        "--force",
        action="store_true",
        help="also stop an `up` still building it, and drop the lab's folder even if "
        "something could not be removed",
    )
    down.set_defaults(func=run_down)

    status = add("status", help="list labs, or show one lab's nodes and VMs")
    common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=run_status)

    ex = add("exec", help="run a command inside a VM's (or node's) namespace")
    common(ex)
    ex.add_argument("target", help="VM or node name, or 'underlay'")
    ex.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    ex.set_defaults(func=run_exec)

    snap = add(
        "snapshot", help="collect a node's snapshot bundle (same format as `nodetrace collect`)"
    )
    common(snap)
    snap.add_argument("node", help="node name")
    snap.add_argument("-o", "--output", required=True, help="new folder, or a .tar.gz path")
    snap.add_argument(
        "--conntrack", type=int, default=1000, help="conntrack entries to keep (default 1000)"
    )
    snap.set_defaults(func=run_snapshot)

    send = add(
        "send",
        help="send a crafted packet; report where it arrived, its TRACE and ofproto/trace",
        description="Inject one frame at a VM's eth0 (or from the underlay, encapsulated as a "
        "remote node would send it) and report which VMs received it, the TRACE lines it "
        "caused on every node, and ofproto/trace for its OVS part. Unset fields are filled in "
        "from the VMs (addresses, MACs) and at random (IP ID, source port).",
    )
    common(send)
    send.add_argument("--from", dest="source", required=True, help="VM name, or 'underlay'")
    send.add_argument(
        "--packet",
        required=True,
        help="the packet in OVS flow syntax, e.g. 'tcp,tp_dst=22,tcp_flags=+syn'",
    )
    send.add_argument("--to", help="destination VM (fills in nw_dst and dl_dst)")
    send.add_argument(
        "--via",
        help="with --from underlay: the node the packet pretends to come from "
        "(default: another node than the destination's)",
    )
    send.add_argument("--json", action="store_true", help="machine-readable output")
    send.add_argument("--no-ofproto", action="store_true", help="skip ofproto/trace")
    send.add_argument(
        "--snapshot",
        metavar="DIR",
        help="first collect every node's snapshot bundle into DIR/NODE, with the TRACE rule in "
        "place (so the bundle's rule numbers are the ones the TRACE lines show)",
    )
    send.set_defaults(func=run_send)

    fid = add(
        "fidelity",
        help="random labs and packets: the real kernel/OVS against nodetrace's engines",
        description="Build random 2-node labs of the chosen shapes (iptables-legacy and -nft "
        "in turn), send random packets (allowed and denied, new and established, same node, "
        "across the tunnel, from the underlay; across a router, to and from the outside "
        "through SNAT and floating IPs, to the metadata address), and compare what really "
        "happened with what each engine predicts from the lab's snapshot. Exit status 1 if "
        "any engine disagreed or failed.",
    )
    fid.add_argument("--cases", type=int, default=100, help="number of packets (default 100)")
    fid.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    fid.add_argument("--per-lab", type=int, default=40, help="packets per random lab (default 40)")
    fid.add_argument(
        "--iptables",
        choices=("both", "legacy", "nft"),
        default="both",
        help="the labs' iptables backend: legacy (TRACE in the kernel log), nft "
        "(xtables-monitor --trace), or both in turn (default)",
    )
    fid.add_argument(
        "--shapes",
        default="all",
        help="comma-separated node shapes the labs take in turn: hybrid (hybrid iptables "
        "firewall), ovs-firewall (native OVS firewall), legacy-router (a legacy router with "
        "SNAT and floating IPs, hybrid firewall), ovs-firewall-router (the same router, native "
        "firewall); default all",
    )
    fid.add_argument(
        "--firewall",
        choices=("iptables_hybrid", "openvswitch", "both"),
        default=None,
        help="shorthand for the router-less shapes: iptables_hybrid = --shapes hybrid, "
        "openvswitch = --shapes ovs-firewall, both = --shapes hybrid,ovs-firewall",
    )
    fid.add_argument(
        "--report",
        default=None,
        help="JSON report path (default nodetrace-fidelity-SEED.json in the current folder)",
    )
    fid.add_argument("--root", help="where the labs keep their state (default /run/nodetrace/labs)")
    fid.set_defaults(func=run_fidelity_command)


def run_generate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    node = args.node or scenario.nodes[0].name
    try:
        state = generate_node(scenario, node)
    except KeyError:
        raise UsageError(
            f"no node {node!r} in {args.scenario} (nodes: "
            f"{', '.join(n.name for n in scenario.nodes)})"
        ) from None
    if args.what in ("iptables", "ip6tables", "ipsets") and not (
        state.firewall.iptables_save or state.firewall.ipsets
    ):
        print(
            f"nodetrace: {args.scenario}: firewall_driver = {scenario.firewall_driver} writes "
            f"no {args.what}; its security groups are flows: --what flows --bridge br-int",
            file=sys.stderr,
        )
    if args.what == "iptables":
        sys.stdout.write(state.firewall.iptables_save)
    elif args.what == "ip6tables":
        sys.stdout.write(state.firewall.ip6tables_save)
    elif args.what == "ipsets":
        sys.stdout.write(state.firewall.ipset_restore)
    elif args.what == "flows":
        sys.stdout.write(state.dump_flows_text(args.bridge, openflow13=args.openflow13))
    elif args.what == "routers":
        from nodetrace.neutron.l3_agent import describe

        sys.stdout.write("".join(describe(r) for r in state.routers) + state.dvr_namespaces_text())
    else:
        for p in state.ovs_ports:
            extra = f" tag={p.tag}" if p.tag is not None else ""
            kind = f" type={p.type}" if p.type else ""
            print(f"{p.bridge} {p.ofport} {p.name}{kind}{extra}")
    return 0


def run_up(args: argparse.Namespace) -> int:
    from nodetrace.lab.build import lab_up

    path = Path(args.scenario)
    scenario = load_scenario(path)
    name = args.name or scenario.name
    info = lab_up(
        scenario,
        path.read_text(encoding="utf-8"),
        name=name,
        backend=args.iptables,
        root=args.root,
        progress=lambda msg: print(f"lab up: {msg}", file=sys.stderr),
    )
    print(
        f"lab {info.name} is up ({info.timings.get('up_seconds', 0):.2f}s, iptables-{info.backend})"
    )
    _print_members(info)
    return 0


def run_down(args: argparse.Namespace) -> int:
    from nodetrace.lab.build import lab_down

    result = lab_down(args.name, force=args.force, root=args.root)
    for problem in result.problems:
        print(f"lab down: {problem}", file=sys.stderr)
    if not result.removed:
        print(
            "lab down: the lab's state was kept so `down` can be tried again (--force drops it)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_status(args: argparse.Namespace) -> int:
    from nodetrace.lab.build import daemons_alive, namespace_report, up_running
    from nodetrace.lab.state import LabDir, find_lab, list_labs

    names = [args.name] if args.name else list_labs(args.root)
    if args.name:
        find_lab(args.name, args.root)
    report = []
    for name in names:
        lab = LabDir(name, args.root)
        info = lab.read_info()
        entry: dict[str, Any] = {"name": name, "path": str(lab.path)}
        if info is None:
            entry["status"] = "broken (no lab.json: `up` died early; use `lab down --force`)"
        else:
            state = info.status
            if state == "building" and not up_running(info):
                state = "incomplete (`up` was interrupted; use `lab down --force`)"
            entry.update(
                status=state,
                iptables=info.backend,
                namespaces=[asdict(ns) for ns in namespace_report(info)],
                daemons=[{"pid": pid, "running": alive} for pid, alive in daemons_alive(lab)],
                vms=[asdict(v) for v in info.vms],
                nodes=[asdict(n) for n in info.nodes],
            )
        report.append(entry)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not report:
        print("no lab is up")
    for entry in report:
        print(f"lab {entry['name']}: {entry['status']}  ({entry['path']})")
        if "namespaces" not in entry:
            continue
        missing = [ns["netns"] for ns in entry["namespaces"] if not ns["present"]]
        dead = [d["pid"] for d in entry["daemons"] if not d["running"]]
        print(
            f"  iptables-{entry['iptables']}, {len(entry['namespaces'])} namespaces"
            + (f", MISSING: {', '.join(missing)}" if missing else "")
            + f", {len(entry['daemons'])} daemons"
            + (f", NOT RUNNING: {', '.join(map(str, dead))}" if dead else "")
        )
        for node in entry["nodes"]:
            print(f"  node {node['name']}: netns {node['netns']}, underlay {node['underlay_ip']}")
        for vm in entry["vms"]:
            print(
                f"  vm {vm['name']} on {vm['node']}: {', '.join(vm['ips'])} {vm['mac']} "
                f"network {vm['network']} port {vm['port_id']}"
            )
    return 0


def _print_members(info: Any) -> None:
    for vm in info.vms:
        print(f"  {vm.name:12} {vm.node:8} {', '.join(vm.ips):22} {vm.mac}  netns {vm.netns}")


def run_exec(args: argparse.Namespace) -> int:
    from nodetrace.lab.build import lab_exec
    from nodetrace.lab.state import find_lab

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    lab = find_lab(args.name, args.root)
    info = lab.read_info()
    if info is None:
        raise UsageError(f"lab {lab.name} was not completely built; nothing to run in")
    return lab_exec(info, args.target, argv)


def run_snapshot(args: argparse.Namespace) -> int:
    from nodetrace.lab.state import find_lab
    from nodetrace.snapshot.collect import Options, collect

    lab = find_lab(args.name, args.root)
    info = lab.read_info()
    if info is None or info.status != "ready":
        raise UsageError(f"lab {lab.name} is not ready")
    node = info.node(args.node)
    try:
        path = collect(
            args.output,
            Options(
                netns=node.netns,
                ovs_rundir=node.ovs_rundir,
                namespaces=node.namespaces,
                conntrack_max=max(0, args.conntrack),
            ),
        )
    except FileExistsError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise InputError(f"cannot write the snapshot: {err}") from None
    print(path)
    return 0


def run_send(args: argparse.Namespace) -> int:
    from nodetrace.lab.observe import UNDERLAY, complete_packet, probing
    from nodetrace.lab.state import find_lab
    from nodetrace.parsers.flow_syntax import parse_flow

    lab = find_lab(args.name, args.root)
    with probing(lab) as probe:
        info = probe.info
        if args.source != UNDERLAY:
            info.vm(args.source)
        packet = complete_packet(info, parse_flow(args.packet), args.source, to=args.to)
        tunnel = None
        if args.source == UNDERLAY:
            tunnel = _underlay_tunnel(probe, packet, args.to, args.via)
        if args.snapshot:
            _collect_all(info, Path(args.snapshot))
        obs = probe.send(packet, args.source, tunnel=tunnel, ofproto=not args.no_ofproto)
    if args.json:
        from nodetrace.render.json import dumps

        print(
            dumps(
                {
                    "packet": obs.packet.flow_text(),
                    "source": obs.source,
                    "arrived": list(obs.arrived),
                    "trace_format": obs.trace_format,
                    "trace": {k: list(v) for k, v in obs.trace_lines.items()},
                    "ofproto": dict(obs.ofproto),
                },
                indent=2,
            )
        )
        return 0
    where = f"node {info.vm(obs.source).node}" if obs.source != UNDERLAY else "the underlay"
    print(f"sent {obs.packet.flow_text()}")
    print(f"  from {obs.source} ({where})")
    if obs.arrived:
        for vm in obs.arrived:
            print(f"  arrived at {vm} (node {info.vm(vm).node})")
    else:
        print("  arrived nowhere")
    tool = "kernel log" if obs.trace_format == "kernel" else "xtables-monitor --trace"
    for node, lines in obs.trace_lines.items():
        print(f"\nTRACE on {node} ({tool}): {len(lines)} lines")
        for line in lines:
            print(f"  {line}")
    for node, text in obs.ofproto.items():
        print(f"\nofproto/trace on {node}:")
        for line in text.splitlines():
            print(f"  {line}")
    return 0


def _underlay_tunnel(probe: Any, packet: Any, to: str | None, via: str | None) -> Any:
    """The tunnel (or VLAN) a frame from the underlay takes to reach its destination VM."""
    from nodetrace.lab.observe import Tunnel, vm_for_address

    vm = probe.info.vm(to) if to else vm_for_address(probe.info, packet.nw_dst)
    if vm is None:
        raise UsageError("with --from underlay, the destination must be a lab VM (--to VM)")
    state = probe.states[vm.node]
    vp = state.vm_port(vm.name)
    others = [n.name for n in probe.info.nodes if n.name != vm.node]
    remote = via or (others[0] if others else None)
    if remote is None or remote == vm.node:
        raise UsageError("--via must name another node of the lab")
    probe.info.node(remote)
    return Tunnel(vp.network.type, vp.network.segmentation_id, remote, vm.node)


def run_fidelity_command(args: argparse.Namespace) -> int:
    from nodetrace.lab.build import check_prerequisites
    from nodetrace.lab.fidelity import format_report, run_fidelity
    from nodetrace.lab.fidelity_shapes import parse_shapes

    if args.cases < 1 or args.per_lab < 1:
        raise UsageError("--cases and --per-lab must be at least 1")
    backends = ("legacy", "nft") if args.iptables == "both" else (args.iptables,)
    if args.firewall is not None and args.shapes != "all":
        raise UsageError("give --shapes or --firewall, not both")
    by_firewall = {
        "iptables_hybrid": "hybrid",
        "openvswitch": "ovs-firewall",
        "both": "hybrid,ovs-firewall",
    }
    shapes = parse_shapes(by_firewall[args.firewall] if args.firewall else args.shapes)
    for backend in backends:
        check_prerequisites(backend)
    report = run_fidelity(
        cases=args.cases,
        seed=args.seed,
        root=args.root,
        per_scenario=args.per_lab,
        backends=backends,
        progress=lambda msg: print(f"fidelity: {msg}", file=sys.stderr),
        shapes=shapes,
    )
    path = Path(args.report or f"nodetrace-fidelity-{args.seed}.json")
    try:
        path.write_text(report.to_json() + "\n", encoding="utf-8")
    except OSError as err:
        raise InputError(f"{path}: cannot write the report: {err.strerror}") from None
    print(format_report(report))
    print(f"report: {path}")
    bad = [
        c for c in report.cases for e in c.engines.values() if e["status"] in ("disagree", "error")
    ]
    return 1 if bad else 0


def _collect_all(info: Any, folder: Path) -> None:
    from nodetrace.snapshot.collect import Options, collect

    if folder.exists() and any(folder.iterdir()):
        raise UsageError(f"{folder}: exists already and is not empty")
    for node in info.nodes:
        try:
            collect(
                str(folder / node.name),
                Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=node.namespaces),
            )
        except OSError as err:
            raise InputError(f"cannot write the snapshot: {err}") from None
        print(f"snapshot of {node.name}: {folder / node.name}", file=sys.stderr)
