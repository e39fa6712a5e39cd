"""Opening logs, and reading whole inputs (rulesets, listings): compressed with gzip, bzip2, xz
or zstd (known by content, whatever the name), cut short, or zstd without the package that reads
it; devices and missing files refused in one line."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import lzma
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from nodetrace.errors import DiagnosticSink, InputError
from nodetrace.tracelog.pipeline import Analysis
from nodetrace.tracelog.source import compression_of, open_bytes, open_log, read_text
from tests.conftest import DATA

LOG = (DATA / "tracelog" / "lab-nat.dmesg").read_bytes()
HAVE_ZSTD = importlib.util.find_spec("zstandard") is not None


def zstd_compress(data: bytes) -> bytes:
    import zstandard

    return bytes(zstandard.ZstdCompressor().compress(data))


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}
if HAVE_ZSTD:
    COMPRESSORS["zstd"] = zstd_compress


def packets_in(path: str) -> tuple[int, DiagnosticSink]:
    analysis = Analysis()
    source = open_log(path, analysis.sink)
    try:
        analysis.summarize(source)
    finally:
        source.close()
    return analysis.summary.packets, analysis.sink


def test_the_plain_log_has_28_packets(tmp_path: Path) -> None:
    path = tmp_path / "kern.log"
    path.write_bytes(LOG)
    assert packets_in(str(path))[0] == 28


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_compressed_logs_read_like_plain_ones_whatever_their_name(
    kind: str, tmp_path: Path
) -> None:
    data = COMPRESSORS[kind](LOG)
    assert compression_of(data[:6]) == kind
    for name in (f"kern.log.{kind}", "kern.log.1"):  # a rotated log keeps no suffix
        path = tmp_path / name
        path.write_bytes(data)
        count, sink = packets_in(str(path))
        assert count == 28 and not sink.items, name


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_a_compressed_log_cut_short_gives_the_lines_before_and_a_warning(kind: str) -> None:
    # several streams one after another (as `cat a.gz b.gz` or a multi-frame zstd gives), the
    # last one cut in its middle
    whole = COMPRESSORS[kind](LOG)
    data = whole + COMPRESSORS[kind](LOG * 40)
    data = data[: len(whole) + (len(data) - len(whole)) // 2]
    analysis = Analysis()
    source = open_bytes("cut", data, analysis.sink)
    analysis.summarize(source)
    lines = analysis.summary.lines.total
    assert LOG.count(b"\n") <= lines < 41 * LOG.count(b"\n")
    (warning,) = [d for d in analysis.sink.items if "ends early or is damaged" in d.message]
    assert warning.pos is not None and warning.pos.line == lines + 1


def test_zstd_without_its_package_is_refused_in_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kern.log.zst"
    # a zstd frame header (magic, then a frame descriptor): recognised by its first bytes
    path.write_bytes(b"\x28\xb5\x2f\xfd\x24\x00\x01\x00\x00")
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import fails as when not installed
    with pytest.raises(InputError) as err:
        open_log(str(path), DiagnosticSink())
    message = str(err.value)
    assert "\n" not in message and "zstandard" in message and str(path) in message


def test_text_that_merely_starts_like_bzip2_is_read_as_text() -> None:
    assert compression_of(b"BZh9") == "bzip2"
    assert compression_of(b"BZhello") is None
    analysis = Analysis()
    analysis.summarize(open_bytes("t", b"BZhello\n" + LOG, analysis.sink))
    assert analysis.summary.packets == 28


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_inputs_read_whole_are_decompressed_by_content_and_damage_is_one_error(
    kind: str, tmp_path: Path
) -> None:
    rules, plain, cut = tmp_path / "rules", tmp_path / "plain", tmp_path / "cut"
    data = COMPRESSORS[kind](LOG)
    rules.write_bytes(data)
    plain.write_bytes(LOG)
    cut.write_bytes(data[: len(data) // 2])
    assert read_text(str(rules)) == LOG.decode()
    assert read_text(str(plain)) == LOG.decode()  # plain text passes through
    with pytest.raises(InputError) as err:
        read_text(str(cut))
    assert str(err.value).startswith(f"{cut}: damaged {kind} file (") and "\n" not in str(err.value)


def test_a_whole_input_from_stdin_is_decompressed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(LOG))))
    assert read_text("-") == LOG.decode()


def test_bytes_that_are_not_utf8_become_replacement_characters(tmp_path: Path) -> None:
    path = tmp_path / "latin1"
    path.write_bytes(b"-A INPUT -m comment --comment caf\xe9 -j ACCEPT\n")
    assert read_text(str(path)) == "-A INPUT -m comment --comment caf\ufffd -j ACCEPT\n"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("/dev/zero", "is a device, not a file"),
        ("/nonexistent", "no such file"),
        ("/", "is a folder"),
    ],
)
def test_what_is_not_a_readable_file_is_one_error_naming_it(name: str, reason: str) -> None:
    with pytest.raises(InputError) as err:
        read_text(name)  # /dev/zero would be read forever
    assert str(err.value).startswith(f"{name}: {reason}") and "\n" not in str(err.value)
