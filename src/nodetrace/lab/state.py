"""Where a named lab keeps its ledger, run folders and description, and how to find it again.

A lab named NAME lives in ``ROOT/NAME`` (``ROOT`` is ``/run/nodetrace/labs`` unless
``NODETRACE_LAB_ROOT`` or ``--root`` says otherwise; ``/run`` is emptied at boot, as the
namespaces are). The folder holds ``ledger`` (what was created, for ``down``), ``scenario.toml``
(the input), ``lab.json`` (namespaces, addresses and the build's progress) and one ``ovs-NODE``
run folder per node. ``lab.json`` is rewritten atomically, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nodetrace.errors import UsageError

DEFAULT_ROOT = Path("/run/nodetrace/labs")
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def lab_root(root: str | Path | None = None) -> Path:
    if root is not None:
        return Path(root)
    return Path(os.environ.get("NODETRACE_LAB_ROOT", DEFAULT_ROOT))


def check_lab_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"lab name {name!r}: use 1-20 lower-case letters, digits and '-', starting with a letter"
        )
    return name


@dataclass(frozen=True, slots=True)
class VmInfo:
    """A VM of a built lab: its namespace and the Neutron port it stands for."""

    name: str
    node: str
    netns: str
    port_id: str
    mac: str
    ips: tuple[str, ...]
    network: str
    mtu: int


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    netns: str
    ovs_rundir: str
    underlay_ip: str
    namespaces: tuple[str, ...] = ()
    """The node's own namespaces besides its main one (its routers'), collected with it."""


@dataclass(frozen=True, slots=True)
class LabInfo:
    """``lab.json``: what a lab is made of, for ``status``, ``exec``, ``send`` and ``snapshot``."""

    name: str
    scenario: str
    backend: str
    """``legacy`` or ``nft``: which iptables the rules were loaded with."""
    status: str
    """``building`` while ``up`` runs (or after it died), ``ready`` once complete."""
    up_pid: int
    underlay_netns: str
    underlay_ip: str
    nodes: tuple[NodeInfo, ...] = ()
    vms: tuple[VmInfo, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise UsageError(f"lab {self.name} has no node {name!r} (nodes: {_names(self.nodes)})")

    def vm(self, name: str) -> VmInfo:
        for v in self.vms:
            if v.name == name:
                return v
        raise UsageError(f"lab {self.name} has no VM {name!r} (VMs: {_names(self.vms)})")

    def netns_of(self, target: str) -> str:
        """The namespace of a VM or node name (``underlay`` for the underlay switch)."""
        if target == "underlay":
            return self.underlay_netns
        known = {n.name: n.netns for n in self.nodes} | {v.name: v.netns for v in self.vms}
        if target in known:
            return known[target]
        raise UsageError(
            f"lab {self.name} has no VM or node {target!r} "
            f"(VMs: {_names(self.vms)}; nodes: {_names(self.nodes)}; or underlay)"
        )


def _names(items: tuple[NodeInfo, ...] | tuple[VmInfo, ...]) -> str:
    return ", ".join(i.name for i in items) or "none"


class LabDir:
    """The folder of one named lab."""

    def __init__(self, name: str, root: str | Path | None = None) -> None:
        self.name = check_lab_name(name)
        self.path = lab_root(root) / name

    @property
    def ledger_path(self) -> Path:
        return self.path / "ledger"

    @property
    def info_path(self) -> Path:
        return self.path / "lab.json"

    def ovs_rundir(self, node: str) -> Path:
        return self.path / f"ovs-{node}"

    def exists(self) -> bool:
        return self.path.exists()

    def write_info(self, info: LabInfo) -> None:
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.info_path)

    def read_info(self) -> LabInfo | None:
        """The lab's description, or ``None`` if ``up`` died before writing it."""
        try:
            data: dict[str, Any] = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return LabInfo(
            name=data["name"],
            scenario=data["scenario"],
            backend=data["backend"],
            status=data["status"],
            up_pid=int(data["up_pid"]),
            underlay_netns=data["underlay_netns"],
            underlay_ip=data["underlay_ip"],
            nodes=tuple(
                NodeInfo(**{**n, "namespaces": tuple(n.get("namespaces", ()))})
                for n in data.get("nodes", ())
            ),
            vms=tuple(VmInfo(**{**v, "ips": tuple(v["ips"])}) for v in data.get("vms", ())),
            timings=dict(data.get("timings", {})),
        )


def list_labs(root: str | Path | None = None) -> list[str]:
    base = lab_root(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and _NAME.match(p.name))


def find_lab(name: str | None, root: str | Path | None = None) -> LabDir:
    """The lab called ``name``; without a name, the only lab there is."""
    if name is not None:
        lab = LabDir(name, root)
        if not lab.exists():
            raise UsageError(
                f"no lab named {name!r} (labs: {', '.join(list_labs(root)) or 'none'})"
            )
        return lab
    labs = list_labs(root)
    if len(labs) == 1:
        return LabDir(labs[0], root)
    if not labs:
        raise UsageError(f"no lab is up (looked in {lab_root(root)})")
    raise UsageError(f"several labs are up ({', '.join(labs)}): pick one with --name")
