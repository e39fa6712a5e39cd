"""Read the rule handles ``nft -a list ruleset`` prints, and give them to an iptables ruleset.

nf_tables traces (``xtables-monitor --trace``, ``nft monitor trace``) name a rule by its
*handle*, which ``iptables-nft-save`` does not print and which only a fresh restore assigns in
line order: a rule added later with ``iptables-nft -I`` takes the next free handle. Only the
table, chain and rule handles are read here, in order; nft expressions are not interpreted.
A real listing (nft 1.0.6, after ``iptables-nft -t raw -I PREROUTING 1 -j TRACE``)::

    table ip raw { # handle 1
        chain PREROUTING { # handle 1
                type filter hook prerouting priority raw; policy accept;
                counter packets 0 bytes 0 meta nftrace set 1 # handle 5
                meta l4proto icmp counter packets 0 bytes 0 xt target CT # handle 3
                iifname "lo" counter packets 0 bytes 0 accept # handle 4
        }
    }

``iptables-nft-save`` prints a chain's rules in the kernel's order, so its k-th rule of a chain
is the k-th rule that chain lists here (family ``ip`` for iptables, ``ip6`` for ip6tables):
:func:`attach_nft_handles` sets :attr:`Rule.handle <nodetrace.model.netfilter.Rule.handle>`
that way, table by table, and leaves a table alone (saying why) when the two disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos, report
from nodetrace.model.netfilter import Chain, Ruleset, Table
from nodetrace.model.packet import Family

_TABLE_RE = re.compile(r"^table\s+(\w+)\s+(\S+)\s*\{\s*(?:#\s*handle\s+(\d+))?\s*$")
_CHAIN_RE = re.compile(r"^chain\s+(\S+)\s*\{\s*(?:#\s*handle\s+(\d+))?\s*$")
_HANDLE_RE = re.compile(r"#\s*handle\s+(\d+)\s*$")
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"')

NFT_FAMILY = {Family.IPV4: "ip", Family.IPV6: "ip6"}
"""The nf_tables family iptables-nft (``ip``) and ip6tables-nft (``ip6``) keep their tables in."""


@dataclass(frozen=True, slots=True)
class NftChain:
    name: str
    handle: int | None
    rule_handles: tuple[int, ...]
    """The handles of the chain's rules, in the order the kernel runs them."""


@dataclass(frozen=True, slots=True)
class NftTable:
    family: str
    """``ip``, ``ip6``, ``inet``, ``bridge``, ``arp`` or ``netdev``."""
    name: str
    handle: int | None
    chains: dict[str, NftChain] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NftListing:
    """The tables of one ``nft -a list ruleset``, keyed by ``(family, name)``."""

    tables: dict[tuple[str, str], NftTable] = field(default_factory=dict)
    source: str = ""

    def table(self, family: str, name: str) -> NftTable | None:
        return self.tables.get((family, name))


def looks_like_nft_listing(text: str) -> bool:
    """Whether ``text`` starts like ``nft list ruleset`` output (its first line opens a table)."""
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.startswith("table ")
    return False


def _unquote(name: str) -> str:
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def _braces(line: str) -> int:
    """Net ``{`` minus ``}`` on a line, outside quoted strings and the trailing comment."""
    body = _QUOTED_RE.sub('""', line)
    body = body.split("#", 1)[0]
    return body.count("{") - body.count("}")


