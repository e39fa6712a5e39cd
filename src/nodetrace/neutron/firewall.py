"""The iptables ruleset Neutron's hybrid firewall driver writes on a node, as iptables-save text.

This follows the OVS hybrid iptables driver rule for rule: the chain skeleton of the agent's
``IptablesManager`` (state-less, wrapped chains), the per-port raw CT zone rules, the nat
short-circuit rules, the sg-chain dispatch, the ingress/egress/anti-spoof chains with the
server's provider rules (DHCP, RA), ipset-backed remote-group rules, and the agent's comments.
The output is exactly what ``iptables-legacy-save`` prints for the loaded ruleset, minus
counters and the header/footer comments (the lab tests check this against the kernel).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, ip_network

from nodetrace.neutron import naming as n
from nodetrace.neutron.scenario import (
    Direction,
    Ethertype,
    IPNetwork,
    Port,
    Scenario,
    SgRule,
)

# The agent's comment strings (neutron/agent/linux/iptables_comments.py).
VM_INT_SG = "Direct traffic from the VM interface to the security group chain."
SG_TO_VM_SG = "Jump to the VM specific chain."
INPUT_TO_SG = "Direct incoming traffic from VM to the security group chain."
PAIR_ALLOW = "Allow traffic from defined IP/MAC pairs."
PAIR_DROP = "Drop traffic without an IP/MAC allow rule."
DHCP_CLIENT = "Allow DHCP client traffic."
DHCP_SPOOF = "Prevent DHCP Spoofing by VM."
UNMATCHED = "Send unmatched traffic to the fallback chain."
UNMATCH_DROP = "Default drop rule for unmatched traffic."
INVALID_DROP = (
    "Drop packets that appear related to an existing connection (e.g. TCP ACK/FIN) "
    "but do not have an entry in conntrack."
)
ALLOW_ASSOC = "Direct packets associated with a known session to the RETURN chain."
PORT_SEC_ACCEPT = "Accept all packets when port security is disabled."
TRUSTED_ACCEPT = "Accept all packets when port is trusted."
IPV6_RA_DROP = "Drop IPv6 Router Advts from VM Instance."
IPV6_ICMP_ALLOW = "Allow IPv6 ICMP traffic."

ICMPV6_ALLOWED_INGRESS_TYPES = (130, 135, 136)
"""MLD query, neighbour solicitation and advertisement: always let into the VM."""
ICMPV6_ALLOWED_UNSPEC_ADDR_TYPES = (131, 135, 143)
"""MLD report, NS and MLDv2 report from ``::``, for duplicate address detection."""
ICMPV6_TYPE_RA = 134

# /etc/protocols names iptables-save prints for protocol numbers, and the names Neutron maps.
PROTOCOL_NAMES = {
    "1": "icmp",
    "2": "igmp",
    "4": "ipencap",
    "6": "tcp",
    "17": "udp",
    "33": "dccp",
    "41": "ipv6",
    "47": "gre",
    "50": "esp",
    "51": "ah",
    "58": "ipv6-icmp",
    "112": "vrrp",
    "132": "sctp",
    "136": "udplite",
    "icmpv6": "ipv6-icmp",
}
_MATCH_MODULE = {
    "tcp": "tcp",
    "udp": "udp",
    "icmp": "icmp",
    "ipv6-icmp": "icmp6",
    "sctp": "sctp",
    "dccp": "dccp",
}
_PORT_PROTOCOLS = frozenset({"tcp", "udp", "udplite", "sctp", "dccp"})
_MULTIPORT_ONLY = frozenset({"udplite"})
_IPV6_ICMP_LEGACY = frozenset({"icmp", "icmpv6", "ipv6-icmp", "1", "58"})

_BUILTIN_ORDER = {
    "raw": ("PREROUTING", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}
TABLE_ORDER = ("raw", "nat", "filter")
"""Tables in the order the generated save text lists them (the kernel's order is load order)."""


@dataclass(frozen=True, slots=True)
class PortFilter:
    """One port as the firewall driver sees it on its node: the port and its conntrack zone."""

    port: Port
    zone: int | None
    """``None`` for an unfiltered port (port security disabled)."""


@dataclass(frozen=True, slots=True)
class Ipset:
    """One ``hash:net`` set of remote-group member addresses."""

    name: str
    family: Ethertype
    members: tuple[str, ...]


def _comment(rule: str, comment: str | None) -> str:
    """Insert ``-m comment`` right before `` -j`` (or in front of a bare ``-j``), as the agent does."""
    if comment is None:
        return rule
    text = f'-m comment --comment "{comment}"'
    if rule.startswith("-j "):
        return f"{text} {rule}"
    head, sep, tail = rule.partition(" -j ")
    return f"{head} {text}{sep}{tail}" if sep else f"{rule} {text}"


class _Tables:
    """The wrapped chains and rules of one address family, in the order they are added."""

    def __init__(self, wrap: str) -> None:
        self.wrap = wrap
        self.chains: dict[str, dict[str, list[str]]] = {t: {} for t in TABLE_ORDER}
        self.top: dict[tuple[str, str], list[str]] = {}
        for table, builtins in _BUILTIN_ORDER.items():
            for chain in builtins:
                self.chains[table][chain] = []

    def w(self, name: str) -> str:
        return n.wrapped(name, self.wrap)

    def add_chain(self, table: str, name: str) -> None:
        self.chains[table].setdefault(name, [])

    def add(self, table: str, chain: str, rule: str, *, top: bool = False) -> None:
        if top:
            self.top.setdefault((table, chain), []).append(rule)
        else:
            self.chains[table][chain].append(rule)

    def rules(self, table: str, chain: str) -> list[str]:
        return self.top.get((table, chain), []) + self.chains[table][chain]


def _protocol(protocol: str | None, ethertype: Ethertype) -> str | None:
    if protocol is None or protocol in ("0", "any"):
        return None
    if ethertype is Ethertype.IPV6 and protocol in _IPV6_ICMP_LEGACY:
        return "ipv6-icmp"
    return PROTOCOL_NAMES.get(protocol, protocol)


@dataclass(frozen=True, slots=True)
class _RuleSpec:
    """A rule as the agent receives it: an SG rule or a provider rule from the server."""

    direction: Direction
    ethertype: Ethertype
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    source_port_min: int | None = None
    source_port_max: int | None = None
    source_prefix: str | None = None
    dest_prefix: str | None = None
    remote_group: str | None = None


def _prefix_args(flag: str, prefix: str | None) -> list[str]:
    if prefix is None:
        return []
    if "/" not in prefix:
        net = ip_network(prefix)
        prefix = f"{net.network_address}/{net.prefixlen}"
    elif prefix.endswith("/0"):
        return []
    return [flag, prefix]


def _port_args(
    direction: str, protocol: str | None, low: int | None, high: int | None
) -> list[str]:
    if low is None:
        return []
    if protocol in ("icmp", "ipv6-icmp"):
        kind = "icmpv6" if protocol == "ipv6-icmp" else "icmp"
        return [f"--{kind}-type", f"{low}" if high is None else f"{low}/{high}"]
    if protocol in _PORT_PROTOCOLS:
        if low == high:
            if protocol in _MULTIPORT_ONLY:
                return ["-m", "multiport", f"--{direction}s", str(low)]
            return [f"--{direction}", str(low)]
        return ["-m", "multiport", f"--{direction}s", f"{low}:{high}"]
    return []


def _protocol_and_port_args(spec: _RuleSpec) -> list[str]:
    protocol = _protocol(spec.protocol, spec.ethertype)
    args: list[str] = []
    if protocol is not None:
        args = ["-p", protocol]
        has_port = spec.source_port_min is not None or spec.port_min is not None
        if has_port and protocol in _MATCH_MODULE:
            args += ["-m", _MATCH_MODULE[protocol]]
    args += _port_args("sport", protocol, spec.source_port_min, spec.source_port_max)
    args += _port_args("dport", protocol, spec.port_min, spec.port_max)
    return args


class _FirewallBuilder:
    """Builds both families' tables for one node's ports, in the agent's order."""

    def __init__(
        self,
        scenario: Scenario,
        ports: Sequence[PortFilter],
        wrap: str,
        ipsets: Mapping[tuple[str, Ethertype], Ipset],
        ipv4_trace: str | None,
    ) -> None:
        self.scenario = scenario
        self.ipv4_trace = ipv4_trace
        self.ports = sorted(ports, key=lambda p: p.port.id)
        self.wrap = wrap
        self.ipsets = ipsets
        self.v4 = _Tables(wrap)
        self.v6 = _Tables(wrap)

    def both(self) -> tuple[tuple[Ethertype, _Tables], ...]:
        return ((Ethertype.IPV4, self.v4), (Ethertype.IPV6, self.v6))

    def build(self) -> tuple[_Tables, _Tables]:
        for _, t in self.both():
            self._skeleton(t)
        if self.ipv4_trace is not None:
            rule = f"{self.ipv4_trace} -j TRACE".strip()
            self.v4.add("raw", "PREROUTING", rule, top=True)
        filtered = [p for p in self.ports if p.zone is not None]
        unfiltered = [p for p in self.ports if p.zone is None]
        for _, t in self.both():
            t.add_chain("filter", t.w("sg-chain"))
        for pf in filtered:
            self._conntrack_rules(pf)
            self._nat_rules(pf.port)
            self._port_chain(pf.port, Direction.INGRESS)
            self._port_chain(pf.port, Direction.EGRESS)
        for _, t in self.both():
            t.add("filter", t.w("sg-chain"), "-j ACCEPT")
        for pf in unfiltered:
            self._nat_rules(pf.port)
            self._port_security_off(pf.port)
        return self.v4, self.v6

    def _skeleton(self, t: _Tables) -> None:
        top = n.FILTER_TOP_CHAIN
        for table, chain in (("raw", "PREROUTING"), ("raw", "OUTPUT"), ("nat", "PREROUTING")):
            t.add_chain(table, t.w(chain))
            t.add(table, chain, f"-j {t.w(chain)}")
        t.add_chain("filter", top)
        t.add_chain("filter", t.w("local"))
        t.add("filter", top, f"-j {t.w('local')}")
        for chain in ("INPUT", "FORWARD", "OUTPUT"):
            if chain != "INPUT":
                t.add("filter", chain, f"-j {top}")
            t.add_chain("filter", t.w(chain))
            t.add("filter", chain, f"-j {t.w(chain)}")
        t.add_chain("filter", t.w("sg-fallback"))
        t.add("filter", t.w("sg-fallback"), _comment("-j DROP", UNMATCH_DROP))

    def _conntrack_rules(self, pf: PortFilter) -> None:
        port = pf.port
        dev = n.PortDevices.for_port(port.id)
        comment = n.zone_comment(port.id)
        for _, t in self.both():
            for match in (
                f"-m physdev --physdev-in {dev.qvb}",
                f"-i {dev.qvb}",
                f"-m physdev --physdev-in {dev.tap}",
            ):
                t.add(
                    "raw",
                    t.w("PREROUTING"),
                    f'{match} -m comment --comment "{comment}" -j CT --zone {pf.zone}',
                )

    def _nat_rules(self, port: Port) -> None:
        tap = n.tap_name(port.id)
        for _, t in self.both():
            for direction in ("physdev-out", "physdev-in"):
                rule = f"-m physdev --{direction} {tap} -j ACCEPT"
                t.add("nat", t.w("PREROUTING"), _comment(rule, TRUSTED_ACCEPT))

    def _port_security_off(self, port: Port) -> None:
        tap = n.tap_name(port.id)
        for _, t in self.both():
            for direction in ("physdev-out", "physdev-in"):
                rule = f"-m physdev --{direction} {tap} --physdev-is-bridged -j ACCEPT"
                t.add("filter", t.w("FORWARD"), _comment(rule, PORT_SEC_ACCEPT))
                if direction == "physdev-in":
                    t.add("filter", t.w("INPUT"), _comment(rule, PORT_SEC_ACCEPT))

    def _port_chain(self, port: Port, direction: Direction) -> None:
        kind = n.ChainKind.INGRESS if direction is Direction.INGRESS else n.ChainKind.EGRESS
        chain = n.chain_name(kind, port.id, self.wrap)
        tap = n.tap_name(port.id)
        physdev = "physdev-out" if direction is Direction.INGRESS else "physdev-in"
        for _, t in self.both():
            t.add_chain("filter", chain)
            jump = f"-m physdev --{physdev} {tap} --physdev-is-bridged"
            t.add(
                "filter",
                t.w("FORWARD"),
                _comment(f"{jump} -j {t.w('sg-chain')}", VM_INT_SG),
                top=True,
            )
            t.add("filter", t.w("sg-chain"), _comment(f"{jump} -j {chain}", SG_TO_VM_SG))
            if direction is Direction.EGRESS:
                t.add("filter", t.w("INPUT"), _comment(f"{jump} -j {chain}", INPUT_TO_SG))
        specs = self._provider_rules(port) if direction is Direction.INGRESS else []
        specs += self._sg_rules(port, direction)
        v4_rules: list[str] = []
        v6_rules: list[str] = []
        if direction is Direction.EGRESS:
            self._spoofing_rules(port, v4_rules, v6_rules)
            v4_rules.append(_comment("-p udp -m udp --sport 67 --dport 68 -j DROP", DHCP_SPOOF))
            v6_rules.append(_comment("-p udp -m udp --sport 547 --dport 546 -j DROP", DHCP_SPOOF))
        else:
            v6_rules += [
                f"-p ipv6-icmp -m icmp6 --icmpv6-type {t} -j RETURN"
                for t in ICMPV6_ALLOWED_INGRESS_TYPES
            ]
        v4_rules += self._convert([s for s in specs if s.ethertype is Ethertype.IPV4])
        v6_rules += self._convert([s for s in specs if s.ethertype is Ethertype.IPV6])
        for rule in v4_rules:
            self.v4.add("filter", chain, rule)
        for rule in v6_rules:
            self.v6.add("filter", chain, rule)

    def _provider_rules(self, port: Port) -> list[_RuleSpec]:
        """What the server adds to every port's ingress: the RA and DHCP replies."""
        specs: list[_RuleSpec] = []
        if port.ips(6):
            specs.append(
                _RuleSpec(
                    Direction.INGRESS, Ethertype.IPV6, "ipv6-icmp", source_port_min=ICMPV6_TYPE_RA
                )
            )
        for ethertype, server, client, extra in (
            (Ethertype.IPV4, 67, 68, "255.255.255.255/32"),
            (Ethertype.IPV6, 547, 546, "fe80::/64"),
        ):
            bits = 32 if ethertype is Ethertype.IPV4 else 128
            dests = [f"{ip}/{bits}" for ip in port.ips(ethertype.version)] + [extra]
            for dest in dests:
                specs.append(
                    _RuleSpec(
                        Direction.INGRESS,
                        ethertype,
                        "udp",
                        port_min=client,
                        port_max=client,
                        source_port_min=server,
                        source_port_max=server,
                        dest_prefix=dest,
                    )
                )
        return specs

    def _sg_rules(self, port: Port, direction: Direction) -> list[_RuleSpec]:
        return [
            _spec(rule)
            for sg_id in port.security_groups
            for rule in self.scenario.security_group(sg_id).rules
            if rule.direction is direction
        ]

    def _convert(self, specs: Iterable[_RuleSpec]) -> list[str]:
        texts = (self._rule_text(spec) for spec in specs)
        return [
            _comment("-m state --state RELATED,ESTABLISHED -j RETURN", ALLOW_ASSOC),
            *dict.fromkeys(t for t in texts if t is not None),  # each rule once, in order
            _comment("-m state --state INVALID -j DROP", INVALID_DROP),
            _comment(f"-j {n.sg_fallback_chain(self.wrap)}", UNMATCHED),
        ]

    def _rule_text(self, spec: _RuleSpec) -> str | None:
        if spec.remote_group is not None:
            ipset = self.ipsets.get((spec.remote_group, spec.ethertype))
            if ipset is None:
                return None  # the agent creates no set for an empty group, so no rule
            where = "src" if spec.direction is Direction.INGRESS else "dst"
            args = [*_protocol_and_port_args(spec), "-m", "set", "--match-set", ipset.name, where]
        else:
            args = _prefix_args("-s", spec.source_prefix)
            args += _prefix_args("-d", spec.dest_prefix)
            args += _protocol_and_port_args(spec)
        return " ".join([*args, "-j", "RETURN"])

    def _spoofing_rules(self, port: Port, v4: list[str], v6: list[str]) -> None:
        v4.append(
            _comment(
                "-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN",
                DHCP_CLIENT,
            )
        )
        for icmp6 in ICMPV6_ALLOWED_UNSPEC_ADDR_TYPES:
            v6.append(
                _comment(
                    f"-s ::/128 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type {icmp6} -j RETURN",
                    IPV6_ICMP_ALLOW,
                )
            )
        pairs4: list[tuple[str, str | None]] = []
        pairs6: list[tuple[str, str | None]] = []
        for pair in port.allowed_address_pairs:
            _add_mac_ip(pair.mac, pair.ip, pairs4, pairs6)
        for ip in port.fixed_ips:
            _add_mac_ip(port.mac, ip_network(ip), pairs4, pairs6)
        if not port.fixed_ips:
            pairs4.append((port.mac.lower(), None))
            pairs6.append((port.mac.lower(), None))
        spoof = n.chain_name(n.ChainKind.SPOOF, port.id, self.wrap)
        for tables, pairs, out in ((self.v4, pairs4, v4), (self.v6, pairs6, v6)):
            if not pairs:
                continue
            tables.add_chain("filter", spoof)
            for mac, cidr in pairs:
                source = f"-s {cidr} " if cidr is not None else ""
                tables.add(
                    "filter",
                    spoof,
                    _comment(f"{source}-m mac --mac-source {mac} -j RETURN", PAIR_ALLOW),
                )
            tables.add("filter", spoof, _comment("-j DROP", PAIR_DROP))
            out.append(f"-j {spoof}")
        v4.append(_comment("-p udp -m udp --sport 68 --dport 67 -j RETURN", DHCP_CLIENT))
        v6.append(
            _comment(f"-p ipv6-icmp -m icmp6 --icmpv6-type {ICMPV6_TYPE_RA} -j DROP", IPV6_RA_DROP)
        )
        v6.append(_comment("-p ipv6-icmp -j RETURN", IPV6_ICMP_ALLOW))
        v6.append(_comment("-p udp -m udp --sport 546 --dport 547 -j RETURN", DHCP_CLIENT))


def _add_mac_ip(
    mac: str,
    net: IPNetwork,
    pairs4: list[tuple[str, str | None]],
    pairs6: list[tuple[str, str | None]],
) -> None:
    # The agent hands iptables-restore the MAC in upper case, but the kernel keeps bytes and
    # iptables-save (legacy and nft) prints them in lower case: the save text follows the kernel.
    mac = mac.lower()
    if isinstance(net, IPv4Network):
        pairs4.append((mac, str(net)))
        return
    pairs6.append((mac, str(net)))
    lla = (mac, f"{link_local(mac)}/128")
    if lla not in pairs6:
        pairs6.append(lla)


def link_local(mac: str) -> IPv6Address:
    """The EUI-64 link-local address of a MAC (``fe80::f816:3eff:fe4c:2a11``)."""
    b = [int(x, 16) for x in mac.split(":")]
    eui = [b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]]
    return IPv6Address(b"\xfe\x80" + bytes(6) + bytes(eui))


