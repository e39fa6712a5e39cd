"""The flows Neutron's native OVS firewall driver (``firewall_driver = openvswitch``) puts in br-int.

With this driver there is no ``qbr`` bridge and no iptables: the VM's tap is a port of br-int,
and each security group becomes OpenFlow flows that send packets through OVS's conntrack
(``ct()``), one zone per network: ``reg6`` holds the port's local VLAN and is the zone. The
pipeline, in the agent's table numbers (neutron-lib ``ovs_constants``)::

    60 TRANSIENT         in_port=P → reg5=P, reg6=VLAN, egress (71); dl_vlan+dl_dst → ingress (81)
    71 BASE_EGRESS       anti-spoofing (dl_src/nw_src per port), ARP, DHCP client, ct() → 72
    72 RULES_EGRESS      egress security group rules by ct_state; conjunctions for remote groups
    73 ACCEPT_OR_INGRESS to a local port's MAC → its ingress (81); else commit and NORMAL
    81 BASE_INGRESS      ARP, ND, DHCP offers straight out; ct() → 82
    82 RULES_INGRESS     ingress rules by ct_state; commit and output to the port
    91-94                accepted egress / accepted ingress / dropped / NORMAL for accepted egress

Every flow family below names the method of ``neutron/agent/linux/openvswitch_firewall/``
(``firewall.py``, ``rules.py``) it reproduces. The agent's defaults are taken as a fresh
deployment has them: ``explicitly_egress_direct = False`` (so table 94 ends in ``NORMAL`` and no
direct-output flows exist) and no ``permitted_ethertypes``. Conjunction ids are allocated as the
agent's ``ConjIdMap`` does (bases 16, 24, 32... in steps of 8, plus 2 per priority offset) in the
order the ports are bound, which a scenario does not say: they are taken in port-UUID order, as
the conntrack zones of the hybrid driver are.

Flows are kept as ``ovs-ofctl -O OpenFlow13 dump-flows`` prints them (match fields in OVS's
print order), so the generated dump equals the real one line for line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from itertools import pairwise

from nodetrace.errors import InputError
from nodetrace.neutron.firewall import NodeFirewall, link_local
from nodetrace.neutron.ovs_agent import BR_INT, FlowList, VmPlug
from nodetrace.neutron.scenario import (
    Direction,
    Ethertype,
    FirewallDriver,
    IPNetwork,
    Port,
    Scenario,
    SgRule,
)

# Table numbers (neutron-lib ``plugins/ml2/ovs_constants.py``).
TRANSIENT_TABLE = 60
BASE_EGRESS_TABLE = 71
RULES_EGRESS_TABLE = 72
ACCEPT_OR_INGRESS_TABLE = 73
BASE_INGRESS_TABLE = 81
RULES_INGRESS_TABLE = 82
ACCEPTED_EGRESS_TRAFFIC_TABLE = 91
ACCEPTED_INGRESS_TRAFFIC_TABLE = 92
DROPPED_TRAFFIC_TABLE = 93
ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE = 94
OVS_FIREWALL_TABLES = (
    BASE_EGRESS_TABLE,
    RULES_EGRESS_TABLE,
    ACCEPT_OR_INGRESS_TABLE,
    BASE_INGRESS_TABLE,
    RULES_INGRESS_TABLE,
)

# Registers (neutron-lib ``agent/common/constants.py``).
REG_PORT = 5
REG_NET = 6
REG_REMOTE_GROUP = 7
ZONE = f"NXM_NX_REG{REG_NET}[0..15]"

# ct_state words (``openvswitch_firewall/constants.py``), spelled as OVS prints them.
NOT_TRACKED = "-trk"
TRACKED = "+trk"
NEW = "+new-est"
EST_NOT_REPLY = "+est-rel-rpl"
EST_REPLY = "+est-rel+rpl"
RELATED = "-new-est+rel-inv"
INVALID = "+inv+trk"
NOT_EST = "-est"
EST = "+est"
CT_MARK_NORMAL = "0"
CT_MARK_INVALID = "0x1"

ETH_IP, ETH_ARP, ETH_RARP, ETH_IPV6 = 0x0800, 0x0806, 0x8035, 0x86DD
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6, PROTO_SCTP = 1, 6, 17, 58, 132
ICMPV6_ALLOWED_INGRESS_TYPES = (130, 135, 136)
"""``neutron/agent/firewall.py``: MLD query, neighbour solicitation, advertisement."""
ICMPV6_ALLOWED_EGRESS_TYPES = (130, 133, 135)
"""MLD query, router solicitation, neighbour solicitation."""
ICMPV6_TYPE_NA = 136
ICMPV6_TYPE_RA = 134
_PORTS_PROTOCOLS = (PROTO_TCP, PROTO_UDP, PROTO_SCTP)
"""``PROTOCOLS_WITH_PORTS``: only these get port matches (DCCP and UDP-Lite rules do not)."""

_PROTOCOL_NUMBERS = {
    "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6-encap": 41,
    "ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51,
    "icmpv6": 58, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "ospf": 89, "pgm": 113,
    "vrrp": 112, "l2tp": 115, "sctp": 132, "dccp": 33, "udplite": 136,
}  # fmt: skip
"""neutron-lib's ``IP_PROTOCOL_MAP``: names the API accepts, as the agent turns them to numbers."""

