"""The import rule of docs/architecture.md: model is pure; parsers, engines and renderers
import the model but not each other's packages, and only the lab, the live tools, the collector
and the one Graphviz call start processes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "nodetrace"

ALLOWED = {
    "model": {"model", "errors"},
    "parsers": {"model", "errors", "parsers"},
    "engine": {"model", "errors", "engine"},
    "render": {"model", "errors", "render"},
    "tracelog": {"model", "errors", "parsers", "tracelog"},
    "snapshot": {"model", "errors", "parsers", "snapshot"},
    "neutron": {"model", "errors", "neutron"},
    "diagnosis": {
        "model",
        "errors",
        "parsers",
        "engine",
        "tracelog",
        "snapshot",
        "neutron",
        "diagnosis",
    },
    "audit": {"model", "errors", "parsers", "engine", "snapshot", "neutron", "audit"},
    "live": {
        "model",
        "errors",
        "parsers",
        "engine",
        "render",
        "tracelog",
        "snapshot",
        "neutron",
        "live",
        "api",
    },
}

STARTS_PROCESSES = {"lab", "live"}
"""Packages that run commands: the lab builds nodes, ``live`` reads and changes a running one."""

STARTS_PROCESSES_FILES = {"snapshot/collect.py", "render/graphviz.py"}
"""Single modules that do: the read-only collector, and the layout of diagrams by ``dot``."""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nodetrace"):
            parts = node.module.split(".")
            found.add(parts[1] if len(parts) > 1 else "")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nodetrace."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_the_layering_allows(package: str) -> None:
    bad = {}
    for path in (SRC / package).rglob("*.py"):
        extra = _imports(path) - ALLOWED[package]
        if extra:
            bad[str(path.relative_to(SRC))] = sorted(extra)
    assert not bad


def test_only_the_lab_live_collect_and_graphviz_start_processes() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        if rel.parts[0] in STARTS_PROCESSES or rel.as_posix() in STARTS_PROCESSES_FILES:
            continue
        text = path.read_text()
        if "subprocess" in text or "os.system" in text:
            offenders.append(rel.as_posix())
    assert not offenders
