"""Parse ``sysctl`` output (``sysctl -a``, ``sysctl -e -a -r PATTERN``, ``sysctl KEY...``).

A sample (procps-ng 4.0.2)::

    net.bridge.bridge-nf-call-iptables = 1
    net.ipv4.conf.all.rp_filter = 0
    net.ipv4.conf.qbr3b1f6a2c-8d.rp_filter = 0
    net.ipv4.tcp_rmem = 4096	131072	6291456

Also accepted: ``key=value`` (sysctl.conf style) and ``#``/``;`` comments. An interface name
with a dot appears with a slash in the key (``net.ipv4.conf.eth0/100.rp_filter``), as sysctl
prints it.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos, report
from nodetrace.model.snapshot import Sysctls

_LINE = re.compile(r"^\s*([A-Za-z0-9_./:@+-]+?)\s*=\s?(.*?)\s*$")


def parse_sysctl(text: str, *, source: str, sink: DiagnosticSink | None = None) -> Sysctls:
    """Every ``key = value`` line; a later line for the same key wins, as on the node."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        m = _LINE.match(line)
        if m is None:
            err = ParseError(SourcePos(source, number), "not a sysctl line", expected="KEY = VALUE")
            report(sink, err)
            continue
        values[m.group(1)] = m.group(2)
    return Sysctls(tuple(values.items()), source=source)