_KEYWORDS = {
    (ETH_IP, None): "ip", (ETH_IP, PROTO_ICMP): "icmp", (ETH_IP, PROTO_TCP): "tcp",
    (ETH_IP, PROTO_UDP): "udp", (ETH_IP, PROTO_SCTP): "sctp",
    (ETH_IPV6, None): "ipv6", (ETH_IPV6, PROTO_ICMPV6): "icmp6", (ETH_IPV6, PROTO_TCP): "tcp6",
    (ETH_IPV6, PROTO_UDP): "udp6", (ETH_IPV6, PROTO_SCTP): "sctp6",
    (ETH_ARP, None): "arp", (ETH_RARP, None): "rarp",
}  # fmt: skip
"""The protocol keyword ``ovs-ofctl`` prints for an Ethernet type (and IP protocol)."""

_FIELD_ORDER = (
    "conj_id", "ct_state", "ct_zone", "ct_mark", "reg5", "reg6", "reg7", "in_port", "dl_vlan",
    "dl_src", "dl_dst", "arp_spa", "ipv6_src", "ipv6_dst", "nw_src", "nw_dst", "nw_proto",
    "icmp_type", "icmp_code", "tp_src", "tp_dst", "nd_target",
)  # fmt: skip
"""Where ``match_format()`` in OVS's lib/match.c prints each field (the protocol keyword comes
right after the conntrack fields)."""


@dataclass(frozen=True, slots=True)
class Match:
    """A flow's match before it is spelled: Ethernet type, IP protocol and the other fields."""

    dl_type: int | None = None
    nw_proto: int | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def with_(self, **more: str | int) -> Match:
        return Match(
            self.dl_type, self.nw_proto, self.fields + tuple((k, str(v)) for k, v in more.items())
        )

    def text(self) -> tuple[str, ...]:
        """The fields as ``ovs-ofctl`` prints them, in its order."""
        fields = dict(self.fields)
        keyword = None
        if self.dl_type is not None:
            keyword = _KEYWORDS.get((self.dl_type, self.nw_proto))
            if keyword is None:
                keyword = _KEYWORDS.get((self.dl_type, None), f"dl_type={self.dl_type:#06x}")
                if self.nw_proto is not None:
                    fields["nw_proto"] = str(self.nw_proto)
        out = [f"{k}={fields[k]}" for k in _FIELD_ORDER[:4] if k in fields]
        if keyword is not None:
            out.append(keyword)
        out += [f"{k}={fields[k]}" for k in _FIELD_ORDER[4:] if k in fields]
        return tuple(out)


def _reg(value: int) -> str:
    return f"{value:#x}"


def _set_reg(value: int, reg: int) -> str:
    return f"set_field:{value:#x}->reg{reg}"


def _resubmit(table: int) -> str:
    return f"resubmit(,{table})"


def _prefix(net: IPNetwork) -> str:
    """An address match as OVS prints it: the bare address for a host, else ``addr/len``."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _ip_field(version: int, direction: Direction) -> str:
    """``FLOW_FIELD_FOR_IPVER_AND_DIRECTION``: the remote end's address field."""
    src = direction is Direction.INGRESS
    if version == 4:
        return "nw_src" if src else "nw_dst"
    return "ipv6_src" if src else "ipv6_dst"


