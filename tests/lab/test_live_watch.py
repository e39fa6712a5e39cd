"""``live watch`` on a real lab node (its own Open vSwitch, either iptables backend, two VMs): the
counters of a packet that passes all move; for a packet a rule drops, the count stops at the
rule that drops it, or, when the path was predicted on a snapshot taken before the rule was
added, watch names the hop where the count falls off. And watch changes nothing on the node."""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nodetrace import api
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.run import run
from nodetrace.lab.send import in_netns
from nodetrace.lab.state import LabInfo, VmInfo
from nodetrace.live import watch as live_watch
from nodetrace.live.counters import CounterReader, NodeAccess
from nodetrace.model.path_counters import HopState, WatchResult, compare, plan_counters
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Outcome
from nodetrace.neutron.generate import BRIDGES
from nodetrace.neutron.naming import ChainKind, chain_name, tap_name
from nodetrace.neutron.scenario import parse_scenario
from nodetrace.render.watch_text import render_watch
from nodetrace.snapshot import collect as collector
from nodetrace.snapshot.load import load
from tests.conftest import unique

SCENARIO = """
[[nodes]]
name = "cmp1"

[[networks]]
name = "tenant"
type = "vxlan"
segmentation_id = 1042
cidr = "10.30.0.0/24"

[[security_groups]]
name = "web"
rules = [{ direction = "egress" }]

[[security_groups]]
name = "db"
rules = [
  { direction = "ingress", protocol = "udp", port = 53 },
  { direction = "egress" },
]

[[ports]]
name = "web1"
node = "cmp1"
network = "tenant"
security_groups = ["web"]
[[ports]]
name = "db1"
node = "cmp1"
network = "tenant"
security_groups = ["db"]
"""

SENT = 12
SETTLE = 1.5
"""Seconds for ovs-vswitchd to push the datapath's flow statistics into n_packets."""


@dataclass(frozen=True)
class Node:
    info: LabInfo
    netns: str
    rundir: str
    web1: VmInfo
    db1: VmInfo


@pytest.fixture(params=["legacy", "nft"])
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Node]:
    root = tmp_path / "labs"
    scenario = parse_scenario(SCENARIO, source="watch.toml")
    info = lab_up(scenario, SCENARIO, name=unique("lw"), backend=request.param, root=root)
    try:
        cmp1 = info.node("cmp1")
        yield Node(info, cmp1.netns, cmp1.ovs_rundir, info.vm("web1"), info.vm("db1"))
    finally:
        result = lab_down(info.name, root=root)
        assert not result.problems, result.problems


