"""``nodetrace diff`` on the bundled example snapshot against copies of it changed on purpose
(a DROP rule inserted, a flow removed, counters bumped, a member and an MTU changed): each
change must come out exactly, and nothing else."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from nodetrace import api
from nodetrace.cli import main
from nodetrace.model.counters import CounterSource
from nodetrace.model.snapshot_diff import Change, SnapshotDiff, diff_snapshots
from nodetrace.model.trace import NetfilterStep, Outcome
from nodetrace.snapshot.counters import snapshot_counters

EXAMPLE = Path(__file__).resolve().parents[2] / "src/nodetrace/examples"
CMP1 = EXAMPLE / "two-nodes-cmp1.snapshot.tar.gz"
RULES = "cmp1/host/iptables-legacy-save.txt"
FLOWS = "cmp1/host/ovs-ofctl-dump-flows.br-int.txt"
PACKET = "tcp,tp_dst=5432,tcp_flags=+syn"
SG_CHAIN = "neutron-openvswi-i7eb6fb94-7"
ALLOW_5432 = f"-A {SG_CHAIN} -p tcp -m tcp --dport 5432 -m set --match-set NIPv4fcc7e558"
DROP_5432 = f"-A {SG_CHAIN} -p tcp -m tcp --dport 5432 -j DROP"


def copy(tmp_path: Path, name: str) -> Path:
    """The example bundle unpacked into a folder of its own (load_snapshot reads folders)."""
    root = tmp_path / name
    with tarfile.open(CMP1) as tar:
        tar.extractall(root, filter="data")
    return root / "cmp1"


def edit(root: Path, member: str, change: object) -> None:
    path = root.parent / member
    text = path.read_text()
    new = change(text)  # type: ignore[operator]
    assert new != text, f"{member}: the edit changed nothing"
    path.write_text(new)


def compare(a: Path, b: Path, *, packet: bool = False) -> SnapshotDiff:
    sa, sb = api.load_snapshot(a), api.load_snapshot(b)
    fate = None
    if packet:
        a_trace = api.trace(sa, PACKET, from_port="bf944fec", to_port="7eb6fb94")
        b_trace = api.trace(sb, PACKET, from_port="bf944fec", to_port="7eb6fb94")
        fate = (PACKET, a_trace, b_trace)
    return diff_snapshots(sa, sb, snapshot_counters(sa), snapshot_counters(sb), fate=fate)


def test_a_snapshot_against_itself_differs_in_nothing(tmp_path: Path) -> None:
    result = compare(copy(tmp_path, "a"), copy(tmp_path, "b"), packet=True)
    assert result.same
    assert not (result.rules or result.flows or result.sets or result.devices or result.grown)
    assert result.fate is not None and result.fate.divergence.same
    # The example was collected before `ip -s link`, nstat and conntrack -S were: unknown.
    assert any(line.startswith("device") for line in result.not_compared)


def test_an_inserted_drop_rule_is_the_one_change_and_the_packet_now_dies_on_it(
    tmp_path: Path,
) -> None:
    a, b = copy(tmp_path, "a"), copy(tmp_path, "b")
    edit(b, RULES, lambda t: t.replace(ALLOW_5432, f"{DROP_5432}\n{ALLOW_5432}", 1))
    result = compare(a, b, packet=True)
    assert [(r.change, r.table, r.chain, r.text, r.position_b) for r in result.rules] == [
        (Change.ADDED, "filter", SG_CHAIN, DROP_5432, 4)
    ]
    assert not (result.flows or result.sets or result.devices)
    fate = result.fate
    assert fate is not None
    assert fate.a.outcome is Outcome.DELIVERED and fate.b.outcome is Outcome.DROPPED
    assert not fate.divergence.same
    step = fate.divergence.simulated
    assert isinstance(step, NetfilterStep) and step.rule_text == DROP_5432


def test_flows_are_matched_by_identity_a_removed_one_and_grown_counters(tmp_path: Path) -> None:
    a, b = copy(tmp_path, "a"), copy(tmp_path, "b")
    removed = "priority=2,in_port=3,dl_src=fa:16:3e:67:bb:58 actions=resubmit(,30)"

    def change(text: str) -> str:
        # The removed flow goes, and the flows after it move up a line: by position every
        # later flow would look changed; by identity none does.
        lines = [line for line in text.splitlines() if not line.endswith(removed)]
        out = "\n".join(lines) + "\n"
        return out.replace(
            "table=60, n_packets=6, n_bytes=264", "table=60, n_packets=13, n_bytes=572"
        )

    edit(b, FLOWS, change)
    result = compare(a, b)
    assert [(f.change, f.bridge, f.identity) for f in result.flows] == [
        (
            Change.REMOVED,
            "br-int",
            "table=25 priority=2 cookie=0x9edc78f2692734da in_port=3,dl_src=fa:16:3e:67:bb:58",
        )
    ]
    assert [(g.counter.source, g.counter.owner, g.counter.item, g.delta) for g in result.grown] == [
        (
            CounterSource.OPENFLOW,
            "br-int",
            "table=60 priority=1 cookie=0x9edc78f2692734da (all packets)",
            7,
        )
    ]
    assert not result.rules


def test_rule_counters_that_grew_and_one_that_was_reset(tmp_path: Path) -> None:
    a, b = copy(tmp_path, "a"), copy(tmp_path, "b")
    forward = "-A FORWARD -j neutron-filter-top"
    edit(
        a,
        RULES,
        lambda t: t.replace(ALLOW_5432, f"[5:300] {ALLOW_5432}").replace(
            forward, f"[40:2000] {forward}"
        ),
    )
    edit(
        b,
        RULES,
        lambda t: t.replace(ALLOW_5432, f"[9:540] {ALLOW_5432}").replace(
            forward, f"[3:150] {forward}"
        ),
    )
    result = compare(a, b)
    assert [(g.counter.owner, g.counter.item[:60], g.before, g.after) for g in result.grown] == [
        (f"ipv4 filter {SG_CHAIN}", ALLOW_5432[:60], 5, 9)
    ]
    assert [(g.counter.item, g.delta) for g in result.reset] == [(forward, -37)]
    assert not result.rules  # counters are not a change of the rule


def test_ipset_members_and_device_state(tmp_path: Path) -> None:
    a, b = copy(tmp_path, "a"), copy(tmp_path, "b")
    edit(b, "cmp1/host/ipset-save.txt", lambda t: t.replace(
        "add NIPv4fcc7e558-aa2c-5754-938e- 10.20.0.11\n", "add NIPv4fcc7e558-aa2c-5754-938e- 10.20.0.99\n"))  # fmt: skip

    def lower_mtu(text: str) -> str:
        links = json.loads(text)
        for link in links:
            if link["ifname"] == "qvo7eb6fb94-79":
                link["mtu"] = 1400
                link["flags"] = [f for f in link["flags"] if f not in ("UP", "LOWER_UP")]
        return json.dumps(links)

    edit(b, "cmp1/host/ip-link.json", lower_mtu)
    edit(b, "cmp1/host/ip-addr.json", lower_mtu)
    links = json.loads((a / "host/ip-addr.json").read_text())
    mtu = next(link["mtu"] for link in links if link["ifname"] == "qvo7eb6fb94-79")
    result = compare(a, b)
    assert [(s.change, s.name, s.added, s.removed) for s in result.sets] == [
        (Change.CHANGED, "NIPv4fcc7e558-aa2c-5754-938e-", ("10.20.0.99",), ("10.20.0.11",))
    ]
    assert [(d.change, d.name, d.details) for d in result.devices] == [
        (
            Change.CHANGED,
            "qvo7eb6fb94-79",
            ("up: yes -> no", "carrier: yes -> no", f"mtu: {mtu} -> 1400"),
        )
    ]


def test_the_command_prints_the_changes_and_the_json_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = copy(tmp_path, "a"), copy(tmp_path, "b")
    edit(b, RULES, lambda t: t.replace(ALLOW_5432, f"{DROP_5432}\n{ALLOW_5432}", 1))
    ends = ["--from-port", "bf944fec", "--to-port", "7eb6fb94", "--packet", PACKET]
    assert main(["diff", str(a), str(b), *ends]) == 0
    text = capsys.readouterr().out
    assert f"+ ipv4 filter {SG_CHAIN}: {DROP_5432}" in text
    assert re.search(r"A: delivered.*\n  B: dropped", text)
    assert main(["diff", str(a), str(b), *ends, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["command"] == "diff" and doc["schema"] >= 2
    assert [(r["change"], r["text"]) for r in doc["rules"]] == [("added", DROP_5432)]
    assert doc["packet"]["a"]["outcome"] == "delivered"
    assert doc["packet"]["b"]["outcome"] == "dropped"
    assert doc["packet"]["same"] is False


def test_a_missing_snapshot_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diff", str(tmp_path / "nope"), str(CMP1)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
