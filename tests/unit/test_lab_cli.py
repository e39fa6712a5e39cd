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
from nodetrace.lab.fidelity_engines import (
    kernel_steps,
    normalise_trace_id,
    xtables_last_verdict,
    xtables_pass,
)
from nodetrace.lab.observe import complete_packet, flow_text
from nodetrace.lab.state import LabDir, LabInfo, NodeInfo, VmInfo, find_lab
from nodetrace.model.packet import IPProto
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
    text = flow_text(p, in_port=3)
    assert text.startswith("tcp,in_port=3,dl_src=fa:16:3e:00:00:01,")
    assert "tcp_flags=0x2" in text and ",tcp_dst=22," in text
    udp = complete_packet(_info(), parse_flow("udp,udp_dst=53"), "vm1", to="vm2")
    assert ",udp_dst=53" in flow_text(udp)  # OVS's tp_dst is TCP's field
    icmp = complete_packet(_info(), parse_flow("icmp,nw_dst=10.0.0.11"), "vm1")
    assert (icmp.icmp_type, icmp.dl_dst) == (8, "fa:16:3e:00:00:02")
    arp = complete_packet(_info(), parse_flow("arp,arp_op=2"), "vm1", to="vm2")
    assert flow_text(arp, in_port=2) == (
        "arp,in_port=2,dl_src=fa:16:3e:00:00:01,dl_dst=fa:16:3e:00:00:02,arp_op=2,"
        "arp_spa=10.0.0.10,arp_tpa=10.0.0.11,arp_sha=fa:16:3e:00:00:01,arp_tha=fa:16:3e:00:00:02"
    )
    with pytest.raises(UsageError, match="tp_dst"):
        complete_packet(_info(), parse_flow("udp"), "vm1", to="vm2")
    with pytest.raises(UsageError, match="not a lab VM"):
        complete_packet(_info(), parse_flow("icmp,nw_dst=8.8.8.8"), "vm1")


def test_kernel_trace_lines_are_cut_into_steps_per_bridge() -> None:
    lines = (DATA / "legacy-trace-two-bridges.txt").read_text().splitlines()
    steps = kernel_steps(lines, "qbrf025ee07-39")
    assert steps[0] == "raw:PREROUTING:rule:2 IN=qbrf025ee07-39 OUT= PHYSIN=qvbf025ee07-39"
    assert steps[-1] == (
        "filter:neutron-openvswi-sg-fallback:rule:1 IN=qbrf025ee07-39 OUT=qbrf025ee07-39 "
        "PHYSIN=qvbf025ee07-39 PHYSOUT=tapf025ee07-39"
    )
    assert kernel_steps(lines, "qbr4d81d703-a9")[-1].startswith(
        "nat:POSTROUTING:policy:1 IN= OUT=qbr4d81d703-a9"
    )


def test_xtables_monitor_lines_are_cut_into_bridge_passes_by_trace_id() -> None:
    lines = (DATA / "xtables-trace-two-bridges.txt").read_text().splitlines()
    first = xtables_pass(lines, "qbr072aa413-13")
    second = xtables_pass(lines, "qbr2ce376bd-02")
    # One skb per bridge pass: every line of the file goes to exactly one pass.
    assert len(first) == 20 and len(second) == 18
    assert first[0].startswith("PACKET: 2 <id> IN=qbr072aa413-13 MACSRC=fa:16:3e:2:79:c2 ")
    assert (
        first[1]
        == " TRACE: 2 <id> raw:PREROUTING:rule:0x5:CONTINUE  -4 -t raw -A PREROUTING -j TRACE"
    )
    assert first[-2].startswith("PACKET: 2 <id> OUT=qbr072aa413-13 LL=0x0 fffffffa163e")
    assert second[-1] == " TRACE: 2 <id> nat:POSTROUTING:policy:ACCEPT "
    assert not any("e6046d66" in line or "6b74c141" in line for line in first + second)
    assert xtables_pass(lines, "qbr-other") == []
    assert xtables_last_verdict(first) == "ACCEPT"
    dropped = (DATA / "xtables-trace-dropped.txt").read_text().splitlines()
    assert xtables_last_verdict(xtables_pass(dropped, "qbrf40872d8-6d")) == "DROP"
    assert xtables_last_verdict(first[:-2]) == "ACCEPT"  # sg-chain's ACCEPT rule
    assert xtables_last_verdict(first[:10]) == "JUMP"


def test_trace_id_normalisation_touches_only_the_id() -> None:
    line = " TRACE: 2 6b74c141 raw:PREROUTING:rule:0x5:CONTINUE  -4 -t raw -A PREROUTING -j TRACE"
    assert normalise_trace_id(line) == line.replace("6b74c141", "<id>")
    packet = "PACKET: 10 0000abcd IN=br0 SRC=10.0.0.1 ID=0000abcd "
    assert normalise_trace_id(packet) == "PACKET: 10 <id> IN=br0 SRC=10.0.0.1 ID=0000abcd "
    assert (
        normalise_trace_id("TRACE: raw:PREROUTING:policy:1 IN=x")
        == "TRACE: raw:PREROUTING:policy:1 IN=x"
    )


def test_report_shows_agreement_per_backend_and_where_long_lines_part() -> None:
    real = " TRACE: 2 <id> filter:neutron-openvswi-sg-chain:rule:0x60:ACCEPT  -4 -t filter -A x"
    predicted = real.replace("0x60", "0x61")
    cases = [
        CaseReport("a#0", "a", "new", "same-node", "vm1", "vm2", "icmp", ["vm2"], {}, "legacy", {},
                   {"netfilter": {"status": "agree", "detail": "", "real": [], "predicted": []}}),
        CaseReport("b#0", "b", "new", "same-node", "vm1", "vm2", "icmp", [], {}, "nft", {},
                   {"netfilter": {"status": "disagree", "detail": "qbr1: real 1 steps",
                                  "real": [real], "predicted": [predicted]}}),
    ]  # fmt: skip
    report = FidelityReport(1, cases, {"netfilter": {}}, ["a", "b"])
    text = format_report(report)
    assert "1 iptables-legacy, 1 iptables-nft" in text
    assert "netfilter  1/2 agree (50.0%)  [legacy 1/1, nft 0/1]" in text
    assert "netfilter DISAGREE on b#0 (new, same-node, iptables-nft)" in text
    assert "from column 56: real 'n:rule:0x60:ACCEPT" in text
    assert "predicted 'n:rule:0x61:ACCEPT" in text


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


def test_real_ofproto_trace_is_read_as_lookups_and_a_verdict() -> None:
    from nodetrace.lab.fidelity_engines import ofproto_tables, ofproto_verdict

    text = (DATA / "ofproto-trace-vxlan-out.txt").read_text()
    # The underlay bridge's pass over the outer packet, after the tunnel output, is left out.
    assert ofproto_tables(text) == [
        "br-int table 0",
        "br-int table 58",
        "br-int table 59",
        "br-int table 60",
        "br-tun table 0",
        "br-tun table 2",
        "br-tun table 20",
    ]
    assert ofproto_verdict(text) == "output"
    assert ofproto_verdict("Datapath actions: drop\n") == "drop"
    assert ofproto_verdict("ofproto/trace failed: ...") == "unknown"


def test_generate_refuses_a_device_as_the_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "generate", "/dev/zero"]) == 2
    assert capsys.readouterr().err == (
        "nodetrace: error: /dev/zero: is a device, not a scenario file\n"
    )