def port_masks(low: int, high: int) -> list[str]:
    """``[low, high]`` as the fewest value/mask matches (``port_rule_masking``), spelled as OVS
    prints a 16-bit field: the value in decimal and a mask other than all ones in hex."""
    out: list[str] = []
    while low <= high:
        size = 1
        while low % (size * 2) == 0 and low + size * 2 - 1 <= high and size < 0x10000:
            size *= 2
        mask = 0xFFFF & ~(size - 1)
        out.append(str(low) if mask == 0xFFFF else f"{low}/{mask:#x}")
        low += size
    return out


# --- security group rules as the agent holds them ---------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """A rule after ``SecurityGroup.update_rules``: protocol as a number, remote prefix split
    into source (ingress) or destination (egress) as the server sends it."""

    direction: Direction
    ethertype: Ethertype
    protocol: int | None
    port_min: int | None
    port_max: int | None
    prefix: IPNetwork | None
    remote_group: str | None

    @property
    def dl_type(self) -> int:
        return ETH_IP if self.ethertype is Ethertype.IPV4 else ETH_IPV6

    def priority_offset(self, conjunction: bool) -> int:
        """``rules.flow_priority_offset``: more specific rules get higher priorities, and rules
        without a remote group sit 4 above the conjunctions."""
        base = 0 if conjunction else 4
        if self.protocol is None:
            return base
        if self.protocol in (PROTO_ICMP, PROTO_ICMPV6):
            if self.port_min is None:
                return base + 1
            if self.port_max is None:
                return base + 2
        return base + 3


def _protocol_number(protocol: str | None, ethertype: Ethertype) -> int | None:
    if protocol is None:
        return None
    if protocol.isdigit():
        return int(protocol)
    if ethertype is Ethertype.IPV6 and protocol == "icmp":
        return PROTO_ICMPV6
    number = _PROTOCOL_NUMBERS.get(protocol)
    if number is None:
        raise InputError(f"protocol {protocol!r}: not a protocol name Neutron knows")
    return number


def _agent_rule(rule: SgRule) -> _Rule:
    prefix = rule.remote_ip_prefix
    if prefix is not None and prefix.prefixlen == 0:
        prefix = None  # ``is_valid_prefix``: 0.0.0.0/0 and ::/0 match nothing more
    return _Rule(
        rule.direction,
        rule.ethertype,
        _protocol_number(rule.protocol, rule.ethertype),
        rule.port_min,
        rule.port_max,
        prefix,
        rule.remote_group,
    )


# --- the builder ------------------------------------------------------------------------------


class _Builder:
    """Adds flows once each: the agent adds some (the global ``+inv+trk`` drops) for every
    port, and OVS keeps one flow per table, priority and match."""

    def __init__(self, flows: FlowList) -> None:
        self.flows = flows
        self.seen: set[tuple[int, int, tuple[str, ...]]] = set()

    def add(self, table: int, priority: int, match: Match, actions: Iterable[str]) -> None:
        text = match.text()
        key = (table, priority, text)
        if key in self.seen:
            return
        self.seen.add(key)
        self.flows.add(BR_INT, table, priority, text, ",".join(actions))


@dataclass(frozen=True, slots=True)
class _OfPort:
    """``OFPort``: a filtered port with the addresses it may use."""

    port: Port
    ofport: int
    vlan: int

    @property
    def pairs_v4(self) -> list[tuple[str, IPNetwork]]:
        """(MAC, address) pairs: allowed address pairs, then the fixed IPs with the port's MAC."""
        return self._pairs(4)

    @property
    def pairs_v6(self) -> list[tuple[str, IPNetwork]]:
        """As :attr:`pairs_v4`, plus the MAC's link-local address (``OFPort.update``)."""
        pairs = self._pairs(6)
        lla = (self.port.mac, ip_network(link_local(self.port.mac)))
        return pairs if lla in pairs else [*pairs, lla]

    def _pairs(self, version: int) -> list[tuple[str, IPNetwork]]:
        out: list[tuple[str, IPNetwork]] = []
        for pair in self.port.allowed_address_pairs:
            if pair.ip.version == version and (pair.mac, pair.ip) not in out:
                out.append((pair.mac, pair.ip))
        for ip in self.port.ips(version):
            item = (self.port.mac, ip_network(ip))
            if item not in out:
                out.append(item)
        return out

    @property
    def macs(self) -> list[str]:
        """``all_allowed_macs``: the port's MAC and those of its allowed address pairs."""
        return sorted({self.port.mac} | {p.mac for p in self.port.allowed_address_pairs})

    def in_port(self) -> Match:
        return Match(fields=(("reg5", _reg(self.ofport)), ("in_port", str(self.ofport))))

    def reg_port(self, dl_type: int | None = None, nw_proto: int | None = None) -> Match:
        return Match(dl_type, nw_proto, (("reg5", _reg(self.ofport)),))

    @property
    def output(self) -> str:
        return f"output:{self.ofport}"


