"""The public Python API (``nodetrace.__all__``, docs/api.md): the documented example runs, and
each call answers exactly what the command that wraps it prints."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nodetrace
from nodetrace.cli import main
from nodetrace.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = Path(nodetrace.__file__).parent / "examples"
SNAPSHOT = EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz"
LOG = EXAMPLES / "two-nodes-cmp1.trace.log"
PACKET = "tcp,tp_dst=5432,tcp_flags=+syn"


def _cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def node() -> nodetrace.Snapshot:
    return nodetrace.load_snapshot(SNAPSHOT)


def test_every_exported_name_resolves() -> None:
    for name in nodetrace.__all__:
        assert getattr(nodetrace, name) is not None, name
    with pytest.raises(AttributeError):
        nodetrace.no_such_name  # noqa: B018


def test_importing_the_package_loads_nothing_else() -> None:
    probe = "import sys, nodetrace; print(sorted(m for m in sys.modules if 'nodetrace' in m))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "['nodetrace']", done.stderr


def test_the_documented_example_runs() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "docs/api.md", "exec"), {})  # the project's own document
    printed = out.getvalue()
    assert printed.startswith("delivered - leaves the node through tap7eb6fb94-79")
    assert "tp_dst=5432 (given" in printed


def test_trace_is_what_the_trace_command_prints(node: nodetrace.Snapshot) -> None:
    trace = nodetrace.trace(node, PACKET, from_port="bf944fec", to_port="7eb6fb94")
    assert trace.outcome is nodetrace.Outcome.DELIVERED
    argv = ["trace", str(SNAPSHOT), "--from-port", "bf944fec", "--to-port", "7eb6fb94"]
    for fmt in ("json", "kernel", "ofproto"):
        printed = _cli(*argv, "--packet", PACKET, "--format", fmt)
        assert nodetrace.render_trace(trace, fmt) == printed, fmt
    text = _cli(*argv, "--packet", PACKET, "--summary")
    assert nodetrace.render_trace(trace, level="summary") == text


def test_explain_log_is_what_the_log_command_prints() -> None:
    packets = list(nodetrace.explain_log([LOG], rules=[SNAPSHOT]))
    printed = _cli("log", str(LOG), "--rules", str(SNAPSHOT), "--format", "json")
    docs = [json.loads(line) for line in printed.splitlines()]
    assert len(packets) == len(docs) > 0
    for packet, doc in zip(packets, docs, strict=True):
        assert packet.trace.outcome.value == doc["outcome"]
        assert packet.trace.reason == doc["reason"]


def test_a_start_the_node_lacks_raises_the_commands_one_line(
    node: nodetrace.Snapshot,
) -> None:
    with pytest.raises(UsageError, match="--from tap-nope: no such device"):
        nodetrace.trace(node, PACKET, from_device="tap-nope")


def test_a_trace_diffs_equal_to_itself_and_not_to_another(node: nodetrace.Snapshot) -> None:
    syn = nodetrace.trace(node, PACKET, from_port="bf944fec", to_port="7eb6fb94")
    assert syn.diff(syn).same
    ping = nodetrace.trace(node, "icmp", from_port="bf944fec", to_port="7eb6fb94")
    assert not nodetrace.diff(syn, ping).same


def test_all_lists_exactly_the_lazy_names() -> None:
    lazy = set(nodetrace._EXPORTS)
    assert set(nodetrace.__all__) == lazy | {"__version__"}