def send_udp(src: VmInfo, dst: VmInfo, port: int, count: int = SENT) -> None:
    """``count`` datagrams, each from a socket of its own: each is a NEW connection, as the
    prediction (conntrack state NEW) assumes."""
    ip = dst.ips[0].split("/")[0]
    for _ in range(count):
        with in_netns(src.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.sendto(b"x", (ip, port))
        time.sleep(0.01)


def state_without_counters(node: Node) -> dict[str, str]:
    """The node's rules and flows as their own tools print them, counters taken out."""
    out = {"iptables": run([f"iptables-{node.info.backend}-save"], netns=node.netns).stdout}
    ovs = OvsInstance(node.netns, Path(node.rundir))
    for bridge in BRIDGES:
        out[bridge] = ovs.ofctl("dump-flows", bridge)
    scrub = re.compile(r"\[\d+:\d+\]|(duration|n_packets|n_bytes|idle_age|hard_age)=[^, ]*,? ?")
    return {
        k: "\n".join(scrub.sub("", line) for line in v.splitlines() if not line.startswith("#"))
        for k, v in out.items()
    }


def snapshot_of(node: Node, tmp_path: Path) -> Snapshot:
    out = tmp_path / unique("snap")
    options = collector.Options(netns=node.netns, ovs_rundir=node.rundir, namespaces=())
    collector.collect(str(out), options)
    return load(out)


def watch_once(node: Node, snapshot: Snapshot, packet: str, send: object) -> WatchResult:
    trace = api.trace(snapshot, packet, from_port=node.web1.port_id, to_port=node.db1.port_id)
    plan = plan_counters(snapshot, trace)
    reader = CounterReader(plan, snapshot, NodeAccess(node.netns, node.rundir))
    before = reader.read()
    send()  # type: ignore[operator]
    time.sleep(SETTLE)
    return compare(plan, before, reader.read(), seconds=SETTLE)


def pass_deltas(result: WatchResult) -> list[tuple[str, int | None]]:
    return [
        (c.counter.label, c.delta)
        for h in result.hops
        for c in h.changes
        if c.counter.role.value == "pass"
    ]


def learn_macs(node: Node) -> None:
    """A frame each way, so that br-int has learned both VMs' MACs before the snapshot (a
    node in service has; else the prediction floods and so did the first packet)."""
    send_udp(node.web1, node.db1, 53, count=2)
    send_udp(node.db1, node.web1, 9, count=2)
    time.sleep(0.5)


@pytest.mark.lab
def test_watch_follows_passing_and_dropped_packets_and_changes_nothing(
    node: Node, tmp_path: Path
) -> None:
    learn_macs(node)
    snapshot = snapshot_of(node, tmp_path)
    before_state = state_without_counters(node)

    # Allowed: every hop of the predicted path counts at least the packets sent.
    allowed = watch_once(
        node, snapshot, "udp,udp_dst=53", lambda: send_udp(node.web1, node.db1, 53)
    )
    assert allowed.plan.trace.outcome is Outcome.DELIVERED
    view = render_watch(allowed)
    followed = [h for h in allowed.hops if h.state is not HopState.NOT_FOLLOWED]
    assert {h.state for h in followed} == {HopState.MOVED}, view
    assert allowed.falls_off is None and allowed.reached_end
    low = [(label, d) for label, d in pass_deltas(allowed) if d is None or d < SENT]
    assert not low, view
    assert state_without_counters(node) == before_state

    # Denied by the db group (no rule for udp 54): the path ends at the group's DROP rule,
    # which counted them, and no counter after it exists on the path.
    denied = watch_once(node, snapshot, "udp,udp_dst=54", lambda: send_udp(node.web1, node.db1, 54))
    trace = denied.plan.trace
    assert trace.outcome is Outcome.DROPPED
    assert denied.falls_off is None and denied.reached_end, render_watch(denied)
    last = denied.hops[-1]
    deciding = trace.verdict_step + 1 if trace.verdict_step is not None else None
    decided = [c for c in last.changes if c.counter.step == deciding]
    assert decided and decided[0].delta is not None and decided[0].delta >= SENT
    assert "-j DROP" in decided[0].counter.label
    assert state_without_counters(node) == before_state

    # A DROP rule added after the snapshot: predicted delivered, the count falls off in the
    # FORWARD hop into db1, at the rule the new one shadows.
    chain = chain_name(ChainKind.INGRESS, node.db1.port_id)
    iptables = f"iptables-{node.info.backend}"
    run([iptables, "-I", chain, "1", "-p", "udp", "--dport", "53", "-j", "DROP"], netns=node.netns)
    shadowed = watch_once(
        node, snapshot, "udp,udp_dst=53", lambda: send_udp(node.web1, node.db1, 53)
    )
    assert shadowed.plan.trace.outcome is Outcome.DELIVERED
    falls = shadowed.falls_off
    assert falls is not None and falls.last_moved is not None, render_watch(shadowed)
    still = shadowed.hops[falls.first_still - 1].hop
    tap = tap_name(node.db1.port_id)
    assert still.label.startswith("FORWARD") and f"(port {tap})" in still.label
    assert falls.counted == 0 and falls.reaching >= SENT
    assert falls.last_counter is not None and f"-j {chain}" in falls.last_counter.counter.label
    assert falls.first_silent is not None
    assert f"-A {chain} " in falls.first_silent.counter.label
    assert "--dport 53" in falls.first_silent.counter.label


@pytest.mark.lab
def test_the_command_watches_continuous_traffic_and_reports_json(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    learn_macs(node)
    before_state = state_without_counters(node)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            send_udp(node.web1, node.db1, 53, count=1)
            time.sleep(0.05)

    sender = threading.Thread(target=traffic, daemon=True)
    parser = argparse.ArgumentParser()
    live_watch.register(parser.add_subparsers())
    args = parser.parse_args([
        "watch", "--from-port", node.web1.port_id, "--to-port", node.db1.port_id,
        "--packet", "udp,udp_dst=53", "--node-netns", node.netns, "--ovs-rundir", node.rundir,
        "--interval", "3", "--count", "2", "--format", "json",
    ])  # fmt: skip
    sender.start()
    try:
        assert args.func(args) == 0
    finally:
        stop.set()
        sender.join()
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["interval"] for d in docs] == [1, 2]
    for doc in docs:
        assert doc["command"] == "watch"
        assert doc["predicted"]["outcome"] == "delivered"
        assert doc["falls_off"] is None and doc["reached_end"] is True
        states = {h["state"] for h in doc["hops"]} - {"not-followed"}
        assert states == {"moved"}, [(h["label"], h["state"]) for h in doc["hops"]]
    assert state_without_counters(node) == before_state
