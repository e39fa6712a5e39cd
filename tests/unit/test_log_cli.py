"""``nodetrace log`` end to end: what an operator sees, JSON, summary, filters and bad input."""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.render.json import SCHEMA_VERSION
from tests.conftest import DATA

TRACELOG = DATA / "tracelog"
SEED = TRACELOG / "seed-kern.log"
DMESG = TRACELOG / "lab-legacy-dmesg.txt"
RULES = TRACELOG / "lab-rules.iptables-save"
DIAGNOSTIC = re.compile(r"^nodetrace: (?:\S+):\d+: (?:warning|error): .+$")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["log", *args])
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def summary_of(text: str) -> dict[str, Any]:
    """The counts of ``--summary --format json``: its one document's ``summary``."""
    (doc,) = jsonl(text)
    assert (doc["schema"], doc["command"]) == (SCHEMA_VERSION, "log")
    summary: dict[str, Any] = doc["summary"]
    return summary


def test_seed_story_view(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(SEED))
    assert code == 0 and err == ""
    assert "packet 1 · TCP 192.168.113.4:5672 → 192.168.113.2:41943 [ACK]" in out
    assert "ACCEPTED" in out and "out through tape14aa959-d6" in out
    assert re.search(r"^\s*13\s+mangle\s+POSTROUTING policy 2", out, re.M)
    assert "neutron-openvswi-sg-chain return 77" in out
    assert "1 packet(s) shown · 38 lines: 38 in TRACE records, 0 skipped, 0 malformed" in out


def test_json_has_the_fields_of_the_issue(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(DMESG), "--rules", str(RULES), "--json")
    assert code == 0
    packets = jsonl(out)
    assert [p["outcome"] for p in packets] == ["accepted", "accepted", "dropped"]
    first = packets[0]
    assert first["packet"]["nw_src"] == "10.0.0.1" and first["packet"]["nw_proto"] == 1  # ICMP
    assert first["packet"]["ip_id"] == 6699 and first["packet"]["icmp_seq"] == 1
    assert first["source"] == {"file": str(DMESG), "first_line": 1, "last_line": 13}
    assert first["log_format"] == "kernel"
    assert first["egress"] == "tapB"
    step = first["steps"][0]
    for key in (
        "hook",
        "table",
        "chain",
        "kind",
        "number",
        "rule",
        "in_dev",
        "out_dev",
        "physin",
        "physout",
    ):
        assert key in step
    assert (step["hook"], step["table"], step["chain"], step["kind"], step["number"]) == (
        "PREROUTING",
        "raw",
        "PREROUTING",
        "rule",
        2,
    )
    assert step["rule"] == "-A PREROUTING -j neutron-linuxbri-PREROUTING"
    assert (step["in_dev"], step["out_dev"], step["physin"], step["physout"]) == (
        "brq",
        "",
        "tapA",
        None,
    )
    drop = packets[2]
    assert drop["steps"][drop["verdict_step"] - 1]["rule"].endswith(
        '"Drop traffic without an IP/MAC allow rule." -j DROP'
    )


def test_summary_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(DMESG), "--rules", str(RULES), "--summary", "--json")
    assert code == 0
    summary = summary_of(out)
    assert summary["packets"] == 3
    assert summary["by_outcome"] == {"accepted": 2, "dropped": 1, "rejected": 0, "ends": 0}
    assert summary["top_dropping_rules"] == [
        {
            "step": "filter:neutron-linuxbri-otapA:rule:2",
            "rule": '-A neutron-linuxbri-otapA -m comment --comment "Drop traffic without an IP/MAC allow rule." -j DROP',
            "packets": 1,
        }
    ]
    hits = {c["chain"]: c["hits"] for c in summary["chains_by_hits"]}
    assert hits["raw:PREROUTING"] == 6 and hits["filter:neutron-linuxbri-otapA"] == 2
    assert summary["lines"] == {
        "total": 34,
        "parsed": 34,
        "skipped": 0,
        "malformed": 0,
        "not_text": 0,
    }
    code, text, _ = run(capsys, str(DMESG), "--rules", str(RULES), "--summary")
    assert "Top dropping rules" in text and "filter:neutron-linuxbri-otapA:rule:2" in text
    assert "Chains by hits" in text and "34 read" in text


