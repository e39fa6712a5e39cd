"""The native OVS firewall's exposure classes against real Open vSwitch.

One lab of src/nodetrace/examples/scenarios/ovs-firewall.toml. For every VM port of node cmp1
the classes ``NodeExposure(snapshot).exposure(port)`` computes from cmp1's snapshot are asked
of the real ovs-vswitchd, point by point, with ``ofproto/trace``:

- inbound, the frame as br-tun hands it to br-int (``in_port=patch-tun``, the port's local
  VLAN, the VM's MAC): allowed exactly when the trace outputs to the VM's tap;
- outbound, the frame as the VM sends it (``in_port=<tap>``): allowed exactly when the trace
  reaches table 73, 91 or 94 (Neutron's accepted-egress tables).

Each class state is traced with every ``ct_state`` it stands for (``--ct-next``): an allowed or
denied ESTABLISHED class must be so both in the connection's direction and as a reply, and an
ESTABLISHED or RELATED class unknown because the two differ must really differ, as its reason
says. An impossible class's packets must reach ``ct()`` (an untracked packet or a later fragment
there is what makes them impossible); an allowed or denied untracked packet or later fragment
must never reach it. Points are drawn inside every class so checked (the ranges' edges
favoured) and anywhere in header space; ``NODETRACE_SEED`` replays or varies the draw. Then
real frames are sent from a VM on the other node for inbound classes of both fates: each must
arrive exactly when its class is allowed.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_interface
from pathlib import Path
from typing import assert_never

import pytest

from nodetrace.audit.exposure import NodeExposure
from nodetrace.audit.exposure_points import random_point, sample_point
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.observe import LabProbe
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.state import LabDir, LabInfo, VmInfo
from nodetrace.model.exposure import (
    BASE_DIMS,
    CT_STATES,
    Box,
    Dim,
    Direction,
    Fate,
    HeaderClass,
    PortExposure,
)
from nodetrace.model.header_space import box_and, box_contains
from nodetrace.model.node_inventory import PortInfo
from nodetrace.model.packet import ETH_TYPE_IPV4, Family, IPProto, Packet, TcpFlag
from nodetrace.neutron.scenario import load_scenario
from nodetrace.snapshot.collect import Options, collect
from nodetrace.snapshot.load import load
from tests.conftest import lab_unavailable, seed_from_env, unique
from tests.lab.exposure_ovs_trace import (
    CT_NEXT,
    RealTrace,
    ct_next_of,
    flow_of,
    mac_text,
    read_layer4,
    trace,
)

SCENARIO = Path(__file__).parents[2] / "src/nodetrace/examples/scenarios/ovs-firewall.toml"
NODE = "cmp1"
REMOTE_VM = "app2"
"""On cmp2, in security group "app": the remote group cmp1's "db" ports admit TCP 5432 from."""
ACCEPTED_EGRESS = frozenset({73, 91, 94})
"""ACCEPT_OR_INGRESS, ACCEPTED_EGRESS_TRAFFIC, ACCEPTED_EGRESS_TRAFFIC_NORMAL."""
ELSEWHERE_MAC = "fa:16:3e:00:00:01"
"""An outbound frame's destination: no VM of the lab (where it goes is not the filter's
business)."""
POINTS_PER_CLASS = 1
POINTS_ANYWHERE = 8
"""Per port, direction and family."""
MIN_POINTS = 150

pytestmark = pytest.mark.lab


@dataclass(frozen=True, slots=True)
class Port:
    vm: VmInfo
    info: PortInfo
    exposure: PortExposure

    @property
    def tap(self) -> str:
        assert self.info.ovs_port is not None
        return self.info.ovs_port

    @property
    def ofport(self) -> int:
        assert self.info.ofport is not None
        return self.info.ofport

    def head(self, direction: Direction) -> str:
        """Where a frame of ``direction`` enters br-int's pipeline."""
        if direction is Direction.OUTBOUND:
            return f"in_port={self.tap},dl_dst={ELSEWHERE_MAC}"
        assert self.info.local_vlan is not None and self.info.mac is not None
        return (
            f"in_port=patch-tun,dl_vlan={self.info.local_vlan.value},dl_dst={self.info.mac.value}"
        )

    def classes(self, direction: Direction, family: Family) -> list[HeaderClass]:
        exposure = self.exposure.direction(direction)
        assert exposure is not None
        return [c for c in exposure.classes if c.family is family]


