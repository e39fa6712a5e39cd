"""The shell every HTML page shares: one self-contained document with a strict policy.

A page is opened from a ticket or a laptop, often offline, and its text comes from other
machines (interface names, rule comments, flow notes). So everything it needs is inline (the
stylesheet and script of ``render/html_assets/``, the SVG, the data), the Content-Security-Policy
allows nothing but those inline blocks (by their SHA-256 hashes: no network, no other script, no
inline handler), every input string is escaped where it is written, and the data the script
reads is JSON in a ``<script type="application/json">`` block with ``<``, ``>`` and ``&``
escaped, so no text can close the block or open a tag.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

DATA_ID = "nodetrace-data"
"""The id of the JSON block the script reads."""

_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style>", re.DOTALL)


def esc(text: object) -> str:
    """Text for HTML content or a quoted attribute value."""
    return html.escape(str(text), quote=True)


@cache
def asset(name: str) -> str:
    """A file of ``render/html_assets/`` (package data), read once."""
    return files("nodetrace.render").joinpath("html_assets", name).read_text(encoding="utf-8")


def json_block(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or ``&``
    survives (each is a ``\\u`` escape JSON.parse reads back), so ``</script>`` cannot appear."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def content_security_policy(script: str, styles: list[str]) -> str:
    """Nothing but the page's own inline blocks: no request leaves the page."""
    style_hashes = " ".join(dict.fromkeys(_hash(s) for s in styles))
    return (
        "default-src 'none'; "
        f"script-src {_hash(script)}; "
        f"style-src {style_hashes}; "
        "base-uri 'none'; form-action 'none'"
    )


def document(*, title: str, view: str, body: str, data: dict[str, Any], css: str = "") -> str:
    """The whole page: ``body`` is markup already escaped by its builder; ``data`` goes to the
    script as JSON; ``css`` is added to the page's stylesheet (the diagram's own rules). Style
    blocks inside ``body`` are allowed by hash too."""
    stylesheet = css + asset("page.css")  # the page's rules after, to win over the diagram's
    script = asset("page.js")
    styles = [stylesheet, *_STYLE_BLOCK.findall(body)]
    policy = content_security_policy(script, styles)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{esc(title)}</title>\n"
        f"<style>{stylesheet}</style>\n"
        "</head>\n"
        f'<body class="view-{esc(view)}">\n'
        f"{body}\n"
        f'<script type="application/json" id="{DATA_ID}">{json_block(data)}</script>\n'
        f"<script>{script}</script>\n"
        "</body>\n</html>\n"
    )