def native_firewall_flows(flows: FlowList, scenario: Scenario, plugs: Sequence[VmPlug]) -> None:
    """Add to ``flows`` every br-int flow the native firewall installs for ``plugs``.

    A port with port security off gets only the two pass-through flows of
    ``_initialize_egress_no_port_security``.
    """
    b = _Builder(flows)
    _initialize_firewall(b)
    conj = _ConjIds()
    ordered = sorted(plugs, key=lambda p: p.port.id)
    for plug in ordered:
        if not plug.port.port_security:
            _egress_no_port_security(b, plug)
            continue
        port = _OfPort(plug.port, plug.ofport, plug.local_vlan)
        _initialize_port_flows(b, port)
        _initialize_egress(b, port)
        _initialize_ingress(b, port)
        _tracked(b, port, RULES_INGRESS_TABLE, port.output)
        _tracked(b, port, RULES_EGRESS_TABLE, _resubmit(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE))
        for _, rule in _port_rules(scenario, port.port, remote=False):
            _rule_flows(b, port, rule)
        _conjunction_flows(b, scenario, port, conj)
    _member_flows(b, scenario, conj)


def _initialize_firewall(b: _Builder) -> None:
    """``_drop_all_unmatched_flows``, ``_initialize_common_flows`` (a packet already tracked
    loses its conntrack state before the egress checks) and ``_initialize_third_party_tables``."""
    for table in OVS_FIREWALL_TABLES:
        b.add(table, 0, Match(), ["drop"])
    b.add(BASE_EGRESS_TABLE, 110, Match().with_(ct_state=TRACKED),
          ["ct_clear", _resubmit(BASE_EGRESS_TABLE)])  # fmt: skip
    b.add(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE, 1, Match(), ["NORMAL"])
    b.add(ACCEPTED_EGRESS_TRAFFIC_TABLE, 1, Match(),
          [_resubmit(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE)])  # fmt: skip
    for table in (ACCEPTED_INGRESS_TRAFFIC_TABLE, DROPPED_TRAFFIC_TABLE):
        b.add(table, 0, Match(), ["drop"])


def _egress_no_port_security(b: _Builder, plug: VmPlug) -> None:
    """``_initialize_egress_no_port_security``: mark the port and accept everything it sends."""
    b.add(
        TRANSIENT_TABLE, 100, Match().with_(in_port=plug.ofport),
        [_set_reg(plug.ofport, REG_PORT), _set_reg(plug.local_vlan, REG_NET),
         _resubmit(ACCEPT_OR_INGRESS_TABLE)],
    )  # fmt: skip
    b.add(ACCEPT_OR_INGRESS_TABLE, 80, Match().with_(reg5=_reg(plug.ofport)),
          [_resubmit(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE)])  # fmt: skip


def _initialize_port_flows(b: _Builder, port: _OfPort) -> None:
    """``initialize_port_flows``: table 60 tells egress (from the port) from ingress (to one
    of its MACs on its network's local VLAN, the tag stripped before the ingress tables)."""
    regs = [_set_reg(port.ofport, REG_PORT), _set_reg(port.vlan, REG_NET)]
    b.add(TRANSIENT_TABLE, 100, Match().with_(in_port=port.ofport),
          [*regs, _resubmit(BASE_EGRESS_TABLE)])  # fmt: skip
    for mac in port.macs:
        b.add(TRANSIENT_TABLE, 90, Match().with_(dl_vlan=port.vlan, dl_dst=mac),
              [*regs, "pop_vlan", _resubmit(BASE_INGRESS_TABLE)])  # fmt: skip


