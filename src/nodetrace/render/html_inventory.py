"""The side panel of the ``show`` page: bridges with their ports, and the Neutron ports (VMs
first) with their devices and addresses, as ``show`` lists them.

Each entry names the diagram element of its device (``data-element``), so a click on it
finds the device in the diagram, and carries the words the search box looks for
(``data-search``: names, port ids, IPs, MACs).
"""

from __future__ import annotations

from collections.abc import Mapping

from nodetrace.model.node_inventory import Inventory, PortInfo
from nodetrace.model.topology import MAIN_NS
from nodetrace.render.html_page import esc


def _item(
    text: str,
    sub: str,
    *,
    search: str,
    element: str | None,
    css: str = "",
) -> str:
    element_attr = f' data-element="{esc(element)}"' if element else ""
    sub_html = f' <span class="sub">{esc(sub)}</span>' if sub else ""
    return (
        f'<li class="item {esc(css)}" data-search="{esc(search)}"{element_attr}>'
        f"{esc(text)}{sub_html}</li>"
    )


def _port_item(p: PortInfo, elements: Mapping[tuple[str, str], str]) -> str:
    netns = p.namespace or MAIN_NS
    element = next(
        (
            elements[(ns, d)]
            for d in (p.tap, *p.devices)
            if d
            for ns in (netns, MAIN_NS)
            if (ns, d) in elements
        ),
        None,
    )
    ips = [str(ip.value) for ip in p.ips]
    macs = [m.value for m in p.macs] or ([p.mac.value] if p.mac is not None else [])
    words = [p.port_id, *p.devices, *ips, *macs, p.namespace or ""]
    facts = [p.kind.value]
    if p.tap:
        facts.append(p.tap)
    if macs:
        facts.append("mac " + ", ".join(macs))
    if ips:
        facts.append(", ".join(ips))
    if p.local_vlan is not None:
        facts.append(f"tag {p.local_vlan.value}")
    if p.namespace:
        facts.append(f"namespace {p.namespace}")
    return _item(
        p.port_id,
        " · ".join(facts),
        search=" ".join(w for w in words if w),
        element=element,
        css="port-item",
    )


def inventory_panel(inv: Inventory, elements: Mapping[tuple[str, str], str]) -> str:
    """The panel's markup; ``elements`` is the diagram's (netns, device) -> element id."""
    out = ['<div class="inventory">']
    node = inv.node
    host = node.hostname.value if node.hostname is not None else "(hostname unknown)"
    kernel = f" · kernel {node.kernel.value}" if node.kernel is not None else ""
    out.append(f'<p class="note">{esc(host)}{esc(kernel)} · {esc(node.source)}</p>')
    out.append(f"<h3>Open vSwitch bridges ({len(inv.ovs_bridges)})</h3><ul>")
    for b in inv.ovs_bridges:
        flows = f"{b.flows} flows" if b.flows is not None else "flows unknown"
        out.append(
            _item(
                b.name,
                f"{b.datapath_type or 'datapath ?'} · {flows}",
                search=b.name,
                element=elements.get((MAIN_NS, b.name)),
            )
        )
        out.append('<li><ul class="ports">')
        for port in b.ports:
            sub = " · ".join(
                x
                for x in (
                    f"ofport {port.ofport}" if port.ofport is not None else "",
                    port.type or "",
                    f"tag {port.tag}" if port.tag is not None else "",
                    f"peer {port.peer}" if port.peer else "",
                    f"remote {port.remote_ip}" if port.remote_ip else "",
                )
                if x
            )
            words = " ".join(x for x in (port.name, port.iface_id or "", port.remote_ip or "") if x)
            out.append(
                _item(port.name, sub, search=words, element=elements.get((MAIN_NS, port.name)))
            )
        out.append("</ul></li>")
    out.append("</ul>")
    out.append(f"<h3>Linux bridges ({len(inv.linux_bridges)})</h3><ul>")
    for lb in inv.linux_bridges:
        where = f"namespace {lb.namespace} · " if lb.namespace else ""
        out.append(
            _item(
                lb.name,
                where + "ports: " + ", ".join(lb.ports),
                search=" ".join((lb.name, *lb.ports)),
                element=elements.get((lb.namespace or MAIN_NS, lb.name)),
            )
        )
    out.append("</ul>")
    out.append(f"<h3>Neutron ports ({len(inv.ports)})</h3><ul>")
    out += [_port_item(p, elements) for p in inv.ports]
    out.append("</ul>")
    if inv.namespaces:
        out.append(f"<h3>Namespaces ({len(inv.namespaces)})</h3><ul>")
        for ns in inv.namespaces:
            out.append(
                _item(
                    ns.name or "(main)",
                    f"{len(ns.interfaces)} interfaces",
                    search=" ".join((ns.name, *ns.interfaces)),
                    element=None,
                )
            )
        out.append("</ul>")
    if inv.missing:
        out.append("<h3>Not in the snapshot</h3><ul>")
        for m in inv.missing:
            out.append(f"<li>{esc(m.what)}: {esc(m.reason)}</li>")
        out.append("</ul>")
    out.append("</div>")
    return "".join(out)
