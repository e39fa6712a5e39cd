"""Every real node of the corpus, swept as a new user would: ``show`` in both formats, and
``trace`` of a new SSH connection from and to each VM port. Whatever the data lacks, the answer is
an exit status the README promises (0, 1 or a one-line 2) and never a traceback; a packet is
never *dropped* by a layer whose input the node did not give.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.render.json import SCHEMA_VERSION

CORPUS = Path(__file__).parent
DATASETS = sorted(p for p in CORPUS.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
SYN = "tcp,tp_dst=22,tcp_flags=+syn"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _vm_ports(capsys: pytest.CaptureFixture[str], dataset: Path) -> list[dict[str, Any]]:
    code, out, _ = _run(capsys, "show", str(dataset), "--format", "json")
    assert code == 0
    return [p for p in json.loads(out)["ports"] if p["kind"] == "vm"]


@pytest.mark.parametrize("dataset", DATASETS, ids=[d.name for d in DATASETS])
def test_show_reads_every_dataset(capsys: pytest.CaptureFixture[str], dataset: Path) -> None:
    code, out, err = _run(capsys, "show", str(dataset))
    assert code == 0, err
    assert out.strip()
    doc = json.loads(_run(capsys, "show", str(dataset), "--format", "json")[1])
    assert (doc["schema"], doc["command"]) == (SCHEMA_VERSION, "show")
    # A port is a VM port only when the node shows a VM behind it, never a namespace's port.
    for port in doc["ports"]:
        if port["kind"] == "vm":
            assert port["namespace"] is None, port


@pytest.mark.parametrize("dataset", DATASETS, ids=[d.name for d in DATASETS])
def test_trace_from_and_to_each_vm_port(capsys: pytest.CaptureFixture[str], dataset: Path) -> None:
    ports = _vm_ports(capsys, dataset)
    for port in ports:
        for argv in (["--from-port", port["port_id"]], ["--to-port", port["port_id"]]):
            code, out, err = _run(
                capsys, "trace", str(dataset), *argv, "--packet", SYN, "--format", "json"
            )
            assert code in (0, 2), (argv, err)
            if code == 2:
                assert len(err.strip().splitlines()) == 1, err
                continue
            doc = json.loads(out)
            if doc["outcome"] == "dropped":
                # A drop is decided by a rule, a flow or the kernel's own handling of a device,
                # never by an output the snapshot lacks.
                reason = doc["reason"]
                assert "missing" not in reason and "not in the snapshot" not in reason, reason
                assert doc["verdict_step"] is not None, (argv, reason)
