"""Read a sosreport (folder or archive): the command outputs nodetrace needs, wherever the
sos plugins put them.

Mapping (sos names a file after its command, spaces as ``_`` and ``/`` as ``.``):

=====================================================  ============================
sos file                                                read as
=====================================================  ============================
``sos_commands/networking/ip_-d_address``               ``ip-addr`` (text)
``sos_commands/networking/ip_-s_-d_link``               ``ip-link`` (text)
``sos_commands/networking/ip_route_show_table_all``     ``ip-route`` (text)
``sos_commands/networking/ip_-6_route_show_table_all``  ``ip6-route``
``sos_commands/networking/ip_-4_rule_list`` / ``-6``    ``ip-rule`` / ``ip6-rule``
``sos_commands/networking/ip_-s_-s_neigh_show``         ``ip-neigh``
``sos_commands/networking/bridge_-s_-s_-d_link_show``   ``bridge-link``
``sos_commands/networking/bridge_-s_-s_-d_-t_fdb_show`` ``bridge-fdb``
``sos_commands/networking/ip_netns``                    ``ip-netns``
``sos_commands/networking/namespaces/NS/ip_netns_exec_NS_*``  the same, in namespace NS
``sos_commands/{networking,firewall_tables}/*iptables-save*`` ``iptables-save`` (older sos)
``sos_commands/{networking,firewall_tables}/ipset_*``   ``ipset-save`` / ``ipset-list``
``sos_commands/nftables/nft_-a_list_ruleset``           ``nft-list-ruleset`` (rule handles)
``sos_commands/kernel/sysctl_-a``                       ``sysctl``
``sos_commands/openvswitch/ovs-vsctl_-t_5_show``        ``ovs-vsctl-show``
``sos_commands/openvswitch/ovs-vsctl_-t_5_list_bridge`` ``ovs-vsctl-list-bridge`` (text)
``sos_commands/openvswitch/ovs-ofctl_show_BR``          ``ovs-ofctl-show`` of BR
``sos_commands/openvswitch/ovs-ofctl_dump-flows_BR``    ``ovs-ofctl-dump-flows`` of BR
``sos_commands/openvswitch/ovs-ofctl_-O_OpenFlow13_*``  the same when the plain one is absent
``sos_commands/openvswitch/ovs-appctl_fdb.show_BR``     ``ovs-appctl-fdb-show`` of BR
``sos_commands/openvswitch/ovs-appctl_dpctl.dump-conntrack*`` ``ovs-appctl-dpctl-dump-conntrack``
=====================================================  ============================

Host name, kernel and date come from ``hostname``, ``uname`` and ``date`` at the top (or
``sos_commands/host/hostname``, ``sos_commands/kernel/uname_-a``). Recent sos versions no longer
run ``iptables-save`` (only ``iptables -nvL``, which loses rule details): then the ruleset is
reported missing. Anything else missing is reported, never fatal.
"""

from __future__ import annotations

from nodetrace.errors import InputError
from nodetrace.model.snapshot import SourceKind
from nodetrace.snapshot.folder import named_entries
from nodetrace.snapshot.listing import Listing
from nodetrace.snapshot.tree import SubTree

PLUGIN_FOLDERS = (
    "networking",
    "openvswitch",
    "firewall_tables",
    "nftables",
    "kernel",
    "ipset",
    "conntrack",
)


def _first_line(root: SubTree, *paths: str) -> str:
    for path in paths:
        if root.exists(path):
            try:
                lines = root.read_text(path).strip().splitlines()
            except InputError:
                continue
            if lines:
                return lines[0].strip()
    return ""


def read_sosreport(root: SubTree) -> Listing:
    """The entries of a sosreport whose ``sos_commands`` folder sits at ``root``."""
    uname = _first_line(root, "uname", "sos_commands/kernel/uname_-a")
    words = uname.split()
    listing = Listing(
        kind=SourceKind.SOSREPORT,
        root=root,
        host=_first_line(root, "hostname", "sos_commands/host/hostname", "etc/hostname"),
        kernel=words[2] if len(words) > 2 and words[0] == "Linux" else "",
        collected_at=_first_line(root, "date", "sos_commands/date/date"),
    )
    paths = [
        p
        for p in root.files()
        if p.startswith("sos_commands/") and p.split("/")[1] in PLUGIN_FOLDERS
    ]
    named_entries(root, paths, listing, where="sosreport")
    return listing
