"""A Neutron port's addresses, read back from what the agent wrote on the node.

The hybrid firewall's anti-spoofing chain (``neutron-openvswi-s<port>``) lists every IP/MAC
pair the port may send from, one ``-s IP -m mac --mac-source MAC -j RETURN`` rule each, fixed
IPs and allowed address pairs alike. That chain is the one place on a compute node where a
port's addresses are written down, so a packet given only by its ports can be completed from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from nodetrace.model.netfilter import MacMatch, Rule, Ruleset
from nodetrace.neutron.naming import WRAPS, ChainKind, chain_name

IPAddress = IPv4Address | IPv6Address

HOST_PREFIX = {4: 32, 6: 128}


def port_addresses(rulesets: tuple[Ruleset | None, ...], port_id: str) -> tuple[IPAddress, ...]:
    """The single addresses the port may send from (IPv4 and IPv6), in rule order.

    Address-pair entries that are whole networks are left out: they name no one address.
    """
    entries = spoof_entries(rulesets, port_id)
    return tuple(dict.fromkeys(e.ip for e in entries if e.ip is not None and e.mac is not None))


@dataclass(frozen=True, slots=True)
class SpoofEntry:
    """One ``RETURN`` rule of a port's anti-spoofing chain: an address and MAC it may send from.

    ``ip`` is ``None`` for a whole-network entry (an address pair naming a subnet)."""

    ip: IPAddress | None
    mac: str | None
    rule: Rule

    @property
    def source(self) -> str:
        where = f" ({self.rule.pos})" if self.rule.pos is not None else ""
        return f"iptables chain {self.rule.chain} rule {self.rule.position}{where}"


def spoof_entries(rulesets: tuple[Ruleset | None, ...], port_id: str) -> tuple[SpoofEntry, ...]:
    """Every address/MAC pair of the port's anti-spoofing chain, with the rule saying it.

    ``port_id`` needs only the 10 characters the chain name keeps.
    """
    found: list[SpoofEntry] = []
    for ruleset in rulesets:
        if ruleset is None:
            continue
        for wrap in WRAPS:
            chain = ruleset.chain("filter", chain_name(ChainKind.SPOOF, port_id, wrap))
            if chain is None:
                continue
            for rule in chain.rules:
                if rule.target.name != "RETURN":
                    continue
                macs = [m.source for m in rule.matches if isinstance(m, MacMatch)]
                mac = macs[0].value if macs and macs[0] is not None else None
                if mac is not None and macs[0] is not None and macs[0].negated:
                    continue
                src = rule.ip.src
                if src is not None and src.negated:
                    continue
                if src is None and mac is None:
                    continue
                ip = None
                if src is not None and src.value.prefixlen == HOST_PREFIX[src.value.version]:
                    ip = src.value.network_address
                found.append(SpoofEntry(ip, mac, rule))
    return tuple(found)
