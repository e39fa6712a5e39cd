"""Read legacy iptables TRACE records (``nf_log`` lines) out of any kernel log, streaming.

The kernel prints one line per matching rule; whatever logger stored it adds its own prefix
(the *envelope*). A real sample, kern.log with the uptime bracket, from the seed story::

    <4>Nov 10 11:23:11 node-5 kernel: [11821685.049025] TRACE: raw:PREROUTING:policy:3 IN=qbre14aa959-d6 OUT= PHYSIN=qvbe14aa959-d6 MAC=fa:16:3e:cf:81:aa:fa:16:3e:23:c4:5f:08:00 SRC=192.168.113.4 DST=192.168.113.2 LEN=52 TOS=0x00 PREC=0x00 TTL=63 ID=10770 DF PROTO=TCP SPT=5672 DPT=41943 SEQ=1808903081 ACK=2600615076 WINDOW=1450 RES=0x00 ACK URGP=0 OPT (0101080AEA673046EA67B69E)

and from ``dmesg`` in the project's lab::

    [  181.590409] TRACE: raw:PREROUTING:rule:2 IN=brq OUT= PHYSIN=tapA MAC=ce:5a:e9:83:66:44:da:c7:37:cb:31:50:08:00 SRC=10.0.0.1 DST=10.0.0.2 LEN=84 TOS=0x00 PREC=0x00 TTL=64 ID=6699 DF PROTO=ICMP TYPE=8 CODE=0 ID=6841 SEQ=1

The envelope is everything before ``TRACE:``, so every logger's prefix works (kern.log with or
without the bracket, RFC 3339/5424 syslog, dmesg with or without ``-T``, journalctl's text
formats); ``journalctl -o json`` lines are unwrapped by :func:`journal_json_lines`. Records that
a copy-and-paste wrapped over several lines, or glued onto the end of the previous record, are
put back together.

Speed matters (logs of millions of lines), so the common case costs one precompiled regex per
line and the packet dump is split into fields only when someone asks (:func:`parse_dump`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from operator import itemgetter
from typing import NamedTuple

from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Family, IPProto, Packet, TcpFlag
from nodetrace.model.trace import PacketDump

# The common shape: prefix, the device fields, an optional MAC, then the packet from SRC= on.
# The text from SRC= to the end identifies the packet (it does not change between hooks for a
# bridged packet); the device fields change per hook and are kept apart.
# The identity group ends at the last non-space: trailing spaces (the kernel prints one, syslog
# may trim it) never make two records of one packet differ.
# Possessive quantifiers: nothing here ever needs to backtrack, and not recording the
# positions to backtrack to makes the match a fifth faster.
_FAST_RE = re.compile(r"TRACE: (\S++) (IN=\S*+ OUT=\S*+ (?:PHYS\S++ )*+)(?:MAC=\S*+ )?+(SRC=.*\S)")
_PREFIX_RE = re.compile(r"([^:\s]+):(\S+):(rule|return|policy):(\d+)")
_LENIENT_PREFIX_RE = re.compile(r"TRACE: ?([^:\s]+):(\S+?):(rule|return|policy):(\d+)")
_CONTINUATION_RE = re.compile(
    r"\s*(?:(?:IN|OUT|PHYSIN|PHYSOUT|MAC|SRC|DST|LEN|TOS|PREC|TTL|ID|PROTO|SPT|DPT|SEQ|ACK|WINDOW"
    r"|RES|URGP|TYPE|CODE|MARK|UID|GID|TC|HOPLIMIT|FLOWLBL|MTU|GATEWAY|PARAMETER|SPI)="
    r"|(?:CE|DF|MF|CWR|ECE|URG|ACK|PSH|RST|SYN|FIN|AE|OPT|INCOMPLETE)(?:\s|$|[A-Z]{2,}=|\()"
    r"|FRAG:|\[SRC=)"
)
# Where a logger's prefix may begin in the middle of a line (a record glued onto another).
_ENVELOPE_START_RE = re.compile(
    r"<\d{1,3}>|\[\s*\d+\.\d+\]|\[[A-Z][a-z]{2} [A-Z][a-z]{2} |\d{4}-\d\d-\d\d[T ]\d\d:"
    r"|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]?\d ?\d\d:\d\d:\d\d"
)
_UPTIME_RE = re.compile(r"\[\s*(\d+\.\d+)\]")
_ISO_RE = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(\.\d+)?")
_BSD_RE = re.compile(
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ?([ \d]?\d) ?(\d\d):(\d\d):(\d\d)(\.\d+)?"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    )
}


class Prefix(NamedTuple):
    """The ``table:chain:kind:number`` part of a TRACE line."""

    table: str
    chain: str
    kind: str
    number: int


def parse_prefix(text: str) -> Prefix | None:
    m = _PREFIX_RE.fullmatch(text)
    if m is None:
        return None
    return Prefix(m.group(1), m.group(2), m.group(3), int(m.group(4)))


class LegacyRecord(NamedTuple):
    """One TRACE record, kept as text slices until someone needs the fields.

    ``ident`` is the packet dump from ``SRC=`` to the end (``None`` when the record has no
    dump, as in tools that print the prefix only); ``devs`` is ``IN=... OUT=... PHYS...``.
    ``text[:trace_pos]`` is the logger's envelope; ``text[dump_pos:]`` the packet dump (or the
    tool's own text after the prefix when ``ident`` is ``None``).
    """

    prefix: str
    devs: str
    ident: str | None
    text: str
    trace_pos: int
    dump_pos: int
    first_line: int
    last_line: int
    repaired: bool = False

    @property
    def envelope(self) -> str:
        return self.text[: self.trace_pos]

    @property
    def dump_text(self) -> str:
        return self.text[self.dump_pos :]


_new_record = tuple.__new__  # building the NamedTuple without its Python-level __new__ is 2x faster
_prefix_of = itemgetter(0)


@dataclass
class LineCounts:
    """How every input line was used: parsed + skipped + malformed == total, always."""

    total: int = 0
    parsed: int = 0
    skipped: int = 0
    malformed: int = 0
    not_text: int = 0
    """Skipped lines that hold binary data (NUL bytes or bytes that are not UTF-8)."""
    first_not_text: int = 0

    def skip(self, line: str, lineno: int) -> None:
        """Count a line that is not part of a trace, noting whether it is text at all."""
        self.skipped += 1
        if "\x00" in line or "\ufffd" in line:
            self.not_text += 1
            self.first_not_text = self.first_not_text or lineno

    def add(self, other: LineCounts) -> None:
        self.total += other.total
        self.parsed += other.parsed
        self.skipped += other.skipped
        self.malformed += other.malformed
        self.not_text += other.not_text
        if other.first_not_text and not self.first_not_text:
            self.first_not_text = other.first_not_text


GLUE_CHECKS = 200
CHECK_ALL = 1 << 62
"""Records at the start of a file checked for lost spaces even when they parse: web copies
lose them throughout (then every record is checked), kernel-written logs never do."""


@dataclass(frozen=True, slots=True)
class Repair:
    """A record whose lost spaces were put back: its first line and the words they went before."""

    line: int
    before: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A line that holds ``TRACE:`` but not a record nodetrace can read, and why."""

    line: int
    reason: str
    text: str


