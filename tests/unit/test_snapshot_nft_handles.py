"""``nft -a list ruleset`` in snapshots: recognised by its file name (bundle, sosreport's
nftables plugin, plain folders), and its handles reach the namespace's iptables-nft rulesets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nodetrace.engine.netfilter import NetfilterEngine
from nodetrace.model.netfilter import Backend
from nodetrace.snapshot import collect as collector
from nodetrace.snapshot.commands import recognise
from nodetrace.snapshot.load import load

DATA = Path(__file__).resolve().parents[1] / "data" / "iptables"
SAVE = DATA / "trace-inserted.nft.save"
LISTING = DATA / "trace-inserted.nft-list-ruleset.txt"


@pytest.mark.parametrize(
    "name",
    [
        "nft-list-ruleset.txt",
        "nft_-a_list_ruleset",
        "nft -a list ruleset",
        "nft --handle list ruleset.txt",
        "ip_netns_exec_qrouter-1_nft_-a_list_ruleset",
    ],
)
def test_listing_with_handles_is_recognised(name: str) -> None:
    found = recognise(name)
    assert found is not None and found.kind == "nft-list-ruleset"


@pytest.mark.parametrize(
    "name", ["nft_list_ruleset", "nft_-a_list_tables", "nft -a list table ip raw"]
)
def test_listings_without_rule_handles_are_not_recognised(name: str) -> None:
    assert recognise(name) is None


def test_collector_runs_nft_with_handles_in_every_namespace() -> None:
    [spec] = [s for s in collector.linux_specs(collector.Options()) if s.kind == "nft-list-ruleset"]
    assert spec.argv == ("nft", "-a", "list", "ruleset")


def _raw_handles(snapshot_path: Path, netns: str | None = None) -> list[int | None]:
    snap = load(snapshot_path)
    state = snap.main if netns is None else snap.namespace(netns)
    assert state is not None and state.iptables is not None
    assert state.iptables.backend is Backend.NFT
    chain = state.iptables.chain("raw", "PREROUTING")
    assert chain is not None
    return [r.handle for r in chain.rules]


def test_sosreport_nftables_plugin_gives_the_handles(tmp_path: Path) -> None:
    sos = tmp_path / "sosreport-node-1"
    (sos / "sos_commands" / "networking").mkdir(parents=True)
    (sos / "sos_commands" / "nftables").mkdir(parents=True)
    shutil.copy(SAVE, sos / "sos_commands" / "networking" / "iptables-save")
    shutil.copy(LISTING, sos / "sos_commands" / "nftables" / "nft_-a_list_ruleset")
    assert _raw_handles(sos) == [5, 3, 4]


def test_plain_folder_gives_handles_per_namespace(tmp_path: Path) -> None:
    (tmp_path / "netns" / "qrouter-1").mkdir(parents=True)
    shutil.copy(SAVE, tmp_path / "iptables-save.txt")
    shutil.copy(SAVE, tmp_path / "netns" / "qrouter-1" / "iptables-nft-save")
    shutil.copy(LISTING, tmp_path / "netns" / "qrouter-1" / "nft -a list ruleset")
    # The main namespace has no listing: its handles stay unknown and the engine says so.
    assert _raw_handles(tmp_path) == [None, None, None]
    assert _raw_handles(tmp_path, "qrouter-1") == [5, 3, 4]
    main = load(tmp_path).main.iptables
    assert main is not None
    assert any("no nft -a list ruleset" in a for a in NetfilterEngine(main).base_assumptions)


def test_listing_that_disagrees_leaves_the_table_alone_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "iptables-save.txt").write_text(
        SAVE.read_text().replace("-A PREROUTING -i lo -j ACCEPT\n", "")
    )
    shutil.copy(LISTING, tmp_path / "nft-list-ruleset.txt")
    snap = load(tmp_path)
    ruleset = snap.main.iptables
    assert ruleset is not None
    assert [r.handle for r in ruleset.chain("filter", "INPUT").rules] == [5, 10, 6]  # type: ignore[union-attr]
    assert _raw_handles(tmp_path) == [None, None]
    [note] = ruleset.handle_notes
    assert "table ip raw: chain PREROUTING has 2 rules in the save but 3" in note
    [assumption] = [a for a in NetfilterEngine(ruleset).base_assumptions if "fresh" in a]
    assert "in table raw" in assumption and note in assumption
