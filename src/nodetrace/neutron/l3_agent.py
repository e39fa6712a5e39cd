"""What Neutron's L3 agent (legacy, centralised routers) puts on the node a router runs on.

For each router of the scenario on a node: the ``qrouter-<uuid>`` namespace with its ``qr-``
ports (one per internal network, OVS internal ports on br-int tagged with the network's local
VLAN) and its ``qg-`` gateway port (on br-int, tagged with the external network's local VLAN,
which the OVS agent patches to the provider bridge br-ex), their addresses (the floating IPs as
/32s on ``qg-``), the default route via the external subnet's gateway, the namespace's sysctls,
and the IPv4 iptables the agent writes there. Facts are from Neutron's own source (master,
2026); each family of rules names the function it follows:

- chain skeleton: ``neutron/agent/linux/iptables_manager.py`` ``IptablesManager.__init__``,
  ``initialize_mangle_table``, ``initialize_nat_table`` (wrapped built-in chains,
  ``neutron-filter-top``/``local``, the ``mark`` chain, ``neutron-postrouting-bottom`` with its
  ``snat`` and ``float-snat`` chains, the comment of ``iptables_comments.SNAT_OUT``); rules are
  kept per chain in the order they were added, duplicates dropped, as ``_modify_rules`` does;
- address scopes: ``neutron/agent/l3/router_info.py`` ``_initialize_address_scope_iptables``
  and ``_add_address_scope_mark`` (every port in the default "noscope" scope, mark id 1024,
  so ``0x4000000/0xffff0000``; the filter ``scope`` chain is emptied and refilled there, which
  removes the metadata DROP ``initialize_metadata_iptables`` put in it first);
- metadata: ``initialize_metadata_iptables`` (the mangle mark ``0x1/0xffff`` on
  169.254.169.254:80 from ``qr-+``) and ``neutron/agent/metadata/driver.py``
  ``metadata_filter_rules``/``metadata_nat_rules`` (INPUT accept on the mark, DROP to 9697, the
  REDIRECT to 9697), applied on the router's AFTER_CREATE event, so after the rules of
  ``RouterInfo.process`` (``neutron/agent/l3/agent.py`` ``_process_added_router``);
- gateway and SNAT: ``_handle_router_snat_rules``, ``external_gateway_nat_snat_rules``,
  ``external_gateway_nat_fip_rules``, ``external_gateway_mangle_rules`` (mark ``0x2/0xffff`` on
  what enters ``qg-``) and ``process_external_port_address_scope_routing`` (CONNMARK save on
  ``qg-``); ``--random-fully`` because the iptables of today supports it
  (``IptablesManager.random_fully``, iptables >= 1.6.2 and ``use_random_fully`` = True);
- floating IPs: ``floating_forward_rules`` (DNAT in PREROUTING and OUTPUT, SNAT in
  ``float-snat``); ``process_floating_ip_address_scope_rules`` adds no mangle rule when the
  fixed and external addresses share a scope (no scopes at all, here);
- namespace sysctls: ``neutron/agent/l3/namespaces.py`` ``Namespace.create``;
- ports: ``neutron/agent/linux/interface.py`` ``OVSInterfaceDriver._ovs_add_port`` (internal
  port on br-int, ``iface-id``/``iface-status``/``attached-mac``); the OVS agent's
  ``provision_local_vlan`` for a VLAN network on a physical bridge (br-int table 0 rewrites
  the provider VLAN to the local one on what comes from ``int-br-ex``, br-ex table 0 the local
  VLAN to the provider one on what comes from ``phy-br-ex``).

Distributed routers (``nodetrace.neutron.dvr_router``) reuse the ports and the rules here with
``DvrLocalRouter``'s differences (see :func:`router_iptables`).

IPv6 (a legacy router's interfaces on networks with an ``ipv6_cidr``): the ``::1`` address of
each such subnet on its ``qr-`` port, ``net.ipv6.conf.all.forwarding=1`` (``Namespace.create``
with ``use_ipv6``), and the ip6tables of the same ``IptablesManager`` (see
:func:`router_ip6tables`). Neutron has no IPv6 NAT: the IPv6 ``nat`` table holds only the
metadata REDIRECT. Routers without an IPv6 port get no ip6tables here (the lab keeps IPv6 off in
their namespace).

Not generated: router advertisements (radvd), an IPv6 external gateway, IPv6 on distributed
routers, address scopes other than the default, static routes, HA routers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from nodetrace.neutron import naming as n
from nodetrace.neutron.ovs_agent import (
    BR_INT,
    LOCAL_SWITCHING,
    FlowList,
    LocalNetwork,
    OvsPort,
    into_local_vlan,
    out_of_local_vlan,
    uplink_tag,
)
from nodetrace.neutron.scenario import Network, Scenario
from nodetrace.neutron.scenario_routers import FloatingIp, Router, RouterInterface

L3_WRAP = "neutron-l3-agent"
"""``basename(argv[0])[:16]`` of ``neutron-l3-agent``: the prefix of its wrapped chains."""
NS_PREFIX = "qrouter-"
INTERNAL_PREFIX = "qr-"
EXTERNAL_PREFIX = "qg-"
BR_EX = "br-ex"
"""The provider bridge of the external network (``bridge_mappings = external:br-ex``)."""
INT_EX, PHY_EX = n.provider_patch_names(BR_EX)
EXTERNAL_NIC = "ext0"
"""br-ex's uplink. In the lab it is a cable to the namespace standing for the outside, an
access port of the provider VLAN (the lab's kernel has no VLAN devices to untag it)."""

METADATA_CIDR = "169.254.169.254/32"
METADATA_PORT = 9697
"""``[DEFAULT] metadata_port``: where the router's metadata proxy listens."""
METADATA_ACCESS_MARK = "0x1"
EXTERNAL_INGRESS_MARK = "0x2"
ROUTER_MARK_MASK = "0xffff"
SCOPE_MARK = f"{1024 << 16:#x}/0xffff0000"
"""The default address scope's mark: the first id of ``range(1024, 2048)`` in the top 16 bits."""
SNAT_OUT = "Perform source NAT on outgoing traffic."
RANDOM_FULLY = " --random-fully"

SYSCTLS = (
    "net.netfilter.nf_conntrack_tcp_be_liberal=1",
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.arp_ignore=1",
    "net.ipv4.conf.all.arp_announce=2",
)
"""``Namespace.create``; :data:`IPV6_FORWARDING` follows for a router with IPv6 ports."""
IPV6_FORWARDING = "net.ipv6.conf.all.forwarding=1"
"""``Namespace.create`` with ``use_ipv6`` (and ``configure_ipv6_forwarding(ns, 'all')``)."""
METADATA_V6_CIDR = "fe80::a9fe:a9fe/128"
"""``neutron_lib.constants.METADATA_V6_CIDR``."""

_BUILTINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}
"""Each table's built-in chains in the order ``iptables-save`` prints them."""
_WRAPPED_BUILTINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "OUTPUT", "FORWARD"),
}
"""The built-in chains the agent wraps (``_configure_builtin_chains``), in its order."""
_WRAPPED_BUILTINS6 = _WRAPPED_BUILTINS | {"nat": ("PREROUTING",)}
"""IPv6: ``IptablesManager.__init__`` and ``initialize_nat_table`` wrap only ``nat``
``PREROUTING`` (Neutron has no IPv6 NAT; the table serves the metadata REDIRECT)."""


