"""The DevStack lab's controller at the moment it hosted router1 (January 2022): the router
namespace's addresses, a cut `iptables-save` of it, and complete br-int/br-ex dumps naming
ports, without `ovs-vsctl show` (see devstack-2022-hybrid-router-controller/README.md).
Expected values were read by hand from the files; the comment beside each names the file and
line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "devstack-2022-hybrid-router-controller"
ROUTER = "qrouter-50711ca1-1e58-44dc-bd95-a87250d5b4ae"
IP_A = f"ip netns exec {ROUTER} ip a"
SAVE = f"ip netns exec {ROUTER} iptables-save"


def test_the_router_ports(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    ports = {p["port_id"]: p for p in doc["ports"]}
    assert set(ports) == {"2ff5e542-74", "7297041d-55", "abce46ac-61"}  # ip a:3, 9, 15
    assert {p["namespace"] for p in ports.values()} == {ROUTER}
    assert ports["2ff5e542-74"]["kind"] == "router_interface"
    assert ports["2ff5e542-74"]["mac"] == "fa:16:3e:fc:a9:f5"  # ip a:4
    assert "fdba:b3c4:c275::1" in ports["2ff5e542-74"]["ips"]  # ip a:5
    assert ports["7297041d-55"]["kind"] == "router_interface"
    assert "10.0.0.1" in ports["7297041d-55"]["ips"]  # ip a:11
    gateway = ports["abce46ac-61"]
    assert gateway["kind"] == "router_gateway"
    assert gateway["mac"] == "fa:16:3e:0b:68:73"  # ip a:16
    # ip a:17, :19 (the floating IP, /32), :21
    assert {"10.10.0.240", "10.10.0.151", "2001:db8::2c0"} <= set(gateway["ips"])


def test_the_cut_ruleset_is_read_and_its_gaps_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = run_json(capsys, "show", str(NODE))
    said = "\n".join(doc["diagnostics"])
    assert f"{SAVE}:4" in said  # the author's "..." inside *nat
    assert "COMMIT" in said  # *nat (line 3) never committed
    assert f"{IP_A}:2" in said  # "..." where lo was
    namespaces = {n["name"]: n for n in doc["namespaces"]}
    assert namespaces[ROUTER]["iptables_rules"] == 2  # iptables-save:5-6, the two DNAT rules


def test_the_flows_are_counted_per_bridge(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "show", str(NODE))
    flows = {b["name"]: b["flows"] for b in doc["ovs_bridges"]}
    assert flows == {"br-int": 10, "br-ex": 3}  # dump-flows br-int:2-11, br-ex:2-4


def test_a_ping_to_the_floating_ip_is_not_decided_on_a_cut_ruleset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """PREROUTING of the namespace is cut ("..." in *nat) and its routes are not published:
    whether 10.10.0.151 is DNATed to vm1 and where it goes cannot be known."""
    packet = (
        "icmp,dl_dst=fa:16:3e:0b:68:73,nw_src=8.8.8.8,nw_dst=10.10.0.151,icmp_type=8,icmp_code=0"
    )
    doc = run_json(
        capsys, "trace", str(NODE), "--from", "qg-abce46ac-61", "--netns", ROUTER,
        "--packet", packet,
    )  # fmt: skip
    assert doc["outcome"] == "unknown"


def test_br_ex_drops_what_br_int_sends_on_another_vlan(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """phy-br-ex is known by the name the flows print (OVS >= 2.8), as ofproto/trace knows it."""
    packet = "dl_vlan=3,arp,dl_dst=ff:ff:ff:ff:ff:ff,arp_op=1,arp_tpa=10.10.0.1"
    doc = run_json(
        capsys, "openflow", str(NODE), "--bridge", "br-ex", "--in-port", "phy-br-ex",
        "--packet", packet,
    )  # fmt: skip
    trace = doc["traces"][0]
    assert trace["outcome"] == "dropped"
    steps = [s for s in trace["steps"] if s["type"] == "openflow"]
    # dump-flows br-ex:2 wants dl_vlan=2; :3 priority=2,in_port="phy-br-ex" actions=drop
    assert (steps[-1]["table"], steps[-1]["priority"]) == (0, 2)
    assert steps[-1]["source"]["first_line"] == 3
