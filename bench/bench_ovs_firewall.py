"""The native OVS firewall on a generated 500-port node: generating its flows, and the OpenFlow
engine tracing VM-to-VM packets through them (conntrack recirculations and conjunctions), against
the same node with the hybrid iptables driver in the same run (its br-int has the agent's
anti-spoofing tables only: the security groups are in iptables there).

    .venv/bin/python bench/bench_ovs_firewall.py [--ports 500] [--packets 500] [--seed 1]
        [--exposure-ports 50]

No root, no Open vSwitch: the engine reads the generated ``ovs-ofctl dump-flows`` text. Last,
the exposure audit of the first ports: the native node's flows walked symbolically
(``audit/exposure_ovs.py``) against the hybrid node's iptables chains (``audit/exposure.py``
on the node's bundle), per port, in the same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic_bundle import write_bundle
from nodetrace.audit.exposure import NodeExposure, start_set
from nodetrace.audit.exposure_ovs import family_classes, port_start
from nodetrace.audit.exposure_ovs_walk import FlowWalker
from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.model.exposure import Direction, universe
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.packet import Family
from nodetrace.neutron.generate import NodeState, generate_node
from nodetrace.neutron.scenario import FirewallDriver, Scenario
from nodetrace.neutron.synthetic import NODE_UNDER_TEST, synthetic_scenario
from nodetrace.parsers.flow_syntax import parse_flow
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show
from nodetrace.snapshot.load import load


def switch_of(state: NodeState) -> OvsSwitch:
    """The switch a snapshot of the generated node would hold (ports numbered as generated)."""
    lines = []
    for bridge in ("br-int", "br-tun"):
        lines += [f"    Bridge {bridge}", "        datapath_type: netdev"]
        for p in state.bridge_ports(bridge):
            lines += [f"        Port {p.name}"]
            lines += [f"            tag: {p.tag}"] if p.tag is not None else []
            lines += [f"            Interface {p.name}"]
            lines += [f"                type: {p.type}"] if p.type else []
            opts = ", ".join(f'{k}="{v}"' if "." in v else f"{k}={v}" for k, v in p.options)
            lines += [f"                options: {{{opts}}}"] if opts else []
    config = parse_ovs_vsctl_show("\n".join(lines) + "\n")
    numbers = {(p.bridge, p.name): p.ofport for p in state.ovs_ports}
    bridges = tuple(
        replace(b, ports=tuple(
            replace(p, interfaces=tuple(
                replace(i, ofport=numbers.get((b.name, i.name))) for i in p.interfaces))
            for p in b.ports))
        for b in config.bridges
    )  # fmt: skip
    dumps = {
        br: parse_ovs_ofctl_dump_flows(state.dump_flows_text(br), source=br)
        for br in ("br-int", "br-tun")
    }
    return OvsSwitch.build(dumps, ovsdb=replace(config, bridges=bridges))


def packets(state: NodeState, count: int, seed: int) -> list[tuple[str, str]]:
    """(in_port, flow) of TCP SYNs and ICMP echoes between VMs of one network on the node."""
    rng = random.Random(seed)
    by_net: dict[str, list[int]] = {}
    for i, vp in enumerate(state.vm_ports):
        if vp.port.ips(4):
            by_net.setdefault(vp.port.network, []).append(i)
    nets = [ids for ids in by_net.values() if len(ids) > 1]
    out = []
    for _ in range(count):
        a, b = rng.sample(rng.choice(nets), 2)
        src, dst = state.vm_ports[a], state.vm_ports[b]
        head = (
            f"dl_src={src.port.mac},dl_dst={dst.port.mac},nw_src={src.port.ips(4)[0]},"
            f"nw_dst={dst.port.ips(4)[0]},nw_ttl=64"
        )
        if rng.random() < 0.2:
            flow = f"icmp,{head},icmp_type=8,icmp_code=0"
        else:
            port = rng.choice((22, 80, 443, 1500, 3306, 5432, 8080))
            flow = f"tcp,{head},tp_src={rng.randrange(32768, 61000)},tp_dst={port},tcp_flags=+syn"
        out.append((_port_name(state, a), flow))
    return out


def _port_name(state: NodeState, index: int) -> str:
    vp = state.vm_ports[index]
    names = {p.ofport: p.name for p in state.bridge_ports("br-int")}
    return names[vp.ofport]


def measure(scenario: Scenario, count: int, seed: int) -> dict[str, float]:
    gen = []
    for _ in range(3):
        t0 = time.perf_counter()
        state = generate_node(scenario, NODE_UNDER_TEST)
        gen.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    engine = OpenFlowEngine(switch_of(state))
    load = time.perf_counter() - t0
    sends = [(port, parse_flow(flow)) for port, flow in packets(state, count, seed)]
    t0 = time.perf_counter()
    delivered = 0
    for port, spec in sends:
        t = engine.trace("br-int", port, spec.packet, spec.metadata, given=spec.given)
        delivered += bool(t.egress)
    trace = time.perf_counter() - t0
    return {
        "flows": len(state.bridge_flows("br-int")),
        "generate_s": min(gen),
        "load_s": load,
        "trace_us": 1e6 * trace / len(sends),
        "delivered": delivered / len(sends),
    }


def native_exposure(state: NodeState, count: int) -> list[float]:
    """Seconds per port: inbound and outbound classes of both families of the first ports."""
    bridge = switch_of(state).bridge("br-int")
    assert bridge is not None
    walkers = {f: FlowWalker(bridge, f, universe(f)) for f in Family}
    times = []
    for vp in state.vm_ports[:count]:
        t0 = time.perf_counter()
        start = port_start(bridge, vp.ofport, None, vp.port.mac)
        for direction in (Direction.INBOUND, Direction.OUTBOUND):
            for family, walker in walkers.items():
                family_classes(walker, start, direction, start_set(family, 0))
        times.append(time.perf_counter() - t0)
    return times


def hybrid_exposure(state: NodeState, count: int) -> list[float]:
    """Seconds per port of the hybrid node's exposure, from its bundle as collect writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        node = NodeExposure(load(str(write_bundle(state, Path(tmp) / "node"))))
        times = []
        for port in node.ports()[:count]:
            t0 = time.perf_counter()
            node.exposure(port)
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ports", type=int, default=500)
    ap.add_argument("--packets", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exposure-ports", type=int, default=50)
    args = ap.parse_args()
    base = synthetic_scenario(ports=args.ports, seed=args.seed)
    results = {
        d: measure(replace(base, firewall_driver=d), args.packets, args.seed)
        for d in (FirewallDriver.IPTABLES_HYBRID, FirewallDriver.OPENVSWITCH)
    }
    print(f"{args.ports}-port node, {args.packets} VM-to-VM packets, seed {args.seed}")
    print(
        f"{'driver':16} {'br-int flows':>12} {'generate':>9} {'load':>8} {'trace/pkt':>10} {'delivered':>9}"
    )
    for d, r in results.items():
        print(
            f"{d.value:16} {r['flows']:12.0f} {r['generate_s']:8.3f}s {r['load_s']:7.3f}s "
            f"{r['trace_us']:8.0f}us {100 * r['delivered']:8.0f}%"
        )
    h, n = results[FirewallDriver.IPTABLES_HYBRID], results[FirewallDriver.OPENVSWITCH]
    print(
        f"ratio openvswitch/iptables_hybrid: generate {n['generate_s'] / h['generate_s']:.2f}, "
        f"load {n['load_s'] / h['load_s']:.2f}, trace per packet {n['trace_us'] / h['trace_us']:.2f}"
    )
    if args.exposure_ports:
        count = args.exposure_ports
        hybrid = hybrid_exposure(generate_node(base, NODE_UNDER_TEST), count)
        native_state = generate_node(
            replace(base, firewall_driver=FirewallDriver.OPENVSWITCH), NODE_UNDER_TEST
        )
        native = native_exposure(native_state, count)
        mh, mn = statistics.median(hybrid), statistics.median(native)
        print(
            f"exposure of the first {count} ports, median per port: iptables_hybrid "
            f"{mh * 1000:.0f} ms, openvswitch {mn * 1000:.0f} ms (max {max(native) * 1000:.0f} ms); "
            f"ratio {mn / mh:.2f}"
        )


if __name__ == "__main__":
    main()
