"""Safe live sessions on a running node (root): scoped TRACE rules that are always removed,
and read-only path counters.

``live trace`` changes the node in one way only: it inserts trace rules (or an nf_tables table of
its own) that match nothing but the traffic asked for, rate-limited and tagged with the run's id.
Each object is written to a ledger on disk before it is created (``ledger.py``), so the run's
own exit, ``nodetrace live cleanup`` or the next run removes exactly those objects, by their exact
spec, even after kill -9.
"""