def _spec(rule: SgRule) -> _RuleSpec:
    prefix = str(rule.remote_ip_prefix) if rule.remote_ip_prefix is not None else None
    ingress = rule.direction is Direction.INGRESS
    return _RuleSpec(
        rule.direction,
        rule.ethertype,
        rule.protocol,
        port_min=rule.port_min,
        port_max=rule.port_max,
        source_prefix=prefix if ingress else None,
        dest_prefix=None if ingress else prefix,
        remote_group=rule.remote_group,
    )


# --- ipsets -----------------------------------------------------------------------------------


def remote_group_ipsets(
    scenario: Scenario, ports: Iterable[PortFilter]
) -> dict[tuple[str, Ethertype], Ipset]:
    """The sets the agent creates: one per remote group and family used by a filtered port here.

    Members are every address (fixed IPs and allowed address pairs) of every port in the
    remote group, the port's own included; a ``/0`` member is stored as two ``/1`` halves, and
    a group without members gets no set at all.
    """
    wanted: list[tuple[str, Ethertype]] = []
    for pf in ports:
        if pf.zone is None:
            continue
        for sg_id in pf.port.security_groups:
            for rule in scenario.security_group(sg_id).rules:
                key = (rule.remote_group, rule.ethertype)
                if rule.remote_group is not None and key not in wanted:
                    wanted.append((rule.remote_group, rule.ethertype))
    sets: dict[tuple[str, Ethertype], Ipset] = {}
    for sg_id, ethertype in wanted:
        members: list[str] = []
        for port in scenario.ports:
            if sg_id not in port.security_groups:
                continue
            nets = [ip_network(ip) for ip in port.ips(ethertype.version)]
            nets += [p.ip for p in port.allowed_address_pairs if p.ip.version == ethertype.version]
            for net in nets:
                for text in _ipset_members(net):
                    if text not in members:
                        members.append(text)
        if members:
            sets[(sg_id, ethertype)] = Ipset(
                n.ipset_name(sg_id, ethertype.value), ethertype, tuple(members)
            )
    return sets


