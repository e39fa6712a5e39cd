"""``nodetrace show --format json``: the node inventory as the documented JSON document.

Plain values where a script wants them (``tag``, ``mac``, ``ips``, ``zone``), and beside them in
``sources`` where on the node each inferred value was read. ``null`` always means "the node
does not tell", never a default. The document is on the one schema of ``render/json.py``,
documented in docs/json.md.
"""

from __future__ import annotations

from typing import Any

from nodetrace.model.node_inventory import Found, Inventory, LinuxBridgeSummary, PortInfo, Segment
from nodetrace.render.json import document


def _value(found: Found[Any] | None) -> Any:
    return found.value if found is not None else None


def _port(p: PortInfo) -> dict[str, Any]:
    inferred: dict[str, Found[Any] | None] = {
        "tag": p.local_vlan, "network_type": p.network_type, "segmentation_id": p.segmentation_id,
        "mac": p.mac, "zone": p.zone,
    }  # fmt: skip
    sources: dict[str, Any] = {k: f.source for k, f in inferred.items() if f is not None}
    sources["ips"] = [ip.source for ip in p.ips]
    sources["macs"] = [m.source for m in p.macs]
    return {
        "port_id": p.port_id,
        "kind": p.kind.value,
        "devices": list(p.devices),
        "tap": p.tap,
        "namespace": p.namespace,
        "bridge": p.bridge,
        "ovs_port": p.ovs_port,
        "ofport": p.ofport,
        "firewall": p.firewall,
        "tag": _value(p.local_vlan),
        "network_type": _value(p.network_type),
        "segmentation_id": _value(p.segmentation_id),
        "mac": _value(p.mac),
        "macs": [m.value for m in p.macs],
        "ips": [str(ip.value) for ip in p.ips],
        "zone": _value(p.zone),
        "chains": list(p.chains),
        "chain_rules": list(p.chain_rules),
        "flows": p.flows,
        "sources": sources,
        "notes": list(p.notes),
    }


def _linux_bridge(b: LinuxBridgeSummary) -> dict[str, Any]:
    return {
        "name": b.name,
        "namespace": b.namespace or None,
        "ageing_time": b.ageing_time,
        "nf_call_iptables": b.nf_call_iptables,
        "ports": list(b.ports),
    }


def _segment(s: Segment) -> dict[str, Any]:
    return {
        "local_vlan": s.local_vlan,
        "network_type": s.network_type.value,
        "segmentation_id": _value(s.segmentation_id),
        "sources": {
            "network_type": s.network_type.source,
            "segmentation_id": s.segmentation_id.source if s.segmentation_id else None,
        },
    }


def show_document(inv: Inventory) -> dict[str, Any]:
    node = inv.node
    return document(
        "show",
        node={
            "hostname": _value(node.hostname),
            "kernel": _value(node.kernel),
            "collected_at": node.collected_at,
            "source": node.source,
            "source_kind": node.source_kind,
            "iptables": node.iptables,
            "br_netfilter": node.br_netfilter,
            "ovs_evidence": node.ovs_evidence,
            "ovs_bridge_names": list(node.ovs_bridge_names),
            "sources": {
                "hostname": node.hostname.source if node.hostname else None,
                "kernel": node.kernel.source if node.kernel else None,
            },
        },
        ports=[_port(p) for p in inv.ports],
        ovs_bridges=inv.ovs_bridges,  # every field of each bridge and of its ports
        linux_bridges=[_linux_bridge(b) for b in inv.linux_bridges],
        namespaces=inv.namespaces,
        segments=[_segment(s) for s in inv.segments],
        missing=inv.missing,
        notes=list(inv.notes),
        snapshot_notes=list(inv.snapshot_notes),
        diagnostics=list(inv.diagnostics),
    )
