"""Read ``brctl show``: the Linux bridges and their ports, on nodes whose snapshot has no
``bridge link`` and whose ``ip link`` was taken without ``-d`` (older sosreports).

A real sample (bridge-utils 1.5; columns are separated by tabs, and each further port of a
bridge sits alone on a continuation line)::

    bridge name\tbridge id\t\tSTP enabled\tinterfaces
    br0\t\t8000.2047478aa2e8\tno\t\tem1
    \t\t\t\t\t\t\tvnet0
    \t\t\t\t\t\t\tvnet1
    qbr3b1f6a2c-8d\t\t8000.5e5a1b0a4c2f\tno\t\tqvb3b1f6a2c-8d
    \t\t\t\t\t\t\ttap3b1f6a2c-8d

A bridge without ports has only its first three columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodetrace.errors import DiagnosticSink, report_line
from nodetrace.parsers.pasted import output_lines

_BRIDGE_ID = re.compile(r"^[0-9a-fA-F]{4}\.[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class BrctlBridge:
    """One bridge as ``brctl show`` lists it."""

    name: str
    bridge_id: str
    stp: bool | None
    ports: tuple[str, ...]
    line: int


def parse_brctl_show(
    text: str, *, source: str, sink: DiagnosticSink | None = None
) -> tuple[BrctlBridge, ...]:
    """The bridges of one ``brctl show`` output, in listed order."""
    bridges: list[BrctlBridge] = []
    for lineno, line in output_lines(text, source=source, sink=sink):
        if not line.strip():
            continue
        words = line.split()
        if words[:2] == ["bridge", "name"]:
            continue
        if line[0] in " \t":
            if not bridges or len(words) != 1:
                why, expected = "port line without its bridge", "BRIDGE ID STP [PORT] first"
                report_line(sink, source, lineno, why, line.strip(), expected)
                continue
            last = bridges[-1]
            bridges[-1] = BrctlBridge(
                last.name, last.bridge_id, last.stp, (*last.ports, words[0]), last.line
            )
            continue
        if len(words) not in (3, 4) or not _BRIDGE_ID.match(words[1]):
            expected = "BRIDGE  8000.MAC  yes|no  [PORT]"
            report_line(sink, source, lineno, "not a brctl show line", line.strip()[:60], expected)
            continue
        stp = {"yes": True, "no": False}.get(words[2])
        bridges.append(BrctlBridge(words[0], words[1], stp, tuple(words[3:]), lineno))
    return tuple(bridges)