def _ipset_members(net: IPNetwork) -> list[str]:
    if net.prefixlen == 0:
        return [str(half) for half in net.subnets(prefixlen_diff=1)]
    if net.prefixlen == net.max_prefixlen:
        return [str(net.network_address)]
    return [str(net)]


def ipset_restore_text(ipsets: Iterable[Ipset]) -> str:
    """Input for ``ipset restore``: the sets as Neutron creates them (``hash:net``)."""
    lines = []
    for s in ipsets:
        family = "inet" if s.family is Ethertype.IPV4 else "inet6"
        lines.append(f"create {s.name} hash:net family {family} hashsize 1024 maxelem 65536")
        lines += [f"add {s.name} {m}" for m in s.members]
    return "".join(line + "\n" for line in lines)


# --- rendering --------------------------------------------------------------------------------


def render_save(tables: _Tables) -> str:
    """The tables as ``iptables-legacy-save`` prints them: built-ins in hook order, then user
    chains sorted by byte value, rules chain by chain in that order."""
    out: list[str] = []
    for table in TABLE_ORDER:
        chains = tables.chains[table]
        builtins = _BUILTIN_ORDER[table]
        users = sorted((c for c in chains if c not in builtins), key=lambda c: c.encode())
        out.append(f"*{table}")
        out += [f":{c} ACCEPT [0:0]" for c in builtins]
        out += [f":{c} - [0:0]" for c in users]
        for chain in (*builtins, *users):
            out += [f"-A {chain} {rule}" for rule in tables.rules(table, chain)]
        out.append("COMMIT")
    return "".join(line + "\n" for line in out)


@dataclass(frozen=True, slots=True)
class NodeFirewall:
    """Everything the firewall driver writes on one node."""

    iptables_save: str
    """IPv4 ruleset, ``iptables-save`` text (also valid ``iptables-restore`` input)."""
    ip6tables_save: str
    ipsets: tuple[Ipset, ...]

    @property
    def ipset_restore(self) -> str:
        return ipset_restore_text(self.ipsets)


def node_firewall(
    scenario: Scenario,
    ports: Sequence[PortFilter],
    *,
    wrap: str = n.OPENVSWITCH_WRAP,
    ipv4_trace: str | None = None,
) -> NodeFirewall:
    """The iptables rulesets and ipsets of a node whose VM ports are ``ports``.

    ``ipv4_trace`` (match options, ``""`` for every packet) puts ``-A PREROUTING <options> -j
    TRACE`` first in the IPv4 raw table, where an operator debugging the node inserts it, so
    Neutron's jump becomes rule 2.
    """
    sets = remote_group_ipsets(scenario, ports)
    v4, v6 = _FirewallBuilder(scenario, ports, wrap, sets, ipv4_trace).build()
    return NodeFirewall(render_save(v4), render_save(v6), tuple(sets.values()))
