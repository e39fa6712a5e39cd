"""Find what is wrong on a node before a packet is lost: exact checks over a snapshot.

Each family of checks lives in its own module and reads the snapshot's parsed model (and the
Neutron inventory for ports); a check never guesses: where the snapshot lacks the output it
needs, it reports that it could not run and which command would let it. ``docs/audit.md`` is
the catalogue: every check id, what it means, its evidence and how to confirm and fix it.
"""

from __future__ import annotations

from collections.abc import Callable

from nodetrace.audit import (
    ipset_checks,
    netfilter_checks,
    node_checks,
    openflow_checks,
    port_checks,
)
from nodetrace.audit.findings import (
    SEVERITY_ORDER,
    AuditReport,
    CheckResult,
    Evidence,
    Finding,
    NotRun,
    Severity,
)
from nodetrace.model.node_inventory import Inventory
from nodetrace.model.snapshot import Snapshot
from nodetrace.neutron.inventory import inventory

__all__ = [
    "CATALOGUE",
    "AuditReport",
    "Evidence",
    "Finding",
    "NotRun",
    "Severity",
    "audit",
    "audit_report",
]

Check = Callable[[Snapshot, Inventory], CheckResult]

CATALOGUE: tuple[tuple[tuple[str, ...], Check], ...] = (
    (("host-through-neutron-chains",), netfilter_checks.host_through_neutron_chains),
    (("shadowed-rule",), netfilter_checks.shadowed_rules),
    (("physdev-out-never-matches",), netfilter_checks.physdev_at_wrong_hook),
    (("stale-port-chain",), netfilter_checks.stale_port_chains),
    (("jump-to-missing-chain", "jump-to-empty-chain"), netfilter_checks.jumps_to_empty_or_missing),
    (("ipset-missing", "ipset-empty"), ipset_checks.ipset_references),
    (("flow-missing-ofport",), openflow_checks.flows_to_missing_ports),
    (("shadowed-flow",), openflow_checks.shadowed_flows),
    (("mtu-tunnel", "mtu-port-path"), node_checks.tunnel_mtu),
    (("ip-forward-off",), node_checks.forwarding_in_routers),
    (("bridge-nf-call-off",), node_checks.bridge_nf_call),
    (("rp-filter-strict",), node_checks.rp_filter_tunnels),
    (("conntrack-near-max",), node_checks.conntrack_fill),
    (("conntrack-zone-collision",), port_checks.zone_collisions),
    (("ovs-port-no-tag", "ovs-port-dead-vlan"), port_checks.ovs_port_tags),
    (("fdb-stale",), port_checks.stale_fdb),
)
"""Every check, in the order docs/audit.md lists them: the ids it reports, and the function."""


def audit_report(snapshot: Snapshot) -> AuditReport:
    """Run every check: the findings (most severe first) and the checks that could not run."""
    inv = inventory(snapshot)
    total = CheckResult()
    for _, check in CATALOGUE:
        total = total + check(snapshot, inv)
    findings = sorted(total.findings, key=lambda f: SEVERITY_ORDER[f.severity])
    ids = tuple(i for ids_, _ in CATALOGUE for i in ids_)
    not_run = tuple(dict.fromkeys(total.not_run))  # two tunnels on one device: said once
    return AuditReport(snapshot.source, tuple(findings), not_run, ids)


def audit(snapshot: Snapshot) -> list[Finding]:
    """Every finding on the node, most severe first."""
    return list(audit_report(snapshot).findings)
