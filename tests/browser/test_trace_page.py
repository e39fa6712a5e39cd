"""The page of a real trace (``nodetrace trace --format html`` on the bundled cmp2 snapshot) in
Chromium: it opens cleanly, every hop of the trace is marked on the diagram, a click on a hop
reveals the rules and flows of its steps, a click on a step selects its hop, and a second
(observed) trace is drawn as its own path."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from nodetrace import api
from nodetrace.cli import main
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import DeviceStep, NetfilterStep, OpenFlowStep, Trace
from nodetrace.neutron.inventory import inventory
from nodetrace.render.html import trace_page
from nodetrace.render.node_diagram import Hop, path_marks
from tests.browser.conftest import OpenedPage

SNAPSHOT = (
    Path(__file__).resolve().parents[2] / "src/nodetrace/examples/two-nodes-cmp2.snapshot.tar.gz"
)
WEB, DB = "85f28c5a", "79645311"
"""The two VMs' Neutron ports on cmp2 (README, docs/api.md)."""
DELIVERED = "tcp,tp_dst=5432,tcp_flags=+syn"
DROPPED = "tcp,tp_dst=8080,tcp_flags=+syn"
"""Not allowed by db's security group: dropped by its fallback chain."""
SELECTED = re.compile(r"\bselected\b")


@pytest.fixture(scope="module")
def snap() -> Snapshot:
    return api.load_snapshot(SNAPSHOT)


@pytest.fixture(scope="module")
def delivered(snap: Snapshot) -> Trace:
    return api.trace(snap, DELIVERED, from_port=WEB, to_port=DB)


@pytest.fixture(scope="module")
def dropped(snap: Snapshot) -> Trace:
    return api.trace(snap, DROPPED, from_port=WEB, to_port=DB)


def _cli_page(capsys: pytest.CaptureFixture[str], packet: str) -> str:
    capsys.readouterr()
    argv = ["trace", str(SNAPSHOT), "--from-port", WEB, "--to-port", DB, "--packet", packet]
    assert main([*argv, "--format", "html"]) == 0
    return capsys.readouterr().out


def _rule_or_flow(step: object) -> str:
    match step:
        case NetfilterStep(rule=rule, rule_text=text):
            return rule.text if rule is not None else (text or "")
        case OpenFlowStep():
            return (
                f"{step.match} actions={step.actions}" if step.match else f"actions={step.actions}"
            )
        case _:
            return ""


def _node(page: Any, hop: Hop, observed: bool = False) -> Any:
    """The element drawing a hop (a device on both paths is marked by both)."""
    kind = ".observed" if observed else ""
    return page.locator(f'g.node.hop{kind}[data-device="{hop.device}"][data-netns="{hop.netns}"]')


def test_every_hop_of_the_trace_is_marked_on_the_diagram(
    capsys: pytest.CaptureFixture[str], delivered: Trace, opened: Callable[[str, str], OpenedPage]
) -> None:
    result = opened(_cli_page(capsys, DELIVERED), "trace.html")
    assert result.problems == []
    page: Any = result.page
    marks = path_marks(delivered)
    assert marks.hops
    for hop in marks.hops:
        node = page.locator(f'g.node[data-device="{hop.device}"][data-netns="{hop.netns}"]')
        assert node.count() == 1, hop
        classes = node.get_attribute("class").split()
        assert "hop" in classes and f"hop-{hop.state}" in classes, (hop, classes)
        assert str(hop.index) in node.get_attribute("data-hops").split(), hop
    # The trace's own devices and bridges, read from its steps, are all hops.
    # (a veth step names both ends: "qvb… → qvo…")
    named = {d for s in delivered.steps if isinstance(s, DeviceStep) for d in s.device.split(" → ")}
    named |= {s.bridge for s in delivered.steps if isinstance(s, OpenFlowStep)}
    drawn = page.eval_on_selector_all("g.node.hop", "els => els.map(e => e.dataset.device)")
    assert named <= set(drawn)
    assert page.locator("g.edge.path").count() >= 1
    # every step of the tree is there, numbered as the trace
    assert page.locator("li.step").count() == len(delivered.steps)


