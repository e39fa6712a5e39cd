"""Two 2-node labs side by side (VXLAN with iptables-nft, GRE with iptables-legacy): what they
load is what the generator says, allowed traffic passes, denied traffic is dropped, and `down`
leaves nothing behind: no namespace, interface, daemon or file."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.lab.build import lab_down, lab_up
from nodetrace.lab.ovs import OvsInstance
from nodetrace.lab.resources import netns_exists
from nodetrace.lab.run import run
from nodetrace.lab.send import tcp_connect, udp_exchange
from nodetrace.lab.state import LabInfo
from nodetrace.neutron.generate import BRIDGES, generate_node
from nodetrace.neutron.scenario import Scenario, parse_scenario
from tests.conftest import unique
from tests.lab.residue import processes_and_folder_left

SCENARIO = """
[[nodes]]
name = "cmp1"
[[nodes]]
name = "cmp2"

[[networks]]
name = "tenant"
type = "{tunnel}"
segmentation_id = 1037
cidr = "10.20.0.0/24"

[[security_groups]]
name = "web"
rules = [
  {{ direction = "ingress", protocol = "tcp", port = 22 }},
  {{ direction = "ingress", protocol = "icmp" }},
  {{ direction = "egress" }},
]

[[security_groups]]
name = "db"
rules = [
  {{ direction = "ingress", protocol = "tcp", port = 5432, remote_group = "web" }},
  {{ direction = "ingress", protocol = "udp", port = 53 }},
  {{ direction = "egress" }},
]

[[ports]]
name = "web1"
node = "cmp1"
network = "tenant"
security_groups = ["web"]
[[ports]]
name = "web2"
node = "cmp2"
network = "tenant"
security_groups = ["web"]
[[ports]]
name = "db1"
node = "cmp1"
network = "tenant"
security_groups = ["db"]
[[ports]]
name = "db2"
node = "cmp2"
network = "tenant"
security_groups = ["db"]
[[ports]]
name = "open1"
node = "cmp1"
network = "tenant"
port_security = false
"""


class Vm:
    def __init__(self, info: LabInfo, name: str) -> None:
        vm = info.vm(name)
        self.netns = vm.netns
        self.ifname = "eth0"
        self.ip = vm.ips[0].split("/")[0]


def _lines(text: str) -> list[str]:
    return [
        re.sub(r"\[\d+:\d+\]", "[0:0]", line)
        for line in text.splitlines()
        if not line.startswith("#")
    ]


def _tables(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in _lines(text):
        if line.startswith("*"):
            current = line
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def _flows(text: str) -> list[str]:
    """Flow lines without counters; flows learned at run time (table 10's ``learn``, with a
    hard_timeout) are state, not configuration: VMs with IPv6 send router solicitations as
    soon as they are up, and each one teaches br-tun a MAC."""
    return sorted(
        re.sub(r" (duration|n_packets|n_bytes|idle_age)=[^,]*,", "", line)
        for line in text.splitlines()
        if "cookie=" in line and "hard_timeout=" not in line
    )


def check_generated_state_is_loaded(scenario: Scenario, info: LabInfo) -> None:
    """The kernel's and OVS's own dumps equal the generator's text (before any traffic)."""
    for node in info.nodes:
        state = generate_node(scenario, node.name)
        for tool, text in (
            ("iptables", state.firewall.iptables_save),
            ("ip6tables", state.firewall.ip6tables_save),
        ):
            real = run([f"{tool}-{info.backend}-save"], netns=node.netns).stdout
            assert _tables(real) == _tables(text), f"{node.name} {tool}-{info.backend}"
        real_sets = run(["ipset", "save"], netns=node.netns).stdout
        for ipset in state.firewall.ipsets:
            members = sorted(
                line.split()[2]
                for line in real_sets.splitlines()
                if line.startswith(f"add {ipset.name} ")
            )
            assert members == sorted(ipset.members)
        ovs = OvsInstance(node.netns, Path(node.ovs_rundir))
        for bridge in BRIDGES:
            for of13 in (False, True):
                real = ovs.ofctl(*(["-O", "OpenFlow13"] if of13 else []), "dump-flows", bridge)
                assert _flows(real) == _flows(state.dump_flows_text(bridge, openflow13=of13)), (
                    f"{node.name} {bridge} {'OF1.3' if of13 else 'OF1.0'}"
                )


def check_security_groups_decide(info: LabInfo) -> None:
    web1, web2, db1, db2, open1 = (Vm(info, n) for n in ("web1", "web2", "db1", "db2", "open1"))
    # allowed: same node and across the tunnel
    assert tcp_connect(db1, web1, web1.ip, 22)
    assert tcp_connect(db2, web1, web1.ip, 22)
    assert tcp_connect(web1, db2, db2.ip, 5432)  # remote group: web members only
    assert tcp_connect(web2, db1, db1.ip, 5432)
    assert udp_exchange(open1, db2, db2.ip, 53)
    assert tcp_connect(web1, open1, open1.ip, 9999)  # no port security: anything goes in
    # denied
    assert not tcp_connect(web1, web2, web2.ip, 80, timeout=0.5)
    assert not tcp_connect(db1, db2, db2.ip, 5432, timeout=0.5)  # db is not in web
    assert not tcp_connect(open1, db1, db1.ip, 5432, timeout=0.5)
    assert not udp_exchange(db1, web2, web2.ip, 53, timeout=0.5)


