"""Where text output goes: how wide a line may be and whether it may be coloured.

One policy for every command. On a terminal, lines fit its width; otherwise ``$COLUMNS`` is
the width if set, and piped output is not wrapped at all, as ``git log`` and ``ovn-trace`` write
to a pipe: ``grep`` and ``awk`` then see a whole step on one line. Lines break only at spaces
(a word longer than the line stays whole), continuation lines are indented, and no line ends
in spaces. Colour only on a terminal, never with ``NO_COLOR`` set (https://no-color.org) or
``TERM=dumb``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, TextIO

Style = Literal["bold", "dim", "italic", "red", "green", "yellow", "magenta", "cyan"]

_SGR: dict[str, str] = {
    "bold": "1",
    "dim": "2",
    "italic": "3",
    "red": "1;31",
    "green": "1;32",
    "yellow": "33",
    "magenta": "35",
    "cyan": "36",
}


@dataclass(frozen=True, slots=True)
class Screen:
    """The width lines wrap at (``None``: never wrap) and whether to colour."""

    width: int | None = None
    colour: bool = False

    @classmethod
    def of(cls, stream: TextIO) -> Screen:
        """The policy for text written to ``stream`` (see the module's docstring)."""
        try:
            tty = stream.isatty()
        except (AttributeError, ValueError):  # a closed or replaced stream
            tty = False
        width: int | None = None
        if tty:
            try:
                width = os.get_terminal_size(stream.fileno()).columns or None
            except (OSError, ValueError):
                width = None
        if width is None:
            columns = os.environ.get("COLUMNS", "")
            width = int(columns) if columns.isdigit() and int(columns) > 0 else None
        colour = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        return cls(width, colour)

    def paint(self, text: str, style: Style) -> str:
        """``text`` in ``style`` when colour is on; unchanged otherwise."""
        if not self.colour or not text:
            return text
        return f"\x1b[{_SGR[style]}m{text}\x1b[0m"

    def wrap(self, line: str, indent: int) -> list[str]:
        """``line`` cut at spaces to fit the width, continuation lines indented by ``indent``."""
        width = self.width
        if width is None or len(line) <= width:
            return [line.rstrip(" ")]
        pad = " " * indent
        out: list[str] = []
        rest, prefix = line, ""
        lead = len(line) - len(line.lstrip(" "))
        while len(prefix) + len(rest) > width:
            room = width - len(prefix)
            # never cut inside the line's own leading indentation
            floor = lead + 1 if not out else 1
            cut = rest.rfind(" ", floor, room + 1)
            if cut < floor:
                cut = rest.find(" ", room)  # a word longer than the line stays whole
                if cut < 0:
                    break
            out.append(prefix + rest[:cut].rstrip(" "))
            rest, prefix = rest[cut:].lstrip(" "), pad
            if not rest:
                return out
        out.append((prefix + rest).rstrip(" "))
        return out

    def lines(
        self,
        line: str,
        indent: int,
        style: Style | None = None,
        spans: tuple[tuple[str, Style], ...] = (),
    ) -> list[str]:
        """``line`` wrapped, then painted: whole in ``style``, or each ``(text, style)`` of
        ``spans`` where it first appears (colour is added after wrapping so that escape codes
        never count as width)."""
        out = self.wrap(line, indent)
        if not self.colour:
            return out
        if style is not None:
            return [self.paint(x, style) for x in out]
        for text, span_style in spans:
            for i, x in enumerate(out):
                if text in x:
                    out[i] = x.replace(text, self.paint(text, span_style), 1)
                    break
        return out


PLAIN = Screen()
"""No wrapping, no colour: text for files, tests and other programs."""
