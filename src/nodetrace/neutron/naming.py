"""Neutron's names: a port's devices, chains, ipsets, conntrack zones, tunnel ports and VLANs.

Everything OpenStack-specific about names lives here, in both directions: from a port UUID to
``tap3b1f6a2c-8d``/``neutron-openvswi-i3b1f6a2c-8``, and from such a name back to the UUID
prefix it carries. Engines know only Linux and OVS; callers use this module to label results.
The rules are those of os-vif and the Neutron agents (see docs/lab.md for the sources).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address, ip_address

OPENVSWITCH_WRAP = "neutron-openvswi"
"""``basename(argv[0])[:16]`` of ``neutron-openvswitch-agent``: the prefix of wrapped chains."""
LINUXBRIDGE_WRAP = "neutron-linuxbri"
"""The same for ``neutron-linuxbridge-agent``."""
WRAPS = (OPENVSWITCH_WRAP, LINUXBRIDGE_WRAP)

DEVICE_NAME_LEN = 14
"""os-vif and Neutron cut device names to 14 characters (prefix + 11 of the port UUID)."""
MAX_CHAIN_LEN_WRAP = 11
"""Characters left for a wrapped chain's own name: 28 - len(wrap) - 1."""
IPSET_NAME_LEN = 29
"""31 minus the ``-n`` suffix of the temporary set used for swaps."""

ZONE_START = 4097

FILTER_TOP_CHAIN = "neutron-filter-top"
"""The only unwrapped chain; jumped to from the top of filter FORWARD and OUTPUT."""


class DeviceKind(StrEnum):
    """The per-port Linux devices of a hybrid-plugged port, named by their prefix."""

    TAP = "tap"
    QBR = "qbr"
    QVB = "qvb"
    QVO = "qvo"


class ChainKind(StrEnum):
    """The per-port chains of the iptables firewall, named by their one-letter prefix."""

    INGRESS = "i"
    """Traffic to the VM (``--physdev-out tap``)."""
    EGRESS = "o"
    """Traffic from the VM (``--physdev-in tap``)."""
    SPOOF = "s"
    """The IP/MAC anti-spoofing chain, called from the egress chain."""


def device_name(kind: DeviceKind, port_id: str) -> str:
    """``tap``/``qbr``/``qvb``/``qvo`` + port UUID, cut to 14 characters."""
    return (kind.value + port_id)[:DEVICE_NAME_LEN]


def tap_name(port_id: str) -> str:
    return device_name(DeviceKind.TAP, port_id)


def qbr_name(port_id: str) -> str:
    return device_name(DeviceKind.QBR, port_id)


def qvb_name(port_id: str) -> str:
    return device_name(DeviceKind.QVB, port_id)


def qvo_name(port_id: str) -> str:
    return device_name(DeviceKind.QVO, port_id)


@dataclass(frozen=True, slots=True)
class PortDevices:
    """The four Linux devices hybrid plugging makes for one port."""

    port_id: str
    tap: str
    qbr: str
    qvb: str
    qvo: str

    @classmethod
    def for_port(cls, port_id: str) -> PortDevices:
        return cls(
            port_id, tap_name(port_id), qbr_name(port_id), qvb_name(port_id), qvo_name(port_id)
        )


def wrapped(name: str, wrap: str = OPENVSWITCH_WRAP) -> str:
    """A wrapped chain's full name: the agent cuts ``name`` to 11 characters first."""
    return f"{wrap}-{name[:MAX_CHAIN_LEN_WRAP]}"


def chain_name(kind: ChainKind, port_id: str, wrap: str = OPENVSWITCH_WRAP) -> str:
    """``neutron-openvswi-i3b1f6a2c-8``: the prefix letter plus the first 10 UUID characters.

    The hybrid driver names chains from the bare port UUID; the linuxbridge driver strips
    ``tap`` from the device name instead. Both give the same 11 characters.
    """
    return wrapped(kind.value + port_id, wrap)


def sg_chain(wrap: str = OPENVSWITCH_WRAP) -> str:
    return wrapped("sg-chain", wrap)


def sg_fallback_chain(wrap: str = OPENVSWITCH_WRAP) -> str:
    return wrapped("sg-fallback", wrap)


def ipset_name(sg_id: str, ethertype: str = "IPv4") -> str:
    """``NIPv4`` + the first 24 characters of the security group UUID (29 in all)."""
    if ethertype not in ("IPv4", "IPv6"):
        raise ValueError(f"ethertype must be IPv4 or IPv6, not {ethertype!r}")
    return ("N" + ethertype + sg_id)[:IPSET_NAME_LEN]


def tunnel_port_name(tunnel_type: str, remote_ip: str | IPv4Address | IPv6Address) -> str:
    """``vxlan-0a000032``: type + the remote IPv4 address as 8 hex digits.

    IPv6 remotes use a hash in Neutron; they are not supported here and raise ``ValueError``.
    """
    addr = ip_address(remote_ip) if isinstance(remote_ip, str) else remote_ip
    if not isinstance(addr, IPv4Address):
        raise ValueError(f"{remote_ip}: only IPv4 tunnel endpoints are supported")
    return f"{tunnel_type}-{int(addr):08x}"


