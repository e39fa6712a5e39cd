"""Parse ``nft monitor trace`` output into nf_tables trace items.

A real sample (nftables 1.0.6 over an iptables-nft ruleset, lab namespace)::

    trace id 5efd2773 ip raw PREROUTING packet: iif "brq" ether saddr 5a:dd:90:26:e6:46 ether daddr 02:15:5f:94:76:0b ip saddr 10.0.0.1 ip daddr 10.0.0.2 ip dscp cs0 ip ecn not-ect ip ttl 64 ip id 12970 ip length 84 icmp type echo-request icmp code net-unreachable icmp id 6874 icmp sequence 1 @th,64,96 0xa7c5076b000000001ce30600
    trace id 5efd2773 ip raw PREROUTING rule meta l4proto icmp counter packets 0 bytes 0 meta nftrace set 1 (verdict continue)
    trace id 5efd2773 ip raw PREROUTING policy accept
    trace id 5efd2773 ip filter neutron-linuxbri-otapA rule  counter packets 0 bytes 0 drop (verdict drop)

Rules carry no position and, unless ``nft -a`` was used, no handle; iptables-nft rules that use
xtables extensions show as ``xt match "physdev"`` without their options and comments are lost,
so a rule is found in an iptables-save by its chain, its verdict and its order (see the
explainer). The packet line is turned into kernel-log keys (:class:`NftPacket`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from nodetrace.model.trace import PacketDump, StepKind
from nodetrace.parsers.trace_nft_events import (
    NFT_FAMILIES,
    NftEvent,
    NftItem,
    NftPacket,
    NftReadResult,
    pad_mac,
)

_LINE_RE = re.compile(
    r"\s*trace id ([0-9a-fA-F]+) (\S+) (\S+) (\S+) (packet:|rule|verdict|policy|conntrack:|unknown rule)(.*)$"
)
_EXPECTED = "expected: trace id ID FAMILY TABLE CHAIN packet:|rule|verdict|policy"
_VERDICT_RE = re.compile(r"\(verdict (\w+)(?: (\S+))?\)\s*$")
_HANDLE_RE = re.compile(r"# handle (\d+)|\bhandle (\d+)\s*(?:\(verdict|$)")

# nft's names for ICMP types (nftables' icmp_type and icmpv6_type symbol tables).
_ICMP_TYPES = {
    "echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
    "echo-request": 8, "router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11,
    "parameter-problem": 12, "timestamp-request": 13, "timestamp-reply": 14, "info-request": 15,
    "info-reply": 16, "address-mask-request": 17, "address-mask-reply": 18,
}  # fmt: skip
_ICMPV6_TYPES = {
    "destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3, "parameter-problem": 4,
    "echo-request": 128, "echo-reply": 129, "mld-listener-query": 130, "mld-listener-report": 131,
    "mld-listener-done": 132, "nd-router-solicit": 133, "nd-router-advert": 134,
    "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136, "nd-redirect": 137,
}  # fmt: skip
_ICMP_CODES = {
    "net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2, "port-unreachable": 3,
    "frag-needed": 4, "net-prohibited": 9, "host-prohibited": 10, "admin-prohibited": 13,
}  # fmt: skip
_ICMPV6_CODES = {
    "no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3, "port-unreachable": 4,
    "policy-fail": 5, "reject-route": 6,
}  # fmt: skip
# (header, field) -> kernel-log key
_FIELDS = {
    ("ether", "saddr"): "MACSRC", ("ether", "daddr"): "MACDST",
    ("ip", "saddr"): "SRC", ("ip", "daddr"): "DST", ("ip", "length"): "LEN", ("ip", "ttl"): "TTL",
    ("ip", "id"): "ID",
    ("ip6", "saddr"): "SRC", ("ip6", "daddr"): "DST", ("ip6", "length"): "LEN",
    ("ip6", "hoplimit"): "HOPLIMIT", ("ip6", "flowlabel"): "FLOWLBL",
    ("tcp", "sport"): "SPT", ("tcp", "dport"): "DPT", ("tcp", "sequence"): "SEQ",
    ("tcp", "ackseq"): "ACK", ("tcp", "window"): "WINDOW",
    ("udp", "sport"): "SPT", ("udp", "dport"): "DPT",
    ("icmp", "code"): "CODE", ("icmp", "id"): "ID", ("icmp", "sequence"): "SEQ",
    ("icmpv6", "code"): "CODE", ("icmpv6", "id"): "ID", ("icmpv6", "sequence"): "SEQ",
}  # fmt: skip
_L4 = {"tcp": "TCP", "udp": "UDP", "icmp": "ICMP", "icmpv6": "ICMPv6", "sctp": "SCTP"}


def looks_like_nft_monitor(lines: list[str]) -> bool:
    return any(_LINE_RE.match(line) for line in lines)


def _words(text: str) -> list[str]:
    """Split on spaces, keeping ``"quoted names"`` whole (interface names are quoted)."""
    return [w.strip('"') for w in re.findall(r'"[^"]*"|\S+', text)]


def parse_packet_words(text: str) -> PacketDump:
    """``iif "brq" ether saddr … ip saddr … tcp dport 22 tcp flags == syn`` -> kernel-log keys.

    The IP ID comes before the L4 header and the ICMP ID after it, so both ``ID`` fields keep
    the kernel log's order; the protocol is added from the first L4 header seen.
    """
    ip: list[tuple[str, str]] = []
    l4: list[tuple[str, str]] = []
    proto: str | None = None
    words = _words(text)
    i, n = 0, len(words)
    while i < n:
        word = words[i]
        if word in ("iif", "oif") and i + 1 < n:
            ip.append(("IN" if word == "iif" else "OUT", words[i + 1]))
            i += 2
            continue
        if word == "meta" and i + 2 < n and words[i + 1] == "mark":
            ip.append(("MARK", words[i + 2]))
            i += 3
            continue
        if i + 2 < n and (word, words[i + 1]) in _FIELDS:
            key = _FIELDS[(word, words[i + 1])]
            value = words[i + 2]
            if key.startswith("MAC"):
                value = pad_mac(value)
            elif key == "CODE":  # nft names codes, even code 0 of an echo ("net-unreachable")
                codes = _ICMP_CODES if word == "icmp" else _ICMPV6_CODES
                value = str(codes.get(value, value))
            if word in _L4:
                proto = proto or _L4[word]
                l4.append((key, value))
            else:
                ip.append((key, value))
            i += 3
            continue
        if word in ("icmp", "icmpv6") and i + 2 < n and words[i + 1] == "type":
            proto = proto or _L4[word]
            table = _ICMP_TYPES if word == "icmp" else _ICMPV6_TYPES
            value = words[i + 2]
            l4.append(("TYPE", str(table.get(value, value))))
            i += 3
            continue
        if word == "tcp" and i + 1 < n and words[i + 1] == "flags":
            proto = proto or "TCP"
            j = i + 2
            if j < n and words[j] == "==":
                j += 1
            flags = words[j] if j < n else ""
            for flag in flags.strip("()").split("|"):
                if flag:
                    l4.append((flag.upper(), ""))
            i = j + 1
            continue
        i += 1
    fields = list(ip)
    if proto is not None:
        fields.append(("PROTO", proto))
    fields.extend(l4)
    return PacketDump(tuple(fields))


def read_nft_monitor(
    lines: Iterable[str], result: NftReadResult, *, first_line: int = 1
) -> Iterator[NftItem]:
    """Items in file order; every line is counted in ``result`` (parsed, skipped or malformed)."""
    counts = result.counts
    for lineno, line in result.lines(lines, first_line):
        if "trace id" not in line:
            counts.skip(line, lineno)
            continue
        m = _LINE_RE.match(line)
        if m is None:
            result.bad_line(lineno, _EXPECTED, line)
            continue
        trace_id, family_text, table, chain, what, rest = m.groups()
        family = NFT_FAMILIES.get(family_text)
        counts.parsed += 1
        if what == "packet:":
            yield NftPacket(
                trace_id.lower(), family, table, chain, parse_packet_words(rest), lineno
            )
            continue
        if what in ("conntrack:", "unknown rule"):
            continue  # conntrack state of the packet / a rule nft could not print: no step
        verdict: str | None = None
        target: str | None = None
        rule_text: str | None = None
        handle: int | None = None
        if what == "rule":
            vm = _VERDICT_RE.search(rest)
            if vm is not None:
                verdict, target = vm.group(1).upper(), vm.group(2)
                rule_text = rest[: vm.start()].strip()
            else:
                rule_text = rest.strip()
            hm = _HANDLE_RE.search(rest)
            if hm is not None:
                handle = int(hm.group(1) or hm.group(2))
            kind = StepKind.RULE
        elif what == "verdict":
            words = rest.split()
            verdict = words[0].upper() if words else None
            target = words[1] if len(words) > 1 and verdict in ("JUMP", "GOTO") else None
            kind = StepKind.RETURN
        else:
            words = rest.split()
            verdict = words[0].upper() if words else None
            kind = StepKind.POLICY
        yield NftEvent(
            trace_id=trace_id.lower(),
            family=family,
            family_text=family_text,
            table=table,
            chain=chain,
            kind=kind,
            handle=handle,
            verdict=verdict,
            target_chain=target,
            rule_text=rule_text or None,
            line=lineno,
        )
