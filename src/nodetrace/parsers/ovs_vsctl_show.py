"""Read ``ovs-vsctl show``: bridges, ports (tag, trunks), interfaces (type, options, error).

A real sample (OVS 3.1, names quoted by older releases)::

    1ee09b59-d43e-437d-bd8f-aadda9c6f70f
        Bridge br-tun
            fail_mode: secure
            datapath_type: netdev
            Port vxlan-peer
                Interface vxlan-peer
                    type: vxlan
                    options: {dst_port="4789", key=flow, local_ip="192.168.50.1", remote_ip="192.168.50.2"}
            Port patch-int
                Interface patch-int
                    type: patch
                    options: {peer=patch-tun}
        Port qvovm1
                tag: 1
                Interface qvovm1
        ovs_version: "2.3.2"

``ovs-vsctl show`` prints neither ``vlan_mode`` nor OpenFlow port numbers nor external_ids;
ports read from it are marked ``vlan_mode_known=False``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nodetrace.errors import DiagnosticSink, SourcePos, report_line
from nodetrace.model.ovsdb import Bridge, Interface, OvsdbConfig, Pairs, Port, VlanMode
from nodetrace.parsers.elision import ELISION
from nodetrace.parsers.pasted import output_lines

_NOT_SHOW = "not an ovs-vsctl show line"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].encode().decode("unicode_escape")
    return text


def parse_ovsdb_map(text: str) -> Pairs:
    """``{dst_port="4789", key=flow}`` -> (("dst_port", "4789"), ("key", "flow"))."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    pairs: list[tuple[str, str]] = []
    for item in _split_quoted(body):
        key, _, value = item.partition("=")
        if key.strip():
            pairs.append((unquote(key), unquote(value)))
    return tuple(pairs)


def parse_ovsdb_set(text: str) -> tuple[str, ...]:
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    return tuple(unquote(x) for x in _split_quoted(body) if x.strip())


def _split_quoted(body: str) -> list[str]:
    out: list[str] = []
    cur = ""
    quoted = False
    escaped = False
    for c in body:
        if escaped:
            cur += c
            escaped = False
        elif c == "\\" and quoted:
            cur += c
            escaped = True
        elif c == '"':
            quoted = not quoted
            cur += c
        elif c == "," and not quoted:
            out.append(cur.strip())
            cur = ""
        else:
            cur += c
    if cur.strip():
        out.append(cur.strip())
    return out


@dataclass
class _Iface:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class _Port:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    interfaces: list[_Iface] = field(default_factory=list)


@dataclass
class _Bridge:
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    ports: list[_Port] = field(default_factory=list)


def parse_ovs_vsctl_show(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> OvsdbConfig:
    bridges: list[_Bridge] = []
    version: str | None = None
    bridge: _Bridge | None = None
    port: _Port | None = None
    iface: _Iface | None = None
    levels = {"bridge": -1, "port": -1, "iface": -1}
    skip_deeper_than: int | None = None
    incomplete = ""
    for number, line in output_lines(text, source=source, sink=sink):
        stripped = line.strip()
        if not stripped or _UUID.match(stripped):
            continue
        indent = len(line) - len(line.lstrip())
        if ELISION.match(line):
            where = SourcePos(source, number)
            if sink is not None:
                sink.warn(where, "lines left out where the output was copied: ports may be missing")
            incomplete = incomplete or (
                f"the ovs-vsctl show listing was cut at {where}: bridges and ports may be missing"
            )
            # Deeper lines after the marker belong to an element whose header was cut.
            skip_deeper_than = indent
            continue
        if skip_deeper_than is not None:
            if indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        word, _, rest = stripped.partition(" ")
        if word == "Bridge":
            bridge = _Bridge(unquote(rest))
            bridges.append(bridge)
            port = iface = None
            levels = {"bridge": indent, "port": -1, "iface": -1}
        elif word == "Port" and bridge is not None:
            port = _Port(unquote(rest))
            bridge.ports.append(port)
            iface = None
            levels["port"], levels["iface"] = indent, -1
        elif word == "Interface" and port is not None:
            iface = _Iface(unquote(rest))
            port.interfaces.append(iface)
            levels["iface"] = indent
        elif word in ("Manager", "Controller"):
            skip_deeper_than = indent
        elif stripped.startswith("ovs_version:"):
            version = unquote(stripped.split(":", 1)[1])
        elif ":" in stripped:
            key, _, value = stripped.partition(":")
            target: _Iface | _Port | _Bridge | None = None
            if iface is not None and indent > levels["iface"]:
                target = iface
            elif port is not None and indent > levels["port"]:
                target = port
            elif bridge is not None and indent > levels["bridge"]:
                target = bridge
            if target is None:
                report_line(sink, source, number, _NOT_SHOW, stripped[:60])
                continue
            target.attrs[key.strip()] = value.strip()
        else:
            report_line(sink, source, number, _NOT_SHOW, stripped[:60])
    return OvsdbConfig(tuple(_bridge(b) for b in bridges), version, source, incomplete=incomplete)


def _bridge(b: _Bridge) -> Bridge:
    return Bridge(
        b.name,
        tuple(_port(p) for p in b.ports),
        datapath_type=unquote(b.attrs.get("datapath_type", "")),
        fail_mode=unquote(b.attrs.get("fail_mode", "")),
    )


def _port(p: _Port) -> Port:
    tag_text = p.attrs.get("tag")
    trunks = tuple(int(x) for x in parse_ovsdb_set(p.attrs.get("trunks", "[]")) if x.isdigit())
    mode_text = unquote(p.attrs.get("vlan_mode", ""))
    mode = VlanMode(mode_text) if mode_text in {m.value for m in VlanMode} else None
    return Port(
        p.name,
        tuple(_iface(i) for i in p.interfaces),
        tag=int(tag_text) if tag_text and tag_text.isdigit() else None,
        trunks=trunks,
        vlan_mode=mode,
        vlan_mode_known="vlan_mode" in p.attrs,
    )


def _iface(i: _Iface) -> Interface:
    error = i.attrs.get("error")
    return Interface(
        i.name,
        type=unquote(i.attrs.get("type", "")),
        options=parse_ovsdb_map(i.attrs.get("options", "{}")),
        error=unquote(error) if error else None,
    )