def provider_patch_names(physical_bridge: str) -> tuple[str, str]:
    """The patch port pair linking br-int and a provider bridge: (``int-br-ex``, ``phy-br-ex``)."""
    return (f"int-{physical_bridge}"[:15], f"phy-{physical_bridge}"[:15])


def zone_comment(port_id: str) -> str:
    """The comment of a port's raw-table CT rules (part of the rule, present even uncommented)."""
    return f"Set zone for {port_id}"


# --- reverse direction: from a name seen in a snapshot or log back to its port ---------------

_DEVICE = re.compile(r"^(tap|qbr|qvb|qvo)([0-9a-f]{8}-[0-9a-f]{2})$")
_CHAIN = re.compile(r"^(neutron-[a-z]{8})-([ios])([0-9a-f]{8}-[0-9a-f])$")
_IPSET = re.compile(r"^N(IPv4|IPv6)([0-9a-f-]{1,24})$")
_TUNNEL = re.compile(r"^(vxlan|gre|geneve)-([0-9a-f]{8})$")


@dataclass(frozen=True, slots=True)
class DeviceName:
    """A per-port device name split into its kind and the 11-character UUID prefix it carries."""

    kind: DeviceKind
    port_prefix: str


@dataclass(frozen=True, slots=True)
class ChainName:
    """A per-port chain name split into wrap, kind and the 10-character UUID prefix it carries."""

    wrap: str
    kind: ChainKind
    port_prefix: str


@dataclass(frozen=True, slots=True)
class IpsetName:
    ethertype: str
    sg_prefix: str


@dataclass(frozen=True, slots=True)
class TunnelPortName:
    tunnel_type: str
    remote_ip: IPv4Address


def parse_device_name(name: str) -> DeviceName | None:
    """``qvo3b1f6a2c-8d`` → (QVO, ``3b1f6a2c-8d``); ``None`` for any other name."""
    m = _DEVICE.match(name)
    return DeviceName(DeviceKind(m.group(1)), m.group(2)) if m else None


def parse_chain_name(name: str) -> ChainName | None:
    """``neutron-openvswi-i3b1f6a2c-8`` → (wrap, INGRESS, ``3b1f6a2c-8``); else ``None``."""
    m = _CHAIN.match(name)
    return ChainName(m.group(1), ChainKind(m.group(2)), m.group(3)) if m else None


def parse_ipset_name(name: str) -> IpsetName | None:
    m = _IPSET.match(name)
    return IpsetName(m.group(1), m.group(2)) if m else None


def parse_tunnel_port_name(name: str) -> TunnelPortName | None:
    """``vxlan-0a000032`` → (``vxlan``, 10.0.0.50); ``None`` for other names."""
    m = _TUNNEL.match(name)
    return TunnelPortName(m.group(1), IPv4Address(int(m.group(2), 16))) if m else None


def port_for_prefix(prefix: str, port_ids: Iterable[str]) -> str | None:
    """The one port UUID that starts with ``prefix``; ``None`` if none or several do."""
    found = [p for p in port_ids if p.startswith(prefix)]
    return found[0] if len(found) == 1 else None


def port_for_name(name: str, port_ids: Iterable[str]) -> str | None:
    """The port that a per-port device or chain name belongs to, among known ``port_ids``."""
    dev = parse_device_name(name)
    if dev is not None:
        return port_for_prefix(dev.port_prefix, port_ids)
    chain = parse_chain_name(name)
    if chain is not None:
        return port_for_prefix(chain.port_prefix, port_ids)
    return None


_ZONE_RULE = re.compile(
    r"(?:--physdev-in|-i) (\S+) .*--comment \"?Set zone for ([0-9a-f-]{36})\"? -j CT --zone (\d+)"
)


@dataclass(frozen=True, slots=True)
class ZoneAssignment:
    """One raw-table CT rule: packets entering through ``device`` are tracked in ``zone``."""

    device: str
    port_id: str
    zone: int


def zones_from_rule_texts(rule_texts: Iterable[str]) -> tuple[ZoneAssignment, ...]:
    """Read the agent's zone map back from its raw-table rules, as the agent does at restart.

    Takes rule lines as ``iptables-save`` prints them (``-A neutron-openvswi-PREROUTING
    -m physdev --physdev-in qvb3b1f6a2c-8d -m comment --comment "Set zone for <uuid>" -j CT
    --zone 4097``); other lines are ignored.
    """
    found = (_ZONE_RULE.search(text) for text in rule_texts)
    return tuple(ZoneAssignment(m[1], m[2], int(m[3])) for m in found if m)


