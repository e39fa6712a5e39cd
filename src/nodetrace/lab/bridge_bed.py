"""A Linux bridge with br_netfilter in its own namespace, and one "host" namespace per port.

This is the smallest real thing a netfilter prediction can be checked against: frames sent from
one host cross the bridge, so the kernel runs them through PREROUTING, FORWARD and POSTROUTING
with ``IN=``/``OUT=`` naming the bridge and ``PHYSIN=``/``PHYSOUT=`` naming the ports, exactly
as on a compute node's ``qbr`` bridge. ``bridge-nf-call-iptables`` is 1 by default in every new
namespace, so nothing needs enabling.

Everything is created through :class:`~nodetrace.lab.resources.Resources`, so the bed is
removed with the lab (namespaces deleted by their recorded names). Names derive from one
caller-chosen ``prefix`` that must be unique per run (``tests/conftest.py: unique()``)::

    bed = build_bridge_bed(lab, prefix=unique("nf"), hosts=[HostSpec("a"), HostSpec("b")])
    load_ruleset(bed, rules_text, backend=Backend.LEGACY)
    bed.host("a").port        # the bridge port leading to host a, e.g. "nf3c9a1fa"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nodetrace.lab.resources import Resources
from nodetrace.lab.run import CommandError, run
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import Family


def _tool(backend: Backend, family: Family, verb: str) -> str:
    """``iptables-legacy-restore``, ``ip6tables-nft-save`` and the like."""
    if backend is Backend.UNKNOWN:
        raise CommandError(f"no {verb} command for backend {backend.value}")
    return f"{'ip6' if family is Family.IPV6 else 'ip'}tables-{backend.value}-{verb}"


@dataclass(frozen=True, slots=True)
class HostSpec:
    """One host to hang off the bridge.

    ``name`` is short (it becomes part of interface names: at most 6 characters). ``mac``
    defaults to a locally administered address derived from the port number. ``addresses`` are
    CIDR strings put on the host's ``eth0``; leave them empty for a pure packet sink whose kernel
    never answers (crafted packets then cross the bridge without provoking replies). ``port``
    names the bridge port (default: the bed's prefix + ``name``), e.g. the tap device a
    generated Neutron ruleset names; kernel log lines are told apart by device names, so it
    must not be in use by another lab on the machine.
    """

    name: str
    mac: str | None = None
    addresses: tuple[str, ...] = ()
    port: str | None = None


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    netns: str
    """The host's own namespace."""
    ifname: str
    """Its interface inside ``netns`` (always ``eth0``)."""
    port: str
    """The veth end enslaved to the bridge, in the bed's namespace (``PHYSIN``/``PHYSOUT``)."""
    mac: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BridgeBed:
    netns: str
    """The namespace holding the bridge and the rulesets (the "compute node")."""
    bridge: str
    hosts: tuple[Host, ...]
    bridge_mac: str = ""
    """The bridge's own MAC when it has an address (frames to the bed itself go there)."""

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def devices(self) -> frozenset[str]:
        """Every device name of the bed in TRACE lines (bridge and ports), all unique to it."""
        return frozenset({self.bridge, *(h.port for h in self.hosts)})


BRIDGE_MAC = "02:00:00:00:fe:01"


def _mac_for(prefix_index: int) -> str:
    return f"02:00:00:00:{prefix_index >> 8 & 0xFF:02x}:{prefix_index & 0xFF:02x}"


def build_bridge_bed(
    res: Resources,
    *,
    prefix: str,
    hosts: Sequence[HostSpec],
    ipv6: bool = False,
    static_fdb: bool = True,
    bridge_address: str | None = None,
    bridge: str | None = None,
) -> BridgeBed:
    """Create the bed namespace, its bridge, and a veth port plus namespace per host.

    ``prefix`` must be unique per run and at most 9 characters, so that port names
    (``prefix + host name``) fit in 15. With ``ipv6`` off (the default) IPv6 is disabled in every
    namespace, so no router solicitation or DAD frame crosses the bridge unasked. With
    ``static_fdb`` each host's MAC is pinned to its port, so a frame to a host is forwarded to
    that port only (no flooding, one FORWARD pass per frame). ``bridge_address`` (CIDR) gives
    the bridge itself an address, for traffic to INPUT and from OUTPUT. ``bridge`` names the
    bridge (default: ``prefix + "br"``).
    """
    if len(prefix) > 9:
        raise ValueError(f"prefix {prefix!r} is longer than 9 characters")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names) or any(len(n) > 6 or not n.isalnum() for n in names):
        raise ValueError("host names must be unique, alphanumeric, at most 6 characters")
    netns = res.add_netns(f"{prefix}-bed")
    bridge = bridge or f"{prefix}br"
    if not ipv6:
        _disable_ipv6(netns)
    # No multicast: a device that may send IGMP/MLD reports would put unasked frames in traces.
    # mcast_snooping 0: a snooping bridge joins 224.0.0.106 and sends IGMP reports of its own.
    run(["ip", "-n", netns, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0"])
    run(["ip", "-n", netns, "link", "set", bridge, "multicast", "off"])
    bridge_mac = ""
    if bridge_address:
        # A fixed MAC: otherwise the bridge takes its lowest port's, which changes as ports join.
        bridge_mac = BRIDGE_MAC
        run(["ip", "-n", netns, "link", "set", bridge, "address", bridge_mac])
        run(["ip", "-n", netns, "addr", "add", bridge_address, "dev", bridge])
    run(["ip", "-n", netns, "link", "set", bridge, "up"])
    made: list[Host] = []
    for index, spec in enumerate(hosts, 1):
        host_ns = res.add_netns(f"{prefix}-{spec.name}")
        if not ipv6:
            _disable_ipv6(host_ns)
        port = spec.port or f"{prefix}{spec.name}"
        mac = spec.mac or _mac_for(index)
        run(
            [
                "ip", "-n", netns, "link", "add", port, "type", "veth",
                "peer", "name", "eth0", "netns", host_ns,
            ]
        )  # fmt: skip
        run(["ip", "-n", host_ns, "link", "set", "eth0", "address", mac, "multicast", "off"])
        for addr in spec.addresses:
            run(["ip", "-n", host_ns, "addr", "add", addr, "dev", "eth0"])
        run(["ip", "-n", host_ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", netns, "link", "set", port, "master", bridge, "up"])
        if static_fdb:
            run(["bridge", "-n", netns, "fdb", "replace", mac, "dev", port, "master", "static"])
        made.append(Host(spec.name, host_ns, "eth0", port, mac, tuple(spec.addresses)))
    return BridgeBed(netns, bridge, tuple(made), bridge_mac)


def add_neighbors(bed: BridgeBed, addresses: dict[str, str]) -> None:
    """Pin ``address -> host name`` in the bed's neighbour table (on the bridge), so that the
    bed reaches hosts that have no address of their own without ARP crossing the bridge."""
    for address, name in addresses.items():
        mac = bed.host(name).mac
        run(["ip", "-n", bed.netns, "neigh", "replace", address, "lladdr", mac, "dev", bed.bridge,
             "nud", "permanent"])  # fmt: skip


def _disable_ipv6(netns: str) -> None:
    for key in ("all", "default"):
        run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"])


def load_ruleset(
    bed: BridgeBed, text: str, *, backend: Backend, family: Family = Family.IPV4
) -> None:
    """Load an ``iptables-save`` text with ``iptables-{legacy,nft}-restore`` in the bed.

    Only the tables named in ``text`` are touched; in a fresh namespace they are also the only
    tables that exist, which decides the ``policy`` lines TRACE prints.
    """
    run([_tool(backend, family, "restore")], netns=bed.netns, input=text)


def save_ruleset(bed: BridgeBed, *, backend: Backend, family: Family = Family.IPV4) -> str:
    """What ``iptables-{legacy,nft}-save`` prints in the bed now."""
    return run([_tool(backend, family, "save")], netns=bed.netns).stdout


def load_ipsets(bed: BridgeBed, text: str) -> None:
    """Create sets from ``ipset save`` text (``create``/``add`` lines) in the bed."""
    run(["ipset", "restore"], netns=bed.netns, input=text)
