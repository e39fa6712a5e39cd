"""``nodetrace fleet audit|trace|log INPUT...``: one command over many nodes' snapshots or logs.

Arguments in, ``fleet/`` for the work (inputs → one job per node → the DuckDB store), a short
summary out, and the store itself for the questions the summary does not answer (``--query``,
``--db``, ``--parquet``). The tables are described in docs/fleet.md.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nodetrace.cli import EXIT_NOTHING_USABLE, ExamplesFormatter, add_format
from nodetrace.errors import UsageError
from nodetrace.fleet.inputs import NodeInput, expand
from nodetrace.fleet.jobs import NodeResult, TraceSpec, audit_job, log_job, trace_job
from nodetrace.fleet.run import Job, run_jobs
from nodetrace.fleet.store import FleetStore
from nodetrace.render.json import document, dumps

EXAMPLES = """\
examples:
  nodetrace fleet audit 'snapshots/*.tar.gz' --db fleet.duckdb
      every node's findings, kept in fleet.duckdb
  nodetrace fleet trace snapshots/ --packet 'tcp,tp_dst=5432,tcp_flags=+syn' --to-port 79645311
      which nodes drop tcp/5432 to that port, and by which rule
  nodetrace fleet log 'logs/*/kern.log*' --snapshots snapshots/ --query \\
      "SELECT node, deciding_step, count(*) FROM log_packets WHERE outcome = 'dropped' GROUP BY ALL"
      drops per rule per node (the node of a log is its folder, paired with its snapshot)
  nodetrace fleet audit snapshots/ --scheduler tcp://10.0.0.5:8786 --parquet out/
      on a Dask cluster, every table exported as Parquet
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fleet",
        help="audit, trace or explain logs over many nodes into one DuckDB store",
        description="Run audit, trace or log over many nodes' snapshots or logs at once (local "
        "processes, or a Dask cluster), with the results in one DuckDB database: a summary "
        "is printed, --query asks anything else of it (tables: docs/fleet.md).",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    audit = actions.add_parser("audit", help="every node's audit findings")
    _common(audit, "snapshots (bundles, sosreports, folders) or folders holding them")
    trace = actions.add_parser("trace", help="one packet on every node")
    _common(trace, "snapshots (bundles, sosreports, folders) or folders holding them")
    trace.add_argument("--packet", required=True, metavar="FLOW",
                       help="the packet, in OVS flow syntax (as `nodetrace trace` takes it)")  # fmt: skip
    trace.add_argument("--from-port", metavar="PORT", help="the Neutron port that sends it")
    trace.add_argument("--to-port", metavar="PORT", help="the Neutron port it is meant for")
    trace.add_argument("--from-host", action="store_true", help="the node itself sends it")
    trace.add_argument("--ct-state", metavar="STATE", help="the connection state assumed")
    log = actions.add_parser("log", help="every node's TRACE logs, packet by packet")
    _common(log, "TRACE logs, or folders holding them (a node per folder)")
    rules = log.add_mutually_exclusive_group()
    rules.add_argument("--snapshots", nargs="+", metavar="SNAPSHOT",
                       help="each node's snapshot, paired with its logs by node name")  # fmt: skip
    rules.add_argument("--rules", metavar="FILE", action="append", default=[],
                       help="the same rules for every node (iptables-save, nft -a list ruleset)")  # fmt: skip


def _common(parser: argparse.ArgumentParser, inputs: str) -> None:
    parser.formatter_class = ExamplesFormatter
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help=f"{inputs}; glob patterns too")
    parser.add_argument("--db", metavar="FILE", help="keep the results in this DuckDB file")
    parser.add_argument("--parquet", metavar="DIR", help="also write every table as Parquet")
    parser.add_argument("--query", metavar="SQL", action="append", default=[],
                        help="run this SQL on the results and print its rows (repeatable)")  # fmt: skip
    parser.add_argument("--jobs", type=int, metavar="N", help="local processes (default: CPUs)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on this Dask distributed scheduler instead")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_format(parser, json="docs/json.md")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    job, calls = _work(args)
    store = FleetStore(args.db)
    try:
        results = _collect(job, calls, args)
        for result in sorted(results, key=lambda r: r.node):
            store.add(result)
        summary = _summary(args.action, store)
        queries = [(sql, cols, [tuple(map(_plain, r)) for r in found])
                   for sql in args.query for cols, found in [store.query(sql)]]  # fmt: skip
        written = store.export_parquet(Path(args.parquet)) if args.parquet else []
    finally:
        store.close()
    failed = {r.node: r.error for r in results if r.error is not None}
    if args.format == "json":
        print(dumps(document(
            "fleet", action=args.action, nodes=len(results), failed=failed, summary=summary,
            queries=[{"sql": q, "columns": c, "rows": r} for q, c, r in queries],
            parquet=[str(p) for p in written],
        )))  # fmt: skip
    else:
        _print_text(args.action, len(results), failed, summary, queries, written)
    return EXIT_NOTHING_USABLE if results and len(failed) == len(results) else 0