@dataclass
class Bed:
    info: LabInfo
    probe: LabProbe
    ovs: OvsInstance
    ports: tuple[Port, ...]


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(f"lab test {reason}")
    root = tmp_path_factory.mktemp("labs")
    name = unique("oxe")
    info = lab_up(load_scenario(SCENARIO), SCENARIO.read_text(), name=name, backend="nft",
                  root=root)  # fmt: skip
    try:
        with LabProbe(LabDir(name, root), info, mute_vms=True) as probe:
            node = info.node(NODE)
            out = root / f"{NODE}-snapshot"
            collect(str(out), Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=()))
            snapshot = load(out)
            node_exposure = NodeExposure(snapshot)
            vms = {vm.port_id: vm for vm in info.vms if vm.node == NODE}
            ports = tuple(
                Port(vms[p.port_id], p, node_exposure.exposure(p))
                for p in node_exposure.ports()
                if p.firewall == "openvswitch"
            )
            assert {p.vm.name for p in ports} == set(v.name for v in vms.values())
            yield Bed(info, probe, OvsInstance(node.netns, Path(node.ovs_rundir)), ports)
    finally:
        result = lab_down(name, root=root)
        assert not result.problems, result.problems


# --- points against ofproto/trace ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Compared:
    port: Port
    direction: Direction
    family: Family
    cls: HeaderClass
    point: tuple[int, ...]
    traces: tuple[RealTrace, ...]

    def real_allowed(self, t: RealTrace) -> bool:
        if self.direction is Direction.INBOUND:
            return t.outputs_to(self.port.ofport, self.port.tap)
        return t.reaches(ACCEPTED_EGRESS)

    def problems(self) -> list[str]:
        out = []
        expected = expected_fates(self.cls, CT_STATES[self.point[Dim.CT]])
        assert expected is not None and len(expected) == len(self.traces), self.cls
        for t, allowed in zip(self.traces, expected, strict=True):
            if not read_layer4(self.family, self.point, t.read_as):
                out.append(f"harness: OVS read the flow as {t.read_as}")
            if allowed is None:
                if not t.recirculations:
                    out.append("class impossible (its packets reach ct()), but real OVS never "
                               "sends it to conntrack")  # fmt: skip
                continue
            if self.real_allowed(t) is not allowed:
                out.append(f"class says {'allowed' if allowed else 'denied'} with ct_state "
                           f"{t.ct_next or 'none'}, real OVS "
                           f"{'allowed' if self.real_allowed(t) else 'denied'}")  # fmt: skip
            untracked = CT_STATES[self.point[Dim.CT]] == "UNTRACKED" or self.point[Dim.FRAG]
            if untracked and t.recirculations:
                out.append("an untracked packet or a later fragment reached ct() in real OVS: "
                           "the class would be impossible")  # fmt: skip
        return out

    def report(self) -> str:
        rules = "\n".join(f"    {r.table} {r.chain} {r.text}" for r in self.cls.rules)
        traces = "\n".join(t.show() for t in self.traces)
        return (
            f"{self.port.vm.name} {self.direction.value} {self.family.value} point "
            f"{self.point} ({CT_STATES[self.point[Dim.CT]]}): {'; '.join(self.problems())}\n"
            f"  class {self.cls.fate.value} {self.cls.reason}\n{rules}\n{traces}"
        )

    @property
    def by_conjunction(self) -> bool:
        return any("conj_id=" in r.text for r in self.cls.rules)


_CT_SPLIT = re.compile(r"(allowed|denied)[^,]*-rpl[^,]*, (allowed|denied)[^,]*\+rpl")
"""An unknown class's reason when its state's two ``ct_state`` values (the connection's
direction, -rpl, and a reply, +rpl) lead to different fates: the fate of each, in that order."""


