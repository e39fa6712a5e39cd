"""Whatever a log holds, ``nodetrace log`` never fails and accounts for every line.

For arbitrary text and for arbitrary cuts and splices of real logs (every format nodetrace
reads, compressed too): no exception escapes, and parsed + skipped + malformed lines add up to
the lines of the input. Real records that lost any of their spaces read as the originals.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import lzma
import re
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodetrace.errors import DiagnosticSink
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.trace_kernel_log import KernelLogReader, LegacyRecord
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import compression_of, open_bytes
from tests.conftest import DATA

TRACELOG = DATA / "tracelog"
REAL_LOGS = [
    (TRACELOG / name).read_bytes()
    for name in (
        "seed-kern.log",
        "lab-legacy-dmesg.txt",
        "lab-legacy-nflog-decoded.txt",
        "lab-nft-xtables-monitor.txt",
        "lab-nft-monitor-trace.txt",
        "lab-nft-monitor-trace-ovs-hybrid.txt",
        "corpus-libvirt-virbr0-forward-snat.txt",
        "corpus-nftrace-firewalld-dns-reply.txt",
        "corpus-nftrace-ipv6-icmp-output.txt",
        "corpus-quantum-network-node-mangled.txt",
        "lab-nat.dmesg",
        "lab-nat-nft.xtables-monitor",
    )
]
KERNEL_LINES = [
    line
    for name in ("lab-nat.dmesg", "lab-capture-legacy6.dmesg", "lab-capture-legacy.dmesg")
    for line in (TRACELOG / name).read_text().splitlines()
]
_rules = parse_iptables_save(
    (TRACELOG / "lab-rules.iptables-save").read_text(), source="rules", sink=DiagnosticSink()
)
BOOK = RuleBook({_rules.family: _rules}, sources=("rules",))
HAVE_ZSTD = importlib.util.find_spec("zstandard") is not None
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected_lines(data: bytes) -> int:
    """Lines as universal newlines split them (LF, CRLF or a lone CR end a line)."""
    text = data.decode("utf-8", errors="replace")
    if not text:
        return 0
    parts = re.split(r"\r\n|\r|\n", text)
    return len(parts) - 1 if parts[-1] == "" else len(parts)


def analyse(data: bytes, *, summary: bool, book: RuleBook | None) -> Analysis:
    analysis = Analysis(book=book)
    source = open_bytes("input", data, analysis.sink)
    if summary:
        analysis.summarize(source)
    else:
        for obs in analysis.packets(source):
            assert obs.trace.steps  # every packet has at least one step
            assert obs.trace.outcome is not None
    return analysis


def check_counts(analysis: Analysis, data: bytes, *, truncated: bool = False) -> None:
    lines = analysis.summary.lines
    assert lines.parsed + lines.skipped + lines.malformed == lines.total
    if not truncated:
        assert lines.total == expected_lines(data)


@SETTINGS
@given(text=st.text(), summary=st.booleans())
def test_arbitrary_text(text: str, summary: bool) -> None:
    data = text.encode("utf-8", errors="surrogatepass")
    check_counts(analyse(data, summary=summary, book=BOOK), data)


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    kind = compression_of(data[:6])
    if kind == "zstd" and not HAVE_ZSTD:
        return  # refused in one line: tests/unit/test_log_source.py
    analysis = analyse(data, summary=False, book=None)
    compressed = kind is not None  # read as compressed: damaged, so a warning and few lines
    check_counts(analysis, data, truncated=compressed)
    if compressed:
        assert any("compressed data" in d.message for d in analysis.sink.items)


@SETTINGS
@given(
    log=st.sampled_from(REAL_LOGS),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    summary=st.booleans(),
    with_rules=st.booleans(),
)
def test_truncations_of_real_logs(
    log: bytes, cut: tuple[float, float], summary: bool, with_rules: bool
) -> None:
    start, end = sorted(int(f * len(log)) for f in cut)
    data = log[start:end]
    check_counts(analyse(data, summary=summary, book=BOOK if with_rules else None), data)


@SETTINGS
@given(
    pieces=st.lists(
        st.tuples(st.sampled_from(REAL_LOGS), st.floats(0, 1), st.floats(0, 1)),
        min_size=1,
        max_size=6,
    ),
    noise=st.lists(st.text(max_size=40), max_size=4),
)
def test_splices_of_real_logs_and_noise(
    pieces: list[tuple[bytes, float, float]], noise: list[str]
) -> None:
    chunks = []
    for log, a, b in pieces:
        start, end = sorted(int(f * len(log)) for f in (a, b))
        chunks.append(log[start:end])
    chunks.extend(n.encode("utf-8", errors="surrogatepass") for n in noise)
    data = b"".join(chunks)
    check_counts(analyse(data, summary=False, book=BOOK), data)


@SETTINGS
@given(
    log=st.sampled_from(REAL_LOGS),
    cut=st.floats(0, 1),
    compress=st.sampled_from([gzip.compress, bz2.compress, lzma.compress]),
)
def test_truncated_compressed(log: bytes, cut: float, compress: Callable[[bytes], bytes]) -> None:
    compressed = compress(log * 3)
    data = compressed[: int(cut * len(compressed))]
    analysis = analyse(data, summary=True, book=None)
    check_counts(analysis, data, truncated=True)
    assert analysis.summary.lines.total <= expected_lines(log * 3)


def _fields(line: str) -> tuple[list[tuple[str, str, str | None]], KernelLogReader]:
    reader = KernelLogReader()
    records: list[LegacyRecord] = list(reader.records([line + "\n"]))
    return [(r.prefix, r.devs.strip(), r.ident) for r in records], reader


@SETTINGS
@given(line=st.sampled_from(KERNEL_LINES), data=st.data())
def test_real_records_that_lost_spaces_read_as_the_originals(
    line: str, data: st.DataObject
) -> None:
    start = line.index("TRACE:") + len("TRACE:")
    spaces = [i for i in range(start, len(line.rstrip())) if line[i] == " "]
    lost = set(data.draw(st.lists(st.sampled_from(spaces), min_size=1)))
    glued = "".join(c for i, c in enumerate(line) if i not in lost)
    original, _ = _fields(line)
    repaired, reader = _fields(glued)
    assert repaired == original
    assert [r.line for r in reader.repairs] == [1]
