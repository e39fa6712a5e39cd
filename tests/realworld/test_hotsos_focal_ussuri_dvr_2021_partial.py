"""compute4 in August 2021 (neutron 16.4.0, Ussuri, Juju charms, DVR dvr_snat): an earlier
capture of the same host as hotsos-focal-ussuri-dvr-ovsfw, with other routers, a DHCP namespace
and two VMs, but a partial one: the sosreport holds no ``ovs-vsctl show``, no OpenFlow dump and
no host ruleset, only ``ovs-appctl dpctl/show``. Everything that needs Open vSwitch must end
*unknown*, naming what is missing; the namespaces' iptables-save files decide the rest.

The hotsos developers appended three interfaces of their earlier fixture (another node) to
``networking/ip_-d_address`` (bond1, br-bond1 and a second ifindex 13, ``bond1.4003@bond1``);
they are kept as found, and no test below rests on them.

Every expected value was read by hand from the dataset's files; the comment beside it names the
file (under ``sos_commands/networking/``, ``ip_netns_exec_NS_`` shortened to ``NS:``) and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.realworld.cli import run_json

NODE = Path(__file__).parent / "hotsos-focal-ussuri-dvr-2021-partial"
QROUTER = "qrouter-1e086be2-93c2-4740-921d-3e3237f23959"  # ip_netns line 2
SNAT = "snat-1e086be2-93c2-4740-921d-3e3237f23959"  # ip_netns line 3
FIP = "fip-7553f34c-b718-4a4b-8bbd-2d7a1cd5cf62"  # ip_netns line 1
QDHCP = "qdhcp-cacd8542-5940-473d-aff9-15c85ca4b40b"  # ip_netns line 4


def _show(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return run_json(capsys, "show", str(NODE))


def _trace(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    return run_json(capsys, "trace", str(NODE), *argv)


def _port_with(doc: dict[str, Any], device: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in doc["ports"] if device in p["devices"]]
    assert len(found) == 1, [(p["port_id"], p["devices"]) for p in doc["ports"]]
    return found[0]


def _rules(doc: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    """(table, chain, number) of every rule a trace matched (not returns or policies)."""
    return [
        (s["table"], s["chain"], s["number"])
        for s in doc["steps"]
        if s["type"] == "netfilter" and s["kind"] == "rule"
    ]


def test_node_identity(capsys: pytest.CaptureFixture[str]) -> None:
    node = _show(capsys)["node"]
    assert node["hostname"] == "compute4"  # ../host/hostname line 1
    assert node["kernel"] == "5.4.0-80-generic"  # ../kernel/uname_-a line 1


def test_missing_open_vswitch_data_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _show(capsys)
    # ../openvswitch holds only ovs-vsctl_-t_5_list-br and ovs-appctl_dpctl.show_-s_system_...
    what = " ".join(m["what"] for m in doc["missing"])
    assert "ovs-vsctl" in what
    assert "dump-flows" in what


def test_vm_taps_without_ovsdb(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _show(capsys)
    # ip_-d_address lines 84-94: two "tun type tap" devices with "master ovs-system"
    # (openvswitch_slave); ovs-appctl_dpctl.show: "port 13: tap1d798b14-c4", "port 14: ..."
    vms = sorted(p["port_id"] for p in doc["ports"] if p["kind"] == "vm")
    assert vms == ["1d798b14-c4", "4d42159a-4c"]  # no iface-id: the device-name prefix
    port = _port_with(doc, "tap1d798b14-c4")
    assert port["devices"] == ["tap1d798b14-c4"]
    assert port["namespace"] is None
    # No OVSDB and no flows: no tag, ofport, zone or firewall driver is a fact of this node
    # (dpctl/show's "port 13" is a datapath port number, not an OpenFlow port).
    assert (port["tag"], port["ofport"], port["zone"], port["firewall"]) == (None, None, None, None)
    assert port["chains"] == []
    # The host side is fe:16:3e:0e:72:db (ip_-d_address line 85); the qrouter's neighbour
    # fa:16:3e:0e:72:db for 192.168.21.8 (QROUTER:ip_-s_-s_neigh_show line 7) is the only hint.
    assert port["mac"] in (None, "fa:16:3e:0e:72:db")
    if port["mac"] is not None:
        assert port["sources"]["mac"]


def test_namespace_ports_are_classified(capsys: pytest.CaptureFixture[str]) -> None:
    doc = _show(capsys)
    dhcp = _port_with(doc, "tapc84fa526-7a")
    assert dhcp["kind"] == "dhcp"  # an OVS internal tap (dpctl.show port 4) inside a qdhcp-
    assert dhcp["namespace"] == QDHCP  # QDHCP:ip_address_show lines 7-11
    assert dhcp["mac"] == "fa:16:3e:3e:d4:f1"  # line 8
    assert {"192.168.21.2", "169.254.169.254"} <= set(dhcp["ips"])  # lines 9 and 11
    assert dhcp["tag"] is None  # no ovs-vsctl show

    expected = {
        # device: (kind, namespace, IPv4 addresses) from each namespace's ip_address_show
        "qr-aa623763-fd": ("router_interface", QROUTER, {"192.168.21.1"}),  # lines 13-15
        "sg-6df85cb0-c0": ("dvr_snat", SNAT, {"192.168.21.180"}),  # SNAT lines 15-17
        "qg-89181899-70": ("router_gateway", SNAT, {"10.100.0.243"}),  # SNAT lines 21-23
        "ha-a42d8bdd-55": ("ha", SNAT, {"169.254.194.37", "169.254.0.100"}),  # SNAT 7-11
        "fg-7450b342-b1": ("fip_gateway", FIP, {"10.100.0.250"}),  # FIP lines 13-15
        "rfp-1e086be2-9": ("router_link", QROUTER, {"169.254.88.134"}),  # QROUTER 7-9
        "fpr-1e086be2-9": ("router_link", FIP, {"169.254.88.135"}),  # FIP lines 7-9
    }
    for device, (kind, namespace, ips) in expected.items():
        port = _port_with(doc, device)
        v4 = {ip for ip in port["ips"] if ":" not in ip}
        assert port["kind"] == kind, device
        if kind == "router_link":  # one record may hold both ends of the veth pair
            assert ips <= v4, device
        else:
            assert (port["namespace"], v4) == (namespace, ips), device


def test_namespaces_and_their_interfaces(capsys: pytest.CaptureFixture[str]) -> None:
    spaces = {n["name"]: set(n["interfaces"]) - {"lo"} for n in _show(capsys)["namespaces"]}
    assert spaces == {
        QROUTER: {"rfp-1e086be2-9", "qr-aa623763-fd"},
        SNAT: {"ha-a42d8bdd-55", "sg-6df85cb0-c0", "qg-89181899-70"},
        FIP: {"fpr-1e086be2-9", "fg-7450b342-b1"},
        QDHCP: {"tapc84fa526-7a"},
    }


def test_router_drops_the_metadata_proxy_port_from_a_vm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A VM's SYN to the router's own 9697: QROUTER:iptables-save line 87,
    "-A neutron-l3-agent-INPUT -p tcp -m tcp --dport 9697 -j DROP" (rule 2 of the chain; rule 1,
    line 86, accepts only mark 0x1). No MAC is given: the frame arriving on qr- is addressed to
    qr-'s own fa:16:3e:4f:73:da (QROUTER:ip_address_show line 14), which the node tells."""
    doc = _trace(
        capsys,
        "--from",
        "qr-aa623763-fd",
        "--netns",
        QROUTER,
        "--packet",
        "tcp,nw_src=192.168.21.8,nw_dst=192.168.21.1,tp_src=40000,tp_dst=9697,tcp_flags=+syn",
    )
    assert doc["outcome"] == "dropped"
    verdict = doc["steps"][doc["verdict_step"]]
    assert (verdict["type"], verdict["table"], verdict["chain"], verdict["number"]) == (
        "netfilter",
        "filter",
        "neutron-l3-agent-INPUT",
        2,
    )


