"""Read a plain folder of command outputs named after their commands.

Accepted names: the command line with spaces or ``_`` between words (``iptables-save``,
``ovs-ofctl dump-flows br-int.txt``, ``ip_-d_-j_link``), or a bundle's own file names
(``ip-link.json``, ``ovs-ofctl-dump-flows.br-int.txt``). Files under ``netns/NS/`` or
``namespaces/NS/``, or named ``ip netns exec NS ...``, belong to namespace NS. When several
files give the same output (``ip -j addr`` and ``ip addr``), the richer one is read.
"""

from __future__ import annotations

from nodetrace.model.snapshot import SourceKind
from nodetrace.model.topology import MAIN_NS
from nodetrace.snapshot.commands import Recognised, recognise
from nodetrace.snapshot.listing import Entry, Listing
from nodetrace.snapshot.tree import SubTree

NAMESPACE_FOLDERS = ("netns", "namespaces")


def _namespace_of(path: str) -> tuple[str | None, str]:
    """``(namespace, rest)`` for ``netns/NS/file``; ``(None, path)`` otherwise."""
    parts = path.split("/")
    for i in range(len(parts) - 2):
        if parts[i] in NAMESPACE_FOLDERS:
            return parts[i + 1], "/".join(parts[i + 2 :])
    return None, path


def named_entries(
    root: SubTree, paths: list[str], listing: Listing, *, where: str = "folder"
) -> None:
    """Add an entry for every recognised file of ``paths`` (the richest per output)."""
    best: dict[tuple[str, str, str | None], tuple[Recognised, str]] = {}
    for path in paths:
        netns, rest = _namespace_of(path)
        found = recognise(rest.rsplit("/", 1)[-1], netns=netns)
        if found is None:
            continue
        key = (found.kind, found.netns or MAIN_NS, found.bridge)
        if key not in best or found.preference > best[key][0].preference:
            best[key] = (found, path)
    for (kind, netns, bridge), (_, path) in sorted(
        best.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "")
    ):
        listing.entries.append(Entry(kind=kind, netns=netns, bridge=bridge, path=path))
    if not best:
        listing.notes.append(
            f"{root.display('')}: no file in this {where} is a known command output"
        )


def read_folder(root: SubTree) -> Listing:
    listing = Listing(kind=SourceKind.FOLDER, root=root)
    named_entries(root, root.files(), listing)
    return listing
