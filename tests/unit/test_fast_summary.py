"""``log --summary`` through the compiled reader says exactly what the Python reader says.

Every comparison runs the same log twice, once with the compiled reader and once with
``NODETRACE_PURE_PYTHON=1``, and compares the whole summary (``--format json``'s document) and
every diagnostic. The compiled reader must also really be used on the logs it is for (a reader
that always gave up would pass every comparison), and must give up, not guess, on the inputs it
leaves to the Python reader.
"""

from __future__ import annotations

import gzip
import re
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodetrace.tracelog import fast_summary, pipeline
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.source import open_log
from tests.conftest import DATA

pytestmark = pytest.mark.skipif(
    not fast_summary.available(), reason="the compiled reader is not built (no C compiler)"
)

TRACELOG = DATA / "tracelog"
EXAMPLES = Path(__file__).parents[2] / "src" / "nodetrace" / "examples"
KERNEL_LOGS = sorted(
    [
        *TRACELOG.glob("*.dmesg*"),
        *TRACELOG.glob("*.kmsg"),
        TRACELOG / "seed-kern.log",
        TRACELOG / "lab-legacy-dmesg.txt",
        TRACELOG / "corpus-quantum-network-node-mangled.txt",
        *sorted(EXAMPLES.glob("*.trace.log")),
        EXAMPLES / "lab-legacy-trace.dmesg",
    ]
)
"""Kernel logs of the lab and the corpus, as the kernel and loggers wrote them."""
ALL_LOGS = sorted(p for p in TRACELOG.iterdir() if p.suffix not in (".md",)) + KERNEL_LOGS


def summarise(
    path: Path, *, compiled: bool, gap: float = 1.0, window: int = 4000
) -> tuple[dict[str, Any], list[str], bool]:
    """The summary, the diagnostics, and whether the compiled reader produced them."""
    used: list[bool] = []
    real = pipeline.summarize_compiled

    def spy(*args: Any, **kwargs: Any) -> Any:
        reader = real(*args, **kwargs)
        used.append(reader is not None)
        return reader

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "summarize_compiled", spy)
        if compiled:
            mp.delenv("NODETRACE_PURE_PYTHON", raising=False)
        else:
            mp.setenv("NODETRACE_PURE_PYTHON", "1")
        analysis = Analysis(gap=gap, window=window)
        source = open_log(str(path), analysis.sink)
        try:
            analysis.summarize(source)
        finally:
            source.close()
    notes = [str(d) for d in analysis.sink.items]
    return analysis.summary.as_json(top=50), notes, any(used)


def assert_same(path: Path, *, gap: float = 1.0, window: int = 4000) -> bool:
    """Both readers agree on ``path``; returns whether the compiled one was used."""
    fast, fast_notes, used = summarise(path, compiled=True, gap=gap, window=window)
    slow, slow_notes, _ = summarise(path, compiled=False, gap=gap, window=window)
    assert fast == slow
    assert fast_notes == slow_notes
    return used


@pytest.mark.parametrize("path", ALL_LOGS, ids=lambda p: p.name)
@pytest.mark.parametrize(("gap", "window"), [(1.0, 4000), (0.0, 4000), (1.0, 8)])
def test_every_shipped_log_is_summarised_alike(path: Path, gap: float, window: int) -> None:
    assert_same(path, gap=gap, window=window)


@pytest.mark.parametrize(
    "name",
    [
        "lab-capture-legacy.dmesg",
        "lab-capture-legacy.dmesg-T",
        "lab-capture-legacy.kmsg",
        "lab-nat.dmesg",
        "lab-capture-legacy6.dmesg",
    ],
)
def test_the_compiled_reader_is_used_on_kernel_written_logs(name: str) -> None:
    assert assert_same(TRACELOG / name)


def test_the_compiled_reader_is_used_on_the_bundled_examples() -> None:
    for path in sorted(EXAMPLES.glob("*.trace.log")):
        assert assert_same(path), path.name


def _shifted_id(by: int, m: re.Match[str]) -> str:
    return f" ID={(int(m[1]) + by) % 65536} "


