"""The ``NORMAL`` action: OVS's built-in MAC-learning switch, with its VLAN rules.

VLAN semantics follow ovs-vswitchd (``ofproto-dpif-xlate.c``): a port's OVSDB ``tag``,
``trunks`` and ``vlan_mode`` decide which VLAN a frame is in when it arrives, whether it may
arrive at all, which ports a flood reaches, and whether the tag is kept on the way out. The
destination comes from the MAC table (``fdb/show``) when the snapshot has it; otherwise NORMAL
floods, as OVS does for an unknown destination.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nodetrace.engine.openflow_state import TCI1, TPID0, TPID1, VLAN_CFI, State
from nodetrace.model.openflow_trace import Message, NodeKind
from nodetrace.model.ovs_switch import BridgeState, SwitchPort
from nodetrace.model.ovsdb import VlanMode, pairs_get

ALL_VLANS: frozenset[int] | None = None
"""``trunks`` of ``None``: every VLAN."""

_RESERVED_MACS = frozenset(
    [0x0180C2000000 + i for i in range(16)]
    + [0x00E02B000000, 0x00E02B000004, 0x00E02B000006]
    + [0x01000C000000, 0x01000CCCCCCC, 0x01000CCCCCCD, 0x01000CCDCDCD]
    + [0x01000CCCCCC0 + i for i in range(8)]
)
"""Destination MACs NORMAL never forwards (STP, pause, Cisco/Extreme protocols)."""


@dataclass(slots=True)
class Bundle:
    """An OVSDB Port as NORMAL sees it (OVS calls it a bundle)."""

    name: str
    mode: VlanMode
    vlan: int
    """The access/native VLAN (-1 for a trunk port)."""
    trunks: frozenset[int] | None
    ports: list[SwitchPort] = field(default_factory=list)
    floodable: bool = True
    qinq_tpid: int = 0x88A8
    index: int = 0

    def trunks_vlan(self, vid: int) -> bool:
        return self.mode is not VlanMode.ACCESS and (self.trunks is None or vid in self.trunks)


@dataclass(slots=True)
class Bundles:
    """A bridge's bundles, indexed for NORMAL: by OpenFlow port, and access ports by VLAN so a
    flood on a 500-port bridge does not test every port."""

    all: list[Bundle]
    by_port: dict[int, Bundle]
    access: dict[int, list[Bundle]]
    others: list[Bundle]

    def flood_candidates(self, vlan: int) -> list[Bundle]:
        found = self.others + self.access.get(vlan, [])
        found.sort(key=lambda b: b.index)
        return found


def compile_bundles(bridge: BridgeState, numbers: Mapping[str, int] | None = None) -> Bundles:
    """The bridge's bundles in OVSDB order, indexed for lookups; ``numbers`` gives the
    (stand-in) numbers of ports the snapshot knows only by name."""
    bundles: dict[str, Bundle] = {}
    by_port: dict[int, Bundle] = {}
    for sp in bridge.ports:
        b = bundles.get(sp.bundle)
        if b is None:
            b = _bundle(sp)
            b.index = len(bundles)
            bundles[sp.bundle] = b
        b.ports.append(sp)
        if "NO_FLOOD" in sp.config:
            b.floodable = False
        number = sp.ofport if sp.ofport is not None else (numbers or {}).get(sp.name)
        if number is not None:
            by_port[number] = b
    access: dict[int, list[Bundle]] = {}
    others: list[Bundle] = []
    for b in bundles.values():
        if b.mode is VlanMode.ACCESS:
            access.setdefault(b.vlan, []).append(b)
        else:
            others.append(b)
    return Bundles(list(bundles.values()), by_port, access, others)


def _bundle(sp: SwitchPort) -> Bundle:
    port = sp.port
    if port is None:
        return Bundle(sp.bundle, VlanMode.TRUNK, -1, ALL_VLANS)
    mode = port.effective_vlan_mode
    tag = port.tag
    vlan = -1 if mode is VlanMode.TRUNK else (tag if tag is not None and 0 <= tag <= 4095 else 0)
    trunks: frozenset[int] | None = frozenset(port.trunks) if port.trunks else ALL_VLANS
    native = mode in (VlanMode.NATIVE_TAGGED, VlanMode.NATIVE_UNTAGGED)
    if native and vlan != 0 and (trunks is None or vlan not in trunks or 0 in trunks):
        # OVS forces trunking the native VLAN and never trunks VLAN 0.
        base = set(range(4096)) if trunks is None else set(trunks)
        base.add(vlan)
        base.discard(0)
        trunks = frozenset(base)
    qinq = pairs_get(port.other_config, "qinq-ethtype")
    return Bundle(sp.bundle, mode, vlan, trunks, qinq_tpid=0x8100 if qinq == "802.1q" else 0x88A8)


XVlan = list[tuple[int, int, int]]
"""Up to two VLAN headers: (tpid, vid, pcp bits as in the TCI)."""


def xvlan_extract(state: Mapping[str, int]) -> XVlan:
    out: XVlan = [(0, 0, 0), (0, 0, 0)]
    for i, (tci_key, tpid_key) in enumerate((("vlan_tci", TPID0), (TCI1, TPID1))):
        tci = state.get(tci_key, 0)
        tpid = state.get(tpid_key, 0) or (0x8100 if tci else 0)
        if tpid not in (0x8100, 0x88A8) or not tci & VLAN_CFI:
            break
        out[i] = (tpid, tci & 0xFFF, tci & 0xE000)
    return out


def xvlan_put(state: State, xvlan: XVlan) -> None:
    for i, (tci_key, tpid_key) in enumerate((("vlan_tci", TPID0), (TCI1, TPID1))):
        tpid, vid, pcp = xvlan[i]
        tci = vid | (pcp & 0xE000)
        if tci:
            tci |= VLAN_CFI
            state[tpid_key] = tpid or 0x8100
        state[tci_key] = tci


def input_vid_problem(vid: int, bundle: Bundle) -> str | None:
    """Why a frame with VLAN ``vid`` (0 = untagged) may not enter ``bundle``, or ``None``."""
    mode = bundle.mode
    if mode is VlanMode.ACCESS:
        if vid:
            return (
                f"dropping VLAN {vid} tagged packet received on port {bundle.name} "
                f"configured as VLAN {bundle.vlan} access port"
            )
        return None
    if mode in (VlanMode.NATIVE_TAGGED, VlanMode.NATIVE_UNTAGGED) and not vid:
        return None
    if mode is VlanMode.DOT1Q_TUNNEL:
        return None
    if not bundle.trunks_vlan(vid):
        return (
            f"dropping VLAN {vid} packet received on port {bundle.name} "
            f"not configured for trunking VLAN {vid}"
        )
    return None


def xvlan_input(bundle: Bundle, xin: XVlan) -> XVlan:
    mode = bundle.mode
    if mode is VlanMode.ACCESS:
        return [(xin[0][0] or 0x8100, bundle.vlan, xin[0][2]), (0, 0, 0)]
    if mode is VlanMode.TRUNK:
        return list(xin)
    if mode in (VlanMode.NATIVE_TAGGED, VlanMode.NATIVE_UNTAGGED):
        out = list(xin)
        if not xin[0][1]:
            out[0] = (xin[0][0] or 0x8100, bundle.vlan, xin[0][2])
        return out
    return [(bundle.qinq_tpid, bundle.vlan, 0), xin[0]]


def xvlan_output(bundle: Bundle, xvlan: XVlan) -> XVlan:
    mode = bundle.mode
    if mode is VlanMode.ACCESS:
        return [(0, 0, 0), (0, 0, 0)]
    if mode is VlanMode.NATIVE_UNTAGGED and xvlan[0][1] == bundle.vlan:
        return [xvlan[1], (0, 0, 0)]
    if mode is VlanMode.DOT1Q_TUNNEL:
        return [xvlan[1], (0, 0, 0)]
    return list(xvlan)


def includes_vlan(bundle: Bundle, xvlan: XVlan) -> bool:
    mode = bundle.mode
    if mode is VlanMode.ACCESS:
        return xvlan[0][1] == bundle.vlan and xvlan[1][1] == 0
    if mode is VlanMode.DOT1Q_TUNNEL:
        return xvlan[0][1] == bundle.vlan
    return bundle.trunks_vlan(xvlan[0][1])


@dataclass(slots=True)
class NormalResult:
    """What NORMAL decided: what it says, in order, then the bundles to output to."""

    reports: list[Message] = field(default_factory=list)
    outputs: list[tuple[Bundle, XVlan]] = field(default_factory=list)
    vlan: int = 0
    unknown: str = ""
    learned: tuple[int, int, int] | None = None
    """``(mac, vlan, port)`` the MAC table would learn from this packet."""


def normal(
    state: Mapping[str, int],
    bundles: Bundles,
    macs: Mapping[tuple[int, int], int],
    *,
    forward_bpdu: bool = False,
    mcast_snooping: bool = False,
) -> NormalResult:
    """Decide where NORMAL sends the packet in ``state``; ``macs`` maps (mac, vlan) -> port."""
    r = NormalResult()
    in_port = state.get("in_port", 0)
    by_port = bundles.by_port
    in_bundle = by_port.get(in_port)
    if in_bundle is None:
        r.reports.append(
            Message(NodeKind.ERROR, f"received packet on unknown port {_port_number(in_port)}")
        )
        r.reports.append(Message(NodeKind.WARN, "no input bundle, dropping"))
        return r
    xin = xvlan_extract(state)
    problem = input_vid_problem(xin[0][1], in_bundle)
    if problem is not None:
        r.reports.append(Message(NodeKind.ERROR, problem))
        r.reports.append(
            Message(NodeKind.WARN, "disallowed VLAN VID for this input port, dropping")
        )
        return r
    xvlan = xvlan_input(in_bundle, xin)
    vlan = xvlan[0][1]
    r.vlan = vlan
    dl_dst = state.get("dl_dst", 0)
    if not forward_bpdu and dl_dst in _RESERVED_MACS:
        r.reports.append(Message(NodeKind.DETAIL, "packet has reserved destination MAC, dropping"))
        return r
    r.learned = (state.get("dl_src", 0), vlan, in_port)
    multicast = bool(dl_dst & 0x010000000000)
    if (
        mcast_snooping
        and multicast
        and dl_dst != 0xFFFFFFFFFFFF
        and state.get("dl_type") in (0x0800, 0x86DD)
    ):
        r.unknown = (
            "multicast snooping is enabled on this bridge and its group table is not modelled"
        )
        return r
    port = None if multicast else macs.get((dl_dst, vlan))
    if port is not None:
        out = by_port.get(port)
        if out is not None and out is not in_bundle:
            r.reports.append(Message(NodeKind.DETAIL, "forwarding to learned port"))
            r.outputs.append((out, xvlan))
        elif out is None:
            r.reports.append(Message(NodeKind.WARN, "learned port is unknown, dropping"))
        else:
            r.reports.append(Message(NodeKind.DETAIL, "learned port is input port, dropping"))
        return r
    r.reports.append(Message(NodeKind.DETAIL, "no learned MAC for destination, flooding"))
    for b in bundles.flood_candidates(vlan):
        if b is not in_bundle and b.floodable and includes_vlan(b, xvlan):
            r.outputs.append((b, xvlan))
    return r


def _port_number(number: int) -> str:
    return "LOCAL" if number == 0xFFFE else str(number)
