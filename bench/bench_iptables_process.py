"""Benchmark: one whole ``nodetrace iptables`` process on a 12,000-rule Neutron ruleset, against
``iptables-legacy-restore --test`` (which parses and checks the same file without committing it).

Both are timed as whole processes (start-up, imports and reading the file count, as they do for
a user), best of ``--runs`` rounds after an untimed warm-up round; a round runs each command
once, so the shared machine's load bursts hit both alike. The ruleset is Neutron's hybrid
firewall for a synthetic node (``nodetrace.neutron.synthetic``; 375 ports give about 12,000
rules), or a file given with ``--rules`` (and its ``--ipsets``). The packet is a realistic one
for a port in the middle of the ruleset: found by the port's raw-table zone rule, addressed from
its anti-spoofing chain, sent TCP SYN to port 22 from another port's address through FORWARD of
its ``qbr`` bridge (``--physdev-in qvb… --physdev-out tap…``).

nodetrace runs with its bytecode cached (in a temporary ``PYTHONPYCACHEPREFIX``), as an
installed package has it; ``PYTHONDONTWRITEBYTECODE`` would make every run compile every module.

The baseline needs root: the benchmark re-runs itself in a throwaway network namespace
(``unshare -n``) holding the ruleset's ipsets (``-m set`` needs them to exist), and checks that
``--test`` left that namespace's ruleset empty. Without root, only nodetrace is timed.

    sudo .venv/bin/python bench/bench_iptables_process.py [--ports 375] [--runs 15] [--seed 1]
    sudo .venv/bin/python bench/bench_iptables_process.py --rules FILE --ipsets FILE
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from nodetrace.neutron.addresses import spoof_entries
from nodetrace.neutron.naming import qbr_name, qvb_name, tap_name, zones_from_rule_texts
from nodetrace.neutron.synthetic import synthetic_node
from nodetrace.parsers.iptables_save import parse_iptables_save

INSIDE = "--inside-namespace"


@dataclass(frozen=True)
class PortAddress:
    port_id: str
    ip: IPv4Address
    mac: str


def _ports(text: str) -> list[PortAddress]:
    """Ports in the order of their zone rules, with an IPv4 address and MAC they may send from."""
    ruleset = parse_iptables_save(text, source="bench")
    seen: list[str] = []
    for zone in zones_from_rule_texts(text.splitlines()):
        if zone.port_id not in seen:
            seen.append(zone.port_id)
    out = []
    for port_id in seen:
        for entry in spoof_entries((ruleset,), port_id):
            if isinstance(entry.ip, IPv4Address) and entry.mac is not None:
                out.append(PortAddress(port_id, entry.ip, entry.mac))
                break
    return out


def nodetrace_args(rules: Path, ipsets: Path | None, text: str) -> list[str]:
    ports = _ports(text)
    if len(ports) < 2:
        raise SystemExit(f"{rules}: fewer than two Neutron hybrid-firewall ports with addresses")
    port, peer = ports[len(ports) // 2], ports[len(ports) // 2 - 1]
    packet = (
        f"tcp,dl_src={peer.mac},dl_dst={port.mac},nw_src={peer.ip},nw_dst={port.ip},"
        "tp_src=40000,tp_dst=22,tcp_flags=+syn"
    )
    bridge = qbr_name(port.port_id)
    args = [str(rules), "--hook", "FORWARD", "--packet", packet, "--in", bridge, "--out", bridge]
    args += ["--physdev-in", qvb_name(port.port_id), "--physdev-out", tap_name(port.port_id)]
    return args + (["--ipsets", str(ipsets)] if ipsets is not None else [])


def _wall(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{command[0]} exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    return elapsed


def best_of(commands: dict[str, list[str]], runs: int, env: dict[str, str]) -> dict[str, float]:
    """Each command's shortest wall time over ``runs`` rounds, after one untimed warm-up round.

    A round runs every command once, so a burst of load on the shared machine slows all of
    them rather than one."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for attempt in range(runs + 1):
        for name, command in commands.items():
            elapsed = _wall(command, env)
            if attempt:
                times[name].append(elapsed)
    return {name: min(values) for name, values in times.items()}


def _legacy_rule_count() -> int:
    save = subprocess.run(["iptables-legacy-save"], capture_output=True, text=True, check=True)
    return sum(line.startswith("-A ") for line in save.stdout.splitlines())


def measure(rules: Path, ipsets: Path | None, runs: int, baseline: bool) -> None:
    text = rules.read_text()
    args = nodetrace_args(rules, ipsets, text)
    exe = Path(sys.executable).with_name("nodetrace")
    commands = {
        "python": [sys.executable, "-c", "pass"],
        "nodetrace": [str(exe), "iptables", *args],
    }
    if baseline:
        if ipsets is not None:
            subprocess.run(["ipset", "restore"], input=ipsets.read_text(), text=True, check=True)
        commands["baseline"] = ["iptables-legacy-restore", "--test", str(rules)]
    before = _legacy_rule_count() if baseline else 0
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        best = best_of(commands, runs, env)
    nrules = sum(line.startswith("-A ") for line in text.splitlines())
    print(f"ruleset:   {rules} ({nrules:,} rules, {len(text) / 1e6:.1f} MB)")
    print(f"command:   nodetrace iptables {' '.join(args)}")
    print(
        f"nodetrace: {best['nodetrace']:.3f} s (best of {runs}; the interpreter alone starts in "
        f"{best['python']:.3f} s)"
    )
    if baseline:
        after = _legacy_rule_count()
        print(
            f"baseline:  iptables-legacy-restore --test: {best['baseline']:.3f} s (best of {runs})"
        )
        print(f"ruleset of the namespace after --test: {after} rules (before: {before})")
        print(f"ratio:     {best['nodetrace'] / best['baseline']:.2f}")
    load = os.getloadavg()
    print(
        f"load:      {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min), {os.cpu_count()} cores"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ports", type=int, default=375, help="ports of the synthetic node")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--rules", type=Path, help="an iptables-save file instead of a generated one")
    ap.add_argument("--ipsets", type=Path, help="the ipset save of --rules' node")
    ap.add_argument(INSIDE, action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = os.geteuid() == 0
    if root and not args.inside_namespace:
        unshare = shutil.which("unshare")
        if unshare is None:
            raise SystemExit("unshare not found: needed for a throwaway network namespace")
        os.execv(unshare, [unshare, "-n", sys.executable, *sys.argv, INSIDE])
    if args.rules is not None:
        measure(args.rules, args.ipsets, args.runs, root)
        return 0
    node = synthetic_node(ports=args.ports, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        rules, ipsets = Path(tmp) / "rules.save", Path(tmp) / "ipsets.save"
        rules.write_text(node.firewall.iptables_save)
        ipsets.write_text(node.firewall.ipset_restore)
        measure(rules, ipsets, args.runs, root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