def test_summary_and_detail_agree_on_outcomes(capsys: pytest.CaptureFixture[str]) -> None:
    for name in (
        "seed-kern.log",
        "lab-legacy-dmesg.txt",
        "lab-nft-xtables-monitor.txt",
        "lab-nft-monitor-trace.txt",
    ):
        _, out, _ = run(capsys, str(TRACELOG / name), "--json")
        outcomes = [p["outcome"] for p in jsonl(out)]
        _, out, _ = run(capsys, str(TRACELOG / name), "--summary", "--json")
        summary = summary_of(out)
        assert summary["packets"] == len(outcomes)
        for outcome, count in summary["by_outcome"].items():
            assert outcomes.count(outcome) == count, name


@pytest.mark.parametrize(
    ("expr", "ids"),
    [
        ("outcome=dropped", [38573]),
        ("icmp,nw_src=10.0.0.0/30", [6699, 35621]),
        ("icmp_type=0", [35621]),
        ("dev=tapB,nw_dst=10.0.0.2", [6699, 38573]),
        ("chain=neutron-linuxbri-otap*", [6699, 38573]),
        ("outcome!=accepted", [38573]),
        ("tcp", []),
    ],
)
def test_match_filters_packets(
    capsys: pytest.CaptureFixture[str], expr: str, ids: list[int]
) -> None:
    code, out, _ = run(capsys, str(DMESG), "--rules", str(RULES), "--match", expr, "--json")
    assert code == 0
    assert [p["packet"]["ip_id"] for p in jsonl(out)] == ids


def test_bad_match_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(DMESG), "--match", "colour=blue")
    assert code == 2 and err.startswith("nodetrace: error: --match: unknown field 'colour'")
    assert err.count("\n") == 1


def test_gzip_and_several_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    gz = tmp_path / "kern.log.1.gz"
    gz.write_bytes(gzip.compress(DMESG.read_bytes()))
    code, out, _ = run(capsys, str(gz), str(SEED), "--json")
    assert code == 0
    packets = jsonl(out)
    assert [p["source"]["file"] for p in packets] == [str(gz)] * 3 + [str(SEED)]
    assert [p["index"] for p in packets] == [1, 2, 3, 4]


def test_truncated_gzip_gives_the_lines_before_and_a_warning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = gzip.compress(DMESG.read_bytes() * 50)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    code, out, err = run(capsys, str(cut), "--summary", "--json")
    assert code == 0
    summary = summary_of(out)
    assert 0 < summary["lines"]["total"] < 34 * 50
    (line,) = err.splitlines()
    assert DIAGNOSTIC.match(line) and "compressed data ends early" in line and str(cut) in line


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(SEED.read_bytes())))
    code, out, _ = run(capsys, "-", "--json")
    assert code == 0
    (packet,) = jsonl(out)
    assert packet["source"]["file"] == "<stdin>" and len(packet["steps"]) == 13


def test_crlf_file_reads_like_lf(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    crlf = tmp_path / "crlf.log"
    crlf.write_bytes(DMESG.read_bytes().replace(b"\n", b"\r\n"))
    _, a, _ = run(capsys, str(crlf), "--json")
    _, b, _ = run(capsys, str(DMESG), "--json")
    strip = lambda ps: [(p["outcome"], len(p["steps"]), p["packet"]["ip_id"]) for p in ps]  # noqa: E731
    assert strip(jsonl(a)) == strip(jsonl(b))


def test_binary_junk_is_nothing_usable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 40)
    code, out, err = run(capsys, str(junk))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert all(
        DIAGNOSTIC.match(x) or x.startswith("nodetrace: error: nothing usable") for x in lines
    )
    assert any("not text (binary data?)" in x for x in lines)
    assert lines[-1] == f"nodetrace: error: nothing usable: {junk} holds no TRACE records"


