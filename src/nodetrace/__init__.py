"""nodetrace: follow a packet through an OpenStack compute node and say where, and why, it stops.

The public API is small on purpose: parse inputs with :mod:`nodetrace.parsers`, evaluate them
with :mod:`nodetrace.engine`, and render results with :mod:`nodetrace.render`.
"""

__version__ = "0.1.0"
