"""A node snapshot where a single command's output is expected: take the right part of it.

``nodetrace iptables S.tar.gz``, ``nodetrace log LOG --rules S/`` and ``nodetrace openflow S``
accept a whole snapshot (a ``collect`` bundle, a sosreport or a plain folder; folder or archive)
as readily as one file. Reading an archive as if it were one ``iptables-save`` text would mix
every file of it into one ruleset, so a snapshot is recognised first and loaded as a snapshot:
the namespace's ``iptables-save``/``ip6tables-save`` (with the nf_tables handles of its ``nft``
listing), its ipsets, the per-bridge flows. What it lacks is refused in one line that names the
missing output and the command that collects it.
"""

from __future__ import annotations

import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from nodetrace.errors import InputError
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import Ruleset
from nodetrace.model.packet import Family

if TYPE_CHECKING:  # the snapshot model is the whole node: loaded only when a snapshot is read
    from nodetrace.model.snapshot import Snapshot


def _main_ns() -> str:
    """The main namespace's name, from the topology model (loaded with a snapshot, so only
    once one is read: ``is_snapshot`` runs for every single file too)."""
    from nodetrace.model.topology import MAIN_NS

    return MAIN_NS


def is_snapshot(name: str) -> bool:
    """A folder, or an archive (tar, compressed or not, or zip): never a single output."""
    if name == "-":
        return False
    path = Path(name)
    if path.is_dir():
        return True
    if not path.is_file():
        return False
    try:
        return tarfile.is_tarfile(path) or zipfile.is_zipfile(path)
    except (OSError, EOFError, tarfile.TarError, zlib.error):
        return False  # a damaged file: its reader says what is wrong with it


def load_snapshot(name: str) -> Snapshot:
    from nodetrace.snapshot.load import load

    return load(name)


def _save_command(family: Family, netns: str) -> str:
    command = "iptables-save" if family is Family.IPV4 else "ip6tables-save"
    return command if netns == _main_ns() else f"ip netns exec {netns} {command}"


def snapshot_ruleset(snap: Snapshot, name: str, family: Family, netns: str) -> Ruleset:
    """The ``family`` ruleset of namespace ``netns``, or a one-line refusal saying why not."""
    state = snap.namespace(netns)
    if state is None:
        known = ", ".join(ns.name or "main" for ns in snap.namespaces) or "none"
        raise InputError(f"{name}: no namespace {netns!r} in the snapshot (namespaces: {known})")
    ruleset = state.ruleset(family)
    if ruleset is None:
        kind = "iptables-save" if family is Family.IPV4 else "ip6tables-save"
        missing = snap.missing_of(kind, netns=netns)
        why = f" ({missing.reason})" if missing is not None else ""
        where = f" of namespace {netns}" if netns != _main_ns() else ""
        raise InputError(
            f"{name}: the snapshot has no {kind} output{where}{why}; collect it with "
            f"`{_save_command(family, netns)}`"
        )
    return ruleset


def snapshot_rulesets(snap: Snapshot, netns: str) -> tuple[Ruleset, ...]:
    """Every ruleset of namespace ``netns`` (IPv4 and IPv6), as the snapshot has them."""
    state = snap.namespace(netns)
    if state is None:
        return ()
    return tuple(r for r in (state.iptables, state.ip6tables) if r is not None)


def snapshot_ipsets(snap: Snapshot, netns: str) -> IpSets | None:
    state = snap.namespace(netns)
    return state.ipsets if state is not None else None