def test_metadata_request_is_redirected_to_the_local_proxy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """169.254.169.254:80 from a VM: mangle marks it 0x1 (QROUTER:iptables-save line 62), nat
    REDIRECTs it to port 9697 (line 28, rule 1 of nat neutron-l3-agent-PREROUTING), and the
    INPUT chain accepts the mark (line 86, rule 1 of neutron-l3-agent-INPUT)."""
    doc = _trace(
        capsys,
        "--from",
        "qr-aa623763-fd",
        "--netns",
        QROUTER,
        "--packet",
        "tcp,dl_src=fa:16:3e:0e:72:db,dl_dst=fa:16:3e:4f:73:da,nw_src=192.168.21.8,"
        "nw_dst=169.254.169.254,tp_src=40000,tp_dst=80,tcp_flags=+syn",
    )
    assert doc["outcome"] == "delivered"
    rules = _rules(doc)
    assert ("mangle", "neutron-l3-agent-PREROUTING", 5) in rules  # line 62, the 0x1 mark
    assert ("nat", "neutron-l3-agent-PREROUTING", 1) in rules  # line 28, REDIRECT 9697
    assert ("filter", "neutron-l3-agent-INPUT", 1) in rules  # line 86, the deciding ACCEPT
    assert ("filter", "neutron-l3-agent-INPUT", 2) not in rules  # line 87 never reached


def test_vm_to_the_internet_is_snatted_to_its_floating_ip_then_unknown_at_ovs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """192.168.21.8 -> 8.8.8.8: rule "from 192.168.21.8 lookup 16" (QROUTER:ip_rule_list line 5),
    table 16 "default via 169.254.88.135 dev rfp-1e086be2-9" (QROUTER:ip_route_show_table_all
    line 2), float-snat "-s 192.168.21.8/32 -j SNAT --to-source 10.100.0.242" (QROUTER:
    iptables-save line 31, rule 1), the veth into the fip namespace (FIP:ip_address_show line 8:
    link-netns QROUTER), "iif fpr-1e086be2-9 lookup 2852018311" (FIP:ip_rule_list line 4),
    "default via 10.100.0.1 dev fg-7450b342-b1" (FIP:ip_route_show_table_all line 1). fg- is an
    OVS internal port (dpctl.show "port 9: fg-7450b342-b1 (internal)") whose bridge and flows
    the sosreport does not hold."""
    doc = _trace(
        capsys,
        "--from",
        "qr-aa623763-fd",
        "--netns",
        QROUTER,
        "--packet",
        "tcp,dl_src=fa:16:3e:0e:72:db,dl_dst=fa:16:3e:4f:73:da,nw_src=192.168.21.8,"
        "nw_dst=8.8.8.8,tp_src=40000,tp_dst=443,tcp_flags=+syn",
    )
    assert ("nat", "neutron-l3-agent-float-snat", 1) in _rules(doc)
    assert any(s["type"] == "device" and s["device"] == "fg-7450b342-b1" for s in doc["steps"]), (
        "the walk did not follow the rfp/fpr veth into the fip namespace"
    )
    assert doc["outcome"] == "unknown"
    assert "ovs" in doc["reason"]
