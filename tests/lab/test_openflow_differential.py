"""The OpenFlow engine against a real Open vSwitch 3.1 (userspace datapath), packet by packet.

Each test starts its own ovsdb-server/ovs-vswitchd in a fresh namespace with a private run
folder (torn down by pid), loads pipelines, reads the switch back with nodetrace's parsers, and
compares ``ovs-appctl ofproto/trace`` with nodetrace for every packet: the same bridge, table and
matched flow at every step (tree shape included) and the same packets leaving (port, VLAN, tunnel
type/key/outer addresses). The seed is printed (fixed by default; NODETRACE_SEED=N replays a run,
NODETRACE_SEED=random explores new ones).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from nodetrace.engine.openflow import OpenFlowEngine
from nodetrace.lab.resources import Resources
from nodetrace.model.openflow_trace import OpenFlowTrace
from nodetrace.parsers.ovs_appctl_ofproto_trace import parse_ovs_appctl_ofproto_trace
from tests.conftest import seed_from_env, unique
from tests.lab.openflow_harness import (
    OvsLab,
    Pipeline,
    PortSpec,
    differences,
    line_differences,
    nodetrace_trace,
)
from tests.lab.openflow_pipelines import (
    firewall_packets,
    firewall_pipeline,
    neutron_packets,
    neutron_pipeline,
    random_packets,
    random_pipeline,
)

pytestmark = pytest.mark.lab


def _seed() -> int:
    seed = seed_from_env()
    print(f"\nNODETRACE_SEED={seed}")
    return seed


DERIVED: list[int] = [0]
"""How many passes had their datapath actions derived (and so compared)."""


def datapath_action_differences(ovs_text: str, nt: OpenFlowTrace) -> list[str]:
    """Where nodetrace derives a pass's ``Datapath actions``, they must be OVS's exactly."""
    observed = parse_ovs_appctl_ofproto_trace(ovs_text)
    out = []
    for index, (o, p) in enumerate(zip(observed.passes, nt.passes, strict=False)):
        derived = p.datapath_actions or ""
        DERIVED[0] += not derived.startswith("(not derived")
        if not derived.startswith("(not derived") and derived != o.datapath_actions:
            out.append(f"pass {index}: datapath actions OVS {o.datapath_actions!r}, nt {derived!r}")
    return out


def _compare(
    lab: OvsLab,
    engine: OpenFlowEngine,
    cases: list[tuple[str, str, tuple[str, ...]]],
    seed: int,
    *,
    every_line: bool = False,
) -> int:
    failures = []
    for bridge, flow, ct in cases:
        ovs_text = lab.trace(bridge, flow, ct)
        nt = nodetrace_trace(engine, bridge, flow, ct)
        problems = differences(ovs_text, nt, lab.dpif)
        if every_line and not problems:
            problems = line_differences(ovs_text, nt)
        problems += datapath_action_differences(ovs_text, nt)
        if problems:
            failures.append(f"{bridge} {flow} ct={ct}:\n" + "\n".join(problems) + "\n" + ovs_text)
    assert not failures, f"seed {seed}: {len(failures)}/{len(cases)} differ\n\n" + "\n\n".join(
        failures[:3]
    )
    return len(cases)


def test_neutron_br_int_and_br_tun_match_ofproto_trace(lab: Resources, tmp_path: Path) -> None:
    """Anti-spoofing, dead VLAN, NORMAL to local/learned/flooded ports, patch into br-tun,
    VXLAN and GRE encapsulation, tunnel ingress with learn; OpenFlow 1.0 (resubmit) and 1.3
    (goto_table) variants of the agent's flows, read from dumps in the matching form."""
    seed = _seed()
    rng = random.Random(seed)
    DERIVED[0] = 0
    ovs = OvsLab(lab, unique("ofn"), tmp_path)
    total = 0
    start = time.monotonic()
    for goto in (False, True):
        pipeline, vms, remotes, nets = neutron_pipeline(goto)
        ovs.load(pipeline)
        engine = OpenFlowEngine(ovs.snapshot(), dpif=ovs.dpif)
        cases = [(b, f, ()) for b, f in neutron_packets(rng, vms, remotes, nets, 110)]
        # The OpenFlow 1.3 variant is dumped in the version it was added with, so even the
        # action and detail lines must be OVS's, line for line.
        total += _compare(ovs, engine, cases, seed, every_line=goto)
    print(f"{total} Neutron cases in {time.monotonic() - start:.1f}s")
    assert total >= 200
    print(f"datapath actions derived and equal to OVS's for {DERIVED[0]} passes")
    assert DERIVED[0] >= 50