def device_name(prefix: str, port_id: str) -> str:
    """``qr-``/``qg-`` plus the port UUID, cut to 14 characters as the agent cuts it."""
    return (prefix + port_id)[: n.DEVICE_NAME_LEN]


def namespace_name(router_id: str) -> str:
    return NS_PREFIX + router_id


@dataclass(frozen=True, slots=True)
class RouterPort:
    """A router's port on this node: its device, address and where it is plugged."""

    device: str
    interface: RouterInterface
    network: Network
    local_vlan: int
    ofport: int

    @property
    def cidr(self) -> str:
        return f"{self.interface.ip}/{self.interface.prefixlen}"

    @property
    def cidr6(self) -> str | None:
        """The port's IPv6 address/prefix, if its network has an IPv6 subnet."""
        if self.interface.ip6 is None:
            return None
        return f"{self.interface.ip6}/{self.interface.prefixlen6}"


@dataclass(frozen=True, slots=True)
class Neighbour:
    """``ip neigh replace IP lladdr MAC dev DEVICE nud permanent`` in the router's namespace."""

    device: str
    ip: IPv4Address
    mac: str


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """``ip rule add [from SRC] [iif DEV] table TABLE priority PRIORITY``."""

    priority: int
    table: int
    src: IPv4Address | None = None
    src_len: int = 32
    """The prefix length after ``src``; the agent keeps the host bits (``from 10.0.0.1/24``)."""
    iif: str | None = None


