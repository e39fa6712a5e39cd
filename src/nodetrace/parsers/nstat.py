"""Read ``nstat -asz``: the kernel's SNMP and extended counters of one network namespace.

A real sample (iproute2 6.1; absolute values with ``-a``, zeros kept with ``-z``, and ``-s``
so that nstat does not write its history file)::

    #kernel
    IpInReceives                    15032              0.0
    IpInDiscards                    0                  0.0
    IpOutNoRoutes                   0                  0.0

Each line is a name, the value and a rate (the rate is not kept: it depends on nstat's own
history, which ``-s`` leaves alone).
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, report_line

_LINE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_]*)\s+(?P<value>\d+)(?:\s+\S+)?\s*$")


def parse_nstat(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> dict[str, int]:
    """Counter name -> value."""
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _LINE.match(stripped)
        if m is None:
            report_line(sink, source, number, "not NAME VALUE [RATE]", token=stripped[:40])
            continue
        out[m.group("name")] = int(m.group("value"))
    return out
