"""Text to model: one module per command whose output nodetrace reads, named after it.

Each parser is ``parse_<command>(text, *, source, sink=None)`` and its docstring shows a real
sample of its input. Without a sink a parser is strict and raises :class:`ParseError`; with one
it reports each bad line there and keeps going.
"""
