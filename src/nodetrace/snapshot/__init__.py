"""Node snapshots: the bundle format, live collection (read-only), sosreport reading."""
