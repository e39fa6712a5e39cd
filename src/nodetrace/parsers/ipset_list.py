"""Parse ``ipset list`` output (the human-readable listing) into the same typed sets as ``ipset save``.

Operators often attach ``ipset list`` rather than ``ipset save`` to a report. A real sample
(ipset 7.17)::

    Name: NIPv4sg1
    Type: hash:net
    Revision: 7
    Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xd30975a9
    Size in memory: 552
    References: 0
    Number of entries: 2
    Members:
    10.0.0.2
    10.0.0.1
"""

from __future__ import annotations

from nodetrace.errors import DiagnosticSink, ParseError, SourcePos
from nodetrace.model.ipset import IpSets
from nodetrace.parsers.ipset_save import SetBuilder, new_builder, parse_member_words
from nodetrace.parsers.iptables_save import tokenize

_IGNORED_HEADERS = ("Revision:", "Size in memory:", "References:", "Number of entries:")


def looks_like_ipset_list(text: str) -> bool:
    """True when ``text`` starts like ``ipset list`` output rather than ``ipset save``."""
    for line in text.splitlines():
        if line.strip():
            return line.startswith("Name: ")
    return False


def parse_ipset_list(text: str, *, source: str, sink: DiagnosticSink | None = None) -> IpSets:
    """Parse ``ipset list``; strict without a sink, lenient with one."""
    report = sink if sink is not None else DiagnosticSink(strict=True)
    builders: dict[str, SetBuilder] = {}
    name: str | None = None
    name_pos: SourcePos | None = None
    type_text: str | None = None
    current: SetBuilder | None = None
    in_members = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        pos = SourcePos(source, lineno)
        try:
            if not line:
                in_members = False
                continue
            if line.startswith("Name: "):
                name, name_pos, type_text, current, in_members = (
                    line[6:].strip(),
                    pos,
                    None,
                    None,
                    False,
                )
                if name in builders:
                    raise ParseError(pos, "set listed twice", token=name)
                continue
            if in_members:
                if current is None:
                    continue  # the set's header was bad and has been reported
                words = [t.text for t in tokenize(line, pos)]
                current.members.extend(parse_member_words(words, current, pos))
                continue
            if name is None:
                raise ParseError(
                    pos,
                    "line before the first 'Name:'",
                    token=line.split()[0],
                    expected="Name: SET",
                )
            if line.startswith("Type: "):
                type_text = line[6:].strip()
            elif line.startswith("Header:"):
                if type_text is None:
                    raise ParseError(pos, "'Header:' before 'Type:'", token=line)
                words = [t.text for t in tokenize(line[7:], pos)]
                current = new_builder(name, type_text, words, name_pos or pos)
                builders[name] = current
            elif line == "Members:":
                if current is None and type_text is not None:
                    current = new_builder(name, type_text, [], name_pos or pos)
                    builders[name] = current
                in_members = True
            elif not line.startswith(_IGNORED_HEADERS):
                raise ParseError(
                    pos,
                    "unexpected line in a set's header",
                    token=line.split()[0],
                    expected="Type:, Header: or Members:",
                )
        except ParseError as err:
            report.error(err)
    return IpSets({n: b.build() for n, b in builders.items()}, source)
