"""Read ``ovs-appctl fdb/show BRIDGE``: the MAC learning table NORMAL forwards with.

A real sample (OVS 3.1)::

     port  VLAN  MAC                Age
        2     1  5a:47:81:b2:2d:f0    0
        3     1  5e:6e:6f:61:e1:e7    0
        1     1  7a:b5:c8:6d:c6:d7    0

``port`` is the OpenFlow port number (``LOCAL`` for the bridge's own port); ``Age`` is seconds
or ``static`` for entries added with ``fdb/add``.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, SourcePos, report_line
from nodetrace.model.openflow import LOCAL_PORT
from nodetrace.model.ovs_runtime import MacEntry, MacTable

_HEADER = re.compile(r"^\s*port\s+VLAN\s+MAC\s+Age\s*$")
_ENTRY = re.compile(
    r"^\s*(\d+|LOCAL)\s+(\d+)\s+([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\s+(\d+|static)\s*$"
)


def parse_ovs_appctl_fdb_show(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> MacTable:
    entries: list[MacEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or _HEADER.match(line):
            continue
        m = _ENTRY.match(line)
        if m is None:
            token, expected = line.strip()[:60], "PORT VLAN MAC AGE"
            report_line(sink, source, number, "not an fdb/show entry", token, expected)
            continue
        port = LOCAL_PORT if m.group(1) == "LOCAL" else int(m.group(1))
        age = None if m.group(4) == "static" else int(m.group(4))
        entries.append(
            MacEntry(port, int(m.group(2)), m.group(3).lower(), age, SourcePos(source, number))
        )
    return MacTable(tuple(entries), source)
