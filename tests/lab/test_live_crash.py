"""``nodetrace live trace`` killed with SIGKILL at random points, 50 times, over both iptables
back ends: each next run first removes what the dead ones left, and ``live cleanup`` at the end
leaves every ruleset (both back ends, both families, nf_tables) and the machine-wide sysctl as
they were before; no trace monitor survives.

The kill points are spread from just before a run creates its ledger to just after its rules are
in (both measured first), with a seed printed so a failing point can be replayed
(NODETRACE_CRASH_SEED).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.live.sysctl_holders import SysctlHolders
from tests.lab.live_bed import Bed, LiveRun, build_bed, live_argv, live_env, node_state

CYCLES = 50
NF_LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")


def _our_rules(bed: Bed) -> set[str]:
    """The runs whose trace rules are in the server's raw table (the foreign look-alike, which
    is no TRACE rule, excluded)."""
    text = run([f"iptables-{bed.backend}-save", "-t", "raw"], netns=bed.server).stdout
    return set(re.findall(r'nodetrace live trace ([0-9a-f]{12})" .*-j TRACE', text))


def _monitors_in(bed: Bed) -> list[int]:
    """Trace monitors running in the server's namespace."""
    ns = os.stat(f"/run/netns/{bed.server}").st_ino
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            same = os.stat(proc / "ns" / "net").st_ino == ns
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if same and b"monitor" in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.lab
def test_live_trace_killed_at_random_points_leaves_nothing_after_cleanup(
    lab: Resources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = int(os.environ.get("NODETRACE_CRASH_SEED", random.randrange(10**6)))
    print(f"crash seed {seed}")
    rng = random.Random(seed)
    beds = [build_bed(lab, "legacy", subnet=1), build_bed(lab, "nft", subnet=2)]
    before = {bed.server: node_state(bed) for bed in beds}
    sysctl_before = NF_LOG_ALL_NETNS.read_text()
    # Other labs on the machine may hold the sysctl too: the value is only compared when
    # nobody held it before and nobody holds it after.
    held_before = SysctlHolders(NF_LOG_ALL_NETNS, "1").holders()
    ledgers = tmp_path / "ledgers"

    # When a run creates its ledger and when its rules are in, two at a time as below: the
    # kills are spread over that span, and beyond it since a run that first removes what the
    # killed ones left takes longer (a kill while the interpreter imports proves nothing).
    t0 = time.monotonic()
    probes = [LiveRun(bed, ledgers, "--packet", "icmp", "--duration", "30", "--no-diagnose")
              for bed in beds]  # fmt: skip
    while not list(ledgers.glob("*.jsonl")) and time.monotonic() - t0 < 15:
        time.sleep(0.005)
    ledger_at = time.monotonic() - t0
    for probe in probes:
        probe.wait_for("start")
    ready = time.monotonic() - t0
    for probe in probes:
        probe.proc.send_signal(signal.SIGKILL)
        probe.proc.wait()

    # One run per bed at a time, side by side: each sees the other's ledger, whose owner is
    # alive, and must leave it alone.
    killed_with_rules = 0
    seen: set[str] = set()
    for _ in range(CYCLES // 2):
        started = time.monotonic()
        runs = []
        for bed in beds:
            argv = live_argv("trace", "--netns", bed.server, "--packet",
                             f"ip,nw_src={bed.client_ip}", "--duration", "30", "--no-diagnose")  # fmt: skip
            proc = subprocess.Popen(argv, env=live_env(ledgers), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
            runs.append((rng.uniform(ledger_at * 0.7, ready * 1.6), bed, proc))
        for at, bed, proc in sorted(runs, key=lambda r: r[0]):
            time.sleep(max(0.0, started + at - time.monotonic()))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # A run id never seen before: this run was killed with its rules in (the rules of
            # older runs stay until a later run or the cleanup removes them).
            ids = _our_rules(bed)
            killed_with_rules += bool(ids - seen)
            seen |= ids
    print(f"ledger after {ledger_at:.2f}s, rules in after {ready:.2f}s; "
          f"{killed_with_rules}/{CYCLES} kills left rules in")  # fmt: skip

    monkeypatch.setenv("NODETRACE_LIVE_DIR", str(ledgers))
    assert main(["live", "cleanup"]) == 0

    for bed in beds:
        assert node_state(bed) == before[bed.server]
        assert _our_rules(bed) == set()
        assert _monitors_in(bed) == []
    assert list(ledgers.glob("*.jsonl")) == []
    if not held_before and not SysctlHolders(NF_LOG_ALL_NETNS, "1").holders():
        assert NF_LOG_ALL_NETNS.read_text() == sysctl_before
    # The kills did land while rules were in, and while they were not.
    assert 1 <= killed_with_rules <= CYCLES - 1, (killed_with_rules, ready)
