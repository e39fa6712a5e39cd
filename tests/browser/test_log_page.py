"""The page of a real TRACE log (``nodetrace log --format html``) in Chromium: it opens cleanly,
its counts are those of ``nodetrace log --summary --format json``, a bar lists the packets the
per-packet JSON puts behind it, and the timeline has one mark per time-stamped packet."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from nodetrace import api
from nodetrace.cli import main
from nodetrace.render.node_diagram import path_marks
from tests.browser.conftest import OpenedPage

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
LOGS = [
    pytest.param(
        [
            str(EXAMPLES / "two-nodes-cmp2.trace.log"),
            "--rules",
            str(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"),
        ],
        id="cmp2-with-rules",
    ),
    pytest.param(
        [
            str(EXAMPLES / "two-nodes-cmp1.trace.log"),
            "--rules",
            str(EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz"),
        ],
        id="cmp1-with-rules",
    ),
    pytest.param([str(EXAMPLES / "lab-legacy-trace.dmesg")], id="dmesg-without-rules"),
]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(["log", *argv]) == 0
    return capsys.readouterr().out


def _summary(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict[str, Any]:
    out = _run(capsys, *args, "--summary", "--format", "json")
    summary: dict[str, Any] = json.loads(out)["summary"]
    return summary


def _packets(capsys: pytest.CaptureFixture[str], args: list[str]) -> list[dict[str, Any]]:
    out = _run(capsys, *args, "--format", "json")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _bars(opened: OpenedPage, kind: str) -> dict[str, int]:
    page: Any = opened.page
    bars = page.locator(f".bars.{kind} g.bar")
    return {
        bars.nth(i).get_attribute("data-label"): int(bars.nth(i).get_attribute("data-count"))
        for i in range(bars.count())
    }


def _chain(step: dict[str, Any]) -> str:
    return f"{step['table']}:{step['chain']}"


@pytest.mark.parametrize("args", LOGS)
def test_log_page_counts_are_the_summarys(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    opened: Callable[[str, str], OpenedPage],
) -> None:
    summary = _summary(capsys, args)
    per_packet = _packets(capsys, args)
    result = opened(_run(capsys, *args, "--format", "html"), "log.html")
    assert result.problems == []
    page: Any = result.page

    hits = _bars(result, "hits")
    for row in summary["chains_by_hits"]:
        assert hits[row["chain"]] == row["hits"]
        # the number drawn beside the bar is the same
        bar = page.locator(f'.bars.hits g.bar[data-label="{row["chain"]}"] text.count')
        assert bar.text_content() == str(row["hits"])

    drops_expected: Counter[str] = Counter()
    for row in summary["top_dropping_rules"]:
        drops_expected[":".join(row["step"].split(":")[:2])] += row["packets"]
    assert _bars(result, "drops") == dict(drops_expected)

    outcomes = page.locator("table.outcomes tr[class^=outcome-]")
    shown = {
        outcomes.nth(i).locator("th").text_content(): int(
            outcomes.nth(i).locator("td").text_content()
        )
        for i in range(outcomes.count())
    }
    assert shown == summary["by_outcome"]
    assert len(per_packet) == summary["packets"]
    assert page.locator("div.packet").count() == summary["packets"]


@pytest.mark.parametrize("args", LOGS)
def test_a_bar_lists_the_packets_behind_it(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    opened: Callable[[str, str], OpenedPage],
) -> None:
    per_packet = _packets(capsys, args)
    result = opened(_run(capsys, *args, "--format", "html"), "log.html")
    page: Any = result.page
    for kind in ("hits", "drops"):
        for chain in _bars(result, kind):
            if kind == "hits":
                expected = [
                    p["index"] for p in per_packet if chain in {_chain(s) for s in p["steps"]}
                ]
            else:
                expected = [
                    p["index"]
                    for p in per_packet
                    if p["outcome"] in ("dropped", "rejected")
                    and _chain(p["steps"][p["verdict_step"] - 1]) == chain
                ]
            page.locator(f'.bars.{kind} g.bar[data-label="{chain}"]').click()
            links = page.locator("#bar-packets a.packet-link")
            listed = [int(links.nth(i).text_content().split()[-1]) for i in range(links.count())]
            assert listed == expected, (kind, chain)
            assert page.locator("#bar-packets").is_visible()
    assert result.problems == []


def test_the_timeline_marks_each_time_stamped_packet(
    capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    args = [str(EXAMPLES / "lab-legacy-trace.dmesg")]
    per_packet = _packets(capsys, args)
    result = opened(_run(capsys, *args, "--format", "html"), "log.html")
    page: Any = result.page
    marks = page.locator(".timeline circle[data-packet]")
    assert sorted(int(marks.nth(i).get_attribute("data-packet")) for i in range(marks.count())) == [
        p["index"] for p in per_packet if p["time"]
    ]
    last = marks.last
    last.click()  # the last drawn is on top where marks overlap
    target = page.locator(f"#packet-{last.get_attribute('data-packet')}")
    expect(target).to_be_in_viewport()
    assert result.problems == []


def test_a_log_without_time_stamps_says_so(
    capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    args = [str(EXAMPLES / "two-nodes-cmp2.trace.log")]
    assert all(p["time"] is None for p in _packets(capsys, args))
    result = opened(_run(capsys, *args, "--format", "html"), "log.html")
    page: Any = result.page
    assert page.locator(".timeline circle").count() == 0
    assert "no time stamps" in page.locator("section.summary").inner_text()


def test_with_its_snapshot_a_packets_path_is_drawn_on_the_node(
    capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    log = EXAMPLES / "two-nodes-cmp2.trace.log"
    snapshot = EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"
    packets = list(api.explain_log([log], rules=[snapshot]))
    result = opened(
        _run(capsys, str(log), "--rules", str(snapshot), "--format", "html"), "log.html"
    )
    page: Any = result.page
    drawn = set(page.eval_on_selector_all("g.node", "els => els.map(e => e.dataset.device)"))
    assert page.locator("g.node.hop").count() == 0  # no packet chosen yet
    for obs in packets:
        expected = {h.device for h in path_marks(obs.trace).hops} & drawn
        assert expected, obs.index
        page.locator(f'button.draw-path[data-draw="{obs.index}"]').click()
        lit = page.eval_on_selector_all("g.node.hop", "els => els.map(e => e.dataset.device)")
        assert set(lit) == expected, obs.index
    # a step of the dropped packet selects its hop, drawing that packet's path first
    dropped = next(o for o in packets if o.trace.outcome.value == "dropped")
    assert dropped.trace.verdict_step is not None
    number = dropped.trace.verdict_step + 1
    page.locator(f'#packet-{dropped.index} li.step[data-step="{number}"]').click()
    hop = next(h for h in path_marks(dropped.trace).hops if number in h.steps)
    node = page.locator(f'g.node[data-device="{hop.device}"]')
    expect(node).to_have_class(re.compile(r"\bselected\b"))
    expect(node).to_have_class(re.compile(r"\bhop-dropped\b"))
    assert result.problems == []
