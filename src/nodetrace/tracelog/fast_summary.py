"""``log --summary`` of a kernel log through the compiled reader, when it applies.

The compiled module (``_fastsummary.c``) reads and groups the records of a kernel log as the
Python reader and grouper do, for whole single-line records written by the kernel; it counts
pass *shapes* (prefixes, device fields, family) instead of building passes. Each shape is
concluded here once, with the same :func:`~nodetrace.tracelog.explain.conclude` every other
view uses, and added to the summary as often as it occurred.

It gives up on any input it does not read exactly as the Python reader would (say, a record a
web page wrapped over two lines) and on a damaged compressed file; then nothing has been added
and :func:`summarize_compiled` returns ``None``: the caller reads the file with the Python
reader, which reports every such line. ``NODETRACE_PURE_PYTHON=1`` turns the compiled reader
off, and without a C compiler at install time it is simply absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from nodetrace.model.packet import Family
from nodetrace.parsers.trace_kernel_log import KernelLogReader, envelope_time, repair_spaces
from nodetrace.tracelog.explain import conclude_shape
from nodetrace.tracelog.group_legacy import PassShape, PrefixInfo
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import LogSource
from nodetrace.tracelog.summary import Summary

try:
    from nodetrace.tracelog._fastsummary import (  # type: ignore[import-not-found,unused-ignore]
        Summarizer,
        Unsupported,
    )
except ImportError:  # built without a C compiler
    Summarizer = None

CHUNK = 1 << 22
_FAMILIES = {4: Family.IPV4, 6: Family.IPV6}


def available() -> bool:
    """Whether the compiled reader is built and not turned off."""
    return Summarizer is not None and not os.environ.get("NODETRACE_PURE_PYTHON")


def summarize_compiled(
    source: LogSource, summary: Summary, *, gap: float, window: int, book: RuleBook | None
) -> KernelLogReader | None:
    """Add the kernel log ``source`` to ``summary``; the reader that says how its lines were used.

    ``None`` when the compiled reader does not apply (then ``summary`` is unchanged).
    """
    if not available():
        return None
    chunks = source.chunks_again(CHUNK)
    if chunks is None:
        return None
    result = _read(chunks, source, Summarizer(gap, window, envelope_time))
    # A web copy loses spaces between fields: the Python reader checks the first records.
    if result is None or any(repair_spaces(line)[1] for line in result["glue_lines"]):
        source.read_by_lines()
        return None
    _add_shapes(summary, result, book)
    return _reader_of(result)


def _read(
    chunks: Iterator[memoryview], source: LogSource, summarizer: Any
) -> dict[str, Any] | None:
    try:
        if not all(map(summarizer.feed, chunks)):
            return None
        result: dict[str, Any] = summarizer.finish()
    except Unsupported:
        return None
    except source.damage:  # the Python reader says where the data ends
        return None
    finally:
        chunks.close()  # type: ignore[attr-defined]
    return result


def _add_shapes(summary: Summary, result: dict[str, Any], book: RuleBook | None) -> None:
    infos = [PrefixInfo.of(prefix) for prefix in result["prefixes"]]
    devs = result["devs"]
    for family, prefix_ids, devs_ids, passes, again in result["shapes"]:
        shape = PassShape(
            [infos[i] for i in prefix_ids], [devs[i] for i in devs_ids], _FAMILIES[family]
        )
        summary.add_passes(conclude_shape(shape, book), passes, again)
    summary.step_hits.update(dict(result["hits"]))


def _reader_of(result: dict[str, Any]) -> KernelLogReader:
    reader = KernelLogReader()
    counts = reader.counts
    counts.total = result["total"]
    counts.parsed = result["parsed"]
    counts.skipped = result["skipped"]
    counts.not_text = result["not_text"]
    counts.first_not_text = result["first_not_text"]
    return reader
