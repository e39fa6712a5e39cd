"""``nodetrace fleet`` over 200 generated nodes: which nodes drop a packet, every node's log,
the same answers from local processes and from a real Dask cluster started here.

The nodes are the bundled lab snapshot of cmp2 (src/nodetrace/examples/, captured from the
real kernel and OVS) under 200 host names; every seventh node has one more rule in db2's
ingress chain that drops tcp/5432, so the nodes that must drop are known from how they were
made, not from nodetrace. Each node's log is the TRACE log captured on cmp2 in the same lab.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from nodetrace.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
NODES = 200
DROP_EVERY = 7
EXTRA_DROP = "-A neutron-openvswi-i79645311-2 -p tcp -m tcp --dport 5432 -j DROP"
STAMP = "2026-11-26T06:36:14.538123+00:00"
PACKET = ["--packet", "tcp,tp_dst=5432,tcp_flags=+syn", "--from-port", "85f28c5a",
          "--to-port", "79645311"]  # fmt: skip


def node_name(i: int) -> str:
    return f"cmp{i:03d}"


def dropping(i: int) -> bool:
    return i % DROP_EVERY == 0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    with tarfile.open(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    (root / "snapshots").mkdir()
    for i in range(1, NODES + 1):
        files = dict(members)
        manifest = json.loads(files["cmp2/manifest.json"])
        manifest["host"] = node_name(i)
        files["cmp2/manifest.json"] = json.dumps(manifest).encode()
        if dropping(i):
            save = files["cmp2/host/iptables-legacy-save.txt"].decode()
            first_rule = next(
                rule
                for rule in save.splitlines()
                if rule.startswith("-A neutron-openvswi-i79645311-2")
            )
            save = save.replace(first_rule, f"{EXTRA_DROP}\n{first_rule}", 1)
            files["cmp2/host/iptables-legacy-save.txt"] = save.encode()
        with tarfile.open(root / "snapshots" / f"{node_name(i)}.tar.gz", "w:gz") as out:
            for name, data in files.items():
                info = tarfile.TarInfo(name.replace("cmp2/", f"{node_name(i)}/", 1))
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
        log_dir = root / "logs" / node_name(i)
        log_dir.mkdir(parents=True)
        log = (EXAMPLES / "two-nodes-cmp2.trace.log").read_text()
        if i == 1:  # as rsyslog's high-precision template writes the kernel's lines
            log = "".join(f"{STAMP} {node_name(i)} kernel: {line}\n" for line in log.splitlines())
        (log_dir / "kern.log").write_text(log)
    return root


def fleet_run(*argv: str) -> dict:  # type: ignore[type-arg]
    """``nodetrace fleet ARGV --format json``'s document (the command must succeed)."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["fleet", *argv, "--format", "json", "--no-progress"]) == 0
    return json.loads(out.getvalue())


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def trace_db(fleet: Path) -> Path:
    db = fleet / "trace.duckdb"
    fleet_run("trace", str(fleet / "snapshots"), *PACKET, "--jobs", "2", "--db", str(db))
    return db


@pytest.fixture(scope="module")
def log_db(fleet: Path) -> Path:
    db = fleet / "log.duckdb"
    fleet_run("log", str(fleet / "logs"), "--snapshots", str(fleet / "snapshots"),
              "--jobs", "2", "--db", str(db))  # fmt: skip
    return db


def test_fleet_trace_names_exactly_the_nodes_that_drop_and_the_rule(trace_db: Path) -> None:
    found = rows(trace_db, "SELECT node, status, outcome, rule FROM traces ORDER BY node")
    assert len(found) == NODES
    for i, (node, status, outcome, rule) in enumerate(found, start=1):
        assert node == node_name(i) and status == "traced"
        if dropping(i):
            assert (outcome, rule) == ("dropped", EXTRA_DROP)
        else:
            assert (outcome, rule) == ("delivered", None)


def test_fleet_log_counts_each_nodes_packets_as_the_log_command_does(log_db: Path) -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        main(["log", str(EXAMPLES / "two-nodes-cmp2.trace.log"), "--rules",
              str(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"), "--summary", "--format", "json"])  # fmt: skip
    expected = json.loads(out.getvalue())["summary"]["by_outcome"]
    per_node: dict[object, dict[object, object]] = {}
    for node, outcome, count in rows(
        log_db, "SELECT node, outcome, count(*) FROM log_packets GROUP BY ALL"
    ):
        per_node.setdefault(node, {})[outcome] = count
    assert len(per_node) == NODES
    wanted = {o: n for o, n in expected.items() if n}
    assert all(counts == wanted for counts in per_node.values())


def test_fleet_log_keeps_every_trace_record_of_every_node(log_db: Path) -> None:
    records = sum(1 for line in (EXAMPLES / "two-nodes-cmp2.trace.log").open() if "TRACE:" in line)
    per_node = rows(log_db, "SELECT DISTINCT count(*) FROM log_steps GROUP BY node")
    assert per_node == [(records,)]


def test_fleet_log_places_packets_in_time_only_when_the_log_says_when(log_db: Path) -> None:
    found = rows(log_db, "SELECT node, min(logged_at)::VARCHAR, count(logged_at) "
                         "FROM log_packets GROUP BY ALL ORDER BY node")  # fmt: skip
    assert found[0] == (node_name(1), "2026-11-26 06:36:14.538123+00", 3)
    assert all(stamp is None and count == 0 for _, stamp, count in found[1:])


@pytest.fixture(scope="module")
def dask_scheduler() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:  # fmt: skip
        yield cluster.scheduler_address


def test_a_dask_cluster_gives_the_same_results_as_local_processes(
    fleet: Path, trace_db: Path, dask_scheduler: str, tmp_path: Path
) -> None:
    parquet = tmp_path / "out"
    fleet_run("trace", str(fleet / "snapshots"), *PACKET, "--scheduler", dask_scheduler,
              "--parquet", str(parquet))  # fmt: skip
    sql = "SELECT * FROM {} ORDER BY node"
    assert rows(trace_db, sql.format(f"'{parquet / 'traces.parquet'}'")) == rows(
        trace_db, sql.format("traces")
    )


def test_fleet_audit_finds_the_shadowed_rule_on_exactly_the_changed_nodes(fleet: Path) -> None:
    from nodetrace.api import load_snapshot
    from nodetrace.audit import audit

    db = fleet / "audit.duckdb"
    fleet_run("audit", str(fleet / "snapshots"), "--jobs", "2", "--db", str(db))
    shadowed = rows(db, "SELECT node FROM findings WHERE check_id = 'shadowed-rule' AND "
                        "subject LIKE 'filter neutron-openvswi-i79645311-2 %' ORDER BY node")  # fmt: skip
    assert [node for (node,) in shadowed] == [
        node_name(i) for i in range(1, NODES + 1) if dropping(i)
    ]
    direct = audit(load_snapshot(fleet / "snapshots" / f"{node_name(DROP_EVERY)}.tar.gz"))
    stored = rows(
        db, f"SELECT check_id, subject FROM findings WHERE node = '{node_name(DROP_EVERY)}'"
    )
    assert sorted(stored) == sorted((f.check, f.subject) for f in direct)
