"""Read a folder or an archive as a tree of files, safely: nothing outside it is ever read.

Snapshots come from other machines. An archive is read member by member in memory, never
extracted, so no member can be written anywhere; member names that are absolute or climb with
``..``, device files, and links whose target leaves the archive are skipped and reported. A
folder is walked without following symlinked folders, and a symlinked file is read only when its
real path stays inside the folder.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from nodetrace.errors import InputError

MAX_FILE_BYTES = 512 * 1024 * 1024
"""Larger files are refused: no command output of a node comes near this."""


@dataclass
class Tree(ABC):
    """Files by relative POSIX path, and what was skipped (with the reason)."""

    name: str
    problems: list[str] = field(default_factory=list)

    @abstractmethod
    def files(self) -> list[str]: ...

    @abstractmethod
    def read(self, path: str) -> bytes: ...

    def read_text(self, path: str) -> str:
        return self.read(path).decode("utf-8", "replace")

    def display(self, path: str) -> str:
        """How to name a file of this tree in a message."""
        return f"{self.name}/{path}" if not self.name.endswith("/") else self.name + path


class FolderTree(Tree):
    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self.root = root.resolve()
        self._files: dict[str, Path] = {}
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            base = Path(dirpath)
            for d in list(dirnames):
                if (base / d).is_symlink():
                    self.problems.append(f"{self._rel(base / d)}: symlinked folder not followed")
            for f in filenames:
                path = base / f
                rel = self._rel(path)
                real = path.resolve()
                if not real.is_relative_to(self.root):
                    self.problems.append(f"{rel}: symlink leads outside the snapshot; skipped")
                    continue
                if not real.is_file():
                    continue
                self._files[rel] = real

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def files(self) -> list[str]:
        return sorted(self._files)

    def read(self, path: str) -> bytes:
        real = self._files.get(path)
        if real is None:
            raise InputError(f"{self.display(path)}: no such file in the snapshot")
        if real.stat().st_size > MAX_FILE_BYTES:
            raise InputError(f"{self.display(path)}: larger than {MAX_FILE_BYTES} bytes")
        return real.read_bytes()


def _clean_member_name(name: str) -> str | None:
    """The member's path inside the archive, or ``None`` when it would point outside."""
    if name.startswith("/") or "\\" in name:
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


class ArchiveTree(Tree):
    MAX_LINK_HOPS = 16

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        try:
            # Kept open for the tree's life: members are read on demand; close() ends it.
            self._tar = tarfile.open(path, "r:*")  # noqa: SIM115
            members = self._tar.getmembers()
        except tarfile.ReadError as err:
            # tarfile lists every decompressor it tried, one per line: say it in one.
            first = str(err).splitlines()[0].rstrip(":")
            why = "not a tar archive, plain or compressed" if "\n" in str(err) else first
            raise InputError(f"{path}: not a readable archive ({why})") from None
        except (tarfile.TarError, OSError, EOFError) as err:
            raise InputError(f"{path}: not a readable archive ({err})") from None
        self._regular: dict[str, tarfile.TarInfo] = {}
        links: dict[str, str] = {}
        for m in members:
            name = _clean_member_name(m.name)
            if name is None:
                self.problems.append(f"{m.name}: member name leaves the archive; skipped")
                continue
            if m.isfile():
                self._regular[name] = m
            elif m.issym() or m.islnk():
                target = self._link_target(name, m)
                if target is None:
                    self.problems.append(
                        f"{m.name}: link to {m.linkname!r} leaves the archive; skipped"
                    )
                else:
                    links[name] = target
            elif not m.isdir():
                self.problems.append(f"{m.name}: not a regular file (device, fifo); skipped")
        self._links = {}
        for name in links:
            resolved = self._resolve(name, links)
            if resolved is not None:
                self._links[name] = resolved
            else:
                self.problems.append(f"{name}: link does not lead to a file in the archive")

    @staticmethod
    def _link_target(name: str, m: tarfile.TarInfo) -> str | None:
        if m.linkname.startswith("/"):
            return None
        # A symlink is relative to its folder; a hard link names an archive path.
        joined = posixpath.join(posixpath.dirname(name), m.linkname) if m.issym() else m.linkname
        normal = posixpath.normpath(joined)
        if normal.startswith("../") or normal == "..":
            return None
        return _clean_member_name(normal)

    def _resolve(self, name: str, links: dict[str, str]) -> str | None:
        seen = 0
        while name in links and seen < self.MAX_LINK_HOPS:
            name = links[name]
            seen += 1
        return name if name in self._regular else None

    def files(self) -> list[str]:
        return sorted([*self._regular, *self._links])

    def read(self, path: str) -> bytes:
        member = self._regular.get(self._links.get(path, path))
        if member is None:
            raise InputError(f"{self.display(path)}: no such file in the archive")
        if member.size > MAX_FILE_BYTES:
            raise InputError(f"{self.display(path)}: larger than {MAX_FILE_BYTES} bytes")
        try:
            handle = self._tar.extractfile(member)
            return handle.read() if handle is not None else b""
        except (tarfile.TarError, OSError, EOFError) as err:
            raise InputError(f"{self.display(path)}: cannot be read ({err})") from None

    def close(self) -> None:
        self._tar.close()


def open_tree(path: Path) -> Tree:
    """A folder or an archive (``.tar``, compressed or not) as a :class:`Tree`."""
    if path.is_dir():
        return FolderTree(path)
    if path.is_file():
        return ArchiveTree(path)
    if path.exists():
        raise InputError(f"{path}: not a file or folder (a device, fifo or socket)")
    raise InputError(f"{path}: no such file or folder")


@dataclass(frozen=True)
class SubTree:
    """A view of one folder of a tree (an archive usually wraps everything in one top folder)."""

    tree: Tree
    prefix: str
    """Empty, or a folder path ending with ``/``."""

    def files(self) -> list[str]:
        n = len(self.prefix)
        return [f[n:] for f in self.tree.files() if f.startswith(self.prefix)]

    def exists(self, path: str) -> bool:
        return (self.prefix + path) in set(self.tree.files())

    def read_text(self, path: str) -> str:
        return self.tree.read_text(self.prefix + path)

    def display(self, path: str) -> str:
        return self.tree.display(self.prefix + path)


def find_root(tree: Tree, markers: tuple[str, ...]) -> SubTree:
    """The shallowest folder holding one of ``markers`` (a file or a folder name).

    Falls back to the single top folder of an archive, or the tree itself.
    """
    files = tree.files()
    best: str | None = None
    for f in files:
        parts = f.split("/")
        for i, part in enumerate(parts):
            if part in markers:
                prefix = "/".join(parts[:i])
                prefix = prefix + "/" if prefix else ""
                if best is None or prefix.count("/") < best.count("/"):
                    best = prefix
                break
    if best is not None:
        return SubTree(tree, best)
    tops = {f.split("/", 1)[0] for f in files if "/" in f}
    if len(tops) == 1 and all("/" in f for f in files):
        return SubTree(tree, tops.pop() + "/")
    return SubTree(tree, "")
