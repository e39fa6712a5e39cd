"""Read a running node's counters for one :class:`~nodetrace.model.path_counters.WatchPlan`,
read-only.

Only the tables the plan needs are read: the rulesets of the namespaces the path crosses
(``iptables-save -c`` of the backend the node's ruleset came from), the flow dumps of its
bridges, ``ip -s -j link``, ``nstat -asz`` and ``conntrack -S`` of those namespaces, and Open
vSwitch's interface statistics and datapath lookups. Every command is an argument list with a
timeout; none writes (``nstat -s`` leaves its history file alone). A command that is missing,
fails or times out makes its table *unknown* in the reading, with the reason, never zero.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.counters import CounterSource, CounterTables, Stats
from nodetrace.model.netfilter import Backend, Ruleset
from nodetrace.model.openflow import FlowDump
from nodetrace.model.packet import Family
from nodetrace.model.path_counters import WatchPlan
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.parsers.conntrack_stats import parse_conntrack_stats
from nodetrace.parsers.ip_stats import parse_ip_stats
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.nstat import parse_nstat
from nodetrace.parsers.ovs_dpctl_show_stats import parse_ovs_dpctl_show_stats
from nodetrace.parsers.ovs_interface_statistics import parse_ovs_interface_statistics
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class NodeAccess:
    """How to reach the node: the namespace it lives in (a lab node; ``None``: this one) and
    a private Open vSwitch run folder (``None``: the system's)."""

    netns: str | None = None
    ovs_rundir: str | None = None
    timeout: float = DEFAULT_TIMEOUT


class CommandFailed(Exception):
    """A read that gave no usable output; the message is the reason said to the user."""


Runner = Callable[[Sequence[str], dict[str, str], float], str]
"""Runs one argv with an environment and a timeout; returns its output or raises
:class:`CommandFailed`. Tests give their own."""


def run_command(argv: Sequence[str], env: dict[str, str], timeout: float) -> str:
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        raise CommandFailed(f"{argv[0]}: not installed")
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, stdin=subprocess.DEVNULL,
            env=env, timeout=timeout, check=False, text=True, errors="replace",
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{' '.join(argv)}: timed out after {timeout:g}s") from None
    except OSError as err:
        raise CommandFailed(f"{argv[0]}: {err}") from None
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or [""])[0]
        raise CommandFailed(f"{' '.join(argv)}: exit {proc.returncode}: {first}")
    return proc.stdout


