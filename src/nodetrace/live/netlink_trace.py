"""Who listens to netfilter trace events in a namespace, read from ``/proc/PID/net/netlink``.

A trace monitor (``xtables-monitor --trace``, ``nft monitor trace``) misses every packet traced
before it joined the trace group, and drops events once its socket's queue outgrows the buffer;
both can be seen in the netlink socket table, which is all this module reads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

NFNLGRP_NFTRACE_BIT = 1 << (9 - 1)
"""``NFNLGRP_NFTRACE`` (9) in the group bitmask ``/proc/net/netlink`` shows."""
NETLINK_NETFILTER = 12


def trace_sockets(netlink_table: str) -> Iterator[list[str]]:
    """The columns of each netfilter netlink socket that listens to trace events."""
    for line in netlink_table.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[1] == str(NETLINK_NETFILTER):
            with contextlib.suppress(ValueError):
                if int(cols[3], 16) & NFNLGRP_NFTRACE_BIT:
                    yield cols


def count_trace_subscribers(netlink_table: str) -> int:
    return sum(1 for _ in trace_sockets(netlink_table))


def trace_socket_queue(netlink_table: str) -> int:
    """Bytes waiting in the receive queues of the trace subscribers (``Rmem`` column)."""
    return sum(int(c[4]) for c in trace_sockets(netlink_table) if len(c) > 4 and c[4].isdigit())


def netns_path(netns: str) -> str:
    """The file that names namespace ``netns`` (``""``: the caller's own)."""
    return f"/run/netns/{netns}" if netns else "/proc/self/ns/net"


def in_netns(pid: int, netns: str) -> bool:
    """True once process ``pid`` runs in namespace ``netns`` (``ip netns exec`` has switched)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns_path(netns)).st_ino
    except OSError:
        return False


def process_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[0]


def netlink_table_of(pid: int) -> str:
    """``/proc/net/netlink`` as seen from ``pid``'s network namespace."""
    try:
        return Path(f"/proc/{pid}/net/netlink").read_text()
    except OSError:
        return ""