def test_binary_junk_beside_a_good_log_is_a_warning_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    mixed = tmp_path / "mixed.log"
    mixed.write_bytes(b"\x00\xff\xfe garbage\n" + SEED.read_bytes() + b"\x89PNG\r\n\x1a\n")
    code, out, err = run(capsys, str(mixed), "--json")
    assert code == 0 and len(jsonl(out)) == 1
    (line,) = err.splitlines()
    assert (
        line
        == f"nodetrace: {mixed}:1: warning: 2 lines are not text (binary data?) and were skipped"
    )


def test_empty_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    code, _, err = run(capsys, str(empty))
    assert code == 1
    assert f"nodetrace: {empty}:0: warning: empty file" in err.splitlines()


def test_missing_file_beside_a_good_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    nope = str(tmp_path / "nope.log")
    for files in ([nope, str(SEED)], [str(SEED), nope], [nope]):
        code, out, err = run(capsys, *files, "--json")
        assert (code, out, err) == (2, "", f"nodetrace: error: {nope}: no such file\n"), files


def test_rules_file_that_is_not_iptables_save(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(DMESG), "--rules", str(SEED), "--json")
    assert code == 0
    (line,) = err.splitlines()
    assert DIAGNOSTIC.match(line)
    assert line.startswith(f"nodetrace: {SEED}:1: warning: not iptables-save output")
    assert all(s["rule"] is None for p in jsonl(out) for s in p["steps"])


def test_malformed_lines_are_reported_and_do_not_stop_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = DMESG.read_text().splitlines(keepends=True)
    lines.insert(
        3, "[  181.590480] TRACE: raw:PREROUTING:policy:3 IN=brq OUT= PHYSIN=tapA MAC=ce:5a\n"
    )
    lines.insert(8, "[  181.590481] TRACE: garbage\n")
    bad = tmp_path / "bad.log"
    bad.write_text("".join(lines))
    code, out, err = run(capsys, str(bad), "--summary", "--json")
    assert code == 0
    summary = summary_of(out)
    assert summary["lines"]["malformed"] == 2 and summary["lines"]["parsed"] == 34
    assert err.splitlines() == [
        f"nodetrace: {bad}:4: warning: malformed TRACE line skipped: packet dump has no SRC= field (record cut short?)",
        f"nodetrace: {bad}:9: warning: malformed TRACE line skipped: TRACE: without a table:chain:rule|return|policy:number prefix",
    ]


def test_ipsets_file_is_read_and_a_bad_one_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, str(DMESG), "--ipsets", str(DATA / "ipset" / "lab-ipset-save.txt"))
    assert code == 0 and err == ""
    code, _, err = run(capsys, str(DMESG), "--ipsets", str(RULES))
    assert code == 0
    (line,) = err.splitlines()
    assert DIAGNOSTIC.match(line) and "not ipset save output" in line


def test_every_sample_format_runs(capsys: pytest.CaptureFixture[str]) -> None:
    expected = {
        "seed-kern.log": 1,
        "lab-legacy-dmesg.txt": 3,
        "lab-legacy-nflog-decoded.txt": 1,
        "lab-nft-xtables-monitor.txt": 3,
        "lab-nft-monitor-trace.txt": 3,
        "lab-nft-monitor-trace-ovs-hybrid.txt": 4,
        "corpus-libvirt-virbr0-forward-snat.txt": 1,
        "corpus-nftrace-firewalld-dns-reply.txt": 1,
        "corpus-nftrace-ipv6-icmp-output.txt": 2,
        "corpus-quantum-network-node-mangled.txt": 1,
    }
    for name, packets in expected.items():
        code, out, _ = run(capsys, str(TRACELOG / name), "--json")
        assert code == 0, name
        assert len(jsonl(out)) == packets, name


def test_tcpdump_of_nflog_has_no_trace_records(capsys: pytest.CaptureFixture[str]) -> None:
    # tcpdump does not print the NFLOG prefix, so this capture holds nothing to explain
    path = TRACELOG / "lab-legacy-nflog-tcpdump-v.txt"
    code, _, err = run(capsys, str(path))
    assert code == 1
    assert f"nodetrace: {path}:0: warning: no TRACE records in 16 lines" in err


