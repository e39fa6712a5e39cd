"""Read ``ovs-appctl dpctl/show`` (or ``ovs-dpctl show``): the kernel datapath's ports.

A real sample (OVS 2.13, sosreport ``ovs-appctl_dpctl.show_-s_system_ovs-system``, shortened)::

    system@ovs-system:
      lookups: hit:227988 missed:1151 lost:0
      flows: 26
      port 0: ovs-system (internal)
        RX packets:0 errors:0 dropped:0 overruns:0 frame:0
      port 1: vxlan_sys_4789 (vxlan: packet_type=ptap)
      port 9: fg-7450b342-b1 (internal)
      port 13: tap1d798b14-c4

It names no bridge and no OpenFlow port number, but it tells which devices are Open vSwitch
ports, and which of them are OVS internal ports, on a node whose ``ovs-vsctl`` output is missing.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, report_line
from nodetrace.model.snapshot import DatapathPort

_DATAPATH = re.compile(r"^(\S+@\S+):\s*$")
_PORT = re.compile(r"^\s+port (\d+): (\S+)(?: \(([^:)]+)(?::[^)]*)?\))?\s*$")
_OTHER = re.compile(r"^\s+(lookups|flows|masks|caches|RX|TX|collisions|port \d+:)")


def parse_ovs_appctl_dpctl_show(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> tuple[DatapathPort, ...]:
    """The ports of every datapath the output lists, with their type (``system`` when the
    output names none)."""
    out: list[DatapathPort] = []
    datapath = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _DATAPATH.match(line)
        if m is not None:
            datapath = m.group(1)
            continue
        m = _PORT.match(line)
        if m is not None:
            out.append(DatapathPort(datapath, int(m.group(1)), m.group(2), m.group(3) or "system"))
            continue
        if line.startswith((" ", "\t")) and (_OTHER.match(line) or ":" in line):
            continue  # counters and statistics
        expected = "DATAPATH: or port N: NAME (TYPE)"
        report_line(sink, source, number, "not a dpctl/show line", line.strip()[:40], expected)
    return tuple(out)
