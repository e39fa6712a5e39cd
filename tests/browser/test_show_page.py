"""The ``show`` page of each bundled snapshot in Chromium: it opens cleanly, draws every bridge
and port the inventory lists, its search finds ports by IP and MAC, its filters hide a kind of
device, and a click in the side panel selects the device in the diagram."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from nodetrace import api
from nodetrace.cli import main
from nodetrace.neutron.inventory import inventory
from tests.browser.conftest import OpenedPage

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
SNAPSHOTS = sorted(EXAMPLES.glob("*.snapshot.tar.gz"))


def _page(capsys: pytest.CaptureFixture[str], snapshot: Path) -> str:
    capsys.readouterr()
    assert main(["show", str(snapshot), "--format", "html"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_show_page_draws_what_the_inventory_lists(
    snapshot: Path, capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    inv = inventory(api.load_snapshot(snapshot))
    result = opened(_page(capsys, snapshot), "show.html")
    assert result.problems == []
    page: Any = result.page
    drawn = set(page.eval_on_selector_all("g.node", "els => els.map(e => e.dataset.device)"))
    for bridge in inv.ovs_bridges:
        assert bridge.name in drawn
        assert {p.name for p in bridge.ports} <= drawn
    for lb in inv.linux_bridges:
        assert lb.name in drawn
    assert page.locator(".inventory li.port-item").count() == len(inv.ports)
    ids = page.eval_on_selector_all("svg [id]", "els => els.map(e => e.id)")
    assert len(ids) == len(set(ids))  # generated ids, each once


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_search_by_ip_and_mac_highlights_the_port(
    snapshot: Path, capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    inv = inventory(api.load_snapshot(snapshot))
    result = opened(_page(capsys, snapshot), "show.html")
    page: Any = result.page
    for port in inv.ports:
        words = [str(ip.value) for ip in port.ips[:1]] + ([port.mac.value] if port.mac else [])
        for word in words:
            page.fill("#search", word)
            matched = page.eval_on_selector_all(
                "g.node.match", "els => els.map(e => e.dataset.device)"
            )
            assert set(matched) & set(port.devices), (word, matched)
            others = {d for p in inv.ports if p is not port for d in p.devices}
            assert not set(matched) & others, (word, matched)
            item = page.locator(f'.inventory li.port-item[data-search*="{port.port_id}"]')
            expect(item).to_have_class(re.compile(r"\bmatch\b"))
    assert result.problems == []


def test_a_kind_filter_hides_those_devices_and_their_links(
    capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    result = opened(_page(capsys, EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"), "show.html")
    page: Any = result.page
    kinds = page.eval_on_selector_all("input.kind-filter", "els => els.map(e => e.dataset.kind)")
    drawn = set(page.eval_on_selector_all("g.node", "els => els.map(e => e.classList[1])"))
    assert set(kinds) == drawn  # a box per kind drawn, no more
    kind = "veth"
    nodes = page.locator(f"g.node.{kind}")
    assert nodes.count() >= 1
    others = page.locator(f"g.node:not(.{kind})")
    expect(nodes.first).to_be_visible()
    page.uncheck(f'input.kind-filter[data-kind="{kind}"]')
    for i in range(nodes.count()):
        expect(nodes.nth(i)).to_be_hidden()
    for i in range(others.count()):
        expect(others.nth(i)).to_be_visible()
    for node_id in page.eval_on_selector_all(f"g.node.{kind}", "els => els.map(e => e.id)"):
        links = page.locator(f'g.edge[data-from="{node_id}"], g.edge[data-to="{node_id}"]')
        for edge in links.all():
            expect(edge).to_be_hidden()
    page.check(f'input.kind-filter[data-kind="{kind}"]')
    expect(nodes.first).to_be_visible()
    assert result.problems == []


def test_a_click_in_the_side_panel_selects_the_device(
    capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    result = opened(_page(capsys, EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz"), "show.html")
    page: Any = result.page
    item = page.locator(".inventory li.item[data-element]").first
    element = item.get_attribute("data-element")
    item.click()
    node = page.locator(f"#{element}")
    expect(node).to_have_class(re.compile(r"\bselected\b"))
    expect(node).to_be_in_viewport()
    assert result.problems == []


def test_on_a_large_node_search_finds_a_folded_port(
    tmp_path: Path, opened: Callable[[str, str], OpenedPage]
) -> None:
    from bench.synthetic_bundle import write_bundle
    from nodetrace.neutron.synthetic import synthetic_node
    from nodetrace.render.html import show_page

    snap = api.load_snapshot(write_bundle(synthetic_node(ports=200, seed=1), tmp_path / "node"))
    inv = inventory(snap)
    result = opened(show_page(snap, inv), "show.html")
    page: Any = result.page
    groups = page.locator("g.group.folded")
    assert groups.count() >= 1  # a node this large is drawn folded
    port = inv.ports[len(inv.ports) // 2]
    ip = str(port.ips[0].value)
    page.fill("#search", ip)
    lit = page.locator("g.node.match, g.group.match")
    assert lit.count() >= 1
    for i in range(lit.count()):
        words = lit.nth(i).get_attribute("data-search").split()
        assert ip in words or port.port_id in words
    expect(page.locator(f'.inventory li.port-item[data-search*="{port.port_id}"]')).to_have_class(
        re.compile(r"\bmatch\b")
    )
    assert result.problems == []


def test_collapsing_namespaces_hides_what_is_inside_them(
    opened: Callable[[str, str], OpenedPage],
) -> None:
    from nodetrace.render.html import show_page
    from tests.unit.test_node_diagram import _router_snapshot  # a router and a DHCP namespace

    snap = _router_snapshot()
    result = opened(show_page(snap, inventory(snap)), "show.html")
    page: Any = result.page
    inside = page.locator('g.node:not([data-netns=""])')
    outside = page.locator('g.node[data-netns=""]')
    assert inside.count() >= 2 and outside.count() >= 1
    page.check("#collapse-netns")
    for i in range(inside.count()):
        expect(inside.nth(i)).to_be_hidden()
    for i in range(outside.count()):
        expect(outside.nth(i)).to_be_visible()
    expect(page.locator("g.cluster.netns").first).to_be_visible()  # the region stays
    page.uncheck("#collapse-netns")
    expect(inside.first).to_be_visible()
    assert result.problems == []
