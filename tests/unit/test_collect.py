"""The collector records every command's fate (ok, failed, missing, timeout, cut short) and
stays a standalone, standard-library-only file."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from nodetrace.snapshot import collect as collector

COLLECT_PY = Path(collector.__file__)


def _fake_tools(tmp_path: Path, tools: dict[str, str]) -> Path:
    """A PATH folder holding small scripts that stand in for the node's tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in tools.items():
        script = bin_dir / name
        script.write_text("#!/bin/sh\n" + body + "\n")
        script.chmod(0o755)
    return bin_dir


def _manifest(root: Path) -> dict[str, object]:
    return json.loads((root / "manifest.json").read_text())  # type: ignore[no-any-return]


def _by_kind(manifest: dict[str, object]) -> dict[str, dict[str, object]]:
    commands = manifest["commands"]
    assert isinstance(commands, list)
    return {c["kind"] + (f"@{c['bridge']}" if c["bridge"] else ""): c for c in commands}


def test_missing_failing_slow_and_long_commands_are_recorded_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = _fake_tools(
        tmp_path,
        {
            "iptables-save": "echo '*filter'; echo ':INPUT ACCEPT [0:0]'; echo COMMIT",
            "ipset": "echo 'ipset v7.17: Kernel error received: Operation not permitted' >&2; exit 1",
            "sysctl": 'case "$1" in --version) echo "sysctl from procps-ng 4.0.2";; *) exec /bin/sleep 5;; esac',
            "conntrack": 'i=0; while [ $i -lt 500 ]; do echo "tcp 6 10 src=10.0.0.$i"; '
            "i=$((i+1)); done",
        },
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "snap"
    collector.collect(str(out), collector.Options(namespaces=(), conntrack_max=7, timeout=1.0))
    manifest = _manifest(out)
    cmds = _by_kind(manifest)

    assert cmds["iptables-save"]["status"] == "ok"
    assert (out / "host/iptables-save.txt").read_text().startswith("*filter")

    assert cmds["ipset-save"]["status"] == "failed"
    assert cmds["ipset-save"]["exit"] == 1
    assert "Operation not permitted" in str(cmds["ipset-save"]["stderr"])

    assert cmds["sysctl"]["status"] == "timeout"
    assert float(cmds["sysctl"]["seconds"]) < 4  # type: ignore[arg-type]

    assert cmds["ip-link"]["status"] == "missing"
    assert not (out / "host/ip-link.json").exists()

    assert cmds["conntrack-ipv4"]["truncated"] is True
    assert len((out / "host/conntrack-ipv4.txt").read_text().splitlines()) == 7

    # No OVS database: no bridges, so no per-bridge commands, and that is recorded too.
    assert cmds["ovs-vsctl-show"]["status"] == "missing"
    assert not any(k.startswith("ovs-ofctl") for k in cmds)
    assert manifest["format"] == "nodetrace-snapshot"
    assert manifest["version"] == 1


def test_per_bridge_commands_follow_the_bridge_list_and_fall_back_to_openflow13(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridges = {
        "headings": ["_uuid", "name"],
        "data": [[["uuid", "1"], "br-int"], [["uuid", "2"], "../evil"]],
    }
    bin_dir = _fake_tools(
        tmp_path,
        {
            "ovs-vsctl": f"case \"$*\" in *'list Bridge'*) echo '{json.dumps(bridges)}';; "
            "*) echo ok;; esac",
            # A bridge that allows only OpenFlow 1.3 refuses the plain dump.
            "ovs-ofctl": "case \"$*\" in *OpenFlow13*) echo 'OFPST_FLOW reply (OF1.3)';; "
            "*dump-flows*) echo 'version negotiation failed' >&2; exit 1;; *) echo shown;; esac",
            "ovs-appctl": 'echo "$@"',
        },
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "snap"
    collector.collect(
        str(out), collector.Options(namespaces=(), ovs_rundir="/tmp/lab/ovs-cmp1", timeout=5)
    )
    cmds = _by_kind(_manifest(out))
    flows = cmds["ovs-ofctl-dump-flows@br-int"]
    assert flows["status"] == "ok"
    assert flows["argv"] == ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "br-int"]
    assert (out / str(flows["file"])).read_text().startswith("OFPST_FLOW reply")
    # The private run folder is used for the database and the daemon's control socket.
    assert "--db=unix:/tmp/lab/ovs-cmp1/db.sock" in cmds["ovs-vsctl-show"]["argv"]  # type: ignore[operator]
    fdb = cmds["ovs-appctl-fdb-show@br-int"]
    assert fdb["argv"][-4:] == ["-t", "/tmp/lab/ovs-cmp1/ovs-vswitchd.ctl", "fdb/show", "br-int"]  # type: ignore[index]
    # A bridge name from the node never becomes a path outside the bundle.
    evil = cmds["ovs-ofctl-show@../evil"]
    assert str(evil["file"]).count("/") == 1
    assert (out / str(evil["file"])).resolve().parent == (out / "host").resolve()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("br-int", "br-int"), ("..", "%2e%2e"), (".", "%2e"), ("a/b", "a%2fb"), ("q r", "q%20r")],
    ids=["plain", "dotdot", "dot", "slash", "space"],
)
def test_safe_name_keeps_names_inside_their_folder(name: str, expected: str) -> None:
    assert collector.safe_name(name) == expected


