"""Break a running lab on purpose, one small reversible change at a time, and mend it again.

A fault is a list of commands that make it and a list that undo it (argument lists, never a
shell). Both are written to the lab's ledger *before* the fault is made, so whatever happens to
the test that made it, :func:`undo_faults` (and :meth:`Faults.undo_all`) can still revert
exactly that change from the ledger alone: a rule deleted by its full specification, a flow
added back as it was dumped, a sysctl or MTU set back to the value read before. Undoing is
recorded too, so a fault is never reverted twice.

Faults stand for what goes wrong on real nodes: a DROP rule in a security-group chain, an
OpenFlow flow gone, a stale forwarding entry, an MTU too small for tunnelled packets, strict
reverse-path filtering, IP forwarding off, stricter conntrack, one end of a veth down.

Example::

    faults = Faults(Ledger(lab.ledger_path))
    fault = faults.inject(link_down(node.netns, "qvb1234"))
    ...send, observe...
    faults.undo(fault)
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nodetrace.lab.ledger import Entry, Ledger
from nodetrace.lab.run import CommandError, run

FAULT = "fault"
UNDONE = "fault-undone"
COMMENT_PREFIX = "nodetrace-fault"
"""Every rule a fault inserts carries this comment (with the fault's id): it can be told apart
from the rules the node had, and deleted by its exact specification."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command of a fault: its arguments, the namespace it runs in, and extra environment
    (``OVS_RUNDIR`` for a lab's private Open vSwitch)."""

    argv: tuple[str, ...]
    netns: str = ""
    env: tuple[tuple[str, str], ...] = ()

    def run(self, *, check: bool = True) -> str:
        env = {**os.environ, **dict(self.env)} if self.env else None
        return run(self.argv, netns=self.netns or None, env=env, check=check).stdout

    def to_json(self) -> dict[str, object]:
        return {
            "argv": list(self.argv),
            "netns": self.netns,
            "env": [list(e) for e in self.env],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Command:
        argv = data.get("argv")
        env = data.get("env") or []
        if not isinstance(argv, list) or not isinstance(env, list):
            raise ValueError("a fault command needs argv and env lists")
        return cls(
            tuple(str(a) for a in argv),
            str(data.get("netns", "")),
            tuple((str(k), str(v)) for k, v in env),
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """A change that breaks the lab: what it is (for people), how to make it, how to undo it."""

    what: str
    make: tuple[Command, ...]
    undo: tuple[Command, ...]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])


class Faults:
    """The faults of one lab, recorded in its ledger before they are made."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def inject(self, fault: Fault) -> Fault:
        """Record ``fault``, then make it; if making it fails, undo what may have been made."""
        data = {"what": fault.what, "undo": [c.to_json() for c in fault.undo]}
        self.ledger.record(Entry(FAULT, fault.id, extra=json.dumps(data)))
        try:
            for command in fault.make:
                command.run()
        except BaseException:
            self.undo(fault)
            raise
        return fault

    def undo(self, fault: Fault) -> list[str]:
        """Undo one fault (each command tried, whatever the others did); return the failures."""
        return _revert(self.ledger, fault.id, fault.undo)

    def undo_all(self) -> list[str]:
        return undo_faults(self.ledger)


def pending(ledger: Ledger) -> list[tuple[str, str, tuple[Command, ...]]]:
    """The faults recorded and not undone yet: (id, what, undo commands), newest first."""
    entries = ledger.entries()
    done = {e.id for e in entries if e.kind == UNDONE}
    out = []
    for e in reversed(entries):
        if e.kind != FAULT or e.id in done:
            continue
        try:
            data = json.loads(e.extra)
            commands = tuple(Command.from_json(c) for c in data["undo"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn record: the fault was never made
        out.append((e.id, str(data.get("what", "")), commands))
    return out


def undo_faults(ledger: Ledger) -> list[str]:
    """Undo every fault the ledger names that was not undone yet, newest first."""
    problems: list[str] = []
    for fault_id, _, commands in pending(ledger):
        problems += _revert(ledger, fault_id, commands)
    return problems


def _revert(ledger: Ledger, fault_id: str, commands: Sequence[Command]) -> list[str]:
    problems = []
    for command in commands:
        try:
            command.run()
        except CommandError as err:
            problems.append(str(err))
    ledger.record(Entry(UNDONE, fault_id))
    return problems


# --- the faults ---------------------------------------------------------------------------


def drop_rule(
    netns: str, backend: str, chain: str, match: Sequence[str], *, table: str = "filter"
) -> Fault:
    """A ``-j DROP`` rule for ``match`` inserted first in ``chain`` (iptables-``backend``)."""
    fault_id = uuid.uuid4().hex[:10]
    tool = f"iptables-{backend}"
    spec = (*match, "-m", "comment", "--comment", f"{COMMENT_PREFIX} {fault_id}", "-j", "DROP")
    return Fault(
        f"DROP rule first in {table} {chain}: {' '.join(match)}",
        (Command((tool, "-t", table, "-I", chain, "1", *spec), netns),),
        (Command((tool, "-t", table, "-D", chain, *spec), netns),),
        fault_id,
    )


_COUNTERS = re.compile(r"\b(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]*,?\s*")


def delete_flow(
    netns: str, ovs_rundir: str, bridge: str, table: int, priority: int, match: str = ""
) -> Fault:
    """Delete the one flow of ``bridge`` with exactly this table, priority and match; undoing
    adds it back as ``dump-flows`` showed it (cookie and actions included)."""
    env = _ovs_env(ovs_rundir)
    selector = ",".join(x for x in (f"table={table}", f"priority={priority}", match) if x)
    ofctl = ("ovs-ofctl", "-O", "OpenFlow13")
    dump = Command((*ofctl, "dump-flows", bridge, f"table={table}"), netns, env).run()
    flows = [_COUNTERS.sub("", line).strip() for line in dump.splitlines() if "cookie=" in line]
    flows = [f for f in flows if _flow_key(f) == (priority, match)]
    if len(flows) != 1:
        raise CommandError(f"{bridge}: expected one flow {selector!r}, found {len(flows)}")
    return Fault(
        f"flow deleted from {bridge}: {flows[0]}",
        (Command((*ofctl, "--strict", "del-flows", bridge, selector), netns, env),),
        (Command((*ofctl, "add-flow", bridge, flows[0]), netns, env),),
    )


def _flow_key(flow: str) -> tuple[int, str]:
    """The priority and match of a dumped flow (``cookie=..., table=..., priority=P,MATCH
    actions=...``), to find the one flow a strict selector names."""
    head = flow.split(" actions=", 1)[0]
    fields = [f.strip() for f in head.replace(", ", ",").split(",") if f.strip()]
    priority = 32768
    match = []
    for f in fields:
        key = f.split("=", 1)[0]
        if key == "priority":
            priority = int(f.split("=", 1)[1])
        elif key not in ("cookie", "table", "reset_counts"):
            match.append(f)
    return priority, ",".join(match)


def static_fdb(netns: str, mac: str, port: str) -> Fault:
    """A static forwarding entry sending ``mac`` to bridge port ``port`` (a stale one when the
    MAC lives behind another port)."""
    entry = (mac, "dev", port, "master", "static")
    return Fault(
        f"static FDB entry {mac} -> {port}",
        (Command(("bridge", "fdb", "replace", *entry), netns),),
        (Command(("bridge", "fdb", "del", *entry), netns),),
    )


def learned_mac(
    netns: str, ovs_rundir: str, bridge: str, vlan: int, mac: str, *, tunnel_bridge: str = ""
) -> Fault:
    """Open vSwitch's MAC learning about to be misled (the frame that misleads it is sent by
    the caller, from the wrong port). Undoing makes ``bridge`` forget what it learned (OVS
    deletes only static entries one by one, so its whole learned table goes; the VMs' next
    frames teach it again) and, with ``tunnel_bridge``, deletes the flow its ``learn()``
    table 20 made for ``mac`` on VLAN ``vlan``."""
    env = _ovs_env(ovs_rundir)
    ctl = ("ovs-appctl", "-t", f"{ovs_rundir}/ovs-vswitchd.ctl")
    undo = [Command((*ctl, "fdb/flush", bridge), netns, env)]
    if tunnel_bridge:
        learned = f"table=20,vlan_tci=0x{vlan:04x}/0x0fff,dl_dst={mac}"
        delete = ("ovs-ofctl", "-O", "OpenFlow13", "del-flows", tunnel_bridge, learned)
        undo.append(Command(delete, netns, env))
    return Fault(f"{mac} learned on the wrong port of {bridge}", (), tuple(undo))


def set_mtu(netns: str, device: str, mtu: int) -> Fault:
    old = _link(netns, device)["mtu"]
    return Fault(
        f"MTU of {device} {old} -> {mtu}",
        (Command(("ip", "link", "set", "dev", device, "mtu", str(mtu)), netns),),
        (Command(("ip", "link", "set", "dev", device, "mtu", str(old)), netns),),
    )


def set_sysctl(netns: str, key: str, value: str) -> Fault:
    old = Command(("sysctl", "-n", key), netns).run().strip()
    return Fault(
        f"sysctl {key} {old} -> {value}",
        (Command(("sysctl", "-q", "-w", f"{key}={value}"), netns),),
        (Command(("sysctl", "-q", "-w", f"{key}={old}"), netns),),
    )


def link_down(netns: str, device: str) -> Fault:
    flags = _link(netns, device).get("flags")
    if not isinstance(flags, list) or "UP" not in flags:
        raise CommandError(f"{device} is down already: setting it down breaks nothing")
    return Fault(
        f"{device} set down",
        (Command(("ip", "link", "set", "dev", device, "down"), netns),),
        (Command(("ip", "link", "set", "dev", device, "up"), netns),),
    )


def veth_to_host(
    netns: str, device: str, host_netns: str, address: str, host_address: str
) -> Fault:
    """Not a fault but a change of the same kind: a veth from ``netns`` (``device``, with
    ``address``) to a small host in ``host_netns`` (``eth0`` with ``host_address``, its default
    route through ``address``), for faults on a routed path. Undone by deleting the veth."""
    gateway = address.split("/")[0]
    return Fault(
        f"veth {device} to {host_netns}",
        (
            Command(
                (
                    "ip",
                    "link",
                    "add",
                    device,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    host_netns,
                ),
                netns,
            ),
            Command(("ip", "addr", "add", address, "dev", device), netns),
            Command(("ip", "link", "set", "dev", device, "up"), netns),
            Command(("ip", "addr", "add", host_address, "dev", "eth0"), host_netns),
            Command(("ip", "link", "set", "dev", "eth0", "up"), host_netns),
            Command(("ip", "route", "add", "default", "via", gateway), host_netns),
        ),
        (Command(("ip", "link", "del", "dev", device), netns),),
    )


def _link(netns: str, device: str) -> dict[str, object]:
    out = Command(("ip", "-j", "link", "show", "dev", device), netns).run()
    try:
        links = json.loads(out)
    except ValueError:
        links = None
    if not isinstance(links, list) or len(links) != 1 or not isinstance(links[0], dict):
        raise CommandError(f"ip -j link show dev {device} in {netns}: unexpected output")
    return dict(links[0])


def _ovs_env(rundir: str) -> tuple[tuple[str, str], ...]:
    return tuple((var, rundir) for var in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"))