def _initialize_egress(b: _Builder, port: _OfPort) -> None:
    """``_initialize_egress`` and ``_initialize_egress_ipv6_icmp``: what the port may send
    before any rule is looked at (its own MAC/IP pairs only: anti-spoofing), DHCP, and the
    ACCEPT_OR_INGRESS table's entries for it."""
    normal = [_resubmit(ACCEPTED_EGRESS_TRAFFIC_NORMAL_TABLE)]
    to_rules = [f"ct(table={RULES_EGRESS_TABLE},zone={ZONE})"]
    base = port.in_port()
    for mac, ip in port.pairs_v4:
        b.add(
            BASE_EGRESS_TABLE,
            95,
            Match(ETH_ARP, None, base.fields).with_(dl_src=mac, arp_spa=_prefix(ip)),
            normal,
        )
        b.add(BASE_EGRESS_TABLE, 95, Match(ETH_RARP, None, base.fields).with_(dl_src=mac), normal)
        b.add(
            BASE_EGRESS_TABLE,
            65,
            Match(ETH_IP, None, base.fields).with_(dl_src=mac, nw_src=_prefix(ip)),
            to_rules,
        )
    icmp6 = Match(ETH_IPV6, PROTO_ICMPV6, base.fields)
    for mac, ip in port.pairs_v6:
        for icmp_type in ICMPV6_ALLOWED_EGRESS_TYPES:
            b.add(
                BASE_EGRESS_TABLE,
                95,
                icmp6.with_(dl_src=mac, ipv6_src=_prefix(ip), icmp_type=icmp_type),
                normal,
            )
        b.add(
            BASE_EGRESS_TABLE,
            95,
            icmp6.with_(icmp_type=ICMPV6_TYPE_NA, nd_target=_prefix(ip)),
            normal,
        )
    for mac, ip in port.pairs_v6:
        b.add(
            BASE_EGRESS_TABLE,
            65,
            Match(ETH_IPV6, None, base.fields).with_(dl_src=mac, ipv6_src=_prefix(ip)),
            to_rules,
        )
    # DHCP discovery, also from 0.0.0.0 before the port has its address.
    dhcp4 = [*port.pairs_v4, (port.port.mac, ip_network("0.0.0.0"))]
    for mac, ip in dhcp4:
        b.add(
            BASE_EGRESS_TABLE,
            80,
            Match(ETH_IP, PROTO_UDP, base.fields).with_(
                dl_src=mac, nw_src=_prefix(ip), tp_src=68, tp_dst=67
            ),
            [_resubmit(ACCEPT_OR_INGRESS_TABLE)],
        )
    for mac, ip in port.pairs_v6:
        b.add(
            BASE_EGRESS_TABLE,
            80,
            Match(ETH_IPV6, PROTO_UDP, base.fields).with_(
                dl_src=mac, ipv6_src=_prefix(ip), tp_src=546, tp_dst=547
            ),
            [_resubmit(ACCEPT_OR_INGRESS_TABLE)],
        )
    # No DHCP server in a VM, no router advertisements from one.
    dropped = [_resubmit(DROPPED_TRAFFIC_TABLE)]
    b.add(
        BASE_EGRESS_TABLE,
        70,
        Match(ETH_IP, PROTO_UDP, base.fields).with_(tp_src=67, tp_dst=68),
        dropped,
    )
    b.add(
        BASE_EGRESS_TABLE,
        70,
        Match(ETH_IPV6, PROTO_UDP, base.fields).with_(tp_src=547, tp_dst=546),
        dropped,
    )
    b.add(BASE_EGRESS_TABLE, 70, icmp6.with_(icmp_type=ICMPV6_TYPE_RA), dropped)
    b.add(BASE_EGRESS_TABLE, 10, base, ["ct_clear", _resubmit(DROPPED_TRAFFIC_TABLE)])
    # ACCEPT_OR_INGRESS: to a port of this node on the same network: its ingress pipeline.
    for mac in port.macs:
        b.add(
            ACCEPT_OR_INGRESS_TABLE,
            100,
            Match().with_(reg6=_reg(port.vlan), dl_dst=mac),
            [_set_reg(port.ofport, REG_PORT), _resubmit(BASE_INGRESS_TABLE)],
        )
    for dl_type in (ETH_IP, ETH_IPV6):
        b.add(
            ACCEPT_OR_INGRESS_TABLE,
            90,
            port.reg_port(dl_type).with_(ct_state=NEW),
            [f"ct(commit,zone={ZONE})", _resubmit(ACCEPTED_EGRESS_TRAFFIC_TABLE)],
        )
    b.add(ACCEPT_OR_INGRESS_TABLE, 80, port.reg_port(), normal)  # fmt: skip


