"""Parse iproute2's ``bridge -d -j fdb|link|vlan show`` output.

A sample of ``bridge -d -j fdb show`` (iproute2 6.1, abridged)::

    [{"mac":"33:33:00:00:00:01","ifname":"qbrA","flags":["self"],"state":"permanent"},
     {"mac":"5a:c5:45:84:e8:fc","ifname":"tapA","flags":[],"master":"qbrA","state":"permanent"},
     {"mac":"fa:16:3e:4c:2a:11","ifname":"tapA","vlan":1,"flags":[],"master":"qbrA","state":""},
     {"mac":"00:00:00:00:00:00","ifname":"vxlan-200","dst":"192.168.100.2","flags":["self"],
      "state":"permanent"}]

``master`` entries are the bridge's forwarding table (``permanent`` ones are the bridge's own
port addresses, which deliver locally); ``self`` entries belong to the device itself (a VXLAN
device's remote endpoints). ``bridge link`` repeats the port settings ``ip -d link`` shows;
it matters when a snapshot has only the bridge tool's view.
"""

from __future__ import annotations

from nodetrace.errors import DiagnosticSink
from nodetrace.model.topology import MAIN_NS, BridgeLink, BridgeVlan, FdbEntry
from nodetrace.parsers.ip_json import (
    as_int,
    as_ip,
    as_str,
    bridge_port,
    entry_error,
    items,
    json_array,
)


def parse_bridge_fdb(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[FdbEntry, ...]:
    """Forwarding entries from ``bridge -d -j fdb show``."""
    out: list[FdbEntry] = []
    for index, e in json_array(text, source=source, sink=sink):
        if not isinstance(e, dict) or not isinstance(e.get("mac"), str):
            entry_error(sink, source, index, "an entry without a MAC address")
            continue
        if not isinstance(e.get("ifname"), str):
            entry_error(sink, source, index, "an entry without a device", e["mac"])
            continue
        out.append(
            FdbEntry(
                mac=e["mac"].lower(),
                dev=e["ifname"],
                master=as_str(e.get("master")),
                vlan=as_int(e.get("vlan")),
                state=str(e.get("state", "")),
                self_entry="self" in items(e, "flags"),
                dst=as_ip(e.get("dst")),
                netns=netns,
            )
        )
    return tuple(out)


def parse_bridge_link(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[BridgeLink, ...]:
    """Bridge ports and their settings from ``bridge -d -j link show``."""
    out: list[BridgeLink] = []
    for index, p in json_array(text, source=source, sink=sink):
        if not isinstance(p, dict) or not isinstance(p.get("ifname"), str):
            entry_error(sink, source, index, "a port without a name")
            continue
        if not isinstance(p.get("master"), str):
            continue  # the bridge device itself, listed with `self`
        out.append(BridgeLink(p["ifname"], p["master"], bridge_port(p), netns))
    return tuple(out)


def parse_bridge_vlan(
    text: str, *, source: str, sink: DiagnosticSink | None = None, netns: str = MAIN_NS
) -> tuple[BridgeVlan, ...]:
    """Per-port VLANs from ``bridge -d -j vlan show`` (only VLAN-filtering bridges have any)."""
    out: list[BridgeVlan] = []
    for index, p in json_array(text, source=source, sink=sink):
        if not isinstance(p, dict) or not isinstance(p.get("ifname"), str):
            entry_error(sink, source, index, "a port without a name")
            continue
        for v in p.get("vlans") or ():
            vid = as_int(v.get("vlan")) if isinstance(v, dict) else None
            if vid is None:
                entry_error(sink, source, index, "a VLAN without an id", p["ifname"])
                continue
            flags = items(v, "flags")
            last = as_int(v.get("vlanEnd")) or vid
            for vlan in range(vid, last + 1):
                out.append(
                    BridgeVlan(
                        dev=p["ifname"],
                        vlan=vlan,
                        pvid="PVID" in flags,
                        untagged="Egress Untagged" in flags,
                        netns=netns,
                    )
                )
    return tuple(out)