class CounterReader:
    """Reads the counters of one plan, again and again, from a running node."""

    def __init__(
        self,
        plan: WatchPlan,
        snapshot: Snapshot,
        access: NodeAccess,
        *,
        runner: Runner = run_command,
    ) -> None:
        self.plan = plan
        self.snapshot = snapshot
        self.access = access
        self.runner = runner
        self.sink = DiagnosticSink()

    # -- how to run -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["LC_ALL"] = "C"
        if self.access.ovs_rundir:
            for var in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR"):
                env[var] = self.access.ovs_rundir
        return env

    def argv(self, netns: str, *words: str) -> list[str]:
        """``words`` run in the plan's namespace ``netns`` (names are the snapshot's: the main
        one is the node's own, which for a lab node is itself a namespace)."""
        where = self.access.netns if netns == MAIN_NS else netns
        return ["ip", "netns", "exec", where, *words] if where else list(words)

    def run(self, argv: Sequence[str]) -> str:
        return self.runner(argv, self.env(), self.access.timeout)

    def ovs(self, program: str, *words: str) -> list[str]:
        rundir = self.access.ovs_rundir
        if program == "ovs-vsctl":
            db = [f"--db=unix:{rundir}/db.sock"] if rundir else []
            return self.argv(MAIN_NS, program, *db, "--timeout=5", *words)
        if program == "ovs-appctl":
            target = ["-t", f"{rundir}/ovs-vswitchd.ctl"] if rundir else []
            return self.argv(MAIN_NS, program, "--timeout=5", *target, *words)
        return self.argv(MAIN_NS, program, *words)

    def parsed(
        self,
        argv: Sequence[str],
        parser: Callable[..., T],
        why: dict[tuple[CounterSource, str], str],
        key: tuple[CounterSource, str],
        **options: object,
    ) -> T | None:
        try:
            text = self.run(argv)
            return parser(text, source=" ".join(argv), sink=self.sink, **options)
        except CommandFailed as err:
            why[key] = str(err)
        except ParseError as err:
            why[key] = str(err)
        return None

    # -- one reading ------------------------------------------------------------------------

    def save_command(self, netns: str, family: Family) -> str:
        """The ``*-save`` of the backend the node's ruleset came from (the plain command
        may stand for the other backend)."""
        state = self.snapshot.namespace(netns)
        ruleset = state.ruleset(family) if state is not None else None
        base = "iptables" if family is Family.IPV4 else "ip6tables"
        backend = ruleset.backend if ruleset is not None else Backend.UNKNOWN
        match backend:
            case Backend.LEGACY:
                return f"{base}-legacy-save"
            case Backend.NFT:
                return f"{base}-nft-save"
            case Backend.UNKNOWN:
                return f"{base}-save"

    def read(self) -> CounterTables:
        why: dict[tuple[CounterSource, str], str] = {}
        rulesets: dict[tuple[str, Family], Ruleset] = {}
        links: dict[str, Mapping[str, Stats]] = {}
        nstat: dict[str, Stats] = {}
        conntrack: dict[str, Stats] = {}
        families = [Family(f) for f in self.plan.families]
        for ns in self.plan.namespaces:
            for family in families:
                argv = self.argv(ns, self.save_command(ns, family), "-c")
                ruleset = self.parsed(
                    argv, parse_iptables_save, why, (CounterSource.IPTABLES, ns), family=family
                )
                if ruleset is not None:
                    rulesets[(ns, family)] = ruleset
            stats = self.parsed(
                self.argv(ns, "ip", "-s", "-s", "-j", "link", "show"),
                parse_ip_stats, why, (CounterSource.DEVICE, ns),
            )  # fmt: skip
            if stats is not None:
                links[ns] = stats
            found = self.parsed(
                self.argv(ns, "nstat", "-asz"), parse_nstat, why, (CounterSource.NSTAT, ns)
            )
            if found is not None:
                nstat[ns] = found
            found = self.parsed(
                self.argv(ns, "conntrack", "-S"),
                parse_conntrack_stats, why, (CounterSource.CONNTRACK, ns),
            )  # fmt: skip
            if found is not None:
                conntrack[ns] = found
        flows: dict[str, FlowDump] = {}
        for bridge in self.plan.bridges:
            dump = self.flows(bridge, why)
            if dump is not None:
                flows[bridge] = dump
        interfaces = dpaths = None
        if self.plan.bridges:
            interfaces = self.parsed(
                self.ovs("ovs-vsctl", "--format=json", "--data=json",
                         "--columns=name,statistics", "list", "Interface"),
                parse_ovs_interface_statistics, why, (CounterSource.OVS_INTERFACE, MAIN_NS),
            )  # fmt: skip
            dpaths = self.parsed(
                self.ovs("ovs-appctl", "dpctl/show", "-s"),
                parse_ovs_dpctl_show_stats, why, (CounterSource.DATAPATH, MAIN_NS),
            )  # fmt: skip
        return CounterTables(
            rulesets=rulesets,
            flows=flows,
            links=links,
            ovs_interfaces=interfaces or {},
            datapaths=dpaths or {},
            conntrack=conntrack,
            nstat=nstat,
            unreadable=why,
            taken_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
        )

    def flows(self, bridge: str, why: dict[tuple[CounterSource, str], str]) -> FlowDump | None:
        """The bridge's flows, in OpenFlow 1.3 when it refuses the default version."""
        key = (CounterSource.OPENFLOW, bridge)
        dump = self.parsed(self.ovs("ovs-ofctl", "dump-flows", bridge),
                           parse_ovs_ofctl_dump_flows, why, key)  # fmt: skip
        if dump is None:
            argv = self.ovs("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge)
            first = why.pop(key, "")
            dump = self.parsed(argv, parse_ovs_ofctl_dump_flows, why, key)
            if dump is None and first:
                why[key] = f"{first}; {why.get(key, '')}".strip("; ")
        return dump
