"""How a Linux bridge forwards one frame: to the port its forwarding table names, to every
flood port, or up to the host stack, as ``br_handle_frame_finish`` decides.

The forwarding table comes from the snapshot (``bridge fdb``). A bridge with ``ageing_time 0``
(os-vif's ``qbr``) never keeps learned entries, so it floods unicast to every other port; a
bridge whose table simply lacks the MAC floods too, and the decision says which case it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nodetrace.model.topology import FdbEntry, Interface, Topology

BROADCAST = "ff:ff:ff:ff:ff:ff"


class BridgeAction(StrEnum):
    FORWARD = "forward"
    """Sent to the port the forwarding table names."""
    FLOOD = "flood"
    """Sent to every flood port but the one it came in on."""
    LOCAL = "local"
    """The frame is for the bridge itself: up the host stack with ``IN=<bridge>``."""
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class BridgeDecision:
    """Where a bridge sends a frame, and why (said the way an operator would check it)."""

    action: BridgeAction
    out_ports: tuple[str, ...] = ()
    local_copy: bool = False
    """Broadcast and multicast frames also go up the stack (``br_pass_frame_up``)."""
    reason: str = ""
    disabled: tuple[tuple[str, str], ...] = ()
    """Ports a flood leaves out because they have no link (down, no carrier), with why."""
    fdb_entry: FdbEntry | None = None
    """The forwarding-table entry the decision rests on (a drop because of it included):
    the lookup happens after the frame's PREROUTING (``br_handle_frame_finish``)."""


def is_multicast(mac: str) -> bool:
    """Group address: the low bit of the first octet (broadcast included)."""
    try:
        return bool(int(mac.split(":")[0], 16) & 1)
    except ValueError:
        return False


def _flood_ports(
    topology: Topology, bridge: Interface, in_port: Interface
) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The ports a flood goes out of, and those it leaves out for want of link (with why)."""
    out = []
    disabled = []
    for port in topology.ports_of(bridge.name, bridge.netns):
        if port.name == in_port.name:
            continue
        settings = port.bridge_port
        if settings is not None and (not settings.flood or settings.state not in (
            "forwarding", "disabled",
        )):  # fmt: skip
            continue
        down = link_state(port)
        if down or (settings is not None and settings.state == "disabled"):
            # A port without link is disabled: br_flood skips it.
            disabled.append((port.name, down or f"{port.name} is in state disabled"))
            continue
        if settings is not None and not settings.flood:
            continue
        out.append(port.name)
    return tuple(out), tuple(disabled)


def link_state(port: Interface) -> str:
    """Why a device cannot pass frames (empty when it can): administratively down, or up
    without carrier. The bridge puts such a port in state disabled (br_port_carrier_check)."""
    if not port.up:
        return f"{port.name} is down"
    if not port.carrier:
        return f"{port.name} has no carrier"
    return ""


def forward(
    topology: Topology, bridge: Interface, in_port: Interface, dl_dst: str, vlan: int | None = None
) -> BridgeDecision:
    """Decide what ``bridge`` does with a frame to ``dl_dst`` received on ``in_port``."""
    dst = dl_dst.lower()
    name, netns = bridge.name, bridge.netns
    in_state = in_port.bridge_port.state if in_port.bridge_port is not None else "forwarding"
    if in_state not in ("forwarding", "learning"):
        return BridgeDecision(BridgeAction.DROP, reason=f"{in_port.name} is in state {in_state}")
    in_link = link_state(in_port) if in_port is not bridge else ""
    if in_link:
        return BridgeDecision(
            BridgeAction.DROP,
            reason=f"{in_link}: the bridge disables the port and drops what arrives on it",
        )
    if in_state == "learning":
        return BridgeDecision(
            BridgeAction.DROP,
            reason=f"{in_port.name} is still learning (STP): frames are not forwarded yet",
        )
    if is_multicast(dst):
        kind = "broadcast" if dst == BROADCAST else "multicast"
        ports, disabled = _flood_ports(topology, bridge, in_port)
        return BridgeDecision(
            BridgeAction.FLOOD,
            ports,
            local_copy=bridge.up,
            reason=f"{kind} {dst}: flooded to every port, and a copy goes up the host stack",
            disabled=disabled,
        )
    if bridge.mac is not None and dst == bridge.mac.lower():
        return BridgeDecision(BridgeAction.LOCAL, reason=f"{dst} is {name}'s own address")
    entry = _lookup(topology.fdb_of(name, netns), dst, vlan)
    if entry is not None and entry.is_local:
        return BridgeDecision(
            BridgeAction.LOCAL,
            reason=f"{dst} is the address of port {entry.dev}: for the bridge itself",
        )
    learns = bridge.bridge is None or bridge.bridge.ageing_time != 0
    if entry is not None and (learns or entry.state in ("static", "permanent")):
        if entry.dev == in_port.name:
            return BridgeDecision(
                BridgeAction.DROP,
                reason=f"{dst} was learned on {entry.dev}, the port the frame came in on",
                fdb_entry=entry,
            )
        port = topology.interface(entry.dev, netns)
        state = port.bridge_port.state if port is not None and port.bridge_port else None
        if state not in (None, "forwarding"):
            return BridgeDecision(
                BridgeAction.DROP,
                reason=f"{dst} is on {entry.dev}, which is in state {state}",
                fdb_entry=entry,
            )
        out_link = link_state(port) if port is not None else ""
        if out_link:
            return BridgeDecision(
                BridgeAction.DROP,
                reason=f"{dst} is on {entry.dev}, but {out_link}: the bridge disables the port "
                "and does not forward to it",
                fdb_entry=entry,
            )
        how = "static entry" if entry.state else "learned entry"
        return BridgeDecision(
            BridgeAction.FORWARD,
            (entry.dev,),
            reason=f"forwarding table: {dst} on {entry.dev} ({how})",
            fdb_entry=entry,
        )
    if not learns:
        why = f"{name} has ageing_time 0 and never learns, so unicast is flooded"
    else:
        why = f"{dst} is not in {name}'s forwarding table: flooded"
    ports, disabled = _flood_ports(topology, bridge, in_port)
    return BridgeDecision(BridgeAction.FLOOD, ports, reason=why, disabled=disabled)


def _lookup(entries: tuple[FdbEntry, ...], mac: str, vlan: int | None) -> FdbEntry | None:
    fallback = None
    for e in entries:
        if e.mac != mac or e.self_entry:
            continue
        if e.vlan == vlan:
            return e
        if e.vlan is None or vlan is None:
            fallback = fallback or e
    return fallback
