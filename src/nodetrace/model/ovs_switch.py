"""One Open vSwitch instance as the OpenFlow engine sees it: per bridge its flows, its ports
with OpenFlow numbers, VLAN settings and peers, its MAC table; plus the connection tracker.

:func:`OvsSwitch.build` merges whatever sources a snapshot has (flow dumps, ``ovs-vsctl``,
``ovs-ofctl show``, ``fdb/show``, ``dpctl/dump-conntrack``) and records in ``notes`` what is
missing, so a trace can state what it assumed instead of guessing silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nodetrace.model.conntrack import ConntrackDump
from nodetrace.model.openflow import LOCAL_PORT, FlowDump, Output, PortName, Resubmit
from nodetrace.model.ovs_runtime import MacTable, OfctlShow
from nodetrace.model.ovsdb import Bridge, Interface, OvsdbConfig, Port


@dataclass(frozen=True, slots=True)
class SwitchPort:
    """An OpenFlow port of a bridge with everything known about it."""

    name: str
    ofport: int | None
    """``None`` when no source gave the number (then flows can refer to it only by name)."""
    bundle: str
    """The OVSDB Port (NORMAL's "bundle") this interface belongs to."""
    interface: Interface | None = None
    port: Port | None = None
    config: tuple[str, ...] = ()
    """OpenFlow port config flags from ``ovs-ofctl show`` (``NO_FLOOD``, ``NO_FWD`` ...)."""

    @property
    def type(self) -> str | None:
        """The interface type; ``None`` when unknown (no OVSDB data)."""
        return self.interface.type if self.interface is not None else None


@dataclass(frozen=True, slots=True)
class BridgeState:
    name: str
    ports: tuple[SwitchPort, ...] = ()
    flows: FlowDump | None = None
    ovsdb: Bridge | None = None
    fdb: MacTable | None = None
    ofctl: OfctlShow | None = None

    def port_by_name(self, name: str) -> SwitchPort | None:
        return next((p for p in self.ports if p.name == name), None)

    def port_by_number(self, number: int) -> SwitchPort | None:
        return next((p for p in self.ports if p.ofport == number), None)

    def ports_named_by_flows(self) -> frozenset[str]:
        """The ports the bridge's flows name (a dump taken with names): they exist on the
        bridge even when no ``ovs-vsctl``/``ovs-ofctl show`` output lists them."""
        names: set[str] = set()
        for flow in self.flows.flows if self.flows is not None else ():
            if isinstance(flow.in_port, PortName):
                names.add(flow.in_port.name)
            for a in flow.actions:
                if isinstance(a, (Output, Resubmit)) and isinstance(a.port, PortName):
                    names.add(a.port.name)
        return frozenset(names)


@dataclass(frozen=True, slots=True)
class OvsSwitch:
    bridges: tuple[BridgeState, ...] = ()
    conntrack: ConntrackDump | None = None
    ovsdb: OvsdbConfig | None = None
    notes: tuple[str, ...] = ()
    """What the sources did not say (port numbers, VLAN modes, MAC tables ...)."""

    def bridge(self, name: str) -> BridgeState | None:
        return next((b for b in self.bridges if b.name == name), None)

    def peer_of(self, bridge: str, port: SwitchPort) -> tuple[BridgeState, SwitchPort] | None:
        """The other end of a patch port, found by the peer's interface name in any bridge."""
        if port.interface is None or port.interface.peer is None:
            return None
        peer_name = port.interface.peer
        for b in self.bridges:
            for p in b.ports:
                iface = p.interface
                if p.name == peer_name and iface and iface.is_patch and iface.peer == port.name:
                    return b, p
        return None

    @staticmethod
    def build(
        flows: Mapping[str, FlowDump],
        *,
        ovsdb: OvsdbConfig | None = None,
        ofctl: Mapping[str, OfctlShow] | None = None,
        fdb: Mapping[str, MacTable] | None = None,
        conntrack: ConntrackDump | None = None,
    ) -> OvsSwitch:
        """Merge the sources into one view; bridges come from OVSDB and from the flow dumps."""
        ofctl = ofctl or {}
        fdb = fdb or {}
        known = [b.name for b in ovsdb.bridges] if ovsdb is not None else []
        notes: list[str] = []
        if ovsdb is None:
            notes.append(
                "no ovs-vsctl data: port types, VLAN tags and patch peers are unknown; "
                "NORMAL treats every port as a trunk of all VLANs"
            )
        elif any(not p.vlan_mode_known for b in ovsdb.bridges for p in b.ports):
            notes.append(
                "vlan_mode comes from ovs-vsctl show, which does not print it: derived from "
                "tag/trunks as ovs-vswitchd does when the column is empty"
            )
        bridges = []
        for name in dict.fromkeys([*known, *flows, *ofctl, *fdb]):
            db_bridge = ovsdb.bridge(name) if ovsdb is not None else None
            show = ofctl.get(name)
            ports = _ports(name, db_bridge, show)
            if any(p.ofport is None for p in ports):
                missing = ", ".join(p.name for p in ports if p.ofport is None)
                notes.append(f"{name}: OpenFlow port numbers unknown for {missing}")
            if name not in fdb:
                notes.append(f"{name}: no MAC table (ovs-appctl fdb/show); NORMAL floods")
            bridges.append(
                BridgeState(name, ports, flows.get(name), db_bridge, fdb.get(name), show)
            )
        return OvsSwitch(tuple(bridges), conntrack, ovsdb, tuple(notes))


def _ports(name: str, db: Bridge | None, show: OfctlShow | None) -> tuple[SwitchPort, ...]:
    out: list[SwitchPort] = []
    seen: set[str] = set()
    if db is not None:
        for port, iface in db.interfaces():
            number = iface.ofport
            of = show.by_name(iface.name) if show is not None else None
            if number is None and of is not None:
                number = of.number
            if iface.name == name:
                number = LOCAL_PORT
            if number is not None and number < 0:
                number = None
            out.append(
                SwitchPort(iface.name, number, port.name, iface, port, of.config if of else ())
            )
            seen.add(iface.name)
    if show is not None:
        for of in show.ports:
            if of.name not in seen:
                out.append(SwitchPort(of.name, of.number, of.name, None, None, of.config))
                seen.add(of.name)
    if name not in seen:
        out.append(SwitchPort(name, LOCAL_PORT, name))
    return tuple(out)