@dataclass(frozen=True, slots=True)
class StaticRoute:
    """``ip route add DST via VIA dev DEVICE [table TABLE]``; ``dst`` ``"default"`` or a cidr."""

    dst: str
    via: IPv4Address
    device: str
    table: int | None = None


@dataclass(frozen=True, slots=True)
class FipLink:
    """A distributed router's veth to its node's fip namespace: ``rfp-`` in the router,
    ``fpr-`` in the fip namespace, a /31 of link-local addresses, and a permanent ARP entry on
    each side for the other end (whose MAC the kernel picks when the veth is made)."""

    rfp: str
    fpr: str
    rfp_ip: IPv4Address
    fpr_ip: IPv4Address
    mtu: int
    fip_namespace: str


@dataclass(frozen=True, slots=True)
class RouterState:
    """One legacy router as the L3 agent sets it up."""

    router: Router
    namespace: str
    internal: tuple[RouterPort, ...]
    gateway: RouterPort | None
    iptables_save: str
    """The namespace's IPv4 ruleset, as ``iptables-save`` prints it (no counters)."""
    sysctls: tuple[str, ...] = SYSCTLS
    neighbours: tuple[Neighbour, ...] = ()
    """Permanent ARP entries the agent writes (distributed routers)."""
    host: str = ""
    """The node a distributed router's copy is on (the same namespace name exists on each)."""
    fip_link: FipLink | None = None
    rules: tuple[PolicyRule, ...] = ()
    routes: tuple[StaticRoute, ...] = ()
    """Routes beyond the connected ones and :attr:`default_route`."""
    ip6tables_save: str = ""
    """The namespace's IPv6 ruleset as ``ip6tables-save`` prints it; "" without IPv6 ports."""

    @property
    def ports(self) -> tuple[RouterPort, ...]:
        return self.internal + ((self.gateway,) if self.gateway is not None else ())

    @property
    def has_ipv6(self) -> bool:
        return any(p.cidr6 is not None for p in self.ports)

    @property
    def addresses6(self) -> tuple[tuple[str, str], ...]:
        """(device, address/prefix) of each port's IPv6 address."""
        return tuple((p.device, p.cidr6) for p in self.ports if p.cidr6 is not None)

    @property
    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(device, address/prefix): each port's address, then the floating IPs on ``qg-``."""
        out = [(p.device, p.cidr) for p in self.ports]
        if self.gateway is not None and not self.router.distributed:  # DVR: in fip- namespaces
            out += [(self.gateway.device, f"{f.address}/32") for f in self.router.floating_ips]
        return tuple(out)

    @property
    def default_route(self) -> tuple[IPv4Address, str] | None:
        """(next hop, device) of the default route: the upstream gateway through ``qg-``."""
        if self.gateway is None or self.router.upstream_gateway is None:
            return None
        return self.router.upstream_gateway, self.gateway.device


AddPort = Callable[..., OvsPort]
"""``generate_node``'s port allocator: ``add_port(bridge, name, *, type, tag, options,
external_ids)``, numbering ports per bridge in plugging order."""


def node_routers(
    scenario: Scenario,
    node: str,
    local_vlans: Mapping[str, int],
    add_port: AddPort,
    flows: FlowList,
) -> tuple[RouterState, ...]:
    """The routers on ``node``: their ports plugged through ``add_port``, and br-ex with the
    OVS agent's provider flows when one of them has a gateway."""
    routers = tuple(r for r in scenario.routers if r.node == node)
    external = sorted(
        {r.gateway.network for r in routers if r.gateway is not None},
        key=lambda net_id: local_vlans[net_id],
    )
    if external:
        plug_br_ex(scenario, [scenario.network(e) for e in external], local_vlans, add_port, flows)
    states = []
    for router in routers:

        def plug(iface: RouterInterface, prefix: str) -> RouterPort:
            return plug_router_port(scenario, iface, prefix, local_vlans, add_port)

        internal = tuple(plug(i, INTERNAL_PREFIX) for i in router.interfaces)
        gateway = plug(router.gateway, EXTERNAL_PREFIX) if router.gateway is not None else None
        rules = router_iptables(router, internal, gateway)
        state = RouterState(router, namespace_name(router.id), internal, gateway, rules)
        if state.has_ipv6:
            state = replace(
                state,
                sysctls=(*SYSCTLS, IPV6_FORWARDING),
                ip6tables_save=router_ip6tables(internal, gateway),
            )
        states.append(state)
    return tuple(states)


