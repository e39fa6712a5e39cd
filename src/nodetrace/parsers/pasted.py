"""Recognise the lines a terminal adds around an output copied from it.

Outputs pasted into bug reports, blog posts and notes often keep the command line as it was
typed (``[root@controller ~]# ovs-vsctl show``, ``$ sudo ip netns``, ``(overcloud)
[stack@undercloud ~]$ ...``, even ``oot@vm:~# ...`` with its first character lost) and the
warning ``sudo: unable to resolve host NAME`` that sudo prints before the output. Neither is
part of the output: a parser skips such a line and says so (a warning naming file:line), so
that it is not reported as malformed data.

The test is strict so that no data line is ever swallowed: a prompt ending in ``#`` or ``$``
and a space, followed by a command word the node's tools are called by (``ovs-*``, ``ip``,
``iptables*``, ``brctl``, ``sudo``, ...), or a bare ``sudo COMMAND`` line, or sudo's warning
as the whole line. Flows, rules and interface lines never begin that way: an ``ovs-vsctl show``
line is indented or a UUID, a rule starts with ``-A``/``:``/``*``, a flow with ``cookie=`` or a
match field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from nodetrace.errors import DiagnosticSink, SourcePos

_COMMAND_WORD = (
    r"(?:ovs-[a-z]+|ovn-[a-z]+|ip|ip6?tables(?:-[a-z-]+)?|ebtables|arptables|brctl|bridge"
    r"|ipset|nft|conntrack|sysctl|tcpdump|neutron-[a-z-]+|openstack|cat|docker|podman)"
)
_SUDO = r"sudo(?:\s+-\S+)*\s+"
_PROMPT = re.compile(
    # The prompt: one '#'/'$' alone, or a short text without the characters data lines of
    # these outputs are made of ('=' of flows, '"' and '*' of rule comments, ',' of flow
    # fields) that does not start like a rule ('-', ':', '*') or an indented OVSDB line.
    r'^(?:[#$]|[^\s"=,:*-][^"=,*]{0,120}?[#$])\s+'
    rf"(?:{_SUDO})?{_COMMAND_WORD}(?:\s|$)"
)
_BARE_SUDO = re.compile(rf"^{_SUDO}{_COMMAND_WORD}(?:\s|$)")
_SUDO_WARNING = re.compile(r"^sudo: unable to resolve host \S+(?::.*)?$")


def is_pasted_command(line: str) -> bool:
    """Whether ``line`` is the command line as typed (with its prompt) or sudo's warning."""
    text = line.rstrip()
    return bool(_PROMPT.match(text) or _BARE_SUDO.match(text) or _SUDO_WARNING.match(text))


def skip_pasted_command(
    line: str, *, source: str, number: int, sink: DiagnosticSink | None
) -> bool:
    """True (after a warning naming source:number) when ``line`` is to be skipped as typed."""
    if not is_pasted_command(line):
        return False
    if sink is not None:
        sink.warn(SourcePos(source, number), "the command line as typed: skipped")
    return True


def output_lines(
    text: str, *, source: str, sink: DiagnosticSink | None
) -> Iterator[tuple[int, str]]:
    """``(number, line)`` of ``text``, counted from 1, without the command lines as typed."""
    for number, line in enumerate(text.splitlines(), 1):
        if not skip_pasted_command(line, source=source, number=number, sink=sink):
            yield number, line
