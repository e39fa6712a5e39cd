"""The records both nf_tables trace printers produce: a rule/return/policy event, or the packet.

``xtables-monitor --trace`` and ``nft monitor trace`` print the same kernel events
(NFT_MSG_TRACE) in two syntaxes; their parsers (``trace_xtables_monitor``, ``trace_nft_monitor``)
turn lines into these two types so that grouping and explaining need not care which one wrote
the log. Unlike legacy TRACE, every event names its packet by a trace id and carries an
explicit verdict, but rules are named by handle (or not at all), never by position.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from nodetrace.model.packet import Family
from nodetrace.model.trace import PacketDump, StepKind
from nodetrace.parsers.trace_kernel_log import LineCounts, Malformed

NFPROTO_FAMILIES: dict[str, Family] = {"2": Family.IPV4, "10": Family.IPV6}
NFT_FAMILIES: dict[str, Family] = {"ip": Family.IPV4, "ip6": Family.IPV6}


@dataclass(frozen=True, slots=True)
class NftEvent:
    """One trace event: a rule that matched, a chain's end (``return``) or a base chain's policy.

    ``verdict`` is upper case (``ACCEPT``, ``DROP``, ``CONTINUE``, ``RETURN``, ``JUMP``,
    ``GOTO``, ``QUEUE``, ``STOLEN``, ``BREAK``), ``None`` for a plain chain end;
    ``target_chain`` names the chain of a JUMP/GOTO. ``rule_text`` is the rule as the printer
    showed it (iptables syntax for xtables-monitor, nft syntax for nft monitor).
    """

    trace_id: str
    family: Family | None
    family_text: str
    table: str
    chain: str
    kind: StepKind
    handle: int | None
    verdict: str | None
    target_chain: str | None
    rule_text: str | None
    line: int


@dataclass(frozen=True, slots=True)
class NftPacket:
    """The packet as the trace showed it at the start of a base chain's evaluation.

    ``dump`` uses the kernel log's keys where the meaning is the same (``IN``, ``OUT``, ``SRC``,
    ``DST``, ``LEN``, ``TTL``, ``ID``, ``PROTO``, ``SPT``, ``DPT``, ``TYPE``, ``CODE``, ``SEQ``,
    ``MARK``, flags) plus ``MACSRC``/``MACDST`` (zero padded), so one reader serves all formats.
    """

    trace_id: str
    family: Family | None
    table: str | None
    chain: str | None
    dump: PacketDump
    line: int


NftItem = NftEvent | NftPacket


@dataclass
class NftReadResult:
    """What a reader found besides its items: line counts and the lines it could not read."""

    counts: LineCounts = field(default_factory=LineCounts)
    malformed: list[Malformed] = field(default_factory=list)

    def lines(self, lines: Iterable[str], first_line: int) -> Iterator[tuple[int, str]]:
        """``(number, line)`` without its line end, every line counted."""
        for number, raw in enumerate(lines, first_line):
            self.counts.total += 1
            yield number, raw.rstrip("\r\n")

    def bad_line(self, number: int, reason: str, line: str) -> None:
        self.counts.malformed += 1
        self.malformed.append(Malformed(number, reason, line))


def pad_mac(mac: str) -> str:
    """``2:15:5f:94:76:b`` (xtables-monitor drops leading zeros) -> ``02:15:5f:94:76:0b``."""
    parts = mac.split(":")
    if len(parts) != 6:
        return mac
    return ":".join(p.rjust(2, "0").lower() for p in parts)


VERDICT_CODES: dict[int, str] = {
    0: "DROP", 1: "ACCEPT", 2: "STOLEN", 3: "QUEUE", 4: "REPEAT", 5: "STOP",
    0xFFFFFFFF: "CONTINUE", 0xFFFFFFFE: "BREAK", 0xFFFFFFFD: "JUMP", 0xFFFFFFFC: "GOTO",
    0xFFFFFFFB: "RETURN",
}  # fmt: skip
"""Netfilter verdict codes and nf_tables' negative ones as the unsigned values printed in hex."""