@pytest.mark.parametrize("kind", [NetfilterStep, OpenFlowStep])
def test_clicking_a_hop_reveals_its_rules_or_flows(
    kind: type,
    capsys: pytest.CaptureFixture[str],
    delivered: Trace,
    opened: Callable[[str, str], OpenedPage],
) -> None:
    result = opened(_cli_page(capsys, DELIVERED), "trace.html")
    page: Any = result.page
    hop = next(
        h
        for h in path_marks(delivered).hops
        if any(
            isinstance(delivered.steps[s - 1], kind) and _rule_or_flow(delivered.steps[s - 1])
            for s in h.steps
        )
    )
    texts = [_rule_or_flow(delivered.steps[s - 1]) for s in hop.steps]
    detail = page.locator("#hop-detail")
    expect(detail).to_be_hidden()
    _node(page, hop).click()
    expect(detail).to_be_visible()
    shown = detail.inner_text()
    for text in filter(None, texts):
        assert text in shown
    for number in hop.steps:
        expect(page.locator(f'li.step[data-step="{number}"]')).to_have_class(SELECTED)
    expect(page.locator(f'li.step[data-step="{hop.steps[0]}"]')).to_be_in_viewport()
    assert result.problems == []


def test_clicking_a_step_selects_its_hop_and_shows_where_its_rule_was_read(
    capsys: pytest.CaptureFixture[str], dropped: Trace, opened: Callable[[str, str], OpenedPage]
) -> None:
    result = opened(_cli_page(capsys, DROPPED), "trace.html")
    page: Any = result.page
    assert dropped.verdict_step is not None
    deciding = dropped.steps[dropped.verdict_step]
    assert isinstance(deciding, NetfilterStep) and deciding.rule is not None
    number = dropped.verdict_step + 1
    step = page.locator(f'li.step[data-step="{number}"]')
    expect(step).to_have_class(re.compile(r"\bdropped\b"))
    step.click()
    more = step.locator(".more")
    expect(more).to_be_visible()
    assert deciding.rule.text in more.inner_text()
    assert str(deciding.rule.pos) in more.inner_text()
    hop = next(h for h in path_marks(dropped).hops if number in h.steps)
    node = _node(page, hop)
    expect(node).to_have_class(SELECTED)
    assert f"hop-{hop.state}" in node.get_attribute("class").split()
    assert result.problems == []


def test_search_by_a_ports_ip_highlights_that_port(
    snap: Snapshot, capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    result = opened(_cli_page(capsys, DELIVERED), "trace.html")
    page: Any = result.page
    ports = inventory(snap).ports
    for port in ports:
        ip = str(port.ips[0].value)
        page.fill("#search", ip)
        matched = set(
            page.eval_on_selector_all("g.node.match", "els => els.map(e => e.dataset.device)")
        )
        assert matched & set(port.devices), (ip, matched)
        others = {d for p in ports if p is not port for d in p.devices}
        assert not matched & others, (ip, matched)  # the other VM's devices are not lit
        other = page.locator("g.node:not(.match)").first
        assert float(other.evaluate("e => getComputedStyle(e).opacity")) < 1
    page.fill("#search", "")
    assert page.locator("g.node.match").count() == 0
    assert result.problems == []


def test_an_observed_trace_is_a_second_path(
    snap: Snapshot,
    delivered: Trace,
    dropped: Trace,
    opened: Callable[[str, str], OpenedPage],
) -> None:
    html = trace_page(
        snap, inventory(snap), delivered, title="predicted and observed", observed=dropped
    )
    result = opened(html, "observed.html")
    assert result.problems == []
    page: Any = result.page
    for hop in path_marks(dropped).hops:
        assert _node(page, hop, observed=True).count() == 1, hop
    assert page.locator("section.trace.observed li.step").count() == len(dropped.steps)
    assert page.locator("section.trace.predicted li.step").count() == len(delivered.steps)
    last = path_marks(dropped).hops[-1]
    _node(page, last, observed=True).click()
    shown = page.locator("#hop-detail").inner_text()
    assert "observed hop" in shown
    assert dropped.verdict_step is not None
    assert _rule_or_flow(dropped.steps[dropped.verdict_step]) in shown or last.state != "dropped"