@dataclass
class KernelLogReader:
    """Turns the lines of one kernel log into :class:`LegacyRecord` s, counting every line.

    Feed all lines through :meth:`records`; afterwards ``counts``, ``malformed``,
    ``repaired_lines`` and ``no_dump_lines`` say what was found. A record is complete only once
    the next line has been seen (that line may continue it), so records come out one line late.
    Each physical line is counted exactly once: as parsed (it belongs to a good record),
    malformed (it belongs to a record that cannot be read) or skipped (no TRACE record).
    """

    counts: LineCounts = field(default_factory=LineCounts)
    malformed: list[Malformed] = field(default_factory=list)
    repaired_lines: list[int] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    """Each record whose lost spaces were put back: its first line and what was put back."""
    no_dump_lines: list[int] = field(default_factory=list)
    glue_checks: int = GLUE_CHECKS
    """Records still to be checked for lost spaces before the reader trusts its fast path
    (every record of a file in which one was found)."""
    # The record being assembled: already parsed (fast path) or text still to parse, the lines
    # it spans and how many physical lines it owns for counting.
    _record: LegacyRecord | None = None
    _text: str | None = None
    _first: int = 0
    _last: int = 0
    _owned: int = 0
    prefix_counts: Counter[str] = field(default_factory=Counter)
    """Records read per ``table:chain:kind:number``: the summary's hit counts, without a pass
    over the records. A prefix in here is known to be well formed."""

    def records(self, lines: Iterable[str], *, first_line: int = 1) -> Iterator[LegacyRecord]:
        """The records of ``lines``, one by one."""
        for batch in self.batches(lines, first_line=first_line):
            yield from batch

    def batches(
        self, lines: Iterable[str], *, first_line: int = 1, size: int = 512
    ) -> Iterator[list[LegacyRecord]]:
        """The records of ``lines`` in lists of about ``size`` (fewer generator switches)."""
        counts = self.counts
        search = _FAST_RE.search
        known = self.prefix_counts
        count_prefixes = known.update
        new = _new_record
        lineno = first_line - 1
        # The hot path keeps the pending single-line record in a local; the rarer cases
        # (wrapped, glued, damaged records) go through the methods below via self.
        rec: LegacyRecord | None = None
        fast_parsed = 0
        out: list[LegacyRecord] = []
        glue_checks = self.glue_checks
        for line in lines:
            lineno += 1
            m = search(line)
            if m is not None:
                trace_pos = m.start()
                prefix, devs, ident = m.groups()
                # The plain case: a whole record, nothing glued before or after it.
                if (
                    (trace_pos == 0 or line.find("=", 0, trace_pos) < 0)
                    and (prefix in known or parse_prefix(prefix) is not None)
                    and "TRACE: " not in ident
                    and (glue_checks <= 0 or not repair_spaces(line)[1])
                ):
                    glue_checks -= 1  # (it stays far below zero once the checks are done)
                    if rec is not None:
                        fast_parsed += 1
                        out.append(rec)
                        if len(out) >= size:
                            count_prefixes(map(_prefix_of, out))
                            yield out
                            out = []
                    elif self._record is not None or self._text is not None:
                        out.extend(self._finish())
                    # the dump starts after "TRACE: ", the prefix and a space
                    dump_pos = trace_pos + len(prefix) + 8
                    rec = new(
                        LegacyRecord,
                        (prefix, devs, ident, line, trace_pos, dump_pos, lineno, lineno, False),
                    )
                    continue
            if 0 < glue_checks < CHECK_ALL and (self.repairs or repair_spaces(line)[1]):
                glue_checks = CHECK_ALL  # a web copy: check every later record too
            if rec is not None:  # hand the pending record to the slow path
                self._record, self._first, self._last = rec, rec.first_line, rec.last_line
                self._owned = 1
                rec = None
            if "TRACE:" in line:
                out.extend(self._complex_line(line.rstrip("\r\n"), lineno))
                continue
            pending = self._record is not None or self._text is not None
            if pending and _CONTINUATION_RE.match(line):
                self._append(line.strip(), lineno, owned=True)
                continue
            if pending:
                out.extend(self._finish())
            counts.skip(line, lineno)
        if rec is not None:
            fast_parsed += 1
            out.append(rec)
        elif self._record is not None or self._text is not None:
            out.extend(self._finish())
        self.glue_checks = glue_checks
        counts.parsed += fast_parsed
        counts.total += lineno - first_line + 1
        if out:
            count_prefixes(map(_prefix_of, out))
            yield out

    def _append(self, text: str, lineno: int, *, owned: bool) -> None:
        """Continue the pending record with ``text`` (the next part of a wrapped record)."""
        if self._record is not None:
            # a record that looked whole is continued: it is parsed again whole
            self._text = self._record.text.rstrip("\r\n")
            self._record = None
        assert self._text is not None
        sep = "" if self._text.endswith(" ") or not text else " "
        self._text = self._text + sep + text
        self._last = lineno
        self._owned += 1 if owned else 0

    def _start(self, text: str, lineno: int, *, owned: bool) -> None:
        self._record, self._text = None, text
        self._first = self._last = lineno
        self._owned = 1 if owned else 0

    def _complex_line(self, line: str, lineno: int) -> Iterator[LegacyRecord]:
        """A record glued after another, a wrapped record's tail plus a new record, or damage."""
        starts = _record_starts(line)
        pending = self._record is not None or self._text is not None
        if not starts:
            if pending:
                yield from self._finish()
            self.counts.malformed += 1
            self.malformed.append(Malformed(lineno, _why_malformed(line), line))
            return
        head = line[: starts[0]]
        owned = False
        if head.strip() and pending and _CONTINUATION_RE.match(head):
            self._append(head.strip(), lineno, owned=True)
            owned = True
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(line)
            if self._record is not None or self._text is not None:
                yield from self._finish()
            self._start(line[start:end].rstrip(), lineno, owned=not owned)
            owned = True

    def _finish(self) -> Iterator[LegacyRecord]:
        record, text = self._record, self._text
        first, last, owned = self._first, self._last, self._owned
        self._record = self._text = None
        if record is not None:
            self.counts.parsed += owned
            yield record
            return
        assert text is not None
        record = None
        repaired, fixes = repair_spaces(text)
        if fixes:
            record = _record_from_text(repaired, first, last, repaired=True)
            if record is not None:
                self.repaired_lines.append(first)
                self.repairs.append(Repair(first, fixes))
        if record is None:
            record = _record_from_text(text, first, last)
        if record is None:
            record = _prefix_only_record(text, first, last)
            if record is not None:
                self.no_dump_lines.append(first)
        if record is None:
            self.counts.malformed += owned
            self.malformed.append(Malformed(first, _why_malformed(text), text))
            return
        self.counts.parsed += owned
        yield record


