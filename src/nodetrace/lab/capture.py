"""Capture the real kernel's TRACE output in a lab, in the three forms a node produces.

* :class:`KernelTraceLog`: iptables-legacy TRACE lines as the kernel logs them (read from
  ``/dev/kmsg``). The kernel logs from a namespace other than the initial one only while the
  global sysctl ``net.netfilter.nf_log_all_netns`` is 1; this class turns it on for as long as
  any holder needs it (holders on this machine are counted in a shared file, so parallel labs do
  not switch it off under each other), records it in the lab's ledger, and restores the value it
  found when the last holder leaves. Lines of other labs mix into the kernel log: keep only those
  naming your own (unique) devices.
* :class:`TraceMonitor`: ``xtables-monitor --trace`` or ``nft monitor trace`` (iptables-nft),
  run inside one namespace, started before sending and stopped after, by its own pid.

Example::

    with KernelTraceLog(lab) as log:
        ...send packets...
        lines = log.lines(devices=bed.devices)   # ["TRACE: raw:PREROUTING:policy:2 IN=...", ...]
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from nodetrace.lab.ledger import Entry
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import Closing, CommandError, in_netns, run
from nodetrace.live.netlink_trace import count_trace_subscribers as _count_trace_subscribers
from nodetrace.live.netlink_trace import in_netns as _in_netns
from nodetrace.live.netlink_trace import netlink_table_of as _netlink_table_of
from nodetrace.live.netlink_trace import process_state as _process_state
from nodetrace.live.netlink_trace import trace_socket_queue as _trace_socket_queue
from nodetrace.live.sysctl_holders import HOLDERS_DIR as HOLDERS_DIR
from nodetrace.live.sysctl_holders import SysctlHolders as _SysctlHolders
from nodetrace.parsers.trace_kernel_log import KernelLogReader, parse_devs

NF_LOG_ALL_NETNS = Path("/proc/sys/net/netfilter/nf_log_all_netns")

MONITOR_LIFETIME = 600
"""A monitor is wrapped in ``timeout`` so that even a crashed test cannot leave it running."""


@dataclass(frozen=True, slots=True)
class KernelLine:
    """One kernel log record: its timestamp (microseconds since boot) and text."""

    usec: int
    text: str


class KernelTraceLog(Closing):
    """Read the kernel log from now on, with ``nf_log_all_netns`` on while the object is open."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self._holders = _SysctlHolders(NF_LOG_ALL_NETNS, "1")
        self._token = f"{os.getpid()}:{uuid.uuid4().hex}"
        self._fd: int | None = None
        self._pending: list[KernelLine] = []

    def __enter__(self) -> KernelTraceLog:
        original = self._holders.acquire(self._token)
        # For the record only: the holder registry restores the value, not the lab's teardown,
        # because other labs may still hold it when this one ends.
        self.res.ledger.record(Entry("sysctl-holder", self._token, str(NF_LOG_ALL_NETNS), original))
        self._fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self._fd, 0, os.SEEK_END)
        return self

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._holders.release(self._token)

    def _read_new(self) -> None:
        if self._fd is None:
            raise CommandError("the kernel log is not open")
        while True:
            try:
                record = os.read(self._fd, 16384)
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno == errno.EPIPE:  # records overwritten before we read them
                    continue
                raise
            head, _, body = record.decode("utf-8", "replace").partition(";")
            fields = head.split(",")
            text = body.split("\n", 1)[0]
            usec = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else 0
            self._pending.append(KernelLine(usec, _unescape(text)))

    def records(self) -> list[KernelLine]:
        """Every record logged since the last call (or since opening), oldest first."""
        self._read_new()
        out, self._pending = self._pending, []
        return out

    def lines(self, *, devices: Iterable[str], settle: float = 0.0) -> list[str]:
        """TRACE lines that name one of ``devices`` in IN/OUT/PHYSIN/PHYSOUT, without timestamps.

        ``settle`` waits that long for late lines first (printk is synchronous with the packet's
        processing, so 0 is normally enough once the packet has arrived or been dropped).
        """
        if settle:
            time.sleep(settle)
        wanted = set(devices)
        texts = [rec.text for rec in self.records() if rec.text.startswith("TRACE: ")]
        return [
            record.text
            for record in KernelLogReader().records(texts)
            if wanted.intersection(parse_devs(record.devs).values())
        ]


def _unescape(text: str) -> str:
    """Undo /dev/kmsg's ``\\xNN`` escaping of non-printable bytes."""
    if "\\x" not in text:
        return text
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


