"""Read ``ovs-appctl dpif/show``: which datapath port number each OpenFlow port has.

A real sample (OVS 3.1, userspace datapath)::

    netdev@ovs-netdev: hit:9 missed:17
      br-int:
        br-int 65534/1: (tap)
        patch-tun 1/none: (patch: peer=patch-int)
        qvovm1 2/6: (system)
      br-tun:
        vxlan-peer 2/5: (vxlan: key=flow, local_ip=192.168.50.1, remote_ip=192.168.50.2)

Datapath actions (``Datapath actions: push_vlan(vid=1,pcp=0),6``) name ports by these numbers.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos, report
from nodetrace.model.ovs_runtime import DpifPort, DpifShow

_BRIDGE = re.compile(r"^\s{2}(\S+):\s*$")
_PORT = re.compile(r"^\s{4}(\S+) (\d+)/(\d+|none):\s*(.*)$")


def parse_ovs_appctl_dpif_show(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> DpifShow:
    ports: list[DpifPort] = []
    bridge = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or re.match(r"^\S+@\S+:", line):
            continue
        b = _BRIDGE.match(line)
        if b:
            bridge = b.group(1)
            continue
        p = _PORT.match(line)
        if p and bridge:
            dp = None if p.group(3) == "none" else int(p.group(3))
            ports.append(DpifPort(bridge, p.group(1), int(p.group(2)), dp, p.group(4).strip()))
            continue
        err = ParseError(SourcePos(source, number), "not a dpif/show line", token=line.strip()[:60])
        report(sink, err)
    return DpifShow(tuple(ports), source)