def _record_from_text(
    text: str, first: int, last: int, *, repaired: bool = False
) -> LegacyRecord | None:
    m = _FAST_RE.search(text)
    if m is None or parse_prefix(m.group(1)) is None:
        return None
    prefix, devs, ident = m.groups()
    return LegacyRecord(
        prefix, devs, ident.rstrip(), text, m.start(), m.start(2), first, last, repaired
    )


def _prefix_only_record(text: str, first: int, last: int) -> LegacyRecord | None:
    """A record whose prefix is fine but which carries no packet dump (tools that print the
    prefix and their own text); a record whose dump is there but unreadable is not one."""
    m = _LENIENT_PREFIX_RE.search(text)
    if m is None:
        return None
    rest = text[m.end() :]
    if "SRC=" in rest or "IN=" in rest:
        return None
    prefix = f"{m.group(1)}:{m.group(2)}:{m.group(3)}:{m.group(4)}"
    dump_pos = m.end() + (len(rest) - len(rest.lstrip()))
    return LegacyRecord(prefix, "", None, text, m.start(), dump_pos, first, last, False)


def _why_malformed(text: str) -> str:
    m = _LENIENT_PREFIX_RE.search(text)
    if m is None:
        return "TRACE: without a table:chain:rule|return|policy:number prefix"
    rest = text[m.end() :]
    for key in ("IN=", "OUT=", "SRC=", "DST="):
        if key not in rest:
            return f"packet dump has no {key} field (record cut short?)"
    return "packet dump is not in the kernel's order (IN= OUT= [PHYSIN=] [PHYSOUT=] [MAC=] SRC= DST= ...)"