def _initialize_ingress(b: _Builder, port: _OfPort) -> None:
    """``_initialize_ingress`` and ``_initialize_ingress_ipv6_icmp``: ARP, neighbour discovery,
    router advertisements and DHCP offers go straight to the port; IP is tracked (``ct()``)
    and judged in table 82."""
    out = [port.output]
    b.add(BASE_INGRESS_TABLE, 100, port.reg_port(ETH_ARP), out)
    for icmp_type in (*ICMPV6_ALLOWED_INGRESS_TYPES, ICMPV6_TYPE_RA):
        b.add(
            BASE_INGRESS_TABLE,
            100,
            port.reg_port(ETH_IPV6, PROTO_ICMPV6).with_(icmp_type=icmp_type),
            out,
        )
    b.add(BASE_INGRESS_TABLE, 95, port.reg_port(ETH_IP, PROTO_UDP).with_(tp_src=67, tp_dst=68), out)
    b.add(
        BASE_INGRESS_TABLE,
        95,
        port.reg_port(ETH_IPV6, PROTO_UDP).with_(tp_src=547, tp_dst=546),
        out,
    )
    for dl_type in (ETH_IP, ETH_IPV6):
        b.add(
            BASE_INGRESS_TABLE,
            90,
            port.reg_port(dl_type).with_(ct_state=NOT_TRACKED),
            [f"ct(table={RULES_INGRESS_TABLE},zone={ZONE})"],
        )
    b.add(BASE_INGRESS_TABLE, 80, port.reg_port().with_(ct_state=TRACKED),
          [_resubmit(RULES_INGRESS_TABLE)])  # fmt: skip


def _tracked(b: _Builder, port: _OfPort, table: int, accept: str) -> None:
    """``_initialize_tracked_ingress`` / ``_initialize_tracked_egress``: drop invalid packets
    and connections a removed rule had allowed (``ct_mark=0x1``), pass replies and related
    packets of the port's own zone, drop what is not established, and mark established
    connections no rule accepts any more."""
    dropped = [_resubmit(DROPPED_TRAFFIC_TABLE)]
    b.add(table, 50, Match().with_(ct_state=INVALID), dropped)
    b.add(table, 50, port.reg_port().with_(ct_mark=CT_MARK_INVALID), dropped)
    for state in (EST_REPLY, RELATED):
        b.add(table, 50,
              port.reg_port().with_(ct_state=state, ct_zone=port.vlan, ct_mark=CT_MARK_NORMAL),
              [accept])  # fmt: skip
    b.add(table, 40, port.reg_port().with_(ct_state=NOT_EST), dropped)
    for dl_type in (ETH_IP, ETH_IPV6):
        b.add(
            table,
            40,
            port.reg_port(dl_type).with_(ct_state=EST),
            [f"ct(commit,zone={ZONE},exec(set_field:{CT_MARK_INVALID}->ct_mark))"],
        )


def _port_rules(scenario: Scenario, port: Port, *, remote: bool) -> list[tuple[str, _Rule]]:
    """The rules of the port's groups (group id, rule), with or without a remote group."""
    out = []
    for sg_id in port.security_groups:
        for rule in scenario.security_group(sg_id).rules:
            if (rule.remote_group is not None) is remote:
                out.append((sg_id, _agent_rule(rule)))
    return out


def _rule_match(port: _OfPort, rule: _Rule, conjunction: bool) -> tuple[int, list[Match]]:
    """``create_flows_from_rule_and_port``: the rule's matches (one per port-range block) and
    priority, without the ct_state the caller adds."""
    priority = 70 + rule.priority_offset(conjunction)
    match = port.reg_port(rule.dl_type, rule.protocol)
    if rule.prefix is not None:
        match = match.with_(
            **{_ip_field(rule.prefix.version, rule.direction): _prefix(rule.prefix)}
        )
    if rule.protocol in (PROTO_ICMP, PROTO_ICMPV6):
        if rule.port_min is None:
            return priority, [match]
        match = match.with_(icmp_type=rule.port_min)
        if rule.port_max is not None:
            match = match.with_(icmp_code=rule.port_max)
        return priority, [match]
    if rule.protocol in _PORTS_PROTOCOLS and rule.port_min and rule.port_max:
        return priority, [match.with_(tp_dst=m) for m in port_masks(rule.port_min, rule.port_max)]
    return priority, [match]


