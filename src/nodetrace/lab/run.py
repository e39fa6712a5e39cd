"""Run commands for the lab: argument lists only (never a shell), optionally inside a netns."""

from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Self

from nodetrace.errors import NodetraceError


class CommandError(NodetraceError):
    """A lab command failed; the message carries the command and what it printed."""


class Closing(ABC):
    """A handle used in a ``with`` block: leaving the block, however, calls :meth:`close`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    @abstractmethod
    def close(self) -> None:
        """Release what the handle holds."""


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    input: str | None = None,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (in ``netns`` if given) and return its result; raise on failure if ``check``."""
    cmd = in_netns(netns, argv)
    try:
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
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


def have(*tools: str) -> bool:
    """True when every named program is on PATH."""
    return all(shutil.which(t) for t in tools)
