"""Read ``conntrack -S``: the connection tracker's statistics of one namespace, per CPU.

A real sample (conntrack 1.4.7, kernel 6.18)::

    cpu=0   	found=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0
    cpu=1   	found=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0

The counters are summed over the CPUs (a packet is counted on the CPU that handled it).
"""

from __future__ import annotations

from nodetrace.errors import DiagnosticSink, report_line


def parse_conntrack_stats(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> dict[str, int]:
    """Counter name -> value summed over every CPU line."""
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words:
            continue
        if not words[0].startswith("cpu="):
            report_line(sink, source, number, "not a cpu=N line of conntrack -S", token=words[0])
            continue
        for word in words[1:]:
            name, sep, value = word.partition("=")
            if not sep or not value.isdigit():
                report_line(sink, source, number, "not NAME=NUMBER", token=word)
                continue
            out[name] = out.get(name, 0) + int(value)
    return out
