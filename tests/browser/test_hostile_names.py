"""A snapshot whose device names, host name and rule comment are markup and script
(``tests/browser/hostile.py``): its pages and diagrams render inert. No dialog opens, no payload
runs (each would set ``window.pwned``), the page keeps its own two scripts, and every payload is
on the page as the text it was."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from tests.browser.conftest import OpenedPage
from tests.browser.hostile import COMMENT, HOSTNAME, LINUX_BRIDGE, UPLINK, hostile_snapshot

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
WEB, DB = "85f28c5a", "79645311"
DROPPED = "tcp,tp_dst=8080,tcp_flags=+syn"
"""Dropped by the rule whose comment is hostile, through the hostile Linux bridge."""


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile_snapshot(tmp_path_factory.mktemp("hostile"))


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def _assert_inert(result: OpenedPage) -> None:
    page: Any = result.page
    assert result.dialogs == []
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.evaluate("document.scripts.length") == 2  # the data block and the page's own
    assert page.locator("script:not([type]), script[type='text/javascript']").count() == 1
    assert page.evaluate("document.querySelectorAll('[onload],[onerror],[onclick]').length") == 0
    assert page.locator("img, iframe, object, embed").count() == 0
    assert result.problems == []


def _trace_argv(snapshot: Path) -> list[str]:
    return ["trace", str(snapshot), "--from-port", WEB, "--to-port", DB, "--packet", DROPPED]


def test_the_trace_page_of_a_hostile_snapshot_is_inert(
    snapshot: Path, capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    result = opened(_out(capsys, *_trace_argv(snapshot), "--format", "html"), "trace.html")
    _assert_inert(result)
    page: Any = result.page
    text = page.evaluate("document.body.innerText")
    assert HOSTNAME in text  # the header
    assert COMMENT in text  # the deciding rule, in the tree
    assert LINUX_BRIDGE in text  # the FORWARD hook's devices
    assert page.locator(f'g.node[data-device="{LINUX_BRIDGE}"]').count() == 1
    # clicking every hop fills the detail box with text, never markup
    for node in page.locator("g.node.hop").all():
        node.click()
    page.locator("li.step.decided").click()
    _assert_inert(result)


def test_the_show_page_of_a_hostile_snapshot_is_inert(
    snapshot: Path, capsys: pytest.CaptureFixture[str], opened: Callable[[str, str], OpenedPage]
) -> None:
    result = opened(_out(capsys, "show", str(snapshot), "--format", "html"), "show.html")
    _assert_inert(result)
    page: Any = result.page
    svg_text = page.locator(".diagram-pane svg").text_content()
    assert UPLINK in svg_text and LINUX_BRIDGE in svg_text
    page.fill("#search", "<script>")
    assert page.locator("g.node.match").count() >= 1
    for item in page.locator(".inventory li.item[data-element]").all():
        item.click()
    _assert_inert(result)


@pytest.mark.parametrize("command", ["show", "trace"])
def test_the_hostile_svg_is_well_formed_and_holds_the_names_as_text(
    command: str, snapshot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["show", str(snapshot)] if command == "show" else _trace_argv(snapshot)
    svg = _out(capsys, *argv, "--format", "svg")
    root = ET.fromstring(svg)
    tags = {el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    assert not tags & {"script", "foreignObject", "image", "a", "iframe"}
    assert not [name for el in root.iter() for name in el.attrib if name.lower().startswith("on")]
    texts = " ".join(el.text or "" for el in root.iter())
    attributes = " ".join(v for el in root.iter() for v in el.attrib.values())
    for name in (UPLINK, LINUX_BRIDGE):
        assert name in texts or name in attributes


def test_the_log_page_of_hostile_records_is_inert(
    snapshot: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    opened: Callable[[str, str], OpenedPage],
) -> None:
    log = tmp_path / "kern.log"
    original = (EXAMPLES / "two-nodes-cmp2.trace.log").read_text()
    log.write_text(original.replace("qbr79645311-20", LINUX_BRIDGE))
    page_html = _out(capsys, "log", str(log), "--rules", str(snapshot), "--format", "html")
    result = opened(page_html, "log.html")
    _assert_inert(result)
    page: Any = result.page
    text = page.evaluate("document.body.innerText")
    assert COMMENT in text and LINUX_BRIDGE in text
    for bar in page.locator(".bars g.bar").all():
        bar.click()
    _assert_inert(result)
