"""Load any snapshot source (bundle, sosreport, plain folder; folder or archive) into a
:class:`~nodetrace.model.snapshot.Snapshot`.

Every file is parsed leniently: malformed lines become diagnostics with file, line and reason,
and whatever parsed is kept. What the source lacks is listed in ``Snapshot.missing`` with the
reason (not collected, tool missing, command failed), so the walk can state its assumptions.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nodetrace.errors import DiagnosticSink, InputError, ParseError, SourcePos
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import Backend, Ruleset
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.packet import Family
from nodetrace.model.snapshot import (
    DatapathPort,
    Missing,
    NamespaceState,
    OvsdbRecord,
    RawOutput,
    Snapshot,
    SourceKind,
    Sysctls,
)
from nodetrace.model.topology import (
    MAIN_NS,
    BridgeLink,
    BridgeVlan,
    FdbEntry,
    Interface,
    LinkKind,
    NamespaceId,
    Neighbour,
    Route,
    RouteRule,
    Topology,
)
from nodetrace.parsers import bridge_json, ip_json, ip_text
from nodetrace.parsers.brctl_show import BrctlBridge, parse_brctl_show
from nodetrace.parsers.ip_addr_oneline import parse_ip_addr_oneline
from nodetrace.parsers.ipset_list import parse_ipset_list
from nodetrace.parsers.ipset_save import parse_ipset_save
from nodetrace.parsers.iptables_list import LISTING_LIMITS, parse_iptables_list
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.nft_list_ruleset import (
    NftListing,
    attach_nft_handles,
    parse_nft_list_ruleset,
)
from nodetrace.parsers.ovs_appctl_dpctl_show import parse_ovs_appctl_dpctl_show
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_tunnel_underlay import (
    parse_ovs_appctl_ovs_route_show,
    parse_ovs_appctl_tnl_neigh_show,
)
from nodetrace.parsers.ovs_vsctl_list_text import parse_ovs_vsctl_list_text
from nodetrace.parsers.sysctl import parse_sysctl
from nodetrace.snapshot.bundle import MANIFEST, read_bundle
from nodetrace.snapshot.commands import KNOWN_KINDS, TABLES, command_of, ovs_program
from nodetrace.snapshot.folder import read_folder
from nodetrace.snapshot.listing import OK, Entry, Listing
from nodetrace.snapshot.ovs import build_switch
from nodetrace.snapshot.sosreport import read_sosreport
from nodetrace.snapshot.tree import ArchiveTree, SubTree, find_root, open_tree

T = TypeVar("T")
E = TypeVar("E")

RECORD_TABLES = {"ovs-vsctl-record-port": "Port", "ovs-vsctl-record-interface": "Interface"}
"""Single-record listings, and the OVSDB table each lists a row of."""

DPCTL_SHOW = "ovs-appctl-dpctl-show"
"""Read by the loader itself: it says which devices are OVS ports, not what OVS does."""

UNDERLAY_KINDS = ("ovs-appctl-ovs-route-show", "ovs-appctl-tnl-neigh-show", "ovs-appctl-dpif-show")
"""Read into the snapshot's own fields (``ovs_routes``, ``ovs_tunnel_neighbours``, ``ovs_dpif``)."""

COUNTER_KINDS = frozenset({"ip-link-stats", "nstat", "conntrack-stats"})
"""Counters only (``snapshot/counters.py`` reads them for ``nodetrace diff``)."""

RAW_KINDS = (
    frozenset(
        k
        for k in KNOWN_KINDS
        if k.startswith(("ovs-", "conntrack-")) and k != DPCTL_SHOW and k not in UNDERLAY_KINDS
    )
    | COUNTER_KINDS
)
"""Outputs kept as text in the snapshot for the layers that parse them (Open vSwitch state,
conntrack tables, counters)."""

EXPECTED_MAIN = ("ovs-vsctl-list-bridge", "bridge-fdb", "ip6tables-save")

_OTHER = {
    "iptables-legacy-save": Backend.LEGACY,
    "iptables-nft-save": Backend.NFT,
    "ip6tables-legacy-save": Backend.LEGACY,
    "ip6tables-nft-save": Backend.NFT,
}


def open_listing(path: Path) -> Listing:
    """Find out what ``path`` is (bundle, sosreport or plain folder) and list its outputs."""
    tree = open_tree(path)
    root = find_root(tree, (MANIFEST, "sos_commands"))
    files = root.files()
    if MANIFEST in files:
        try:
            listing = read_bundle(root)
        except InputError as err:
            listing = read_folder(root)
            listing.notes.append(f"{err}; read as a plain folder instead")
    elif any(f.startswith("sos_commands/") for f in files):
        listing = read_sosreport(root)
    else:
        listing = read_folder(root)
    listing.notes[:0] = tree.problems
    return listing


