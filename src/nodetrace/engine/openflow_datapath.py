"""The ``Datapath actions:`` line of ``ofproto/trace``, where nodetrace can derive it exactly.

OVS commits header changes lazily before each output (``commit_odp_actions``): a VLAN that
differs from the one last committed is popped and the new one pushed, then the datapath port is
named by its number from ``ovs-appctl dpif/show``. A native tunnel (userspace datapath) becomes
``tnl_push(tnl_port(N),header(...),out_port(LOCAL))`` followed by what the underlay bridge did
with the outer packet, inside ``clone(...)`` unless it is the last thing the packet does. That
much is derived here and checked against the real tool (tests/lab/test_openflow_differential.py,
tests/lab/test_openflow_underlay.py, tests/unit/test_openflow_datapath_actions.py,
tests/unit/test_openflow_underlay.py). Everything else -- rewritten addresses (``set(...)``),
kernel-datapath tunnels (``set(tunnel(...))``), Geneve and IPv6 headers, conntrack and
recirculation, controller actions, the order of flooded copies -- is reported as *not derived*,
with the reason, rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from nodetrace.model.openflow_trace import Egress, EgressKind, NativeTunnel
from nodetrace.model.ovs_runtime import DpifShow
from nodetrace.model.packet import Packet

NOT_DERIVED = "(not derived: {})"

Vlan = tuple[int, int] | None
"""A VLAN tag as committed to the datapath (VID, PCP), or none."""


class _NotDerived(Exception):
    pass


def datapath_actions(
    started: Callable[[], Packet],
    egress: Sequence[Egress],
    dpif: DpifShow | None,
    underived: str | None,
) -> str:
    """The actions for one pass whose packet started as ``started()`` and left as ``egress``
    (the start is built only when needed: most traces with many outputs are not derived)."""
    if underived:
        return NOT_DERIVED.format(underived)
    if not egress:
        return "drop"
    if dpif is None:
        return NOT_DERIVED.format("datapath port numbers need ovs-appctl dpif/show")
    try:
        return ",".join(_actions(started(), egress, dpif))
    except _NotDerived as err:
        return NOT_DERIVED.format(err)


def _actions(start: Packet, egress: Sequence[Egress], dpif: DpifShow) -> list[str]:
    plain = replace(start, dl_vlan=None, dl_vlan_pcp=0)
    base = _vlan(start)
    out: list[str] = []
    i = 0
    while i < len(egress):
        e = egress[i]
        if e.carries is not None:
            group = [e]
            while i + len(group) < len(egress) and egress[i + len(group)].carries is e.carries:
                group.append(egress[i + len(group)])
            i += len(group)
            push = _tnl_push(e.carries, group, dpif)
            out.append(push if i == len(egress) else f"clone({push})")
            continue
        i += 1
        if e.kind is not EgressKind.PORT or e.encap is not None:
            raise _NotDerived(
                "set(tunnel(...)) for a tunnel not followed into an underlay bridge, and "
                "controller outputs, are not derived"
            )
        if replace(e.packet, dl_vlan=None, dl_vlan_pcp=0) != plain:
            raise _NotDerived("rewritten header fields (set actions) are not derived")
        base = _output(e, base, dpif, out)
    return out


def _vlan(p: Packet) -> Vlan:
    return (p.dl_vlan, p.dl_vlan_pcp) if p.dl_vlan is not None else None


def _dp_port(dpif: DpifShow, bridge: str, name: str) -> int:
    port = next((p for p in dpif.ports if p.bridge == bridge and p.name == name), None)
    if port is None or port.dp_port is None:
        raise _NotDerived(f"ovs-appctl dpif/show has no datapath port for {name}")
    return port.dp_port


def _output(e: Egress, base: Vlan, dpif: DpifShow, out: list[str]) -> Vlan:
    if e.inner_vlan is not None:
        raise _NotDerived("double VLAN tags (QinQ) are not derived")
    vlan = _vlan(e.packet)
    if vlan != base:
        if base is not None:
            out.append("pop_vlan")
        if vlan is not None:
            out.append(f"push_vlan(vid={vlan[0]},pcp={vlan[1]})")
    out.append(str(_dp_port(dpif, e.bridge, e.port)))
    return vlan


_HEADERS = {"vxlan": (50, 4, 17), "gre": (42, 3, 47)}
"""Tunnel type: (header size, OVS_VPORT_TYPE, IP protocol) of the forms checked against OVS."""


def _tnl_push(t: NativeTunnel, group: Sequence[Egress], dpif: DpifShow) -> str:
    encap = t.encap
    if encap.type not in _HEADERS or encap.dst is None or encap.dst.version != 4:
        raise _NotDerived(f"{encap.type} headers over IPv{encap.dst and encap.dst.version}")
    if t.smac is None or encap.src is None:
        raise _NotDerived("the outer source MAC or address is unknown")
    if not encap.key or encap.tos or "df" not in encap.flags or "csum" in encap.flags:
        raise _NotDerived("this tunnel header (key 0, tos, no df or csum) is not derived")
    size, vport_type, proto = _HEADERS[encap.type]
    if encap.type == "vxlan":
        port = encap.dst_port or 4789
        l4 = f"udp(src=0,dst={port},csum=0x0),vxlan(flags=0x8000000,vni={encap.key:#x})"
    else:
        port = 0
        l4 = f"gre((flags=0x2000,proto=0x6558),key={encap.key:#x})"
    for e in group:
        p = e.packet
        if (p.dl_src, p.dl_dst, p.nw_src, p.nw_dst, p.nw_ttl) != (
            t.smac, t.dmac, encap.src, encap.dst, encap.ttl
        ) or (port and p.tp_dst != port):  # fmt: skip
            raise _NotDerived("the underlay bridge rewrote the outer headers")
    header = (
        f"header(size={size},type={vport_type},eth(dst={t.dmac},src={t.smac},dl_type=0x0800),"
        f"ipv4(src={encap.src},dst={encap.dst},proto={proto},tos=0,ttl={encap.ttl},"
        f"frag=0x4000),{l4})"
    )
    push = (
        f"tnl_push(tnl_port({_dp_port(dpif, t.bridge, t.port)}),{header},"
        f"out_port({_dp_port(dpif, t.underlay, t.underlay)}))"
    )
    out = [push]
    base: Vlan = None
    for e in group:
        base = _output(e, base, dpif, out)
    return ",".join(out)
