"""``nodetrace audit``: exit 0 with findings, the JSON document, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nodetrace
from nodetrace.cli import main

CMP1 = str(Path(nodetrace.__file__).parent / "examples" / "two-nodes-cmp1.snapshot.tar.gz")


def test_text_report_exits_0_with_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", CMP1]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"Audit of {CMP1}: 0 critical, 6 warning, 2 info")
    assert "WARNING  host-through-neutron-chains" in out
    assert "  confirm: iptables -t filter -S INPUT" in out
    assert "cmp1/host/iptables-legacy-save.txt:19" in out
    assert "Could not run" in out and "conntrack-near-max" in out


def test_severity_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", CMP1, "--severity", "warning"]) == 0
    out = capsys.readouterr().out
    assert "INFO  " not in out and "(2 less severe findings not shown)" in out


def test_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", CMP1, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "audit" and doc["schema"] >= 2
    assert doc["counts"] == {"critical": 0, "warning": 6, "info": 2}
    first = doc["findings"][0]
    assert set(first) == {"check", "severity", "title", "subject", "evidence", "confirm"}
    assert first["evidence"][0] == {
        "text": "[filter] -A INPUT -j neutron-openvswi-INPUT",
        "source": f"{CMP1}/cmp1/host/iptables-legacy-save.txt:19",
    }
    assert doc["not_run"][0]["check"] == "conntrack-near-max"
    assert "shadowed-rule" in doc["checks"]


def test_bad_path_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["audit", str(tmp_path / "nope.tar.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nodetrace: error: ")


def test_port_without_exposure_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", CMP1, "--port", "7eb6fb94"]) == 2
    assert "--port and --intended go with --exposure" in capsys.readouterr().err
