"""Read a bundle written by ``nodetrace collect``: its manifest says what each file is.

The manifest (docs/formats.md, "Node snapshots") lists every command with its kind,
namespace, bridge, file and exit status; files are found through it, never by their names, so
a hostile bridge name in a file name means nothing here.
"""

from __future__ import annotations

import json
from typing import Any

from nodetrace.errors import InputError
from nodetrace.model.netfilter import Backend
from nodetrace.model.snapshot import SourceKind
from nodetrace.model.topology import MAIN_NS
from nodetrace.snapshot.listing import OK, Entry, Listing
from nodetrace.snapshot.tree import SubTree

MANIFEST = "manifest.json"
FORMAT_NAME = "nodetrace-snapshot"
SUPPORTED_VERSIONS = (1,)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_bundle(root: SubTree) -> Listing:
    """The entries of a bundle whose ``manifest.json`` sits at ``root``."""
    where = root.display(MANIFEST)
    try:
        manifest = json.loads(root.read_text(MANIFEST))
    except ValueError as err:
        raise InputError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise InputError(f"{where}: not a nodetrace snapshot manifest")
    version = manifest.get("version")
    if version not in SUPPORTED_VERSIONS:
        raise InputError(
            f"{where}: snapshot format version {version!r} is not supported "
            f"(this nodetrace reads {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    backend = _str(manifest.get("iptables_backend"))
    listing = Listing(
        kind=SourceKind.BUNDLE,
        root=root,
        host=_str(manifest.get("host")),
        kernel=_str(manifest.get("kernel")),
        collected_at=_str(manifest.get("started")),
        iptables_backend=Backend(backend) if backend in ("nft", "legacy") else Backend.UNKNOWN,
    )
    present = set(root.files())
    for index, cmd in enumerate(manifest.get("commands") or ()):
        if not isinstance(cmd, dict) or not isinstance(cmd.get("kind"), str):
            listing.notes.append(f"{where}: command {index + 1} has no kind; ignored")
            continue
        path = _str(cmd.get("file")) or None
        status = _str(cmd.get("status")) or "unknown"
        detail = _str(cmd.get("stderr")).strip()
        if status == OK and (path is None or path not in present):
            status, detail = "absent", f"{path}: listed in the manifest but not in the bundle"
        netns = cmd.get("netns")
        bridge = cmd.get("bridge")
        listing.entries.append(
            Entry(
                kind=cmd["kind"],
                netns=netns if isinstance(netns, str) else MAIN_NS,
                bridge=bridge if isinstance(bridge, str) else None,
                path=path if path in present else None,
                status=status,
                detail=detail,
                truncated=bool(cmd.get("truncated")),
            )
        )
    for problem in (
        _str(manifest.get("namespaces_problem")),
        *(
            f"namespace {n} not collected (--max-namespaces)"
            for n in manifest.get("namespaces_skipped") or ()
        ),
    ):
        if problem:
            listing.notes.append(problem)
    return listing