def expected_fates(cls: HeaderClass, state: str) -> tuple[bool | None, ...] | None:
    """What real OVS must do with a point of ``cls`` in conntrack state ``state``, per
    ``ct_state`` it is traced with (:data:`CT_NEXT` order): allow it (True), deny it (False),
    or send it to conntrack (None: an impossible class, whose packets the model says reach
    ``ct()``). ``None`` when the class cannot be checked: unknown for a reason other than the
    two directions of a connection."""
    n = len(CT_NEXT[state])
    match cls.fate:
        case Fate.ALLOWED | Fate.DENIED:
            return (cls.fate is Fate.ALLOWED,) * n
        case Fate.IMPOSSIBLE:
            return (None,) * n
        case Fate.UNKNOWN:
            split = _CT_SPLIT.search(cls.reason)
            if split is None:
                return None
            assert n == 2, (cls.reason, state)
            return split[1] == "allowed", split[2] == "allowed"
        case _:
            assert_never(cls.fate)


def _holding(classes: list[HeaderClass], point: tuple[int, ...]) -> HeaderClass:
    holding = [c for c in classes if box_contains(c.box, point)]
    assert len(holding) == 1, f"point {point} is in {len(holding)} classes"
    return holding[0]


def _points(port: Port, direction: Direction, family: Family, rng: random.Random) -> list[
    tuple[HeaderClass, tuple[int, ...]]
]:  # fmt: skip
    classes = port.classes(direction, family)
    drawn = [
        sample_point(c.box, rng)
        for c in classes
        if c.fate is not Fate.UNKNOWN or _CT_SPLIT.search(c.reason)
        for _ in range(POINTS_PER_CLASS)
    ]
    drawn += [random_point(family, rng, 0) for _ in range(POINTS_ANYWHERE)]
    out = []
    for point in drawn:
        assert len(point) == BASE_DIMS
        cls = _holding(classes, point)
        if expected_fates(cls, CT_STATES[point[Dim.CT]]) is not None:
            out.append((cls, point))
    return out


@pytest.fixture(scope="module")
def compared(bed: Bed) -> tuple[int, list[Compared], float]:
    seed = seed_from_env()
    rng = random.Random(seed)
    started = time.monotonic()
    out: list[Compared] = []
    for port in sorted(bed.ports, key=lambda p: p.vm.name):
        for direction in (Direction.INBOUND, Direction.OUTBOUND):
            for family in Family:
                for cls, point in _points(port, direction, family, rng):
                    flow = flow_of(family, point, port.head(direction))
                    traces = tuple(trace(bed.ovs, flow, ct) for ct in ct_next_of(point))
                    out.append(Compared(port, direction, family, cls, point, traces))
    return seed, out, time.monotonic() - started


def test_every_point_of_the_classes_is_what_real_ovs_does_with_it(
    compared: tuple[int, list[Compared], float],
) -> None:
    seed, points, elapsed = compared
    fates = Counter((c.direction.value, c.family.value, c.cls.fate.value) for c in points)
    n_traces = sum(len(c.traces) for c in points)
    conj = [c for c in points if c.by_conjunction]
    print(f"\nseed {seed} (NODETRACE_SEED): {len(points)} points, {n_traces} ofproto/traces in "
          f"{elapsed:.1f} s, {len(conj)} decided by a remote-group conjunction")  # fmt: skip
    for key in sorted(fates):
        print("  " + " ".join(key), fates[key])
    states = Counter(CT_STATES[c.point[Dim.CT]] for c in points)
    later = sum(1 for c in points if c.point[Dim.FRAG])
    print(f"  conntrack states {dict(states)}, later fragments {later}")
    wrong = [c for c in points if c.problems()]
    assert not wrong, f"seed {seed}: {len(wrong)} disagreements; first:\n" + "\n\n".join(
        c.report() for c in wrong[:3]
    )
    assert len(points) >= MIN_POINTS
    for direction in (Direction.INBOUND, Direction.OUTBOUND):
        for family in Family:
            for fate in (Fate.ALLOWED, Fate.DENIED):
                assert fates[(direction.value, family.value, fate.value)], (direction, family, fate)
    assert conj and any(c.cls.fate is Fate.ALLOWED for c in conj)
    assert any(c.cls.fate is Fate.IMPOSSIBLE for c in points)
    assert any(c.cls.fate is Fate.UNKNOWN for c in points)
    assert all(states[s] for s in CT_STATES) and later, (states, later)


# --- real frames from the other node ---------------------------------------------------------


