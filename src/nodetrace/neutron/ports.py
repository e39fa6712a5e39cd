"""Find the Neutron port a user names: by full UUID, by a UUID prefix, or by a device name.

A prefix is matched against what the node holds (port ids and the UUID parts of its device
names); a device name is never made up from a prefix, so a port the node does not hold is
reported as absent, with the ports it does hold.
"""

from __future__ import annotations

from nodetrace.errors import UsageError
from nodetrace.model.node_inventory import PortInfo
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron import naming
from nodetrace.neutron.inventory import inventory

MIN_PREFIX = 8
"""Characters of a UUID that make a prefix worth matching (one 32-bit word)."""
LISTED = 6
"""Candidates named in an error message before ``and N more``."""


def _label(port: PortInfo) -> str:
    device = port.tap or port.ovs_port or (port.devices[0] if port.devices else "no device")
    return f"{port.port_id} ({port.kind.value}, {device})"


def _listing(ports: list[PortInfo] | tuple[PortInfo, ...]) -> str:
    shown = ", ".join(_label(p) for p in ports[:LISTED])
    more = f" and {len(ports) - LISTED} more" if len(ports) > LISTED else ""
    return shown + more


def _uuid_parts(port: PortInfo) -> set[str]:
    """The UUID texts the node gives for ``port``: its id and the part of each device name."""
    parts = {port.port_id}
    for device in port.devices:
        parsed = naming.parse_neutron_device(device)
        if parsed is not None and not parsed.is_router_link:
            parts.add(parsed.uuid_prefix)
    return parts


def _matches_prefix(port: PortInfo, wanted: str) -> bool:
    # Either the user gave more than the node knows (a full UUID for a port whose devices
    # carry 11 characters), or less (a prefix of a known id).
    return any(
        part.startswith(wanted) or (wanted.startswith(part) and len(part) >= MIN_PREFIX)
        for part in _uuid_parts(port)
    )


def listing_cut(snap: Snapshot) -> str:
    """What to add to a "no such port" answer when the node's port listing is known to be cut
    (an elided ``ovs-vsctl show``): the port may be among the lines left out."""
    ovsdb = snap.ovs.ovsdb if snap.ovs is not None else None
    if ovsdb is None or not ovsdb.incomplete:
        return ""
    return f"; it may be among the ports not shown: {ovsdb.incomplete}"


def find_port(snap: Snapshot, wanted: str) -> PortInfo:
    """The one port of the node that ``wanted`` names; :class:`UsageError` in one line when
    no port or several match.

    ``wanted``: a full port UUID, a UUID prefix of at least 8 characters, or a device name
    (``tapX``, ``qvbX``, ``qvoX``, ``qbrX``, ``qr-X``, an OVS port name).
    """
    wanted = wanted.strip()
    ports = inventory(snap).ports
    by_device = [p for p in ports if wanted in p.devices or wanted in (p.tap, p.ovs_port)]
    if by_device:
        found = by_device
    elif naming.parse_neutron_device(wanted) is not None:
        raise UsageError(
            f"port {wanted}: no such device on this node; its Neutron ports: "
            + (_listing(ports) or "none")
            + listing_cut(snap)
        )
    elif len(wanted) < MIN_PREFIX:
        raise UsageError(
            f"port {wanted}: give at least {MIN_PREFIX} characters of the port UUID, or a "
            "device name"
        )
    else:
        # A whole id the node knows needs no look at device names (the common case).
        found = [p for p in ports if p.port_id == wanted.lower()] or [
            p for p in ports if _matches_prefix(p, wanted.lower())
        ]
    if not found:
        raise UsageError(
            f"port {wanted}: no port of this node has this UUID; its Neutron ports: "
            + (_listing(ports) or "none")
            + listing_cut(snap)
        )
    if len(found) > 1:
        raise UsageError(
            f"port {wanted}: {len(found)} ports match: {_listing(found)}; give more of the UUID"
        )
    return found[0]
