"""Engines: evaluate a packet against a model (netfilter, OpenFlow, bridges, the whole node)."""
