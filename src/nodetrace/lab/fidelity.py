"""The fidelity suite: random labs and packets, the real kernel and OVS against nodetrace's engines.

For each random scenario a lab is built (iptables-legacy and iptables-nft in turn: TRACE in
the kernel log, or ``xtables-monitor --trace``), each node's snapshot bundle is collected, and
random packets are sent: allowed and denied, new and
established (a reply after an opener), same node and across the tunnel, from VMs and from the
underlay, some with spoofed addresses. For every packet the real outcome (which VM received it),
the TRACE lines and ``ofproto/trace`` are recorded; each engine predicts the same from
the snapshot, and the two are compared. The report lists agreement per engine and every
disagreement with both sides.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from ipaddress import ip_interface
from pathlib import Path
from typing import Any

from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.fidelity_engines import ADAPTERS, Comparison, EngineAdapter, ScenarioContext
from nodetrace.lab.observe import LabProbe, Observation, Tunnel
from nodetrace.lab.state import LabDir, LabInfo, VmInfo
from nodetrace.model.packet import ETH_TYPE_ARP, IPProto, Packet, TcpFlag
from nodetrace.neutron.scenario import FirewallDriver, NetworkType, parse_scenario

Progress = Callable[[str], None]

BACKENDS = ("legacy", "nft")
"""The iptables backends the labs take in turn: legacy TRACE lines come from the kernel log,
nft ones from ``xtables-monitor --trace``."""

_TCP_PORTS = (22, 80, 443, 8080, 1500, 3306)
_UDP_PORTS = (53, 123, 5000)


# --- random scenarios -------------------------------------------------------------------------


def _random_rules(rng: random.Random, groups: Sequence[str], cidr: str) -> list[str]:
    small = cidr.replace(".0/24", ".0/28")  # covers some of the VMs (.10 to .15), not all
    pool = [
        f'{{ direction = "ingress", protocol = "tcp", port = {rng.choice(_TCP_PORTS)} }}',
        '{ direction = "ingress", protocol = "tcp", port_range_min = 1000, port_range_max = 2000 }',
        f'{{ direction = "ingress", protocol = "udp", port = {rng.choice(_UDP_PORTS)} }}',
        '{ direction = "ingress", protocol = "icmp" }',
        '{ direction = "ingress", protocol = "icmp", icmp_type = 8, icmp_code = 0 }',
        f'{{ direction = "ingress", remote_group = "{rng.choice(groups)}" }}',
        f'{{ direction = "ingress", protocol = "tcp", port = 22, remote_ip_prefix = "{small}" }}',
        '{ direction = "ingress", protocol = "tcp", remote_ip_prefix = "192.0.2.0/24" }',
        '{ direction = "egress", protocol = "tcp", port = 443 }',
    ]
    rules = rng.sample(pool, k=rng.randint(2, 4))
    if rng.random() < 0.8:
        rules.append('{ direction = "egress" }')
    return rules


def random_scenario(
    rng: random.Random,
    index: int,
    tunnel: NetworkType,
    firewall_driver: FirewallDriver = FirewallDriver.IPTABLES_HYBRID,
) -> str:
    """A 2-node scenario with 5 VMs on one network of type ``tunnel`` (VXLAN, GRE or a
    provider VLAN) and three random security groups, as TOML."""
    cidr = f"10.{60 + index % 150}.0.0/24"
    groups = ["sga", "sgb", "sgc"]
    lines = [f'name = "fid{index}"', ""]
    if firewall_driver is not FirewallDriver.IPTABLES_HYBRID:
        lines[1:1] = [f'firewall_driver = "{firewall_driver.value}"']
    for node in ("cmp1", "cmp2"):
        lines += ["[[nodes]]", f'name = "{node}"', ""]
    lines += [
        "[[networks]]",
        'name = "net"',
        f'type = "{tunnel.value}"',
        f"segmentation_id = {rng.randint(100, 4000)}",  # a valid VLAN id too
        f'cidr = "{cidr}"',
        "",
    ]
    for g in groups:
        rules = ",\n  ".join(_random_rules(rng, groups, cidr))
        lines += ["[[security_groups]]", f'name = "{g}"', f"rules = [\n  {rules},\n]", ""]
    for i, node in enumerate(("cmp1", "cmp1", "cmp1", "cmp2", "cmp2")):
        lines += ["[[ports]]", f'name = "vm{i + 1}"', f'node = "{node}"', 'network = "net"']
        if rng.random() < 0.15:
            lines.append("port_security = false")
        else:
            sgs = rng.sample(groups, k=rng.choice((1, 1, 2)))
            lines.append("security_groups = [" + ", ".join(f'"{g}"' for g in sgs) + "]")
        lines.append("")
    return "\n".join(lines)


# --- random packets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """One packet of the plan: where it is injected and why it is interesting."""

    packet: Packet
    source: str
    kind: str
    """``new``, ``established`` (reply to the previous opener), ``spoofed`` (source address),
    ``arp`` (a unicast ARP reply, honest or spoofed) or ``underlay``."""
    path: str
    """``same-node``, ``cross-node`` or ``from-underlay``."""
    target: str
    tunnel: Tunnel | None = None
    opener: bool = False
    """Sent to set up conntrack state for the ``established`` packet that follows."""


def _ip(vm: VmInfo) -> Any:
    return ip_interface(vm.ips[0]).ip


def _base_packet(rng: random.Random, src: VmInfo, dst: VmInfo, proto: str) -> Packet:
    common: dict[str, Any] = {
        "dl_src": src.mac,
        "dl_dst": dst.mac,
        "nw_src": _ip(src),
        "nw_dst": _ip(dst),
        "ip_id": rng.randrange(1, 0x10000),
    }
    if proto == "tcp":
        return Packet(
            **common,
            nw_proto=IPProto.TCP,
            tp_src=rng.randrange(32768, 61000),
            tp_dst=rng.choice((*_TCP_PORTS, 1234, 1999)),
            tcp_flags=TcpFlag.SYN,
            tcp_seq=rng.randrange(1, 2**32),
            tcp_window=64240,
        )
    if proto == "udp":
        return Packet(
            **common,
            nw_proto=IPProto.UDP,
            tp_src=rng.randrange(32768, 61000),
            tp_dst=rng.choice(_UDP_PORTS),
        )
    return Packet(
        **common,
        nw_proto=IPProto.ICMP,
        icmp_type=8,
        icmp_code=0,
        icmp_id=rng.randrange(1, 0x10000),
        icmp_seq=1,
    )


def _reply(rng: random.Random, p: Packet) -> Packet:
    swapped = replace(
        p,
        dl_src=p.dl_dst,
        dl_dst=p.dl_src,
        nw_src=p.nw_dst,
        nw_dst=p.nw_src,
        ip_id=rng.randrange(1, 0x10000),
    )
    if p.nw_proto == IPProto.TCP:
        return replace(
            swapped,
            tp_src=p.tp_dst,
            tp_dst=p.tp_src,
            tcp_flags=TcpFlag.SYN | TcpFlag.ACK,
            tcp_seq=rng.randrange(1, 2**32),
            tcp_ack=(p.tcp_seq + 1) % 2**32,
        )
    if p.nw_proto == IPProto.UDP:
        return replace(swapped, tp_src=p.tp_dst, tp_dst=p.tp_src)
    return replace(swapped, icmp_type=0)


def _arp_reply(src: VmInfo, dst: VmInfo, *, spoof: bool) -> Packet:
    """A unicast ARP reply; a spoofed one claims an address that is not the sender's, which
    OVS's anti-spoofing table drops (iptables never sees ARP)."""
    spa = _ip(src) if not spoof else _ip(src) + 100
    return Packet(
        dl_src=src.mac,
        dl_dst=dst.mac,
        dl_type=ETH_TYPE_ARP,
        arp_op=2,
        arp_spa=spa,
        arp_tpa=_ip(dst),
        arp_sha=src.mac,
        arp_tha=dst.mac,
    )


