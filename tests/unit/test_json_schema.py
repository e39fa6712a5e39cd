"""Every command's real JSON output holds to the documented schema (docs/json-schema.json,
described in docs/json.md), and the schema says what the docs say: one version, steps from 1.

The checker below reads the part of JSON Schema the file uses (``$ref``, ``oneOf``, ``anyOf``,
``type``, ``const``, ``enum``, ``properties``, ``required``, ``additionalProperties`` (``false``,
or the schema of every other key of a map), ``items``, ``minimum``); a keyword it does not know
fails the test rather than passing silently.

Commands that need root and a running node (``live trace``, ``live watch``) are checked here
through the code that writes their documents, fed with the bundled example's log and counters
(tests/lab/test_live_json_schema.py runs the commands themselves on a lab node).
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from nodetrace import api
from nodetrace.cli import main
from nodetrace.cli.live import JsonReporter
from nodetrace.diagnosis import diagnose_packets
from nodetrace.diagnosis.from_log import observed_packets
from nodetrace.live.ledger import LiveLedger, RuleRecord, RunRecord
from nodetrace.live.process import ProcessId
from nodetrace.live.report import LivePacket, LiveSummary, Notice, RunInfo
from nodetrace.live.rules import IptablesRule
from nodetrace.live.watch import watch
from nodetrace.model.counters import CounterTables
from nodetrace.model.path_counters import plan_counters
from nodetrace.render.counters_json import watch_document
from nodetrace.render.json import SCHEMA_VERSION, dumps
from nodetrace.snapshot.counters import snapshot_counters
from tests.conftest import DATA
from tests.unit.diagnosis_faults import edit_link, insert_rule, node, replace_text
from tests.unit.test_counters_path import DB1_RULE, after_sending

ROOT = Path(__file__).resolve().parents[2]
SCHEMA: dict[str, Any] = json.loads((ROOT / "docs" / "json-schema.json").read_text())
EXAMPLES = ROOT / "src" / "nodetrace" / "examples"
TRACELOG = DATA / "tracelog"

_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
    "number": (int, float),
}
_KNOWN = {
    "$ref", "oneOf", "anyOf", "type", "const", "enum", "properties", "required",
    "additionalProperties", "items", "minimum", "description", "$schema", "$defs", "title",
}  # fmt: skip


def _is(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number" and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def problems(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema`` (empty: it holds), each with its JSON path."""
    unknown = set(schema) - _KNOWN
    if unknown:
        return [f"{where}: the checker does not know {sorted(unknown)}"]
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return problems(value, SCHEMA["$defs"][name], where)
    if "oneOf" in schema or "anyOf" in schema:
        options = schema.get("oneOf") or schema["anyOf"]
        results = [problems(value, option, where) for option in options]
        fitting = sum(not r for r in results)
        if fitting == 1 or (fitting and "anyOf" in schema):
            return []
        if fitting > 1:
            return [f"{where}: fits {fitting} of oneOf"]
        return min(results, key=len)
    found: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is(value, n) for n in names):
            return [f"{where}: {value!r} is not {'/'.join(names)}"]
    if "const" in schema and value != schema["const"]:
        found.append(f"{where}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and isinstance(value, int) and value < schema["minimum"]:
        found.append(f"{where}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        found += [f"{where}: no {k!r}" for k in schema.get("required", []) if k not in value]
        extra = schema.get("additionalProperties")
        if extra is False:
            found += [f"{where}: undocumented {k!r}" for k in value if k not in props]
        elif isinstance(extra, dict):  # a map: every key not listed holds to one schema
            for key in value.keys() - props.keys():
                found += problems(value[key], extra, f"{where}.{key}")
        for key, sub in props.items():
            if key in value:
                found += problems(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{i}]")
    return found


def _documents(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> list[dict[str, Any]]:
    """The command's JSON documents (one, or one per line), after it exited 0."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    text = out.strip()
    if text.startswith("{\n"):
        return [json.loads(text)]
    return [json.loads(line) for line in text.splitlines()]


SNAP = DATA / "snapshot" / "golden-cmp1"
REAL = ROOT / "tests" / "realworld"
CMP1, CMP2 = (
    EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz",
    EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz",
)
CMP2_LOG = EXAMPLES / "two-nodes-cmp2.trace.log"
TCP_5432 = "tcp,tp_dst=5432,tcp_flags=+syn"
FLEET = ("--jobs", "1", "--no-progress")
PORT_A, PORT_B = "bd978bef-1a3e-5d0f-adb8-919cbf6bd238", "a264014c-b643-5dec-bfbe-07d3eb573bd3"
RULES = DATA / "iptables" / "reference-compute-node-example.save"
BRIDGE = ("--in", "qbr3b1f6a2c-8d", "--out", "qbr3b1f6a2c-8d", "--physdev-in", "qvb3b1f6a2c-8d",
          "--physdev-out", "tap3b1f6a2c-8d")  # fmt: skip
COMMANDS = {
    "trace": ("trace", SNAP, "--from-port", PORT_A, "--to-port", PORT_B, "--packet",
              "icmp,nw_src=10.30.0.10,nw_dst=10.30.0.11,icmp_type=8,icmp_code=0"),
    "trace-tunnel": ("trace", EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz", "--from-port",
                     "bf944fec-1eba", "--packet", "tcp,nw_dst=10.20.0.13,tp_dst=5432,tcp_flags=+syn"),
    "iptables": ("iptables", RULES, "--hook", "FORWARD", *BRIDGE, "--packet",
                 "tcp,nw_src=10.0.0.50,nw_dst=10.0.0.11,tp_src=40000,tp_dst=80,tcp_flags=+syn"),
    "openflow": ("openflow", DATA / "openflow" / "lab-neutron", "--bridge", "br-int",
                 "--in-port", "qvo3b1f6a2c-8d", "--packet",
                 "icmp,dl_src=fa:16:3e:4c:2a:11,dl_dst=fa:16:3e:5d:6e:7f,nw_src=10.1.0.11,"
                 "nw_dst=10.1.0.50,icmp_type=8", "--packet", "arp"),
    "log": ("log", EXAMPLES / "two-nodes-cmp2.trace.log", "--rules",
            EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"),
    "log-nft": ("log", TRACELOG / "lab-nft-monitor-trace-ovs-hybrid.txt"),
    "log-snat": ("log", TRACELOG / "corpus-libvirt-virbr0-forward-snat.txt"),
    "log-summary": ("log", TRACELOG / "lab-legacy-dmesg.txt", "--summary"),
    "show": ("show", SNAP),
    "audit": ("audit", CMP1),
    "audit-severity": ("audit", REAL / "hotsos-focal-ussuri-dvr-ovsfw", "--severity", "warning"),
    "audit-exposure": ("audit", CMP1, "--exposure", "--port", "7eb6fb94"),
    "audit-exposure-intended": ("audit", CMP2, "--exposure", "--port", "79645311", "--intended",
                                DATA / "exposure" / "db-security-group-rules.json"),
    "audit-exposure-ipset-unknown": ("audit", REAL / "xenial-2016-hybrid-aio", "--exposure",
                                     "--port", "0695f2ca-bf"),
    "audit-exposure-not-evaluated": ("audit", REAL / "rdo-caracal-ovsfw-compute", "--exposure"),
    "explain": ("explain", CMP2_LOG, CMP2),
    "explain-other-node": ("explain", EXAMPLES / "two-nodes-cmp1.trace.log", CMP2),
    "explain-summary": ("explain", EXAMPLES / "lab-legacy-trace.dmesg", CMP1, "--summary"),
    "diff": ("diff", CMP1, CMP1, "--from-port", "bf944fec", "--to-port", "7eb6fb94", "--packet",
             TCP_5432),
    "diff-two-nodes": ("diff", CMP1, CMP2),
    "fleet-audit": ("fleet", "audit", CMP1, CMP2, *FLEET, "--query",
                    "SELECT node, count(*) AS findings FROM findings GROUP BY node ORDER BY node"),
    "fleet-trace": ("fleet", "trace", CMP1, CMP2, *FLEET, "--packet", TCP_5432, "--to-port",
                    "79645311"),
    "fleet-log": ("fleet", "log", CMP2_LOG, EXAMPLES / "lab-legacy-trace.dmesg", *FLEET),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_output_holds_to_the_documented_schema(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    argv = COMMANDS[name]
    docs = _documents(capsys, *argv, "--format", "json")
    assert docs
    for doc in docs:
        assert (doc["schema"], doc["command"]) == (SCHEMA_VERSION, argv[0])
        assert problems(doc, SCHEMA) == []


def test_steps_are_numbered_as_the_text_numbers_them(capsys: pytest.CaptureFixture[str]) -> None:
    (doc,) = _documents(capsys, *COMMANDS["iptables"], "--format", "json")
    assert [s["step"] for s in doc["steps"]] == list(range(1, len(doc["steps"]) + 1))
    decided = doc["steps"][doc["verdict_step"] - 1]
    assert (decided["chain"], decided["number"]) == ("neutron-openvswi-sg-fallback", 1)
    code = main([str(a) for a in COMMANDS["iptables"]])
    text = capsys.readouterr().out
    assert code == 0
    # the text marks the same step, by the same number
    marked = next(line for line in text.splitlines() if "decided here" in line)
    assert marked.split()[0] == str(doc["verdict_step"])


def test_the_packet_is_given_once_and_a_step_says_only_what_it_changed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (doc,) = _documents(capsys, *COMMANDS["log-snat"], "--format", "json")
    assert (doc["packet"]["nw_src"], doc["packet"]["nw_ttl"]) == ("192.168.122.17", 64)
    changes = [
        (s["step"], s["table"], s["chain"], s["changed"]) for s in doc["steps"] if s["changed"]
    ]
    # routed: the kernel decremented the TTL before mangle FORWARD logged it (line 4 of the log)
    assert changes == [(4, "mangle", "FORWARD", {"nw_ttl": 63})]
    # a simulated trace carries the packet on every netfilter step; the JSON gives it once
    (trace,) = _documents(capsys, *COMMANDS["trace"], "--format", "json")
    netfilter = [s for s in trace["steps"] if s["type"] == "netfilter"]
    assert netfilter and all(s["changed"] == {} and "packet" not in s for s in netfilter)
    assert trace["packet"]["nw_src"] == "10.30.0.10"


def test_a_key_the_schema_does_not_know_is_found(capsys: pytest.CaptureFixture[str]) -> None:
    (doc,) = _documents(capsys, *COMMANDS["iptables"], "--format", "json")
    doc["steps"][0]["in"] = "qbr3b1f6a2c-8d"
    del doc["outcome"]
    found = problems(doc, SCHEMA)
    assert found and all("iptables_document" not in p for p in found)
    assert problems({**doc, "outcome": "dropped", "steps": []}, SCHEMA) == []
    assert problems({**doc, "outcome": "lost", "steps": []}, SCHEMA) != []


def test_the_document_names_the_version_the_docs_describe() -> None:
    docs = (ROOT / "docs" / "json.md").read_text()
    assert f"`schema` {SCHEMA_VERSION}" in docs
    assert all(f'"const": {SCHEMA_VERSION}' in json.dumps(d) for d in _documents_defs())


def test_every_command_of_the_schema_is_in_the_docs() -> None:
    docs = (ROOT / "docs" / "json.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `command` |"))
    commands = {d["const"] for d in _documents_defs(key="command")}
    assert {"audit", "explain", "diff", "fleet", "live", "watch"} <= commands
    assert [c for c in sorted(commands) if f"`{c}`" not in row] == []


def _documents_defs(key: str = "schema") -> list[dict[str, Any]]:
    return [SCHEMA["$defs"][ref["$ref"].removeprefix("#/$defs/")]["properties"][key]
            for ref in SCHEMA["oneOf"]]  # fmt: skip


def test_a_changed_node_holds_to_the_schema_in_diff_explain_and_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cmp2 with a DROP rule for tcp/5432 to db2, a member of an ipset changed, a device
    lowered, and a policy counter risen: every kind of change, and a log that contradicts."""
    changed = node(tmp_path)
    insert_rule(changed, "neutron-openvswi-i79645311-2", "-p tcp -m tcp --dport 5432 -j DROP")
    replace_text(changed / "host" / "ipset-save.txt", " 10.20.0.11\n", " 10.20.0.99\n")
    edit_link(changed, "qvb79645311-20", mtu=1400)
    replace_text(changed / "host" / "iptables-legacy-save.txt", ":INPUT ACCEPT [0:0]",
                 ":INPUT ACCEPT [7:420]")  # fmt: skip
    ends = ("--from-port", "85f28c5a", "--to-port", "79645311", "--packet", TCP_5432)
    (diff,) = _documents(capsys, "diff", CMP2, changed, *ends, "--format", "json")
    assert problems(diff, SCHEMA) == []
    assert all(diff[key] for key in ("rules", "sets", "devices", "grown"))
    assert diff["packet"]["same"] is False and diff["packet"]["divergence"]["index"] >= 1

    explained = _documents(capsys, "explain", CMP2_LOG, changed, "--format", "json")
    assert [p for doc in explained for p in problems(doc, SCHEMA)] == []
    diverging = [d for d in explained if d.get("divergence") and d["divergence"]["index"]]
    assert [d["cause"]["id"] for d in diverging] == ["rules-changed"]

    logged = _documents(capsys, "log", CMP2_LOG, "--rules", changed, "--format", "json")
    assert [p for doc in logged for p in problems(doc, SCHEMA)] == []
    prefix = "contradicts the rules given (changed since the log, or another node's): "
    assert any(w.startswith(prefix) for doc in logged for w in doc["warnings"])


def test_exposure_ranges_are_pairs_from_first_to_last(capsys: pytest.CaptureFixture[str]) -> None:
    # the checker has no minItems: the pairs the docs promise are checked here
    (doc,) = _documents(capsys, *COMMANDS["audit-exposure-intended"], "--format", "json")
    (port,) = doc["ports"]
    spaces = [c for d in port["directions"] for c in d["classes"]] + port["intended"]["gaps"]
    assert port["intended"]["gaps"]
    for space in spaces:
        for key in ("protocols", "l4_first", "l4_second", "later_fragment", *space["atoms"]):
            ranges = space["atoms"].get(key) or space.get(key)
            assert ranges and all(len(r) == 2 and r[0] <= r[1] for r in ranges), (key, ranges)
        for key in ("src", "dst"):
            pairs = [tuple(int(ip_address(a)) for a in r) for r in space[key]]
            assert pairs and all(len(p) == 2 and p[0] <= p[1] for p in pairs), (key, space[key])
        assert all(re.fullmatch(r"[0-9a-f]{12}", m) for r in space["mac_src"] for m in r)


def test_live_watch_documents_hold_to_the_schema(tmp_path: Path) -> None:
    """Two intervals as ``live watch --format json`` writes them: the count falls off at db1's
    rule in the first, nothing moves in the second (the node's counters, from the example)."""
    with tarfile.open(CMP1) as tar:
        tar.extractall(tmp_path / "a", filter="data")
    before = tmp_path / "a" / "cmp1"
    rules = before / "host" / "iptables-legacy-save.txt"
    rules.write_text(re.sub(r"^-A ", "[100:5000] -A ", rules.read_text(), flags=re.M))
    snapshot = api.load_snapshot(before)
    plan = plan_counters(snapshot, api.trace(snapshot, TCP_5432, from_port="bf944fec",
                                             to_port="7eb6fb94"))  # fmt: skip
    after = after_sending(before, tmp_path, plan, stop=DB1_RULE)
    readings = iter(
        [snapshot_counters(snapshot), *[snapshot_counters(api.load_snapshot(after))] * 2]
    )

    class Reader:
        def read(self) -> CounterTables:
            return next(readings)

    results = watch(plan, Reader(), interval=1.0, count=2, sleep=lambda _: None)  # type: ignore[arg-type]
    lines = [dumps(watch_document(r, interval=n, packet=TCP_5432), indent=None)
             for n, r in enumerate(results, start=1)]  # fmt: skip
    docs = [json.loads(line) for line in lines]
    assert [p for doc in docs for p in problems(doc, SCHEMA)] == []
    fell, still = docs
    assert fell["falls_off"]["first_silent"]["item"] == DB1_RULE
    assert still["falls_off"]["last_moved_hop"] is None and still["interval"] == 2
    assert any(c["unknown"] for c in fell["unknown"])  # the example has no `ip -s link`


def test_live_trace_documents_hold_to_the_schema() -> None:
    """The documents ``live trace --format json`` writes for a run, from the reporter the
    command uses, with the bundled example's log as what the kernel traced."""
    out = io.StringIO()
    reporter = JsonReporter(out, io.StringIO())
    run = "0123456789ab"
    reporter.started(RunInfo(run, "", "iptables-legacy", "iptables-legacy holds the rules",
                             ("tcp,tp_dst=5432",), ("iptables-legacy -t raw PREROUTING: -p tcp "
                             f"--dport 5432 -m comment --comment 'nodetrace live trace {run}' -j TRACE",),
                             "/dev/kmsg (iptables-legacy TRACE records)",
                             f"/run/nodetrace/live/{run}.jsonl", ()))  # fmt: skip
    reporter.notice(Notice("rules-changed", "the ruleset changed: read again", 0.8))
    snapshot = api.load_snapshot(CMP2)
    outcomes: Counter[str] = Counter()
    for n, (obs, diagnosis) in enumerate(
        diagnose_packets(snapshot, observed_packets(snapshot, CMP2_LOG))
    ):
        reporter.packet(LivePacket(obs.index, obs, 1.0 + n, diagnosis if n else None))
        outcomes[obs.trace.outcome.value] += 1
    reporter.finished(LiveSummary(run, seen=3, explained=3, divergent=0, outcomes=outcomes,
                                  rules_read=2, stopped_by="count", elapsed=3.5,
                                  removed=["rule iptables-legacy -t raw PREROUTING: removed"]))  # fmt: skip
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [d["event"] for d in docs] == [
        "start",
        "notice",
        "packet",
        "packet",
        "packet",
        "summary",
    ]
    assert {d["command"] for d in docs} == {"live"}
    assert [p for doc in docs for p in problems(doc, SCHEMA)] == []
    assert ["diagnosis" in d for d in docs if d["event"] == "packet"] == [False, True, True]


def test_live_cleanup_document_holds_to_the_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A running run's ledger (left alone) and a dead run's whose namespace is gone."""
    gone_ns = "nodetrace-schema-test-no-such-ns"
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead = ProcessId.of(proc.pid)
    proc.wait()
    assert dead is not None
    for run, owner in (("0123456789ab", ProcessId.me()), ("ba9876543210", dead)):
        ledger = LiveLedger.create(
            tmp_path, RunRecord(run, owner, gone_ns, "iptables-nft", "2026-12-05T16:00:00+00:00")
        )
        ledger.record(RuleRecord(gone_ns, IptablesRule("iptables-nft", "PREROUTING", (
            "-s", "10.0.0.1", "-m", "comment", "--comment", f"nodetrace live trace {run}", "-j", "TRACE"))))  # fmt: skip
    monkeypatch.setenv("NODETRACE_LIVE_DIR", str(tmp_path))
    (doc,) = _documents(capsys, "live", "cleanup", "--format", "json")
    assert problems(doc, SCHEMA) == []
    assert sorted((d["run"], d["skipped"] is None) for d in doc["ledgers"]) == [
        ("0123456789ab", False), ("ba9876543210", True)]  # fmt: skip
