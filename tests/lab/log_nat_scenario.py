"""A routed lab whose packets change addresses between hooks without nat lines (conntrack NAT).

Three namespaces: a client ``c`` (10.0.0.2) behind a router ``r`` (10.0.0.1 on the client
side, 192.168.0.1 on the server side) and a server ``s`` (192.168.0.2). The router
masquerades what the client sends to the server, and forwards its own port 8080 on
192.168.0.1 to 10.0.0.1:80 (a port-forward to another of its local addresses). TRACE is set
in raw PREROUTING and raw OUTPUT for ICMP and TCP only, so each packet logs its raw policy
line exactly once: the number of packets in the log is known from the kernel's own lines.

What this makes the kernel print (the cases ``nodetrace log`` must group as one packet):

* the replies to the masqueraded client enter with the router's public address
  (``DST=192.168.0.1``) and reach FORWARD with the client's (``DST=10.0.0.2``): conntrack
  undid the NAT in nat PREROUTING, which only a connection's first packet is traced through;
* the server's packets to the port-forward after the first enter as ``192.168.0.1:8080`` and
  reach INPUT as ``10.0.0.1:80``; the first one shows the nat table's DNAT rule;
* one echo reply (the one to a 100-byte ping, IP length 128) is dropped in FORWARD by a rule
  that matches the client's address, which the packet only carries after the de-NAT.

Run as a program to refresh the samples in tests/data/tracelog (as root)::

    .venv/bin/python -m tests.lab.log_nat_scenario --write tests/data/tracelog
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nodetrace.lab.capture import KernelTraceLog, TraceMonitor
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import in_netns, run
from nodetrace.model.netfilter import Backend

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p icmp -j TRACE
-A PREROUTING -p tcp -j TRACE
-A OUTPUT -p icmp -j TRACE
-A OUTPUT -p tcp -j TRACE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 192.168.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.1:80
-A POSTROUTING -s 10.0.0.0/24 -o {up} -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -d 10.0.0.2/32 -p icmp -m icmp --icmp-type 0 -m length --length 128 -j DROP
-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -s 10.0.0.0/24 -i {down} -j ACCEPT
COMMIT
"""

SERVER = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(10)\n"
    "c,_=s.accept(); c.recv(100); c.sendall(b'pong'); c.close(); s.close()\n"
)
CLIENT = (
    "import socket,sys\n"
    "c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)\n"
    "c.sendall(b'ping'); assert c.recv(100) == b'pong'; c.close()\n"
)


@dataclass
class NatCapture:
    backend: Backend
    rules: str
    traces: dict[str, str] = field(default_factory=dict)
    devices: frozenset[str] = frozenset()


@dataclass(frozen=True)
class NatLab:
    client: str
    router: str
    server: str
    down: str
    """The router's device towards the client."""
    up: str
    """The router's device towards the server."""


def build(lab: Resources, prefix: str, backend: Backend) -> tuple[NatLab, str]:
    c, r, s = (lab.add_netns(f"{prefix}-{n}") for n in ("c", "r", "s"))
    down, up = f"{prefix}d", f"{prefix}u"
    run(["ip", "-n", r, "link", "add", down, "type", "veth", "peer", "name", "eth0", "netns", c])
    run(["ip", "-n", r, "link", "add", up, "type", "veth", "peer", "name", "eth0", "netns", s])
    for ns, dev, addr in ((r, down, "10.0.0.1/24"), (r, up, "192.168.0.1/24")):
        run(["ip", "-n", ns, "addr", "add", addr, "dev", dev])
        run(["ip", "-n", ns, "link", "set", dev, "up"])
    for ns, addr, gw in ((c, "10.0.0.2/24", "10.0.0.1"), (s, "192.168.0.2/24", None)):
        run(["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        if gw:
            run(["ip", "-n", ns, "route", "add", "default", "via", gw])
    run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], netns=r)
    for ns in (c, r, s):  # IPv6 neighbour discovery would only add noise
        run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"], netns=ns)
    tool = "iptables-legacy" if backend is Backend.LEGACY else "iptables-nft"
    run([f"{tool}-restore"], netns=r, input=RULES.format(up=up, down=down))
    saved = run([f"{tool}-save"], netns=r).stdout
    return NatLab(c, r, s, down, up), saved


