"""Browser tests (marker ``browser``): nodetrace's pages opened in the system Chromium.

Playwright drives the Debian ``chromium`` package (``/usr/bin/chromium``, installed by
``.ci/run``), never a downloaded browser. Every page is opened from a file, as an operator
opens one from a ticket; the ``opened`` fixture records what a person would see go wrong:
console errors, uncaught exceptions, dialogs, and any request other than the page itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: opens pages in the system Chromium (/usr/bin/chromium)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test here is a browser test; without Chromium it is skipped on a developer's
    machine, never on CI (which installs it: a missing browser must fail there)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists() and not os.environ.get("CI"):
                item.add_marker(
                    pytest.mark.skip(reason=f"browser test needs Chromium at {CHROMIUM}")
                )


@dataclass
class OpenedPage:
    """A page opened in Chromium, with everything that went wrong while it loaded."""

    page: object  # playwright.sync_api.Page (imported lazily: the module is optional)
    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    other_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [
            *(f"console: {m}" for m in self.console_errors),
            *(f"exception: {m}" for m in self.page_errors),
            *(f"failed request: {m}" for m in self.failed_requests),
            *(f"request leaving the page: {m}" for m in self.other_requests),
            *(f"dialog: {m}" for m in self.dialogs),
        ]


@pytest.fixture(scope="package")
def chromium() -> Iterator[object]:
    """One browser for the browser tests, closed when they end: Playwright's sync API keeps an
    asyncio loop running while it is open, and the lab's netlink calls need to run their own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def opened(chromium: object, tmp_path: Path) -> Iterator[Callable[[str, str], OpenedPage]]:
    """``opened(html, name)``: the page written to a file and opened, once its load event and
    script have run (the script marks ``<html data-ready>`` last)."""
    contexts: list[object] = []

    def open_page(html: str, name: str = "page.html") -> OpenedPage:
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        url = path.as_uri()
        context = chromium.new_context(viewport={"width": 1400, "height": 900})  # type: ignore[attr-defined]
        contexts.append(context)
        page = context.new_page()
        result = OpenedPage(page=page, url=url)
        page.on(
            "console",
            lambda m: (
                result.console_errors.append(m.text) if m.type in ("error", "warning") else None
            ),
        )
        page.on("pageerror", lambda e: result.page_errors.append(str(e)))
        page.on("requestfailed", lambda r: result.failed_requests.append(r.url))
        page.on(
            "request",
            lambda r: (
                None
                if r.url in (url, url + "#") or r.url.startswith(url + "#")
                else result.other_requests.append(r.url)
            ),
        )

        def on_dialog(dialog: object) -> None:
            result.dialogs.append(dialog.message)  # type: ignore[attr-defined]
            dialog.dismiss()  # type: ignore[attr-defined]

        page.on("dialog", on_dialog)
        page.goto(url, wait_until="load")
        page.wait_for_selector("html[data-ready]", state="attached", timeout=10_000)
        return result

    yield open_page
    for context in contexts:
        context.close()  # type: ignore[attr-defined]
