"""Running ``nodetrace`` on a corpus node as a user would, for the per-node tests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nodetrace.cli import main


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """``nodetrace ARGV --format json``: it must exit 0; its document."""
    code = main([*argv, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc
