"""The trace rules of one live run, as exact argument lists and nf_tables text.

iptables (legacy and nft back ends): one rule per selector and hook at the top of the raw
table's PREROUTING and OUTPUT chains, ``-m comment`` naming the run, ``-m limit`` bounding the
kernel log, ``-j TRACE``. It is removed with ``-D`` and the same spec, which only a rule
carrying this run's comment can match: never by number, never by pattern.

nftables: a table of the run's own, ``table inet nodetrace_<run>``, whose two base chains run
just before the raw table (priority raw - 1) and set ``meta nftrace set 1`` on the selected
packets; nothing else on the node is touched, and the table is removed by its name.

Every value that reaches a rule is typed (addresses parsed, numbers checked, device names and
MACs validated), so no text of the user's is ever spliced into nf_tables syntax.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from enum import StrEnum

from nodetrace.errors import UsageError
from nodetrace.live.selector import Selection, Selector
from nodetrace.model.packet import Family, IPProto

TRACE_TABLE = "raw"
HOOK_CHAINS = ("PREROUTING", "OUTPUT")
LOCK_WAIT = "5"
"""Seconds ``iptables -w`` waits for the xtables lock another tool (the agent) holds."""
DEFAULT_RATE = 10
DEFAULT_BURST = 10
MAX_RATE = 10_000
COMMENT_PREFIX = "nodetrace live trace"
NFT_TABLE_PREFIX = "nodetrace_"
RUN_ID = re.compile(r"[0-9a-f]{12}")
DEVICE = re.compile(r"[A-Za-z0-9_.@:+-]{1,15}")
"""A Linux interface name (at most 15 bytes, no '/', no whitespace, no quotes)."""


class Backend(StrEnum):
    """How a namespace's netfilter is driven, and so how a run traces there."""

    LEGACY = "iptables-legacy"
    NFT = "iptables-nft"
    NFTABLES = "nftables"

    def tool(self, family: Family) -> str:
        """The iptables binary of this back end for ``family``."""
        stem = "iptables" if family is Family.IPV4 else "ip6tables"
        match self:
            case Backend.LEGACY:
                return f"{stem}-legacy"
            case Backend.NFT:
                return f"{stem}-nft"
            case Backend.NFTABLES:
                raise ValueError("the nftables back end has no iptables tool")


@dataclass(frozen=True, slots=True)
class Limit:
    """How many traced packets per second the kernel may report (``-m limit``)."""

    rate: int = DEFAULT_RATE
    burst: int = DEFAULT_BURST

    def __post_init__(self) -> None:
        if not 1 <= self.rate <= MAX_RATE or not 1 <= self.burst <= MAX_RATE:
            raise UsageError(f"--rate and --burst: between 1 and {MAX_RATE} packets")


@dataclass(frozen=True, slots=True)
class IptablesRule:
    """One trace rule: where it goes and its exact spec (everything after the chain)."""

    tool: str
    chain: str
    spec: tuple[str, ...]
    table: str = TRACE_TABLE

    def insert_argv(self) -> list[str]:
        return [self.tool, "-w", LOCK_WAIT, "-t", self.table, "-I", self.chain, "1", *self.spec]

    def delete_argv(self) -> list[str]:
        return [self.tool, "-w", LOCK_WAIT, "-t", self.table, "-D", self.chain, *self.spec]

    def check_argv(self) -> list[str]:
        return [self.tool, "-w", LOCK_WAIT, "-t", self.table, "-C", self.chain, *self.spec]

    def describe(self) -> str:
        return f"{self.tool} -t {self.table} {self.chain}: {shlex.join(self.spec)}"


@dataclass(frozen=True, slots=True)
class NftTable:
    """The run's own nf_tables table: created whole in one transaction, removed by name."""

    name: str
    rules: tuple[tuple[str, str], ...]
    """(chain, rule text) in order."""
    family: str = "inet"

    def create_text(self) -> str:
        """``nft -f -`` input: ``create`` fails if a table of that name exists already."""
        lines = [f"create table {self.family} {self.name}"]
        for chain, hook in NFT_CHAINS:
            lines.append(
                f"add chain {self.family} {self.name} {chain} "
                f"{{ type filter hook {hook} priority raw - 1; policy accept; }}"
            )
        lines += [
            f"add rule {self.family} {self.name} {chain} {rule}" for chain, rule in self.rules
        ]
        return "\n".join(lines) + "\n"

    def delete_argv(self) -> list[str]:
        return ["nft", "delete", "table", self.family, self.name]

    def list_argv(self) -> list[str]:
        return ["nft", "list", "table", self.family, self.name]


NFT_CHAINS = (("trace_prerouting", "prerouting"), ("trace_output", "output"))


def comment(run_id: str) -> str:
    return f"{COMMENT_PREFIX} {run_id}"


def nft_table_name(run_id: str) -> str:
    return f"{NFT_TABLE_PREFIX}{run_id}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ValueError(f"run id {run_id!r}: 12 hexadecimal digits expected")
    return run_id


