"""Print an input's problems on stderr without burying the answer under them.

A damaged file can hold thousands of bad lines; the first few name the problem, the rest are
counted in one line with their range, and ``--format json`` (where a command has it) lists all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from nodetrace.errors import Diagnostic

MAX_REPORTED = 20


def print_diagnostics(items: Sequence[Diagnostic], *, limit: int = MAX_REPORTED) -> None:
    for d in items[:limit]:
        print(f"nodetrace: {d}", file=sys.stderr)
    rest = items[limit:]
    if not rest:
        return
    files = {d.pos.file for d in rest}
    where = (
        f"lines {rest[0].pos.line}-{rest[-1].pos.line} of {rest[0].pos.file}"
        if len(files) == 1
        else f"in {len(files)} files"
    )
    print(f"nodetrace: {len(rest)} more problems like these ({where})", file=sys.stderr)
