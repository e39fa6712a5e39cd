"""The cause catalogue: every cause a diagnosis may name, with its id, its title and the
read-only commands that confirm it on the node. docs/explain.md describes each for people;
the ids are stable (scripts and tests key on them).
"""

from __future__ import annotations

from enum import StrEnum

from nodetrace.model.packet import Family
from nodetrace.model.topology import MAIN_NS


class CauseId(StrEnum):
    RULE_DROP = "rule-drop"
    """A netfilter rule (or a chain's policy) drops or rejects the packet."""
    FLOW_MISSING = "flow-missing"
    """No OpenFlow flow forwards the packet: a table miss, or only a catch-all drop matches."""
    FDB_STALE = "fdb-stale"
    """A forwarding-table entry (Linux bridge FDB, OVS MAC learning) sends it to the wrong port."""
    MTU = "mtu"
    """The packet (with any tunnel overhead) is longer than a device's MTU on its path."""
    RP_FILTER = "rp-filter"
    IP_FORWARD_OFF = "ip-forward-off"
    CONNTRACK_INVALID = "conntrack-invalid"
    LINK_DOWN = "link-down"
    """A device on the path is down or has no carrier (one end of a veth down)."""
    VM_NOT_READING = "vm-not-reading"
    """The packet reaches the VM's tap, whose tx_dropped counter rises: the VM does not read."""
    RULES_CHANGED = "rules-changed"
    """The observed path contradicts the rules given: they changed since, or another node's."""
    NO_ROUTE = "no-route"
    """The routing table has no route for the packet (or one that drops: blackhole, prohibit)."""
    UNKNOWN = "unknown"
    """The data cannot tell; the cause names what is missing."""


TITLES: dict[CauseId, str] = {
    CauseId.RULE_DROP: "a netfilter rule drops the packet",
    CauseId.FLOW_MISSING: "no OpenFlow flow forwards the packet",
    CauseId.FDB_STALE: "a forwarding-table entry sends the frame to the wrong port",
    CauseId.MTU: "the packet is longer than the MTU of a device on its path",
    CauseId.RP_FILTER: "the reverse-path filter drops the packet",
    CauseId.IP_FORWARD_OFF: "IP forwarding is off, so the packet is not routed on",
    CauseId.CONNTRACK_INVALID: "conntrack classes the packet INVALID and a rule drops it",
    CauseId.LINK_DOWN: "a device on the path is down or has no carrier",
    CauseId.VM_NOT_READING: "the VM does not read its NIC: the tap drops what is sent to it",
    CauseId.RULES_CHANGED: "the observed path contradicts the rules given",
    CauseId.NO_ROUTE: "no route takes the packet on",
    CauseId.UNKNOWN: "the data cannot tell where the packet was lost",
}


def in_netns(command: str, netns: str) -> str:
    """``command`` as run in namespace ``netns`` on the node."""
    return f"ip netns exec {netns} {command}" if netns != MAIN_NS else command


def iptables_command(family: Family | None) -> str:
    return "ip6tables" if family is Family.IPV6 else "iptables"


def confirm_rule(family: Family | None, table: str, chain: str, netns: str) -> str:
    """The chain listed with counters and numbers: the dropping rule's packet count rises."""
    command = f"{iptables_command(family)} -t {table} -L {chain} -n -v --line-numbers"
    return in_netns(command, netns)


def confirm_flow(bridge: str, table: int, trace_flow: str | None) -> str:
    dump = f"ovs-ofctl dump-flows {bridge} table={table}"
    if trace_flow:
        return f"{dump}; ovs-appctl ofproto/trace {bridge} '{trace_flow}'"
    return dump


def confirm_link(device: str, netns: str) -> str:
    return in_netns(f"ip -s -d link show {device}", netns)


def confirm_sysctl(keys: list[str], netns: str) -> str:
    return in_netns("sysctl " + " ".join(keys), netns)


def confirm_fdb(bridge: str, mac: str, netns: str, *, ovs: bool) -> str:
    if ovs:
        return f"ovs-appctl fdb/show {bridge} | grep -i {mac}"
    return in_netns(f"bridge fdb show br {bridge} | grep -i {mac}", netns)