def test_archive_output_has_one_top_folder_and_is_never_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_fake_tools(tmp_path, {"ip": "echo '[]'"})))
    out = tmp_path / "node.tar.gz"
    collector.collect(str(out), collector.Options(namespaces=()))
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert "node/manifest.json" in names
    assert all(n == "node" or n.startswith("node/") for n in names)
    with pytest.raises(FileExistsError):
        collector.collect(str(out), collector.Options(namespaces=()))
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    with pytest.raises(FileExistsError):
        collector.collect(str(full), collector.Options(namespaces=()))


@pytest.mark.parametrize(
    ("line", "backend"),
    [
        ("iptables v1.8.9 (nf_tables)", "nft"),
        ("iptables v1.8.7 (legacy)", "legacy"),
        ("iptables v1.4.21", "legacy"),
        (None, "unknown"),
    ],
    ids=["nft", "legacy", "pre-1.8", "missing"],
)
def test_iptables_backend_from_version_line(line: str | None, backend: str) -> None:
    assert collector.iptables_backend(line) == backend


def test_collector_imports_only_the_standard_library() -> None:
    tree = ast.parse(COLLECT_PY.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module.split(".")[0])
    assert modules, "no imports found: the test would prove nothing"
    assert modules <= set(sys.stdlib_module_names), modules - set(sys.stdlib_module_names)


def _real_interpreter(name: str) -> str | None:
    """The binary behind ``name`` (a pyenv shim needs its own environment to run)."""
    found = shutil.which(name)
    if found is None:
        return None
    proc = subprocess.run(
        [found, "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def test_collector_runs_as_a_lone_file_in_isolated_mode(tmp_path: Path) -> None:
    """Copied alone to a node, with no site-packages and nothing of nodetrace importable."""
    lone = tmp_path / "collect.py"
    shutil.copy(COLLECT_PY, lone)
    bin_dir = _fake_tools(tmp_path, {"iptables-save": "echo '*filter'"})
    interpreters = [sys.executable]
    oldest = _real_interpreter("python3.6")
    if oldest:
        interpreters.append(oldest)
    for python in interpreters:
        out = tmp_path / f"out-{Path(python).name}"
        proc = subprocess.run(
            [python, "-I", "-S", str(lone), "-q", "-o", str(out), "--namespaces", "none"],
            capture_output=True,
            text=True,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert _by_kind(_manifest(out))["iptables-save"]["status"] == "ok"


def test_nodetrace_collect_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nodetrace.cli import main

    monkeypatch.setenv("PATH", str(_fake_tools(tmp_path, {"iptables-save": "echo '*filter'"})))
    out = tmp_path / "node.tgz"
    assert main(["collect", "-q", "-o", str(out), "--namespaces", "none"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert tarfile.is_tarfile(out)
    assert main(["collect", "-q", "-o", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["collect", "-q", "-o", str(tmp_path / "x"), "--timeout", "0"]) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--netns", "nodetrace-no-such-ns"], "nodetrace-no-such-ns: no such network namespace"),
        (["--namespaces", "nodetrace-no-such-ns"], "nodetrace-no-such-ns: no such network namespace"),
        (["--namespaces", "../etc"], "../etc: no such network namespace"),
        (["--ovs-rundir", "/nonexistent-ovs-run"], "--ovs-rundir /nonexistent-ovs-run: no such folder"),
        (["--max-namespaces", "-1"], "--max-namespaces must be 0 or more"),
        (["--conntrack", "-5"], "--conntrack must be 0 or more"),
    ],
)  # fmt: skip
def test_options_that_name_nothing_are_usage_errors_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    from nodetrace.cli import main

    out = tmp_path / "node"
    assert main(["collect", "-q", "-o", str(out), *argv]) == 2
    assert capsys.readouterr().err == f"nodetrace: error: {message}" + (
        " (ip netns list shows the names)\n" if message.endswith("network namespace") else "\n"
    )
    assert not out.exists()
    assert collector.main(["-q", "-o", str(out), *argv]) == 2
    assert capsys.readouterr().err.startswith(f"collect: error: {message}")
