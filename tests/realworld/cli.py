"""Running ``nodetrace`` on a corpus node as a user would, for the per-node tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.render.json import SCHEMA_VERSION


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """``nodetrace ARGV --format json``: it must exit 0; its document, as the tests read it.

    The per-node tests index ``steps`` with ``verdict_step``, so it is given back as a list
    index (the output counts steps from 1, as the text does). ``openflow`` writes one document
    per packet: they are given back as ``traces``.
    """
    code = main([*argv, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    if argv[0] == "openflow":  # JSON Lines
        return {"traces": [_indexed(json.loads(line)) for line in out.splitlines()]}
    return _indexed(json.loads(out))


def _indexed(doc: dict[str, Any]) -> dict[str, Any]:
    assert doc["schema"] == SCHEMA_VERSION
    if doc.get("verdict_step") is not None:
        return {**doc, "verdict_step": doc["verdict_step"] - 1}
    return doc
