"""Create and remove lab objects (namespaces, OVS instances, folders) through a ledger.

Namespaces are created with unique names and never adopted: if a name exists already, creation
fails rather than taking over something this lab did not make. Daemons are stopped by the pid
recorded at start, after checking that the pid still runs the program started from the lab's
own run folder (a recycled pid is left alone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from nodetrace.lab.ledger import Entry, Ledger
from nodetrace.lab.run import CommandError, run


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


class Resources:
    """What one lab owns. Create objects through it; :meth:`teardown` removes all of them."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def add_netns(self, name: str) -> str:
        if netns_exists(name):
            raise CommandError(f"namespace {name} exists already; it is not this lab's")
        self.ledger.record(Entry("netns", name))
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def add_dir(self, path: Path) -> Path:
        self.ledger.record(Entry("dir", str(path)))
        path.mkdir(parents=True, exist_ok=False)
        return path

    def started_daemon(self, pidfile: Path, rundir: Path) -> int:
        """Record a daemon that wrote ``pidfile``; call right after it detached."""
        deadline = time.monotonic() + 5
        while True:
            try:
                pid = int(pidfile.read_text().strip())
                break
            except (FileNotFoundError, ValueError):
                if time.monotonic() > deadline:
                    raise CommandError(f"{pidfile}: daemon wrote no pid") from None
                time.sleep(0.01)
        self.ledger.record(Entry("daemon", str(pid), str(rundir), pidfile.name))
        return pid

    def teardown(self, *, timeout: float = 5.0) -> list[str]:
        """Remove everything in the ledger, newest first; return what could not be removed."""
        problems: list[str] = []
        entries = list(reversed(self.ledger.entries()))
        daemons = [e for e in entries if e.kind == "daemon"]
        _stop_daemons(daemons, timeout, problems)
        for e in entries:
            if e.kind == "netns" and netns_exists(e.id):
                try:
                    run(["ip", "netns", "del", e.id])
                except CommandError as err:
                    problems.append(str(err))
            elif e.kind == "dir":
                shutil.rmtree(e.id, ignore_errors=True)
                if os.path.exists(e.id):
                    problems.append(f"{e.id}: could not be removed")
        return problems


def daemon_owned(pid: int, rundir: str) -> bool:
    """True if ``pid`` is alive and was started with our run folder on its command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return rundir.encode() in cmdline


def _stop_daemons(daemons: list[Entry], timeout: float, problems: list[str]) -> None:
    live = [(int(e.id), e.path) for e in daemons if daemon_owned(int(e.id), e.path)]
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while live and time.monotonic() < deadline:
        live = [(p, d) for p, d in live if daemon_owned(p, d)]
        if live:
            time.sleep(0.02)
    for pid, rundir in live:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        time.sleep(0.05)
        if daemon_owned(pid, rundir):
            problems.append(f"daemon {pid} ({rundir}) survived SIGKILL")
