"""Read the datapath counters of ``ovs-appctl dpctl/show -s``: per datapath its lookups.

A real sample (OVS 3.1, userspace datapath in a lab node, abridged)::

    netdev@ovs-netdev:
      lookups: hit:37 missed:12 lost:0
      flows: 2
      port 0: ovs-netdev (tap)
        RX packets:0 errors:0 dropped:0 overruns:0 frame:0

``lost`` counts packets that missed the datapath's flow cache and could not be handed to
ovs-vswitchd (its upcall queue was full): they are dropped before any OpenFlow table sees
them. Port lines are left to ``ovs-vsctl list Interface``'s statistics, which name the port
as the flows do.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, report_line

_DATAPATH = re.compile(r"^(\S+@\S+):\s*$")
_LOOKUPS = re.compile(r"^\s+lookups:((?:\s+\w+:\d+)+)\s*$")


def parse_ovs_dpctl_show_stats(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> dict[str, dict[str, int]]:
    """Datapath name -> ``hit``, ``missed``, ``lost``."""
    out: dict[str, dict[str, int]] = {}
    datapath = ""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _DATAPATH.match(line)
        if m is not None:
            datapath = m.group(1)
            out[datapath] = {}
            continue
        m = _LOOKUPS.match(line)
        if m is None:
            continue  # ports, flows, masks, caches: not read here
        if not datapath:
            report_line(sink, source, number, "lookups before any datapath line")
            continue
        for word in m.group(1).split():
            name, _, value = word.partition(":")
            out[datapath][name] = int(value)
    return out
