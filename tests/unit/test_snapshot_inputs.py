"""A whole snapshot where rules or flows are expected: ``iptables``, ``log --rules`` and
``openflow`` take the right files of it, or refuse in one line naming what is missing.

Data: the bundled two-node example (src/nodetrace/examples/two-nodes.README.md): on cmp1, db1
(10.20.0.12, tap7eb6fb94-79) accepts TCP 5432 from members of the web group (web1 10.20.0.10);
on cmp2, db1 → web2 TCP 8080 was dropped by web2's security group.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main

EXAMPLES = Path(__file__).parents[2] / "src" / "nodetrace" / "examples"
CMP1 = EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz"
CMP2 = EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"
TO_DB1 = [
    "--hook", "FORWARD", "--in", "qbr7eb6fb94-79", "--out", "qbr7eb6fb94-79",
    "--physdev-in", "qvb7eb6fb94-79", "--physdev-out", "tap7eb6fb94-79",
]  # fmt: skip


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _syn(src: str) -> str:
    return f"tcp,nw_src={src},nw_dst=10.20.0.12,tp_src=40000,tp_dst=5432,tcp_flags=+syn"


def _deciding_rule(doc: dict[str, Any]) -> dict[str, Any]:
    """The security-group rule of db1 that the packet met last in its chain."""
    steps = [s for s in doc["steps"] if s["chain"] == "neutron-openvswi-i7eb6fb94-7"]
    step: dict[str, Any] = steps[-1]
    return step


def test_iptables_takes_the_snapshots_ruleset_and_ipsets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(
        capsys, "iptables", str(CMP1), "--packet", _syn("10.20.0.10"), *TO_DB1, "--format", "json"
    )
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["verdict"] == "accept"
    step = _deciding_rule(doc)
    assert step["rule"] == (
        "-A neutron-openvswi-i7eb6fb94-7 -p tcp -m tcp --dport 5432 -m set --match-set "
        "NIPv4fcc7e558-aa2c-5754-938e- src -j RETURN"
    )
    assert step["rule_source"] == {
        "file": f"{CMP1}/cmp1/host/iptables-legacy-save.txt",
        "first_line": 37,
        "last_line": 37,
    }
    # Not a member of the web group: the same rule does not let it in.
    code, out, _ = _run(
        capsys, "iptables", str(CMP1), "--packet", _syn("10.20.0.99"), *TO_DB1, "--format", "json"
    )
    assert json.loads(out)["verdict"] == "drop"


def test_iptables_refuses_a_snapshot_without_the_ruleset_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tarfile.open(CMP1) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / "cmp1"
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["commands"] = [c for c in manifest["commands"] if "iptables" not in c["kind"]]
    (root / "manifest.json").write_text(json.dumps(manifest))
    code, out, err = _run(capsys, "iptables", str(root), "--packet", _syn("10.20.0.10"), *TO_DB1)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"nodetrace: error: {root}: the snapshot has no iptables-save output (not in the "
        "snapshot); collect it with `iptables-save`"
    ]
    code, _, err = _run(
        capsys, "iptables", str(root), "--netns", "qrouter-x", "--packet", _syn("10.20.0.10"),
        *TO_DB1,
    )  # fmt: skip
    assert code == 2
    assert err.splitlines() == [
        f"nodetrace: error: {root}: no namespace 'qrouter-x' in the snapshot (namespaces: main)"
    ]


def test_log_explains_with_the_rules_of_a_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    log = str(EXAMPLES / "two-nodes-cmp2.trace.log")
    code, out, _ = _run(capsys, "log", log, "--rules", str(CMP2), "--json")
    assert code == 0
    packets = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [p["outcome"] for p in packets] == ["accepted", "dropped", "accepted"]
    dropped = packets[1]
    step = dropped["steps"][dropped["verdict_step"] - 1]  # numbered from 1, as the text shows
    assert step["rule"] == (
        '-A neutron-openvswi-sg-fallback -m comment --comment "Default drop rule for unmatched '
        'traffic." -j DROP'
    )
    assert step["rule_source"]["file"] == f"{CMP2}/cmp2/host/iptables-legacy-save.txt"


def test_openflow_knows_a_snapshot_archive_by_its_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive named without a known extension is still a snapshot, not a flow dump."""
    renamed = tmp_path / "cmp1-capture"
    shutil.copyfile(CMP1, renamed)
    code, out, _ = _run(
        capsys, "openflow", str(renamed), "--bridge", "br-int", "--in-port", "qvobf944fec-1e",
        "--packet", "arp,dl_src=fa:16:3e:bb:79:12,arp_spa=10.20.0.10,arp_tpa=10.20.0.12",
    )  # fmt: skip
    assert code == 0
    assert "table 24" in out and "arp_spa=10.20.0.10" in out


def test_openflow_unknown_in_port_names_close_matches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(
        capsys, "openflow", str(CMP1), "--bridge", "br-int", "--in-port", "qvobf944fec-1f",
        "--packet", "arp",
    )  # fmt: skip
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "nodetrace: error: --in-port: port 'qvobf944fec-1f' is not a port of br-int; did you "
        "mean qvobf944fec-1e?"
    ]
