"""A two-namespace bed for ``nodetrace live`` lab tests: a client and a server joined by a veth
pair, the server holding a Neutron-like ruleset (raw CT zone rules, a filter INPUT chain), a
foreign rule whose comment looks like a live run's, and a foreign native nf_tables table.

Everything is created through the lab's ledger (the ``lab`` fixture) with unique names; the
live runs keep their ledgers in the test's own folder (``NODETRACE_LIVE_DIR``).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from tests.conftest import unique

FOREIGN_COMMENT = "nodetrace live trace 0f0f0f0f0f0f"
"""A rule someone else put in, whose comment looks like a live run's: never to be touched."""

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i {dev} -m comment --comment "neutron zone" -j CT --zone 4097
-A PREROUTING -p udp -m udp --dport 9 -m comment --comment "{foreign}" -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p icmp -m comment --comment "nodetrace-live-trace" -j ACCEPT
-A INPUT -p tcp -m tcp --dport 23 -j DROP
COMMIT
"""
RULES6 = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i {dev} -j CT --zone 4097
COMMIT
"""
FOREIGN_TABLE = """\
table inet {name} {{
    chain pre {{
        type filter hook prerouting priority -300; policy accept;
        udp dport 9 counter comment "{foreign}"
    }}
}}
"""

ACCEPT_ICMP = "-A INPUT -p icmp -m comment --comment nodetrace-live-trace -j ACCEPT"
"""As iptables-save prints it (a comment without spaces is not quoted)."""
DROP_TELNET = "-A INPUT -p tcp -m tcp --dport 23 -j DROP"


@dataclass(frozen=True)
class Bed:
    client: str
    server: str
    client_ip: str
    server_ip: str
    dev: str
    """The server's end of the veth pair."""
    backend: str
    """``legacy``, ``nft`` (iptables-nft) or ``nftables`` (only a native table)."""


def build_bed(lab: Resources, backend: str, *, subnet: int = 0) -> Bed:
    client = lab.add_netns(unique("ltc"))
    server = lab.add_netns(unique("lts"))
    cdev, sdev = unique("lc"), unique("ls")
    net = f"10.{90 + subnet % 10}.{os.getpid() % 250}"
    run(["ip", "-n", client, "link", "add", cdev, "type", "veth", "peer", "name", sdev,
         "netns", server])  # fmt: skip
    run(["ip", "-n", client, "addr", "add", f"{net}.1/24", "dev", cdev])
    run(["ip", "-n", server, "addr", "add", f"{net}.2/24", "dev", sdev])
    run(["ip", "-n", client, "link", "set", cdev, "up"])
    run(["ip", "-n", server, "link", "set", sdev, "up"])
    bed = Bed(client, server, f"{net}.1", f"{net}.2", sdev, backend)
    if backend == "legacy":
        # No logger bound for IPv4, as on a node whose kernel loaded none: live trace must bind
        # one for its run and put NONE back.
        run(["sysctl", "-qw", "net.netfilter.nf_log.2=NONE"], netns=server)
    if backend in ("legacy", "nft"):
        run([f"iptables-{backend}-restore"], netns=server,
            input=RULES.format(dev=sdev, foreign=FOREIGN_COMMENT))  # fmt: skip
        run([f"ip6tables-{backend}-restore"], netns=server, input=RULES6.format(dev=sdev))
    table = FOREIGN_TABLE.format(name=unique("foreign"), foreign=FOREIGN_COMMENT)
    run(["nft", "-f", "-"], netns=server, input=table)
    return bed


_COUNTERS = re.compile(r"\[\d+:\d+\]")
_NFT_COUNTERS = re.compile(r"packets \d+ bytes \d+")


def node_state(bed: Bed) -> dict[str, str]:
    """Every ruleset of the server namespace (both iptables back ends, both families, and
    ``nft list ruleset`` table by table) without comment lines and counters, and the loggers
    bound to each family (``net.netfilter.nf_log.2``/``.10``)."""
    out = {}
    for tool in ("iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save",
                 "ip6tables-nft-save"):  # fmt: skip
        text = run([tool], netns=bed.server).stdout
        lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
        out[tool] = _COUNTERS.sub("[0:0]", "\n".join(lines))
    listing = _NFT_COUNTERS.sub(
        "packets 0 bytes 0", run(["nft", "list", "ruleset"], netns=bed.server).stdout
    )
    for key in ("net.netfilter.nf_log.2", "net.netfilter.nf_log.10"):
        out[key] = run(["sysctl", "-n", key], netns=bed.server).stdout.strip()
    # Tables in creation order: a table the agent restores comes back last, the same.
    out["nft list ruleset"] = "".join(sorted(_nft_tables(listing)))
    return out


def _nft_tables(listing: str) -> list[str]:
    tables: list[str] = []
    for line in listing.splitlines(keepends=True):
        if line.startswith("table "):
            tables.append("")
        if tables:
            tables[-1] += line
    return tables


def ping(bed: Bed) -> bool:
    """One echo request from the client; True when the reply came back."""
    return run(["ping", "-c", "1", "-W", "1", bed.server_ip], netns=bed.client,
               check=False).returncode == 0  # fmt: skip


def tcp_connect(bed: Bed, port: int) -> str:
    """One TCP connection attempt from the client: ``connected``, ``refused`` or ``timeout``."""
    code = (
        "import socket,sys\n"
        "s=socket.socket(); s.settimeout(0.7)\n"
        "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n"
        "except ConnectionRefusedError: print('refused')\n"
        "except OSError: print('timeout')\n"
    )
    argv = [sys.executable, "-c", code, bed.server_ip, str(port)]
    return run(argv, netns=bed.client, check=False).stdout.strip()


def live_env(ledger_dir: Path) -> dict[str, str]:
    return {**os.environ, "NODETRACE_LIVE_DIR": str(ledger_dir)}


def live_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "nodetrace", "live", *args]


class LiveRun:
    """``nodetrace live trace ... --format json`` as a real subprocess, read event by event."""

    def __init__(self, bed: Bed, ledger_dir: Path, *args: str) -> None:
        argv = live_argv("trace", "--netns", bed.server, "--format", "json", *args)
        self.proc = subprocess.Popen(
            argv, env=live_env(ledger_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.events: list[dict[str, Any]] = []
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)

    def wait_for(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for seen in self.events:
            if seen["event"] == event:
                return seen
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            if not self._sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            doc = json.loads(line)
            assert doc["command"] == "live"
            self.events.append(doc)
            if doc["event"] == event:
                return doc
        self.proc.kill()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        raise AssertionError(f"no {event!r} event; got {self.events}; stderr {err}")

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def finish(self, timeout: float = 15.0) -> int:
        self.wait_for("summary", timeout)
        status = self.proc.wait(timeout=timeout)
        # The snapshots a run took for its predictions are kept for their evidence: the test's
        # own are removed, by the names the run gave.
        for notice in self.of("notice"):
            if notice["kind"] == "snapshot":
                shutil.rmtree(notice["message"].rsplit(" kept in ", 1)[1], ignore_errors=True)
        return status


def deciding_rule(packet: dict[str, Any]) -> str | None:
    step = packet["verdict_step"]
    return packet["steps"][step - 1]["rule"] if step else None
