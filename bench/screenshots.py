"""The pictures of docs/ and the README: pages of nodetrace opened in headless Chromium.

- ``docs/images/node-small.png``: the bundled two-node example (cmp2), a TCP SYN from web's VM
  to db's on a port db's security group does not allow, its path drawn over the node and the
  deciding hop selected (the rule that dropped it shown beside the diagram);
- ``docs/images/node-500.png``: a generated 500-port node (``nodetrace.neutron.synthetic``): a
  ping arriving over a tunnel for one VM, its path drawn device by device while the other
  ports are folded into groups.

    .venv/bin/python bench/screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.synthetic_bundle import write_bundle
from nodetrace import api
from nodetrace.errors import NodetraceError
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.trace import Trace
from nodetrace.neutron.inventory import inventory
from nodetrace.neutron.synthetic import synthetic_node
from nodetrace.render.html import trace_page

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "src/nodetrace/examples/two-nodes-cmp2.snapshot.tar.gz"
CHROMIUM = "/usr/bin/chromium"
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
PACKET = "tcp,tp_dst=8080,tcp_flags=+syn"
FROM_PORT, TO_PORT = "85f28c5a", "79645311"


def _shoot(
    browser: object,
    html: str,
    work: Path,
    out: Path,
    *,
    select_decided: bool,
    search: str = "",
    size: tuple[int, int] = (1600, 1000),
) -> None:
    page_file = work / (out.stem + ".html")
    page_file.write_text(html, encoding="utf-8")
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport={"width": size[0], "height": size[1]}, device_scale_factor=1
    )
    page = context.new_page()
    page.goto(page_file.as_uri(), wait_until="load")
    page.wait_for_selector("html[data-ready]", state="attached")
    if select_decided:
        page.locator("li.step.decided").click()
        page.locator("li.step.decided").scroll_into_view_if_needed()
    if search:
        page.fill("#search", search)
    page.wait_for_timeout(200)
    page.screenshot(path=str(out))
    context.close()
    print(f"wrote {out}")


def tunnel_ping(snap: Snapshot, inv: Inventory) -> Trace:
    """A ping for the first VM port on a tunnel network that the walk delivers to."""
    for port in inv.ports:
        if port.kind.value != "vm" or not port.ips:
            continue
        try:
            trace = api.trace(snap, "icmp", to_port=port.port_id)
        except NodetraceError:  # a VLAN network's port: no tunnel to arrive over
            continue
        if trace.outcome.value == "delivered":
            return trace
    raise SystemExit("no VM port on a tunnel network accepts a ping")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--ports", type=int, default=500)
    args = parser.parse_args()
    args.out = args.out.resolve()  # the script changes directory below
    args.out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        work = Path(tmp)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        os.chdir(ROOT)  # the pages name their snapshot as a reader would type it
        small = api.load_snapshot(EXAMPLE.relative_to(ROOT))
        trace = api.trace(small, PACKET, from_port=FROM_PORT, to_port=TO_PORT)
        title = f"nodetrace trace · {PACKET} from port {FROM_PORT} to port {TO_PORT}"
        html = trace_page(small, inventory(small), trace, title=title)
        _shoot(browser, html, work, args.out / "node-small.png", select_decided=True)

        write_bundle(synthetic_node(ports=args.ports, seed=1), work / f"node-{args.ports}")
        os.chdir(work)
        big = api.load_snapshot(f"node-{args.ports}")
        inv = inventory(big)
        ping = tunnel_ping(big, inv)
        title = f"nodetrace trace · icmp arriving over the tunnel · {args.ports}-port node"
        _shoot(
            browser,
            trace_page(big, inv, ping, title=title),
            work,
            args.out / "node-500.png",
            select_decided=True,
        )
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
