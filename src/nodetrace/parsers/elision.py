"""Recognise a line that stands for lines left out where an output was copied.

Blog posts, notes and bug reports cut long outputs with a marker line: ``(...)``, ``...``,
``…``, ``[...]``, ``[snip]``, ``<snip>``. Such a line is not malformed input but a statement
that the output is incomplete; parsers skip it and say what it means for their output.
"""

from __future__ import annotations

import re

ELISION = re.compile(
    r"^\s*(\(\s*(\.{3,}|…)\s*\)|\[\s*(\.{3,}|…|snip)\s*\]|<\s*snip\s*>|\.{3,}|…|snip)\s*$",
    re.IGNORECASE,
)
"""A line standing for lines left out where the output was copied."""