# Putting back the spaces a web copy lost. Every '=' in a record separates a key the kernel
# prints from its value (no value holds one), so a known key glued onto what precedes it
# ("d6MAC=", "policy:2IN=", "84TOS=") can be split off; keys that end longer keys (IN in
# PHYSIN, ID in UID and GID) are split only where the longer key is not what was written.
_KEYS = (
    "PHYSIN|PHYSOUT|(?<!PHYS)(?:IN|OUT)|MAC|SRC|DST|LEN|TOS|PREC|TTL|(?<![UG])ID|PROTO|SPT|DPT"
    "|SEQ|ACK|WINDOW|RES|URGP|TYPE|CODE|MARK|UID|GID|TC|HOPLIMIT|FLOWLBL|MTU|GATEWAY|PARAMETER"
    "|SPI"
)
_GLUED_KEY_RE = re.compile(rf"(?<=[^\s\[])(?=(?:{_KEYS})=)")
# Bare words: the IP flags after the (decimal) IP ID, the TCP flags after RES's two hex digits,
# TCP options after URGP, an ICMP error's quoted packet.
_IP_FLAGS_RE = re.compile(r"(?<![UG])\bID=(\d+)((?: ?+(?:CE|DF|MF|FRAG:\d+))+)(?= |$|OPT|PROTO=)")
_TCP_FLAGS_RE = re.compile(
    r"\bRES=(0x[0-9a-fA-F]{2})((?: ?+(?:CWR|ECE|URG|ACK|PSH|RST|SYN|FIN|AE))+)(?= )"
)
_FLAG_WORD_RE = re.compile(r"CWR|ECE|URG|ACK|PSH|RST|SYN|FIN|AE|CE|DF|MF|FRAG:\d+")
_GLUED_WORD_RE = re.compile(r"(?<=[\d)A-Z])(?=OPT ?\()|(?<=[^\s\[])(?=\[SRC=)|(?<=OPT)(?=\()")
# A date whose day and time lost their space: "Apr 1811:50:23" (the hour has two digits).
_GLUED_DATE_RE = re.compile(
    r"\b((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2})(\d{1,2})(\d\d:\d\d:\d\d)\b"
)


