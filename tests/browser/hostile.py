"""A snapshot whose names and comments are attacks on the page: the bundled two-node example
with its uplink, one VM's Linux bridge, its host name, a namespace's interface and a rule's
comment replaced by markup and script (each payload, if it ever ran, sets ``window.pwned``)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

EXAMPLE = (
    Path(__file__).resolve().parents[2]
    / "src"
    / "nodetrace"
    / "examples"
    / "two-nodes-cmp2.snapshot.tar.gz"
)

UPLINK = "und0'<svg/onload=window.pwned=1>"
"""Replaces ``und0``: no space (a device name has none), a quote and an SVG event handler."""
LINUX_BRIDGE = "qbr<script>pwned=1</script>"
"""Replaces ``qbr79645311-20``."""
HOSTNAME = '"><script>window.pwned=1</script>javascript:alert(1)'
COMMENT = "</script><script>window.pwned=1</script> javascript:alert(1) <!-- 'x' -->"
"""Replaces the fallback chain's comment (the rule that drops the hostile trace's packet)."""
RENAMED = {"und0": UPLINK, "qbr79645311-20": LINUX_BRIDGE}
PAYLOADS = (UPLINK, LINUX_BRIDGE, HOSTNAME, COMMENT)


def _replace_strings(value: Any) -> Any:
    if isinstance(value, str):
        for old, new in RENAMED.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_replace_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _replace_strings(v) for k, v in value.items()}
    return value


def hostile_snapshot(into: Path) -> Path:
    """The example, extracted under ``into`` as a folder bundle, with the payloads in."""
    with tarfile.open(EXAMPLE) as archive:
        archive.extractall(into, filter="data")
    root = next(p.parent for p in into.rglob("manifest.json"))
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else None
        except ValueError:  # a failed command's message, kept as the bundle keeps it
            data = None
        if data is not None:
            data = _replace_strings(data)
            if path.name == "manifest.json":
                data["host"] = HOSTNAME
            text = json.dumps(data)
        else:
            for old, new in RENAMED.items():
                text = text.replace(old, new)
            text = text.replace("Default drop rule for unmatched traffic.", COMMENT)
        path.write_text(text, encoding="utf-8")
    return root
