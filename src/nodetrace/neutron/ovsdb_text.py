"""The ``external_ids`` of OVS interfaces from ``ovs-vsctl list Interface`` in its text form.

sosreports keep ``ovs-vsctl -t 5 list interface`` as text (``name : tap0e778df8-ca``,
``external_ids : {attached-mac="fa:16:3e:a7:45:cb", iface-id="0e778df8-..."}``), and
``ovs-vsctl show`` does not print external_ids at all. The full Neutron port UUID and the VM's
MAC are only there, so when the snapshot's OVSDB model lacks them this reads just those two
columns back from the kept text. Sample record (hotsos ``fake_data_root/openstack``)::

    external_ids        : {attached-mac="fa:16:3e:a7:45:cb", iface-id="0e778df8-ca29-490b-8d54-e238b1e0be1c", iface-status=active}
    name                : tap0e778df8-ca
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodetrace.model.ovsdb import Pairs
from nodetrace.model.snapshot import Snapshot

KIND = "ovs-vsctl-list-interface"

_COLUMN = re.compile(r"^([a-z_]+)\s*:\s?(.*)$")
_PAIR = re.compile(r'([^\s,{}=]+)=("(?:[^"\\]|\\.)*"|[^,}]*)')


@dataclass(frozen=True, slots=True)
class InterfaceIds:
    name: str
    external_ids: Pairs
    source: str
    """File and line of the ``external_ids`` column."""


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def interface_external_ids(snap: Snapshot) -> dict[str, InterfaceIds]:
    """Interface name → its external_ids, from every text ``list Interface`` the snapshot kept.

    JSON outputs are read by the snapshot loader itself and are skipped here.
    """
    out: dict[str, InterfaceIds] = {}
    for raw in snap.raw_outputs(KIND):
        if raw.text.lstrip().startswith("{"):
            continue
        name: str | None = None
        ids: tuple[Pairs, int] | None = None
        lines = raw.text.splitlines()
        for number, line in enumerate([*lines, ""], start=1):
            if not line.strip():
                if name is not None and ids is not None:
                    out[name] = InterfaceIds(name, ids[0], f"{raw.source}:{ids[1]}")
                name, ids = None, None
                continue
            m = _COLUMN.match(line)
            if m is None:
                continue
            column, value = m.group(1), m.group(2).strip()
            if column == "name":
                name = _unquote(value)
            elif column == "external_ids" and value.startswith("{"):
                pairs = tuple((k, _unquote(v)) for k, v in _PAIR.findall(value))
                ids = (pairs, number)
    return out
