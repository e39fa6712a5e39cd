"""Read ``ovs-appctl bridge/dump-flows [--offload-stats] BRIDGE``: every flow of the bridge's
classifier, hidden ones (in-band control, priority above 65535) included.

A real sample (OVS 2.13, from a sosreport's
``ovs-appctl_bridge.dump-flows_--offload-stats_br-tun``)::

    duration=62959s, n_packets=1226, n_bytes=130651, n_offload_packets=0, n_offload_bytes=0, \
priority=1,in_port=1,actions=goto_table:1
    table_id=1, duration=436s, n_packets=0, n_bytes=0, priority=2,dl_vlan=3,\
dl_dst=fa:16:3e:76:19:dd,actions=drop

The format differs from ``ovs-ofctl dump-flows`` only in its field names (``table_id``, no
``table`` for table 0, ``actions`` joined by a comma, offload counters), so each line is
rewritten into the ``dump-flows`` form and read by that parser: a flow reads the same whichever
command printed it. Snapshots use it only when no ``ovs-ofctl dump-flows`` of the bridge exists.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink
from nodetrace.model.openflow import FlowDump
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows

_TABLE_ID = re.compile(r"(^|\s)table_id=(\d+),")
_OFFLOAD = re.compile(r"\s*n_offload_(packets|bytes)=\d+,")
_ACTIONS = re.compile(r",actions=")


def _as_dump_flows_line(line: str) -> str:
    if not line.strip():
        return line
    line = _OFFLOAD.sub("", line)
    m = _TABLE_ID.search(line)
    if m:
        line = _TABLE_ID.sub(r"\1", line, count=1).lstrip()
        table = m.group(2)
    else:
        table = "0"
    # `duration=Ns, n_packets=...` -> `duration=Ns, table=T, n_packets=...`
    line = line.replace(" n_packets=", f" table={table}, n_packets=", 1)
    line = _ACTIONS.sub(" actions=", line, count=1)
    return " " + line.strip()


def parse_ovs_appctl_bridge_dump_flows(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> FlowDump:
    """The bridge's flows as a :class:`FlowDump` (OpenFlow 1.0 syntax, as ``dump-flows``)."""
    lines = [_as_dump_flows_line(line) for line in text.splitlines()]
    return parse_ovs_ofctl_dump_flows(
        "NXST_FLOW reply (xid=0x0):\n" + "\n".join(lines), source=source, sink=sink
    )