def iptables_rules(
    selection: Selection, backend: Backend, run_id: str, limit: Limit
) -> tuple[tuple[IptablesRule, ...], tuple[str, ...]]:
    """The trace rules of ``selection`` for an iptables back end, and notes on what is left out."""
    check_run_id(run_id)
    rules: list[IptablesRule] = []
    notes: list[str] = []
    for selector in selection.selectors:
        matches = iptables_matches(selector)
        tail = (
            "-m", "comment", "--comment", comment(run_id),
            "-m", "limit", "--limit", f"{limit.rate}/sec", "--limit-burst", str(limit.burst),
            "-j", "TRACE",
        )  # fmt: skip
        for chain in HOOK_CHAINS:
            if chain == "OUTPUT" and selector.input_only:
                notes.append(
                    f"{selector.describe()}: not traced in OUTPUT (an input device or source MAC "
                    "is only known where packets arrive); locally sent packets are not traced"
                )
                continue
            rules.append(IptablesRule(backend.tool(selector.family), chain, (*matches, *tail)))
    return tuple(dict.fromkeys(rules)), tuple(notes)


def iptables_matches(selector: Selector) -> tuple[str, ...]:
    """``selector`` as iptables match options, in the order ``iptables-save`` prints them."""
    v6 = selector.family is Family.IPV6
    out: list[str] = []
    if selector.src is not None:
        out += ["-s", str(selector.src)]
    if selector.dst is not None:
        out += ["-d", str(selector.dst)]
    if selector.in_dev is not None:
        out += ["-i", _device(selector.in_dev)]
    if selector.proto is not None:
        out += ["-p", _IPT_PROTO.get(selector.proto, str(selector.proto))]
    if selector.mac_src is not None:
        out += ["-m", "mac", "--mac-source", selector.mac_src]
    name = _IPT_PROTO.get(selector.proto or -1)
    if selector.sport is not None or selector.dport is not None:
        out += ["-m", str(name)]
        out += ["--sport", str(selector.sport)] if selector.sport is not None else []
        out += ["--dport", str(selector.dport)] if selector.dport is not None else []
    if selector.icmp_type is not None:
        icmp = str(selector.icmp_type)
        if selector.icmp_code is not None:
            icmp += f"/{selector.icmp_code}"
        out += ["-m", "icmp6", "--icmpv6-type", icmp] if v6 else ["-m", "icmp", "--icmp-type", icmp]
    return tuple(out)


_IPT_PROTO: dict[int, str] = {
    IPProto.TCP: "tcp",
    IPProto.UDP: "udp",
    IPProto.SCTP: "sctp",
    IPProto.ICMP: "icmp",
    IPProto.ICMPV6: "ipv6-icmp",
}


def nft_table(selection: Selection, run_id: str, limit: Limit) -> tuple[NftTable, tuple[str, ...]]:
    """The run's own nf_tables table for ``selection``, and notes on what is left out."""
    check_run_id(run_id)
    rules: list[tuple[str, str]] = []
    notes: list[str] = []
    tail = (
        f"limit rate {limit.rate}/second burst {limit.burst} packets meta nftrace set 1 "
        f'comment "{comment(run_id)}"'
    )
    for selector in selection.selectors:
        expr = nft_expression(selector)
        for chain, hook in NFT_CHAINS:
            if hook == "output" and selector.input_only:
                notes.append(
                    f"{selector.describe()}: not traced in output (an input device or source MAC "
                    "is only known where packets arrive)"
                )
                continue
            rules.append((chain, f"{expr} {tail}"))
    return NftTable(nft_table_name(run_id), tuple(dict.fromkeys(rules))), tuple(notes)


def nft_expression(selector: Selector) -> str:
    """``selector`` as an nf_tables match expression (inet family)."""
    v6 = selector.family is Family.IPV6
    ip = "ip6" if v6 else "ip"
    out: list[str] = []
    if selector.in_dev is not None:
        out.append(f'iifname "{_device(selector.in_dev)}"')
    if selector.mac_src is not None:
        out.append(f"ether saddr {selector.mac_src}")
    if selector.src is None and selector.dst is None:
        out.append(f"meta nfproto {'ipv6' if v6 else 'ipv4'}")
    if selector.src is not None:
        out.append(f"{ip} saddr {selector.src}")
    if selector.dst is not None:
        out.append(f"{ip} daddr {selector.dst}")
    proto = selector.proto
    name = _NFT_PROTO.get(proto or -1)
    if proto is not None:
        out.append(f"meta l4proto {name or proto}")
    if name in ("tcp", "udp", "sctp"):
        out += [f"{name} sport {selector.sport}"] if selector.sport is not None else []
        out += [f"{name} dport {selector.dport}"] if selector.dport is not None else []
    if name in ("icmp", "icmpv6"):
        out += [f"{name} type {selector.icmp_type}"] if selector.icmp_type is not None else []
        out += [f"{name} code {selector.icmp_code}"] if selector.icmp_code is not None else []
    return " ".join(out)


_NFT_PROTO: dict[int, str] = {
    IPProto.TCP: "tcp",
    IPProto.UDP: "udp",
    IPProto.SCTP: "sctp",
    IPProto.ICMP: "icmp",
    IPProto.ICMPV6: "icmpv6",
}


def _device(name: str) -> str:
    if not DEVICE.fullmatch(name):
        raise UsageError(f"{name!r}: not a device name")
    return name