def _split_flags(m: re.Match[str], fixes: list[str]) -> str:
    key = m.group(0)[: m.start(1) - m.start(0)]
    value, run = m.group(1), m.group(2)
    words = _FLAG_WORD_RE.findall(run)
    rebuilt = " " + " ".join(words)
    if rebuilt != run:
        fixes.extend(w for w in words if f" {w}" not in run)
    return key + value + rebuilt


def _word_label(part: str) -> str:
    return "[SRC=" if part.startswith("[") else "(" if part.startswith("(") else "OPT"


def repair_spaces(text: str) -> tuple[str, tuple[str, ...]]:
    """Put back the spaces a web copy lost between a record's fields; say where.

    Returns the repaired text and, for each space put back, the word it was put before (a
    key such as ``IN=``, a flag such as ``DF``, ``the time`` after the logger's date); an
    intact record comes back unchanged with no fixes. ``ID=10770DF`` is IP ID 10770 and
    the flag DF: the kernel prints IP IDs in decimal and the IP flags right after the ID.
    ``RES=0x00ACK`` is RES 0x00 and the flag ACK: RES has exactly two hex digits.
    """
    pos = text.find("TRACE:")
    if pos < 0:
        return text, ()
    fixes: list[str] = []
    head, body = text[:pos], text[pos:]
    if _GLUED_DATE_RE.search(head) is not None:
        head = _GLUED_DATE_RE.sub(r"\1\2 \3", head)
        fixes.append("the time")
    if not body.startswith("TRACE: "):
        body = "TRACE: " + body[6:].lstrip()
        fixes.append("TRACE:")
    split = _GLUED_KEY_RE.split(body)
    if len(split) > 1:
        fixes.extend(part[: part.index("=") + 1] for part in split[1:])
        body = " ".join(split)
    split = _GLUED_WORD_RE.split(body)
    if len(split) > 1:
        fixes.extend(_word_label(part) for part in split[1:])
        body = " ".join(split)
    body = _IP_FLAGS_RE.sub(lambda m: _split_flags(m, fixes), body)
    body = _TCP_FLAGS_RE.sub(lambda m: _split_flags(m, fixes), body)
    if not fixes:
        return text, ()
    return head + body, tuple(fixes)


def _record_starts(line: str) -> list[int]:
    """Where each record on ``line`` starts, its envelope included.

    A record's envelope starts at the first logger prefix (``<4>``, a date, an uptime bracket)
    found between the previous record and its ``TRACE:``. The first record's envelope is the
    line's beginning unless the text before it is a packet dump (a wrapped record's tail).
    """
    starts: list[int] = []
    region = 0
    pos = line.find("TRACE:")
    while pos >= 0:
        if _LENIENT_PREFIX_RE.match(line, pos) is not None:
            env = _ENVELOPE_START_RE.search(line, region, pos)
            if env is not None:
                starts.append(env.start())
            elif not starts and "=" not in line[:pos]:
                starts.append(0)
            else:
                starts.append(pos)
            region = pos + 6
        pos = line.find("TRACE:", pos + 6)
    return starts


