"""One machine-wide sysctl switched on by several tools at once, and restored by the last one.

``net.netfilter.nf_log_all_netns`` is global: the kernel logs legacy TRACE records of a
namespace other than the initial one only while it is 1. Labs and ``nodetrace live trace`` may
need it at the same time, so whoever turns it on registers as a *holder* in a locked JSON file
under ``/run/nodetrace-lab``; the first holder records the value it found and the last one to
leave writes it back. Holders whose process died (kill -9) are dropped on every change, so a
crash never pins the value: the next acquire or release, or ``nodetrace live cleanup``,
restores it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

HOLDERS_DIR = Path("/run/nodetrace-lab")
"""Shared by every lab and live run on the machine: who needs a sysctl on, and its old value."""


class SysctlHolders:
    """A machine-wide count of holders of one sysctl value, kept in a locked JSON file.

    A holder is a token ``PID:anything``; it stays a holder while that pid lives.
    """

    def __init__(self, sysctl: Path, wanted: str, *, registry: Path = HOLDERS_DIR) -> None:
        self.sysctl = sysctl
        self.wanted = wanted
        name = sysctl.name
        self.state = registry / f"{name}.json"
        self.lock = registry / f"{name}.lock"
        self.registry = registry

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, object]]:
        self.registry.mkdir(parents=True, exist_ok=True)
        with open(self.lock, "a+") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            try:
                state: dict[str, object] = (
                    json.loads(self.state.read_text()) if self.state.exists() else {}
                )
            except ValueError:
                state = {}
            holders = [h for h in _str_list(state.get("holders")) if pid_alive(h)]
            state["holders"] = holders
            yield state
            if state["holders"]:
                self.state.write_text(json.dumps(state))
            else:
                original = state.get("original")
                if isinstance(original, str):
                    self.sysctl.write_text(original)
                self.state.unlink(missing_ok=True)

    def acquire(self, token: str) -> str:
        """Add a holder; return the value the sysctl had before the first holder."""
        with self._locked() as state:
            holders = _str_list(state.get("holders"))
            if not holders or not isinstance(state.get("original"), str):
                state["original"] = self.sysctl.read_text().strip()
            state["holders"] = [*holders, token]
            self.sysctl.write_text(self.wanted)
            return str(state["original"])

    def release(self, token: str) -> None:
        """Remove a holder (dead or not); the last one out restores the original value."""
        with self._locked() as state:
            state["holders"] = [h for h in _str_list(state.get("holders")) if h != token]

    def holders(self) -> list[str]:
        """The live holders now (dead ones are dropped, and the value restored if none is left)."""
        with self._locked() as state:
            return _str_list(state.get("holders"))


def _str_list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def pid_alive(token: str) -> bool:
    """True while the process of a ``PID:...`` token runs."""
    try:
        os.kill(int(token.split(":", 1)[0]), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