def test_mangled_copy_warns_per_record_and_still_explains(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = TRACELOG / "corpus-quantum-network-node-mangled.txt"
    code, out, err = run(capsys, str(path), "--json")
    assert code == 0
    (packet,) = jsonl(out)
    assert len(packet["steps"]) == 13
    # every repaired record is named with its line and what was put back
    assert err.splitlines() == [
        f"nodetrace: {path}:{n}: warning: spaces lost between fields (copied from a web page?) "
        f"put back before the time, IN=, TOS=, ID=, CODE=, SEQ="
        for n in range(1, 14)
    ]


def test_journalctl_json_file_is_recognised(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    entries = []
    for i, line in enumerate(DMESG.read_text().splitlines()):
        message = line[line.index("TRACE: ") :]
        entries.append(
            json.dumps(
                {
                    "__REALTIME_TIMESTAMP": str(1795000000000000 + i),
                    "_HOSTNAME": "n1",
                    "MESSAGE": message,
                }
            )
        )
    path = tmp_path / "journal.json"
    path.write_text("\n".join(entries) + "\n")
    code, out, _ = run(capsys, str(path), "--rules", str(RULES), "--summary", "--json")
    assert code == 0
    summary = summary_of(out)
    assert summary["files"] == [{"file": str(path), "format": "journal-json"}]
    assert summary["by_outcome"] == {"accepted": 2, "dropped": 1, "rejected": 0, "ends": 0}


def test_summary_without_rules_says_where_traces_end(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(DMESG), "--summary", "--json")
    assert code == 0
    summary = summary_of(out)
    assert summary["by_outcome"]["ends"] == 3 and summary["top_dropping_rules"] == []
    assert sorted(e["step"] for e in summary["traces_end_at"]) == [
        "filter:FORWARD:policy:3",
        "filter:neutron-linuxbri-otapA:rule:2",
        "filter:neutron-linuxbri-sg-chain:return:3",
    ]


@pytest.mark.parametrize(
    "name",
    [
        "seed-kern.log",
        "lab-legacy-dmesg.txt",
        "corpus-quantum-network-node-mangled.txt",
        "lab-capture-nft.xtables-monitor",
    ],
)
def test_summary_hit_counts_equal_the_steps_shown(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from collections import Counter

    _, out, _ = run(capsys, str(TRACELOG / name), "--json")
    shown = Counter(f"{s['table']}:{s['chain']}" for p in jsonl(out) for s in p["steps"])
    _, out, _ = run(capsys, str(TRACELOG / name), "--summary", "--json")
    summary = summary_of(out)
    assert {c["chain"]: c["hits"] for c in summary["chains_by_hits"]} == dict(shown.most_common(10))


def test_gzip_cut_within_the_sniffed_lines_is_reported_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = gzip.compress(DMESG.read_bytes())
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = run(capsys, str(cut), "--summary", "--json")
    assert code in (0, 1)
    damaged = [x for x in err.splitlines() if "compressed data ends early" in x]
    assert len(damaged) == 1 and DIAGNOSTIC.match(damaged[0]) and str(cut) in damaged[0]


def test_damaged_gzip_rules_file_is_one_error_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = bytearray(gzip.compress(RULES.read_bytes()))
    data[30:60] = bytes(b ^ 0xFF for b in data[30:60])  # broken deflate data, not a cut
    rules = tmp_path / "rules.save.gz"
    rules.write_bytes(bytes(data))
    code, out, err = run(capsys, str(DMESG), "--rules", str(rules), "--json")
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert line.startswith(f"nodetrace: error: {rules}: damaged gzip file (")


def test_a_device_is_refused_instead_of_read_forever(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "/dev/zero")
    assert (code, out, err) == (2, "", "nodetrace: error: /dev/zero: is a device, not a log file\n")


@pytest.mark.parametrize("gap", ["-1", "nan", "inf", "soon"])
def test_gap_must_be_a_finite_number_of_seconds(
    capsys: pytest.CaptureFixture[str], gap: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(capsys, str(DMESG), f"--gap={gap}")
    assert exit_.value.code == 2
    assert f"argument --gap: invalid number of seconds (0 or more) value: '{gap}'" in (
        capsys.readouterr().err
    )


def test_empty_match_is_a_usage_error_not_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(DMESG), "--match", "")
    assert code == 2 and out == ""
    assert err == "nodetrace: error: --match needs at least one term, e.g. tcp,tp_dst=22\n"


def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(DMESG.read_bytes() * 300)  # far more output than a pipe buffer holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodetrace", "log", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"packet 1 ")
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert err == b""


def test_a_device_as_the_rules_file_is_one_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(DMESG), "--rules", "/dev/zero", "--json")
    assert (code, out, err) == (2, "", "nodetrace: error: /dev/zero: is a device, not a file\n")


def test_a_packet_made_inside_a_hook_does_not_steal_the_rule_that_made_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """REJECT's ICMP error is traced between the rejected packet's jump and its DROP line;
    the DROP line still belongs to the packet whose trace id it carries."""
    code, out, _ = run(capsys, str(TRACELOG / "xtables-monitor-reject-interleaved.txt"), "--json")
    assert code == 0
    rejected, error = jsonl(out)
    assert rejected["packet"]["ip_id"] == 77 and rejected["outcome"] == "rejected"
    last = rejected["steps"][rejected["verdict_step"] - 1]
    assert (last["chain"], last["handle"]) == ("c1", 4)
    assert error["packet"]["ip_id"] == 542 and error["outcome"] == "accepted"
    assert all(
        s["chain"] != "c1" or s["kind"] != "rule" or s["handle"] != 4 for s in error["steps"]
    )


def test_nft_steps_are_found_by_handle_with_the_nodes_nft_listing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two identical LOG rules: only the handle in the trace says which one matched."""
    base = TRACELOG / "lab-handles"
    trace = str(base.with_suffix(".xtables-monitor.txt"))
    save, listing = str(base.with_suffix(".save")), str(base.with_suffix(".nft-list-ruleset.txt"))
    code, out, _ = run(capsys, trace, "--rules", save, "--rules", listing, "--json")
    assert code == 0
    (packet,) = jsonl(out)
    c1 = [(s["handle"], s["number"]) for s in packet["steps"] if s["chain"] == "c1"]
    assert c1 == [(7, 3), (8, 4)]
    assert any("found by their nf_tables handle" in a for a in packet["assumptions"])


def test_json_is_the_same_by_either_flag(capsys: pytest.CaptureFixture[str]) -> None:
    _, by_format, _ = run(capsys, str(DMESG), "--rules", str(RULES), "--format", "json")
    _, by_alias, _ = run(capsys, str(DMESG), "--rules", str(RULES), "--json")
    assert by_format == by_alias and len(jsonl(by_format)) == 3


def test_a_missing_rules_file_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(DMESG), "--rules", "/nonexistent/rules.save")
    assert (code, out, err) == (2, "", "nodetrace: error: /nonexistent/rules.save: no such file\n")


def test_summary_and_detailed_are_one_level_or_the_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(capsys, str(DMESG), "--summary", "--detailed")
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "--detailed: not allowed with argument --summary" in line
    code, out, _ = run(capsys, str(DMESG), "--rules", str(RULES), "--detailed")
    assert code == 0 and "Top dropping rules" not in out  # stories, not counts
    assert out.startswith("packet 1 ") and "DROPPED" in out


def test_the_help_examples_run_on_the_bundled_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nodetrace.cli.log import EXAMPLES

    examples = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
    commands = [
        line.split()[2:]
        for line in EXAMPLES.splitlines()
        if line.startswith("  nodetrace log two-nodes")
    ]
    assert len(commands) >= 3
    for words in commands:
        argv = [str(examples / w) if w.startswith("two-nodes") else w for w in words]
        if "|" in argv:
            argv = argv[: argv.index("|")]
        code, out, err = run(capsys, *argv)
        assert code == 0 and out and err == "", words