def _accept_actions(port: _OfPort, direction: Direction, state: str) -> list[str]:
    """``populate_flow_common`` + ``create_accept_flows``: ingress outputs to the port (a new
    connection is committed first, then handed to table 92); egress goes on to table 73."""
    if direction is Direction.EGRESS:
        return [_resubmit(ACCEPT_OR_INGRESS_TABLE)]
    if state == NEW:
        return [f"ct(commit,zone={ZONE})", port.output, _resubmit(ACCEPTED_INGRESS_TRAFFIC_TABLE)]
    return [port.output]


def _table(direction: Direction) -> int:
    return RULES_INGRESS_TABLE if direction is Direction.INGRESS else RULES_EGRESS_TABLE


def _rule_flows(b: _Builder, port: _OfPort, rule: _Rule) -> None:
    """``add_flows_from_rules`` for a rule without a remote group: one flow per ct_state."""
    priority, matches = _rule_match(port, rule, conjunction=False)
    for match in matches:
        for state in (EST_NOT_REPLY, NEW):
            b.add(_table(rule.direction), priority, match.with_(ct_state=state),
                  _accept_actions(port, rule.direction, state))  # fmt: skip


# --- remote groups: conjunctions --------------------------------------------------------------

_ConjKey = tuple[str, str, Direction, Ethertype]
"""(security group, remote group, direction, ethertype): one block of 8 conjunction ids."""


class _ConjIds:
    """``ConjIdMap`` and ``ConjIPFlowManager``: id blocks, and per network which ids each
    remote group's members must feed."""

    BLOCK = 8

    def __init__(self) -> None:
        self.blocks: dict[_ConjKey, int] = {}
        # (local VLAN, direction, ethertype) -> remote group -> conjunction ids
        self.by_vlan: dict[tuple[int, Direction, Ethertype], dict[str, set[int]]] = defaultdict(
            lambda: defaultdict(set)
        )

    def add(self, vlan: int, sg_id: str, rule: _Rule) -> int:
        assert rule.remote_group is not None
        key = (sg_id, rule.remote_group, rule.direction, rule.ethertype)
        if key not in self.blocks:
            # The agent starts one block above the highest id found in br-int (none: 8).
            self.blocks[key] = self.BLOCK * (len(self.blocks) + 2)
        conj_id = self.blocks[key] + 2 * rule.priority_offset(conjunction=True)
        self.by_vlan[(vlan, rule.direction, rule.ethertype)][rule.remote_group].add(conj_id)
        return conj_id


def _conjunction_flows(b: _Builder, scenario: Scenario, port: _OfPort, conj: _ConjIds) -> None:
    """``_add_non_ip_conj_flows``: the port half (clause 2/2) of each remote-group rule, merged
    per (direction, ethertype, protocol) so overlapping port ranges share flows, and the flows
    that accept a completed conjunction (``conj_id=ID``, the id kept in reg7)."""
    grouped: dict[tuple[Direction, Ethertype, int | None], list[tuple[_Rule, int]]] = {}
    for sg_id, rule in _port_rules(scenario, port.port, remote=True):
        conj_id = conj.add(port.vlan, sg_id, rule)
        grouped.setdefault((rule.direction, rule.ethertype, rule.protocol), []).append(
            (rule, conj_id)
        )
    for (direction, ethertype, protocol), items in grouped.items():
        merged = _merge_port_ranges(items) if protocol in _PORTS_PROTOCOLS else _merge_common(items)
        for rule, ids in merged:
            priority, matches = _rule_match(port, rule, conjunction=True)
            for match in matches:
                for i, state in enumerate((EST_NOT_REPLY, NEW)):
                    b.add(_table(direction), priority, match.with_(ct_state=state),
                          [f"conjunction({c + i},2/2)" for c in sorted(ids)])  # fmt: skip
        all_ids = sorted({c for _, c in items})
        dl_type = ETH_IP if ethertype is Ethertype.IPV4 else ETH_IPV6
        for conj_id in all_ids:
            priority = 70 + conj_id % 8 // 2
            for i, state in enumerate((EST_NOT_REPLY, NEW)):
                match = Match(dl_type, None, (("conj_id", str(conj_id + i)),
                                              ("reg5", _reg(port.ofport)),
                                              ("ct_state", state)))  # fmt: skip
                b.add(_table(direction), priority, match,
                      [_set_reg(conj_id + i, REG_REMOTE_GROUP),
                       *_accept_actions(port, direction, state)])  # fmt: skip


