"""``nodetrace iptables``: the command a user runs, its formats, and its errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.render.json import SCHEMA_VERSION

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"
RULES = str(DATA / "reference-compute-node-example.save")
BRIDGE = [
    "--in", "qbr3b1f6a2c-8d", "--out", "qbr3b1f6a2c-8d",
    "--physdev-in", "qvb3b1f6a2c-8d", "--physdev-out", "tap3b1f6a2c-8d",
]  # fmt: skip
PING = (
    "icmp,dl_src=fa:16:3e:5d:6e:7f,dl_dst=fa:16:3e:4c:2a:11,nw_src=10.0.0.50,nw_dst=10.0.0.11,"
    "icmp_type=8,icmp_code=0,icmp_id=3021,icmp_seq=1,ip_id=51234,ip_df=1,ip_len=84"
)
HTTP = "tcp,nw_src=10.0.0.50,nw_dst=10.0.0.11,tp_src=40000,tp_dst=80,tcp_flags=+syn"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["iptables", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_kernel_format_prints_the_composed_reference_trace(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(
        capsys, RULES, "--packet", PING, "--hook", "PREROUTING,FORWARD,POSTROUTING",
        "--format", "kernel", *BRIDGE,
    )  # fmt: skip
    assert code == 0 and err == ""
    prefixes = [line.split()[1] for line in out.splitlines()]
    assert prefixes == [
        "raw:PREROUTING:rule:1",
        "raw:neutron-openvswi-PREROUTING:rule:1",
        "raw:neutron-openvswi-PREROUTING:return:7",
        "raw:PREROUTING:policy:2",
        "nat:PREROUTING:rule:1",
        "nat:neutron-openvswi-PREROUTING:return:5",
        "nat:PREROUTING:policy:2",
        "filter:FORWARD:rule:1",
        "filter:neutron-filter-top:rule:1",
        "filter:neutron-openvswi-local:return:1",
        "filter:neutron-filter-top:return:2",
        "filter:FORWARD:rule:2",
        "filter:neutron-openvswi-FORWARD:rule:1",
        "filter:neutron-openvswi-sg-chain:rule:1",
        "filter:neutron-openvswi-i3b1f6a2c-8:rule:5",
        "filter:neutron-openvswi-sg-chain:return:5",
        "nat:POSTROUTING:policy:1",
    ]
    assert out.splitlines()[-1].startswith(
        "TRACE: nat:POSTROUTING:policy:1 IN= OUT=qbr3b1f6a2c-8d PHYSIN=qvb3b1f6a2c-8d "
        "PHYSOUT=tap3b1f6a2c-8d SRC=10.0.0.50 "
    )


def test_a_dropped_packet_still_exits_0_and_the_tree_names_the_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(capsys, RULES, "--packet", HTTP, "--hook", "FORWARD", *BRIDGE)
    out = " ".join(out.split())  # the table wraps long rules at the terminal's width
    assert code == 0
    assert "DROPPED" in out
    assert "dropped by rule 1 of filter neutron-openvswi-sg-fallback (FORWARD)" in out
    assert "neutron-openvswi-sg-fallback rule 1" in out
    assert "no -j TRACE rule in the ruleset" in out


def test_json_carries_the_verdict_steps_and_assumptions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, RULES, "--packet", HTTP, "--hook", "FORWARD", "--format", "json", *BRIDGE
    )
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == SCHEMA_VERSION and doc["verdict"] == "drop"
    last = doc["steps"][doc["verdict_step"] - 1]  # numbered from 1, as the text shows
    assert (last["type"], last["chain"], last["number"]) == (
        "netfilter",
        "neutron-openvswi-sg-fallback",
        1,
    )
    assert any("conntrack state NEW" in a for a in doc["assumptions"])


def test_ct_state_changes_the_answer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, RULES, "--packet", HTTP, "--hook", "FORWARD", "--ct-state", "ESTABLISHED",
        "--format", "json", *BRIDGE,
    )  # fmt: skip
    assert code == 0 and json.loads(out)["verdict"] == "accept"


def test_xtables_format(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys, RULES, "--packet", PING, "--hook", "PREROUTING", "--format", "xtables",
        "--backend", "nft", *BRIDGE,
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("PACKET: 2 00000000 IN=qbr3b1f6a2c-8d MACSRC=fa:16:3e:5d:6e:7f ")
    assert lines[1] == (
        " TRACE: 2 00000000 raw:PREROUTING:rule:0x5:JUMP:neutron-openvswi-PREROUTING  -4 -t raw "
        "-A PREROUTING -j neutron-openvswi-PREROUTING"
    )


def test_ipsets_are_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.save"
    rules.write_text(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -m set --match-set s src -j DROP\nCOMMIT\n"
    )
    sets = tmp_path / "s.ipset"
    sets.write_text("create s hash:ip family inet\nadd s 10.0.0.50\n")
    flow = "udp,nw_src=10.0.0.50,nw_dst=10.0.0.1,udp_src=1,udp_dst=2"
    _, without, _ = _run(
        capsys, str(rules), "--packet", flow, "--hook", "FORWARD", "--format", "json"
    )
    _, with_sets, _ = _run(
        capsys,
        str(rules),
        "--packet",
        flow,
        "--hook",
        "FORWARD",
        "--format",
        "json",
        "--ipsets",
        str(sets),
    )
    assert json.loads(without)["verdict"] == "unknown"
    assert json.loads(with_sets)["verdict"] == "drop"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hook", "SIDEWAYS"], "--hook 'SIDEWAYS': not a hook"),
        (["--hook", "FORWARD", "--packet", "tcp,nw_src=10.0.0.1"], "needs nw_src and nw_dst"),
        (
            ["--hook", "FORWARD", "--packet", "tcp,in_port=1,nw_src=1.1.1.1,nw_dst=2.2.2.2"],
            "in_port: OpenFlow pipeline fields",
        ),
        (
            ["--hook", "FORWARD", "--packet", "tcp6,ipv6_src=::1,ipv6_dst=::2"],
            "the ruleset is ipv4",
        ),
        (["--hook", "FORWARD", "--local-address", "eth0"], "expected DEV=ADDR"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    argv = [RULES, "--packet", HTTP, *args] if "--packet" not in args else [RULES, *args]
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("nodetrace: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        ("tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2,tp_dst=70000", "tp_dst=70000: out of range (0 to 65535)"),
        ("tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2,tp_src=-1", "tp_src=-1: out of range (0 to 65535)"),
        ("icmp,nw_src=1.1.1.1,nw_dst=2.2.2.2,icmp_type=300", "icmp_type=300: out of range (0 to 255)"),
        ("tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2,nw_ttl=256", "nw_ttl=256: out of range (0 to 255)"),
        ("tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2,tcp_flags=0x1000", "tcp_flags=0x1000: out of range"),
        ("tcp,nw_src=1.1.1.1,nw_dst=2.2.2.2,dl_vlan=4096", "dl_vlan=4096: out of range (0 to 4095)"),
        ("tcp,nw_src=::1,nw_dst=::2", "nw_src=::1: an IPv6 address in an IPv4 packet"),
        ("tcp6,nw_src=1.1.1.1,nw_dst=2.2.2.2", "nw_src=1.1.1.1: an IPv4 address in an IPv6 packet"),
        ("tcp,ipv6_src=::1,nw_dst=2.2.2.2", "ipv6_src=::1: an IPv6 address in an IPv4 packet"),
    ],
)  # fmt: skip
def test_packet_values_ofproto_trace_would_refuse_are_usage_errors(
    capsys: pytest.CaptureFixture[str], flow: str, message: str
) -> None:
    code, out, err = _run(capsys, RULES, "--hook", "FORWARD", "--packet", flow)
    assert code == 2 and out == ""
    assert err.startswith(f"nodetrace: error: {message}")
    assert len(err.strip().splitlines()) == 1


def test_input_errors_are_reported_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.save"
    code, _, err = _run(capsys, str(missing), "--packet", HTTP, "--hook", "FORWARD")
    assert code == 2 and "nope.save" in err
    broken = tmp_path / "broken.save"
    broken.write_text(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -m tcp --dport x -j DROP\nCOMMIT\n"
    )
    code, out, err = _run(
        capsys, str(broken), "--packet", HTTP, "--hook", "FORWARD", "--format", "json"
    )
    assert code == 0
    assert f"{broken}:3: error: -m tcp: not a port number at 'x'" in err
    assert json.loads(out)["verdict"] == "unknown"
    empty = tmp_path / "empty.save"
    empty.write_text("hello\n")
    code, _, err = _run(capsys, str(empty), "--packet", HTTP, "--hook", "FORWARD")
    assert code == 2 and "no iptables table found" in err


def test_gzip_rules_read_like_plain_and_damaged_ones_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gz = tmp_path / "rules.save.gz"
    gz.write_bytes(gzip.compress(Path(RULES).read_bytes()))
    argv = ["--packet", HTTP, "--hook", "FORWARD", *BRIDGE, "--format", "json"]
    from_gzip = _run(capsys, str(gz), *argv)[1].replace(str(gz), RULES)
    assert from_gzip == _run(capsys, RULES, *argv)[1]
    cut = tmp_path / "cut.save.gz"
    cut.write_bytes(gz.read_bytes()[:200])
    code, out, err = _run(capsys, str(cut), *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"nodetrace: error: {cut}: damaged gzip file (")
    assert len(err.strip().splitlines()) == 1


def test_binary_junk_and_devices_are_input_errors_not_empty_rulesets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"*\xff\xfe\x00garbage\n" + bytes(range(256)) * 8)
    code, out, err = _run(capsys, str(junk), "--packet", HTTP, "--hook", "FORWARD")
    assert code == 2 and out == ""
    assert err.splitlines()[-1] == (
        f"nodetrace: error: {junk}: not iptables-save output: no rule could be read "
        "(first bad line: 2)"
    )
    code, out, err = _run(capsys, "/dev/zero", "--packet", HTTP, "--hook", "FORWARD")
    assert (code, out, err) == (2, "", "nodetrace: error: /dev/zero: is a device, not a file\n")


def test_many_bad_lines_are_counted_after_the_first_twenty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "".join(f"-A FORWARD -p tcp -m tcp --dport x{i} -j DROP\n" for i in range(30))
    rules = tmp_path / "bad.save"
    rules.write_text(f"*filter\n:FORWARD ACCEPT [0:0]\n{bad}COMMIT\n")
    code, out, err = _run(capsys, str(rules), "--packet", HTTP, "--hook", "FORWARD")
    assert code == 0 and "rule 1 of filter FORWARD cannot be evaluated" in out
    lines = err.splitlines()
    assert len(lines) == 21
    assert lines[0].startswith(f"nodetrace: {rules}:3: error: -m tcp: not a port number")
    assert lines[-1] == f"nodetrace: 10 more problems like these (lines 23-32 of {rules})"
