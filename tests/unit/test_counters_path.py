"""Counters along a predicted path, on the bundled example snapshot: the hops and counters
the plan names come from the trace; two readings made by editing copies of the snapshot's own
files (counters bumped along the path, up to a chosen rule) must say exactly where the count
falls off; and the live reader runs only read-only commands."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from nodetrace import api
from nodetrace.live.counters import CommandFailed, CounterReader, NodeAccess
from nodetrace.live.watch import watch
from nodetrace.model.counters import CounterSource, CounterTables
from nodetrace.model.path_counters import HopState, WatchPlan, compare, plan_counters
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import OpenFlowStep
from nodetrace.render.counters_json import watch_document
from nodetrace.render.watch_text import render_watch
from nodetrace.snapshot.counters import snapshot_counters

EXAMPLE = Path(__file__).resolve().parents[2] / "src/nodetrace/examples"
CMP1 = EXAMPLE / "two-nodes-cmp1.snapshot.tar.gz"
RULES = "host/iptables-legacy-save.txt"
PACKET = "tcp,tp_dst=5432,tcp_flags=+syn"
SENT = 12
DB1_RULE = (
    "-A neutron-openvswi-i7eb6fb94-7 -p tcp -m tcp --dport 5432 -m set --match-set "
    "NIPv4fcc7e558-aa2c-5754-938e- src -j RETURN"
)
DB1_JUMP = (
    "-A neutron-openvswi-sg-chain -m physdev --physdev-out tap7eb6fb94-79 --physdev-is-bridged "
    '-m comment --comment "Jump to the VM specific chain." -j neutron-openvswi-i7eb6fb94-7'
)


def unpack(tmp_path: Path, name: str) -> Path:
    with tarfile.open(CMP1) as tar:
        tar.extractall(tmp_path / name, filter="data")
    return tmp_path / name / "cmp1"


@pytest.fixture
def before(tmp_path: Path) -> Path:
    """The example with a packet counter of 100 on every rule (it was saved without -c)."""
    root = unpack(tmp_path, "a")
    path = root / RULES
    path.write_text(re.sub(r"^-A ", "[100:5000] -A ", path.read_text(), flags=re.M))
    return root


def plan_of(snapshot: Snapshot) -> WatchPlan:
    trace = api.trace(snapshot, PACKET, from_port="bf944fec", to_port="7eb6fb94")
    return plan_counters(snapshot, trace)


def after_sending(before: Path, tmp_path: Path, plan: WatchPlan, stop: str | None) -> Path:
    """A copy of ``before`` whose rule, policy and flow counters on the path rose by SENT for
    each time the path crosses them, up to (not including) the rule ``stop``; other copies of
    a flooded packet count nothing (as if each died at once)."""
    root = tmp_path / "b"
    root.mkdir()
    for path in before.parent.rglob("*"):
        target = root / path.relative_to(before.parent)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(path.read_bytes())
    rules: dict[str, int] = {}
    policies: dict[str, int] = {}
    flow_lines: dict[tuple[str, int], int] = {}
    steps = {n: s for n, s in enumerate(plan.trace.steps, start=1)}
    in_order = [c for hop in plan.hops if not hop.other_copy for c in hop.counters]
    cut = next((n for n, c in enumerate(in_order) if c.id.item == stop), len(in_order))
    for counter in in_order[:cut]:
        if counter.id.source is CounterSource.IPTABLES:
            bag = policies if counter.id.item == "policy" else rules
            key = counter.id.owner if counter.id.item == "policy" else counter.id.item
            bag[key] = bag.get(key, 0) + SENT
        step = steps.get(counter.step or 0)
        if counter.id.source is CounterSource.OPENFLOW and isinstance(step, OpenFlowStep):
            assert step.source is not None
            key2 = (step.bridge, step.source.first_line)
            flow_lines[key2] = flow_lines.get(key2, 0) + SENT
    host = root / "cmp1"
    lines = (host / RULES).read_text().splitlines()
    table = ""
    for n, line in enumerate(lines):
        if line.startswith("*"):
            table = line[1:]
        m = re.match(r"^\[100:5000\] (-A .*)$", line)
        if m and m.group(1) in rules:
            lines[n] = f"[{100 + rules[m.group(1)]}:9000] {m.group(1)}"
        m2 = re.match(r"^:(\S+) (ACCEPT|DROP) \[(\d+):(\d+)\]$", line)
        if m2 and f"ipv4 {table} {m2.group(1)}" in policies:
            rose = int(m2.group(3)) + policies[f"ipv4 {table} {m2.group(1)}"]
            lines[n] = f":{m2.group(1)} {m2.group(2)} [{rose}:{m2.group(4)}]"
    (host / RULES).write_text("\n".join(lines) + "\n")
    for (bridge, number), rise in flow_lines.items():
        path = host / f"host/ovs-ofctl-dump-flows.{bridge}.txt"
        flows = path.read_text().splitlines()
        count = re.search(r"n_packets=(\d+)", flows[number - 1])
        assert count is not None
        flows[number - 1] = flows[number - 1].replace(
            count.group(0), f"n_packets={int(count.group(1)) + rise}", 1
        )
        path.write_text("\n".join(flows) + "\n")
    return host


def readings(before: Path, after: Path) -> tuple[Snapshot, CounterTables, CounterTables]:
    a, b = api.load_snapshot(before), api.load_snapshot(after)
    return a, snapshot_counters(a), snapshot_counters(b)


def test_the_plan_follows_the_trace_hop_by_hop(before: Path) -> None:
    plan = plan_of(api.load_snapshot(before))
    labels = [h.label for h in plan.hops]
    assert labels[0] == "received on tapbf944fec-1e"
    assert labels[-1] == "sent out of tap7eb6fb94-79"
    assert "br-int (OpenFlow)" in labels
    # every rule and flow step of the trace is a counter of the plan, in trace order
    rule_steps = [n for n, s in enumerate(plan.trace.steps, start=1) if getattr(s, "rule", None)]
    flow_steps = [n for n, s in enumerate(plan.trace.steps, start=1) if isinstance(s, OpenFlowStep)]
    planned = [
        c.step for h in plan.hops for c in h.counters if c.id.source is not CounterSource.DEVICE
    ]
    assert [n for n in planned if n in rule_steps] == rule_steps
    assert [n for n in planned if n in flow_steps] == flow_steps
    # a rule the packet crosses at both ends of the hybrid plug belongs to its first hop
    repeats = [c for h in plan.hops for c in h.counters if c.first_hop is not None]
    assert repeats and all(
        c.first_hop is not None and c.first_hop < h.index
        for h in plan.hops
        for c in h.counters
        if c in repeats
    )


def test_every_hop_counting_the_packets_reaches_the_end(before: Path, tmp_path: Path) -> None:
    plan = plan_of(api.load_snapshot(before))
    after = after_sending(before, tmp_path, plan, stop=None)
    snapshot, a, b = readings(before, after)
    result = compare(plan_of(snapshot), a, b, seconds=5.0)
    assert result.falls_off is None and result.reached_end
    counted = [h for h in result.hops if h.count is not None]
    assert counted and all(h.count == SENT for h in counted)
    # the example has no `ip -s link`: device hops are unknown, never "did not count"
    devices = [h for h in result.hops if h.hop.label.startswith(("received", "sent", "veth"))]
    assert devices and all(h.state is HopState.UNKNOWN for h in devices)
    why = {c.why_unknown for c in result.unknown if c.counter.id.source is CounterSource.DEVICE}
    assert why == {"not in the snapshot (collect with `ip -s -s -j link`)"}
    assert "The count reaches the end of the predicted path (delivered)." in render_watch(result)


def test_the_count_falls_off_at_the_rule_that_stopped_counting(
    before: Path, tmp_path: Path
) -> None:
    plan = plan_of(api.load_snapshot(before))
    after = after_sending(before, tmp_path, plan, stop=DB1_RULE)
    snapshot, a, b = readings(before, after)
    result = compare(plan_of(snapshot), a, b, seconds=5.0)
    falls = result.falls_off
    assert falls is not None and falls.last_moved is not None
    hop = result.hops[falls.first_still - 1]
    assert hop.hop.label.startswith("FORWARD") and "(port tap7eb6fb94-79)" in hop.hop.label
    assert (falls.counted, falls.reaching) == (0, SENT)
    assert falls.last_counter is not None and falls.last_counter.counter.id.item == DB1_JUMP
    assert falls.first_silent is not None and falls.first_silent.counter.id.item == DB1_RULE
    assert not result.reached_end
    text = render_watch(result)
    assert f"The count falls off at hop {hop.hop.index} ({hop.hop.label})" in text
    doc = watch_document(result, interval=1, packet=PACKET)
    assert doc["command"] == "watch"
    assert doc["falls_off"]["first_still_hop"] == hop.hop.index
    assert doc["falls_off"]["first_silent"]["item"] == DB1_RULE


FLOOD = "udp,dl_dst=fa:16:3e:00:00:99,nw_dst=10.20.0.99,udp_dst=53"
"""For a MAC no table knows: br-int floods it to the tunnel, to both other VMs and to its
own port."""


def test_a_flooded_packet_is_followed_on_the_copy_that_decides(
    before: Path, tmp_path: Path
) -> None:
    snapshot = api.load_snapshot(before)
    trace = api.trace(snapshot, FLOOD, from_port="bf944fec")
    assert trace.verdict_step is not None and "other copies" in trace.reason
    plan = plan_counters(snapshot, trace)
    deciding = next(h for h in plan.hops if trace.verdict_step + 1 in h.steps)
    assert deciding.label == "sent out of und0" and not deciding.other_copy
    side = {h.label for h in plan.hops if h.other_copy}
    assert {"sent out of tap2b4b9950-c7", "veth peer receives on qvb7eb6fb94-79"} <= side
    assert "br-tun (OpenFlow)" not in side and "br-int (OpenFlow)" not in side
    after = after_sending(before, tmp_path, plan, stop=None)
    _, a, b = readings(before, after)
    result = compare(plan, a, b, seconds=5.0)
    assert result.falls_off is None and result.reached_end, render_watch(result)
    assert {h.state for h in result.hops if h.hop.other_copy} == {HopState.OTHER_COPY}


def test_nothing_sent_is_said_as_such(before: Path) -> None:
    snapshot = api.load_snapshot(before)
    tables = snapshot_counters(snapshot)
    result = compare(plan_of(snapshot), tables, tables, seconds=5.0)
    assert result.falls_off is not None and result.falls_off.last_moved is None
    assert "Nothing counted from hop" in render_watch(result)


class FakeNode:
    """Answers the reader's commands with the example's own outputs and records them."""

    def __init__(self, root: Path, failing: str = "") -> None:
        self.root = root
        self.failing = failing
        self.argv: list[list[str]] = []

    def __call__(self, argv: Sequence[str], env: dict[str, str], timeout: float) -> str:
        self.argv.append(list(argv))
        words = list(argv)
        assert timeout > 0
        if words[:3] == ["ip", "netns", "exec"]:
            words = words[4:]
        if words[0] == self.failing:
            raise CommandFailed(f"{words[0]}: not installed")
        host = self.root / "host"
        match words[0]:
            case "iptables-legacy-save":
                return (host / "iptables-legacy-save.txt").read_text()
            case "ovs-ofctl":
                return (host / f"ovs-ofctl-dump-flows.{words[-1]}.txt").read_text()
            case "ovs-vsctl":
                return (host / "ovs-vsctl-list-interface.json").read_text()
            case "ip" | "nstat" | "conntrack" | "ovs-appctl":
                raise CommandFailed(f"{' '.join(words)}: exit 1: no such output in the example")
        raise AssertionError(f"unexpected command {argv}")


READ_ONLY = (
    re.compile(r"^iptables-legacy-save -c$"),
    re.compile(r"^ip -s -s -j link show$"),
    re.compile(r"^nstat -asz$"),
    re.compile(r"^conntrack -S$"),
    re.compile(r"^ovs-ofctl (-O OpenFlow13 )?dump-flows br-\w+$"),
    re.compile(
        r"^ovs-vsctl --timeout=5 --format=json --data=json --columns=name,statistics list Interface$"
    ),
    re.compile(r"^ovs-appctl --timeout=5 dpctl/show -s$"),
)


def test_the_live_reader_runs_only_read_only_commands(before: Path) -> None:
    snapshot = api.load_snapshot(before)
    plan = plan_of(snapshot)
    node = FakeNode(before, failing="nstat")
    reading = CounterReader(plan, snapshot, NodeAccess(netns="node1"), runner=node).read()
    assert node.argv and all(a[:4] == ["ip", "netns", "exec", "node1"] for a in node.argv)
    commands = [" ".join(a[4:]) for a in node.argv]
    assert all(any(p.match(c) for p in READ_ONLY) for c in commands), commands
    assert {"iptables-legacy-save -c", "ovs-ofctl dump-flows br-int"} <= set(commands)
    assert reading.unreadable[(CounterSource.NSTAT, "")] == "nstat: not installed"
    rule = next(c for h in plan.hops for c in h.counters if c.id.item == DB1_RULE)
    assert reading.value(rule.id) == 100
    nstat = next(c for c in plan.node_wide if c.id.source is CounterSource.NSTAT)
    assert reading.value(nstat.id) == "nstat: not installed"


def test_watch_reads_once_then_once_per_interval(before: Path) -> None:
    snapshot = api.load_snapshot(before)
    plan = plan_of(snapshot)
    tables = snapshot_counters(snapshot)

    class Reader:
        reads = 0

        def read(self) -> CounterTables:
            self.reads += 1
            return tables

    reader = Reader()
    slept: list[float] = []
    results = list(
        watch(plan, reader, interval=2.5, count=3, sleep=slept.append)  # type: ignore[arg-type]
    )
    assert len(results) == 3 and reader.reads == 4 and slept == [2.5, 2.5, 2.5]