def _ip(vm: VmInfo) -> IPv4Address:
    ip = next(ip_interface(a).ip for a in vm.ips if ip_interface(a).version == 4)
    assert isinstance(ip, IPv4Address)
    return ip


def _sendable(src: VmInfo, dst: VmInfo) -> list[Box]:
    """The NEW IPv4 packets ``src`` can really send to ``dst``: from its own address and MAC
    (its egress firewall checks them), a TCP SYN or UDP datagram from an ephemeral port, or an
    echo request (any other first packet is invalid to conntrack)."""
    mac = int(src.mac.replace(":", ""), 16)
    base: list[tuple[tuple[int, int], ...]] = [
        ((int(_ip(src)), int(_ip(src))),),
        ((int(_ip(dst)), int(_ip(dst))),),
        ((0, 0),),
        ((1024, 65535),),
        ((1, 65535),),
        ((0, 0),),
        ((CT_STATES.index("NEW"),) * 2,),
        ((mac, mac),),
    ]
    out: list[Box] = []
    for proto in (IPProto.TCP, IPProto.UDP, IPProto.ICMP):
        box = list(base)
        box[Dim.PROTO] = ((proto, proto),)
        if proto == IPProto.ICMP:
            box[Dim.L4A], box[Dim.L4B] = ((8, 8),), ((0, 0),)
        out.append(tuple(box))
    return out


def _packet(point: tuple[int, ...], dst: VmInfo, rng: random.Random) -> Packet:
    ip_id = rng.randrange(1, 0x10000)
    proto = point[Dim.PROTO]
    fields: dict[str, object] = {}
    if proto == IPProto.ICMP:
        fields = {"icmp_type": 8, "icmp_code": 0, "icmp_id": ip_id, "icmp_seq": 1}
    else:
        fields = {"tp_src": point[Dim.L4A], "tp_dst": point[Dim.L4B]}
        if proto == IPProto.TCP:
            fields |= {"tcp_flags": int(TcpFlag.SYN), "tcp_window": 64240}
    return Packet(
        dl_src=mac_text(point[Dim.MAC]), dl_dst=dst.mac, dl_type=ETH_TYPE_IPV4,
        nw_src=IPv4Address(point[Dim.SRC]), nw_dst=IPv4Address(point[Dim.DST]),
        nw_proto=proto, nw_ttl=64, ip_id=ip_id, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_real_frames_from_the_other_node_arrive_exactly_when_their_class_is_allowed(
    bed: Bed,
) -> None:
    seed = seed_from_env()
    rng = random.Random(seed + 1)
    remote = bed.info.vm(REMOTE_VM)
    sent: list[str] = []
    for port in sorted(bed.ports, key=lambda p: p.vm.name):
        classes = port.classes(Direction.INBOUND, Family.IPV4)
        for fate in (Fate.ALLOWED, Fate.DENIED):
            candidates = [
                (c, part)
                for c in classes
                if c.fate is fate
                for box in _sendable(remote, port.vm)
                if (part := box_and(c.box, box)) is not None
            ]
            assert candidates, f"{port.vm.name}: no {fate.value} class {REMOTE_VM} can reach"
            # A member of the remote group on the other node: the conjunction, when there is one.
            by_conj = [x for x in candidates if any("conj_id=" in r.text for r in x[0].rules)]
            cls, part = rng.choice(by_conj or candidates)
            point = sample_point(part, rng)
            assert _holding(classes, point) is cls
            packet = _packet(point, port.vm, rng)
            seen = bed.probe.send(packet, REMOTE_VM, wait=0.6, ofproto=False)
            arrived = port.vm.name in seen.arrived
            sent.append(f"{port.vm.name} {fate.value}{' (conj)' if by_conj else ''} "
                        f"{packet.flow_text()}: {'arrived' if arrived else 'not arrived'}")  # fmt: skip
            assert arrived is (fate is Fate.ALLOWED), (
                f"seed {seed}: {sent[-1]}\nclass {cls.fate.value} {cls.reason}\n"
                + "\n".join(f"  {r.chain} {r.text}" for r in cls.rules)
            )
    print(f"\nseed {seed}: " + "\n  ".join(sent))
    assert len(sent) == 2 * len(bed.ports)
