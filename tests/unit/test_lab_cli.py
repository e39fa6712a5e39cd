"""The lab's parts that need no namespaces: `lab generate`, state files, packet completion, the
TRACE line readers the fidelity suite uses (kernel log and xtables-monitor), random scenarios, and
clean errors for user mistakes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.errors import UsageError
from nodetrace.lab.fidelity import (
    CaseReport,
    FidelityReport,
    format_report,
    plan_packets,
    random_scenario,
)
from nodetrace.lab.observe import bridge_pass, complete_packet, openflow_trace, read_passes
from nodetrace.lab.state import LabDir, LabInfo, NodeInfo, VmInfo, find_lab
from nodetrace.model.packet import IPProto
from nodetrace.model.trace import Outcome, StepKind
from nodetrace.model.trace_diff import describe
from nodetrace.neutron.scenario import NetworkType, parse_scenario
from nodetrace.parsers.flow_syntax import parse_flow

DATA = Path(__file__).parents[1] / "data" / "lab"
EXAMPLES = Path(__file__).parents[2] / "src" / "nodetrace" / "examples" / "scenarios"


def test_generate_prints_the_reference_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "generate", str(DATA / "reference-node.toml"), "--what", "iptables"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("*raw\n")
    assert "-A neutron-openvswi-sg-chain -j ACCEPT" in out


def test_generate_prints_flows_and_ports(capsys: pytest.CaptureFixture[str]) -> None:
    scenario = str(DATA / "reference-node.toml")
    assert main(["lab", "generate", scenario, "--what", "flows", "--bridge", "br-tun"]) == 0
    assert "actions=learn(table=20" in capsys.readouterr().out
    assert main(["lab", "generate", scenario, "--what", "ports", "--node", "compute-01"]) == 0
    assert "br-tun 2 vxlan-0a000032 type=vxlan" in capsys.readouterr().out


def test_bad_scenario_is_one_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[nodes]]\nname = "cmp1"\n[[networks]]\nname = "n"\ntype = "ipip"\n')
    assert main(["lab", "generate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{bad}:3: networks[0]: type 'ipip'" in err
    assert main(["lab", "generate", str(DATA / "reference-node.toml"), "--node", "x"]) == 2
    assert "no node 'x'" in capsys.readouterr().err


def test_shipped_example_scenarios_are_valid() -> None:
    files = sorted(EXAMPLES.glob("*.toml"))
    assert files
    for path in files:
        scenario = parse_scenario(path.read_text(), source=str(path))
        assert len(scenario.ports) >= 4


def test_status_and_down_without_labs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "status", "--root", str(tmp_path)]) == 0
    assert "no lab is up" in capsys.readouterr().out
    assert main(["lab", "down", "--root", str(tmp_path)]) == 2
    assert "no lab is up" in capsys.readouterr().err
    assert main(["lab", "down", "--name", "Bad Name", "--root", str(tmp_path)]) == 2


def _info() -> LabInfo:
    return LabInfo(
        name="demo",
        scenario="demo.toml",
        backend="nft",
        status="ready",
        up_pid=1,
        underlay_netns="demo-underlay",
        underlay_ip="192.168.50.254",
        nodes=(NodeInfo("cmp1", "demo-cmp1", "/run/x/ovs-cmp1", "192.168.50.1"),),
        vms=(
            VmInfo(
                "vm1", "cmp1", "demo-vm1", "p1", "fa:16:3e:00:00:01", ("10.0.0.10/24",), "n", 1450
            ),
            VmInfo(
                "vm2", "cmp1", "demo-vm2", "p2", "fa:16:3e:00:00:02", ("10.0.0.11/24",), "n", 1450
            ),
        ),
    )


def test_lab_info_round_trips_through_its_file(tmp_path: Path) -> None:
    lab = LabDir("demo", tmp_path)
    lab.path.mkdir()
    lab.write_info(_info())
    assert lab.read_info() == _info()
    assert find_lab(None, tmp_path).name == "demo"
    assert _info().netns_of("vm2") == "demo-vm2"
    assert _info().netns_of("underlay") == "demo-underlay"
    with pytest.raises(UsageError, match="no VM or node 'vm9'"):
        _info().netns_of("vm9")


def test_packets_are_completed_from_the_vms() -> None:
    spec = parse_flow("tcp,tp_dst=22,tcp_flags=+syn")
    p = complete_packet(_info(), spec, "vm1", to="vm2", rng=random.Random(1))
    assert (str(p.nw_src), str(p.nw_dst)) == ("10.0.0.10", "10.0.0.11")
    assert (p.dl_src, p.dl_dst) == ("fa:16:3e:00:00:01", "fa:16:3e:00:00:02")
    assert p.ip_id != 0 and p.tp_src is not None and p.tp_dst == 22
    text = p.flow_text(in_port=3)
    assert text.startswith("tcp,in_port=3,dl_src=fa:16:3e:00:00:01,")
    assert "tcp_flags=0x2" in text and ",tcp_dst=22," in text
    udp = complete_packet(_info(), parse_flow("udp,udp_dst=53"), "vm1", to="vm2")
    assert ",udp_dst=53" in udp.flow_text()  # OVS's tp_dst is TCP's field
    icmp = complete_packet(_info(), parse_flow("icmp,nw_dst=10.0.0.11"), "vm1")
    assert (icmp.icmp_type, icmp.dl_dst) == (8, "fa:16:3e:00:00:02")
    arp = complete_packet(_info(), parse_flow("arp,arp_op=2"), "vm1", to="vm2")
    assert arp.flow_text(in_port=2) == (
        "arp,in_port=2,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,arp_op=2,"
        "arp_spa=10.0.0.10,arp_tpa=10.0.0.11,arp_sha=fa:16:3e:00:00:01,arp_tha=fa:16:3e:00:00:02"
    )
    with pytest.raises(UsageError, match="tp_dst"):
        complete_packet(_info(), parse_flow("udp"), "vm1", to="vm2")
    with pytest.raises(UsageError, match="not a lab VM"):
        complete_packet(_info(), parse_flow("icmp,nw_dst=8.8.8.8"), "vm1")


def _passes(name: str) -> list:  # type: ignore[type-arg]
    lines = (DATA / name).read_text().splitlines()
    return [p.trace for p in read_passes(lines, None, source=name)]


def test_kernel_trace_lines_are_read_into_one_pass_per_bridge() -> None:
    passes = _passes("legacy-trace-two-bridges.txt")
    steps = bridge_pass(passes, "qbrf025ee07-39").steps  # type: ignore[union-attr]
    assert (
        describe(steps[0]) == "raw:PREROUTING:rule:2 IN=qbrf025ee07-39 OUT= PHYSIN=qvbf025ee07-39"
    )
    assert describe(steps[-1]) == (
        "filter:neutron-openvswi-sg-fallback:rule:1 IN=qbrf025ee07-39 OUT=qbrf025ee07-39 "
        "PHYSIN=qvbf025ee07-39 PHYSOUT=tapf025ee07-39"
    )
    other = bridge_pass(passes, "qbr4d81d703-a9")
    assert other is not None and other.outcome is Outcome.ACCEPTED
    assert describe(other.steps[-1]).startswith("nat:POSTROUTING:policy:1 IN= OUT=qbr4d81d703-a9")
    assert bridge_pass(passes, "qbr-other") is None


def test_xtables_monitor_lines_are_read_into_one_pass_per_bridge_by_trace_id() -> None:
    name = "xtables-trace-two-bridges.txt"
    passes = _passes(name)
    first = bridge_pass(passes, "qbr072aa413-13")
    second = bridge_pass(passes, "qbr2ce376bd-02")
    assert first is not None and second is not None
    # One skb per bridge pass: every TRACE line of the file goes to exactly one pass.
    events = [line for line in (DATA / name).read_text().splitlines() if "TRACE:" in line]
    assert (len(first.steps), len(second.steps)) == (16, 14)
    assert len(first.steps) + len(second.steps) == len(events)
    step = first.steps[0]
    assert (step.table, step.chain, step.kind, step.handle, step.verdict) == (  # type: ignore[union-attr]
        "raw",
        "PREROUTING",
        StepKind.RULE,
        5,
        "CONTINUE",
    )
    assert step.rule_text == "-A PREROUTING -j TRACE"  # type: ignore[union-attr]
    assert step.in_dev == "qbr072aa413-13"  # type: ignore[union-attr]
    assert first.steps[-1].out_dev == "qbr072aa413-13"  # type: ignore[union-attr]
    assert describe(second.steps[-1]) == "nat:POSTROUTING:policy:0x0 IN= OUT=qbr2ce376bd-02"
    assert bridge_pass(passes, "qbr-other") is None
    assert first.outcome is Outcome.ACCEPTED
    sg_accept = first.steps[-2]
    assert (sg_accept.chain, sg_accept.verdict) == ("neutron-openvswi-sg-chain", "ACCEPT")  # type: ignore[union-attr]
    assert first.steps[9].verdict == "JUMP"  # type: ignore[union-attr]
    dropped = bridge_pass(_passes("xtables-trace-dropped.txt"), "qbrf40872d8-6d")
    assert dropped is not None and dropped.outcome is Outcome.DROPPED


def test_report_shows_agreement_per_backend_and_the_difference() -> None:
    difference = (
        "cmp1 qbr1: step 12: the rule handle differs: observed "
        "filter:neutron-openvswi-sg-chain:rule:0x60 IN=qbr1 OUT=qbr1, simulated "
        "filter:neutron-openvswi-sg-chain:rule:0x61 IN=qbr1 OUT=qbr1"
    )
    cases = [
        CaseReport("a#0", "a", "new", "same-node", "vm1", "vm2", "icmp", ["vm2"], {}, "legacy", {},
                   {"netfilter": {"status": "agree", "detail": ""}}),
        CaseReport("b#0", "b", "new", "same-node", "vm1", "vm2", "icmp", [], {}, "nft", {},
                   {"netfilter": {"status": "disagree", "detail": difference}}),
    ]  # fmt: skip
    report = FidelityReport(1, cases, {"netfilter": {}}, ["a", "b"])
    text = format_report(report)
    assert "1 iptables-legacy, 1 iptables-nft" in text
    assert "netfilter  1/2 agree (50.0%)  [legacy 1/1, nft 0/1]" in text
    assert "netfilter DISAGREE on b#0 (new, same-node, iptables-nft)" in text
    assert f"\n  {difference}" in text


@pytest.mark.parametrize("kind", list(NetworkType))
def test_random_fidelity_scenarios_are_valid_and_varied(kind: NetworkType) -> None:
    rng = random.Random(5)
    scenario = parse_scenario(random_scenario(rng, 3, kind))
    assert scenario.networks[0].type is kind
    assert len(scenario.ports) == 5 and len(scenario.nodes) == 2
    info = LabInfo(
        name="f",
        scenario="f.toml",
        backend="legacy",
        status="ready",
        up_pid=1,
        underlay_netns="f-underlay",
        underlay_ip="192.168.50.254",
        nodes=tuple(
            NodeInfo(n.name, f"f-{n.name}", "", str(n.underlay_ip)) for n in scenario.nodes
        ),
        vms=tuple(
            VmInfo(
                p.name, p.node, f"f-{p.name}", p.id, p.mac, (f"{p.fixed_ips[0]}/24",), "net", 1450
            )
            for p in scenario.ports
        ),
    )
    plan = plan_packets(rng, info, 60, scenario.networks[0])
    assert len(plan) == 60
    kinds = {s.kind for s in plan}
    assert {"new", "established", "spoofed", "underlay", "arp"} <= kinds
    for i, send in enumerate(plan):
        if send.kind == "established":  # a reply to the opener right before it
            opener = plan[i - 1]
            assert opener.opener and (send.packet.nw_src, send.packet.nw_dst) == (
                opener.packet.nw_dst,
                opener.packet.nw_src,
            )
            if send.packet.nw_proto == IPProto.TCP:
                assert send.packet.tcp_ack == (opener.packet.tcp_seq + 1) % 2**32


def test_real_ofproto_trace_is_read_as_lookups_and_an_outcome() -> None:
    text = (DATA / "ofproto-trace-vxlan-out.txt").read_text()
    trace = openflow_trace(text)
    # The underlay bridge's pass over the outer packet, after the tunnel output, is left out.
    assert [(s.bridge, s.table) for s in trace.steps] == [  # type: ignore[union-attr]
        ("br-int", 0),
        ("br-int", 58),
        ("br-int", 59),
        ("br-int", 60),
        ("br-tun", 0),
        ("br-tun", 2),
        ("br-tun", 20),
    ]
    assert describe(trace.steps[-1]) == (
        "br-tun table 20 (priority 1, vlan_tci=0x0001/0x0fff,dl_dst=fa:16:3e:23:06:e4: "
        "load:0->NXM_OF_VLAN_TCI[],load:0x40d->NXM_NX_TUN_ID[],output:2)"
    )
    assert trace.outcome is Outcome.DELIVERED
    actions = text[text.index("Datapath actions:") :]
    assert openflow_trace(text.replace(actions, "Datapath actions: drop\n")).outcome is (
        Outcome.DROPPED
    )
    assert openflow_trace("ofproto/trace failed: ...").outcome is Outcome.UNKNOWN


def test_generate_refuses_a_device_as_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "generate", "/dev/zero"]) == 2
    assert capsys.readouterr().err == (
        "nodetrace: error: /dev/zero: is a device, not a scenario file\n"
    )
