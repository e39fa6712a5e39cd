"""A Neutron port named on the command line, found on this node as it is now.

Nothing on a node lists its Neutron ports, so the node is read afresh, in process, by the same
read-only collector as ``nodetrace collect`` (only the namespace asked for), and the port is
found by UUID, prefix or device name in that snapshot as ``nodetrace trace --from-port`` finds it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from nodetrace.live.selector import IPAddress
from nodetrace.model.node_inventory import PortInfo
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron.ports import find_port
from nodetrace.snapshot.collect import Options, collect_into
from nodetrace.snapshot.load import load


def read_node(netns: str, ovs_rundir: str | None, *, keep_in: Path | None = None) -> Snapshot:
    """A snapshot of namespace ``netns`` (``""``: this one) taken now, without other namespaces.

    With ``keep_in`` (an empty or new folder) the snapshot's files stay there, so what quotes
    them (``file:line`` evidence) can be read afterwards; otherwise they are removed.
    """
    options = Options(netns=netns or None, ovs_rundir=ovs_rundir, namespaces=())
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True, mode=0o700)
        collect_into(keep_in, options)
        return load(keep_in)
    with tempfile.TemporaryDirectory(prefix="nodetrace-live-") as tmp:
        root = Path(tmp) / "snapshot"
        root.mkdir()
        collect_into(root, options)
        return load(root)


def port_addresses(snapshot: Snapshot, wanted: str) -> tuple[PortInfo, tuple[IPAddress, ...]]:
    """The port ``wanted`` names (a :class:`~nodetrace.errors.UsageError` if none or several)
    and the addresses the node shows for it."""
    port = find_port(snapshot, wanted)
    return port, tuple(found.value for found in port.ips)
