"""Read the device counters of ``ip -s -j link`` (``-s -s`` and ``-d`` change nothing here).

A real sample (iproute2 6.1, ``ip -s -s -j link show lo``, one line, abridged)::

    [{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,...,
      "stats64":{"rx":{"bytes":9579,"packets":87,"errors":0,"dropped":0,...},
                 "tx":{"bytes":9579,"packets":87,"errors":0,"dropped":0,...}}}]

Each device gets flat names (``rx_packets``, ``rx_dropped``, ``tx_packets``...), the names
Open vSwitch gives the same counters, so both read alike. Older iproute2 prints ``stats``
instead of ``stats64``; both are read.
"""

from __future__ import annotations

from nodetrace.errors import DiagnosticSink
from nodetrace.parsers.ip_json import as_int, as_str, entry_error, json_array, obj


def parse_ip_stats(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> dict[str, dict[str, int]]:
    """Device name -> its counters; a device printed without counters is reported."""
    out: dict[str, dict[str, int]] = {}
    for index, entry in json_array(text, source=source, sink=sink):
        if not isinstance(entry, dict):
            entry_error(sink, source, index, "not a JSON object")
            continue
        name = as_str(entry.get("ifname"))
        if not name:
            entry_error(sink, source, index, "no ifname")
            continue
        stats = obj(entry, "stats64") or obj(entry, "stats")
        if not stats:
            entry_error(sink, source, index, f"{name}: no stats64 (was it run with -s?)")
            continue
        counters: dict[str, int] = {}
        for way in ("rx", "tx"):
            for key, value in obj(stats, way).items():
                number = as_int(value)
                if number is not None:
                    counters[f"{way}_{key}"] = number
        out[name] = counters
    return out
