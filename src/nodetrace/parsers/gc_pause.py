"""Pause Python's cyclic garbage collector while a big dump is turned into objects.

Parsing a large ruleset or flow dump creates tens of thousands of objects and no garbage; the
cyclic collector, triggered by allocations alone, would walk them all again and again (a fifth
of the parse time). Reference counting still frees everything as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector for the ``with`` block; restore its previous state."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
