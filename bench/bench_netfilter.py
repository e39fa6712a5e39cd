"""Benchmark: parse a 500-port Neutron hybrid-firewall ruleset (written by
``nodetrace.neutron.firewall``, as the agent writes it) and push 10,000 varied packets through
PREROUTING -> FORWARD -> POSTROUTING with the netfilter engine.

Baseline, measured in the same run: ``iptables-legacy-restore --test`` and
``iptables-nft-restore --test`` on the same file (inside a private namespace holding the
ruleset's ipsets, removed afterwards). Needs root for the baseline; without it, only nodetrace
is measured.

    .venv/bin/python bench/bench_netfilter.py [--ports 500] [--packets 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.model.packet import Packet, TcpFlag
from nodetrace.neutron.firewall import NodeFirewall, PortFilter, node_firewall
from nodetrace.neutron.naming import PortDevices
from nodetrace.neutron.scenario import (
    Direction,
    Network,
    NetworkType,
    Node,
    Port,
    Scenario,
    SecurityGroup,
    SgRule,
)
from nodetrace.parsers.ipset_save import parse_ipset_save
from nodetrace.parsers.iptables_save import parse_iptables_save

WEB, MEMBERS = "5f0c4e2a-0000-4000-8000-000000000001", "9d8c7b6a-5e4f-4a3b-2c1d-000000000002"


def _security_groups() -> tuple[SecurityGroup, ...]:
    """13 ingress rules (one from the remote group ``members``) and 3 egress rules per port."""
    ingress, egress = Direction.INGRESS, Direction.EGRESS
    rules = [
        SgRule(ingress, protocol="tcp", port_min=22, port_max=22),
        SgRule(ingress, protocol="icmp"),
        SgRule(ingress, remote_group=MEMBERS),
        SgRule(ingress, protocol="tcp", port_min=8000, port_max=8100),
        SgRule(ingress, protocol="udp", port_min=53, port_max=53,
               remote_ip_prefix=IPv4Network("192.168.0.0/16")),
        *(SgRule(ingress, protocol="tcp", port_min=1000 + j, port_max=1000 + j,
                 remote_ip_prefix=IPv4Network(f"172.16.{j}.0/24")) for j in range(8)),
        SgRule(egress, protocol="tcp", port_min=80, port_max=80),
        SgRule(egress, protocol="udp", port_min=53, port_max=53),
        SgRule(egress),
    ]  # fmt: skip
    return SecurityGroup("web", WEB, tuple(rules)), SecurityGroup("members", MEMBERS)


def _node(n: int, rng: random.Random) -> tuple[list[Port], NodeFirewall]:
    """``n`` ports in group ``web``, every third one also in ``members``, and their firewall."""
    net = Network("private", str(uuid.UUID(int=1)), NetworkType.VXLAN, 100,
                  IPv4Network("10.0.0.0/16"), 1450)  # fmt: skip
    ports = []
    for i in range(n):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        mac = f"fa:16:3e:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"
        groups = (WEB, MEMBERS) if i % 3 == 0 else (WEB,)
        ip = IPv4Address(0x0A000000 + 10 + i)
        ports.append(Port(f"port{i}", pid, "cmp1", net.id, mac, (ip,), groups))
    scenario = Scenario(
        "bench", (Node("cmp1", IPv4Address("192.168.50.1")),), (net,), _security_groups(),
        tuple(ports),
    )  # fmt: skip
    filters = [PortFilter(port, zone=4097 + i) for i, port in enumerate(ports)]
    return ports, node_firewall(scenario, filters)


def _packets(ports: list[Port], count: int, rng: random.Random):  # type: ignore[no-untyped-def]
    remote = [IPv4Address(f"10.1.{i}.{j}") for i in range(4) for j in range(1, 60)]
    for n in range(count):
        port = rng.choice(ports)
        proto = rng.choice(["tcp", "tcp", "udp", "icmp"])
        ingress = rng.random() < 0.5
        peer = rng.choice(remote)
        src, dst = (peer, port.fixed_ips[0]) if ingress else (port.fixed_ips[0], peer)
        kw: dict[str, object] = {"nw_src": src, "nw_dst": dst, "ip_id": n & 0xFFFF}
        if proto == "tcp":
            kw.update(nw_proto=6, tp_src=rng.randint(1024, 65535),
                      tp_dst=rng.choice([22, 80, 443, 8050, 1003, 3306]),
                      tcp_flags=int(rng.choice([TcpFlag.SYN, TcpFlag.ACK, TcpFlag.SYN | TcpFlag.ACK])))  # fmt: skip
        elif proto == "udp":
            kw.update(
                nw_proto=17, tp_src=rng.randint(1024, 65535), tp_dst=rng.choice([53, 123, 67])
            )
        else:
            kw.update(nw_proto=1, icmp_type=rng.choice([8, 0]), icmp_code=0, icmp_id=n, icmp_seq=1)
        mac = port.mac
        packet = Packet(
            dl_src=mac if not ingress else "fa:16:3e:ff:ff:ff",
            dl_dst="fa:16:3e:ff:ff:ff" if not ingress else mac,
            **kw,  # type: ignore[arg-type]
        )
        dev = PortDevices.for_port(port.id)
        path = (
            bridge_path(dev.qbr, physin=dev.qvb, physout=dev.tap)
            if ingress
            else bridge_path(dev.qbr, physin=dev.tap, physout=dev.qvb)
        )
        yield packet, path


def _baseline(text: str, ipsets: str) -> dict[str, float]:
    """Time ``iptables-{legacy,nft}-restore --test`` in a throwaway namespace (root only)."""
    if os.geteuid() != 0:
        return {}
    from nodetrace.lab.ledger import Ledger
    from nodetrace.lab.resources import Resources
    from nodetrace.lab.run import run

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        res = Resources(Ledger(Path(tmp) / "bench.ledger"))
        try:
            ns = res.add_netns(f"nfbench{uuid.uuid4().hex[:6]}")
            run(["ipset", "restore"], netns=ns, input=ipsets)
            for tool in ("iptables-legacy-restore", "iptables-nft-restore"):
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    proc = subprocess.run(
                        ["ip", "netns", "exec", ns, tool, "--test"],
                        input=text, text=True, capture_output=True, check=False,
                    )  # fmt: skip
                    times.append(time.perf_counter() - start)
                    if proc.returncode != 0:
                        raise SystemExit(f"{tool} --test failed: {proc.stderr.strip()}")
                out[tool] = min(times)
        finally:
            res.teardown()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ports", type=int, default=500)
    ap.add_argument("--packets", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    ports, firewall = _node(args.ports, rng)
    text, ipset_text = firewall.iptables_save, firewall.ipset_restore
    nrules = text.count("\n-A ")

    parse_times = []
    for _ in range(3):
        start = time.perf_counter()
        ruleset = parse_iptables_save(text, source="bench.save")
        parse_times.append(time.perf_counter() - start)
    parse_s = min(parse_times)

    ipsets = parse_ipset_save(ipset_text, source="bench.ipset")
    start = time.perf_counter()
    engine = NetfilterEngine(ruleset, ipsets=ipsets)
    compile_s = time.perf_counter() - start
    packets = list(_packets(ports, args.packets, rng))
    per_packet = []
    verdicts: dict[str, int] = {}
    start = time.perf_counter()
    for packet, path in packets:
        t0 = time.perf_counter()
        result = engine.run(packet, path)
        per_packet.append(time.perf_counter() - t0)
        verdicts[str(result.verdict)] = verdicts.get(str(result.verdict), 0) + 1
    run_s = time.perf_counter() - start

    baseline = _baseline(text, ipset_text)
    load = os.getloadavg()
    print(f"ruleset: {args.ports} ports, {nrules} rules, {len(text) / 1e6:.1f} MB")
    print(f"parse:   {parse_s:.3f} s (best of 3)")
    for tool, secs in baseline.items():
        print(f"         {tool} --test: {secs:.3f} s (best of 3) -> ratio {parse_s / secs:.2f}")
    print(f"engine:  compile {compile_s:.3f} s")
    print(
        f"packets: {len(packets)} in {run_s:.2f} s = {len(packets) / run_s:,.0f} packets/s "
        f"(median {statistics.median(per_packet) * 1e6:.0f} us, p99 "
        f"{sorted(per_packet)[int(len(per_packet) * 0.99)] * 1e6:.0f} us); verdicts {verdicts}"
    )
    print(
        f"load:    {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min) on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
