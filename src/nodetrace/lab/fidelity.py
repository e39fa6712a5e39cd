"""The fidelity suite: random labs and packets, the real kernel and OVS against nodetrace's engines.

Random labs of the chosen node shapes (:mod:`nodetrace.lab.fidelity_shapes`: the hybrid
iptables firewall, the native OVS firewall, a legacy router) are built in turn, with the tenant
network types (VXLAN, GRE, provider VLAN) and the iptables backends (legacy: TRACE in the
kernel log; nft: ``xtables-monitor --trace``) rotating; each node's snapshot bundle is
collected, and the shape's random packets are sent. For every packet the real outcome (which VM
or outside namespace received it), the TRACE lines of every node and router namespace and
``ofproto/trace`` are recorded; each engine predicts the same from the snapshot, and the two
are compared. The report lists agreement per engine, iptables backend and shape, and every
disagreement with both sides.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodetrace.errors import UsageError
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.fidelity_engines import ADAPTERS, Comparison, EngineAdapter, ScenarioContext
from nodetrace.lab.fidelity_plan import PlanContext, Send, plan_packets, random_scenario
from nodetrace.lab.fidelity_shapes import SHAPES, Shape
from nodetrace.lab.observe import LabProbe, Observation
from nodetrace.lab.state import LabDir, LabInfo
from nodetrace.neutron.scenario import NetworkType, parse_scenario

__all__ = [
    "BACKENDS", "CaseReport", "FidelityReport", "Send", "format_report", "plan_packets",
    "random_scenario", "run_fidelity",
]  # fmt: skip

Progress = Callable[[str], None]

_NETWORK_TYPES = (NetworkType.VXLAN, NetworkType.GRE, NetworkType.VLAN)

BACKENDS = ("legacy", "nft")
"""The iptables backends the labs take in turn: legacy TRACE lines come from the kernel log,
nft ones from ``xtables-monitor --trace``."""

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
    shape: str = "hybrid"


@dataclass
class FidelityReport:
    seed: int
    cases: list[CaseReport] = field(default_factory=list)
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenarios: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def agreement(
        self, backend: str | None = None, *, shape: str | None = None
    ) -> dict[str, tuple[int, int]]:
        """(agreeing, compared) per engine, over the labs of one iptables backend and one
        shape, or all."""
        out: dict[str, tuple[int, int]] = {}
        for case in self.cases:
            if backend is not None and case.backend != backend:
                continue
            if shape is not None and case.shape != shape:
                continue
            for name, cmp in case.engines.items():
                if cmp["status"] in ("agree", "disagree"):
                    agree, total = out.get(name, (0, 0))
                    out[name] = (agree + (cmp["status"] == "agree"), total + 1)
        return out

    def backends(self) -> list[str]:
        """The iptables backends of the labs, in the order they first ran."""
        return list(dict.fromkeys(c.backend for c in self.cases))

    def shapes(self) -> list[str]:
        """The shapes of the labs, in the order they first ran."""
        return list(dict.fromkeys(c.shape for c in self.cases))

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
    shapes: Sequence[Shape] | None = None,
) -> FidelityReport:
    """Run ``cases`` packets over as many random labs as needed (``per_scenario`` each); the
    labs take the ``shapes`` (default: every one), the iptables ``backends`` and the tenant
    network types in turn."""
    if not backends or set(backends) - set(BACKENDS):
        raise ValueError(f"backends must be some of {', '.join(BACKENDS)}")
    shapes = tuple(SHAPES.values()) if shapes is None else tuple(shapes)
    if not shapes:
        raise ValueError("at least one shape is needed")
    rng = random.Random(seed)
    adapters = list(ADAPTERS if adapters is None else adapters)
    report = FidelityReport(seed)
    for a in adapters:
        report.engines[a.name] = {}
    start = time.monotonic()
    done, index = 0, 0
    while done < cases:
        n = min(per_scenario, cases - done)
        # Each shape takes the network types and the backends in turn, starting one further
        # along than the shape before it, so that any number of labs mixes them all.
        shape = shapes[index % len(shapes)]
        turn = index // len(shapes) + index % len(shapes)
        tunnel = _NETWORK_TYPES[turn % len(_NETWORK_TYPES)]
        usable = [b for b in backends if b in shape.backends]
        if not usable:
            raise UsageError(f"shape {shape.name} runs on iptables-{'/'.join(shape.backends)} only")
        backend = usable[turn % len(usable)]
        text = shape.scenario(rng, index, tunnel)
        report.scenarios.append(text)
        what = f"{shape.name}, {tunnel.value}, iptables-{backend}"
        progress(f"scenario {index} ({what}): {n} packets")
        _run_scenario(report, text, index, n, rng, root, backend, adapters, shape)
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
    shape: Shape,
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
            plan_ctx = PlanContext(
                scenario,
                info,
                probe.states,
                {endpoint: probe.outside_mac(endpoint) for endpoint in probe.outsides},
                probe.routers,
                probe.node_namespaces,
            )
            for i, send in enumerate(shape.plan(rng, plan_ctx, count)):
                obs = probe.send(
                    send.packet,
                    send.source,
                    tunnel=send.tunnel,
                    wait=0.25,
                    trace_at=send.trace_at,
                    expect=send.target,
                )
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
                    shape=shape.name,
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
            Options(
                netns=node.netns,
                ovs_rundir=node.ovs_rundir,
                namespaces=node.namespaces,
                conntrack_max=0,
            ),
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
    for shape in report.shapes():
        counts = report.agreement(shape=shape)
        packets = sum(c.shape == shape for c in report.cases)
        per_engine = ", ".join(
            "{} {}/{}".format(name, *counts.get(name, (0, 0))) for name in report.engines
        )
        lines.append(f"  shape {shape} ({packets} packets): {per_engine}")
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
