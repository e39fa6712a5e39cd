"""Every command's real JSON output holds to the documented schema (docs/json-schema.json,
described in docs/json.md), and the schema says what the docs say: one version, steps from 1.

The checker below reads the part of JSON Schema the file uses (``$ref``, ``oneOf``, ``anyOf``,
``type``, ``const``, ``enum``, ``properties``, ``required``, ``additionalProperties: false``,
``items``, ``minimum``); a keyword it does not know fails the test rather than passing silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.render.json import SCHEMA_VERSION
from tests.conftest import DATA

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
        if schema.get("additionalProperties") is False:
            found += [f"{where}: undocumented {k!r}" for k in value if k not in props]
        for key, sub in props.items():
            if key in value:
                found += problems(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{i}]")
    return found


def _documents(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    """The command's JSON documents (one, or one per line), after it exited 0."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    text = out.strip()
    if text.startswith("{\n"):
        return [json.loads(text)]
    return [json.loads(line) for line in text.splitlines()]


SNAP = DATA / "snapshot" / "golden-cmp1"
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


def _documents_defs() -> list[dict[str, Any]]:
    return [SCHEMA["$defs"][ref["$ref"].removeprefix("#/$defs/")]["properties"]["schema"]
            for ref in SCHEMA["oneOf"]]  # fmt: skip
