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
``sos_commands/firewall_tables/iptables_-t_T_-nvL``     ``iptables-list-T`` (no save: rebuilt)
``sos_commands/firewall_tables/iptables_-vnxL``         ``iptables-list-filter``
``sos_commands/networking/brctl_show``                  ``brctl-show``
``sos_commands/networking/ip_-o_addr``                  ``ip-addr-oneline`` (addresses only)
``sos_commands/{networking,firewall_tables}/ipset_*``   ``ipset-save`` / ``ipset-list``
``sos_commands/nftables/nft_-a_list_ruleset``           ``nft-list-ruleset`` (rule handles)
``sos_commands/kernel/sysctl_-a``                       ``sysctl``
``sos_commands/openvswitch/ovs-vsctl_-t_5_show``        ``ovs-vsctl-show``
``sos_commands/openvswitch/ovs-vsctl_-t_5_list_bridge`` ``ovs-vsctl-list-bridge`` (text)
``sos_commands/openvswitch/ovs-ofctl_show_BR``          ``ovs-ofctl-show`` of BR
``sos_commands/openvswitch/ovs-ofctl_dump-flows_BR``    ``ovs-ofctl-dump-flows`` of BR
``sos_commands/openvswitch/ovs-ofctl_-O_OpenFlow13_*``  the same when the plain one is absent
``sos_commands/openvswitch/ovs-appctl_fdb.show_BR``     ``ovs-appctl-fdb-show`` of BR
``sos_commands/openvswitch/ovs-ofctl_dump-ports-desc_BR`` ``ovs-ofctl-show`` when no show
``sos_commands/openvswitch/ovs-appctl_bridge.dump-flows*`` flows when no dump-flows of BR
``sos_commands/openvswitch/ovs-appctl_ovs.route.show``  ``ovs-appctl-ovs-route-show``
``sos_commands/openvswitch/ovs-appctl_tnl.{neigh,arp}.show`` ``ovs-appctl-tnl-neigh-show``
``sos_commands/openvswitch/ovs-appctl_dpctl.dump-conntrack*`` ``ovs-appctl-dpctl-dump-conntrack``
``sos_commands/openvswitch/ovs-appctl_dpctl.show*``     ``ovs-appctl-dpctl-show`` (OVS ports)
``sos_commands/openvswitch/ovs-vsctl_-t_5_list-br``     bridge names (OVS runs, state absent)
=====================================================  ============================

Host name, kernel and date come from ``hostname``, ``uname`` and ``date`` at the top (or
``sos_commands/host/hostname``, ``sos_commands/kernel/uname_-a``, else the ``Kernel:`` line of
``sos_commands/host/hostnamectl_status``). A file named after a snap's alias of a command
(``openstack-hypervisor.ovs-vsctl_-t_5_show``) is read as that command's output. Recent sos
versions no longer run ``iptables-save`` (only ``iptables -nvL``): then the ruleset is rebuilt
from those listings (:mod:`nodetrace.parsers.iptables_list`), and the snapshot says so.
Anything else missing is reported, never fatal.
"""

from __future__ import annotations

import posixpath

from nodetrace.errors import InputError
from nodetrace.model.snapshot import SourceKind
from nodetrace.snapshot.folder import named_entries
from nodetrace.snapshot.listing import Listing
from nodetrace.snapshot.tree import SubTree

PLUGIN_FOLDERS = (
    "networking", "openvswitch", "firewall_tables", "nftables", "kernel", "ipset", "conntrack",
    "bridge", "ovn_host",
)  # fmt: skip


def _collected_at(root: SubTree) -> str:
    """When sos ran: ``date``'s output (the top-level ``date`` of some sos versions links to
    ``timedatectl`` instead, whose first line reads ``Local time: ...``)."""
    line = _first_line(root, "sos_commands/date/date", "date")
    label = "Local time:"
    return line[len(label) :].strip() if line.startswith(label) else line


def _first_line(root: SubTree, *paths: str) -> str:
    for path in paths:
        line = _read_first_line(root, path)
        if line:
            return line
    return ""


def _read_first_line(root: SubTree, path: str, hops: int = 3) -> str:
    """The first line of ``path``. sos writes ``hostname``, ``uname``, ``date`` at the top as
    symlinks to their ``sos_commands`` file; a copy that lost the link (a git checkout
    without symlinks, a zip) holds the target's path as text instead: follow it."""
    if not root.exists(path):
        return ""
    try:
        lines = root.read_text(path).strip().splitlines()
    except InputError:
        return ""
    if not lines:
        return ""
    line = lines[0].strip()
    if hops and len(lines) == 1 and "/" in line and " " not in line:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(path), line))
        if not target.startswith("../") and root.exists(target):
            return _read_first_line(root, target, hops - 1)
    return line


def _kernel(root: SubTree) -> tuple[str, str]:
    """The running kernel's release: ``uname -a``'s third word, or, in sosreports without a
    kernel plugin, the ``Kernel: Linux 6.8.0-59-generic`` line of ``hostnamectl status``."""
    words = _first_line(root, "uname", "sos_commands/kernel/uname_-a").split()
    if len(words) > 2 and words[0] == "Linux":
        return words[2], ""
    path = "sos_commands/host/hostnamectl_status"
    if not root.exists(path):
        return "", ""
    try:
        lines = root.read_text(path).splitlines()
    except InputError:
        return "", ""
    for line in lines:
        key, _, value = line.partition(":")
        words = value.split()
        if key.strip() == "Kernel" and len(words) == 2 and words[0] == "Linux":
            return words[1], f"{root.display(path)}: Kernel"
    return "", ""


def read_sosreport(root: SubTree) -> Listing:
    """The entries of a sosreport whose ``sos_commands`` folder sits at ``root``."""
    kernel, kernel_source = _kernel(root)
    listing = Listing(
        kind=SourceKind.SOSREPORT,
        root=root,
        host=_first_line(root, "hostname", "sos_commands/host/hostname", "etc/hostname"),
        kernel=kernel,
        kernel_source=kernel_source,
        collected_at=_collected_at(root),
    )
    paths = [
        p
        for p in root.files()
        if p.startswith("sos_commands/") and p.split("/")[1] in PLUGIN_FOLDERS
    ]
    named_entries(root, paths, listing, where="sosreport")
    return listing
