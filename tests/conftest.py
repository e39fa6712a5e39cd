"""Shared fixtures. Lab tests (marker ``lab``) need root and the real tools; on CI they must run,
so a missing prerequisite fails there instead of skipping quietly."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources, netns_exists
from nodetrace.lab.run import have

DATA = Path(__file__).parent / "data"

LAB_TOOLS = (
    "ip",
    "iptables-legacy",
    "iptables-nft",
    "xtables-monitor",
    "nft",
    "ovs-vswitchd",
    "ovsdb-server",
    "ovs-vsctl",
    "ovs-ofctl",
    "ovs-appctl",
    "ipset",
    "conntrack",
)


def lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not have(*LAB_TOOLS):
        return "needs " + ", ".join(t for t in LAB_TOOLS if not have(t))
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip lab tests on a developer machine that cannot run them; never on CI, where they
    must run (and fail loudly if the machine is not set up)."""
    reason = lab_unavailable()
    if reason is None or os.environ.get("CI"):
        return
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"lab test {reason}"))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Resources]:
    """A ledger-backed set of lab resources, torn down after the test and checked for leftovers."""
    res = Resources(Ledger(tmp_path / f"lab-{uuid.uuid4().hex[:8]}.ledger"))
    try:
        yield res
    finally:
        problems = res.teardown()
        left = [e.id for e in res.ledger.entries() if e.kind == "netns" and netns_exists(e.id)]
        assert not problems, problems
        assert not left, f"namespaces left behind: {left}"


def unique(prefix: str) -> str:
    """A short name unlikely to exist already (interface names must stay under 16 chars)."""
    return f"{prefix}{uuid.uuid4().hex[:6]}"


DEFAULT_SEED = 20261126


def seed_from_env(variable: str = "NODETRACE_SEED") -> int:
    """The seed of a randomised differential test.

    ``NODETRACE_SEED=N`` replays a run; ``NODETRACE_SEED=random`` draws a fresh one to explore
    new cases. Without it the fixed default keeps every CI run the same, so a red run always
    means a change and never the luck of the draw.
    """
    value = os.environ.get(variable, "")
    if value == "random":
        return uuid.uuid4().int % 1_000_000_000
    return int(value) if value else DEFAULT_SEED
