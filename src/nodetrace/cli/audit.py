"""``nodetrace audit SNAPSHOT``: what is wrong on this node before a packet is lost — each
finding with its severity, the rules/flows/lines that prove it (file:line) and a read-only
command to confirm it on the node; and the checks the snapshot could not feed.

``--exposure`` hands over to the exposure report (``cli/_exposure.py``): what traffic each
port's rules and flows let in and out. Arguments in, ``nodetrace.audit`` for the facts, text or
JSON (docs/json.md) out.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, TextIO

from nodetrace.audit import AuditReport, Finding, Severity, audit_report
from nodetrace.audit.findings import SEVERITY_ORDER
from nodetrace.cli import EXIT_NOTHING_USABLE, ExamplesFormatter, add_format
from nodetrace.errors import UsageError
from nodetrace.model.snapshot import Snapshot
from nodetrace.render.json import document, dumps
from nodetrace.snapshot.load import load

EXAMPLES = """\
examples:
  (files of the bundled examples, in src/nodetrace/examples/)
  nodetrace audit two-nodes-cmp1.snapshot.tar.gz
      every finding, most severe first, with its evidence and a command to confirm it
  nodetrace audit two-nodes-cmp1.snapshot.tar.gz --severity warning
      only warnings and critical findings
  nodetrace audit two-nodes-cmp1.snapshot.tar.gz --format json | jq '.findings[].check'
      the same as data (docs/json.md); the catalogue of checks is docs/audit.md
  nodetrace audit two-nodes-cmp1.snapshot.tar.gz --exposure --port 7eb6fb94
      the traffic a port's rules and flows let in and out
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="find what is wrong on a node before a packet is lost (findings with evidence)",
        description="Read a snapshot (bundle, sosreport or folder of command outputs) and "
        "report what is wrong on the node: host traffic crossing Neutron's security-group "
        "chains, rules and flows that can never match, missing or empty ipsets, tunnel MTUs, "
        "sysctls that break paths, conntrack zones shared across networks, untagged or dead "
        "OVS ports, stale MAC entries. Each finding quotes its evidence with file and line "
        "and gives a read-only command to confirm it; a check the snapshot cannot feed says "
        "which command would. The catalogue is docs/audit.md.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT")
    parser.add_argument(
        "--severity", choices=[s.value for s in Severity], default=Severity.INFO.value,
        help="show findings of this severity and worse (default: info, all)",
    )  # fmt: skip
    parser.add_argument(
        "--exposure", action="store_true",
        help="report each port's exposure (the traffic its rules and flows allow) instead",
    )  # fmt: skip
    parser.add_argument("--port", metavar="P", action="append", default=[],
                        help="with --exposure: only this port (UUID, prefix or device name); repeatable")  # fmt: skip
    parser.add_argument("--intended", metavar="FILE",
                        help="with --exposure: `openstack security group rule list -f json` "
                        "output to compare with")  # fmt: skip
    add_format(parser, json="docs/json.md")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.exposure and (args.port or args.intended):
        raise UsageError("--port and --intended go with --exposure")
    snap = load(args.snapshot)
    if _nothing_usable(snap):
        print(f"nodetrace: error: nothing usable: {args.snapshot} holds no known command output",
              file=sys.stderr)  # fmt: skip
        return EXIT_NOTHING_USABLE
    if args.exposure:
        exposure_cli = importlib.import_module("nodetrace.cli._exposure")
        result: int = exposure_cli.run(args, snap)
        return result
    report = audit_report(snap)
    shown = _at_least(report, Severity(args.severity))
    if args.format == "json":
        print(dumps(audit_document(report, shown)))
    else:
        write_text(report, shown, sys.stdout)
    return 0


def _nothing_usable(snap: Snapshot) -> bool:
    return (
        not snap.raw
        and snap.ovs is None
        and not snap.topology.interfaces
        and not any(ns.iptables is not None for ns in snap.namespaces)
    )


def _at_least(report: AuditReport, level: Severity) -> tuple[Finding, ...]:
    return tuple(f for f in report.findings if SEVERITY_ORDER[f.severity] <= SEVERITY_ORDER[level])


def counts(findings: tuple[Finding, ...]) -> dict[str, int]:
    return {s.value: sum(1 for f in findings if f.severity is s) for s in Severity}


def audit_document(report: AuditReport, shown: tuple[Finding, ...]) -> dict[str, Any]:
    """The ``audit`` document of docs/json.md."""
    return document(
        "audit",
        source=report.source,
        counts=counts(report.findings),
        findings=list(shown),
        not_run=list(report.not_run),
        checks=list(report.checks),
    )


def write_text(report: AuditReport, shown: tuple[Finding, ...], out: TextIO) -> None:
    total = counts(report.findings)
    summary = ", ".join(f"{n} {name}" for name, n in total.items())
    out.write(
        f"Audit of {report.source}: {summary} ({len(report.checks)} checks"
        + (f"; {len(report.not_run)} could not run fully" if report.not_run else "")
        + ")\n"
    )
    if len(shown) < len(report.findings):
        out.write(f"  ({len(report.findings) - len(shown)} less severe findings not shown)\n")
    for f in shown:
        out.write(f"\n{f.severity.value.upper()}  {f.check}  [{f.subject}]\n  {f.title}\n")
        for e in f.evidence:
            out.write(f"    {e.text}\n        at {e.source}\n")
        out.write(f"  confirm: {f.confirm}\n")
    if report.not_run:
        out.write("\nCould not run (or only in part)\n")
        for n in report.not_run:
            collect = f" (collect with `{n.command}`)" if n.command else ""
            out.write(f"  {n.check}: {n.reason}{collect}\n")
    if not report.findings:
        out.write("\nNo finding.\n")
