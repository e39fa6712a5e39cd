"""Where a live run reads the kernel's trace events from, as lines the log pipeline reads.

* :class:`KernelLog`: iptables-legacy TRACE records from ``/dev/kmsg``, from the moment it is
  opened, each given the kernel's own time bracket (``[  812.345678] TRACE: ...``) so the
  pipeline groups them by time as it does a saved ``dmesg``. The kernel log does not say which
  rule started a trace nor, for other namespaces, which namespace logged it: the run keeps the
  packets whose fields its selectors name, and says that others' TRACE rules for the same
  traffic would show up too.
* :class:`Monitor`: ``xtables-monitor --trace`` (iptables-nft) or ``nft monitor trace``
  (nftables) inside the run's namespace. It is started before the trace rules exist and is ready
  once the namespace has one more trace subscriber; it dies with the run (parent-death signal),
  so even kill -9 of the run leaves no monitor behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence

from nodetrace.live.command import CommandError, in_netns, run
from nodetrace.live.netlink_trace import count_trace_subscribers, netlink_table_of
from nodetrace.live.netlink_trace import in_netns as runs_in

KMSG = "/dev/kmsg"
READ_SIZE = 1 << 16
PR_SET_PDEATHSIG = 1

MONITORS: dict[str, tuple[str, ...]] = {
    "xtables": ("xtables-monitor", "--trace"),
    "nft": ("nft", "monitor", "trace"),
}


class KernelLog:
    """``/dev/kmsg`` from now on: the TRACE records, one line each."""

    def __init__(self) -> None:
        self._fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)
        self.lost = 0
        """Times the kernel's ring overwrote records before they were read."""

    def fileno(self) -> int:
        return self._fd

    def read(self) -> list[str]:
        out: list[str] = []
        while True:
            try:
                record = os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                return out
            except OSError as err:
                if err.errno == errno.EPIPE:  # overwritten before we read them: said
                    self.lost += 1
                    continue
                raise
            head, _, body = record.decode("utf-8", "replace").partition(";")
            text = _unescape(body.split("\n", 1)[0])
            if not text.startswith("TRACE: "):
                continue
            fields = head.split(",")
            usec = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
            out.append(f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] {text}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _unescape(text: str) -> str:
    """Undo /dev/kmsg's ``\\xNN`` escaping of non-printable bytes."""
    if "\\x" not in text:
        return text
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """In the child before exec: the kernel kills it when the run's process goes away.

    A parent that died between the fork and the ``prctl`` would never send the signal: the
    child then checks that it still has its parent, and leaves at once if not.
    """

    def arm() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm


class Monitor:
    """A trace monitor in namespace ``netns``, its output read line by line."""

    def __init__(self, netns: str, kind: str) -> None:
        self.netns = netns
        self.kind = kind
        self.argv: tuple[str, ...] = tuple(in_netns(netns, ["stdbuf", "-oL", *MONITORS[kind]]))
        self._proc: subprocess.Popen[bytes] | None = None
        self._partial = b""
        self.output_tail: list[str] = []
        """The last lines it printed that were not trace events (its error, if it stops)."""

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise CommandError("the monitor is not running")
        return self._proc.pid

    def start(self, *, ready_timeout: float = 3.0) -> None:
        before = count_trace_subscribers(_own_table(self.netns))
        try:
            self._proc = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(os.getpid()),
                start_new_session=True,  # a live run has no threads: preexec_fn is safe
            )
        except FileNotFoundError as err:
            raise CommandError(f"{self.argv[0]}: not installed") from err
        os.set_blocking(self._proc.stdout.fileno(), False)  # type: ignore[union-attr]
        # Packets traced before the monitor has joined the trace group go unreported.
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = " ".join(self.read()) or " ".join(self.output_tail)
                raise CommandError(f"{' '.join(self.argv)}: exited at once: {text.strip()}")
            pid = self._proc.pid
            if runs_in(pid, self.netns) and (
                count_trace_subscribers(netlink_table_of(pid)) > before
            ):
                return
            time.sleep(0.005)
        self.stop()
        raise CommandError(f"{' '.join(self.argv)}: not ready after {ready_timeout:g}s")

    def fileno(self) -> int:
        if self._proc is None or self._proc.stdout is None:
            return -1
        return self._proc.stdout.fileno()

    def exited(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def read(self) -> list[str]:
        if self._proc is None or self._proc.stdout is None:
            return []
        chunks = [self._partial]
        while True:
            try:
                data = os.read(self._proc.stdout.fileno(), READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        data = b"".join(chunks)
        *lines, self._partial = data.split(b"\n")
        out = [line.decode("utf-8", "replace") for line in lines]
        others = [line for line in out if not _is_event(line, self.kind)]
        self.output_tail = (self.output_tail + others)[-5:]
        return out

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        if proc.stdout is not None:
            proc.stdout.close()


def _is_event(line: str, kind: str) -> bool:
    if kind == "xtables":
        return line.startswith((" TRACE:", "PACKET:", "TRACE:")) or not line.strip()
    return line.startswith("trace id") or not line.strip()


def _own_table(netns: str) -> str:
    """``/proc/net/netlink`` of namespace ``netns``, read through a process already there."""
    if not netns:
        return netlink_table_of(os.getpid())
    return run(["cat", "/proc/net/netlink"], netns=netns).stdout


def lines_text(lines: Sequence[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()
