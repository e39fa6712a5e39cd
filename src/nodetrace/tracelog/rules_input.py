"""Read the ``--rules`` and ``--ipsets`` files a log is explained with, reporting what is wrong.

A ``--rules`` file may also be ``nft -a list ruleset`` output of the node: its rule handles are
then given to the iptables rulesets, so nf_tables trace steps are found by handle.

A file that cannot be read at all (missing, a device, damaged compression) stops the command in
one line: the user named it, so going on would answer a question that was not asked. A file
that is read but is not what it should be (empty, not iptables-save output, not ipset save
output) is reported in one line naming the file and the first line that gave it away, and left
out: the log is then explained without it rather than not at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodetrace.errors import DiagnosticSink, Severity, SourcePos
from nodetrace.model.ipset import IpSet, IpSets
from nodetrace.model.netfilter import Ruleset
from nodetrace.model.packet import Family
from nodetrace.parsers.ipset_list import looks_like_ipset_list, parse_ipset_list
from nodetrace.parsers.ipset_save import parse_ipset_save
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.nft_list_ruleset import (
    NftListing,
    attach_nft_handles,
    looks_like_nft_listing,
    parse_nft_list_ruleset,
)
from nodetrace.tracelog.rulebook import RuleBook
from nodetrace.tracelog.source import read_text

MAX_REPORTED = 10


def _read(name: str, sink: DiagnosticSink) -> str | None:
    """The file's text; a file that cannot be read is an :class:`InputError` (the user named
    it), an empty one is only left out."""
    text = read_text(name)
    if not text.strip():
        sink.warn(SourcePos(name, 0), "empty file; explaining without it")
        return None
    return text


def _report(name: str, what: str, problems: DiagnosticSink, sink: DiagnosticSink) -> None:
    errors = [d for d in problems.items if d.severity is Severity.ERROR]
    for d in errors[:MAX_REPORTED]:
        sink.warn(d.pos, f"{d.message} (line left out of the {what})")
    if len(errors) > MAX_REPORTED:
        sink.warn(
            errors[MAX_REPORTED].pos, f"{len(errors) - MAX_REPORTED} more bad lines in {name}"
        )


def _ruleset(name: str, text: str, sink: DiagnosticSink) -> Ruleset | None:
    attempts: list[tuple[Ruleset, DiagnosticSink]] = []
    families = [Family.IPV6] if "ip6tables" in text[:300] else [Family.IPV4, Family.IPV6]
    for family in families:
        problems = DiagnosticSink()
        ruleset = parse_iptables_save(text, source=name, family=family, sink=problems)
        attempts.append((ruleset, problems))
        if not problems.errors:
            break
    ruleset, problems = min(attempts, key=lambda a: len(a[1].errors))
    rules = sum(1 for _ in ruleset.rules())
    if not ruleset.tables or (rules == 0 and problems.errors):
        first = problems.errors[0] if problems.errors else None
        where = first.pos if first is not None else SourcePos(name, 1)
        detail = f" ({first.message})" if first is not None else ""
        sink.warn(
            where,
            f"not iptables-save output{detail}; steps are explained without rule text",
        )
        return None
    _report(name, "ruleset", problems, sink)
    return ruleset


def _nft_listing(name: str, text: str, sink: DiagnosticSink) -> NftListing:
    problems = DiagnosticSink()
    listing = parse_nft_list_ruleset(text, source=name, sink=problems)
    _report(name, "nft listing", problems, sink)
    if not listing.tables:
        sink.warn(SourcePos(name, 1), "no table in the nft listing; rule handles are not known")
    return listing


def load_ipsets(name: str, sink: DiagnosticSink) -> IpSets | None:
    text = _read(name, sink)
    if text is None:
        return None
    problems = DiagnosticSink()
    if looks_like_ipset_list(text):
        sets = parse_ipset_list(text, source=name, sink=problems)
    else:
        sets = parse_ipset_save(text, source=name, sink=problems)
    if not len(sets):
        first = problems.errors[0] if problems.errors else None
        where = first.pos if first is not None else SourcePos(name, 1)
        detail = f" ({first.message})" if first is not None else ""
        sink.warn(where, f"not ipset save output{detail}; set members are not shown")
        return None
    _report(name, "ipsets", problems, sink)
    return sets


def load_rulebook(
    rule_files: Sequence[str],
    ipset_files: Sequence[str],
    sink: DiagnosticSink,
    *,
    taken: Sequence[Ruleset] = (),
    taken_ipsets: IpSets | None = None,
    taken_from: str = "",
) -> RuleBook | None:
    """The rulesets (one per family; a later file of the same family wins) and ipsets given.

    ``taken``/``taken_ipsets`` were read already (from a snapshot, ``taken_from``): they come
    first, so a file of the same family given beside them wins, and says so.
    """
    book = RuleBook()
    sources: list[str] = [taken_from] if taken or taken_ipsets is not None else []
    for read in taken:
        book.rulesets[read.family] = read
    listings: list[NftListing] = []
    for name in rule_files:
        text = _read(name, sink)
        if text is None:
            continue
        if looks_like_nft_listing(text[:4096]):
            listing = _nft_listing(name, text, sink)
            if listing.tables:
                listings.append(listing)
                sources.append(name)
            continue
        ruleset = _ruleset(name, text, sink)
        if ruleset is None:
            continue
        if ruleset.family in book.rulesets:
            sink.warn(
                SourcePos(name, 0), f"a second {ruleset.family.value} ruleset; this one is used"
            )
        book.rulesets[ruleset.family] = ruleset
        sources.append(name)
    for listing in listings[-1:]:  # like rulesets, a later listing wins
        for family, ruleset in book.rulesets.items():
            attached = attach_nft_handles(ruleset, listing)
            for note in attached.notes:
                sink.warn(SourcePos(listing.source, 0), f"{note}; steps there are found by text")
            book.rulesets[family] = attached.ruleset
    if len(listings) > 1:
        sink.warn(SourcePos(listings[-1].source, 0), "a second nft listing; this one is used")
    merged: dict[str, IpSet] = dict(taken_ipsets.sets) if taken_ipsets is not None else {}
    for name in ipset_files:
        sets = load_ipsets(name, sink)
        if sets is not None:
            merged.update(sets.sets)
            sources.append(name)
    if merged:
        book.ipsets = IpSets(merged, ",".join(ipset_files) or taken_from)
    book.sources = tuple(sources)
    return book if book.rulesets or book.ipsets is not None else None