def plug_router_port(
    scenario: Scenario,
    iface: RouterInterface,
    prefix: str,
    local_vlans: Mapping[str, int],
    add_port: AddPort,
) -> RouterPort:
    """A router's ``qr-``/``qg-``/``sg-`` port on its network."""
    net = scenario.network(iface.network)
    name = device_name(prefix, iface.port_id)
    port = plug_internal_port(name, iface.mac, iface.port_id, local_vlans[net.id], add_port)
    return RouterPort(name, iface, net, local_vlans[net.id], port.ofport)


def plug_internal_port(device: str, mac: str, port_id: str, tag: int, add_port: AddPort) -> OvsPort:
    """``OVSInterfaceDriver._ovs_add_port``: an internal port on br-int, tagged with the
    network's local VLAN by the OVS agent."""
    return add_port(
        BR_INT,
        device,
        type="internal",
        tag=tag,
        external_ids=(("attached-mac", mac), ("iface-id", port_id), ("iface-status", "active")),
    )


def plug_br_ex(
    scenario: Scenario,
    networks: list[Network],
    local_vlans: Mapping[str, int],
    add_port: AddPort,
    flows: FlowList,
) -> None:
    """br-ex, its patch to br-int and uplink, and ``provision_local_vlan``'s flows (br_int.py
    and br_phys.py of the agent's native OpenFlow driver): the provider VLAN rewritten to the
    local one into br-int, and back on the way out of br-ex."""
    int_ex = add_port(BR_INT, INT_EX, type="patch", options=(("peer", PHY_EX),))
    phy_ex = add_port(BR_EX, PHY_EX, type="patch", options=(("peer", INT_EX),))
    # One uplink per provider bridge: the lab's carries the first external network, untagged
    # (an access port of its VLAN).
    add_port(BR_EX, EXTERNAL_NIC, tag=uplink_tag(networks[0].type, networks[0].segmentation_id))
    f = flows
    f.add(BR_INT, LOCAL_SWITCHING, 2, [f"in_port={int_ex.ofport}"], "drop")
    f.add(BR_EX, 0, 0, [], "NORMAL")
    f.add(BR_EX, 0, 2, [f"in_port={phy_ex.ofport}"], "drop")
    for net in networks:
        local = LocalNetwork(net.id, net.type, net.segmentation_id, local_vlans[net.id])
        into_local_vlan(f, local, int_ofport=int_ex.ofport)
        out_of_local_vlan(f, BR_EX, local, phy_ofport=phy_ex.ofport)


# --- iptables ---------------------------------------------------------------------------------


class AgentTables:
    """The agent's IPv4 (or IPv6) tables: chains and their rules in the order they were added.
    Both families hold the same four tables and built-in chains as ``iptables-save`` and
    ``ip6tables-save`` print them."""

    def __init__(self) -> None:
        self.chains: dict[str, dict[str, list[str]]] = {
            t: {c: [] for c in builtins} for t, builtins in _BUILTINS.items()
        }
        self.top: dict[tuple[str, str], list[str]] = {}

    def chain(self, table: str, name: str) -> str:
        """Add a wrapped chain (cut to 11 characters, as ``get_chain_name`` does)."""
        full = f"{L3_WRAP}-{name[:11]}"
        self.chains[table].setdefault(full, [])
        return full

    def add(self, table: str, chain: str, rule: str, *, top: bool = False) -> None:
        rules = self.top.setdefault((table, chain), []) if top else self.chains[table][chain]
        if rule not in rules:  # the agent weeds out duplicates (the last one stays)
            rules.append(rule)
        elif not top:
            rules.remove(rule)
            rules.append(rule)

    def render(self) -> str:
        """As ``iptables-save`` prints the loaded tables: built-ins in hook order, then user
        chains sorted by byte value, rules chain by chain."""
        out: list[str] = []
        for table in ("raw", "mangle", "nat", "filter"):
            chains = self.chains[table]
            builtins = _BUILTINS[table]
            users = sorted((c for c in chains if c not in builtins), key=lambda c: c.encode())
            out.append(f"*{table}")
            out += [f":{c} ACCEPT [0:0]" for c in builtins]
            out += [f":{c} - [0:0]" for c in users]
            for chain in (*builtins, *users):
                rules = self.top.get((table, chain), []) + chains[chain]
                out += [f"-A {chain} {rule}" for rule in rules]
            out.append("COMMIT")
        return "".join(line + "\n" for line in out)


