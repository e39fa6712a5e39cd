"""`lab up` killed with SIGKILL at random points: `lab down --force` still removes everything.

The kill points are spread over the time a complete `up` takes (measured first), with a seed
printed in the test's output so a failing point can be replayed (NODETRACE_CRASH_SEED).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.lab.resources import netns_exists
from nodetrace.lab.state import LabDir
from tests.conftest import unique
from tests.lab.residue import processes_and_folder_left

SCENARIO = """
[[nodes]]
name = "cmp1"
[[nodes]]
name = "cmp2"
[[networks]]
name = "net"
type = "vxlan"
segmentation_id = 77
cidr = "10.30.0.0/24"
[[security_groups]]
name = "sg"
rules = [{ direction = "ingress", protocol = "tcp", port = 22 }, { direction = "egress" }]
[[ports]]
name = "a"
node = "cmp1"
network = "net"
security_groups = ["sg"]
[[ports]]
name = "b"
node = "cmp1"
network = "net"
security_groups = ["sg"]
[[ports]]
name = "c"
node = "cmp2"
network = "net"
security_groups = ["sg"]
"""
NAMESPACES = ("underlay", "cmp1", "cmp2", "a", "b", "c")


def _up(scenario: Path, name: str, root: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "nodetrace", "lab", "up", str(scenario), "--name", name,
            "--root", str(root)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _residue(name: str, root: Path) -> list[str]:
    left = [f"netns {name}-{n}" for n in NAMESPACES if netns_exists(f"{name}-{n}")]
    return left + processes_and_folder_left(root / name)


def _down_force(name: str, root: Path) -> None:
    if LabDir(name, root).exists():
        assert main(["lab", "down", "--name", name, "--root", str(root), "--force"]) == 0


@pytest.mark.lab
def test_up_killed_at_random_points_is_removed_by_down_force(tmp_path: Path) -> None:
    scenario = tmp_path / "crash.toml"
    scenario.write_text(SCENARIO)
    root = tmp_path / "labs"
    seed = int(os.environ.get("NODETRACE_CRASH_SEED", random.randrange(10**6)))
    print(f"crash seed {seed}")
    rng = random.Random(seed)

    # A complete run first: how long `up` takes here, and a normal `down` of a whole lab.
    name = unique("cr")
    start = time.monotonic()
    assert _up(scenario, name, root).wait(timeout=60) == 0
    full = time.monotonic() - start
    assert main(["lab", "down", "--name", name, "--root", str(root)]) == 0
    assert _residue(name, root) == []

    for _ in range(4):
        name = unique("cr")
        proc = _up(scenario, name, root)
        time.sleep(rng.uniform(0.0, full))
        proc.kill()
        proc.wait()
        _down_force(name, root)
        assert _residue(name, root) == [], f"seed {seed}"


@pytest.mark.lab
def test_down_refuses_a_lab_still_being_built_unless_forced(tmp_path: Path) -> None:
    scenario = tmp_path / "crash.toml"
    scenario.write_text(SCENARIO)
    root = tmp_path / "labs"
    name = unique("cr")
    proc = _up(scenario, name, root)
    lab = LabDir(name, root)
    try:
        deadline = time.monotonic() + 30
        while lab.read_info() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        info = lab.read_info()
        assert info is not None and info.status == "building"
        assert main(["lab", "down", "--name", name, "--root", str(root)]) == 2
        assert main(["lab", "down", "--name", name, "--root", str(root), "--force"]) == 0
        proc.wait(timeout=10)
        assert proc.returncode == -9  # --force stopped the `up` that was still running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _down_force(name, root)
    assert _residue(name, root) == []