def parse_nft_list_ruleset(
    text: str, *, source: str, sink: DiagnosticSink | None = None
) -> NftListing:
    """The table, chain and rule handles of ``nft -a list ruleset`` output.

    Strict without ``sink`` (the first problem raises :class:`ParseError`); lenient with one:
    each problem is reported with its line and the rest is still read. A listing without
    handles (``nft list ruleset`` without ``-a``) is an error: it cannot name any rule.
    """

    def problem(lineno: int, message: str) -> None:
        report(sink, ParseError(SourcePos(source, lineno), message))

    tables: dict[tuple[str, str], NftTable] = {}
    table: NftTable | None = None
    chain_name: str | None = None
    chain_handle: int | None = None
    rules: list[int] = []
    depth = 0
    """Brace depth: 0 top level, 1 inside a table, 2 inside a chain (or a set, map...)."""
    other_block = False
    """Inside a table block that is not a chain (set, map, flowtable, counter...)."""
    saw_table = False

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or (line.startswith("#") and depth == 0):
            continue
        if depth == 0:
            m = _TABLE_RE.match(line)
            if m is None:
                problem(lineno, f"expected 'table FAMILY NAME {{ # handle N', got '{line}'")
                depth += max(_braces(line), 0)
                continue
            family, name = m.group(1), _unquote(m.group(2))
            table = NftTable(family, name, int(m.group(3)) if m.group(3) else None)
            if m.group(3) is None:
                problem(lineno, f"table {family} {name} has no handle (list it with nft -a)")
            tables[(family, name)] = table
            saw_table = True
            depth = 1
            continue
        if depth == 1:
            if line == "}":
                depth, table = 0, None
                continue
            m = _CHAIN_RE.match(line)
            if m is not None and table is not None:
                chain_name, rules = _unquote(m.group(1)), []
                chain_handle = int(m.group(2)) if m.group(2) else None
                other_block, depth = False, 2
                continue
            change = _braces(line)
            if change > 0:
                other_block, depth = True, 1 + change
            continue
        # inside a chain or another block of the table
        change = _braces(line)
        if depth + change <= 1:
            if not other_block and chain_name is not None and table is not None:
                table.chains[chain_name] = NftChain(chain_name, chain_handle, tuple(rules))
            chain_name, other_block, depth = None, False, 1
            continue
        if not other_block and depth == 2 and change == 0:
            m = _HANDLE_RE.search(line)
            if m is not None:
                rules.append(int(m.group(1)))
            elif not _is_chain_header(line):
                problem(lineno, f"rule without a handle (list it with nft -a): '{line}'")
        depth += change
    if depth != 0:
        problem(len(text.splitlines()), "the listing ends inside a block (cut short?)")
        if table is not None and chain_name is not None and not other_block:
            table.chains.setdefault(chain_name, NftChain(chain_name, chain_handle, tuple(rules)))
    if not saw_table and text.strip():
        problem(1, "no 'table' block: not nft list ruleset output")
    return NftListing(tables, source)


def _is_chain_header(line: str) -> bool:
    """The lines of a chain that are not rules: ``type ... hook ...;``, ``policy``, ``comment``,
    ``devices``, ``flags``."""
    return line.endswith(";") or line.startswith(("type ", "policy ", "comment ", "devices "))


@dataclass(frozen=True, slots=True)
class HandleAttachment:
    """A ruleset with the handles nft lists for it, and why some tables got none."""

    ruleset: Ruleset
    notes: tuple[str, ...] = ()
    tables_with_handles: tuple[str, ...] = ()


def attach_nft_handles(ruleset: Ruleset, listing: NftListing) -> HandleAttachment:
    """``ruleset`` with :attr:`Rule.handle` set from ``listing`` for every table whose chains
    have the same rule counts in both; other tables keep no handles, and a note says why.

    The notes are also kept in :attr:`Ruleset.handle_notes` so an engine can state them.
    """
    family = NFT_FAMILY.get(ruleset.family)
    notes: list[str] = []
    done: list[str] = []
    tables: dict[str, Table] = {}
    for name, table in ruleset.tables.items():
        listed = listing.table(family, name) if family is not None else None
        if listed is None:
            if any(chain.rules for chain in table.chains.values()):
                notes.append(
                    f"table {family} {name} is not in {listing.source or 'the nft listing'}"
                )
            tables[name] = table
            continue
        mismatch = _shape_mismatch(table, listed)
        if mismatch is not None:
            notes.append(
                f"table {family} {name}: {mismatch} in {listing.source or 'the nft listing'}, "
                "so its handles are not taken from it"
            )
            tables[name] = table
            continue
        chains: dict[str, Chain] = {}
        for cname, chain in table.chains.items():
            handles = listed.chains[cname].rule_handles if chain.rules else ()
            chains[cname] = replace(
                chain,
                rules=tuple(
                    replace(rule, handle=h) for rule, h in zip(chain.rules, handles, strict=True)
                ),
            )
        tables[name] = replace(table, chains=chains)
        done.append(name)
    attached = replace(ruleset, tables=tables, handle_notes=ruleset.handle_notes + tuple(notes))
    return HandleAttachment(attached, tuple(notes), tuple(done))


def _shape_mismatch(table: Table, listed: NftTable) -> str | None:
    for cname, chain in table.chains.items():
        nft_chain = listed.chains.get(cname)
        if nft_chain is None:
            if chain.rules:
                return f"chain {cname} ({len(chain.rules)} rules in the save) is not listed"
            continue
        if len(nft_chain.rule_handles) != len(chain.rules):
            return (
                f"chain {cname} has {len(chain.rules)} rules in the save but "
                f"{len(nft_chain.rule_handles)}"
            )
    return None