def _merge_common(items: list[tuple[_Rule, int]]) -> list[tuple[_Rule, list[int]]]:
    """``merge_common_rules``: rules equal but for their ICMP type/code share one flow."""
    merged: dict[tuple[int | None, int | None], tuple[_Rule, list[int]]] = {}
    for rule, conj_id in items:
        entry = merged.setdefault((rule.port_min, rule.port_max), (rule, []))
        entry[1].append(conj_id)
    return list(merged.values())


def _merge_port_ranges(items: list[tuple[_Rule, int]]) -> list[tuple[_Rule, list[int]]]:
    """``merge_port_ranges``: overlapping port ranges cut into pieces that do not overlap,
    each with the ids of every range covering it; the whole range needs no port match."""
    if len(items) == 1:
        return [(items[0][0], [items[0][1]])]
    spans = [(r.port_min or 1, r.port_max or 65535, c) for r, c in items]
    cuts = sorted({lo for lo, _, _ in spans} | {hi + 1 for _, hi, _ in spans})
    template = items[0][0]
    out: list[tuple[_Rule, list[int]]] = []
    for lo, nxt in pairwise(cuts):
        ids = sorted({c for a, z, c in spans if a <= lo and nxt - 1 <= z})
        if ids:
            out.append((_with_ports(template, lo, nxt - 1), ids))
    if len(out) == 1 and (out[0][0].port_min, out[0][0].port_max) == (1, 65535):
        out = [(_with_ports(template, None, None), out[0][1])]
    return out


def _with_ports(rule: _Rule, low: int | None, high: int | None) -> _Rule:
    return _Rule(rule.direction, rule.ethertype, rule.protocol, low, high, rule.prefix, None)


def _member_flows(b: _Builder, scenario: Scenario, conj: _ConjIds) -> None:
    """``update_flows_for_vlan`` / ``create_flows_for_ip_address_and_mac``: the address half
    (clause 1/2) of every conjunction, per network and member address of the remote group
    (every port in the group, on any node), with all ids that address feeds at each priority."""
    for (vlan, direction, ethertype), remotes in conj.by_vlan.items():
        by_address: dict[tuple[IPNetwork, str], set[int]] = defaultdict(set)
        for remote_id, ids in remotes.items():
            for net, mac in _members(scenario, remote_id, ethertype.version):
                by_address[(net, mac)] |= ids
        by_prefix: dict[IPNetwork, set[int]] = defaultdict(set)
        for (net, _), ids in by_address.items():
            by_prefix[net] |= ids
        dl_type = ETH_IP if ethertype is Ethertype.IPV4 else ETH_IPV6
        field = _ip_field(ethertype.version, direction)
        for (net, mac), _ids in sorted(by_address.items(), key=lambda kv: _sort_key(kv[0][0])):
            match = Match(dl_type, None, (("reg6", _reg(vlan)), (field, _prefix(net))))
            if net.prefixlen == 0:
                match = match.with_(dl_src=mac)
            ids = by_prefix[net]
            for offset in range(4):
                chosen = sorted(c for c in ids if c % 8 // 2 == offset)
                if not chosen:
                    continue
                for i, state in enumerate((EST_NOT_REPLY, NEW)):
                    b.add(_table(direction), 70 + offset, match.with_(ct_state=state),
                          [f"conjunction({c + i},1/2)" for c in chosen])  # fmt: skip


def _sort_key(net: IPNetwork) -> tuple[int, int]:
    return int(net.network_address), net.prefixlen


def _members(scenario: Scenario, sg_id: str, version: int) -> list[tuple[IPNetwork, str]]:
    """The (address, MAC) pairs the server sends as the group's members: fixed IPs and
    allowed address pairs of every port in the group."""
    out: list[tuple[IPNetwork, str]] = []
    for port in scenario.ports:
        if sg_id not in port.security_groups:
            continue
        items: list[tuple[IPNetwork, str]] = [
            (ip_network(ip), port.mac) for ip in port.ips(version)
        ]
        items += [(p.ip, p.mac) for p in port.allowed_address_pairs if p.ip.version == version]
        for item in items:
            if item not in out:
                out.append(item)
    return out


def uses_native_firewall(scenario: Scenario) -> bool:
    """True when the scenario's agents run the native OVS firewall driver."""
    return scenario.firewall_driver is FirewallDriver.OPENVSWITCH


NO_IPTABLES = NodeFirewall("", "", ())
"""What the native driver writes with iptables and ipset: nothing (its ``iptables.Helper`` only
removes what a hybrid driver left behind)."""
