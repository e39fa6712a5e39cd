"""``nodetrace iptables``: what the kernel's netfilter does with one packet, from a saved ruleset."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from ipaddress import ip_address

from nodetrace.cli import add_format
from nodetrace.cli._report import print_diagnostics
from nodetrace.engine.conntrack import CtState, Direction
from nodetrace.engine.netfilter import (
    CtFacts,
    NetfilterEngine,
    NetfilterResult,
    NodeFacts,
)
from nodetrace.errors import DiagnosticSink, InputError, UsageError
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import Backend, HookDevices, Ruleset
from nodetrace.model.packet import Family, Packet
from nodetrace.model.trace import Hook
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.parsers.ipset_save import parse_ipset_save
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.kernel_trace import render_kernel_trace
from nodetrace.render.screen import Screen
from nodetrace.render.text import describe_packet, render_trace
from nodetrace.render.xtables_trace import render_xtables_trace
from nodetrace.snapshot.parts import (
    is_snapshot,
    load_snapshot,
    snapshot_ipsets,
    snapshot_ruleset,
)
from nodetrace.tracelog.source import read_text

DESCRIPTION = """\
Simulate one packet through a node's iptables ruleset (iptables-save or ip6tables-save output,
legacy or nft) at one or more hooks, exactly as the kernel evaluates it: tables in priority
order, jumps and returns, conntrack state and zones, nat only for a connection's first packet,
physdev rules on bridged traffic. Prints each matching rule with the number TRACE would log
for it, and the verdict. Every default the answer rests on is listed.
"""

EPILOG = """\
examples:
  (files of the bundled examples, in src/nodetrace/examples/)
  nodetrace iptables two-nodes-cmp1.snapshot.tar.gz --hook PREROUTING,FORWARD,POSTROUTING \\
      --packet tcp,nw_src=10.20.0.10,nw_dst=10.20.0.12,tp_src=40000,tp_dst=5432,tcp_flags=+syn \\
      --in qbr7eb6fb94-79 --out qbr7eb6fb94-79 --physdev-in qvb7eb6fb94-79 --physdev-out tap7eb6fb94-79
      web1 to db1 through db1's bridge: each rule met and the verdict
  nodetrace iptables two-nodes-cmp1.snapshot.tar.gz --hook PREROUTING,FORWARD,POSTROUTING \\
      --packet icmp,nw_src=10.20.0.10,nw_dst=10.20.0.12,icmp_type=8 --format kernel \\
      --in qbr7eb6fb94-79 --out qbr7eb6fb94-79 --physdev-in qvb7eb6fb94-79 --physdev-out tap7eb6fb94-79
      a ping's steps as the kernel's TRACE lines (--format xtables: as xtables-monitor --trace)
  nodetrace iptables rules.save --nft-handles nft-a.txt --format xtables ...
      (nft-a.txt: 'nft -a list ruleset' of the same node, so rules inserted later with
      iptables-nft -I are named by their real handles)

