"""Parse ``xtables-monitor --trace`` output (iptables-nft's TRACE) into nf_tables trace items.

A real sample (iptables 1.8.9, lab namespace; packet line first since 1.8.7)::

    PACKET: 2 5efd2773 IN=brq MACSRC=5a:dd:90:26:e6:46 MACDST=2:15:5f:94:76:b MACPROTO=0800 SRC=10.0.0.1 DST=10.0.0.2 LEN=84 TOS=0x0 TTL=64 ID=12970 DF
     TRACE: 2 5efd2773 raw:PREROUTING:rule:0x4:CONTINUE  -4 -t raw -A PREROUTING -p icmp -j TRACE
     TRACE: 2 5efd2773 raw:PREROUTING:rule:0x5:JUMP:neutron-linuxbri-PREROUTING  -4 -t raw -A PREROUTING -j neutron-linuxbri-PREROUTING
     TRACE: 2 5efd2773 raw:PREROUTING:policy:ACCEPT
     TRACE: 2 5efd2773 filter:neutron-linuxbri-itapB:rule:0x12:0xfffffffb  -4 -t filter -A neutron-linuxbri-itapB -s 10.0.0.0/24 -p icmp -j RETURN

The printer's quirks are undone here: rule handles in hex, RETURN printed as its raw code
``0xfffffffb``, MACs without leading zeros, no space before ``DF`` (``ID=38349DF``). Before
1.8.7 the TRACE line came before its PACKET line; both orders are read (the grouper attaches a
packet line to the events of the same trace id around it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from nodetrace.model.trace import PacketDump, StepKind
from nodetrace.parsers.trace_nft_events import (
    NFPROTO_FAMILIES,
    VERDICT_CODES,
    NftEvent,
    NftItem,
    NftPacket,
    NftReadResult,
    pad_mac,
)

_TRACE_RE = re.compile(
    r"\s*TRACE: (\d+) ([0-9a-fA-F]+) ([^:\s]+):(\S+?):(rule|return|policy):(\S*)(?:\s+(.*?))?\s*$"
)
_PACKET_RE = re.compile(r"\s*PACKET: (\d+) ([0-9a-fA-F]+) (.*?)\s*$")
_ID_FLAGS_RE = re.compile(r"^(\d+)((?:CE|DF|MF)+)$")
_KEY_MAP = {"SPORT": "SPT", "DPORT": "DPT"}


def looks_like_xtables_monitor(lines: list[str]) -> bool:
    return any(_PACKET_RE.match(line) or _TRACE_RE.match(line) for line in lines)


def parse_packet_fields(text: str) -> PacketDump:
    """The fields of a PACKET line after the trace id, kernel-log keys where they mean the same."""
    fields: list[tuple[str, str]] = []
    for word in text.split():
        key, eq, value = word.partition("=")
        if not eq:
            fields.append((word, ""))
            continue
        if key in ("MACSRC", "MACDST"):
            value = pad_mac(value)
        elif key == "ID":
            m = _ID_FLAGS_RE.match(value)
            if m is not None:  # "ID=38349DF": the 1.8.x printer forgets the space
                fields.append(("ID", m.group(1)))
                fields.extend((flag, "") for flag in re.findall("CE|DF|MF", m.group(2)))
                continue
        fields.append((_KEY_MAP.get(key, key), value))
    return PacketDump(tuple(fields))


def _verdict(text: str) -> tuple[str | None, str | None]:
    """``CONTINUE``/``JUMP:chain``/``0xfffffffb`` -> (verdict word, target chain)."""
    if not text:
        return None, None
    word, _, chain = text.partition(":")
    if word.lower().startswith("0x"):
        try:
            return VERDICT_CODES.get(int(word, 16), word), chain or None
        except ValueError:
            return word, None
    return word.upper(), chain or None


def _rule_text(rest: str | None) -> str | None:
    """``-4 -t raw -A PREROUTING -p icmp -j TRACE`` -> ``-A PREROUTING -p icmp -j TRACE``."""
    if not rest:
        return None
    text = re.sub(r"^-[46]\s+", "", rest.strip())
    text = re.sub(r"^-t\s+\S+\s+", "", text)
    return text or None


def read_xtables_monitor(
    lines: Iterable[str], result: NftReadResult, *, first_line: int = 1
) -> Iterator[NftItem]:
    """Items in file order; every line is counted in ``result`` (parsed, skipped or malformed)."""
    counts = result.counts
    for lineno, line in result.lines(lines, first_line):
        if "TRACE:" not in line and "PACKET:" not in line:
            counts.skip(line, lineno)
            continue
        m = _TRACE_RE.match(line)
        if m is not None:
            nfproto, trace_id, table, chain, kind, value, rest = m.groups()
            handle: int | None = None
            verdict: str | None = None
            target: str | None = None
            if kind == "rule":
                handle_text, _, verdict_text = value.partition(":")
                try:
                    handle = int(handle_text, 16)
                except ValueError:
                    result.bad_line(lineno, "rule handle is not hex", line)
                    continue
                verdict, target = _verdict(verdict_text)
            elif kind == "policy":
                verdict = value.upper() or None
            counts.parsed += 1
            yield NftEvent(
                trace_id=trace_id.lower(),
                family=NFPROTO_FAMILIES.get(nfproto),
                family_text=nfproto,
                table=table,
                chain=chain,
                kind=StepKind(kind),
                handle=handle,
                verdict=verdict,
                target_chain=target,
                rule_text=_rule_text(rest) if kind == "rule" else None,
                line=lineno,
            )
            continue
        m = _PACKET_RE.match(line)
        if m is not None:
            counts.parsed += 1
            yield NftPacket(
                trace_id=m.group(2).lower(),
                family=NFPROTO_FAMILIES.get(m.group(1)),
                table=None,
                chain=None,
                dump=parse_packet_fields(m.group(3)),
                line=lineno,
            )
            continue
        reason = "TRACE: without family, trace id and table:chain:kind:value"
        if "PACKET:" in line:
            reason = "PACKET: without family and trace id"
        result.bad_line(lineno, reason, line)
