"""Read ``ovs-appctl dpctl/dump-conntrack`` (and ``ovs-dpctl dump-conntrack``): the connections
the datapath's tracker knows, per zone.

A real sample (OVS 3.1 userspace conntrack)::

    icmp,orig=(src=10.2.0.1,dst=10.2.0.3,id=7704,type=8,code=0),reply=(src=10.2.0.3,dst=10.2.0.1,id=7704,type=0,code=0),zone=1
    tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=22),reply=(src=10.0.0.2,dst=10.0.0.1,sport=22,dport=40000),zone=5,mark=1,protoinfo=(state=ESTABLISHED)

Extra fields some versions print (``id=``, ``timeout=``, ``labels=``, ``status=``) are read when
known and otherwise ignored.
"""

from __future__ import annotations

from ipaddress import ip_address

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos
from nodetrace.model.conntrack import (
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    ConntrackDump,
    ConntrackEntry,
    ConnTuple,
    protocol_number,
)
from nodetrace.parsers.ovs_flow_text import split_top


def _fields(body: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in split_top(body):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip()
    return out


def _tuple(text: str, proto: int) -> ConnTuple:
    """A tuple keyed as the kernel keys it: ports, or an ICMP query's id and type."""
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"expected (src=...,dst=...), got {text!r}")
    f = _fields(text[1:-1])
    sport = dport = 0
    if proto in ICMP_PROTOCOLS:
        sport, dport = int(f["id"], 0), int(f["type"], 0)
    elif proto in PORT_PROTOCOLS:
        sport, dport = int(f["sport"], 0), int(f["dport"], 0)
    return ConnTuple(ip_address(f["src"]), ip_address(f["dst"]), proto, sport, dport)


def parse_ovs_appctl_dpctl_dump_conntrack(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> ConntrackDump:
    entries: list[ConntrackEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        pos = SourcePos(source, number)
        try:
            name, _, rest = stripped.partition(",")
            proto = protocol_number(name)
            if proto is None:
                raise ValueError(f"unknown protocol {name!r}")
            f = _fields(rest)
            state = None
            if "protoinfo" in f and f["protoinfo"].startswith("("):
                state = _fields(f["protoinfo"][1:-1]).get("state")
            entries.append(
                ConntrackEntry(
                    _tuple(f["orig"], proto),
                    _tuple(f["reply"], proto),
                    zone=int(f.get("zone", "0"), 0),
                    mark=int(f.get("mark", "0"), 0),
                    labels=int(f.get("labels", "0"), 0),
                    state=state,
                    pos=pos,
                )
            )
        except (KeyError, ValueError) as err:
            error = ParseError(pos, f"not a conntrack entry ({err})", token=stripped[:60])
            if sink is None:
                raise error from None
            sink.error(error)
    return ConntrackDump(tuple(entries), source)
