"""Read the ``statistics`` column of ``ovs-vsctl --format=json list Interface``.

A real sample (OVS 3.1, ``--data=json --columns=name,statistics``, abridged)::

    {"data":[["qvo3b1f6a2c-8d",["map",[["collisions",0],["rx_bytes",1230],["rx_crc_err",0],
      ["rx_dropped",0],["rx_errors",0],["rx_packets",15],["tx_bytes",826],["tx_dropped",0],
      ["tx_errors",0],["tx_packets",9]]]]],
     "headings":["name","statistics"]}

The whole table's listing (as ``collect`` saves it) has the same two columns among others.
ovs-vswitchd refreshes the column every few seconds (``other_config:stats-update-interval``,
5 s by default): a reading may lag the kernel's own counters by that much.
"""

from __future__ import annotations

import json

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos, report


def parse_ovs_interface_statistics(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> dict[str, dict[str, int]]:
    """Interface name -> its statistics (an interface without any is left out)."""
    try:
        doc = json.loads(text)
        headings = [str(h) for h in doc["headings"]]
        rows = list(doc["data"])
        name_at, stats_at = headings.index("name"), headings.index("statistics")
    except (ValueError, KeyError, TypeError) as err:
        report(sink, ParseError(SourcePos(source, 1), f"not an Interface listing ({err})"))
        return {}
    out: dict[str, dict[str, int]] = {}
    for index, row in enumerate(rows, start=1):
        try:
            name = row[name_at]
            kind, pairs = row[stats_at]
            if not isinstance(name, str) or kind != "map":
                raise ValueError("name or statistics of the wrong type")
            out[name] = {str(k): int(v) for k, v in pairs}
        except (ValueError, TypeError, IndexError) as err:
            report(sink, ParseError(SourcePos(source, 1), f"row {index}: {err}"))
    return out