def load(path: str | Path) -> Snapshot:
    """Load the snapshot at ``path``: a folder or archive holding a bundle, sosreport or outputs."""
    p = Path(path)
    listing = open_listing(p)
    try:
        return _Loader(listing, str(p)).snapshot()
    finally:
        if isinstance(listing.root.tree, ArchiveTree):
            listing.root.tree.close()


class _Loader:
    def __init__(self, listing: Listing, source: str) -> None:
        self.listing = listing
        self.source = source
        self.sink = DiagnosticSink()
        self.missing: list[Missing] = []
        self.root: SubTree = listing.root
        self._nft_listings: dict[str, NftListing | None] = {}
        self._namespace_ids: dict[str, tuple[NamespaceId, ...]] = {}
        self.notes: list[str] = []

    # -- reading entries ---------------------------------------------------------------

    def text(self, entry: Entry | None, kind: str, netns: str = MAIN_NS) -> tuple[str, str] | None:
        """The text of an entry, or ``None`` (recording why it is missing)."""
        if entry is None:
            self.missing.append(
                Missing(kind, "not in the snapshot", netns, command=command_of(kind))
            )
            return None
        command = command_of(kind, entry.bridge)
        if entry.status != OK or entry.path is None:
            reason = entry.status + (f": {entry.detail.splitlines()[0]}" if entry.detail else "")
            # The command ran and failed: its own error says more than its name would.
            self.missing.append(Missing(kind, reason, netns, entry.bridge))
            return None
        try:
            text = self.root.read_text(entry.path)
        except InputError as err:
            self.missing.append(Missing(kind, str(err), netns, entry.bridge, command))
            return None
        return text, self.root.display(entry.path)

    def parse(
        self, kind: str, netns: str, parser: Callable[[str, str], T], *, quiet: bool = False
    ) -> T | None:
        entry = self.listing.find(kind, netns)
        if entry is None and quiet:
            return None
        got = self.text(entry, kind, netns)
        if got is None:
            return None
        text, where = got
        before = len(self.sink.items)
        try:
            return parser(text, where)
        except ParseError as err:  # a parser that could not even start
            self.sink.error(err)
            return None
        finally:
            if entry is not None and entry.truncated and len(self.sink.items) == before:
                self.sink.warn(SourcePos(where, 0), "output was cut at the collector's limit")

    def output(
        self,
        kind: str,
        netns: str,
        parser: Callable[..., T],
        /,
        *,
        json: Callable[..., T] | None = None,
        quiet: bool = True,
        **options: object,
    ) -> T | None:
        """An output read by ``parser(text, source=, sink=, **options)``, or by ``json`` when
        the text is iproute2's JSON; ``None`` when the snapshot does not have it."""

        def parse(text: str, where: str) -> T:
            chosen = json if json is not None and _is_json(text) else parser
            return chosen(text, source=where, sink=self.sink, **options)

        return self.parse(kind, netns, parse, quiet=quiet)

    # -- per kind ----------------------------------------------------------------------

    def interfaces(self, netns: str) -> tuple[Interface, ...]:
        for kind in ("ip-addr", "ip-link"):
            entry = self.listing.find(kind, netns)
            if entry is not None and entry.status == OK:
                got = self.text(entry, kind, netns)
                if got is None:
                    continue
                text, where = got
                found = _links(text, where, self.sink, netns)
                if _is_json(text):
                    return found
                if kind == "ip-addr" and not _has_details(found):
                    return self.with_link_details(found, netns)
                if kind == "ip-link":
                    return self.with_oneline_addresses(found, netns)
                return found
        self.text(self.listing.find("ip-link", netns), "ip-link", netns)
        return ()

    def with_oneline_addresses(
        self, interfaces: tuple[Interface, ...], netns: str
    ) -> tuple[Interface, ...]:
        """Addresses from ``ip -o address`` for devices ``ip link`` listed without them."""
        if any(i.addresses for i in interfaces):
            return interfaces
        addresses = self.output("ip-addr-oneline", netns, parse_ip_addr_oneline)
        if not addresses:
            return interfaces
        return tuple(
            dataclasses.replace(i, addresses=addresses[i.name]) if i.name in addresses else i
            for i in interfaces
        )

    def with_link_details(
        self, interfaces: tuple[Interface, ...], netns: str
    ) -> tuple[Interface, ...]:
        """``ip address`` without ``-d`` does not say what a device is; an ``ip -d link`` of
        the same node (sos collects both) does: take kind, peer, bridge and master from it."""
        entry = self.listing.find("ip-link", netns)
        text = self.raw_text(entry)
        if entry is None or entry.path is None or text is None:
            return interfaces
        links = _links(text, self.root.display(entry.path), DiagnosticSink(), netns)
        if not _has_details(links):
            return interfaces
        by_name = {i.name: i for i in links}
        out = []
        for iface in interfaces:
            link = by_name.get(iface.name)
            if link is not None:
                derived = iface.veth is not None and bool(iface.veth.derived)
                iface = dataclasses.replace(
                    iface,
                    kind=link.kind,
                    detail=link.detail if derived or iface.detail is None else iface.detail,
                    master=iface.master or link.master,
                    master_kind=iface.master_kind or link.master_kind,
                    bridge_port=iface.bridge_port or link.bridge_port,
                )
            out.append(iface)
        return tuple(out)

    def routes(self, netns: str) -> tuple[Route, ...]:
        read = ip_text.parse_ip_route_text
        return self.both_families("route", netns, read, ip_json.parse_ip_route, quiet_v4=False)

    def rules(self, netns: str) -> tuple[RouteRule, ...]:
        return self.both_families("rule", netns, ip_text.parse_ip_rule_text, ip_json.parse_ip_rule)

    def both_families(
        self,
        what: str,
        netns: str,
        parser: Callable[..., tuple[E, ...]],
        json: Callable[..., tuple[E, ...]],
        *,
        quiet_v4: bool = True,
    ) -> tuple[E, ...]:
        """``ip WHAT`` and ``ip -6 WHAT`` (text or JSON) together; a missing IPv6 one is not
        said missing, nor the IPv4 one unless ``quiet_v4`` is false."""
        out: list[E] = []
        for kind, family in ((f"ip-{what}", Family.IPV4), (f"ip6-{what}", Family.IPV6)):
            quiet = quiet_v4 or family is Family.IPV6
            options = {"netns": netns, "family": family}
            out.extend(self.output(kind, netns, parser, json=json, quiet=quiet, **options) or ())
        return tuple(out)

    def neighbours(self, netns: str) -> tuple[Neighbour, ...]:
        read = ip_text.parse_ip_neigh_text
        return self.output("ip-neigh", netns, read, json=ip_json.parse_ip_neigh, netns=netns) or ()

    def fdb(self, netns: str) -> tuple[FdbEntry, ...]:
        read, quiet = ip_text.parse_bridge_fdb_text, netns != MAIN_NS
        found = self.output(
            "bridge-fdb", netns, read, json=bridge_json.parse_bridge_fdb, quiet=quiet, netns=netns
        )
        return found or ()

    def bridge_links(self, netns: str) -> tuple[BridgeLink, ...]:
        # `ip -d link` text carries the same port settings as `bridge link` text.
        read = bridge_json.parse_bridge_link
        return self.output("bridge-link", netns, _nothing, json=read, netns=netns) or ()

    def vlans(self, netns: str) -> tuple[BridgeVlan, ...]:
        read = bridge_json.parse_bridge_vlan
        return self.output("bridge-vlan", netns, _nothing, json=read, netns=netns) or ()

    def brctl(self, netns: str) -> tuple[BrctlBridge, ...]:
        return self.output("brctl-show", netns, parse_brctl_show) or ()

    def with_brctl(
        self, interfaces: list[Interface], bridges: tuple[BrctlBridge, ...], netns: str
    ) -> list[Interface]:
        """Linux bridges and their ports from ``brctl show``, where ``ip -d link`` (or
        ``bridge link``) did not already say so; devices ``ip link`` does not list are added
        with only their name and bridge known."""
        by_name = {(i.netns, i.name): n for n, i in enumerate(interfaces)}
        out = list(interfaces)
        added: list[str] = []
        told: list[str] = []

        def put(name: str, **changes: object) -> None:
            at = by_name.get((netns, name))
            if at is None:
                by_name[(netns, name)] = len(out)
                out.append(Interface(name=name, netns=netns, **changes))  # type: ignore[arg-type]
                added.append(name)
                return
            iface = out[at]
            wanted = {
                k: v
                for k, v in changes.items()
                if getattr(iface, k) in (None, LinkKind.PHYSICAL, LinkKind.UNKNOWN)
            }
            if wanted:
                out[at] = dataclasses.replace(iface, **wanted)  # type: ignore[arg-type]
                told.append(name)

        for bridge in bridges:
            put(bridge.name, kind=LinkKind.BRIDGE)
            for port in bridge.ports:
                at = by_name.get((netns, port))
                if at is None or out[at].master in (None, bridge.name):
                    put(port, master=bridge.name, master_kind="bridge")
        if added or told:
            where = f" in namespace {netns}" if netns else ""
            note = f"Linux bridges{where} and their ports read from `brctl show`"
            if added:
                note += (
                    f"; {', '.join(added)} not listed by `ip link`: only their name and bridge "
                    "are known (state, MTU and MAC unknown)"
                )
            self.notes.append(note)
        return out

    def namespace_ids(self, netns: str) -> tuple[NamespaceId, ...]:
        if netns not in self._namespace_ids:
            self._namespace_ids[netns] = self.read_namespace_ids(netns)
        return self._namespace_ids[netns]

    def read_namespace_ids(self, netns: str) -> tuple[NamespaceId, ...]:
        read = ip_text.parse_ip_netns_text
        return self.output("ip-netns", netns, read, json=ip_json.parse_ip_netns) or ()

    def ruleset(self, netns: str, family: Family) -> tuple[Ruleset | None, tuple[Ruleset, ...]]:
        """The default backend's ruleset, and the other backend's when it holds rules too."""
        base = "iptables" if family is Family.IPV4 else "ip6tables"
        found: dict[str, Ruleset] = {}
        seen: dict[str, Ruleset] = {}
        for kind in (f"{base}-save", f"{base}-legacy-save", f"{base}-nft-save"):

            def parse(text: str, where: str) -> Ruleset:
                # `iptables-save` prints the same as the backend it stands for: parse it once
                # (rulesets of big nodes take most of the load time).
                same = seen.get(_rules_only(text))
                if same is not None:
                    return dataclasses.replace(same, source=where)
                ruleset = parse_iptables_save(text, source=where, family=family, sink=self.sink)
                seen[_rules_only(text)] = ruleset
                return ruleset

            quiet = kind != f"{base}-save" or family is Family.IPV6
            ruleset = self.parse(kind, netns, parse, quiet=quiet)
            if ruleset is not None and ruleset.incomplete:
                note = f"{kind}{f' of {netns}' if netns else ''}: {ruleset.incomplete}"
                if note not in self.notes:
                    self.notes.append(note)
            if ruleset is not None:
                if ruleset.backend is Backend.UNKNOWN or kind in _OTHER:
                    backend = _OTHER.get(kind, self.listing.iptables_backend)
                    ruleset = dataclasses.replace(ruleset, backend=backend)
                found[kind] = ruleset
        primary = found.get(f"{base}-save")
        if not found:
            listed = self.listed_ruleset(netns, family)
            if listed is not None:
                return listed, ()
        if primary is None or not _has_rules(primary):
            # The default backend may be empty while the other holds the node's rules (the
            # kernel applies both): simulate the one that has rules.
            with_rules = [r for r in found.values() if _has_rules(r)]
            if with_rules:
                primary = with_rules[0]
            elif primary is None:
                primary = next(iter(found.values()), None)
        if primary is not None:
            self.forget_missing(f"{base}-save", netns)
        others = tuple(
            r
            for r in found.values()
            if primary is not None
            and r is not primary
            and r.backend is not primary.backend
            and r.backend is not Backend.UNKNOWN
            and _has_rules(r)
        )
        if primary is not None:
            primary = self.with_handles(primary, netns)
        return primary, tuple(self.with_handles(r, netns) for r in others)

    def listed_ruleset(self, netns: str, family: Family) -> Ruleset | None:
        """The ruleset rebuilt from ``iptables -t TABLE -nvL`` listings, when no save exists.

        Tables without a listing are not known to be empty: they are named in ``missing``.
        """
        base = "iptables" if family is Family.IPV4 else "ip6tables"
        tables = {}
        sources = []
        for table in TABLES:
            kind = f"{base}-list-{table}"
            listed = self.output(kind, netns, parse_iptables_list, table=table, family=family)
            if listed is not None and table in listed.tables:
                tables[table] = listed.tables[table]
                sources.append(listed.source)
        if not tables:
            return None
        unlisted = [t for t in ("raw", "mangle", "nat", "filter") if t not in tables]
        where = f" in namespace {netns}" if netns else ""
        note = f"{family.value} ruleset{where} {LISTING_LIMITS}; read from {', '.join(sources)}"
        if unlisted:
            note += f"; tables {', '.join(unlisted)} were not listed and are treated as empty"
            for kind in (f"{base}-list-{table}" for table in unlisted):
                self.missing.append(Missing(kind, _UNLISTED, netns, command=command_of(kind)))
        self.notes.append(note)
        save = f"{base}-save"
        self.forget_missing(save, netns)
        why = "not in the snapshot; the ruleset was rebuilt from `-L` listings instead"
        self.missing.append(Missing(save, why, netns, command=command_of(save)))
        return Ruleset(family, tables, self.listing.iptables_backend, sources[0])

    def forget_missing(self, kind: str, netns: str) -> None:
        """Take back what was said missing: another output gave the same facts."""
        self.missing[:] = [m for m in self.missing if not (m.what == kind and m.netns == netns)]

    def with_handles(self, ruleset: Ruleset, netns: str) -> Ruleset:
        """An iptables-nft ruleset with the rule handles ``nft -a list ruleset`` shows."""
        if ruleset.backend is not Backend.NFT or not _has_rules(ruleset):
            return ruleset
        if netns not in self._nft_listings:
            read = parse_nft_list_ruleset
            self._nft_listings[netns] = self.output("nft-list-ruleset", netns, read)
        listing = self._nft_listings[netns]
        if listing is None:
            return ruleset
        return attach_nft_handles(ruleset, listing).ruleset

    def ipsets(self, netns: str) -> IpSets | None:
        if self.listing.find("ipset-list", netns) and not self.listing.find("ipset-save", netns):
            return self.output("ipset-list", netns, parse_ipset_list, quiet=False)
        return self.output("ipset-save", netns, parse_ipset_save, quiet=False)

    def sysctls(self, netns: str) -> Sysctls:
        if netns == MAIN_NS and self.listing.find("sysctl") is None:
            copied = self.proc_sys()
            if copied is not None:
                return copied
        return self.output("sysctl", netns, parse_sysctl, quiet=False) or Sysctls()

    def proc_sys(self) -> Sysctls | None:
        """The main namespace's ``net.*`` sysctls from the ``proc/sys/net/`` files a sosreport
        copied, when it has no ``sysctl -a`` (``etc/sysctl*`` are settings to apply at boot,
        not the running values, and are not read)."""
        values: list[tuple[str, str]] = []
        for path in self.root.files():
            if not path.startswith("proc/sys/net/"):
                continue
            try:
                lines = self.root.read_text(path).strip().splitlines()
            except InputError:
                continue
            if len(lines) != 1:
                continue  # tables such as route/flush or empty write-only files
            # sysctl writes a dot inside a name (eth0.100) as a slash: eth0/100.
            parts = path[len("proc/sys/") :].split("/")
            key = ".".join(p.replace(".", "/") for p in parts)
            values.append((key, lines[0].strip()))
        if not values:
            return None
        self.notes.append(
            f"sysctls read from the {len(values)} proc/sys/net files of the snapshot "
            "(no `sysctl -a`): keys it did not copy are unknown"
        )
        return Sysctls(tuple(values), source=self.root.display("proc/sys/net"))

    # -- the whole ---------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        """Every namespace the snapshot has outputs of, and those only ``ip netns`` lists
        (their outputs are then named missing, as any other absent output), except in a
        bundle."""
        names = {e.netns for e in self.listing.entries}
        if self.listing.kind is SourceKind.BUNDLE:
            # collect chose its namespaces (a lab node's `ip netns` also lists its siblings').
            return [MAIN_NS, *sorted(n for n in names if n != MAIN_NS)]
        listed = [n.name for n in self.namespace_ids(MAIN_NS)]
        only_listed = [n for n in listed if n not in names]
        if only_listed:
            self.notes.append(
                f"namespaces {', '.join(only_listed)} are listed by `ip netns` only: "
                "none of their command outputs is in the snapshot"
            )
        names.update(listed)
        return [MAIN_NS, *sorted(n for n in names if n != MAIN_NS)]

    def backend(self) -> None:
        """The iptables backend when the source does not state it (a sosreport, a folder):
        ``iptables -V`` prints ``iptables v1.8.7 (nf_tables)`` or ``(legacy)``; an ``nft``
        listing holding the tables iptables-nft manages tells nf_tables too."""
        if self.listing.iptables_backend is not Backend.UNKNOWN:
            return
        entry = self.listing.find("iptables-version")
        text = self.raw_text(entry)
        if text is not None:
            m = re.search(r"\((nf_tables|legacy)\)", text)
            if m is not None:
                self.listing.iptables_backend = (
                    Backend.NFT if m.group(1) == "nf_tables" else Backend.LEGACY
                )
                self.notes.append(f"iptables backend {m.group(1)} read from `iptables -V`")
                return
        text = self.raw_text(self.listing.find("nft-list-ruleset"))
        if text is not None and re.search(r"managed by iptables-nft|\bxt (match|target)\b", text):
            self.listing.iptables_backend = Backend.NFT
            self.notes.append(
                "iptables backend nf_tables derived from the nft listing, which holds the "
                "tables iptables-nft manages"
            )

    def raw_text(self, entry: Entry | None) -> str | None:
        if entry is None or entry.status != OK or entry.path is None:
            return None
        try:
            return self.root.read_text(entry.path)
        except InputError:
            return None

    def snapshot(self) -> Snapshot:
        self.backend()
        interfaces: list[Interface] = []
        routes: list[Route] = []
        rules: list[RouteRule] = []
        neighbours: list[Neighbour] = []
        fdb: list[FdbEntry] = []
        vlans: list[BridgeVlan] = []
        states: list[NamespaceState] = []
        ids: dict[str, dict[int, str]] = {}
        for ns in self.namespaces():
            links = {(b.dev, b.master): b for b in self.bridge_links(ns)}
            for iface in self.interfaces(ns):
                link = links.get((iface.name, iface.master or ""))
                if iface.bridge_port is None and link is not None:
                    iface = dataclasses.replace(
                        iface, bridge_port=link.port, master_kind=iface.master_kind or "bridge"
                    )
                interfaces.append(iface)
            bridges = self.brctl(ns)
            if bridges:
                interfaces = self.with_brctl(interfaces, bridges, ns)
            routes.extend(self.routes(ns))
            rules.extend(self.rules(ns))
            neighbours.extend(self.neighbours(ns))
            fdb.extend(self.fdb(ns))
            vlans.extend(self.vlans(ns))
            ids[ns] = {n.nsid: n.name for n in self.namespace_ids(ns) if n.nsid is not None}
            v4, others4 = self.ruleset(ns, Family.IPV4)
            v6, others6 = self.ruleset(ns, Family.IPV6)
            states.append(
                NamespaceState(
                    name=ns,
                    iptables=v4,
                    ip6tables=v6,
                    other_backend=others4 + others6,
                    ipsets=self.ipsets(ns),
                    sysctls=self.sysctls(ns),
                )
            )
        datapath_ports = self.datapath_ports()
        interfaces = self.with_datapath_ports(interfaces, datapath_ports)
        interfaces = [_resolve_peer_namespace(i, ids) for i in interfaces]
        interfaces = _pair_unresolved_veths(interfaces)
        derived = [i for i in interfaces if i.veth is not None and i.veth.derived]
        if derived:
            self.notes.append(
                f"{len(derived)} devices taken for veths from `NAME@ifN ... link-netns NS` of "
                "`ip address` without -d (which does not print the kind): "
                + ", ".join(f"{i.name} ({i.netns or 'main'})" for i in derived[:6])
                + (" ..." if len(derived) > 6 else "")
            )
        raw = self.raw_outputs()
        switch = build_switch(raw, self.sink, self.notes)
        evidence, bridge_names = self.ovs_evidence()
        if switch is not None:
            self.incomplete_flows(switch)
        self.missing_ovs(switch, evidence, bridge_names)
        topology = Topology(
            interfaces=tuple(interfaces),
            routes=tuple(routes),
            rules=tuple(rules),
            neighbours=tuple(neighbours),
            fdb=tuple(fdb),
            vlans=tuple(vlans),
            namespaces=tuple(s.name for s in states),
        )
        diagnostics = [
            *(
                ParseError(SourcePos(self.source, 0), note).as_diagnostic()
                for note in self.listing.notes
            ),
            *self.sink.items,
        ]
        return Snapshot(
            source=self.source,
            source_kind=self.listing.kind,
            host=self.listing.host,
            kernel=self.listing.kernel,
            kernel_source=self.listing.kernel_source,
            collected_at=self.listing.collected_at,
            iptables_backend=self.listing.iptables_backend,
            topology=topology,
            namespaces=tuple(states),
            ovs=switch,
            ovs_routes=self.output(
                "ovs-appctl-ovs-route-show", MAIN_NS, parse_ovs_appctl_ovs_route_show
            ),
            ovs_tunnel_neighbours=self.output(
                "ovs-appctl-tnl-neigh-show", MAIN_NS, parse_ovs_appctl_tnl_neigh_show
            ),
            ovs_dpif=self.output("ovs-appctl-dpif-show", MAIN_NS, parse_ovs_appctl_dpif_show),
            ovs_evidence=evidence,
            ovs_bridge_names=bridge_names,
            datapath_ports=datapath_ports,
            ovsdb_records=self.ovsdb_records(raw),
            raw=raw,
            missing=tuple(dict.fromkeys(self.missing)),
            diagnostics=tuple(diagnostics),
            notes=tuple(self.notes),
        )

    def ovsdb_records(self, raw: tuple[RawOutput, ...]) -> tuple[OvsdbRecord, ...]:
        """Records listed one by one (``ovs-vsctl list port qvoX | grep tag``)."""
        out = []
        for r in raw:
            if r.kind not in RECORD_TABLES or r.bridge is None:
                continue
            table = parse_ovs_vsctl_list_text(r.text, source=r.source, sink=self.sink)
            if len(table.rows) != 1:
                continue  # a listing of several records is not one named by the command
            out.append(OvsdbRecord(RECORD_TABLES[r.kind], r.bridge, table.rows[0], r.source))
        return tuple(out)

    def datapath_ports(self) -> tuple[DatapathPort, ...]:
        return self.output(DPCTL_SHOW, MAIN_NS, parse_ovs_appctl_dpctl_show) or ()

    def with_datapath_ports(
        self, interfaces: list[Interface], ports: tuple[DatapathPort, ...]
    ) -> list[Interface]:
        """Devices ``dpctl/show`` lists as OVS internal ports are such, when ``ip`` without
        ``-d`` could not say what they are (fg-/qr-/qg- of a namespace look like NICs)."""
        internal = {p.name for p in ports if p.type == "internal"}
        if not internal:
            return interfaces
        out = []
        told = []
        for iface in interfaces:
            if iface.name in internal and iface.kind in _UNTOLD and iface.detail is None:
                iface = dataclasses.replace(iface, kind=LinkKind.OPENVSWITCH)
                told.append(iface.name)
            out.append(iface)
        if told:
            self.notes.append(
                f"{', '.join(told)} taken for Open vSwitch internal ports from "
                "`ovs-appctl dpctl/show` (ip address without -d does not print the kind; "
                "their bridge is unknown without ovs-vsctl show)"
            )
        return out

    def ovs_evidence(self) -> tuple[str, tuple[str, ...]]:
        """A file proving the node runs Open vSwitch, and the bridges ``ovs-vsctl list-br``
        names (``("", ())`` when the snapshot shows no sign of Open vSwitch)."""
        evidence = ""
        names: list[str] = []
        for path in self.root.files():
            base = path.rsplit("/", 1)[-1]
            found = ovs_program(base)
            in_plugin = path.startswith("sos_commands/openvswitch/")
            if found is None and not in_plugin:
                continue
            if not evidence:
                evidence = self.root.display(path)
            if found is not None and found[0] == "ovs-vsctl" and found[1] == ["list-br"]:
                try:
                    text = self.root.read_text(path)
                except InputError:
                    continue
                names += [w for w in text.split() if w not in names]
        return evidence, tuple(names)

    def missing_ovs(
        self, switch: OvsSwitch | None, evidence: str, bridge_names: tuple[str, ...]
    ) -> None:
        """Name the Open vSwitch outputs a node that runs it lacks (with their commands)."""
        have = {e.kind for e in self.listing.entries if e.netns == MAIN_NS}
        runs = switch is not None or bool(evidence)
        for kind in EXPECTED_MAIN:
            if kind.startswith("ovs") and kind not in have:
                self.missing.append(Missing(kind, "not in the snapshot", command=command_of(kind)))
        if not runs:
            return
        why = "not in the snapshot"
        if switch is None:
            why += ", though the node runs Open vSwitch"
        if not have & {"ovs-vsctl-show", "ovs-vsctl-list-bridge"}:
            kind = "ovs-vsctl-show"
            self.missing.append(Missing(kind, why, command=command_of(kind)))
        bridges = [b.name for b in switch.bridges] if switch is not None else []
        bridges += [b for b in bridge_names if b not in bridges]
        without = [
            b
            for b in bridges
            if switch is None or (s := switch.bridge(b)) is None or s.flows is None
        ]
        kind = "ovs-ofctl-dump-flows"
        for bridge in without:
            self.missing.append(Missing(kind, why, bridge=bridge, command=command_of(kind, bridge)))
        if not bridges and switch is None:
            self.missing.append(
                Missing(kind, why + "; nor are its bridges", command=command_of(kind))
            )

    def incomplete_flows(self, switch: OvsSwitch) -> None:
        """Name every bridge whose flow dump holds only part of its flows: a packet no flow
        of it matches may match one the dump does not show."""
        for bridge in switch.bridges:
            dump = bridge.flows
            if dump is None or dump.complete:
                continue
            kind, why = "ovs-ofctl-dump-flows", f"incomplete: {dump.incomplete_reason}"
            command = command_of(kind, bridge.name)
            missing = Missing(kind, f"{why} ({dump.source})", bridge=bridge.name, command=command)
            self.missing.append(missing)
            self.notes.append(
                f"{bridge.name} flows are incomplete: {dump.incomplete_reason} ({dump.source}); "
                "a packet none of them matches is unknown, not dropped"
            )

    def raw_outputs(self) -> tuple[RawOutput, ...]:
        out: list[RawOutput] = []
        for entry in self.listing.entries:
            if entry.kind not in RAW_KINDS:
                continue
            got = self.text(entry, entry.kind, entry.netns)
            if got is None:
                continue
            text, where = got
            error = _command_error(text)
            if error is not None:
                text, where = self.fallback(entry, where, error) or (text, where)
            out.append(
                RawOutput(entry.kind, text, where, entry.netns, entry.bridge, entry.flow_filter)
            )
        return tuple(out)

    def fallback(self, entry: Entry, where: str, error: str) -> tuple[str, str] | None:
        """Another file of the same output when the preferred one holds only the command's
        error (a plain ``ovs-ofctl`` refused by a bridge that speaks only OpenFlow 1.3+)."""
        for path in entry.fallbacks:
            try:
                text = self.root.read_text(path)
            except InputError:
                continue
            if _command_error(text) is None:
                shown = self.root.display(path)
                self.notes.append(f"{where} holds only an error ({error}); read {shown} instead")
                return text, shown
        why = f"the command failed: {error} ({where})"
        command = command_of(entry.kind, entry.bridge)
        self.missing.append(Missing(entry.kind, why, entry.netns, entry.bridge, command))
        return None


_ERROR_LINE = re.compile(r"^(ovs-(ofctl|vsctl|appctl|dpctl)|ovs-vswitchd): (?P<why>.*)$")
_LOG_LINE = re.compile(r"^\S+\|\d+\|\w+\|(WARN|ERR|EMER|INFO|DBG)\|")


def _command_error(text: str) -> str | None:
    """The error an Open vSwitch tool printed instead of its output, or ``None``.

    Only its log lines (``2025-05-14T14:23:32Z|00001|vconn|WARN|...``) and a final
    ``ovs-ofctl: br-ex: failed to connect to socket`` line: nothing else to read.
    """
    why = None
    for line in text.splitlines():
        line = line.strip()
        if not line or _LOG_LINE.match(line):
            continue
        m = _ERROR_LINE.match(line)
        if m is None:
            return None
        why = line
    return why


_UNLISTED = (
    "not in the snapshot: the ruleset was rebuilt from listings without this table, which is "
    "treated as empty"
)

_UNTOLD = (LinkKind.PHYSICAL, LinkKind.OTHER, LinkKind.UNKNOWN)
"""Kinds ``ip`` gives a device when it was not asked for details."""


def _rules_only(text: str) -> str:
    """A save's content without its comment lines (the header names the tool and the time)
    and without its counters (``-c``: two saves of the same rules, a few milliseconds apart,
    differ in them; the counters kept are the first save's)."""
    lines = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return _COUNTERS.sub("", lines)


_COUNTERS = re.compile(r"^\[\d+:\d+\] | \[\d+:\d+\]$", re.M)
"""A rule's ``[packets:bytes]`` prefix and a chain line's suffix, as ``-c`` prints them."""


def _has_rules(ruleset: Ruleset) -> bool:
    return any(True for _ in ruleset.rules())


def _has_details(interfaces: tuple[Interface, ...]) -> bool:
    """Whether the listing was taken with ``-d``: without it an Ethernet device's kind is
    unknown (a derived veth does not count: it was worked out, not printed)."""
    return any(
        i.kind not in (LinkKind.LOOPBACK, LinkKind.OTHER, LinkKind.UNKNOWN)
        and not (i.veth is not None and i.veth.derived)
        for i in interfaces
    )


def _is_json(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "{")


def _links(text: str, where: str, sink: DiagnosticSink, netns: str) -> tuple[Interface, ...]:
    """The devices of ``ip [-d] link`` or ``ip [-d] address``, JSON or text."""
    read = ip_json.parse_ip_link if _is_json(text) else ip_text.parse_ip_link_text
    return read(text, source=where, sink=sink, netns=netns)


def _nothing(text: str, **options: object) -> tuple[()]:
    """For an output whose text form tells nothing another output does not."""
    return ()


def _resolve_peer_namespace(iface: Interface, ids: dict[str, dict[int, str]]) -> Interface:
    info = iface.veth
    if info is None or info.peer_netnsid is None:
        return iface
    name = ids.get(iface.netns, {}).get(info.peer_netnsid)
    if name is None:
        return iface
    return dataclasses.replace(iface, detail=dataclasses.replace(info, peer_netns=name))


def _pair_unresolved_veths(interfaces: list[Interface]) -> list[Interface]:
    """The namespace of a veth's peer known only by ``link-netnsid`` (whose ids ``ip netns``
    of that namespace would resolve), found from the other end: the one device of another
    namespace whose ifindex is our ``@ifN`` and whose ``@ifN`` is our ifindex."""
    unresolved = [
        n
        for n, i in enumerate(interfaces)
        if i.veth is not None and i.veth.peer is None and i.veth.peer_netns is None
    ]
    if not unresolved:
        return interfaces
    by_ifindex: dict[int, list[Interface]] = {}
    for i in interfaces:
        if i.veth is not None and i.ifindex is not None:
            by_ifindex.setdefault(i.ifindex, []).append(i)
    out = list(interfaces)
    for n in unresolved:
        iface = out[n]
        info = iface.veth
        if info is None or info.peer_ifindex is None:
            continue
        ends = [
            o
            for o in by_ifindex.get(info.peer_ifindex, [])
            if o.netns != iface.netns
            and o.veth is not None
            and o.veth.peer_ifindex == iface.ifindex
            and o.veth.peer_netns in (None, iface.netns)
        ]
        if len(ends) == 1:
            why = f"peer namespace {ends[0].netns} matched by ifindex from its end {ends[0].name}"
            derived = f"{info.derived}; {why}" if info.derived else why
            detail = dataclasses.replace(info, peer_netns=ends[0].netns, derived=derived)
            out[n] = dataclasses.replace(iface, detail=detail)
    return out