def manager_skeleton(t: AgentTables) -> None:
    """``IptablesManager(use_ipv6=..., namespace=...)``: shared chains and wrapped built-ins."""
    t.chains["filter"]["neutron-filter-top"] = []
    for chain in ("FORWARD", "OUTPUT"):
        t.add("filter", chain, "-j neutron-filter-top", top=True)
    t.add("filter", "neutron-filter-top", f"-j {t.chain('filter', 'local')}")
    for table, builtins in _WRAPPED_BUILTINS.items():
        for chain in builtins:
            t.add(table, chain, f"-j {t.chain(table, chain)}")
    t.add("mangle", t.chain("mangle", "PREROUTING"), f"-j {t.chain('mangle', 'mark')}")
    t.chains["nat"]["neutron-postrouting-bottom"] = []
    t.add("nat", "POSTROUTING", "-j neutron-postrouting-bottom")
    snat = t.chain("nat", "snat")
    t.add(
        "nat",
        "neutron-postrouting-bottom",
        f'-m comment --comment "{SNAT_OUT}" -j {snat}',
    )
    t.add("nat", snat, f"-j {t.chain('nat', 'float-snat')}")


def _address_scope_skeleton(t: AgentTables) -> None:
    """``_initialize_address_scope_iptables``."""
    pre = t.chain("mangle", "PREROUTING")
    t.chain("mangle", "floatingip")
    t.chain("mangle", "float-snat")
    t.add("filter", t.chain("filter", "FORWARD"), f"-j {t.chain('filter', 'scope')}")
    t.add("mangle", pre, f"-j {t.chain('mangle', 'scope')}")
    t.add(
        "mangle",
        pre,
        "-m connmark ! --mark 0x0/0xffff0000 -j CONNMARK --restore-mark "
        "--nfmask 0xffff0000 --ctmask 0xffff0000",
    )
    t.add("mangle", pre, f"-j {t.chain('mangle', 'floatingip')}")
    t.add(
        "mangle",
        t.chain("mangle", "float-snat"),
        "-m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark "
        "--nfmask 0xffff0000 --ctmask 0xffff0000",
    )


def _metadata_mark(t: AgentTables) -> None:
    """``initialize_metadata_iptables``: the mark; its filter DROP is emptied away later."""
    t.add(
        "mangle",
        t.chain("mangle", "PREROUTING"),
        f"-d {METADATA_CIDR} -i {INTERNAL_PREFIX}+ -p tcp -m tcp --dport 80 "
        f"-j MARK --set-xmark {METADATA_ACCESS_MARK}/{ROUTER_MARK_MASK}",
    )


def _gateway_rules(t: AgentTables, router: Router, gateway: RouterPort | None) -> None:
    """``_handle_router_snat_rules`` (its chains emptied first, then refilled)."""
    snat = t.chain("nat", "snat")
    t.chains["nat"][snat] = []
    t.add("nat", snat, f"-j {t.chain('nat', 'float-snat')}")
    if gateway is None:
        return
    qg = gateway.device
    gw_ip = gateway.interface.ip
    if router.enable_snat:
        t.add(
            "mangle",
            t.chain("mangle", "POSTROUTING"),
            f"-o {qg} -m connmark --mark 0x0/0xffff0000 -j CONNMARK --save-mark "
            "--nfmask 0xffff0000 --ctmask 0xffff0000",
        )
        t.add("nat", snat, f"-o {qg} -j SNAT --to-source {gw_ip}{RANDOM_FULLY}")
    t.add(
        "nat",
        t.chain("nat", "POSTROUTING"),
        f"! -o {qg} -m conntrack ! --ctstate DNAT -j ACCEPT",
    )
    t.add(
        "nat",
        snat,
        f"-m mark ! --mark {EXTERNAL_INGRESS_MARK}/{ROUTER_MARK_MASK} -m conntrack --ctstate DNAT "
        f"-j SNAT --to-source {gw_ip}{RANDOM_FULLY}",
    )
    t.add(
        "mangle",
        t.chain("mangle", "mark"),
        f"-i {qg} -j MARK --set-xmark {EXTERNAL_INGRESS_MARK}/{ROUTER_MARK_MASK}",
    )