def journal_json_lines(lines: Iterable[str]) -> Iterator[str]:
    """Unwrap ``journalctl -o json`` lines into text lines a :class:`KernelLogReader` reads.

    Each output line is ``<ISO time> <host> kernel: <MESSAGE>``; lines that are not JSON
    objects pass through unchanged so the reader counts them as skipped. One output line per
    input line, so line numbers stay true.
    """
    for line in lines:
        if not line.startswith("{"):
            yield line
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            yield line
            continue
        if not isinstance(entry, dict):
            yield line
            continue
        message = entry.get("MESSAGE", "")
        if isinstance(message, list):  # journald stores non-UTF-8 messages as byte arrays
            try:
                message = bytes(message).decode("utf-8", "replace")
            except (TypeError, ValueError):
                message = ""
        if not isinstance(message, str):
            message = ""
        stamp = ""
        realtime = entry.get("__REALTIME_TIMESTAMP")
        if isinstance(realtime, str) and realtime.isdigit():
            moment = datetime.fromtimestamp(int(realtime) / 1e6, tz=UTC)  # the journal's is UTC
            stamp = moment.isoformat(timespec="microseconds")
        host = entry.get("_HOSTNAME", "-")
        yield f"{stamp} {host} kernel: {message}".replace("\n", " ")


def looks_like_journal_json(first_lines: list[str]) -> bool:
    for line in first_lines:
        if line.strip():
            return line.lstrip().startswith("{") and '"MESSAGE"' in line
    return False


def envelope_time(envelope: str) -> float | None:
    """Seconds from a logger's prefix, for comparing records of one file (not an absolute time).

    The kernel's uptime bracket is preferred (microseconds); otherwise an RFC 3339 or a BSD
    syslog date (``Nov 10 11:23:11``, second precision, year unknown).
    """
    if envelope.endswith("] "):  # the kernel's own bracket, the common case: no regex
        try:
            return float(envelope[envelope.rfind("[") + 1 : -2])
        except ValueError:
            pass
    m = _UPTIME_RE.search(envelope)
    if m is not None:
        return float(m.group(1))
    m = _ISO_RE.search(envelope)
    if m is not None:
        try:
            year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
            stamp = datetime(year, month, day, hour, minute, second)
        except ValueError:
            return None
        return stamp.timestamp() + (float(m.group(7)) if m.group(7) else 0.0)
    m = _BSD_RE.search(envelope)
    if m is not None:
        day = int(m.group(2))
        seconds = ((_MONTHS[m.group(1)] * 31 + day) * 24 + int(m.group(3))) * 3600
        seconds += int(m.group(4)) * 60 + int(m.group(5))
        return seconds + (float(m.group(6)) if m.group(6) else 0.0)
    return None


def parse_devs(devs: str) -> dict[str, str]:
    """``IN=qbr OUT= PHYSIN=qvb `` -> {"IN": "qbr", "OUT": "", "PHYSIN": "qvb"}."""
    out: dict[str, str] = {}
    for word in devs.split():
        key, _, value = word.partition("=")
        out[key] = value
    return out


def parse_dump(text: str) -> PacketDump:
    """Split a packet dump into its ``KEY=value`` fields and bare flags, in order.

    ``OPT (…)`` keeps its hex, an ICMP error's quoted packet ``[SRC=… ]`` becomes one ``INNER``
    field, ``FRAG:n`` becomes ``FRAG``; repeated keys (IP ``ID`` and ICMP ``ID``, IP ``LEN`` and
    UDP ``LEN``) are all kept, in the kernel's order.
    """
    fields: list[tuple[str, str]] = []
    words = text.split()
    i, n = 0, len(words)
    while i < n:
        word = words[i]
        if word.startswith("[") or word == "INCOMPLETE":
            j = i
            while j < n and not words[j].endswith("]"):
                j += 1
            inner = " ".join(words[i : j + 1])
            if word == "INCOMPLETE":
                fields.append(("INCOMPLETE", inner[len("INCOMPLETE") :].strip(" []")))
            else:
                fields.append(("INNER", inner[1:-1].strip()))
            i = j + 1
            continue
        if word == "OPT" and i + 1 < n and words[i + 1].startswith("("):
            j = i + 1
            while j < n and not words[j].endswith(")"):
                j += 1
            fields.append(("OPT", " ".join(words[i + 1 : j + 1])[1:-1]))
            i = j + 1
            continue
        key, eq, value = word.partition("=")
        if eq:
            fields.append((key, value))
        elif word.startswith("FRAG:"):
            fields.append(("FRAG", word[5:]))
        else:
            fields.append((word, ""))
        i += 1
    return PacketDump(tuple(fields))