def many_packets(lines: int) -> str:
    """A busy node's log: the lab's records repeated with fresh IP ids and times, so that
    thousands of passes are open, closed, seen again and evicted."""
    records = [
        line
        for name in ("lab-capture-legacy.dmesg", "lab-nat.dmesg", "lab-capture-legacy6.dmesg")
        for line in (TRACELOG / name).read_text().splitlines()
        if "TRACE:" in line
    ]
    out: list[str] = []
    for n in range(lines // len(records) + 1):
        for i, line in enumerate(records):
            stamp = f"[{1000 + n * 0.5 + i * 1e-5:12.6f}] "
            line = re.sub(r"^\[[^\]]*\] ", stamp, line)
            out.append(re.sub(r" ID=(\d+) ", partial(_shifted_id, n), line))
    return "\n".join(out[:lines]) + "\n"


def test_a_busy_log_is_summarised_alike_with_every_eviction(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_text(many_packets(12_000))
    for window in (4000, 64, 3):
        assert assert_same(path, window=window)


def test_syslog_stamps_without_the_kernel_bracket_are_read_alike(tmp_path: Path) -> None:
    """Stamps other than the kernel's bracket are read by the Python reader's own function."""
    text = many_packets(3000)
    for n, form in enumerate(
        ("Nov 10 11:23:{s:02d} node-5 kernel: ", "2025-11-10T11:23:{s:02d}.5 host kernel: ")
    ):
        lines = [
            form.format(s=(i // 500) % 60) + re.sub(r"^\[[^\]]*\] ", "", line)
            for i, line in enumerate(text.splitlines())
        ]
        path = tmp_path / f"syslog{n}.log"
        path.write_text("\n".join(lines) + "\n")
        assert assert_same(path)


@pytest.mark.parametrize("chunk", [1, 7, 4096])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_chunk_boundaries_and_line_ends(
    chunk: int, newline: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fast_summary, "CHUNK", chunk)
    text = (TRACELOG / "lab-nat.dmesg").read_text()
    path = tmp_path / "kern.log"
    path.write_bytes(text.replace("\n", newline).encode())
    assert assert_same(path)
    path.write_bytes(text.rstrip("\n").replace("\n", newline).encode())  # no final line end
    assert assert_same(path)


def test_a_compressed_log_is_read_by_the_compiled_reader(tmp_path: Path) -> None:
    path = tmp_path / "kern.log.2"
    path.write_bytes(gzip.compress((TRACELOG / "lab-nat.dmesg").read_bytes()))
    assert assert_same(path)


def test_a_cut_gzip_log_is_left_to_the_python_reader(tmp_path: Path) -> None:
    data = gzip.compress(many_packets(2000).encode())
    path = tmp_path / "kern.log.1.gz"
    path.write_bytes(data[: len(data) // 2])
    assert not assert_same(path)


def records() -> list[str]:
    return [
        line for line in (TRACELOG / "lab-nat.dmesg").read_text().splitlines() if "TRACE:" in line
    ]


@pytest.mark.parametrize(
    ("why", "mangle"),
    [
        (
            "wrapped over two lines",
            lambda r: [r[: r.index(" PROTO=")], r[r.index(" PROTO=") + 1 :]],
        ),
        ("two records glued", lambda r: [r + " " + r]),
        ("spaces lost by a web copy", lambda r: [r.replace(" OUT=", "OUT=", 1)]),
        ("no packet dump", lambda r: [r[: r.index(" IN=")]]),
        ("a tab inside", lambda r: [r.replace(" LEN=", "\tLEN=", 1)]),
        ("non-ASCII inside", lambda r: [r.replace(" LEN=", " \u00e9LEN=", 1)]),
        ("a continuation line", lambda r: [r, "  DF PROTO=TCP SPT=1 DPT=2"]),
    ],
)
def test_inputs_it_does_not_read_are_left_to_the_python_reader(
    why: str, mangle: Any, tmp_path: Path
) -> None:
    lines = records()
    lines[5:6] = mangle(lines[5])
    path = tmp_path / "kern.log"
    path.write_text("\n".join(lines) + "\n")
    assert not assert_same(path), why


def test_binary_junk_between_records_is_counted_alike(tmp_path: Path) -> None:
    lines = [line.encode() for line in records()]
    lines[3:3] = [b"\x00\x01\x02 junk", b"caf\xc3\xa9 ok", b"bad \xff\xfe bytes", b"\xef\xbf\xbd"]
    path = tmp_path / "kern.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert assert_same(path)


NOISE = [
    "kernel: [  12.000001] eth0: link up",
    "",
    "   ",
    "ACKNOWLEDGED nothing",
    "systemd[1]: Started Session 5.",
    "caf\u00e9 au lait",
]
"""Lines that are not records and that the compiled reader reads too."""
LEFT_TO_PYTHON = [
    "  DF PROTO=TCP SPT=1 DPT=2",
    "ID=5 continues a record",
    "\u00a0indented",
    "TRACE: broken",
]
"""Lines that make it give up when they follow a record (or anywhere, for a broken record)."""


@st.composite
def logs(draw: st.DrawFn) -> tuple[bytes, int, float, int, bool]:
    pool = records()
    left = draw(st.booleans())
    lines = st.sampled_from(pool) | st.sampled_from(NOISE)
    if left:
        lines |= st.sampled_from(LEFT_TO_PYTHON)
    picked = draw(st.lists(lines, min_size=1, max_size=80))
    ends = draw(
        st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=len(picked), max_size=len(picked))
    )
    text = "".join(line + end for line, end in zip(picked, ends, strict=True))
    if draw(st.booleans()):
        text = text.rstrip("\r\n")
    chunk = draw(st.sampled_from([1, 3, 64, 1 << 16]))
    gap = draw(st.sampled_from([0.0, 1.0]))
    window = draw(st.sampled_from([2, 4000]))
    after_record = [
        line
        for before, line in zip(["", *picked], picked, strict=False)
        if "TRACE:" in before or line.startswith("TRACE:")
    ]
    return text.encode(), chunk, gap, window, not set(after_record) & set(LEFT_TO_PYTHON)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs())
def test_random_mixes_of_records_noise_and_line_ends_are_summarised_alike(
    case: tuple[bytes, int, float, int, bool],
) -> None:
    data, chunk, gap, window, readable = case
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.setattr(fast_summary, "CHUNK", chunk)
        path = Path(folder) / "kern.log"
        path.write_bytes(data)
        used = assert_same(path, gap=gap, window=window)
    assert used == readable
