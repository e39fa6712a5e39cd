"""Open a log for reading as text lines: a plain file, a gzip file (by content), or stdin.

Logs come from other machines in every state: compressed, cut short, with CRLF line ends or
binary junk in them. Bytes that are not UTF-8 become U+FFFD (the line is then skipped and
counted as not text), CRLF and CR end lines like LF, and a gzip stream that ends early yields
the lines before the damage plus a warning naming the line, never an exception.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO

from nodetrace.errors import DiagnosticSink, InputError, SourcePos

GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from the underlying file, for a progress bar."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        readinto = getattr(self.raw, "readinto", None)
        if readinto is not None:
            n = readinto(buffer) or 0
        else:
            data = self.raw.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        self.count += n
        return int(n)


@dataclass
class LogSource:
    """One input: its display name, its size if known, and its lines (read once)."""

    name: str
    size: int | None
    compressed: bool
    _text: io.TextIOWrapper
    _counter: _CountingReader
    _sink: DiagnosticSink
    lines_read: int = 0
    truncated: bool = False
    _closers: list[BinaryIO] = field(default_factory=list)
    _head: list[str] = field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        return self._counter.count

    def lines(self) -> Iterator[str]:
        """The text lines, each with its line end; stops with a warning if the data is damaged."""
        if self.truncated:
            return iter(self._head)  # peek_lines met the damage and has said so already
        lines = chain(self._head, self._text)
        if not self.compressed:
            return lines  # the common case: no Python-level layer per line
        return self._guarded(lines)

    def _guarded(self, lines: Iterator[str]) -> Iterator[str]:
        lineno = 0
        try:
            for line in lines:
                lineno += 1
                yield line
        except (EOFError, OSError, zlib.error) as err:
            self.truncated = True
            self._sink.warn(
                SourcePos(self.name, lineno + 1),
                f"compressed data ends early or is damaged ({err}); the {lineno} lines before were used",
            )

    def peek_lines(self, count: int) -> list[str]:
        """The first ``count`` lines, which :meth:`lines` will still yield (for format sniffing)."""
        head: list[str] = []
        try:
            for line in self._text:
                head.append(line)
                if len(head) >= count:
                    break
        except (EOFError, OSError, zlib.error) as err:
            self.truncated = True
            self._sink.warn(
                SourcePos(self.name, len(head) + 1),
                f"compressed data ends early or is damaged ({err}); the {len(head)} lines before were used",
            )
        self._head = head
        return head

    def close(self) -> None:
        for f in self._closers:
            f.close()


def open_bytes(name: str, data: bytes, sink: DiagnosticSink) -> LogSource:
    """A log held in memory (tests, or data handed over by another tool)."""
    return _wrap(name, io.BytesIO(data), len(data), [], sink)


def open_log(name: str, sink: DiagnosticSink) -> LogSource:
    """Open ``name`` (``-`` for stdin); a missing or unreadable file raises :class:`InputError`."""
    if name == STDIN:
        raw: BinaryIO = sys.stdin.buffer
        size: int | None = None
        display = "<stdin>"
        closers: list[BinaryIO] = []
    else:
        path = Path(name)
        try:
            raw = path.open("rb")
        except FileNotFoundError:
            raise InputError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise InputError(f"{name}: is a directory, not a log file") from None
        except OSError as err:
            raise InputError(f"{name}: cannot read ({err.strerror})") from None
        mode = os.fstat(raw.fileno()).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            # /dev/zero or a disk would be read forever as one endless line.
            raw.close()
            raise InputError(f"{name}: is a device, not a log file")
        size = path.stat().st_size
        display = name
        closers = [raw]
    return _wrap(display, raw, size, closers, sink)


def _wrap(
    display: str, raw: BinaryIO, size: int | None, closers: list[BinaryIO], sink: DiagnosticSink
) -> LogSource:
    counter = _CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=1 << 20)
    compressed = buffered.peek(2)[:2] == GZIP_MAGIC
    binary: BinaryIO = buffered
    if compressed:
        binary = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline=None)
    return LogSource(display, size, compressed, text, counter, sink, _closers=closers)