A bridged packet (--physdev-in given) sees IN= the bridge in PREROUTING, IN=/OUT= the bridge in
FORWARD and OUT= the bridge in POSTROUTING; give --in/--out as the bridge and the tool passes
each hook the devices the kernel would. Exit status is 0 whatever the verdict.
"""

# Which of the given devices exist at each hook (compute-node.md §4.2).
_HOOK_HAS_IN = {Hook.PREROUTING, Hook.INPUT, Hook.FORWARD}
_HOOK_HAS_OUT = {Hook.FORWARD, Hook.OUTPUT, Hook.POSTROUTING}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "iptables",
        help="simulate a packet through an iptables ruleset",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "rules",
        metavar="RULES",
        help="iptables-save output ('-' for stdin), or a node snapshot (folder or archive): "
        "its iptables-save or ip6tables-save, as the packet's family asks, and its ipsets",
    )
    p.add_argument(
        "--netns",
        metavar="NS",
        help="with a snapshot: the namespace whose rules are used (default: the host's)",
    )
    p.add_argument(
        "--packet",
        required=True,
        metavar="FLOW",
        help="the packet in OVS flow syntax, e.g. tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=22",
    )
    p.add_argument(
        "--hook",
        required=True,
        metavar="HOOK",
        help="PREROUTING, INPUT, FORWARD, OUTPUT or POSTROUTING; several, comma-separated, "
        "are crossed in order by the same packet",
    )
    p.add_argument("--in", dest="in_dev", default="", metavar="IF", help="input device (IN=)")
    p.add_argument("--out", dest="out_dev", default="", metavar="IF", help="output device (OUT=)")
    p.add_argument("--physdev-in", metavar="IF", help="bridge port the frame came in on")
    p.add_argument("--physdev-out", metavar="IF", help="bridge port the frame leaves by")
    p.add_argument(
        "--ct-state",
        metavar="S",
        choices=[s.value for s in CtState] + [s.value.lower() for s in CtState],
        help="conntrack state to assume (NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED); "
        "default: derived as for a first packet",
    )
    p.add_argument(
        "--ct-zone", type=int, metavar="N", help="conntrack zone (default: from CT rules)"
    )
    p.add_argument("--ct-mark", type=lambda s: int(s, 0), default=0, metavar="M", help="ct mark")
    p.add_argument(
        "--ct-status",
        default="",
        metavar="LIST",
        help="conntrack status bits to assume, e.g. SEEN_REPLY,ASSURED",
    )
    p.add_argument(
        "--ct-dir",
        choices=["ORIGINAL", "REPLY", "original", "reply"],
        default="ORIGINAL",
        help="direction of the packet in its connection (with --ct-state)",
    )
    p.add_argument("--ipsets", metavar="F", help="ipset save output of the node")
    p.add_argument(
        "--nft-handles",
        metavar="FILE",
        help="'nft -a list ruleset' output of the node: rules are named by their real nf_tables "
        "handles (xtables format) instead of those a fresh iptables-nft-restore would give",
    )
    p.add_argument(
        "--backend",
        choices=["legacy", "nft"],
        help="iptables backend (default: from the iptables-save header)",
    )
    p.add_argument(
        "--local-address",
        action="append",
        default=[],
        metavar="DEV=ADDR",
        help="an address of the node (for -m addrtype and MASQUERADE); may repeat",
    )
    p.add_argument("--uid", type=int, help="uid of the sending socket (OUTPUT, -m owner)")
    p.add_argument("--gid", type=int, help="gid of the sending socket (OUTPUT, -m owner)")
    add_format(
        p,
        kernel="legacy TRACE lines",
        xtables="as xtables-monitor --trace prints them",
        json="docs/json.md",
    )
    p.set_defaults(func=run)


def _hooks(text: str) -> list[Hook]:
    hooks = []
    for word in text.split(","):
        name = word.strip().upper()
        if name not in {h.value for h in Hook}:
            raise UsageError(
                f"--hook {word!r}: not a hook (PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING)"
            )
        hooks.append(Hook(name))
    return hooks


def _devices(args: argparse.Namespace, hook: Hook) -> HookDevices:
    bridged = args.physdev_in is not None or args.physdev_out is not None
    return HookDevices(
        in_dev=args.in_dev if hook in _HOOK_HAS_IN else "",
        out_dev=args.out_dev if hook in _HOOK_HAS_OUT else "",
        physin=args.physdev_in if hook is not Hook.OUTPUT else None,
        physout=args.physdev_out if hook in (Hook.FORWARD, Hook.POSTROUTING) else None,
        bridged=bridged,
    )


def _local_addresses(items: list[str]) -> dict[str, tuple[object, ...]] | None:
    if not items:
        return None
    out: dict[str, list[object]] = {}
    for item in items:
        dev, sep, addr = item.partition("=")
        if not sep:
            raise UsageError(f"--local-address {item!r}: expected DEV=ADDR")
        try:
            out.setdefault(dev, []).append(ip_address(addr.split("/")[0]))
        except ValueError:
            raise UsageError(f"--local-address {item!r}: {addr!r} is not an address") from None
    return {k: tuple(v) for k, v in out.items()}


def _load_rules(args: argparse.Namespace, sink: DiagnosticSink) -> Ruleset:
    text = read_text(args.rules)
    ruleset = parse_iptables_save(
        text, source=args.rules if args.rules != "-" else "<stdin>", sink=sink
    )
    if not ruleset.tables:
        raise InputError(f"{args.rules}: no iptables table found (is it iptables-save output?)")
    if not any(True for _ in ruleset.rules()) and sink.errors:
        # Binary junk or another tool's output can open a "*table" line by chance.
        first = sink.errors[0].pos
        raise InputError(
            f"{args.rules}: not iptables-save output: no rule could be read (first bad line: "
            f"{first.line})"
        )
    return ruleset


def _with_nft_handles(args: argparse.Namespace, ruleset: Ruleset, sink: DiagnosticSink) -> Ruleset:
    if not args.nft_handles:
        return ruleset
    if args.backend == "legacy" or ruleset.backend is Backend.LEGACY:
        raise UsageError("--nft-handles: nf_tables handles mean nothing to iptables-legacy")
    # Imported here, as render.json below: a run loads only what its options use.
    from nodetrace.parsers.nft_list_ruleset import attach_nft_handles, parse_nft_list_ruleset

    source = args.nft_handles if args.nft_handles != "-" else "<stdin>"
    listing = parse_nft_list_ruleset(read_text(args.nft_handles), source=source, sink=sink)
    if not listing.tables:
        raise InputError(f"{source}: no table found (is it 'nft -a list ruleset' output?)")
    return attach_nft_handles(ruleset, listing).ruleset


def _load_ipsets(args: argparse.Namespace, sink: DiagnosticSink) -> IpSets | None:
    if not args.ipsets:
        return None
    return parse_ipset_save(read_text(args.ipsets), source=args.ipsets, sink=sink)


def _from_snapshot(
    args: argparse.Namespace, family: Family, sink: DiagnosticSink
) -> tuple[Ruleset, IpSets | None, dict[str, tuple[object, ...]] | None]:
    """The namespace's ruleset of the packet's family, its ipsets and its devices' addresses
    (for ``-m addrtype`` and MASQUERADE), from a snapshot; options given win."""
    # Imported here: the topology model is loaded with a snapshot, not for a saved ruleset.
    from nodetrace.model.topology import MAIN_NS

    netns = args.netns if args.netns is not None else MAIN_NS
    snap = load_snapshot(args.rules)
    ruleset = snapshot_ruleset(snap, args.rules, family, netns)
    ruleset = _with_nft_handles(args, ruleset, sink)
    ipsets = _load_ipsets(args, sink) if args.ipsets else snapshot_ipsets(snap, netns)
    local = _local_addresses(args.local_address)
    if local is None:
        devices = snap.topology.in_namespace(netns)
        local = {i.name: tuple(a.ip for a in i.addresses) for i in devices} or None
    return ruleset, ipsets, local


def run(args: argparse.Namespace) -> int:
    sink = DiagnosticSink()
    if args.nft_handles == "-" and args.rules == "-":
        raise UsageError("RULES and --nft-handles cannot both be read from stdin")
    spec = parse_flow(args.packet)
    if spec.metadata:
        names = ", ".join(k for k, _ in spec.metadata)
        raise UsageError(f"--packet: {names}: OpenFlow pipeline fields mean nothing to netfilter")
    if is_snapshot(args.rules):
        if spec.packet.family is None:
            raise UsageError("--packet is not IP: netfilter's ip(6)tables never see it")
        ruleset, ipsets, local = _from_snapshot(args, spec.packet.family, sink)
    else:
        if args.netns is not None:
            raise UsageError("--netns chooses a namespace of a snapshot; RULES is one ruleset")
        ruleset = _load_rules(args, sink)
        ruleset = _with_nft_handles(args, ruleset, sink)
        ipsets = _load_ipsets(args, sink)
        local = _local_addresses(args.local_address)
    print_diagnostics(sink.items)
    packet = spec.packet
    if packet.nw_src is None or packet.nw_dst is None:
        raise UsageError("--packet needs nw_src and nw_dst (or ipv6_src and ipv6_dst)")
    if packet.family is not ruleset.family:
        raise UsageError(
            f"--packet is {packet.family.value if packet.family else 'not IP'} but the ruleset "
            f"is {ruleset.family.value}"
        )
    hooks = _hooks(args.hook)
    facts = NodeFacts(
        backend=Backend(args.backend)
        if args.backend
        else Backend.NFT
        if args.nft_handles and ruleset.backend is Backend.UNKNOWN
        else None,
        local_addresses=local,  # type: ignore[arg-type]
        socket_uid=args.uid,
        socket_gid=args.gid if args.gid is not None else args.uid,
    )
    ct = None
    if args.ct_state or args.ct_zone is not None or args.ct_mark:
        status = tuple(s.strip().upper() for s in args.ct_status.split(",") if s.strip())
        ct = CtFacts(
            state=CtState(args.ct_state.upper()) if args.ct_state else None,
            status=status,
            zone=args.ct_zone,
            mark=args.ct_mark,
            direction=Direction(args.ct_dir.upper()),
        )
    engine = NetfilterEngine(ruleset, ipsets=ipsets, facts=facts)
    traced = not engine.has_trace_rule
    result = engine.run(packet, [(h, _devices(args, h)) for h in hooks], ct=ct, nf_trace=traced)
    if traced:
        note = (
            "no -j TRACE rule in the ruleset: every step is shown as if the packet had been "
            "marked for TRACE before its first hook"
        )
        result = replace(
            result, trace=replace(result.trace, assumptions=(note, *result.trace.assumptions))
        )
    _print(args.format, result, engine, packet)
    return 0


def _print(fmt: str, result: NetfilterResult, engine: NetfilterEngine, packet: Packet) -> None:
    steps = result.trace.steps
    if fmt == "kernel":
        for line in render_kernel_trace(steps):
            print(line)
    elif fmt == "xtables":
        for line in render_xtables_trace(steps, trace_id=0):
            print(line)
    elif fmt == "json":
        from nodetrace.render.json import dumps, trace_document

        doc = trace_document(
            "iptables",
            result.trace,
            verdict=result.verdict,
            backend=engine.backend,
            ct_state=result.ct_state,
            zone=result.zone,
        )
        print(dumps(doc))
    else:
        text = render_trace(result.trace, Screen.of(sys.stdout), title=describe_packet(packet))
        sys.stdout.write(text)