def plan_packets(rng: random.Random, info: LabInfo, count: int, network: Any) -> list[Send]:
    """``count`` packets (openers included) over the lab's VMs."""
    plan: list[Send] = []
    vms = list(info.vms)
    while len(plan) < count:
        src, dst = rng.sample(vms, 2)
        path = "same-node" if src.node == dst.node else "cross-node"
        proto = rng.choice(("tcp", "tcp", "udp", "icmp"))
        packet = _base_packet(rng, src, dst, proto)
        roll = rng.random()
        if roll < 0.25 and len(plan) + 2 <= count:
            plan.append(Send(packet, src.name, "new", path, dst.name, opener=True))
            plan.append(Send(_reply(rng, packet), dst.name, "established", path, src.name))
        elif roll < 0.35:
            spoofed = replace(packet, nw_src=network.cidr.network_address + rng.randrange(200, 250))
            plan.append(Send(spoofed, src.name, "spoofed", path, dst.name))
        elif roll < 0.42:
            plan.append(
                Send(
                    _arp_reply(src, dst, spoof=rng.random() < 0.5), src.name, "arp", path, dst.name
                )
            )
        elif roll < 0.55:
            others = [n.name for n in info.nodes if n.name != dst.node]
            tunnel = Tunnel(network.type, network.segmentation_id, others[0], dst.node)
            remote = next((v for v in vms if v.node != dst.node), src)
            inner = _base_packet(rng, remote, dst, proto)
            plan.append(Send(inner, "underlay", "underlay", "from-underlay", dst.name, tunnel))
        else:
            plan.append(Send(packet, src.name, "new", path, dst.name))
    return plan[:count]


