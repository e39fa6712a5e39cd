"""``nodetrace explain LOG SNAPSHOT`` end to end on the bundled example: what an operator
reads, the JSON a script reads, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.render.json import SCHEMA_VERSION
from tests.unit.diagnosis_faults import CMP2, CMP2_LOG, EXAMPLES, insert_rule, node

FALLBACK = "filter neutron-openvswi-sg-fallback rule 1"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_each_packet_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(CMP2_LOG), str(CMP2))
    assert (code, err) == (0, "")
    assert out.count("\npacket ") + out.startswith("packet ") == 3
    assert "  lost at    netfilter · " + FALLBACK in out
    assert "  cause      rule-drop: a netfilter rule drops the packet" in out
    assert (
        "  confirm    iptables -t filter -L neutron-openvswi-sg-fallback -n -v --line-numbers"
        in out
    )
    assert out.count("not lost: observed and predicted agree") == 2
    summary = out.rstrip().splitlines()
    assert summary[-2] == (
        "3 packet(s) · 3 agreeing with the snapshot · 0 divergent · 1 with a cause"
    )
    assert summary[-1].split() == ["1", "rule-drop"]


def test_detailed_puts_the_paths_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, str(CMP2_LOG), str(CMP2), "--detailed")
    first = out.split("\npacket 2 ")[0]
    rows = [x for x in first.splitlines() if " │ " in x]
    assert len(rows) == 17  # the 17 logged steps, each beside the predicted one
    assert all(x.split(" │ ")[0].split()[-4:] == x.split(" │ ")[1].split()[-4:] for x in rows)


def test_a_changed_snapshot_shows_the_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = node(tmp_path)
    insert_rule(folder, "neutron-openvswi-i79645311-2", "-p tcp -m tcp --dport 5432 -j DROP")
    _, out, _ = run(capsys, str(CMP2_LOG), str(folder))
    first = out.split("\npacket 2 ")[0]
    assert "  diverge    step 15: " in first
    assert "  cause      rules-changed: the observed path contradicts the rules given" in first
    assert "2 agreeing with the snapshot · 1 divergent" in out


def test_json_lines_then_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(CMP2_LOG), str(CMP2), "--format", "json")
    docs = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(docs) == 4
    assert all((d["schema"], d["command"]) == (SCHEMA_VERSION, "explain") for d in docs)
    packets, summary = docs[:3], docs[3]["summary"]
    dropped = packets[1]
    assert dropped["cause"]["id"] == "rule-drop" and dropped["layer"] == "netfilter"
    assert dropped["location"].startswith(FALLBACK)
    assert dropped["observed"]["outcome"] == "dropped"
    assert dropped["predicted"]["outcome"] == "dropped"
    assert dropped["divergence"]["same"] is True
    assert [p["cause"] for p in (packets[0], packets[2])] == [None, None]
    assert summary == {
        "packets": 3, "agreeing": 3, "divergent": 0, "unpredicted": 0, "lost": 1,
        "by_cause": {"rule-drop": 1}, "by_layer": {"netfilter": 1},
    }  # fmt: skip


def test_summary_only(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, str(CMP2_LOG), str(CMP2), "--summary")
    assert not out.startswith("packet")
    assert out.startswith("3 packet(s) · 3 agreeing")


def test_arguments_in_the_wrong_order_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(CMP2), str(CMP2_LOG))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "not a snapshot" in err and "Traceback" not in err


def test_a_log_without_trace_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "kern.log"
    empty.write_text("Nov 10 11:23:11 node kernel: eth0: link up\n")
    code, _, err = run(capsys, str(empty), str(CMP2))
    assert code == 1 and "holds no TRACE records" in err


def test_another_nodes_log_is_not_predicted_and_counted_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, str(EXAMPLES / "two-nodes-cmp1.trace.log"), str(CMP2), "--summary")
    assert out.splitlines()[0] == (
        "3 packet(s) · 0 agreeing with the snapshot · 0 divergent · 3 not predicted · "
        "3 with a cause"
    )


def _with_link_stats(folder: Path, tap_tx_dropped: int) -> Path:
    """``ip -s -s -j link`` of the node, as `nodetrace collect` saves it: every device's
    counters from its ``ip -j link``, and db2's tap having dropped ``tap_tx_dropped``."""
    links = json.loads((folder / "host" / "ip-link.json").read_text())
    for link in links:
        dropped = tap_tx_dropped if link["ifname"] == "tap79645311-20" else 0
        link["stats64"] = {
            "rx": {"bytes": 0, "packets": 0, "errors": 0, "dropped": 0},
            "tx": {"bytes": 0, "packets": 0, "errors": 0, "dropped": dropped},
        }
    (folder / "host" / "ip-link-stats.json").write_text(json.dumps(links))
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text())
    (link_entry,) = [c for c in data["commands"] if c["kind"] == "ip-link"]
    argv = [*link_entry["argv"][:-5], "ip", "-s", "-s", "-j", "link", "show"]
    stats = {**link_entry, "kind": "ip-link-stats", "file": "host/ip-link-stats.json",
             "argv": argv}  # fmt: skip
    data["commands"].append(stats)
    manifest.write_text(json.dumps(data))
    return folder


def test_counters_that_grew_since_an_earlier_snapshot_name_a_vm_not_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _with_link_stats(node(tmp_path / "before"), 0)
    after = _with_link_stats(node(tmp_path / "after"), 3)
    _, out, err = run(capsys, str(CMP2_LOG), str(after), "--before", str(before))
    assert err == ""
    first = out.split("\npacket 2 ")[0]
    assert "  cause      vm-not-reading: the VM does not read its NIC" in first
    assert "tap79645311-20: tx_dropped +3 while the packet was followed" in first
    _, quiet, _ = run(capsys, str(CMP2_LOG), str(after), "--before", str(after))
    assert "vm-not-reading" not in quiet
    _, _, err = run(capsys, str(CMP2_LOG), str(after), "--before", str(CMP2))
    assert "--before: the first snapshot has no `ip -s -s -j link` output" in err