def check_cli(info: LabInfo, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`lab status`, `lab exec` and `lab send` as a user runs them, on a lab that is up."""
    base = ["lab"]
    opts = ["--name", info.name, "--root", str(root)]
    capsys.readouterr()
    assert main([*base, "status", *opts, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)[0]
    assert status["status"] == "ready"
    assert all(ns["present"] for ns in status["namespaces"])
    assert len(status["daemons"]) == 4 and all(d["running"] for d in status["daemons"])
    assert main([*base, "exec", *opts, "web1", "--", "true"]) == 0
    assert main([*base, "exec", *opts, "web1", "--", "false"]) == 1

    def send(*args: str) -> dict[str, object]:
        assert main([*base, "send", *opts, "--json", *args]) == 0
        return dict(json.loads(capsys.readouterr().out))

    ok = send("--from", "web1", "--to", "db2", "--packet", "tcp,tp_dst=5432,tcp_flags=+syn")
    assert ok["arrived"] == ["db2"]
    assert ok["trace_format"] == "xtables" and ok["trace"]["cmp2"]  # type: ignore[index]
    assert "Datapath actions:" in ok["ofproto"]["cmp1"]  # type: ignore[index]
    denied = send("--from", "db1", "--to", "db2", "--packet", "tcp,tp_dst=5432,tcp_flags=+syn")
    assert denied["arrived"] == []
    last = [x for x in denied["trace"]["cmp2"] if " TRACE: " in x][-1]  # type: ignore[index]
    assert "sg-fallback" in last and last.split()[3].endswith(":DROP")
    remote = send("--from", "underlay", "--to", "web1", "--packet", "icmp,nw_src=10.20.0.99")
    assert remote["arrived"] == ["web1"]


def lab_residue(info: LabInfo, root: Path, before_links: set[str]) -> list[str]:
    """Everything of the lab that still exists: namespaces, root-namespace interfaces,
    processes started from its folder, and the folder itself."""
    left = [
        f"netns {ns}"
        for ns in [
            info.underlay_netns,
            *(n.netns for n in info.nodes),
            *(v.netns for v in info.vms),
        ]
        if netns_exists(ns)
    ]
    ours = re.compile(
        r"^(tap|qbr|qvb|qvo)[0-9a-f]{8}-|^(und0|u\d+|br-int|br-tun|br-phys|ovs-netdev)$"
    )
    left += [f"interface {name}" for name in _root_links() - before_links if ours.match(name)]
    return left + processes_and_folder_left(root / info.name)


def _root_links() -> set[str]:
    out = run(["ip", "-o", "link", "show"]).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line}


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "labs"


@pytest.mark.lab
def test_two_labs_side_by_side_enforce_security_groups_and_leave_nothing(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _root_links()
    labs: list[tuple[Scenario, LabInfo]] = []
    try:
        for tunnel, backend in (("vxlan", "nft"), ("gre", "legacy")):
            text = SCENARIO.format(tunnel=tunnel)
            scenario = parse_scenario(text, source=f"{tunnel}.toml")
            info = lab_up(scenario, text, name=unique("lt"), backend=backend, root=root)
            assert len(info.vms) == 5 and len(info.nodes) == 2
            labs.append((scenario, info))
        for scenario, info in labs:
            check_generated_state_is_loaded(scenario, info)
        for _, info in labs:
            check_security_groups_decide(info)
        check_cli(labs[0][1], root, capsys)
    finally:
        results = [lab_down(info.name, root=root) for _, info in labs]
    for result in results:
        assert result.removed and not result.problems
    for _, info in labs:
        assert lab_residue(info, root, before) == []


EXAMPLES = Path(__file__).parents[2] / "src" / "nodetrace" / "examples" / "scenarios"


@pytest.mark.lab
def test_shipped_mixed_example_runs_gre_vlan_and_ipv6(root: Path) -> None:
    """The example with a GRE and a provider VLAN network, IPv6 and address pairs: loaded state
    equals the generator's, and the groups decide over both networks and both IP versions."""
    before = _root_links()
    path = EXAMPLES / "mixed-networks.toml"
    text = path.read_text()
    scenario = parse_scenario(text, source=str(path))
    info = lab_up(scenario, text, name=unique("lm"), backend="legacy", root=root)
    try:
        check_generated_state_is_loaded(scenario, info)
        app1, app2, edge1, edge2 = (Vm(info, n) for n in ("app1", "app2", "edge1", "edge2"))
        assert tcp_connect(app1, app2, app2.ip, 8080)  # GRE, port range
        # IPv6: ICMPv6 is allowed, the port range rule is IPv4 only
        assert (
            run(
                ["ping", "-6", "-c1", "-W1", "fd00:5::11"], netns=app2.netns, check=False
            ).returncode
            == 0
        )
        assert not tcp_connect(app2, app1, "fd00:5::11", 8000, timeout=0.5)
        assert tcp_connect(edge1, edge2, edge2.ip, 443)  # provider VLAN
        assert not udp_exchange(edge1, edge2, edge2.ip, 53, timeout=0.5)  # edge: only 443 out
        assert udp_exchange(edge2, edge1, edge1.ip, 53)
    finally:
        result = lab_down(info.name, root=root)
    assert result.removed and not result.problems
    assert lab_residue(info, root, before) == []
