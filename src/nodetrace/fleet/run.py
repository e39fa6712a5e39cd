"""Run one job per node: in this process, in local processes, or on a Dask cluster.

Local processes are the default (one per CPU: loading a node's snapshot is CPU-bound Python);
``--scheduler ADDRESS`` hands the same jobs to a Dask ``distributed`` scheduler when one
machine is not enough. Results come back as they finish (for the progress bar) and the caller
orders them by node, so the store's contents do not depend on where or in what order nodes ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from nodetrace.errors import InputError, UsageError
from nodetrace.fleet.jobs import NodeResult

Job = Callable[..., NodeResult]


def run_jobs(
    job: Job,
    calls: Sequence[tuple[Any, ...]],
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
) -> Iterator[NodeResult]:
    """``job(*args)`` for every ``args`` of ``calls``, yielded as each finishes."""
    if scheduler is not None:
        yield from _on_dask(job, calls, scheduler)
        return
    workers = jobs or os.cpu_count() or 1
    if workers < 1:
        raise UsageError("--jobs: give at least 1")
    if workers == 1 or len(calls) == 1:
        for args in calls:
            yield job(*args)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(calls))) as pool:
        futures = [pool.submit(job, *args) for args in calls]
        for future in as_completed(futures):
            yield future.result()


def _on_dask(job: Job, calls: Sequence[tuple[Any, ...]], scheduler: str) -> Iterator[NodeResult]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'nodetrace[fleet]'") from None
    try:
        client = Client(scheduler, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as e:
        raise InputError(f"--scheduler {scheduler}: cannot reach the Dask scheduler: {e}") from None
    with client:
        futures = [client.submit(job, *args, pure=False) for args in calls]
        for future in dask_completed(futures):  # type: ignore[no-untyped-call]
            yield future.result()
