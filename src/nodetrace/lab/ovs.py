"""A private Open vSwitch instance (ovsdb-server + ovs-vswitchd, userspace datapath) in a netns.

Each instance has its own run folder, so several can run side by side and none touches the
system's /var/run/openvswitch. Every bridge must use ``datapath_type=netdev``: this kernel has
no openvswitch module, and ``ovs-vsctl add-br`` exits 0 even when the bridge failed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nodetrace.lab.resources import Resources
from nodetrace.lab.run import CommandError, run

SCHEMA_PATHS = ("/usr/share/openvswitch/vswitch.ovsschema",)


@dataclass(frozen=True, slots=True)
class OvsInstance:
    netns: str
    rundir: Path

    @property
    def db(self) -> str:
        return f"unix:{self.rundir}/db.sock"

    @property
    def env(self) -> dict[str, str]:
        d = str(self.rundir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}

    def vsctl(self, *args: str, timeout: float = 10.0) -> str:
        return run(
            ["ovs-vsctl", f"--db={self.db}", "--timeout=10", *args], env=self.env, timeout=timeout
        ).stdout

    def ofctl(self, *args: str, stdin: str | None = None) -> str:
        """Run ``ovs-ofctl``; it finds ``BR.mgmt`` through ``OVS_RUNDIR``."""
        return run(["ovs-ofctl", *args], env=self.env, input=stdin).stdout

    def appctl(self, *args: str) -> str:
        return run(
            ["ovs-appctl", "-t", str(self.rundir / "ovs-vswitchd.ctl"), *args], env=self.env
        ).stdout

    def add_bridge(self, name: str, *extra: Sequence[str]) -> None:
        """Add a netdev bridge in secure fail mode (no implicit NORMAL flow)."""
        args = ["--", "add-br", name]
        args += ["--", "set", "bridge", name, "datapath_type=netdev", "fail-mode=secure"]
        for e in extra:
            args += ["--", *e]
        self.vsctl(*args)
        err = self.vsctl("get", "interface", name, "error").strip()
        if err not in ("[]", ""):
            raise CommandError(f"bridge {name}: {err}")


def start_ovs(res: Resources, netns: str, rundir: Path) -> OvsInstance:
    """Start ovsdb-server and ovs-vswitchd inside ``netns`` with ``rundir`` as their home."""
    schema = next((p for p in SCHEMA_PATHS if Path(p).exists()), None)
    if schema is None:
        raise CommandError("Open vSwitch is not installed (no vswitch.ovsschema)")
    res.add_dir(rundir)
    inst = OvsInstance(netns, rundir)
    d = str(rundir)
    run(["ovsdb-tool", "create", f"{d}/conf.db", schema], env=inst.env)

    def daemon(program: str, *args: str) -> None:
        run(
            [program, *args, f"--pidfile={d}/{program}.pid", f"--unixctl={d}/{program}.ctl",
             f"--log-file={d}/{program}.log", "-vconsole:off", "--detach"],
            netns=netns,
            env=inst.env,
        )  # fmt: skip
        res.started_daemon(rundir / f"{program}.pid", rundir)

    daemon("ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock")
    inst.vsctl("--no-wait", "init")
    daemon("ovs-vswitchd", inst.db)
    return inst
