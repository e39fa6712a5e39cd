"""Bring a whole lab up and down: the underlay switch, every node, and the bookkeeping.

``up`` records each object in the lab's ledger before making it and marks the lab ``ready``
only at the end; if it fails it removes what it made. ``down`` removes exactly what the ledger
names, also after ``up`` was killed: daemons by their recorded pid (or, if ``up`` died before
recording one, by their command line naming the lab's own run folder), namespaces by name, and
the lab's folder last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from nodetrace.errors import UsageError
from nodetrace.lab.ledger import Entry, Ledger
from nodetrace.lab.node import (
    BACKENDS,
    UNDERLAY_PREFIX,
    BuiltNode,
    build_node,
    netlink,
    sysctl,
)
from nodetrace.lab.resources import Resources, daemon_owned, netns_exists
from nodetrace.lab.run import CommandError, have
from nodetrace.lab.state import LabDir, LabInfo, NodeInfo, VmInfo, find_lab
from nodetrace.neutron.generate import generate_node
from nodetrace.neutron.ovs_agent import BR_PHYS
from nodetrace.neutron.scenario import Scenario

TOOLS = (
    "ip", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl", "ipset", "ethtool", "sysctl",
)  # fmt: skip
UNDERLAY_BRIDGE = "underlay"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def process_start(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def up_running(info: LabInfo) -> bool:
    """True while the ``up`` that built the lab is still at work."""
    start = process_start(info.up_pid)
    return info.status == "building" and start is not None and start == info.timings.get("up_start")


def _underlay_address(scenario: Scenario) -> IPv4Address:
    nets = {IPv4Network(f"{n.underlay_ip}/{UNDERLAY_PREFIX}", strict=False) for n in scenario.nodes}
    if len(nets) != 1:
        raise UsageError(
            "the lab wires all nodes to one underlay switch: their underlay_ip must share a /24 "
            f"(got {', '.join(sorted(str(n) for n in nets))})"
        )
    net = nets.pop()
    used = {n.underlay_ip for n in scenario.nodes}
    for host in reversed(list(net.hosts())):
        if host not in used:
            return host
    raise UsageError(f"no free address left in {net} for the underlay switch")


def check_prerequisites(backend: str) -> None:
    if os.geteuid() != 0:
        raise UsageError("the lab needs root (network namespaces, Open vSwitch, iptables)")
    if backend not in BACKENDS:
        raise UsageError(f"--iptables {backend!r}: expected legacy or nft")
    tools = (*TOOLS, f"iptables-{backend}-restore", f"ip6tables-{backend}-restore")
    missing = [t for t in tools if not have(t)]
    if missing:
        raise UsageError("the lab needs these programs: " + ", ".join(missing))


def lab_up(
    scenario: Scenario,
    scenario_text: str,
    *,
    name: str,
    backend: str = "nft",
    root: str | Path | None = None,
    progress: Progress = _quiet,
) -> LabInfo:
    """Build the lab ``name`` for ``scenario``; on failure remove what was made, then raise."""
    check_prerequisites(backend)
    lab = LabDir(name, root)
    underlay_ip = _underlay_address(scenario)
    lab.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lab.path.mkdir()
    except FileExistsError:
        raise UsageError(
            f"a lab named {name!r} exists already ({lab.path}); "
            f"remove it with: nodetrace lab down --name {name}"
        ) from None
    ledger = Ledger(lab.ledger_path)
    ledger.record(Entry("dir", str(lab.path)))
    res = Resources(ledger)
    t0 = time.monotonic()
    info = LabInfo(
        name=name,
        scenario=scenario.source,
        backend=backend,
        status="building",
        up_pid=os.getpid(),
        underlay_netns=f"{name}-underlay",
        underlay_ip=str(underlay_ip),
        timings={"up_start": float(process_start(os.getpid()) or 0)},
    )
    try:
        (lab.path / "scenario.toml").write_text(scenario_text, encoding="utf-8")
        lab.write_info(info)
        _build_underlay(res, info.underlay_netns, underlay_ip)
        nodes: list[NodeInfo] = []
        vms: list[VmInfo] = []
        built_nodes: list[BuiltNode] = []
        for i, node in enumerate(scenario.nodes):
            progress(f"node {node.name}")
            state = generate_node(scenario, node.name)
            built = build_node(
                res,
                state,
                lab=name,
                rundir=lab.ovs_rundir(node.name),
                backend=backend,
                underlay_netns=info.underlay_netns,
                underlay_port=f"u{i}",
            )
            _attach_to_underlay(info.underlay_netns, f"u{i}")
            built_nodes.append(built)
            nodes.append(built.info)
            vms += built.vms
        prime_tunnel_neighbours(built_nodes)
        timings = dict(info.timings, up_seconds=round(time.monotonic() - t0, 3))
        info = replace(info, status="ready", nodes=tuple(nodes), vms=tuple(vms), timings=timings)
        lab.write_info(info)
        return info
    except BaseException:
        progress("failed: removing what was built")
        res.teardown()
        shutil.rmtree(lab.path, ignore_errors=True)
        raise


def prime_tunnel_neighbours(nodes: Sequence[BuiltNode]) -> None:
    """Tell each node's OVS the MAC of every peer's tunnel endpoint.

    OVS resolves tunnel next hops itself and drops the packet that triggered the resolution;
    static entries make the first packet across a tunnel behave like every later one.
    """
    macs = {}
    for node in nodes:
        with netlink(node.info.netns) as nl:
            link = nl.get_links(nl.link_lookup(ifname=BR_PHYS)[0])[0]
            macs[node.info.name] = link.get_attr("IFLA_ADDRESS")
    for node in nodes:
        node.ovs.appctl("tnl/neigh/aging", "3600")
        for peer in nodes:
            if peer is not node:
                node.ovs.appctl(
                    "tnl/neigh/set", BR_PHYS, peer.info.underlay_ip, macs[peer.info.name]
                )


def _build_underlay(res: Resources, netns: str, address: IPv4Address) -> None:
    """The switch every node's underlay cable plugs into; it also gets an address, so packets
    can be sent from the underlay as from another host on the provider network."""
    res.add_netns(netns)
    sysctl(netns, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
    with netlink(netns) as nl:
        nl.link("add", ifname=UNDERLAY_BRIDGE, kind="bridge")
        idx = nl.link_lookup(ifname=UNDERLAY_BRIDGE)[0]
        nl.addr("add", index=idx, address=str(address), prefixlen=UNDERLAY_PREFIX)
        nl.link("set", index=idx, state="up")


def _attach_to_underlay(netns: str, port: str) -> None:
    with netlink(netns) as nl:
        bridge = nl.link_lookup(ifname=UNDERLAY_BRIDGE)[0]
        idx = nl.link_lookup(ifname=port)[0]
        nl.link("set", index=idx, master=bridge, state="up")


@dataclass(frozen=True, slots=True)
class DownResult:
    removed: bool
    problems: tuple[str, ...]


def lab_down(
    name: str | None, *, force: bool = False, root: str | Path | None = None
) -> DownResult:
    """Remove the lab; with ``force`` also stop an ``up`` still building it and drop the lab's
    folder even if something could not be removed (the problems are still reported)."""
    lab = find_lab(name, root)
    info = lab.read_info()
    if info is not None and up_running(info):
        if not force:
            raise UsageError(
                f"lab {lab.name} is still being built (pid {info.up_pid}); wait, or use --force"
            )
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.up_pid, signal.SIGKILL)
        _wait_gone(info.up_pid, 2.0)
    ledger = Ledger(lab.ledger_path)
    res = Resources(ledger)
    entries = ledger.entries()
    rundirs = [e.id for e in entries if e.kind == "dir" and Path(e.id).name.startswith("ovs-")]
    problems = list(
        _stop_unrecorded_daemons(rundirs, {int(e.id) for e in entries if e.kind == "daemon"})
    )
    problems += res.teardown()
    removed = False
    if force or not problems:
        shutil.rmtree(lab.path, ignore_errors=True)
        removed = not lab.path.exists()
    return DownResult(removed, tuple(problems))


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while process_start(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def _stop_unrecorded_daemons(rundirs: Sequence[str], recorded: set[int]) -> list[str]:
    """Daemons that detached but whose pid ``up`` did not get to record before it died.

    They are recognised by their command line naming one of this lab's own run folders,
    which nothing else uses.
    """
    problems = []
    markers = [d.encode() for d in rundirs]
    if not markers:
        return []
    for entry in Path("/proc").iterdir():
        if (
            not entry.name.isdigit()
            or int(entry.name) in recorded
            or int(entry.name) == os.getpid()
        ):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if not any(m + b"/" in cmdline or cmdline.endswith(m) for m in markers):
            continue
        pid = int(entry.name)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 2.0)
        if process_start(pid) is not None:
            problems.append(f"process {pid} of this lab survived SIGKILL")
    return problems


@dataclass(frozen=True, slots=True)
class NamespaceStatus:
    name: str
    netns: str
    present: bool


def namespace_report(info: LabInfo) -> list[NamespaceStatus]:
    out = [NamespaceStatus("underlay", info.underlay_netns, netns_exists(info.underlay_netns))]
    out += [NamespaceStatus(n.name, n.netns, netns_exists(n.netns)) for n in info.nodes]
    out += [
        NamespaceStatus(n.name, ns, netns_exists(ns)) for n in info.nodes for ns in n.namespaces
    ]
    out += [NamespaceStatus(v.name, v.netns, netns_exists(v.netns)) for v in info.vms]
    return out


def daemons_alive(lab: LabDir) -> list[tuple[int, bool]]:
    """Each recorded daemon and whether it still runs from this lab's run folder."""
    entries = Ledger(lab.ledger_path).entries()
    return [(int(e.id), daemon_owned(int(e.id), e.path)) for e in entries if e.kind == "daemon"]


def lab_exec(info: LabInfo, target: str, argv: Sequence[str]) -> int:
    """Run ``argv`` inside a VM's (or node's) namespace with the caller's terminal."""
    if not argv:
        raise UsageError("nothing to run: give a command after --")
    netns = info.netns_of(target)
    if not netns_exists(netns):
        raise UsageError(f"namespace {netns} of {target} is gone; is the lab up?")
    try:
        return subprocess.call(["ip", "netns", "exec", netns, *argv])
    except FileNotFoundError as err:
        raise CommandError(f"ip: not installed ({err})") from None
