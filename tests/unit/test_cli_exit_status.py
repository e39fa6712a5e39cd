"""The README's promise on exit status, for every command: 0 whatever a packet's fate, 1 when an
input held nothing usable, 2 for a usage or input error, said in one line on stderr (never
argparse's usage dump, never a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.cli import COMMANDS, main
from tests.conftest import DATA

SEED = str(DATA / "tracelog" / "seed-kern.log")
DMESG = str(DATA / "tracelog" / "lab-legacy-dmesg.txt")
LOG_RULES = str(DATA / "tracelog" / "lab-rules.iptables-save")
RULES = str(DATA / "iptables" / "reference-compute-node-example.save")
HTTP = "tcp,nw_src=10.0.0.50,nw_dst=10.0.0.11,tp_src=40000,tp_dst=80,tcp_flags=+syn"
BRIDGE = [
    "--in", "qbr3b1f6a2c-8d", "--out", "qbr3b1f6a2c-8d",
    "--physdev-in", "qvb3b1f6a2c-8d", "--physdev-out", "tap3b1f6a2c-8d",
]  # fmt: skip
OVS = str(DATA / "openflow" / "lab-neutron")
OVS_ARGS = ["--bridge", "br-int", "--in-port", "qvo3b1f6a2c-8d"]
PING_OUT = (
    "icmp,dl_src=fa:16:3e:4c:2a:11,dl_dst=fa:16:3e:5d:6e:7f,nw_src=10.1.0.11,nw_dst=10.1.0.50"
)
SNAP = str(DATA / "snapshot" / "golden-cmp1")
PORT_A, PORT_B = "bd978bef-1a3e-5d0f-adb8-919cbf6bd238", "a264014c-b643-5dec-bfbe-07d3eb573bd3"
PING = "icmp,nw_src=10.30.0.10,nw_dst=10.30.0.11,icmp_type=8,icmp_code=0"
SCENARIO = str(DATA / "lab" / "reference-node.toml")
MISSING = "/nonexistent/input"
TYPO = "tcp,tp_dts=22"

VALID = {
    "log": [SEED],
    "iptables": [RULES, "--hook", "FORWARD", "--packet", HTTP],
    "openflow": [OVS, *OVS_ARGS, "--packet", PING_OUT],
    "trace": [SNAP, "--packet", PING],
    "show": [SNAP],
    "audit": [SNAP],
    "collect": [],
    "diff": [SNAP, SNAP],
    "explain": [SEED, SNAP],
    "lab": ["generate", SCENARIO],
    "fleet": ["audit", SNAP],
    "live": ["cleanup"],
}
"""A command line each command accepts (the typo test adds one wrong word to it)."""

NESTED = {"lab", "fleet", "live"}
"""Commands whose first word is an action with a parser of its own."""


def nodetrace(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own exit, as the installed command sees it
        assert isinstance(exit_.code, int)
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(err: str, *words: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("nodetrace: error: "), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_every_command_has_a_valid_command_line_here() -> None:
    assert sorted(VALID) == sorted(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_mistyped_option_is_one_line_naming_it_and_where_to_look(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, err = nodetrace(capsys, command, *VALID[command], "--jsn")
    where = (
        " ".join(["nodetrace", command, *VALID[command][:1]])
        if command in NESTED
        else f"nodetrace {command}"
    )
    assert (code, out) == (2, "")
    assert_one_error(err, "unrecognized arguments: --jsn", f"'{where} --help'")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["lgo", SEED], ["invalid choice: 'lgo'", "'nodetrace --help'"]),
        ([], ["required: COMMAND"]),
        (["iptables", RULES, "--hook", "FORWARD"], ["required: --packet"]),
        (["lab", "gen"], ["invalid choice: 'gen'", "'nodetrace lab --help'"]),
        (["lab", "generate", SCENARIO, "--what", "rules"], ["invalid choice: 'rules'"]),
        (["openflow", OVS, "--bridge", "br-int", "--packet", "ip"], ["--in-port"]),
    ],
    ids=["unknown-command", "no-command", "missing-option", "unknown-lab-command", "bad-choice",
         "openflow-missing-option"],
)  # fmt: skip
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]
) -> None:
    code, out, err = nodetrace(capsys, *argv)
    assert (code, out) == (2, "")
    assert_one_error(err, *words)


@pytest.mark.parametrize(
    "argv",
    [
        ["log", MISSING],
        ["log", SEED, "--rules", MISSING],
        ["log", SEED, "--ipsets", MISSING],
        ["iptables", MISSING, "--hook", "FORWARD", "--packet", HTTP],
        ["iptables", *VALID["iptables"], "--ipsets", MISSING],
        ["openflow", MISSING, *OVS_ARGS, "--packet", PING_OUT],
        ["trace", MISSING, "--packet", PING],
        ["show", MISSING],
        ["collect", "--ovs-rundir", MISSING],
        ["lab", "generate", MISSING],
        ["fleet", "audit", MISSING],
    ],
    ids=lambda argv: " ".join(a for a in argv if not a.startswith(("/", "tcp", "icmp"))),
)
def test_a_missing_input_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = nodetrace(capsys, *argv)
    assert (code, out) == (2, "")
    assert_one_error(err, MISSING)


@pytest.mark.parametrize(
    "argv",
    [
        ["iptables", RULES, "--hook", "FORWARD", "--packet", TYPO],
        ["openflow", OVS, *OVS_ARGS, "--packet", TYPO],
        ["trace", SNAP, "--packet", TYPO],
        ["log", SEED, "--match", TYPO],
    ],
    ids=["iptables", "openflow", "trace", "log-match"],
)
def test_a_bad_packet_spec_is_one_line_naming_the_word(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = nodetrace(capsys, *argv)
    assert (code, out) == (2, "")
    assert_one_error(err, "tp_dts")


@pytest.mark.parametrize(
    "argv",
    [
        ["log", DMESG, "--rules", LOG_RULES],
        ["iptables", *VALID["iptables"], *BRIDGE],
        ["trace", SNAP, "--from-port", PORT_A, "--to-port", PORT_B, "--packet", PING],
    ],
    ids=["log", "iptables", "trace"],
)
def test_a_dropped_packet_is_an_answer_exit_0(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, _ = nodetrace(capsys, *argv)
    assert code == 0
    assert "dropped" in out.lower()


def test_a_packet_dropped_by_a_flow_is_an_answer_exit_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "ovs-ofctl_dump-flows_br-int").write_text(" priority=1,ip actions=drop\n")
    code, out, _ = nodetrace(
        capsys, "openflow", str(tmp_path), "--bridge", "br-int", "--in-port", "1", "--packet", "ip"
    )
    assert code == 0
    assert "drop" in out.lower()


def test_an_input_with_nothing_usable_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    prose = tmp_path / "prose.log"
    prose.write_text("Dec  5 10:00:00 node kernel: eth0: link up\n" * 10)
    for log in (empty, prose):
        code, out, err = nodetrace(capsys, "log", str(log))
        assert (code, out) == (1, ""), log
        assert err.splitlines()[-1].startswith(f"nodetrace: error: nothing usable: {log}")
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing a command printed\n")
    code, _, err = nodetrace(capsys, "show", str(folder))
    assert code == 1
    assert err.splitlines()[-1].startswith(f"nodetrace: error: nothing usable: {folder}")
