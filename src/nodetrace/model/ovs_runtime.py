"""Open vSwitch's runtime state as data: OpenFlow port numbers, the MAC learning table and
the datapath's ports (its connection tracker's table is :mod:`nodetrace.model.conntrack`).

These come from ``ovs-ofctl show``, ``ovs-appctl fdb/show`` and ``ovs-appctl dpif/show``;
they change while the switch runs, so a trace that uses them says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodetrace.errors import SourcePos


@dataclass(frozen=True, slots=True)
class OfPort:
    """A port line of ``ovs-ofctl show``: its OpenFlow number, name and flags."""

    number: int
    """The OpenFlow port number; ``LOCAL`` is 65534."""
    name: str
    mac: str | None = None
    config: tuple[str, ...] = ()
    """``PORT_DOWN``, ``NO_FLOOD``, ``NO_FWD``, ``NO_RECV`` ... (empty for ``config: 0``)."""
    state: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OfctlShow:
    ports: tuple[OfPort, ...] = ()
    datapath_id: str | None = None
    n_tables: int | None = None
    source: str = ""

    def by_name(self, name: str) -> OfPort | None:
        return next((p for p in self.ports if p.name == name), None)


@dataclass(frozen=True, slots=True)
class MacEntry:
    """A line of ``ovs-appctl fdb/show``: ``mac`` in ``vlan`` was learned on OpenFlow ``port``."""

    port: int
    vlan: int
    mac: str
    age: int | None = None
    """Seconds since last seen; ``None`` for a static entry."""
    pos: SourcePos | None = None


@dataclass(frozen=True, slots=True)
class MacTable:
    entries: tuple[MacEntry, ...] = ()
    source: str = ""

    def lookup(self, mac: str, vlan: int) -> MacEntry | None:
        return next((e for e in self.entries if e.mac == mac and e.vlan == vlan), None)


@dataclass(frozen=True, slots=True)
class DpifPort:
    """A port line of ``ovs-appctl dpif/show``: OpenFlow number and datapath port number."""

    bridge: str
    name: str
    ofport: int
    dp_port: int | None
    """``None`` for ports with no datapath port (patch ports)."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DpifShow:
    ports: tuple[DpifPort, ...] = ()
    source: str = ""

    def by_dp_port(self, number: int) -> DpifPort | None:
        return next((p for p in self.ports if p.dp_port == number), None)
