"""Benchmark how long ``nodetrace --version`` and ``nodetrace --help`` take, as a whole process.

They are what a user types first, and what shell completion and wrappers run all the time: they
must not pay for the engines, the OVS flow grammar or the lab, which only the subcommand that
runs needs. The baseline is the interpreter itself starting (``python -c pass``), the floor no
Python command can go below.

Run::

    .venv/bin/python bench/bench_startup.py              # best of 20 runs each
    .venv/bin/python bench/bench_startup.py --runs 50

It prints the best and median wall time of each command, and the time above the baseline.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _nodetrace() -> list[str]:
    """The installed ``nodetrace`` script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("nodetrace")
    if script.exists():
        return [str(script)]
    found = shutil.which("nodetrace")
    if found is None:
        raise SystemExit("no nodetrace script found: pip install -e . first")
    return [found]


def wall_times(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command (default 20)")
    args = parser.parse_args()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "nodetrace --version": [*_nodetrace(), "--version"],
        "nodetrace --help": [*_nodetrace(), "--help"],
    }
    wall_times(commands["nodetrace --help"], 2)  # warm the file cache and the .pyc files
    baseline = None
    print(f"{'command':22} {'best':>8} {'median':>8} {'above python':>13}  ({args.runs} runs)")
    for name, argv in commands.items():
        times = wall_times(argv, args.runs)
        best = min(times)
        baseline = best if baseline is None else baseline
        print(
            f"{name:22} {best * 1000:6.0f}ms {statistics.median(times) * 1000:6.0f}ms "
            f"{(best - baseline) * 1000:11.0f}ms"
        )


if __name__ == "__main__":
    main()