def test_random_pipelines_match_ofproto_trace(lab: Resources, tmp_path: Path) -> None:
    """Random matches (masks, priorities that tie, conjunctions) and actions (VLAN, set_field,
    move, resubmit/goto forwards and backwards into OVS's depth limit, clone, exit, dec_ttl,
    output to registers, NORMAL/FLOOD/ALL/IN_PORT/LOCAL) over two bridges with access, trunk and
    native-VLAN ports, a patch pair and a VXLAN port."""
    seed = _seed()
    rng = random.Random(seed)
    ovs = OvsLab(lab, unique("ofr"), tmp_path)
    total = 0
    for index in range(5):
        pipeline, in_ports = random_pipeline(rng, index)
        ovs.load(pipeline)
        engine = OpenFlowEngine(ovs.snapshot(), dpif=ovs.dpif)
        total += _compare(
            ovs, engine, [(b, f, ()) for b, f in random_packets(rng, in_ports, 40)], seed
        )
    assert total >= 200


def test_neutron_firewall_conntrack_matches_ofproto_trace(lab: Resources, tmp_path: Path) -> None:
    """Neutron's OVS firewall flows: ct(table=N,zone=REG) recirculations with the states given
    the way ofproto/trace takes them (--ct-next), conjunctive matches, ct_clear, NORMAL."""
    seed = _seed()
    rng = random.Random(seed)
    ovs = OvsLab(lab, unique("off"), tmp_path)
    ovs.load(firewall_pipeline())
    engine = OpenFlowEngine(ovs.snapshot(), dpif=ovs.dpif)
    cases = firewall_packets(rng, 60)
    assert _compare(ovs, engine, cases, seed) == 60
    # The default when nothing is said: ofproto/trace resumes with trk|new, and nodetrace says so.
    flow = "tcp,in_port=p1,dl_src=fa:16:3e:a4:22:10,dl_dst=fa:16:3e:24:57:c7,nw_src=192.168.0.1,nw_dst=10.0.0.2,tcp_dst=80"
    observed = parse_ovs_appctl_ofproto_trace(ovs.trace("br-int", flow))
    nt = nodetrace_trace(engine, "br-int", flow)
    assert "default ct_state=trk|new" in observed.passes[1].header
    assert nt.passes[1].ct_state_default
    assert any("trk|new assumed" in a for a in nt.assumptions)


def test_learned_flow_matches_ofproto_trace_generate(lab: Resources, tmp_path: Path) -> None:
    """``learn`` with side effects: the flow nodetrace adds is the flow OVS adds, and the next
    packet takes it in both."""
    ovs = OvsLab(lab, unique("ofl"), tmp_path)
    ports = [PortSpec("p1"), PortSpec("p2")]
    flows = [
        "table=0,priority=5,in_port=p1,actions=load:0x7->NXM_NX_REG0[],resubmit(,5)",
        "table=0,priority=1,actions=resubmit(,6)",
        "table=5,priority=0,actions=learn(table=6,priority=7,hard_timeout=30,cookie=0x9,"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_NX_REG0[]->NXM_NX_REG1[],"
        "output:NXM_OF_IN_PORT[]),output:p2",
        "table=6,priority=0,actions=drop",
    ]
    ovs.load(Pipeline({"br-x": ports}, {"br-x": flows}))
    engine = OpenFlowEngine(ovs.snapshot(), apply_side_effects=True, dpif=ovs.dpif)
    first = "ip,in_port=p1,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,nw_src=10.0.0.1,nw_dst=10.0.0.2"
    ovs_text = ovs.trace("br-x", first, generate=True)
    nt = nodetrace_trace(engine, "br-x", first)
    assert not differences(ovs_text, nt, ovs.dpif)
    learned_line = next(
        line.strip()[3:] for line in ovs_text.splitlines() if line.strip().startswith("-> table=6")
    )
    assert [f.text() for f in nt.learned] == [learned_line]
    back = "ip,in_port=p2,dl_src=fa:16:3e:00:00:02,dl_dst=fa:16:3e:00:00:01,nw_src=10.0.0.2,nw_dst=10.0.0.1"
    ovs_text = ovs.trace("br-x", back)
    nt = nodetrace_trace(engine, "br-x", back)
    assert not differences(ovs_text, nt, ovs.dpif)
    assert [e.port for e in nt.egress] == ["p1"]
