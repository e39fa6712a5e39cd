"""Benchmark the replay of ``nodetrace log --rules``: every logged packet run through the
netfilter engine with the rules given, to flag the packets whose path contradicts them.

The log and its rules are ``bench_tracelog.py``'s (a busy Neutron hybrid node's kern.log with
``-j TRACE``), with each port numbered by its place in the generated ruleset, so that every
TRACE line names the rule the kernel would (``bench_tracelog`` numbers the per-port rules by
the order the ports were made, which the replay rightly flags). The per-packet text
view with ``--rules`` is timed with the replay (the default) and with ``--no-replay``, piped,
pinned to one CPU; then the same log is read with the rules changed (one port's security
group gets a DROP rule at its top), to show the replay flags exactly that port's packets.

Run::

    .venv/bin/python bench/bench_log_replay.py                 # 200,000 TRACE lines
    .venv/bin/python bench/bench_log_replay.py --lines 1000000
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_tracelog

generate = bench_tracelog.generate

SHOWN = re.compile(
    r"([\d,]+) packet\(s\) shown .* · ([\d,]+) contradict the rules given \(([\d,]+) replayed\)"
)


def timed(argv: list[str], cpu: int) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(
        ["taskset", "-c", str(cpu), *argv], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed: {done.stderr[-500:]}")
    return elapsed, done.stdout


def counts(output: str) -> tuple[int, int, int]:
    """Packets shown, packets flagged, packets replayed (from the closing line)."""
    last = output.rstrip().splitlines()[-1]
    found = SHOWN.search(last)
    if found is None:
        raise SystemExit(f"no replay count in: {last}")
    return tuple(int(found.group(i).replace(",", "")) for i in (1, 2, 3))  # type: ignore[return-value]


def changed_rules(rules: str) -> tuple[str, str]:
    """The rules with a DROP at the top of one port's ingress chain, and that chain's name."""
    chain = next(
        m.group(1) for m in re.finditer(r"^:(neutron-openvswi-i\S+) ", rules, re.MULTILINE)
    )
    first = rules.index(f"-A {chain} ")
    return rules[:first] + f"-A {chain} -j DROP\n" + rules[first:], chain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--cpu", type=int, default=0)
    args = parser.parse_args()
    nodetrace = str(Path(sys.executable).with_name("nodetrace"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log = work / "kern.log"
        _, rules = generate(log, args.lines)
        (work / "rules").write_text(rules)
        changed, chain = changed_rules(rules)
        (work / "changed").write_text(changed)
        base = [nodetrace, "log", str(log), "--rules", str(work / "rules"), "--no-progress"]
        plain_s, _ = timed([*base, "--no-replay"], args.cpu)
        replay_s, out = timed(base, args.cpu)
        packets, flagged, replayed = counts(out)
        changed_argv = [nodetrace, "log", str(log), "--rules", str(work / "changed"),
                        "--no-progress"]  # fmt: skip
        changed_s, out = timed(changed_argv, args.cpu)
        _, flagged_changed, _ = counts(out)
        in_chain = sum(1 for line in out.splitlines() if "contradicts the rules given" in line)
    print(f"{args.lines:,} TRACE lines, {packets:,} packets ({replayed:,} replayed)")
    print(f"log --rules --no-replay : {plain_s:7.2f} s")
    print(f"log --rules (replay)    : {replay_s:7.2f} s  ({replay_s / plain_s:.2f}x)")
    print(f"  packets flagged with the log's own rules: {flagged:,}")
    print(f"log --rules CHANGED     : {changed_s:7.2f} s; flagged {flagged_changed:,} "
          f"({in_chain:,} lines; DROP added at the top of {chain})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