class DumpParser:
    """Splits the dumps of a packet's records into fields, sharing the work they repeat.

    A record's dump is its device fields (``IN=… OUT=… PHYS…=… MAC=…``) followed by the
    packet (``ident``, from ``SRC=`` on). The records of one packet repeat the packet (a
    routed one loses a TTL per hook), and the device fields take one value per port and hook:
    each part is split once (:func:`parse_dump`) and the two are joined. That gives the same
    fields as splitting the whole dump, because no device field starts a construct that spans
    words (``[SRC=…]``, ``OPT (…)``, ``INCOMPLETE [...]``). The device fields are cached
    across packets (bounded).

    Records that print the same dump as the record before them (the records of one hook do)
    share one :class:`PacketDump` object, so "did the packet change?" is ``is not``.
    """

    __slots__ = ("_heads",)
    LIMIT = 4096

    def __init__(self) -> None:
        self._heads: dict[str, tuple[tuple[str, str], ...]] = {}

    def dumps(self, records: Iterable[LegacyRecord]) -> list[PacketDump | None]:
        """The dump of each record (``None`` for a record without one)."""
        out: list[PacketDump | None] = []
        last_text = last_ident = ""
        dump: PacketDump | None = None
        ident_fields: tuple[tuple[str, str], ...] = ()
        for rec in records:
            ident = rec.ident
            if ident is None:
                out.append(None)
                last_text = ""
                continue
            text = rec.text[rec.dump_pos :]
            if text != last_text:
                last_text = text
                text = text.rstrip()
                head = text[: len(text) - len(ident)]
                if text.endswith(ident) and head[-1:].isspace():
                    if ident != last_ident:
                        last_ident, ident_fields = ident, parse_dump(ident).fields
                    dump = PacketDump(self._head_fields(head) + ident_fields)
                else:  # not the reader's usual layout: split it whole
                    dump = parse_dump(text)
            out.append(dump)
        return out

    def _head_fields(self, head: str) -> tuple[tuple[str, str], ...]:
        fields = self._heads.get(head)
        if fields is None:
            if len(self._heads) >= self.LIMIT:
                self._heads.clear()
            fields = self._heads[head] = parse_dump(head).fields
        return fields


_PROTO_NUMBERS = {
    "TCP": IPProto.TCP,
    "UDP": IPProto.UDP,
    "UDPLITE": IPProto.UDPLITE,
    "ICMP": IPProto.ICMP,
    "ICMPv6": IPProto.ICMPV6,
    "SCTP": IPProto.SCTP,
    "AH": IPProto.AH,
    "ESP": IPProto.ESP,
    "GRE": IPProto.GRE,
}
_TCP_FLAGS = {f.name: int(f) for f in TcpFlag}


def _int(value: str | None, default: int = 0, base: int = 10) -> int:
    if value is None:
        return default
    try:
        return int(value, base)
    except ValueError:
        return default


_ADDRESSES: dict[str, IPv4Address | IPv6Address | None] = {}
"""Addresses already parsed: a log names the same few hosts over and over (bounded)."""


def _addr(value: str | None) -> IPv4Address | IPv6Address | None:
    if not value:
        return None
    if value in _ADDRESSES:
        return _ADDRESSES[value]
    if len(_ADDRESSES) >= 4096:
        _ADDRESSES.clear()
    try:  # what ip_address() does, without trying IPv4 first for an IPv6 address
        found: IPv4Address | IPv6Address | None = (
            IPv6Address(value) if ":" in value else IPv4Address(value)
        )
    except ValueError:
        found = None
    _ADDRESSES[value] = found
    return found


_IP_FLAGS = frozenset({"CE", "DF", "MF"})
_NOT_FLAGS = frozenset({"IN", "OUT", "MAC"})
"""Keys printed with an empty value that are fields, not flags (``OUT=`` of a packet in
PREROUTING)."""


