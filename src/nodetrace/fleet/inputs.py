"""Which nodes a fleet command reads: arguments (folders, archives, glob patterns) → named inputs.

Operators keep many nodes' snapshots and logs side by side (``nodes/cmp017.tar.gz``,
``logs/cmp017/kern.log``), so each input gets a node name from its path, and results from
different commands about the same node line up by that name in the store. Patterns are
expanded here, by Python's ``glob``, never by a shell. Two snapshots that would share a name
are refused, since rows of two nodes under one name could not be told apart afterwards; a
node may have several logs (``kern.log``, ``kern.log.1``).
"""

from __future__ import annotations

import glob
import itertools
from dataclasses import dataclass
from pathlib import Path

from nodetrace.errors import UsageError
from nodetrace.snapshot.parts import is_snapshot

GENERIC_LOG_NAMES = frozenset({"kern", "syslog", "messages", "journal", "dmesg", "trace", "log"})
"""File names that say what a log is, not whose: such a log is named by its folder."""

SNAPSHOT_MARKERS = ("manifest.json", "sos_commands")
"""A folder holding one of these is one node's snapshot (a ``collect`` bundle, a sosreport)."""


@dataclass(frozen=True, slots=True)
class NodeInput:
    node: str
    """The node's name in every result: the input's file name up to its first dot (the folder's
    name for a generic log name such as ``kern.log``)."""
    path: str


def node_name(path: Path) -> str:
    stem = path.name.split(".", 1)[0]
    if stem in GENERIC_LOG_NAMES and path.parent.name:
        return path.parent.name
    return stem


def expand(arguments: list[str], *, logs: bool) -> list[NodeInput]:
    """The inputs named by ``arguments``, sorted by node. A folder that is not itself a
    snapshot holds one input per entry (hidden entries skipped); ``logs`` takes files only."""
    paths: list[Path] = []
    for argument in arguments:
        if glob.has_magic(argument):
            matched = sorted(glob.glob(argument))
            if not matched:
                raise UsageError(f"{argument}: matches no file")
            paths += [Path(m) for m in matched]
        elif Path(argument).exists():
            paths.append(Path(argument))
        else:
            raise UsageError(f"{argument}: no such file or folder")
    inputs = sorted({item for path in paths for item in _inputs(path, logs)},
                    key=lambda i: (i.node, i.path))  # fmt: skip
    if not logs:
        _refuse_shared_names(inputs)
    return inputs


def _inputs(path: Path, logs: bool) -> list[NodeInput]:
    if not path.is_dir() or (not logs and _is_one_snapshot(path)):
        return [NodeInput(node_name(path), str(path))]
    entries = sorted(e for e in path.iterdir() if not e.name.startswith("."))
    if logs:
        return [
            item
            for e in entries
            for item in (_inputs(e, logs) if e.is_dir() else [NodeInput(node_name(e), str(e))])
        ]
    return [NodeInput(node_name(e), str(e)) for e in entries if is_snapshot(str(e))]


def _is_one_snapshot(folder: Path) -> bool:
    return any((folder / marker).exists() for marker in SNAPSHOT_MARKERS)


def _refuse_shared_names(inputs: list[NodeInput]) -> None:
    for first, second in itertools.pairwise(inputs):
        if first.node == second.node:
            raise UsageError(
                f"{first.path} and {second.path} would both be node {first.node!r}: "
                "rename one, or give them in separate runs"
            )
