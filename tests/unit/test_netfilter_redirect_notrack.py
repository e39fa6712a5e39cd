"""REDIRECT and ``-j CT --notrack`` on the rulesets of a real DVR node's namespaces
(tests/realworld/hotsos-focal-ussuri-dvr-2021-partial, canonical/hotsos @ 7e5a36b9; see
tests/realworld/SOURCES.md): the qrouter's metadata REDIRECT (iptables-save line 28) and the fip
namespace's raw ``-j CT --notrack`` (iptables-save line 9)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network

from nodetrace.engine.netfilter import NetfilterEngine, NodeFacts
from nodetrace.engine.walk import FromHost, FromInterface, WalkRequest, walk
from nodetrace.engine.walk_adapters import engines_for
from nodetrace.model.netfilter import HookDevices
from nodetrace.model.packet import Family, Packet, TcpFlag
from nodetrace.model.snapshot import NamespaceState, Snapshot, SourceKind
from nodetrace.model.topology import Address, Interface, LinkKind, Route, RouteType, Topology
from nodetrace.model.trace import Hook, NetfilterStep, Outcome
from nodetrace.model.verdict import Verdict
from nodetrace.parsers.iptables_save import parse_iptables_save
from tests.conftest import DATA

NET = DATA.parent / "realworld/hotsos-focal-ussuri-dvr-2021-partial/sos_commands/networking"
QROUTER = NET / "ip_netns_exec_qrouter-1e086be2-93c2-4740-921d-3e3237f23959_iptables-save"
FIP = NET / "ip_netns_exec_fip-7553f34c-b718-4a4b-8bbd-2d7a1cd5cf62_iptables-save"
QR = "qr-aa623763-fd"


def _metadata_syn() -> Packet:
    return Packet(dl_src="fa:16:3e:0e:72:db", dl_dst="fa:16:3e:4f:73:da",
                  nw_src=IPv4Address("192.168.21.8"), nw_dst=IPv4Address("169.254.169.254"),
                  nw_proto=6, tp_src=40000, tp_dst=80, tcp_flags=TcpFlag.SYN)  # fmt: skip


def _qrouter(addresses: tuple[IPv4Address | IPv6Address, ...]) -> NetfilterEngine:
    ruleset = parse_iptables_save(QROUTER.read_text(), source=str(QROUTER))
    return NetfilterEngine(ruleset, facts=NodeFacts(local_addresses={QR: addresses}))


def test_redirect_sends_the_packet_to_the_in_devices_address_and_the_given_port() -> None:
    """nf_nat_redirect_ipv4: the primary address of the device it came in on, port 9697."""
    engine = _qrouter((IPv4Address("192.168.21.1"), IPv4Address("192.168.21.100")))
    result = engine.run(_metadata_syn(), ((Hook.PREROUTING, HookDevices(in_dev=QR)),))
    assert result.verdict is Verdict.ACCEPT
    assert (result.packet.nw_dst, result.packet.tp_dst) == (IPv4Address("192.168.21.1"), 9697)
    assert result.packet.nw_src == IPv4Address("192.168.21.8")
    redirect = [
        s
        for s in result.trace.steps
        if isinstance(s, NetfilterStep) and s.rule_text and "REDIRECT" in s.rule_text
    ]
    assert [(s.table, s.chain, s.number) for s in redirect] == [
        ("nat", "neutron-l3-agent-PREROUTING", 1)
    ]
    assert any("the first one listed, 192.168.21.1" in a for a in result.trace.assumptions)


def test_redirect_on_a_device_without_an_ipv4_address_drops() -> None:
    engine = _qrouter((IPv6Address("fe80::f816:3eff:fe4f:73da"),))
    result = engine.run(_metadata_syn(), ((Hook.PREROUTING, HookDevices(in_dev=QR)),))
    assert result.verdict is Verdict.DROP
    assert result.trace.reason == (
        "dropped by rule 1 of nat neutron-l3-agent-PREROUTING (PREROUTING): "
        f"REDIRECT: {QR} has no IPv4 address, the kernel drops"
    )


def test_redirect_without_the_devices_addresses_is_unknown() -> None:
    ruleset = parse_iptables_save(QROUTER.read_text(), source=str(QROUTER))
    result = NetfilterEngine(ruleset, facts=NodeFacts(local_addresses={})).run(
        _metadata_syn(), ((Hook.PREROUTING, HookDevices(in_dev=QR)),)
    )
    assert result.verdict is Verdict.UNKNOWN
    assert "`ip address show`" in result.trace.reason


def test_notrack_makes_the_packet_untracked_not_invalid() -> None:
    ruleset = parse_iptables_save(FIP.read_text(), source=str(FIP))
    packet = Packet(nw_src=IPv4Address("10.100.0.2"), nw_dst=IPv4Address("10.100.0.242"),
                    nw_proto=6, tp_src=40000, tp_dst=22, tcp_flags=TcpFlag.SYN)  # fmt: skip
    result = NetfilterEngine(ruleset).run(
        packet, ((Hook.PREROUTING, HookDevices(in_dev="fg-7450b342-b1")),)
    )
    assert result.ct_state == "UNTRACKED"
    said = " ".join(result.trace.assumptions)
    assert "raw neutron-l3-agent-PREROUTING rule 1 (`-j CT --notrack`) meets is UNTRACKED" in said
    assert "every state is INVALID" not in said


NAT_OUTPUT_REDIRECT = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A OUTPUT -d 203.0.113.7/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128
COMMIT
"""