def _dvr_snat_rules(t: AgentTables, rfp: str | None, floating_ips: tuple[FloatingIp, ...]) -> None:
    """``DvrLocalRouter._handle_router_snat_rules``: nat ``POSTROUTING`` and ``snat`` emptied;
    only with the ``rfp-`` link to the fip namespace and a floating IP on this node does it add
    back the jump to ``float-snat`` and the rule leaving non-DNATed traffic alone
    (``_prevent_snat_for_internal_traffic_rule``)."""
    post = t.chain("nat", "POSTROUTING")
    snat = t.chain("nat", "snat")
    t.chains["nat"][post] = []
    t.chains["nat"][snat] = []
    if rfp is None or not floating_ips:
        return
    t.add("nat", snat, f"-j {t.chain('nat', 'float-snat')}")
    t.add("nat", post, f"! -o {rfp} -m conntrack ! --ctstate DNAT -j ACCEPT")


def _dvr_floating_ip_rules(t: AgentTables, rfp: str, floating_ips: tuple[FloatingIp, ...]) -> None:
    """``DvrLocalRouter.floating_forward_rules``: DNAT only for what comes from ``rfp-``
    (no OUTPUT rule), SNAT in ``float-snat``."""
    for fip in floating_ips:
        t.add(
            "nat",
            t.chain("nat", "PREROUTING"),
            f"-d {fip.address}/32 -i {rfp} -j DNAT --to-destination {fip.fixed_ip}",
        )
        t.add(
            "nat",
            t.chain("nat", "float-snat"),
            f"-s {fip.fixed_ip}/32 -j SNAT --to-source {fip.address}{RANDOM_FULLY}",
        )


def _floating_ip_rules(t: AgentTables, router: Router) -> None:
    """``process_floating_ip_nat_rules`` / ``floating_forward_rules``."""
    for fip in router.floating_ips:
        dnat = f"-d {fip.address}/32 -j DNAT --to-destination {fip.fixed_ip}"
        t.add("nat", t.chain("nat", "PREROUTING"), dnat)
        t.add("nat", t.chain("nat", "OUTPUT"), dnat)
        t.add(
            "nat",
            t.chain("nat", "float-snat"),
            f"-s {fip.fixed_ip}/32 -j SNAT --to-source {fip.address}{RANDOM_FULLY}",
        )


def _scope_rules(
    t: AgentTables,
    router: Router,
    internal: tuple[RouterPort, ...],
    gateway: RouterPort | None,
    rfp: str | None = None,
) -> None:
    """``_add_address_scope_mark``: both ``scope`` chains emptied, then one mark (mangle) and
    one DROP (filter) per port; the gateway gets no DROP while SNAT is on. A distributed
    router's external port is its ``rfp-`` device (``DvrLocalRouter._get_address_scope_mark``),
    which is not the gateway's ``qg-`` name the DROP exemption compares with."""
    mangle = t.chain("mangle", "scope")
    flt = t.chain("filter", "scope")
    t.chains["mangle"][mangle] = []
    t.chains["filter"][flt] = []
    devices = [p.device for p in internal] + ([gateway.device] if gateway is not None else [])
    devices += [rfp] if rfp is not None else []
    for device in devices:
        t.add("mangle", mangle, f"-i {device} -j MARK --set-xmark {SCOPE_MARK}")
        if gateway is not None and device == gateway.device and router.enable_snat:
            continue
        t.add("filter", flt, f"-o {device} -m mark ! --mark {SCOPE_MARK} -j DROP")


