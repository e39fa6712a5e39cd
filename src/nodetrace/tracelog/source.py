"""Read inputs as text: a log line by line (:func:`open_log`), or a whole file at once
(:func:`read_text`: rulesets, ipsets, listings, OVS dumps), plain or compressed, or stdin.

Logs come from other machines in every state: compressed (gzip, bzip2, xz or zstd, known by
their first bytes whatever the file is called, so a rotated ``kern.log.2`` that is really
gzip, or a compressed stdin, read too), cut short, with CRLF line ends or binary junk in them.
Bytes that are not UTF-8 become U+FFFD (the line is then skipped and counted as not text),
CRLF and CR end lines like LF, and a compressed stream that ends early yields the lines before
the damage plus a warning naming the line, never an exception. zstd needs the ``zstandard``
package; without it a zstd file is refused in one line that says what to install.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import mmap
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from nodetrace.errors import DiagnosticSink, InputError, SourcePos

GZIP_MAGIC = b"\x1f\x8b"
COMPRESSIONS: tuple[tuple[bytes, str], ...] = (
    (GZIP_MAGIC, "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
"""First bytes of each compressed format, and its name."""
STDIN = "-"

DAMAGE: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError)
"""What a decompressor raises on a stream that is cut short or damaged."""


def compression_of(head: bytes) -> str | None:
    """The compressed format whose magic bytes ``head`` starts with, if any."""
    for magic, name in COMPRESSIONS:
        if head.startswith(magic):
            if name == "bzip2" and not head[3:4].isdigit():
                continue  # "BZh" is followed by the block size, 1-9
            return name
    return None


def decompressing(
    kind: str, raw: BinaryIO, name: str
) -> tuple[BinaryIO, tuple[type[BaseException], ...]]:
    """A reader of the decompressed bytes of ``raw`` (which holds ``kind`` data), and what it
    raises when the data is cut short or damaged.

    Raises :class:`InputError` for zstd when the ``zstandard`` package is not installed.
    """
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb"), DAMAGE  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw, mode="rb"), DAMAGE  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw, mode="rb"), DAMAGE  # type: ignore[return-value]
    try:
        import zstandard  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise InputError(
            f"{name}: zstd-compressed, and reading zstd needs the Python package 'zstandard' "
            f"(pip install zstandard); or decompress it first: zstd -dc FILE | nodetrace log -"
        ) from None
    reader = _ZstdReader(raw, zstandard.ZstdDecompressor())
    return io.BufferedReader(reader, buffer_size=1 << 20), (*DAMAGE, zstandard.ZstdError)


def decompressed(data: bytes, name: str) -> bytes:
    """``data`` decompressed if its first bytes say it is compressed, else ``data`` itself.

    For inputs read whole (a ruleset, an ipset dump): damaged or cut-short compressed data
    raises :class:`InputError` in one line, as a zstd file does without ``zstandard``.
    """
    kind = compression_of(data[:6])
    if kind is None:
        return data
    reader, damage = decompressing(kind, io.BytesIO(data), name)
    try:
        return reader.read()
    except damage as err:
        raise InputError(f"{name}: damaged {kind} file ({err})") from None


def read_text(name: str) -> str:
    """The whole text of file ``name`` (``-``: stdin), for inputs read at once (a ruleset, an
    ipset or nft listing, an OVS dump): decompressed when its first bytes say so, decoded as
    UTF-8 with U+FFFD for bytes that are not.

    A missing, unreadable or damaged file, a folder or a device (``/dev/zero`` would be read
    forever) raises :class:`InputError` in one line naming the file.
    """
    if name == STDIN:
        return decompressed(sys.stdin.buffer.read(), "<stdin>").decode("utf-8", errors="replace")
    try:
        with open(name, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                raise InputError(f"{name}: is a device, not a file")
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a folder, not a file") from None
    except OSError as err:
        raise InputError(f"{name}: cannot read ({err.strerror or err})") from None
    return decompressed(data, name).decode("utf-8", errors="replace")


class _ZstdReader(io.RawIOBase):
    """Decompresses zstd frames one after another, and raises :class:`EOFError` when the data
    ends inside a frame (zstandard's own stream reader ends quietly there)."""

    def __init__(self, raw: BinaryIO, decompressor: Any) -> None:
        self._raw = raw
        self._decompressor = decompressor
        self._frame = decompressor.decompressobj()
        self._in_frame = False
        self._pending = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending and not self._done:
            chunk = self._raw.read(1 << 16)
            if not chunk:
                self._done = True
                if self._in_frame:
                    raise EOFError("zstd data ends inside a frame")
                break
            self._pending = self._decompress(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _decompress(self, data: bytes) -> bytes:
        out = []
        while data:
            out.append(self._frame.decompress(data))
            if self._frame.eof:  # the frame is complete: what follows is the next frame
                data = self._frame.unused_data
                self._frame = self._decompressor.decompressobj()
                self._in_frame = False
            else:
                self._in_frame = True
                data = b""
        return b"".join(out)


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
    """The file is compressed (``compression`` says how): its lines are read guarded."""
    _text: io.TextIOWrapper
    _counter: _CountingReader
    _sink: DiagnosticSink
    lines_read: int = 0
    truncated: bool = False
    compression: str | None = None
    """``gzip``, ``bzip2``, ``xz`` or ``zstd`` (by the file's first bytes), or None."""
    damage: tuple[type[BaseException], ...] = DAMAGE
    """What the decompressor raises on damaged data."""
    _closers: list[BinaryIO] = field(default_factory=list)
    _head: list[str] = field(default_factory=list)
    path: str | None = None
    """The file's path (``None`` for stdin and data in memory)."""
    _first_counter: _CountingReader | None = None

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
        except self.damage as err:
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
        except self.damage as err:
            self.truncated = True
            self._sink.warn(
                SourcePos(self.name, len(head) + 1),
                f"compressed data ends early or is damaged ({err}); the {len(head)} lines before were used",
            )
        self._head = head
        return head

    def chunks_again(self, size: int) -> Iterator[memoryview] | None:
        """The file's bytes from the start once more, decompressed, in pieces of about ``size``
        (counted for the progress bar); ``None`` for stdin or data held in memory (they cannot
        be read twice). A plain file is mapped into memory rather than copied. Decompression
        errors propagate as :attr:`damage`."""
        if self.path is None:
            return None
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 (closed by the generator)
        except OSError:
            return None
        self._first_counter = self._first_counter or self._counter
        self._counter = _CountingReader(raw)
        return self._chunks(raw, size)

    def _chunks(self, raw: BinaryIO, size: int) -> Iterator[memoryview]:
        counter = self._counter
        with raw:
            if self.compression is None:
                try:
                    mapped: mmap.mmap | None = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError):  # empty, or not a mappable file
                    mapped = None
                if mapped is not None:
                    with mapped:
                        mapped.madvise(mmap.MADV_SEQUENTIAL)
                        whole = memoryview(mapped)
                        released = 0
                        try:
                            for start in range(0, len(whole), size):
                                counter.count = end = min(start + size, len(whole))
                                yield whole[start:end]
                                # pages read: out of this process's memory (not the page cache)
                                upto = end - end % mmap.PAGESIZE
                                if upto > released:
                                    mapped.madvise(mmap.MADV_DONTNEED, released, upto - released)
                                    released = upto
                        finally:
                            whole.release()
                    return
            buffered = io.BufferedReader(counter, buffer_size=1 << 20)
            stream: BinaryIO = buffered
            if self.compression is not None:
                stream, _ = decompressing(self.compression, buffered, self.name)
            buffer = memoryview(bytearray(size))
            while n := stream.readinto(buffer):  # type: ignore[attr-defined]
                yield buffer[:n]

    def read_by_lines(self) -> None:
        """After :meth:`reopen`, the progress bar follows :meth:`lines` again."""
        if self._first_counter is not None:
            self._counter = self._first_counter

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
    return _wrap(display, raw, size, closers, sink, path=None if name == STDIN else name)


def _wrap(
    display: str,
    raw: BinaryIO,
    size: int | None,
    closers: list[BinaryIO],
    sink: DiagnosticSink,
    path: str | None = None,
) -> LogSource:
    counter = _CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=1 << 20)
    kind = compression_of(buffered.peek(6)[:6])
    binary: BinaryIO = buffered
    damage = DAMAGE
    if kind is not None:
        try:
            binary, damage = decompressing(kind, binary, display)
        except InputError:
            for f in closers:
                f.close()
            raise
    text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline=None)
    return LogSource(
        display,
        size,
        kind is not None,
        text,
        counter,
        sink,
        compression=kind,
        damage=damage,
        _closers=closers,
        path=path,
    )
