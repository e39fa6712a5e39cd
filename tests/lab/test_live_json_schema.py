"""``live trace`` and ``live watch`` on a real kernel write JSON that holds to the documented
schema (docs/json-schema.json, described in docs/json.md): the unit tests check the code that
writes these documents on recorded data; here the commands run on a lab node, with real TRACE
records from each capture path and real counters from every source the node has."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.resources import Resources
from nodetrace.live import watch as live_watch
from nodetrace.neutron.scenario import parse_scenario
from tests.conftest import unique
from tests.lab.live_bed import LiveRun, build_bed, ping, tcp_connect
from tests.lab.test_live_watch import SCENARIO, Node, learn_macs, send_udp
from tests.unit.test_json_schema import SCHEMA, problems


@pytest.mark.lab
@pytest.mark.parametrize("backend", ["legacy", "nft", "nftables"])
def test_live_trace_events_hold_to_the_schema(lab: Resources, tmp_path: Path, backend: str) -> None:
    bed = build_bed(lab, backend)
    live = LiveRun(bed, tmp_path, "--packet", f"ip,nw_src={bed.client_ip}", "--count", "2",
                   "--duration", "20")  # fmt: skip
    live.wait_for("start")
    assert ping(bed)
    tcp_connect(bed, 23)
    assert live.finish() == 0
    events = [e["event"] for e in live.events]
    assert events[0] == "start" and events[-1] == "summary" and events.count("packet") == 2
    found = {f"{n} {e['event']}": problems(e, SCHEMA) for n, e in enumerate(live.events)}
    assert {k: v for k, v in found.items() if v} == {}
    formats = {"legacy": "kernel", "nft": "xtables-monitor", "nftables": "nft-monitor"}
    assert {p["log_format"] for p in live.of("packet")} == {formats[backend]}


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    root = tmp_path / "labs"
    scenario = parse_scenario(SCENARIO, source="watch.toml")
    info = lab_up(scenario, SCENARIO, name=unique("lj"), backend="legacy", root=root)
    try:
        cmp1 = info.node("cmp1")
        yield Node(info, cmp1.netns, cmp1.ovs_rundir, info.vm("web1"), info.vm("db1"))
    finally:
        result = lab_down(info.name, root=root)
        assert not result.problems, result.problems


@pytest.mark.lab
def test_live_watch_intervals_hold_to_the_schema(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    learn_macs(node)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            send_udp(node.web1, node.db1, 53, count=1)
            time.sleep(0.05)

    parser = argparse.ArgumentParser()
    live_watch.register(parser.add_subparsers())
    args = parser.parse_args([
        "watch", "--from-port", node.web1.port_id, "--to-port", node.db1.port_id,
        "--packet", "udp,udp_dst=53", "--node-netns", node.netns, "--ovs-rundir", node.rundir,
        "--interval", "2", "--count", "2", "--format", "json",
    ])  # fmt: skip
    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        assert args.func(args) == 0
    finally:
        stop.set()
        sender.join()
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["interval"] for d in docs] == [1, 2]
    assert [p for doc in docs for p in problems(doc, SCHEMA)] == []
    # real counters of every kind the node has, read twice: no counter left unknown
    sources = {c["source"] for d in docs for h in d["hops"] for c in h["counters"]}
    assert {"iptables", "openflow", "device"} <= sources
    assert all(c["delta"] is not None for d in docs for h in d["hops"] for c in h["counters"])