def snat_namespace_iptables(
    router: Router, snat_ports: tuple[RouterPort, ...], gateway: RouterPort
) -> str:
    """A distributed router's ``snat-`` namespace (``dvr_edge_router.py``): its own iptables
    manager, ``_initialize_address_scope_iptables``, ``_handle_router_snat_rules`` (the chains
    emptied, ``-j float-snat``, then ``_add_snat_rules`` as a legacy router's gateway) and
    ``process_address_scope`` over the ``sg-`` ports and ``qg-``. No metadata rules: the proxy
    serves the ``qrouter-`` namespaces."""
    t = AgentTables()
    manager_skeleton(t)
    _address_scope_skeleton(t)
    _gateway_rules(t, router, gateway)
    _scope_rules(t, router, snat_ports, gateway)
    return t.render()


def _metadata_proxy_rules(t: AgentTables, metadata: str = METADATA_CIDR) -> None:
    """``apply_metadata_nat_rules`` (metadata driver, on the router's AFTER_CREATE); for IPv6
    the metadata address is ``fe80::a9fe:a9fe``."""
    inp = t.chain("filter", "INPUT")
    t.add("filter", inp, f"-m mark --mark {METADATA_ACCESS_MARK}/{ROUTER_MARK_MASK} -j ACCEPT")
    t.add("filter", inp, f"-p tcp -m tcp --dport {METADATA_PORT} -j DROP")
    t.add(
        "nat",
        t.chain("nat", "PREROUTING"),
        f"-d {metadata} -i {INTERNAL_PREFIX}+ -p tcp -m tcp --dport 80 "
        f"-j REDIRECT --to-ports {METADATA_PORT}",
    )


def router_iptables(
    router: Router,
    internal: tuple[RouterPort, ...],
    gateway: RouterPort | None,
    *,
    rfp: str | None = None,
    floating_ips: tuple[FloatingIp, ...] = (),
) -> str:
    """The router namespace's IPv4 ruleset, built in the agent's order of calls: the
    manager, ``RouterInfo.__init__``, then ``process()`` (internal ports, external gateway and
    floating IPs, address scopes), then the metadata driver. A distributed router's
    ``DvrLocalRouter`` handles its gateway's NAT differently (``neutron/agent/l3/
    dvr_local_router.py``): ``rfp`` is its link to the fip namespace and ``floating_ips`` the
    ones bound to this node; without them it has no NAT rules at all."""
    t = AgentTables()
    manager_skeleton(t)
    _address_scope_skeleton(t)
    _metadata_mark(t)
    if router.distributed:
        _dvr_snat_rules(t, rfp, floating_ips)
        if rfp is not None:
            _dvr_floating_ip_rules(t, rfp, floating_ips)
    else:
        _gateway_rules(t, router, gateway)
        _floating_ip_rules(t, router)
    _scope_rules(t, router, internal, gateway, rfp)
    _metadata_proxy_rules(t)
    return t.render()