def test_a_packet_the_host_redirects_in_output_is_routed_again_to_itself() -> None:
    """nf_nat_redirect_ipv4 on LOCAL_OUT takes 127.0.0.1; ip_route_me_harder routes the
    packet again, now to the loopback, and it is delivered to the local proxy's port."""
    topology = Topology(
        (
            Interface(
                "lo",
                ifindex=1,
                kind=LinkKind.LOOPBACK,
                addresses=(Address(ip_interface("127.0.0.1/8"), scope="host"),),
            ),
            Interface(
                "eth0",
                ifindex=2,
                mac="02:00:00:00:00:02",
                addresses=(Address(ip_interface("192.0.2.10/24")),),
            ),
        ),
        routes=(
            Route(
                Family.IPV4, ip_network("0.0.0.0/0"), gateway=IPv4Address("192.0.2.1"), dev="eth0"
            ),
            Route(Family.IPV4, ip_network("192.0.2.0/24"), dev="eth0", scope="link"),
            Route(
                Family.IPV4,
                ip_network("127.0.0.0/8"),
                table="local",
                type=RouteType.LOCAL,
                dev="lo",
                scope="host",
            ),
            Route(
                Family.IPV4,
                ip_network("192.0.2.10/32"),
                table="local",
                type=RouteType.LOCAL,
                dev="eth0",
                scope="host",
            ),
        ),
    )
    ruleset = parse_iptables_save(NAT_OUTPUT_REDIRECT, source="nat")
    snap = Snapshot("hand-made", SourceKind.FOLDER, topology=topology,
                    namespaces=(NamespaceState(iptables=ruleset),))  # fmt: skip
    packet = Packet(nw_dst=IPv4Address("203.0.113.7"), nw_proto=6, tp_src=40000, tp_dst=80,
                    tcp_flags=TcpFlag.SYN)  # fmt: skip
    trace = walk(snap, WalkRequest(packet, FromHost()), engines_for(snap))
    assert trace.outcome is Outcome.DELIVERED
    assert trace.reason.startswith("delivered to the host's TCP port 3128 (socket)")
    routes = [getattr(s, "detail", "") for s in trace.steps]
    assert any(d.startswith("nat OUTPUT sent it to 127.0.0.1: ") for d in routes)


NAT_PREROUTING_REDIRECT = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128
COMMIT
"""


def test_namespaces_sharing_one_ruleset_redirect_to_their_own_addresses() -> None:
    """One parsed ruleset may serve two namespaces; REDIRECT still takes the address of the
    receiving namespace's own device, and each namespace keeps its own conntrack table."""
    ruleset = parse_iptables_save(NAT_PREROUTING_REDIRECT, source="nat")
    ifaces, routes = [], []
    for netns, addr in (("ns-a", "192.0.2.10"), ("ns-b", "198.51.100.10")):
        ifaces.append(
            Interface(
                "eth0", netns, ifindex=2, mac="02:00:00:00:00:02",
                addresses=(Address(ip_interface(f"{addr}/24")),),
            )
        )  # fmt: skip
        routes.append(
            Route(Family.IPV4, ip_network(f"{addr}/32"), table="local", type=RouteType.LOCAL,
                  dev="eth0", scope="host", netns=netns)
        )  # fmt: skip
    snap = Snapshot(
        "hand-made", SourceKind.FOLDER, topology=Topology(tuple(ifaces), routes=tuple(routes)),
        namespaces=(NamespaceState("ns-a", iptables=ruleset),
                    NamespaceState("ns-b", iptables=ruleset)),
    )  # fmt: skip
    engines = engines_for(snap)
    for netns, addr in (("ns-a", "192.0.2.10"), ("ns-b", "198.51.100.10")):
        packet = Packet(dl_dst="02:00:00:00:00:02", nw_src=IPv4Address("203.0.113.5"),
                        nw_dst=IPv4Address("203.0.113.80"), nw_proto=6, tp_src=40000,
                        tp_dst=80, tcp_flags=TcpFlag.SYN)  # fmt: skip
        trace = walk(snap, WalkRequest(packet, FromInterface("eth0", netns)), engines)
        assert trace.outcome is Outcome.DELIVERED, trace.reason
        routed = [getattr(s, "detail", "") for s in trace.steps]
        assert any(d.startswith(f"{addr} is local") for d in routed), routed