# --- running ----------------------------------------------------------------------------------


@dataclass
class CaseReport:
    id: str
    scenario: str
    kind: str
    path: str
    source: str
    target: str
    packet: str
    arrived: list[str]
    trace: dict[str, list[str]]
    backend: str
    ofproto: dict[str, str]
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class FidelityReport:
    seed: int
    cases: list[CaseReport] = field(default_factory=list)
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenarios: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def agreement(self, backend: str | None = None) -> dict[str, tuple[int, int]]:
        """(agreeing, compared) per engine, over the labs of one iptables backend or all."""
        out: dict[str, tuple[int, int]] = {}
        for case in self.cases:
            if backend is not None and case.backend != backend:
                continue
            for name, cmp in case.engines.items():
                if cmp["status"] in ("agree", "disagree"):
                    agree, total = out.get(name, (0, 0))
                    out[name] = (agree + (cmp["status"] == "agree"), total + 1)
        return out

    def backends(self) -> list[str]:
        """The iptables backends of the labs, in the order they first ran."""
        return list(dict.fromkeys(c.backend for c in self.cases))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def run_fidelity(
    *,
    cases: int,
    seed: int,
    root: str | Path | None = None,
    per_scenario: int = 40,
    backends: Sequence[str] = BACKENDS,
    adapters: Sequence[EngineAdapter] | None = None,
    progress: Progress = lambda _: None,
    firewall_drivers: Sequence[FirewallDriver] = (FirewallDriver.IPTABLES_HYBRID,),
) -> FidelityReport:
    """Run ``cases`` packets over as many random labs as needed (``per_scenario`` each); the
    labs take the network types, the iptables ``backends`` and the ``firewall_drivers`` in
    turn."""
    if not backends or set(backends) - set(BACKENDS):
        raise ValueError(f"backends must be some of {', '.join(BACKENDS)}")
    rng = random.Random(seed)
    adapters = list(ADAPTERS if adapters is None else adapters)
    report = FidelityReport(seed)
    for a in adapters:
        report.engines[a.name] = {}
    start = time.monotonic()
    done, index = 0, 0
    while done < cases:
        n = min(per_scenario, cases - done)
        tunnel = (NetworkType.VXLAN, NetworkType.GRE, NetworkType.VLAN)[index % 3]
        backend = backends[index % len(backends)]
        driver = firewall_drivers[index % len(firewall_drivers)]
        text = random_scenario(rng, index, tunnel, driver)
        report.scenarios.append(text)
        shape = (
            f"{tunnel.value}, {driver}" if driver is FirewallDriver.OPENVSWITCH else tunnel.value
        )
        progress(f"scenario {index} ({shape}, iptables-{backend}): {n} packets")
        _run_scenario(report, text, index, n, rng, root, backend, adapters, progress)
        done += n
        index += 1
    report.seconds = round(time.monotonic() - start, 1)
    return report


