"""Pure data: frozen, typed, no I/O and no imports from the rest of the package.

Every parser produces these types and every engine and renderer consumes them, so a trace
observed in a log and a trace simulated from a snapshot have the same shape.
"""
