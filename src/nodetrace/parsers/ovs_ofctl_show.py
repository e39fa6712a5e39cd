"""Read ``ovs-ofctl show BRIDGE``: OpenFlow port numbers, names, MACs and port flags.

A real sample (OVS 3.1)::

    OFPT_FEATURES_REPLY (xid=0x2): dpid:0000622e5bd4b942
    n_tables:254, n_buffers:0
    capabilities: FLOW_STATS TABLE_STATS PORT_STATS QUEUE_STATS ARP_MATCH_IP
    actions: output enqueue set_vlan_vid set_vlan_pcp strip_vlan mod_dl_src mod_dl_dst ...
     1(patch-tun): addr:42:35:a3:87:06:9d
         config:     0
         state:      0
         speed: 0 Mbps now, 0 Mbps max
     LOCAL(br-int): addr:62:2e:5b:d4:b9:42
         config:     PORT_DOWN
         state:      LINK_DOWN
    OFPT_GET_CONFIG_REPLY (xid=0x4): frags=normal miss_send_len=0

OpenFlow 1.3+ output (``-O OpenFlow13``) lists the same port blocks under
``OFPST_PORT_DESC reply``.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, report_line
from nodetrace.model.openflow import LOCAL_PORT
from nodetrace.model.ovs_runtime import OfctlShow, OfPort
from nodetrace.parsers.pasted import output_lines

_PORT = re.compile(r"^\s*(\d+|LOCAL)\((.+)\): addr:([0-9a-fA-F:]{17})\s*$")
_DPID = re.compile(r"dpid:([0-9a-fA-F]+)")
_TABLES = re.compile(r"^n_tables:(\d+)")
_ATTR = re.compile(r"^\s+(config|state|current|advertised|supported|peer|speed):\s*(.*)$")
_KNOWN = re.compile(r"^(OFPT_|OFPST_|NXST_|capabilities:|actions:|n_tables:)")


def parse_ovs_ofctl_show(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> OfctlShow:
    ports: list[OfPort] = []
    dpid: str | None = None
    n_tables: int | None = None
    current: dict[str, object] | None = None

    def flush() -> None:
        if current is not None:
            ports.append(
                OfPort(
                    int(str(current["number"])),
                    str(current["name"]),
                    str(current["mac"]),
                    tuple(current.get("config", ())),  # type: ignore[arg-type]
                    tuple(current.get("state", ())),  # type: ignore[arg-type]
                )
            )

    for number, line in output_lines(text, source=source, sink=sink):
        if not line.strip():
            continue
        port = _PORT.match(line)
        if port:
            flush()
            num = LOCAL_PORT if port.group(1) == "LOCAL" else int(port.group(1))
            current = {"number": num, "name": port.group(2), "mac": port.group(3).lower()}
            continue
        attr = _ATTR.match(line)
        if attr and current is not None:
            if attr.group(1) in ("config", "state"):
                words = tuple(w for w in attr.group(2).split() if w != "0")
                current[attr.group(1)] = words
            continue
        stripped = line.strip()
        if _KNOWN.match(stripped):
            m = _DPID.search(stripped)
            if m:
                dpid = m.group(1)
            t = _TABLES.match(stripped)
            if t:
                n_tables = int(t.group(1))
            continue
        report_line(sink, source, number, "not an ovs-ofctl show line", stripped[:60])
    flush()
    return OfctlShow(tuple(ports), dpid, n_tables, source)
