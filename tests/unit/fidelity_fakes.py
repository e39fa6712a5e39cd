"""A lab as ``lab up`` would record it, for planning fidelity packets without building one."""

from __future__ import annotations

from nodetrace.lab.state import LabInfo, NodeInfo, VmInfo
from nodetrace.neutron.scenario import Scenario


def fake_lab_info(scenario: Scenario, backend: str) -> LabInfo:
    """Every node and VM of ``scenario`` under lab name ``f``, each VM with its first address."""
    nets = {n.id: n for n in scenario.networks}
    return LabInfo(
        name="f", scenario="f.toml", backend=backend, status="ready", up_pid=1,
        underlay_netns="f-underlay", underlay_ip="192.168.50.254",
        nodes=tuple(NodeInfo(n.name, f"f-{n.name}", "", str(n.underlay_ip))
                    for n in scenario.nodes),
        vms=tuple(
            VmInfo(p.name, p.node, f"f-{p.name}", p.id, p.mac, (f"{p.fixed_ips[0]}/24",),
                   nets[p.network].name, 1450)
            for p in scenario.ports
        ),
    )  # fmt: skip