def router_ip6tables(internal: tuple[RouterPort, ...], gateway: RouterPort | None) -> str:
    """The router namespace's IPv6 ruleset, in the agent's order of calls as for IPv4:
    ``IptablesManager`` (the shared ``neutron-filter-top``/``local`` chains, wrapped built-ins:
    ``nat`` only ``PREROUTING``, no ``mark``, ``snat`` or ``neutron-postrouting-bottom``),
    ``_initialize_address_scope_iptables`` (``scope`` chains, the CONNMARK restore; no
    ``floatingip``/``float-snat``), ``initialize_metadata_iptables`` (the mark on
    ``fe80::a9fe:a9fe``), ``_add_address_scope_mark`` over the ports with an IPv6 address (the
    gateway is not exempted for IPv6), then ``apply_metadata_nat_rules``. Gateway, SNAT and
    floating-IP rules are IPv4 only in Neutron."""
    t = AgentTables()
    t.chains["filter"]["neutron-filter-top"] = []
    for chain in ("FORWARD", "OUTPUT"):
        t.add("filter", chain, "-j neutron-filter-top", top=True)
    t.add("filter", "neutron-filter-top", f"-j {t.chain('filter', 'local')}")
    for table, builtins in _WRAPPED_BUILTINS6.items():
        for chain in builtins:
            t.add(table, chain, f"-j {t.chain(table, chain)}")
    pre = t.chain("mangle", "PREROUTING")
    t.add("filter", t.chain("filter", "FORWARD"), f"-j {t.chain('filter', 'scope')}")
    t.add("mangle", pre, f"-j {t.chain('mangle', 'scope')}")
    t.add(
        "mangle",
        pre,
        "-m connmark ! --mark 0x0/0xffff0000 -j CONNMARK --restore-mark "
        "--nfmask 0xffff0000 --ctmask 0xffff0000",
    )
    t.add(
        "mangle",
        pre,
        f"-d {METADATA_V6_CIDR} -i {INTERNAL_PREFIX}+ -p tcp -m tcp --dport 80 "
        f"-j MARK --set-xmark {METADATA_ACCESS_MARK}/{ROUTER_MARK_MASK}",
    )
    mangle_scope = t.chain("mangle", "scope")
    filter_scope = t.chain("filter", "scope")
    ports = internal + ((gateway,) if gateway is not None else ())
    for port in ports:
        if port.cidr6 is None:
            continue
        t.add("mangle", mangle_scope, f"-i {port.device} -j MARK --set-xmark {SCOPE_MARK}")
        t.add("filter", filter_scope, f"-o {port.device} -m mark ! --mark {SCOPE_MARK} -j DROP")
    _metadata_proxy_rules(t, METADATA_V6_CIDR)
    return t.render()


def describe(state: RouterState) -> str:
    """A router as ``lab generate --what routers`` prints it: the namespace, its sysctls,
    ports, addresses and default route as ``#`` lines, then its ``iptables-save`` text."""
    r = state.router
    kind = f"SNAT {'on' if r.enable_snat else 'off'}"
    if r.distributed and state.gateway is not None:
        kind = f"distributed: its centralised SNAT, on {state.host}"
    elif r.distributed:
        kind = "distributed, " + ("floating IPs through rfp-" if state.fip_link else "no gateway")
    lines = [f"# {state.namespace} (router {r.name}, {kind})"]
    lines += [f"# sysctl {s}" for s in state.sysctls]
    for port in state.ports:
        how = f" ({port.interface.ip_derived})" if port.interface.ip_derived else ""
        lines.append(
            f"# {port.device} {port.interface.mac} {port.cidr}{how}: br-int port {port.ofport}, "
            f"tag {port.local_vlan} (network {port.network.name})"
        )
    if state.gateway is not None and not r.distributed:
        lines += [
            f"# {state.gateway.device} {f.address}/32: floating IP of {f.fixed_ip}"
            for f in r.floating_ips
        ]
    route = state.default_route
    if route is not None:
        lines.append(f"# default via {route[0]} dev {route[1]} (the external subnet's first host)")
    lines += [
        f"# neigh {e.ip} lladdr {e.mac} dev {e.device} nud permanent" for e in state.neighbours
    ]
    link = state.fip_link
    if link is not None:
        lines += [
            f"# {link.rfp} {link.rfp_ip}/31: veth to {link.fpr} {link.fpr_ip}/31 in "
            f"{link.fip_namespace}, mtu {link.mtu}",
            f"# neigh {link.fpr_ip} lladdr <MAC of {link.fpr}> dev {link.rfp} nud permanent",
        ]
    lines += [describe_rule(r) for r in state.rules]
    lines += [describe_route(r) for r in state.routes]
    for port in state.ports:
        if port.cidr6 is not None:
            lines.append(f"# {port.device} {port.cidr6} ({port.interface.ip6_derived})")
    text = "\n".join(lines) + "\n" + state.iptables_save
    if state.ip6tables_save:
        text += "# ip6tables-save (no IPv6 NAT in Neutron; no router advertisements)\n"
        text += state.ip6tables_save
    return text


def describe_rule(rule: PolicyRule) -> str:
    what = f"from {rule.src}/{rule.src_len}" if rule.src is not None else "from all"
    what += f" iif {rule.iif}" if rule.iif is not None else ""
    return f"# ip rule {what} lookup {rule.table} priority {rule.priority}"


def describe_route(route: StaticRoute) -> str:
    table = f" table {route.table}" if route.table is not None else ""
    return f"# ip route {route.dst} via {route.via} dev {route.device}{table}"
