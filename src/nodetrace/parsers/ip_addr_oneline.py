"""Read ``ip -o address`` (one line per address): the addresses of each device, for snapshots
whose only address listing is this one (older sosreports keep ``ip_-o_addr`` beside ``ip link``).

A real sample (iproute2 5.5, from a sosreport's ``ip_-o_addr``)::

    1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
    3: ens4    inet6 fe80::5054:ff:febb:47e2/64 scope link \\       valid_lft forever ...

It says nothing about the devices themselves (no flags, MAC or kind), so the loader only adds
these addresses to the devices an ``ip link`` listing gave.
"""

from __future__ import annotations

import re
from ipaddress import ip_interface

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos, report
from nodetrace.model.topology import Address

_LINE = re.compile(r"^\d+:\s+(\S+?)(?:@\S+)?\s+(inet6?)\s+(\S+)(?:\s+peer\s+(\S+))?(.*)$")


def parse_ip_addr_oneline(
    text: str, *, source: str, sink: DiagnosticSink | None = None
) -> dict[str, tuple[Address, ...]]:
    """Addresses by device name, in listed order."""
    out: dict[str, list[Address]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line.strip())
        pos = SourcePos(source, lineno)
        if m is None:
            if re.match(r"^\d+:\s+\S+\s+link/", line.strip()):
                continue  # `ip -o addr` of some versions prints link lines too
            report(sink, ParseError(pos, "not an `ip -o address` line", token=line.strip()[:60]))
            continue
        try:
            iface = ip_interface(m.group(3))
            peer = ip_interface(m.group(4)) if m.group(4) else None
        except ValueError:
            report(sink, ParseError(pos, "bad address", token=m.group(3)))
            continue
        words = m.group(5).replace("\\", " ").split()
        scope = words[words.index("scope") + 1] if "scope" in words[:-1] else "global"
        out.setdefault(m.group(1), []).append(Address(iface, scope, peer))
    return {name: tuple(addrs) for name, addrs in out.items()}