_LVID_TUNNEL = re.compile(
    r"\btun_id=(0x[0-9a-f]+|\d+)\b.*\bactions=(?:mod_vlan_vid:(\d+)"
    r"|push_vlan:0x8100,set_field:(\d+)->vlan_vid)"
)
_LVID_PROVIDER = re.compile(
    r"\bdl_vlan=(\d+)\b.*\bactions=(?:mod_vlan_vid:(\d+)"
    r"|set_field:(\d+)->vlan_vid)"
)


@dataclass(frozen=True, slots=True)
class LocalVlan:
    """A network's host-local VLAN and the segmentation id (VNI, GRE key or VLAN) it maps to."""

    segmentation_id: int
    local_vlan: int


def _lvid(plain: str | None, oxm: str | None) -> int:
    if plain is not None:
        return int(plain)
    # OF1.3 set_field on vlan_vid carries the OFPVID_PRESENT bit (0x1000).
    return int(oxm or "0") & 0xFFF


def local_vlans_from_tunnel_flows(flow_lines: Iterable[str]) -> tuple[LocalVlan, ...]:
    """The agent's VLAN map, read from br-tun's tunnel-to-VLAN flows (tables 3, 4 and 6).

    Accepts ``ovs-ofctl dump-flows`` lines in OF1.0 form (``tun_id=0x40d
    actions=mod_vlan_vid:1,resubmit(,10)``) and OF1.3 form (``push_vlan:0x8100,
    set_field:4097->vlan_vid,goto_table:10``).
    """
    return _local_vlans(flow_lines, _LVID_TUNNEL, 0)


def local_vlans_from_provider_flows(flow_lines: Iterable[str]) -> tuple[LocalVlan, ...]:
    """The VLAN map of provider networks, from br-int table 0 (``dl_vlan=<seg>`` → lvid)."""
    return _local_vlans(flow_lines, _LVID_PROVIDER, 10)


def _local_vlans(
    flow_lines: Iterable[str], pattern: re.Pattern[str], base: int
) -> tuple[LocalVlan, ...]:
    found = (pattern.search(line) for line in flow_lines)
    return tuple(LocalVlan(int(m[1], base), _lvid(m[2], m[3])) for m in found if m)


# --- every per-port device Neutron names, and raw-table zone rules of every release ----------

_ANY_PORT_DEVICE = re.compile(
    r"^(tap|qbr|qvb|qvo|vhu|ns-|qr-|qg-|ha-|fg-|sg-)([0-9a-f]{8}-[0-9a-f]{2})$"
)
_ROUTER_LINK = re.compile(r"^(rfp-|fpr-)([0-9a-f]{8}-[0-9a-f])$")


@dataclass(frozen=True, slots=True)
class NeutronDevice:
    """A device name Neutron or os-vif made, split into its prefix and the UUID part it carries.

    ``uuid_prefix`` is the port UUID's first 11 characters, except for the DVR router links
    ``rfp-``/``fpr-``, which carry the first 10 characters of the *router* UUID.
    """

    prefix: str
    """``tap``, ``qbr``, ``qvb``, ``qvo``, ``vhu``, ``ns-`` (the namespace end of an agent's
    veth when ``ovs_use_veth`` is set), ``qr-``, ``qg-``, ``ha-``, ``fg-``, ``sg-``, ``rfp-`` or
    ``fpr-``."""
    uuid_prefix: str

    @property
    def is_router_link(self) -> bool:
        return self.prefix in ("rfp-", "fpr-")


def parse_neutron_device(name: str) -> NeutronDevice | None:
    """``qr-3a70b31c-3f`` → (``qr-``, ``3a70b31c-3f``); ``None`` for a name Neutron did not make."""
    m = _ANY_PORT_DEVICE.match(name) or _ROUTER_LINK.match(name)
    return NeutronDevice(m.group(1), m.group(2)) if m else None


_CT_ZONE = re.compile(r"-j CT (?:.* )?--zone (\d+)\b")
_ZONE_DEVICE = re.compile(r"(?:--physdev-in|(?:^|\s)-i) (\S+)")
_ZONE_COMMENT = re.compile(r"Set zone for ([0-9a-f-]{8,36})")


@dataclass(frozen=True, slots=True)
class ZoneRule:
    """A raw-table ``CT --zone`` rule of any release: packets entering through ``device`` are
    tracked in ``zone``. ``port_id`` is the UUID of its ``Set zone for`` comment; rules of
    older releases (Newton and before) have no comment, so it is ``None`` there."""

    device: str
    zone: int
    port_id: str | None


def zone_rule_from_text(text: str) -> ZoneRule | None:
    """Read one raw-table rule as ``iptables-save`` prints it, with or without comment:

    ``-A neutron-openvswi-PREROUTING -m physdev --physdev-in qvb3b1f6a2c-8d -j CT --zone 1``.
    """
    zone = _CT_ZONE.search(text)
    device = _ZONE_DEVICE.search(text)
    if zone is None or device is None:
        return None
    comment = _ZONE_COMMENT.search(text)
    return ZoneRule(device.group(1), int(zone.group(1)), comment.group(1) if comment else None)
