"""The namespace lab: real Linux networking and real Open vSwitch in network namespaces.

Only this package (and ``snapshot.collect``) starts processes that change the system. Every
object it creates is written to a :class:`~nodetrace.lab.ledger.Ledger` *before* it is created,
so teardown removes exactly what was made, by recorded identity, even after a crash.
"""
