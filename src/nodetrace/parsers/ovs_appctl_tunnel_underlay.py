"""Read the two tables ovs-vswitchd uses to send a tunnel's outer packet: its routing table
(``ovs-appctl ovs/route/show``) and its neighbour cache (``ovs-appctl tnl/neigh/show``).

Real samples (OVS 2.13, from a sosreport's ``ovs-appctl_ovs.route.show`` and
``ovs-appctl_tnl.arp.show``; the cache there was empty, an entry is shown as OVS prints it)::

    Route Table:
    Cached: 10.0.0.128/32 dev br-ens3 SRC 10.0.0.128 local
    Cached: 0.0.0.0/0 dev br-ens3 GW 10.0.0.2 SRC 10.0.0.128

    IP                                            MAC                 Bridge
    ==========================================================================
    10.0.0.114                                    52:54:00:12:34:56   br-ens3

Both are kept as text in the snapshot; these parsers turn them into
:class:`~nodetrace.model.topology.OvsRoute` and
:class:`~nodetrace.model.topology.OvsTunnelNeighbour`.
"""

from __future__ import annotations

import re
from ipaddress import ip_address, ip_network

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos, report, report_line
from nodetrace.model.topology import IPAddress, OvsRoute, OvsTunnelNeighbour

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _address(text: str) -> IPAddress:
    value = ip_address(text)
    mapped = getattr(value, "ipv4_mapped", None)
    return mapped if mapped is not None else value


def parse_ovs_appctl_ovs_route_show(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> tuple[OvsRoute, ...]:
    """The routes, in printed order (ovs-vswitchd looks them up by longest prefix)."""
    routes: list[OvsRoute] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words == ["Route", "Table:"]:
            continue
        pos = SourcePos(source, lineno)
        if words[0] not in ("Cached:", "User:") or len(words) < 2:
            report(sink, ParseError(pos, "not a route line", token=line.strip()[:60]))
            continue
        try:
            fields: dict[str, str] = {}
            local = False
            i = 2
            while i < len(words):
                if words[i] == "local":
                    local = True
                    i += 1
                elif words[i] in ("dev", "GW", "SRC", "MARK", "table") and i + 1 < len(words):
                    fields[words[i]] = words[i + 1]
                    i += 2
                else:
                    raise ValueError(f"unknown word {words[i]!r}")
            if "dev" not in fields:
                raise ValueError("no dev")
            routes.append(
                OvsRoute(
                    prefix=ip_network(words[1], strict=False),
                    dev=fields["dev"],
                    gateway=_address(fields["GW"]) if "GW" in fields else None,
                    src=_address(fields["SRC"]) if "SRC" in fields else None,
                    local=local,
                    user=words[0] == "User:",
                    mark=int(fields["MARK"]) if "MARK" in fields else None,
                )
            )
        except ValueError as err:
            report(sink, ParseError(pos, f"unreadable route ({err})", token=line.strip()[:60]))
    return tuple(routes)


def parse_ovs_appctl_tnl_neigh_show(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> tuple[OvsTunnelNeighbour, ...]:
    """The cached neighbours; ``stale`` ones are past their expiry (OVS resolves them again)."""
    out: list[OvsTunnelNeighbour] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0] == "IP" or set(line.strip()) == {"="}:
            continue
        pos = SourcePos(source, lineno)
        if len(words) not in (3, 4) or not _MAC.match(words[1]):
            token, expected = line.strip()[:60], "IP MAC BRIDGE"
            report_line(sink, source, lineno, "not a neighbour line", token, expected)
            continue
        try:
            ip = _address(words[0])
        except ValueError:
            report(sink, ParseError(pos, "not an IP address", token=words[0]))
            continue
        out.append(OvsTunnelNeighbour(ip, words[1].lower(), words[2], words[3:] == ["STALE"]))
    return tuple(out)
