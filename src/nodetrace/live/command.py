"""Run a command of a live session: an argument list (never a shell), in a namespace if asked,
always with a timeout, its failure an error that names the command and what it printed."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from nodetrace.errors import NodetraceError

DEFAULT_TIMEOUT = 10.0
"""Long enough for ``iptables-save`` of a node with thousands of ports; a hung tool is an error."""


class CommandError(NodetraceError):
    """A command failed or timed out; the message carries the command and what it printed."""


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run in namespace ``netns`` (``""``: this process's own)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(
    argv: Sequence[str],
    *,
    netns: str = "",
    check: bool = True,
    input: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (in ``netns``) and return its result; raise on failure when ``check``."""
    cmd = in_netns(netns, argv)
    try:
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            # Its own session: a Ctrl-C at the terminal reaches the run, which decides, and
            # never kills an ``iptables -D`` half way through the removal.
            start_new_session=True,
        )
    except FileNotFoundError as err:
        raise CommandError(f"{cmd[0]}: not installed") from err
    except subprocess.TimeoutExpired as err:
        raise CommandError(f"{' '.join(cmd)}: timed out after {timeout:g}s") from err
    if check and proc.returncode != 0:
        raise CommandError(
            f"{' '.join(cmd)}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
        )
    return proc