def _run_scenario(
    report: FidelityReport,
    text: str,
    index: int,
    count: int,
    rng: random.Random,
    root: str | Path | None,
    backend: str,
    adapters: Sequence[EngineAdapter],
    progress: Progress,
) -> None:
    scenario = parse_scenario(text, source=f"fid{index}.toml")
    name = f"fid{index}-{rng.randrange(16**6):06x}"
    info = lab_up(scenario, text, name=name, backend=backend, root=root)
    workdir = Path(tempfile.mkdtemp(prefix="nodetrace-fidelity-"))
    try:
        lab = LabDir(name, root)
        with LabProbe(lab, info, mute_vms=True) as probe:
            snapshots = _snapshots(info, workdir)
            ctx = ScenarioContext(scenario, info, probe.states, snapshots)
            ready = []
            for a in adapters:
                try:
                    a.prepare(ctx)
                    ready.append(a)
                except Exception as err:  # an engine failing to load is a finding too
                    report.engines[a.name].setdefault("errors", []).append(
                        f"{scenario.name}: prepare failed: {type(err).__name__}: {err}"
                    )
            network = scenario.networks[0]
            for i, send in enumerate(plan_packets(rng, info, count, network)):
                obs = probe.send(send.packet, send.source, tunnel=send.tunnel, wait=0.25)
                case = CaseReport(
                    id=f"{scenario.name}#{i}",
                    scenario=scenario.name,
                    kind=send.kind,
                    path=send.path,
                    source=send.source,
                    target=send.target,
                    packet=send.packet.flow_text(),
                    arrived=list(obs.arrived),
                    trace={k: list(v) for k, v in obs.trace_lines.items()},
                    backend=backend,
                    ofproto=dict(obs.ofproto),
                )
                for a in adapters:
                    if a in ready:
                        case.engines[a.name] = _compare(a, send, obs)
                    else:
                        case.engines[a.name] = asdict(
                            Comparison("error", "the engine could not load this lab's snapshots")
                        )
                report.cases.append(case)
    finally:
        lab_down(name, root=root, force=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _compare(adapter: EngineAdapter, send: Send, obs: Observation) -> dict[str, Any]:
    try:
        return asdict(adapter.compare(send, obs))
    except Exception as err:  # reported per case: the engine raised instead of answering
        return asdict(Comparison("error", f"{type(err).__name__}: {err}"))


def _snapshots(info: LabInfo, workdir: Path) -> dict[str, Path]:
    from nodetrace.snapshot.collect import Options, collect

    out = {}
    for node in info.nodes:
        path = workdir / f"{node.name}-snapshot"
        collect(
            str(path),
            Options(netns=node.netns, ovs_rundir=node.ovs_rundir, namespaces=(), conntrack_max=0),
        )
        out[node.name] = path
    return out


# --- text report ------------------------------------------------------------------------------


def format_report(report: FidelityReport) -> str:
    backends = report.backends()
    mix = ", ".join(f"{sum(c.backend == b for c in report.cases)} iptables-{b}" for b in backends)
    lines = [
        f"fidelity: {len(report.cases)} packets over {len(report.scenarios)} random labs "
        f"(seed {report.seed}, {report.seconds:.0f}s; {mix or 'no packets'})"
    ]
    agreement = report.agreement()
    per_backend = {b: report.agreement(b) for b in backends}
    for name in report.engines:
        agree, total = agreement.get(name, (0, 0))
        errors = sum(1 for c in report.cases if c.engines.get(name, {}).get("status") == "error")
        pct = f"{100 * agree / total:.1f}%" if total else "-"
        extra = f", {errors} engine errors" if errors else ""
        split = ", ".join(
            "{b} {}/{}".format(*per_backend[b].get(name, (0, 0)), b=b) for b in backends
        )
        lines.append(f"  {name:10} {agree}/{total} agree ({pct}){extra}  [{split}]")
    for case in report.cases:
        for name, cmp in case.engines.items():
            if cmp["status"] not in ("disagree", "error"):
                continue
            lines += [
                "",
                f"{name} {cmp['status'].upper()} on {case.id} ({case.kind}, {case.path}, "
                f"iptables-{case.backend}): {case.source} -> {case.target}",
                f"  packet {case.packet}",
                f"  {cmp['detail']}",
            ]
    return "\n".join(lines)