class TraceMonitor(Closing):
    """``xtables-monitor --trace`` or ``nft monitor trace`` inside a namespace, as a context.

    Output goes to a file in ``workdir`` (line-buffered through ``stdbuf``), so nothing is lost
    when the monitor is stopped. The monitor is stopped by the pid it was started with.
    """

    COMMANDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "xtables": ("xtables-monitor", "--trace"),
        "nft": ("nft", "monitor", "trace"),
    }

    def __init__(self, netns: str, workdir: Path, kind: str = "xtables") -> None:
        if kind not in self.COMMANDS:
            raise ValueError(f"monitor kind must be one of {sorted(self.COMMANDS)}")
        self.netns = netns
        self.kind = kind
        self.path = workdir / f"{kind}-monitor-{uuid.uuid4().hex[:8]}.txt"
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: int | None = None
        self.exited_early: int | None = None
        """The monitor's exit status if it ended before :meth:`stop` (then events were lost)."""

    def __enter__(self) -> TraceMonitor:
        self.start()
        return self

    def close(self) -> None:
        self.stop(settle=0.0)

    def start(self, *, ready_timeout: float = 2.0) -> None:
        argv = in_netns(
            self.netns,
            ["timeout", str(MONITOR_LIFETIME), "stdbuf", "-oL", *self.COMMANDS[self.kind]],
        )
        before = _count_trace_subscribers(
            run(["cat", "/proc/net/netlink"], netns=self.netns).stdout
        )
        self._out = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT)
        # Packets sent before the monitor has joined the trace group go unreported: wait until
        # the namespace has one more trace subscriber than before.
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise CommandError(f"{' '.join(argv)}: exited at once: {self.text().strip()}")
            pid = self._proc.pid
            # Until ``ip netns exec`` has switched namespace, /proc/PID/net is the caller's.
            if _in_netns(pid, self.netns) and (
                _count_trace_subscribers(_netlink_table_of(pid)) > before
            ):
                return
            time.sleep(0.005)
        raise CommandError(f"{' '.join(argv)}: not ready after {ready_timeout}s")

    def text(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _monitor_pid(self) -> int | None:
        """The monitor itself: ``ip netns exec`` becomes ``timeout``, whose child it is."""
        if self._proc is None:
            return None
        try:
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children").read_text()
        except OSError:
            return None
        kids = children.split()
        return int(kids[0]) if kids else None

    def wait_drained(self, *, limit: float = 5.0) -> None:
        """Wait until the monitor has read and printed every event queued for it.

        The kernel queues trace events on the monitor's socket while it processes the packet,
        so once the packets were sent, "socket empty, monitor asleep, output unchanged" (seen a
        few times in a row) means everything has been printed.
        """
        pid = self._monitor_pid()
        deadline = time.monotonic() + limit
        stable, last_size = 0, -1
        while time.monotonic() < deadline:
            size = self.path.stat().st_size if self.path.exists() else 0
            queued = _trace_socket_queue(_netlink_table_of(pid)) if pid else 0
            asleep = _process_state(pid) == "S" if pid else True
            if queued == 0 and asleep and size == last_size:
                stable += 1
                if stable >= 3:
                    return
            else:
                stable = 0
            last_size = size
            time.sleep(0.01)

    def keep_up(self, *, limit: float = 1.0) -> None:
        """Wait until the monitor's socket queue is empty again.

        The kernel queues trace events on the monitor's netlink socket; when the queue outgrows
        the socket buffer, xtables-monitor stops with "No buffer space available" and every
        later event is lost. Sending the next packet only once the queue is empty keeps a busy
        batch within the buffer.
        """
        pid = self._monitor_pid()
        if pid is None:
            return
        deadline = time.monotonic() + limit
        while _trace_socket_queue(_netlink_table_of(pid)) and time.monotonic() < deadline:
            time.sleep(0.002)

    def stop(self, *, settle: float = 0.1) -> list[str]:
        """Wait until the monitor printed everything (up to ``settle`` seconds after it stops
        reading), stop it, and return its lines."""
        if settle:
            self.wait_drained(limit=max(settle * 50, 2.0))
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is not None:
            self.exited_early = proc.returncode
        if proc is not None and proc.poll() is None:
            # ``timeout`` forwards SIGTERM to the monitor it started.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._out is not None:
            os.close(self._out)
            self._out = None
        return self.text().splitlines()
