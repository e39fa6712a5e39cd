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

EXPECTED_NAMES = "; ".join(
    f"{cmd} -> {name}"
    for cmd, name in (
        ("iptables-save", "iptables-save[.txt]"),
        ("iptables -t TABLE -nvxL", "iptables_-t_nat_-nvxL (when no save exists)"),
        ("ipset save", "ipset_save"),
        ("ip -d address", "ip_-d_address or ip-addr.json"),
        ("ip -d link", "ip_-d_link"),
        ("ip route show table all", "ip_route_show_table_all"),
        ("ip rule", "ip_rule"),
        ("ip neigh", "ip_neigh"),
        ("brctl show", "brctl_show"),
        ("bridge fdb", "bridge_fdb"),
        ("sysctl -a", "sysctl_-a"),
        ("ovs-vsctl show", "ovs-vsctl_show"),
        ("ovs-ofctl show BR", "ovs-ofctl_show_br-int"),
        ("ovs-ofctl dump-flows BR", "ovs-ofctl_dump-flows_br-int"),
        ("ovs-appctl fdb/show BR", "ovs-appctl_fdb.show_br-int"),
        ("ip netns exec NS CMD", "ip_netns_exec_NS_CMD or netns/NS/CMD"),
    )
)
"""The file names a plain folder is expected to hold (said when none is recognised)."""


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
    found_by_key: dict[tuple[str, str, str | None], list[tuple[Recognised, str]]] = {}
    for path in paths:
        netns, rest = _namespace_of(path)
        found = recognise(rest.rsplit("/", 1)[-1], netns=netns)
        if found is None:
            continue
        key = (found.kind, found.netns or MAIN_NS, found.bridge)
        found_by_key.setdefault(key, []).append((found, path))
    for (kind, netns, bridge), candidates in sorted(
        found_by_key.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2] or "")
    ):
        # Stable sort: among equals, the first file listed wins, as before.
        ranked = sorted(candidates, key=lambda c: -c[0].preference)
        chosen, path = ranked[0]
        listing.entries.append(
            Entry(
                kind=kind,
                netns=netns,
                bridge=bridge,
                path=path,
                flow_filter=chosen.flow_filter,
                fallbacks=tuple(p for f, p in ranked[1:] if not f.flow_filter),
            )
        )
    if not found_by_key:
        listing.notes.append(
            f"{root.display('')}: no file in this {where} is a known command output; "
            f"name each file after its command, e.g. {EXPECTED_NAMES}"
        )


def read_folder(root: SubTree) -> Listing:
    listing = Listing(kind=SourceKind.FOLDER, root=root)
    named_entries(root, root.files(), listing)
    return listing
