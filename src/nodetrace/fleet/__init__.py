"""Many nodes at once: the same audit, trace or log over a fleet's snapshots and logs.

``inputs.py`` names the nodes, ``jobs.py`` is one node's work, ``run.py`` runs the jobs locally
or on Dask, ``store.py`` keeps the rows in DuckDB for queries and Parquet export.
"""
