"""Read ``ovs-vsctl list TABLE`` in its default text form, as sosreports keep it
(``ovs-vsctl_-t_5_list_interface``): the OVSDB columns JSON output would give, so a port's
``iface-id``, ``attached-mac`` and OpenFlow number are known on nodes without JSON dumps.

A real sample (OVS 2.13, from a sosreport's ``ovs-vsctl_-t_5_list_interface``, shortened)::

    _uuid               : aa87cf22-4d5c-4c92-93e6-c4aa2875a22f
    error               : []
    external_ids        : {attached-mac="fa:16:3e:87:45:fc", iface-id="189f4c40-...", iface-status=active}
    mac_in_use          : "fa:16:3e:87:45:fc"
    name                : sg-189f4c40-9d
    ofport              : 7
    type                : internal

Records are separated by a blank line. Values use ovs-vsctl's text syntax: a string bare or
in double quotes (with ``\\`` escapes), an integer, ``true``/``false``, a UUID, a set
``[a, b]`` (one element may be written bare) and a map ``{k=v, ...}``.
"""

from __future__ import annotations

import re

from nodetrace.errors import DiagnosticSink, report_line
from nodetrace.model.ovsdb import (
    Atom,
    OvsdbMap,
    OvsdbRow,
    OvsdbSet,
    OvsdbTable,
    OvsdbUuid,
    OvsdbValue,
)
from nodetrace.parsers.ovs_vsctl_list import table_name
from nodetrace.parsers.pasted import output_lines

_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_:-]*)\s*:\s?(.*)$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_INT = re.compile(r"^-?\d+$")
_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s,{}\[\]=]+)|([,{}\[\]=])|(\s+)')


class _Bad(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text): kind is "str" (quoted), "word", or the punctuation itself."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _Bad(f"unexpected character {text[pos]!r}")
        pos = m.end()
        if m.group(1) is not None:
            out.append(("str", re.sub(r"\\(.)", r"\1", m.group(1))))
        elif m.group(2) is not None:
            out.append(("word", m.group(2)))
        elif m.group(3) is not None:
            out.append((m.group(3), m.group(3)))
    return out


def _atom(kind: str, text: str) -> Atom:
    if kind == "str":
        return text
    if _UUID.match(text):
        return OvsdbUuid(text)
    if _INT.match(text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def _value(text: str) -> OvsdbValue:
    toks = _tokens(text.strip())
    if not toks:
        return ""
    opener = toks[0][0]
    if opener in ("[", "{"):
        closer = "]" if opener == "[" else "}"
        if toks[-1][0] != closer:
            raise _Bad(f"no closing {closer}")
        inner = toks[1:-1]
        items: list[list[tuple[str, str]]] = [[]]
        for tok in inner:
            if tok[0] == ",":
                items.append([])
            else:
                items[-1].append(tok)
        items = [i for i in items if i]
        if opener == "[":
            if any(len(i) != 1 or i[0][0] not in ("str", "word") for i in items):
                raise _Bad("a set holds single values")
            return OvsdbSet(tuple(_atom(*i[0]) for i in items))
        pairs = []
        for item in items:
            if len(item) != 3 or item[1][0] != "=":
                raise _Bad("a map holds key=value pairs")
            pairs.append((_atom(*item[0]), _atom(*item[2])))
        return OvsdbMap(tuple(pairs))
    if len(toks) != 1 or toks[0][0] not in ("str", "word"):
        raise _Bad("one value expected")
    return _atom(*toks[0])


def parse_ovs_vsctl_list_text(
    text: str, *, source: str = "<stdin>", sink: DiagnosticSink | None = None
) -> OvsdbTable:
    """One text ``list`` output; the table is recognised by its columns, as for JSON."""
    rows: list[OvsdbRow] = []
    columns: list[tuple[str, OvsdbValue]] = []
    headings: set[str] = set()

    def flush() -> None:
        if columns:
            rows.append(OvsdbRow(tuple(columns)))
            headings.update(name for name, _ in columns)
            columns.clear()

    for lineno, line in output_lines(text, source=source, sink=sink):
        if not line.strip():
            flush()
            continue
        m = _LINE.match(line)
        if m is None:
            report_line(sink, source, lineno, "not a COLUMN : VALUE line", line[:60])
            continue
        try:
            columns.append((m.group(1), _value(m.group(2))))
        except _Bad as err:
            why = f"unreadable value of {m.group(1)} ({err})"
            report_line(sink, source, lineno, why, m.group(2)[:60])
    flush()
    return OvsdbTable(table_name(headings), tuple(rows), source)
