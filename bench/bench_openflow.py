"""Benchmark the OpenFlow engine on a 500-port compute node against ``ofproto/trace``.

The node is generated the way the Neutron OVS agent builds it: br-int with 500 VM ports (ARP,
neighbour-advertisement and MAC anti-spoofing flows per port, tables 0/24/25/30/58/59/60), br-tun
with 40 VXLAN tunnels, 50 networks and 2000 learned unicast flows (tables 0/2/4/10/20/22) --
over 5,000 flows. It is loaded into a real ovs-vswitchd (userspace datapath, private namespace),
and read back with the real commands; then, in the same run:

* parse: nodetrace's parsers on every output of the snapshot (best of 3);
* trace: nodetrace's engine on N packets (VM egress allowed/spoofed to local/remote/unknown
  MACs, broadcasts, tunnel ingress), pinned to one CPU;
* baseline: ovs-vswitchd answering ``ofproto/trace`` for the same packets over its unixctl
  socket (no process start per packet), and through ``ovs-appctl`` (a process per packet);
* agreement: a sample of packets compared step by step with OVS (tests/lab/openflow_harness).

Run (root, Open vSwitch installed)::

    .venv/bin/python bench/bench_openflow.py            # 2,000 packets
    .venv/bin/python bench/bench_openflow.py --packets 5000 --seed 7
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodetrace.engine.openflow import OpenFlowEngine  # noqa: E402
from nodetrace.lab.ledger import Ledger  # noqa: E402
from nodetrace.lab.resources import Resources  # noqa: E402
from nodetrace.model.ovs_switch import OvsSwitch  # noqa: E402
from nodetrace.parsers.flow_syntax import parse_flow  # noqa: E402
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show  # noqa: E402
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows  # noqa: E402
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show  # noqa: E402
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list  # noqa: E402
from tests.lab.openflow_harness import OvsLab, Pipeline, PortSpec, differences  # noqa: E402

PORTS = 500
TUNNELS = 40
NETWORKS = 50
REMOTE_VMS = 500
COOKIE = "0x8f1e2d3c4b5a6978"


def vm(i: int) -> tuple[str, str, str, int]:
    """(port name, MAC, IPv4, local VLAN) of local VM i."""
    return (
        f"qvo{i:04d}-aa",
        f"fa:16:3e:10:{i >> 8:02x}:{i & 0xFF:02x}",
        f"10.{i % NETWORKS}.{i >> 8}.{i & 0xFF}",
        i % NETWORKS + 1,
    )


def remote(i: int) -> tuple[str, int, int]:
    """(MAC, local VLAN, tunnel index) of remote VM i."""
    return f"fa:16:3e:20:{i >> 8:02x}:{i & 0xFF:02x}", i % NETWORKS + 1, i % TUNNELS


def tunnel(t: int) -> tuple[str, str]:
    ip = f"10.100.0.{t + 1}"
    a, b, c, d = (int(x) for x in ip.split("."))
    return f"vxlan-{(a << 24 | b << 16 | c << 8 | d):08x}", ip


def node() -> Pipeline:
    c = f"cookie={COOKIE},"
    br_int = [
        f"{c}table=0,priority=65535,vlan_tci=0x0fff/0x1fff,actions=drop",
        f"{c}table=0,priority=0,actions=resubmit(,58)",
        f"{c}table=23,priority=0,actions=drop",
        f"{c}table=24,priority=0,actions=drop",
        f"{c}table=30,priority=0,actions=resubmit(,58)",
        f"{c}table=58,priority=0,actions=resubmit(,59)",
        f"{c}table=59,priority=0,actions=resubmit(,60)",
        f"{c}table=60,priority=1,actions=NORMAL",
    ]
    for i in range(PORTS):
        port, mac, ip, _ = vm(i)
        ip6 = f"fe80::f816:3eff:fe10:{i:x}"
        br_int += [
            f"{c}table=0,priority=10,arp,in_port={port},actions=resubmit(,24)",
            f"{c}table=0,priority=10,icmp6,in_port={port},icmp_type=136,actions=resubmit(,24)",
            f"{c}table=0,priority=9,in_port={port},actions=resubmit(,25)",
            f"{c}table=24,priority=2,arp,in_port={port},arp_spa={ip},actions=resubmit(,25)",
            f"{c}table=24,priority=2,icmp6,in_port={port},icmp_type=136,nd_target={ip6},actions=resubmit(,58)",
            f"{c}table=25,priority=2,in_port={port},dl_src={mac},actions=resubmit(,30)",
        ]
    br_tun = [
        f"{c}table=0,priority=1,in_port=patch-int,actions=resubmit(,2)",
        f"{c}table=0,priority=0,actions=drop",
        f"{c}table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,20)",
        f"{c}table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,22)",
        f"{c}table=4,priority=0,actions=drop",
        f"{c}table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,cookie={COOKIE},"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:patch-int",
        f"{c}table=20,priority=0,actions=resubmit(,22)",
        f"{c}table=22,priority=0,actions=drop",
    ]
    tun_ports = [PortSpec("patch-int", "patch", options={"peer": "patch-tun"})]
    for t in range(TUNNELS):
        name, ip = tunnel(t)
        tun_ports.append(
            PortSpec(
                name, "vxlan", options={"remote_ip": ip, "local_ip": "10.100.0.254", "key": "flow"}
            )
        )
        br_tun.append(f"{c}table=0,priority=1,in_port={name},actions=resubmit(,4)")
    flood = ",".join(f"output:{tunnel(t)[0]}" for t in range(TUNNELS))
    for n in range(1, NETWORKS + 1):
        br_tun += [
            f"{c}table=4,priority=1,tun_id={0x400 + n:#x},actions=mod_vlan_vid:{n},resubmit(,10)",
            f"{c}table=22,priority=1,dl_vlan={n},actions=strip_vlan,set_tunnel:{0x400 + n:#x},{flood}",
        ]
    for r in range(REMOTE_VMS * 4):
        mac, lvid, t = remote(r % REMOTE_VMS)
        mac = f"fa:16:3e:{0x20 + r // REMOTE_VMS:02x}:{(r % REMOTE_VMS) >> 8:02x}:{r & 0xFF:02x}"
        br_tun.append(
            f"cookie={COOKIE},table=20,priority=1,hard_timeout=300,vlan_tci={lvid:#06x}/0x0fff,dl_dst={mac},"
            f"actions=load:0->NXM_OF_VLAN_TCI[],load:{0x400 + lvid:#x}->NXM_NX_TUN_ID[],output:{tunnel(t)[0]}"
        )
    int_ports = [PortSpec("patch-tun", "patch", options={"peer": "patch-int"})]
    int_ports += [PortSpec(vm(i)[0], tag=vm(i)[3]) for i in range(PORTS)]
    fdb = [("br-int", vm(i)[0], vm(i)[3], vm(i)[1]) for i in range(0, PORTS, 2)]
    fdb += [("br-int", "patch-tun", remote(r)[1], remote(r)[0]) for r in range(0, REMOTE_VMS, 2)]
    remotes = tuple(tunnel(t)[1] for t in range(TUNNELS))
    return Pipeline(
        {"br-int": int_ports, "br-tun": tun_ports},
        {"br-int": br_int, "br-tun": br_tun},
        fdb,
        local_ip="10.100.0.254",
        remotes=remotes,
        dump_args=(),
        load_args=(),
    )


def packets(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        i = rng.randrange(PORTS)
        port, mac, ip, lvid = vm(i)
        kind = rng.random()
        if kind < 0.6:
            if rng.random() < 0.5:
                dst = vm(rng.randrange(PORTS))[1]
            else:
                dst = rng.choice(
                    [remote(rng.randrange(REMOTE_VMS))[0], "fa:16:3e:99:99:99", "ff:ff:ff:ff:ff:ff"]
                )
            src = mac if rng.random() < 0.9 else "fa:16:3e:66:66:66"
            out.append(
                (
                    "br-int",
                    f"tcp,in_port={port},dl_src={src},dl_dst={dst},nw_src={ip},nw_dst=10.9.9.9,"
                    f"nw_ttl=64,tp_src={rng.randint(1024, 65535)},tp_dst=443",
                )
            )
        elif kind < 0.75:
            spa = ip if rng.random() < 0.9 else "10.200.0.1"
            out.append(
                (
                    "br-int",
                    f"arp,in_port={port},dl_src={mac},dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,"
                    f"arp_spa={spa},arp_tpa=10.9.9.9,arp_sha={mac}",
                )
            )
        else:
            name, tip = tunnel(rng.randrange(TUNNELS))
            dst = vm(rng.randrange(PORTS))[1] if rng.random() < 0.8 else "ff:ff:ff:ff:ff:ff"
            out.append(
                (
                    "br-tun",
                    f"icmp,in_port={name},tun_id={0x400 + lvid:#x},tun_src={tip},tun_dst=10.100.0.254,"
                    f"dl_src={remote(i)[0]},dl_dst={dst},nw_src=10.9.9.9,nw_dst={ip},nw_ttl=64,"
                    "icmp_type=8,icmp_code=0",
                )
            )
    return out


def parse_snapshot(texts: dict[str, str]) -> tuple[OvsSwitch, int]:
    flows, shows, fdbs = {}, {}, {}
    for br in ("br-int", "br-tun"):
        flows[br] = parse_ovs_ofctl_dump_flows(texts[f"flows.{br}"], source=f"dump-flows {br}")
        shows[br] = parse_ovs_ofctl_show(texts[f"show.{br}"], source=f"show {br}")
        fdbs[br] = parse_ovs_appctl_fdb_show(texts[f"fdb.{br}"], source=f"fdb/show {br}")
    tables = [
        parse_ovs_vsctl_list(texts[f"list.{t}"], source=t) for t in ("Bridge", "Port", "Interface")
    ]
    db = ovsdb_from_tables(tables)
    db = type(db)(tuple(b for b in db.bridges if b.name in flows), db.ovs_version, db.source)
    switch = OvsSwitch.build(flows, ovsdb=db, ofctl=shows, fdb=fdbs)
    return switch, sum(len(d.flows) for d in flows.values())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--packets", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--check", type=int, default=200, help="packets compared step by step with OVS")
    ap.add_argument("--keep", type=Path, help="also write the snapshot's outputs to this folder")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (it runs a private ovs-vswitchd in a namespace)")
    from ovs.unixctl.client import UnixctlClient

    rng = random.Random(args.seed)
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        res = Resources(Ledger(Path(tmp) / "ledger"))
        try:
            lab = OvsLab(res, f"ofb{uuid.uuid4().hex[:6]}", Path(tmp))
            t0 = time.monotonic()
            lab.load(node())
            lab.snapshot()
            texts = lab.texts
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                for key, text in texts.items():
                    (args.keep / key).write_text(text)
            print(f"node loaded into ovs-vswitchd in {time.monotonic() - t0:.1f}s")
            best = min(_timed(lambda: parse_snapshot(texts)) for _ in range(3))
            switch, n_flows = parse_snapshot(texts)
            print(
                f"flows: {n_flows} (br-int {len(switch.bridge('br-int').flows.flows)}, "  # type: ignore[union-attr]
                f"br-tun {len(switch.bridge('br-tun').flows.flows)}), ports: {len(switch.bridge('br-int').ports)} on br-int"
            )  # type: ignore[union-attr]
            print(f"parse (all snapshot outputs, best of 3): {best:.3f}s")
            cases = packets(rng, args.packets)
            specs = []
            for bridge, flow in cases:
                spec = parse_flow(flow)
                specs.append(
                    (
                        bridge,
                        spec.get("in_port"),
                        spec.packet,
                        [(k, v) for k, v in spec.metadata if k != "in_port"],
                    )
                )
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
            engine = OpenFlowEngine(switch)
            start, cpu = time.perf_counter(), time.process_time()
            for bridge, in_port, packet, metadata in specs:
                engine.trace(bridge, in_port, packet, metadata)  # type: ignore[arg-type]
            nt, nt_cpu = time.perf_counter() - start, time.process_time() - cpu
            nt_rate = len(specs) / nt_cpu
            print(
                f"nodetrace: {len(specs)} traces in {nt:.2f}s wall, {nt_cpu:.2f}s CPU = "
                f"{nt_rate:,.0f} traces per CPU second (pinned to one CPU; "
                f"{len(specs) / nt:,.0f}/s wall)"
            )
            err, client = UnixctlClient.create(str(lab.ovs.rundir / "ovs-vswitchd.ctl"))
            if err:
                sys.exit(f"unixctl: {os.strerror(err)}")
            start = time.perf_counter()
            for bridge, flow in cases:
                err, error, _ = client.transact("ofproto/trace", [bridge, flow])
                if err or error:
                    sys.exit(f"ofproto/trace failed: {error or os.strerror(err)}")
            ovs = time.perf_counter() - start
            ovs_rate = len(cases) / ovs
            client.close()
            print(
                f"ovs-vswitchd ofproto/trace over unixctl: {len(cases)} in {ovs:.2f}s = {ovs_rate:,.0f} traces/s"
            )
            start = time.perf_counter()
            for bridge, flow in cases:
                lab.trace(bridge, flow)
            appctl = time.perf_counter() - start
            appctl_rate = len(cases) / appctl
            print(
                f"ovs-appctl ofproto/trace (a process per packet): {len(cases)} in {appctl:.2f}s "
                f"= {appctl_rate:,.0f} traces/s"
            )
            print(
                f"ratio nodetrace / ofproto/trace: {nt_rate / ovs_rate:.2f}x (unixctl), "
                f"{nt_rate / appctl_rate:.1f}x (ovs-appctl)"
            )
            agree = 0
            check = cases[: args.check]
            for bridge, flow in check:
                spec = parse_flow(flow)
                metadata = [(k, v) for k, v in spec.metadata if k != "in_port"]
                t = engine.trace(bridge, spec.get("in_port") or "", spec.packet, metadata)
                agree += not differences(lab.trace(bridge, flow), t, lab.dpif)
            print(f"agreement with OVS, step by step: {agree}/{len(check)}")
        finally:
            problems = res.teardown()
            if problems:
                print("teardown problems:", problems)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
