"""How ``ovs-ofctl dump-flows`` in OpenFlow 1.0 (its default) spells actions added in OpenFlow 1.3.

``ofproto/trace`` prints a flow's actions as they were added; a dump in OpenFlow 1.0 cannot say
some of them and prints their OpenFlow 1.0 (Nicira extension) equivalent. Generating such a
dump and comparing a dump's flow with a traced one both need this one table.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_OF10: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(r"push_vlan:0x8100,set_field:(\d+)->vlan_vid"),
        lambda m: f"mod_vlan_vid:{int(m.group(1)) & 0xFFF}",
    ),
    (re.compile(r"set_field:(\d+)->vlan_vid"), lambda m: f"mod_vlan_vid:{int(m.group(1)) & 0xFFF}"),
    (re.compile(r"\bpop_vlan\b"), lambda m: "strip_vlan"),
    (
        re.compile(r"set_field:(0x[0-9a-f]+)->tun_id"),
        lambda m: f"load:{m.group(1)}->NXM_NX_TUN_ID[]",
    ),
    (re.compile(r"goto_table:(\d+)"), lambda m: f"resubmit(,{m.group(1)})"),
    (
        re.compile(r"set_field:([0-9a-f:]{17})->eth_(src|dst)\b"),
        lambda m: f"mod_dl_{m.group(2)}:{m.group(1)}",
    ),
    (
        re.compile(r"set_field:(0x[0-9a-f]+)->reg(\d+)\b"),
        lambda m: f"load:{m.group(1)}->NXM_NX_REG{m.group(2)}[]",
    ),
    (
        re.compile(r"set_field:(0x[0-9a-f]+)->ct_mark\b"),
        lambda m: f"load:{m.group(1)}->NXM_NX_CT_MARK[]",
    ),
)


def of10_actions(actions: str) -> str:
    """How ``ovs-ofctl dump-flows`` (OpenFlow 1.0 + Nicira extensions) prints OF1.3 actions.

    Checked against OVS 3.1: ``goto_table:N`` prints as ``resubmit(,N)``, a VLAN push+set as
    ``mod_vlan_vid``, ``pop_vlan`` as ``strip_vlan`` and a ``tun_id``, register or ``ct_mark``
    set_field as a load.
    """
    for pattern, repl in _OF10:
        actions = pattern.sub(repl, actions)
    return actions
