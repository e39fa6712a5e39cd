"""Benchmark what ``nodetrace live trace`` costs the traffic it does not trace.

A lab path of three namespaces (client -> router -> server, veth pairs, the router forwarding
with a raw CT zone rule and a filter FORWARD chain) carries a UDP flood from one sender process
at full speed; the server's device counts what the router forwarded. The sender's CPU carries
the whole path (veth hands each packet on in the sender's softirq), so a cost in the router's
netfilter shows as fewer packets per second. Each round measures packets per second delivered without a live
run (the baseline) and then with ``nodetrace live trace`` running in the router for OTHER
traffic (TCP to port 22 from another address: its rules sit at the top of raw PREROUTING and
OUTPUT and are evaluated, without matching, for every flood packet; the run also polls its rules
once a second and re-reads the ruleset every two). Rounds alternate, so drift on a shared
machine hits both sides alike; the median and the best round of each side are compared (the
best is the round least disturbed by other load). The live run's own CPU use (its polling and
the commands it runs) is measured too. Target: no measurable loss (ratio within the rounds'
spread).
Needs root.

Run::

    .venv/bin/python bench/bench_live_overhead.py                 # 9 rounds of 1.5 s, both back ends
    .venv/bin/python bench/bench_live_overhead.py --rounds 3 --seconds 2 --backend nft
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run

PORT = 9999

SENDER = """
import socket, sys, time
end = time.monotonic() + float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], PORT))
data = b"x" * 18
n = 0
while True:
    for _ in range(256):
        try:
            s.send(data)
        except OSError:
            pass
    n += 256
    if time.monotonic() >= end:
        break
print(n)
""".replace("PORT", str(PORT))


def build(res: Resources, tag: str, backend: str) -> tuple[str, str, str]:
    """client -> router -> server; returns the three namespace names."""
    c, r, s = (res.add_netns(f"lb{x}{tag}") for x in "crs")
    run(["ip", "-n", c, "link", "add", f"c{tag}", "type", "veth", "peer", "name", f"rc{tag}",
         "netns", r])  # fmt: skip
    run(["ip", "-n", s, "link", "add", f"s{tag}", "type", "veth", "peer", "name", f"rs{tag}",
         "netns", r])  # fmt: skip
    for ns, dev, addr in ((c, f"c{tag}", "10.201.1.2/24"), (r, f"rc{tag}", "10.201.1.1/24"),
                          (r, f"rs{tag}", "10.201.2.1/24"), (s, f"s{tag}", "10.201.2.2/24")):  # fmt: skip
        run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
    run(["ip", "-n", c, "route", "add", "default", "via", "10.201.1.1"])
    run(["ip", "-n", s, "route", "add", "default", "via", "10.201.2.1"])
    run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], netns=r)
    rules = (
        "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        f"-A PREROUTING -i rc{tag} -j CT --zone 4097\nCOMMIT\n"
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT\n"
        "-A FORWARD -p udp -j ACCEPT\nCOMMIT\n"
    )
    run([f"iptables-{backend}-restore"], netns=r, input=rules)
    # The server drops the flood before any socket or ICMP reply: its device counts arrivals.
    run([f"iptables-{backend}", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport",
         str(PORT), "-j", "DROP"], netns=s)  # fmt: skip
    return c, r, s


def flood(client: str, server: str, seconds: float) -> float:
    """Packets per second that reached the server (its device's receive counter) from one
    full-speed sender."""
    dev = f"s{server[3:]}"
    before = _rx_packets(server, dev)
    started = time.monotonic()
    run([sys.executable, "-c", SENDER, "10.201.2.2", str(seconds)], netns=client,
        timeout=seconds + 30)  # fmt: skip
    elapsed = time.monotonic() - started
    time.sleep(0.05)
    return (_rx_packets(server, dev) - before) / elapsed


def _rx_packets(netns: str, dev: str) -> int:
    return int(run(["cat", f"/sys/class/net/{dev}/statistics/rx_packets"], netns=netns).stdout)


def start_live(router: str, ledgers: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "nodetrace", "live", "trace", "--netns", router, "--packet",
            "tcp,nw_src=10.201.9.9,tp_dst=22", "--format", "json", "--no-diagnose"]  # fmt: skip
    env = {**os.environ, "NODETRACE_LIVE_DIR": str(ledgers)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if '"event": "start"' not in line:
        proc.kill()
        raise SystemExit(f"live trace did not start: {line!r}")
    return proc


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and of the children it waited for (its ``iptables -C`` checks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


@dataclass
class Rounds:
    base: list[float] = field(default_factory=list)
    live: list[float] = field(default_factory=list)
    live_cpu: list[float] = field(default_factory=list)
    """Share of one CPU the live run used while the flood ran (itself and its commands)."""


def bench(backend: str, rounds: int, seconds: float) -> Rounds:
    out = Rounds()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        res = Resources(Ledger(Path(tmp) / "lab.ledger"))
        try:
            client, router, server = build(res, uuid.uuid4().hex[:5], backend)
            flood(client, server, 0.5)  # warm up (neighbours, caches)
            for _ in range(rounds):
                out.base.append(flood(client, server, seconds))
                proc = start_live(router, Path(tmp) / "ledgers")
                try:
                    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                    out.live.append(flood(client, server, seconds))
                    out.live_cpu.append((cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
            return out
        finally:
            problems = res.teardown()
            if problems:
                print("teardown:", problems, file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--backend", choices=("legacy", "nft", "both"), default="both")
    args = parser.parse_args()
    backends = ("legacy", "nft") if args.backend == "both" else (args.backend,)
    print(f"{args.rounds} rounds x {args.seconds:g} s of UDP flood per side, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    for backend in backends:
        started = time.monotonic()
        r = bench(backend, args.rounds, args.seconds)
        name = f"iptables-{backend}"
        for label, values in (("without live trace", r.base), ("with live trace", r.live)):
            print(f"{name}: {label:18} median {statistics.median(values):>9,.0f} pps, best "
                  f"{max(values):>9,.0f} (rounds {', '.join(f'{x:,.0f}' for x in values)})")  # fmt: skip
        print(f"{name}: ratio with/without: median {statistics.median(r.live) / statistics.median(r.base):.3f}, "
              f"best {max(r.live) / max(r.base):.3f}; spread of the baseline "
              f"{(max(r.base) - min(r.base)) / statistics.median(r.base):.0%}")  # fmt: skip
        print(f"{name}: the live run itself used {statistics.median(r.live_cpu):.1%} of one CPU "
              f"(median; {time.monotonic() - started:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
