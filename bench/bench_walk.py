"""Whole-node benchmark: load a generated 500-port node snapshot, and trace a packet from the
tunnel to a VM through br-tun, br-int, the qvo/qvb veth, the qbr bridge with iptables and the tap.

    .venv/bin/python bench/bench_walk.py [--ports 500] [--traces 2000]

Targets (issue 5): load <= 2 s; full-node trace (tunnel in -> VM) <= 2 ms median.
Baselines measured in the same run: for the load, reading every file of the bundle and decoding
its JSON (what any reader pays); for the trace, the OpenFlow engine alone on the same packet
(the part ``ofproto/trace`` covers), so the ratio is what the rest of the node costs on top.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic_bundle import write_bundle
from nodetrace.engine.walk import FromOvsPort, ToDevice, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.errors import DiagnosticSink
from nodetrace.model.packet import IPProto, Packet
from nodetrace.model.trace import Outcome
from nodetrace.neutron import synthetic_node
from nodetrace.neutron.generate import VmPort
from nodetrace.neutron.scenario import NetworkType
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.snapshot.load import load


def read_baseline(root: Path) -> float:
    t0 = time.perf_counter()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            text = path.read_text()
            if path.suffix == ".json":
                json.loads(text)
            else:
                text.splitlines()
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=500)
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()

    state = synthetic_node(ports=args.ports, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_bundle(state, Path(tmp) / "bundle")
        loads, baselines, rulesets = [], [], []
        snap = None
        texts = [
            (root / "host" / f).read_text() for f in ("iptables-save.txt", "ip6tables-save.txt")
        ]
        for _ in range(args.loads):
            baselines.append(read_baseline(root))
            t0 = time.perf_counter()
            snap = load(root)
            loads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for text in texts:
                parse_iptables_save(text, source="bench", sink=DiagnosticSink())
            rulesets.append(time.perf_counter() - t0)
    assert snap is not None and snap.ovs is not None and snap.main.iptables is not None
    rules = sum(1 for _ in snap.main.iptables.rules())
    flows = sum(len(b.flows.flows) for b in snap.ovs.bridges if b.flows is not None)

    tunnel = next(t for t in state.tunnels if t.type is NetworkType.VXLAN)
    engines = engines_for(snap)
    start = FromOvsPort("br-tun", tunnel.name)

    def packet(vp: VmPort, kind: str, i: int) -> Packet:
        # A new source port or ICMP id each time: every trace is a connection's first packet.
        dst = next(ip for ip in vp.port.fixed_ips if ip.version == 4)
        common = {"dl_src": "fa:16:3e:ee:ee:01", "dl_dst": vp.port.mac,
                  "nw_src": ip_address("10.0.0.250"), "nw_dst": dst}  # fmt: skip
        if kind == "icmp":
            return Packet(**common, nw_proto=IPProto.ICMP, icmp_type=8, icmp_code=0,  # type: ignore[arg-type]
                          icmp_id=i % 65535 + 1, icmp_seq=1)  # fmt: skip
        proto, port = kind.split("/")
        return Packet(**common, nw_proto=IPProto.UDP if proto == "udp" else IPProto.TCP,  # type: ignore[arg-type]
                      tp_src=1024 + i % 60000, tp_dst=int(port),
                      tcp_flags=0x002 if proto == "tcp" else 0)  # fmt: skip

    def meta(vp: VmPort) -> tuple[tuple[str, str], ...]:
        return (
            ("tun_id", hex(vp.network.segmentation_id)),
            ("tun_src", tunnel.remote_ip),
            ("tun_dst", str(state.node.underlay_ip)),
        )

    # The first VXLAN VM whose security group lets one of these in: the whole path is walked.
    chosen = None
    for vp in state.vm_ports:
        if vp.network.type is not NetworkType.VXLAN or vp.zone is None:
            continue
        for kind in ("icmp", "tcp/22", "tcp/80", "udp/123", "tcp/443", "udp/53"):
            target = ToDevice(vp.devices.tap)
            probe = walk(snap, WalkRequest(packet(vp, kind, 0), start, meta(vp), None, target),
                         engines, switch=snap.ovs)  # fmt: skip
            if probe.outcome is Outcome.DELIVERED:
                chosen = (vp, kind, target)
                break
        if chosen:
            break
    assert chosen is not None, "no VM port accepts any probe packet"
    vp, kind, target = chosen

    first = walk(snap, WalkRequest(packet(vp, kind, 1), start, meta(vp), None, target), engines,
                 switch=snap.ovs)  # fmt: skip
    whole, ovs_only = [], []
    of = engines.openflow
    m = meta(vp)
    for i in range(2, args.traces + 2):
        p = packet(vp, kind, i)
        t0 = time.perf_counter()
        trace = walk(snap, WalkRequest(p, start, m, None, target), engines, switch=snap.ovs)
        whole.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        of.run("br-tun", tunnel.name, p, m)
        ovs_only.append(time.perf_counter() - t0)
        assert trace.outcome is Outcome.DELIVERED, trace.reason

    load_med, base_med = statistics.median(loads), statistics.median(baselines)
    walk_med, of_med = statistics.median(whole), statistics.median(ovs_only)
    print(f"node: {args.ports} VM ports, {len(snap.topology.interfaces)} Linux devices, "
          f"{rules} iptables rules (v4), {flows} flows")  # fmt: skip
    print(f"load: median {load_med:.3f} s of {args.loads} (target <= 2 s); read+decode baseline "
          f"{base_med:.3f} s; ratio {load_med / base_med:.1f}x; of which parsing the two "
          f"rulesets alone takes {statistics.median(rulesets):.3f} s")  # fmt: skip
    print(f"trace tunnel -> VM ({kind}, {first.outcome.value}, {len(first.steps)} steps): median "
          f"{walk_med * 1e3:.3f} ms of {args.traces} (target <= 2 ms); OpenFlow part alone "
          f"{of_med * 1e3:.3f} ms; ratio {walk_med / of_med:.1f}x")  # fmt: skip
    print(f"load average: {os.getloadavg()[0]:.2f} (2 cores, shared)")
    return 0 if first.outcome is Outcome.DELIVERED else 1


if __name__ == "__main__":
    sys.exit(main())