def packet_from_dump(dump: PacketDump) -> Packet:
    """The packet a dump describes; fields the dump lacks keep the Packet's defaults.

    Keys before ``PROTO=`` describe the IP header and keys after it the transport header, so
    IP ``ID``/``LEN`` and ICMP ``ID``/UDP ``LEN`` are told apart. Dumps of the nf_tables
    printers use the same keys (``MACSRC``/``MACDST`` for the MACs) and may lack ``PROTO``.
    """
    ip_part: dict[str, str] = {}
    l4: dict[str, str] = {}
    flags: set[str] = set()
    part = ip_part
    for key, value in dump.fields:
        if key == "PROTO":
            part = l4
            l4["PROTO"] = value
        elif not value and key.isalpha() and key.isupper() and key not in _NOT_FLAGS:
            flags.add(key)
        elif key not in part:
            part[key] = value

    def l4_value(key: str) -> str | None:
        return l4.get(key, ip_part.get(key) if key in ("SPT", "DPT", "SEQ", "WINDOW") else None)

    src, dst = _addr(ip_part.get("SRC")), _addr(ip_part.get("DST"))
    is_v6 = isinstance(src, IPv6Address) or "HOPLIMIT" in ip_part
    dl_dst = dl_src = "00:00:00:00:00:00"
    dl_type = ETH_TYPE_IPV6 if is_v6 else ETH_TYPE_IPV4
    octets = ip_part.get("MAC", "").split(":")
    if len(octets) >= 14:
        dl_dst, dl_src = ":".join(octets[0:6]), ":".join(octets[6:12])
        dl_type = _int("".join(octets[12:14]), dl_type, 16)
    dl_src = ip_part.get("MACSRC", dl_src)
    dl_dst = ip_part.get("MACDST", dl_dst)
    tcp_flags = 0
    for flag in flags - _IP_FLAGS:
        tcp_flags |= _TCP_FLAGS.get(flag, 0)
    proto_name = l4.get("PROTO", "")
    if proto_name in _PROTO_NUMBERS:
        nw_proto = int(_PROTO_NUMBERS[proto_name])
    elif proto_name:
        nw_proto = _int(proto_name)
    else:
        nw_proto = int(IPProto.TCP) if tcp_flags else 0
    is_icmp = nw_proto in (IPProto.ICMP, IPProto.ICMPV6)
    spt, dpt = l4_value("SPT"), l4_value("DPT")
    return Packet(
        dl_src=dl_src,
        dl_dst=dl_dst,
        dl_type=dl_type,
        nw_src=src,
        nw_dst=dst,
        nw_proto=nw_proto,
        nw_tos=_int(ip_part.get("TC"))
        if is_v6
        else _int(ip_part.get("TOS", "0x0"), 0, 16) | _int(ip_part.get("PREC", "0x0"), 0, 16),
        nw_ttl=_int(ip_part.get("HOPLIMIT") if is_v6 else ip_part.get("TTL"), 64),
        ip_id=_int(ip_part.get("ID")),
        ip_df="DF" in flags,
        ip_mf="MF" in flags,
        ip_frag_offset=_int(ip_part.get("FRAG")),
        ip_len=_int(ip_part.get("LEN")) if "LEN" in ip_part else None,
        ipv6_label=_int(ip_part.get("FLOWLBL")),
        tp_src=_int(spt) if spt is not None else None,
        tp_dst=_int(dpt) if dpt is not None else None,
        tcp_flags=tcp_flags,
        tcp_seq=_int(l4_value("SEQ")) if not is_icmp else 0,
        tcp_ack=_int(l4.get("ACK")),
        tcp_window=_int(l4_value("WINDOW")),
        icmp_type=_int(l4["TYPE"]) if is_icmp and "TYPE" in l4 else None,
        icmp_code=_int(l4["CODE"]) if is_icmp and "CODE" in l4 else None,
        icmp_id=_int(l4["ID"]) if is_icmp and "ID" in l4 else None,
        icmp_seq=_int(l4["SEQ"]) if is_icmp and "SEQ" in l4 else None,
        skb_mark=_int(l4.get("MARK", ip_part.get("MARK", "0x0")), 0, 16),
    )


def dump_family(ident: str | None) -> Family | None:
    """The family of a record from its identity text (``SRC=`` address form)."""
    if ident is None:
        return None
    end = ident.find(" ")
    return Family.IPV6 if ":" in ident[4 : end if end > 0 else None] else Family.IPV4