def _work(args: argparse.Namespace) -> tuple[Job, list[tuple[Any, ...]]]:
    if args.action == "log":
        logs = expand(args.inputs, logs=True)
        by_node: dict[str, list[str]] = {}
        for item in logs:
            by_node.setdefault(item.node, []).append(item.path)
        snapshots = (
            {s.node: s.path for s in expand(args.snapshots, logs=False)} if args.snapshots else {}
        )
        unpaired = sorted(set(by_node) - set(snapshots)) if args.snapshots else []
        if unpaired:
            raise UsageError(f"no snapshot for node(s) {', '.join(unpaired)} among --snapshots")
        return log_job, [
            (node, paths, [snapshots[node]] if snapshots else args.rules)
            for node, paths in sorted(by_node.items())
        ]
    items: list[NodeInput] = expand(args.inputs, logs=False)
    if not items:
        raise UsageError(f"{' '.join(args.inputs)}: no snapshot found")
    if args.action == "audit":
        return audit_job, [(item,) for item in items]
    spec = TraceSpec(args.packet, args.from_port, args.to_port, args.from_host, args.ct_state)
    if not (spec.from_port or spec.to_port or spec.from_host):
        raise UsageError("say where the packet starts: --from-port, --from-host or --to-port")
    return trace_job, [(item, spec) for item in items]


def _collect(job: Job, calls: list[tuple[Any, ...]], args: argparse.Namespace) -> list[NodeResult]:
    results: list[NodeResult] = []
    with _progress(len(calls), not args.no_progress and sys.stderr.isatty()) as advance:
        for result in run_jobs(job, calls, jobs=args.jobs, scheduler=args.scheduler):
            results.append(result)
            advance()
    return results


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("nodes", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True, console=None) as bar:  # fmt: skip
        task = bar.add_task("nodes", total=total)
        yield lambda: bar.advance(task)


SUMMARIES = {
    "audit": "SELECT check_id, severity, count(DISTINCT node) AS nodes, count(*) AS findings "
    "FROM findings GROUP BY ALL ORDER BY nodes DESC, check_id",
    "trace": "SELECT coalesce(outcome, status) AS outcome, count(*) AS nodes, "
    "string_agg(node, ' ' ORDER BY node) AS which, coalesce(rule, deciding_step, reason) AS why "
    "FROM traces GROUP BY ALL ORDER BY nodes DESC, outcome",
    "log": "SELECT node, outcome, count(*) AS packets FROM log_packets GROUP BY ALL "
    "ORDER BY node, packets DESC",
}
"""What each action prints when not asked anything else: a query of the store, like any other."""


def _plain(value: Any) -> Any:
    """A query's value as JSON can hold it: DuckDB's decimals, times and the like as text."""
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _summary(action: str, store: FleetStore) -> list[dict[str, Any]]:
    columns, rows = store.query(SUMMARIES[action])
    return [dict(zip(columns, row, strict=True)) for row in rows]


def _print_text(
    action: str,
    nodes: int,
    failed: dict[str, str],
    summary: list[dict[str, Any]],
    queries: Sequence[tuple[str, list[str], list[tuple[Any, ...]]]],
    written: Sequence[Path],
) -> None:
    print(f"{action}: {nodes} node(s)" + (f", {len(failed)} could not be read" if failed else ""))
    for node, why in sorted(failed.items()):
        print(f"  {node}: {why}")
    if summary:
        print()
        _table(list(summary[0]), [tuple(row.values()) for row in summary])
    for sql, columns, rows in queries:
        print(f"\n{sql}")
        _table(columns, rows)
    for path in written:
        print(f"wrote {path}")
    if action == "log" and summary:
        counts = Counter[str]()
        for row in summary:
            counts[str(row["outcome"])] += int(row["packets"])
        print("\n" + ", ".join(f"{n} {o}" for o, n in counts.most_common()))


def _table(columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no rows)")
