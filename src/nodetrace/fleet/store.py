"""The fleet's results in DuckDB, so that "which nodes drop tcp/5432 to port X" is one query.

DuckDB is embedded (a file, or memory when no ``--db`` is given): nothing to run, and its SQL
reads Parquet and exports it, so a fleet's TRACE records can leave for any other store. Tables
are created once with fixed columns (``TABLES``, documented in docs/fleet.md); each node's rows
replace that node's earlier rows of the same command, so running a command again over some
nodes refreshes them without duplicating the rest.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nodetrace.errors import InputError
from nodetrace.fleet.jobs import NodeResult, Row

TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "nodes": (
        ("node", "VARCHAR"), ("path", "VARCHAR"), ("hostname", "VARCHAR"),
        ("kernel", "VARCHAR"), ("source_kind", "VARCHAR"), ("collected_at", "VARCHAR"),
        ("missing", "INTEGER"), ("error", "VARCHAR"),
    ),
    "findings": (
        ("node", "VARCHAR"), ("check_id", "VARCHAR"), ("severity", "VARCHAR"),
        ("subject", "VARCHAR"), ("title", "VARCHAR"), ("evidence", "VARCHAR"),
        ("confirm", "VARCHAR"),
    ),
    "traces": (
        ("node", "VARCHAR"), ("packet", "VARCHAR"), ("from_port", "VARCHAR"),
        ("to_port", "VARCHAR"), ("status", "VARCHAR"), ("outcome", "VARCHAR"),
        ("deciding_step", "VARCHAR"), ("rule", "VARCHAR"), ("reason", "VARCHAR"),
        ("assumptions", "INTEGER"),
    ),
    "log_packets": (
        ("node", "VARCHAR"), ("file", "VARCHAR"), ("packet", "INTEGER"), ("line", "INTEGER"),
        ("time_text", "VARCHAR"), ("logged_at", "TIMESTAMPTZ"), ("outcome", "VARCHAR"),
        ("src", "VARCHAR"), ("dst", "VARCHAR"), ("proto", "INTEGER"), ("dport", "INTEGER"),
        ("deciding_step", "VARCHAR"), ("rule", "VARCHAR"),
    ),
    "log_steps": (
        ("node", "VARCHAR"), ("file", "VARCHAR"), ("packet", "INTEGER"), ("step", "INTEGER"),
        ("line", "INTEGER"), ("hook", "VARCHAR"), ("nf_table", "VARCHAR"), ("chain", "VARCHAR"),
        ("kind", "VARCHAR"), ("number", "INTEGER"), ("in_dev", "VARCHAR"),
        ("out_dev", "VARCHAR"), ("rule", "VARCHAR"),
    ),
    "skipped": (
        ("node", "VARCHAR"), ("file", "VARCHAR"), ("line", "INTEGER"), ("severity", "VARCHAR"),
        ("reason", "VARCHAR"),
    ),
}  # fmt: skip
"""Every table and its columns; a job's rows carry exactly these keys."""

BULK = 1000
"""From this many rows a table is loaded through a JSON-lines file (DuckDB's bulk reader)
instead of row by row: a log of a million records becomes a few seconds, not minutes."""


class FleetStore:
    def __init__(self, path: str | None = None) -> None:
        import duckdb

        try:
            self.db = duckdb.connect(path or ":memory:")
        except duckdb.Error as e:
            raise InputError(f"{path}: cannot open as a DuckDB database: {e}") from None
        for table, columns in TABLES.items():
            spec = ", ".join(f'"{name}" {kind}' for name, kind in columns)
            self.db.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({spec})')

    def add(self, result: NodeResult) -> None:
        """``result``'s rows, replacing what the store held of that node in those tables."""
        for table, rows in result.rows.items():
            self.db.execute(f'DELETE FROM "{table}" WHERE node = ?', [result.node])
            self._insert(table, rows)

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        import duckdb

        try:
            cursor = self.db.execute(sql)
        except duckdb.Error as e:
            raise InputError(f"query: {str(e).splitlines()[0]}") from None
        columns = [d[0] for d in cursor.description or ()]
        return columns, cursor.fetchall()

    def export_parquet(self, folder: Path) -> list[Path]:
        """Every table as ``folder/TABLE.parquet``."""
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for table in TABLES:
            target = folder / f"{table}.parquet"
            self.db.execute(f"COPY \"{table}\" TO '{_sql_string(target)}' (FORMAT parquet)")
            written.append(target)
        return written

    def close(self) -> None:
        self.db.close()

    def _insert(self, table: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        names = [name for name, _ in TABLES[table]]
        quoted = ", ".join(f'"{n}"' for n in names)
        if len(rows) < BULK:
            marks = ", ".join("?" * len(names))
            self.db.executemany(
                f'INSERT INTO "{table}" ({quoted}) VALUES ({marks})',
                [[row.get(n) for n in names] for row in rows],
            )
            return
        columns = ", ".join(f"'{n}': '{kind}'" for n, kind in TABLES[table])
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({n: _json_value(row.get(n)) for n in names}) + "\n")
            f.flush()
            self.db.execute(
                f'INSERT INTO "{table}" ({quoted}) SELECT {quoted} FROM '
                f"read_json('{_sql_string(Path(f.name))}', format = 'newline_delimited', "
                f"columns = {{{columns}}})"
            )


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _sql_string(path: Path) -> str:
    """A path inside a SQL string literal (DuckDB's COPY and read_json take no parameters)."""
    return str(path).replace("'", "''")
