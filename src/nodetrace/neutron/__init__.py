"""Neutron naming layer and scenario generator: the only place that knows OpenStack names."""
