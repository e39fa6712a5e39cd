"""The ``Datapath actions:`` line of ``ofproto/trace``, where nodetrace can derive it exactly.

OVS commits header changes lazily before each output (``commit_odp_actions``): a VLAN that
differs from the one last committed is popped and the new one pushed, then the datapath port is
named by its number from ``ovs-appctl dpif/show``. That much is derived here and proved against
the real tool (tests/lab/test_openflow_differential.py, tests/unit/test_openflow_recorded.py).
Everything else -- rewritten addresses (``set(...)``), tunnel headers, conntrack and
recirculation, controller actions, the order of flooded copies -- is reported as *not derived*,
with the reason, rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from nodetrace.model.openflow_trace import Egress, EgressKind
from nodetrace.model.ovs_runtime import DpifShow
from nodetrace.model.packet import Packet

NOT_DERIVED = "(not derived: {})"


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
    start = started()
    plain = replace(start, dl_vlan=None, dl_vlan_pcp=0)
    base = (start.dl_vlan, start.dl_vlan_pcp) if start.dl_vlan is not None else None
    out: list[str] = []
    for e in egress:
        if e.kind is not EgressKind.PORT or e.encap is not None or e.carries is not None:
            return NOT_DERIVED.format("tunnel and controller outputs are not derived")
        if e.inner_vlan is not None:
            return NOT_DERIVED.format("double VLAN tags (QinQ) are not derived")
        if replace(e.packet, dl_vlan=None, dl_vlan_pcp=0) != plain:
            return NOT_DERIVED.format("rewritten header fields (set actions) are not derived")
        port = next((p for p in dpif.ports if p.bridge == e.bridge and p.name == e.port), None)
        if port is None or port.dp_port is None:
            return NOT_DERIVED.format(f"ovs-appctl dpif/show has no datapath port for {e.port}")
        vlan = (e.packet.dl_vlan, e.packet.dl_vlan_pcp) if e.packet.dl_vlan is not None else None
        if vlan != base:
            if base is not None:
                out.append("pop_vlan")
            if vlan is not None:
                out.append(f"push_vlan(vid={vlan[0]},pcp={vlan[1]})")
            base = vlan
        out.append(str(port.dp_port))
    return ",".join(out)
