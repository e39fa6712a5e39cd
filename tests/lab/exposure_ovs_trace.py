"""A point of an exposure class asked of real Open vSwitch with ``ofproto/trace``.

The point's headers become the flow OVS's own packet parser would extract from such a packet
(ports for TCP, UDP and SCTP only, type and code for ICMP in IPv4 and ICMPv6 in IPv6, no
layer-4 words at all in a later fragment), each field under the name OVS's flow parser
demands (``udp_dst``, never ``tp_dst`` on UDP). The class's conntrack state becomes the
``ct_state`` values ``--ct-next`` gives each recirculation, one trace per value the state
stands for. The trace is read with nodetrace's own parser; only br-int's part counts (an
outbound packet goes on into br-tun, whose port numbers are not the tap's).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.run import run
from nodetrace.model.exposure import CT_STATES, Dim
from nodetrace.model.openflow_trace import ActionRun, Bridge, TableLookup, TraceNode
from nodetrace.model.packet import Family
from nodetrace.parsers.ovs_appctl_ofproto_trace import (
    observed_tree,
    parse_ovs_appctl_ofproto_trace,
)

BRIDGE = "br-int"

CT_NEXT: dict[str, tuple[str, ...]] = {
    "NEW": ("trk,new",),
    "ESTABLISHED": ("trk,est", "trk,est,rpl"),
    "RELATED": ("trk,rel", "trk,rel,rpl"),
    "INVALID": ("trk,inv",),
    "UNTRACKED": ("",),
}
"""What conntrack tells OVS about a packet of each class state; ``""``: nothing, conntrack
never saw it (should it reach ``ct()``, the trace goes on with OVS's default, ``trk,new``)."""

_PORT_WORDS = {6: "tcp", 17: "udp", 132: "sctp"}


def mac_text(mac: int) -> str:
    return ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -1, -8))


def layer4_seen(family: Family, point: tuple[int, ...]) -> tuple[str, str] | None:
    """The names OVS reads the point's two layer-4 words under, or ``None`` when its parser
    reads none (other protocols, later fragments)."""
    if point[Dim.FRAG]:
        return None
    proto = point[Dim.PROTO]
    if proto in _PORT_WORDS:
        word = _PORT_WORDS[proto]
        return f"{word}_src", f"{word}_dst"
    if family is Family.IPV4 and proto == 1:
        return "icmp_type", "icmp_code"
    if family is Family.IPV6 and proto == 58:
        return "icmpv6_type", "icmpv6_code"
    return None


def flow_of(family: Family, point: tuple[int, ...], head: str) -> str:
    """The ``ofproto/trace`` flow of ``point``; ``head``: where it enters (``in_port=...``,
    the VLAN and destination MAC)."""
    v4 = family is Family.IPV4
    addr = IPv4Address if v4 else IPv6Address
    src, dst = ("nw_src", "nw_dst") if v4 else ("ipv6_src", "ipv6_dst")
    parts = [
        "ip" if v4 else "ipv6",
        head,
        f"dl_src={mac_text(point[Dim.MAC])}",
        f"{src}={addr(point[Dim.SRC])}",
        f"{dst}={addr(point[Dim.DST])}",
        f"nw_proto={point[Dim.PROTO]}",
        "nw_ttl=64",
    ]
    if point[Dim.FRAG]:
        parts.append("nw_frag=later")
    words = layer4_seen(family, point)
    if words is not None:
        parts += [f"{words[0]}={point[Dim.L4A]}", f"{words[1]}={point[Dim.L4B]}"]
    return ",".join(parts)


def ct_next_of(point: tuple[int, ...]) -> tuple[str, ...]:
    return CT_NEXT[CT_STATES[point[Dim.CT]]]


@dataclass(frozen=True, slots=True)
class RealTrace:
    """What ``ofproto/trace`` said, br-int's part of it."""

    flow: str
    ct_next: str
    text: str
    read_as: str
    """The flow OVS read (its ``Flow:`` line)."""
    tables: tuple[int, ...]
    """br-int's table lookups, in order, every pass."""
    outputs: tuple[str, ...]
    """br-int's ``output:`` actions' ports, as printed."""
    recirculations: int

    def outputs_to(self, ofport: int, name: str) -> bool:
        return str(ofport) in self.outputs or name in self.outputs

    def reaches(self, tables: frozenset[int]) -> bool:
        return any(t in tables for t in self.tables)

    def show(self) -> str:
        extra = f" --ct-next {self.ct_next}" if self.ct_next else ""
        return f"ofproto/trace {BRIDGE} {self.flow}{extra}\n{self.text}"


def _visit(nodes: tuple[TraceNode, ...], bridge: str, tables: list[int], out: list[str]) -> None:
    for node in nodes:
        match node:
            case Bridge(name=name):
                _visit(node.children, name, tables, out)
                continue
            case TableLookup(table=table) if bridge == BRIDGE:
                tables.append(table)
            case ActionRun(action=action) if bridge == BRIDGE and action.startswith("output:"):
                out.append(action.removeprefix("output:").strip('"'))
        _visit(node.children, bridge, tables, out)


def trace(ovs: OvsInstance, flow: str, ct_next: str) -> RealTrace:
    argv = ["ovs-appctl", "-t", str(Path(ovs.rundir) / "ovs-vswitchd.ctl"), "ofproto/trace"]
    argv += [BRIDGE, flow, *(["--ct-next", ct_next] if ct_next else [])]
    proc = run(argv, env=ovs.env, check=False)
    assert proc.returncode == 0, f"ofproto/trace {flow} {ct_next}: {proc.stderr.strip()}"
    observed = parse_ovs_appctl_ofproto_trace(proc.stdout, source="ofproto/trace")
    assert observed.passes, proc.stdout
    failures = [p.failure for p in observed.passes if p.failure]
    assert not failures, f"{flow}: {failures}\n{proc.stdout}"
    tables: list[int] = []
    outputs: list[str] = []
    for p in observed.passes:
        # A pass resumed after ct() is headed by the bridge the trace began on: br-int.
        _visit(observed_tree(p), BRIDGE, tables, outputs)
    return RealTrace(
        flow,
        ct_next,
        proc.stdout,
        observed.passes[0].flow,
        tuple(tables),
        tuple(outputs),
        len(observed.passes) - 1,
    )


def read_layer4(family: Family, point: tuple[int, ...], read_as: str) -> bool:
    """Whether OVS read the point's layer-4 words as the flow gave them (or none at all)."""
    fields = dict(kv.split("=", 1) for kv in read_as.split(",") if "=" in kv)
    words = layer4_seen(family, point)
    if words is None:
        return fields.get("tp_src", "0") == "0" and fields.get("icmp_type", "0") == "0"
    name = ("icmp_type", "icmp_code") if words[0].startswith("icmp") else ("tp_src", "tp_dst")
    return (fields.get(name[0]), fields.get(name[1])) == (
        str(point[Dim.L4A]),
        str(point[Dim.L4B]),
    )