def _tcp(server_ns: str, client_ns: str, bind: str, port: int, connect: str, cport: int) -> None:
    """One TCP exchange: a listener started in ``server_ns``, a client in ``client_ns``."""
    listener = subprocess.Popen(
        in_netns(server_ns, [sys.executable, "-c", SERVER, bind, str(port)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 5
        while f":{port:04X}" not in run(["cat", "/proc/net/tcp"], netns=server_ns).stdout:
            if time.monotonic() > deadline or listener.poll() is not None:
                raise RuntimeError(f"listener on {bind}:{port} did not start")
            time.sleep(0.02)
        run([sys.executable, "-c", CLIENT, connect, str(cport)], netns=client_ns)
        listener.wait(timeout=5)
    finally:
        if listener.poll() is None:
            listener.terminate()
            listener.wait(timeout=5)


def traffic(nat: NatLab) -> None:
    """Two pings through the masquerade (the second with 100 bytes: its reply is dropped),
    one TCP exchange through it, and one TCP exchange through the port-forward."""
    run(["ping", "-c", "2", "-i", "0.2", "-W", "1", "192.168.0.2"], netns=nat.client)
    run(
        ["ping", "-c", "1", "-s", "100", "-W", "1", "192.168.0.2"],
        netns=nat.client,
        check=False,  # its reply is dropped on purpose
    )
    _tcp(nat.server, nat.client, "192.168.0.2", 9000, "192.168.0.2", 9000)
    _tcp(nat.router, nat.server, "10.0.0.1", 80, "192.168.0.1", 8080)
    time.sleep(0.1)


def run_legacy(lab: Resources, prefix: str) -> NatCapture:
    nat, saved = build(lab, prefix, Backend.LEGACY)
    capture = NatCapture(Backend.LEGACY, saved, devices=frozenset({nat.down, nat.up}))
    with KernelTraceLog(lab) as log:
        traffic(nat)
        records = [
            r
            for r in log.records()
            if r.text.startswith("TRACE: ") and any(f"={d} " in r.text for d in capture.devices)
        ]
    capture.traces["kernel"] = "".join(r.text + "\n" for r in records)
    capture.traces["dmesg"] = "".join(
        f"[{r.usec // 1_000_000:5d}.{r.usec % 1_000_000:06d}] {r.text}\n" for r in records
    )
    return capture


def run_nft(lab: Resources, prefix: str, workdir: Path) -> NatCapture:
    nat, saved = build(lab, prefix, Backend.NFT)
    capture = NatCapture(Backend.NFT, saved, devices=frozenset({nat.down, nat.up}))
    monitor = TraceMonitor(nat.router, workdir, kind="xtables")
    monitor.start()
    try:
        traffic(nat)
    finally:
        capture.traces["xtables-monitor"] = "".join(line + "\n" for line in monitor.stop())
    return capture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, required=True, help="directory for the samples")
    args = parser.parse_args()
    prefix = f"nt{int(time.time()) % 10000:04d}"
    with tempfile.TemporaryDirectory() as tmp:
        lab = Resources(Ledger(Path(tmp) / "ledger"))
        try:
            legacy = run_legacy(lab, prefix + "l")
            nft = run_nft(lab, prefix + "n", Path(tmp))
        finally:
            problems = lab.teardown()
    if problems:
        raise SystemExit(f"teardown problems: {problems}")
    out = args.write
    (out / "lab-nat.iptables-save").write_text(legacy.rules)
    (out / "lab-nat.dmesg").write_text(legacy.traces["dmesg"])
    (out / "lab-nat-nft.iptables-save").write_text(nft.rules)
    (out / "lab-nat-nft.xtables-monitor").write_text(nft.traces["xtables-monitor"])


if __name__ == "__main__":
    main()
