"""Random rulesets and random traffic to test the netfilter engine against the kernel with.

:class:`RandomRuleset` draws ``iptables-restore`` text over every match and target the engine
models, in the order ``iptables-save`` prints it (built-in chains in hook order, user chains
sorted, rules grouped by chain), so a fresh ``iptables-nft-restore`` gives rules the handles
:func:`~nodetrace.engine.netfilter.assumed_handles` predicts. :func:`random_sends` and
:func:`random_local_sends` draw the bridge bed's packets. Everything is derived from a
``random.Random`` the caller seeds. (Neutron's rulesets come from
:func:`nodetrace.neutron.firewall.node_firewall`.)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address

from nodetrace.lab.netfilter_oracle import BED, Send
from nodetrace.model.netfilter import BUILTIN_CHAINS
from nodetrace.model.packet import ETH_TYPE_IPV4, ETH_TYPE_IPV6, Family, Packet, TcpFlag


@dataclass
class _Table:
    """One table's chains, policies and rules, printed as ``iptables-save`` orders them."""

    name: str
    user: set[str] = field(default_factory=set)
    rules: dict[str, list[str]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)

    def add(self, chain: str, args: str) -> None:
        if chain not in BUILTIN_CHAINS[self.name]:
            self.user.add(chain)
        self.rules.setdefault(chain, []).append(args)

    def declare(self, chain: str) -> None:
        self.user.add(chain)

    def text(self) -> str:
        lines = [f"*{self.name}"]
        builtins = BUILTIN_CHAINS[self.name]
        for chain in builtins:
            lines.append(f":{chain} {self.policies.get(chain, 'ACCEPT')} [0:0]")
        users = sorted(self.user, key=lambda s: s.encode())
        for chain in users:
            lines.append(f":{chain} - [0:0]")
        for chain in (*builtins, *users):
            for args in self.rules.get(chain, ()):
                lines.append(f"-A {chain} {args}".rstrip())
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class BedNames:
    """The devices and addresses a random ruleset may name (those of the test bed)."""

    bridge: str
    ports: tuple[str, ...]
    macs: tuple[str, ...]
    addresses: tuple[str, ...] = ("10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.1.7")
    ipsets: tuple[str, ...] = ()
    family: Family = Family.IPV4
    """IPv6: addresses, ICMPv6, hop limit and the ip6tables spellings are drawn instead."""


V6_ADDRESSES = ("2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:1::7")
"""The IPv6 twins of :class:`BedNames`' default addresses (same roles, same hosts)."""


PATH_HOOKS: dict[str, tuple[str, ...]] = {
    "forward": ("PREROUTING", "FORWARD", "POSTROUTING"),
    "input": ("PREROUTING", "INPUT"),
    "output": ("OUTPUT", "POSTROUTING"),
}
"""The hooks a packet meets on each path: bridged across the bed, to the bed's own address,
sent by the bed itself."""


class RandomRuleset:
    """A random ruleset over the modelled matches and targets, valid for iptables-restore.

    ``exclude`` names match kinds not to draw (e.g. ``ttl``). ``path`` says which hooks the bed's packets cross (:data:`PATH_HOOKS`): rules are drawn for
    those only, and the ``-j TRACE`` rule sits in raw PREROUTING (raw OUTPUT for ``output``).

    Every table's user chains are reached from one built-in chain only (so hook-restricted
    matches like ``-m mac`` are placed where the kernel accepts them), and jumps go only to
    chains created later (no loops). Rules are drawn so that real packets of the bed hit them.
    """

    def __init__(
        self,
        rng: random.Random,
        names: BedNames,
        *,
        nat: bool | None = None,
        path: str = "forward",
        exclude: frozenset[str] = frozenset(),
    ) -> None:
        if path not in PATH_HOOKS:
            raise ValueError(f"path must be one of {', '.join(PATH_HOOKS)}")
        self.path = path
        self.exclude = exclude
        self.rng = rng
        self.n = names
        self.nat = rng.random() < 0.4 if nat is None else nat
        self.v6 = names.family is Family.IPV6
        self.icmp = "ipv6-icmp" if self.v6 else "icmp"

    # -- building blocks ------------------------------------------------------------------------

    def _neg(self, p: float = 0.25) -> str:
        return "! " if self.rng.random() < p else ""

    def _addr(self) -> str:
        r = self.rng
        if self.v6:
            nets = ["2001:db8::/64", "2001:db8::/32", "2001:db8:1::/64", "2001:db8::/126"]
            choice = r.choice([*self.n.addresses, *nets])
            return choice if "/" in choice else choice + "/128"
        choice = r.choice([*self.n.addresses, "10.9.0.0/24", "10.9.0.0/16", "10.9.1.0/24"])
        return choice if "/" in choice else choice + "/32"

    def _port_range(self) -> str:
        r = self.rng
        if r.random() < 0.5:
            return str(r.choice([22, 53, 67, 68, 80, 1000, 4000, 40000]))
        lo = r.choice([1, 20, 1000, 30000])
        return f"{lo}:{lo + r.choice([10, 1000, 20000])}"

    def _ip_part(self, proto: str | None) -> list[str]:
        r = self.rng
        out = []
        if r.random() < 0.25:
            out.append(f"{self._neg()}-s {self._addr()}")
        if r.random() < 0.2:
            out.append(f"{self._neg()}-d {self._addr()}")
        if proto:
            out.append(f"-p {proto}")
        elif r.random() < 0.1:
            out.append(f"! -p {r.choice(['tcp', 'udp', self.icmp])}")
        return out

    def _iface(self, hook: str) -> list[str]:
        r = self.rng
        if r.random() > 0.2:
            return []
        name = r.choice([self.n.bridge, self.n.bridge[:4] + "+", "eth0", "qbr+"])
        if hook in ("PREROUTING", "INPUT", "FORWARD") and r.random() < 0.5:
            return [f"{self._neg()}-i {name}"]
        if hook in ("POSTROUTING", "OUTPUT", "FORWARD"):
            return [f"{self._neg()}-o {name}"]
        return []

    def _matches(self, proto: str | None, hook: str, table: str) -> list[str]:
        r = self.rng
        out: list[str] = []
        kinds = ["physdev", "mark", "comment", "length", "ttl", "tos", "dscp", "iprange",
                 "pkttype", "limit", "multiport", "set", "addrtype"]  # fmt: skip
        if table != "raw":  # before the conntrack lookup these read a template: not generated
            kinds += ["state", "conntrack", "connmark", "state", "conntrack"]
        if hook in ("PREROUTING", "INPUT", "FORWARD"):
            kinds.append("mac")
        if hook in ("OUTPUT", "POSTROUTING"):
            kinds += ["owner", "owner"]
        kinds = [k for k in kinds if k not in self.exclude]
        used: set[str] = set()
        for _ in range(r.choice([0, 1, 1, 2, 2, 3])):
            kind = r.choice(kinds)
            if kind in used and kind in ("connmark", "owner"):
                continue  # iptables accepts these options once per rule
            used.add(kind)
            if kind == "state":
                states = r.sample(
                    ["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"], r.choice([1, 1, 2])
                )
                out.append(f"-m state {self._neg(0.2)}--state {','.join(states)}")
            elif kind == "conntrack":
                opts = []
                if r.random() < 0.7:
                    states = r.sample(
                        ["NEW", "ESTABLISHED", "RELATED", "INVALID", "SNAT", "UNTRACKED"],
                        r.choice([1, 2]),
                    )
                    opts.append(f"{self._neg(0.2)}--ctstate {','.join(states)}")
                if r.random() < 0.3:
                    opts.append(
                        f"{self._neg(0.2)}--ctstatus {r.choice(['SEEN_REPLY', 'CONFIRMED', 'EXPECTED'])}"
                    )
                if r.random() < 0.3:
                    opts.append(f"--ctdir {r.choice(['ORIGINAL', 'REPLY'])}")
                if r.random() < 0.2:
                    opts.append(f"{self._neg(0.2)}--ctproto {r.choice(['tcp', 'udp', self.icmp])}")
                if r.random() < 0.2:
                    opts.append(f"{self._neg(0.2)}--ctorigsrc {r.choice(self.n.addresses)}")
                if not opts:
                    opts.append("--ctstate NEW")
                out.append("-m conntrack " + " ".join(opts))
            elif kind == "physdev":
                opts = []
                port = r.choice([*self.n.ports, self.n.ports[0][:5] + "+"])
                if r.random() < 0.6:
                    opts.append(f"{self._neg(0.2)}--physdev-in {port}")
                out_ok = hook != "OUTPUT"
                if out_ok and r.random() < 0.5:
                    opts.append(f"{self._neg(0.2)}--physdev-out {r.choice(self.n.ports)}")
                if r.random() < 0.3:
                    opts.append(f"{self._neg(0.3)}--physdev-is-bridged")
                if r.random() < 0.15:
                    opts.append(f"{self._neg(0.3)}--physdev-is-in")
                if out_ok and r.random() < 0.15:
                    opts.append(f"{self._neg(0.3)}--physdev-is-out")
                if not opts:
                    opts.append(f"--physdev-in {self.n.ports[0]}")
                out.append("-m physdev " + " ".join(opts))
            elif kind == "mac":
                out.append(f"-m mac {self._neg(0.2)}--mac-source {r.choice(self.n.macs)}")
            elif kind == "mark":
                value = r.choice([1, 2, 5, 0x10])
                mask = r.choice(["", "/0xff", "/0xf"])
                out.append(f"-m mark {self._neg(0.2)}--mark 0x{value:x}{mask}")
            elif kind == "connmark":
                out.append(f"-m connmark {self._neg(0.2)}--mark 0x{r.choice([0, 1, 7]):x}")
            elif kind == "comment":
                out.append(f'-m comment --comment "c{r.randint(0, 99)} \\"x\\""')
            elif kind == "length":
                lo = r.choice([20, 28, 40, 60, 100])
                rng_text = f"{lo}:{lo + r.choice([0, 10, 100])}" if r.random() < 0.6 else str(lo)
                out.append(f"-m length {self._neg(0.2)}--length {rng_text}")
            elif kind == "ttl":
                word = "hl" if self.v6 else "ttl"
                op = r.choice([f"--{word}-eq", f"--{word}-lt", f"--{word}-gt", f"! --{word}-eq"])
                out.append(f"-m {word} {op} {r.choice([1, 32, 64, 128])}")
            elif kind == "tos":
                out.append(
                    f"-m tos {self._neg(0.2)}--tos 0x{r.choice([0, 0x10, 0x08]):02x}/0x{r.choice(['3f', 'ff'])}"
                )
            elif kind == "dscp":
                out.append(f"-m dscp {self._neg(0.2)}--dscp 0x{r.choice([0, 0x0A, 0x2E]):02x}")
            elif kind == "iprange":
                net = "2001:db8::" if self.v6 else "10.9.0."
                first = net + r.choice(["1", "2", "0"])
                out.append(
                    f"-m iprange {self._neg(0.2)}--src-range {first}-{net}{r.choice([1, 2, 200])}"
                )
            elif kind == "pkttype":
                out.append(
                    f"-m pkttype {self._neg(0.2)}--pkt-type {r.choice(['unicast', 'broadcast', 'multicast'])}"
                )
            elif kind == "limit":
                out.append("-m limit --limit 1000/sec --limit-burst 1000")
            elif kind == "multiport" and proto in ("tcp", "udp"):
                ports = ",".join(sorted({self._port_range() for _ in range(r.choice([1, 2, 3]))}))
                out.append(
                    f"-m multiport {self._neg(0.2)}--{r.choice(['sports', 'dports', 'ports'])} {ports}"
                )
            elif kind == "set" and self.n.ipsets:
                flags = r.choice(["src", "dst"])
                out.append(f"-m set {self._neg(0.2)}--match-set {r.choice(self.n.ipsets)} {flags}")
            elif kind == "owner":
                owner = r.choice(
                    [
                        f"{self._neg(0.3)}--uid-owner {r.choice(['0', '1000', '0-10'])}",
                        f"{self._neg(0.3)}--gid-owner {r.choice(['0', '1000'])}",
                        f"{self._neg(0.3)}--socket-exists",
                        f"--uid-owner 0 {self._neg(0.3)}--gid-owner {r.choice(['0', '5'])}",
                    ]
                )
                out.append(f"-m owner {owner}")
            elif kind == "addrtype":
                # IPv6 has no broadcast: ip6t addrtype refuses the type.
                types = ["UNICAST", "LOCAL", "MULTICAST", *([] if self.v6 else ["BROADCAST"])]
                out.append(f"-m addrtype {self._neg(0.2)}--dst-type {r.choice(types)}")
        return out

    def _proto_match(self, proto: str | None) -> list[str]:
        r = self.rng
        if proto in ("tcp", "udp") and "ports" not in self.exclude and r.random() < 0.6:
            opts = []
            if r.random() < 0.5:
                opts.append(f"{self._neg(0.2)}--sport {self._port_range()}")
            if r.random() < 0.6:
                opts.append(f"{self._neg(0.2)}--dport {self._port_range()}")
            if proto == "tcp" and r.random() < 0.4:
                opts.append(
                    r.choice(
                        [
                            "--syn",
                            "! --syn",
                            "--tcp-flags SYN,ACK ACK",
                            "--tcp-flags ALL SYN",
                            "--tcp-flags RST RST",
                        ]
                    )
                )
            if opts:
                return [f"-m {proto} " + " ".join(opts)]
        if proto == "icmp" and r.random() < 0.6:
            t = r.choice(["8", "0", "3", "3/3", "echo-request", "any", "11"])
            return [f"-m icmp {self._neg(0.2)}--icmp-type {t}"]
        if proto == "ipv6-icmp" and "icmp6" not in self.exclude and r.random() < 0.6:
            t = r.choice(["128", "129", "1", "1/4", "echo-request", "135", "3"])
            return [f"-m icmp6 {self._neg(0.2)}--icmpv6-type {t}"]
        return []

    def _target(self, table: str, hook: str, chain_index: int, chains: list[str]) -> str:
        r = self.rng
        later = chains[chain_index + 1 :] if chain_index >= 0 else chains
        options: list[tuple[float, str]] = [
            (3, "-j ACCEPT"),
            (2, "-j DROP"),
            (3, "-j RETURN"),
            (2, ""),
            (1, '-j LOG --log-prefix "nt: "'),
        ]
        if later:
            options.append((5, f"-j {r.choice(later)}"))
            options.append((2, f"-g {r.choice(later)}"))
        if table in ("mangle", "filter"):
            options.append(
                (
                    2,
                    f"-j MARK --set-xmark 0x{r.choice([1, 2, 5]):x}/0x{r.choice(['ff', 'ffffffff'])}",
                )
            )
            options.append((1, f"-j CONNMARK --set-xmark 0x{r.choice([1, 7]):x}/0xffffffff"))
            options.append((1, "-j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff"))
            options.append(
                (1, "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff")
            )
        if table == "filter":
            kinds = (
                ["icmp6-port-unreachable", "icmp6-adm-prohibited"]
                if self.v6
                else ["icmp-port-unreachable", "icmp-host-prohibited"]
            )
            options.append((1, f"-j REJECT --reject-with {r.choice(kinds)}"))
        if table == "raw":
            options.append((3, f"-j CT --zone {r.choice([1, 2, 4097])}"))
            options.append((1, "-j CT --notrack"))
        if table == "nat":
            options = [(3, "-j ACCEPT"), (3, "-j RETURN"), (2, "")]
            if later:
                options.append((3, f"-j {r.choice(later)}"))
            if hook == "POSTROUTING":
                net = "2001:db8:3::" if self.v6 else "10.9.3."
                options.append((2, f"-j SNAT --to-source {net}{r.choice([1, 2])}"))
        weights = [w for w, _ in options]
        return r.choices([t for _, t in options], weights=weights)[0]

    def _rule(self, table: str, hook: str, chain_index: int, chains: list[str]) -> str:
        r = self.rng
        proto = r.choice([None, None, "tcp", "udp", self.icmp])
        target = self._target(table, hook, chain_index, chains)
        if r.random() < 0.12 and target in ("-j ACCEPT", "-j DROP", "-j RETURN"):
            return target  # a bare verdict: TRACE logs it as return/policy
        parts = self._ip_part(proto)
        parts += self._iface(hook)
        parts += self._proto_match(proto)
        parts += self._matches(proto, hook, table)
        if target:
            parts.append(target)
        return " ".join(parts)

    # -- the ruleset ----------------------------------------------------------------------------

    def text(self) -> str:
        r = self.rng
        tables: list[_Table] = []
        hooks = PATH_HOOKS[self.path]
        raw = _Table("raw")
        trace_hook = "OUTPUT" if self.path == "output" else "PREROUTING"
        trace = r.choice(
            [
                "",
                f"-p {self.icmp} ",
                "-p udp ",
                "-s 2001:db8::/32 " if self.v6 else "-s 10.9.0.0/16 ",
            ]
        )
        pre = [self._rule("raw", trace_hook, -1, []) for _ in range(r.randint(0, 2))]
        pre.insert(r.randint(0, len(pre)), f"{trace}-j TRACE")
        if trace and r.random() < 0.5:
            pre.insert(0, "-j TRACE")  # traced already: the second TRACE rule is logged
        for args in pre:
            raw.add(trace_hook, args)
        tables.append(raw)
        if r.random() < 0.6:
            tables.append(self._table("mangle", hooks))
        if self.nat:
            nat_hooks = ("PREROUTING", "POSTROUTING") if self.path == "forward" else hooks
            tables.append(self._table("nat", nat_hooks))
        tables.append(self._table("filter", tuple(h for h in hooks if h in _FILTER_HOOKS)))
        if r.random() < 0.3:
            if self.path != "forward" and r.random() < 0.6:
                tables.append(
                    self._table("security", tuple(h for h in hooks if h in _FILTER_HOOKS))
                )
            else:
                tables.append(_Table("security"))
        return "".join(t.text() for t in tables)

    def _table(self, name: str, hooks: tuple[str, ...]) -> _Table:
        hooks = tuple(h for h in hooks if h in BUILTIN_CHAINS[name])
        r = self.rng
        t = _Table(name)
        for hook in hooks:
            if (
                name in ("filter", "mangle", "security")
                and r.random() < 0.3
                and hook != "POSTROUTING"
            ):
                t.policies[hook] = "DROP"
            nchains = r.randint(0, 4)
            chains = sorted({f"{hook[:3].lower()}{r.randint(0, 99)}" for _ in range(nchains)})
            chains = [c if r.random() < 0.8 else c.upper() for c in chains]
            for c in chains:
                t.declare(c)
            for _ in range(r.randint(0, 5)):
                t.add(hook, self._rule(name, hook, -1, chains))
            if chains and not any(
                f"-j {c}" in x or f"-g {c}" in x for x in t.rules.get(hook, []) for c in chains
            ):
                t.add(hook, f"-j {chains[0]}")
            for i, c in enumerate(chains):
                for _ in range(r.randint(0, 5)):
                    t.add(c, self._rule(name, hook, i, chains))
        return t


_FILTER_HOOKS = ("INPUT", "FORWARD", "OUTPUT")


# --- random traffic -----------------------------------------------------------------------------


def random_sends(
    rng: random.Random, *, first_id: int = 1000, family: Family = Family.IPV4
) -> list[Send]:
    """Short random flows between bed hosts ``a`` and ``b``, interleaved: ICMP echoes and their
    replies, UDP exchanges, TCP handshakes, stray mid-stream TCP and lone replies, and ICMP
    errors quoting earlier packets, with random TTL (hop limit), TOS (traffic class), DF and
    length. IPv6 packets are told apart by their flow label (``first_id`` on), IPv4 by ID."""
    v6 = family is Family.IPV6
    if v6:
        addrs = {"a": [V6_ADDRESSES[0], V6_ADDRESSES[3]], "b": list(V6_ADDRESSES[1:3])}
    else:
        addrs = {"a": ["10.9.0.1", "10.9.1.7"], "b": ["10.9.0.2", "10.9.0.3"]}
    address = IPv6Address if v6 else IPv4Address

    def vary(p: Packet) -> Packet:
        return replace(
            p,
            nw_ttl=rng.choice([1, 64, 64, 128, 255]),
            nw_tos=rng.choice([0, 0, 0x10, 0x28, 0xB8]),
            ip_df=not v6 and rng.random() < 0.5,
        )

    flows: list[list[tuple[str, str, Packet]]] = []
    for _ in range(rng.randint(2, 4)):
        src, dst = ("a", "b") if rng.random() < 0.6 else ("b", "a")
        s_ip, d_ip = address(rng.choice(addrs[src])), address(rng.choice(addrs[dst]))
        dl_type = ETH_TYPE_IPV6 if v6 else ETH_TYPE_IPV4
        fwd = Packet(dl_type=dl_type, nw_src=s_ip, nw_dst=d_ip)
        back = Packet(dl_type=dl_type, nw_src=d_ip, nw_dst=s_ip)
        flows.append(
            _flow(
                rng, rng.choice(["icmp", "udp", "tcp", "tcp", "stray"]), src, dst, fwd, back, vary
            )
        )
    return _interleave(rng, flows, first_id, "ipv6_label" if v6 else "ip_id")


def _interleave(
    rng: random.Random, flows: list[list[tuple[str, str, Packet]]], first_id: int, key: str
) -> list[Send]:
    """The flows' packets in a random interleaving, each flow in its own order, numbered from
    ``first_id`` in field ``key`` (what tells a batch's packets apart)."""
    sends: list[Send] = []
    while any(flows):
        flow = rng.choice([f for f in flows if f])
        src, dst, packet = flow.pop(0)
        numbered = replace(packet, **{key: first_id + len(sends)})  # type: ignore[arg-type]
        sends.append(Send(src, dst, numbered))
    return sends


def _flow(
    rng: random.Random,
    kind: str,
    src: str,
    dst: str,
    fwd: Packet,
    back: Packet,
    vary: Callable[[Packet], Packet],
) -> list[tuple[str, str, Packet]]:
    """One flow's packets: ``fwd``/``back`` carry the two directions' addresses."""
    out: list[tuple[str, str, Packet]] = []
    v6 = fwd.dl_type == ETH_TYPE_IPV6
    # (protocol, echo request, echo reply, port unreachable type/code, IP header length)
    icmp, echo, reply, unreach, header = (58, 128, 129, (1, 4), 40) if v6 else (1, 8, 0, (3, 3), 20)
    if kind == "icmp":
        ident = rng.randint(1, 65535)
        req = vary(replace(fwd, nw_proto=icmp, icmp_type=echo, icmp_code=0, icmp_id=ident,
                           icmp_seq=1))  # fmt: skip
        out.append((src, dst, req))
        if rng.random() < 0.8:
            out.append((dst, src, vary(replace(back, nw_proto=icmp, icmp_type=reply, icmp_code=0,
                                               icmp_id=ident, icmp_seq=1))))  # fmt: skip
        if rng.random() < 0.5:
            out.append((src, dst, replace(req, icmp_seq=2)))
    elif kind == "udp":
        sport, dport = rng.randint(1024, 65535), rng.choice([53, 67, 68, 80, 4000])
        pay = rng.choice([None, 100, 300])
        req = vary(replace(fwd, nw_proto=17, tp_src=sport, tp_dst=dport,
                           ip_len=None if pay is None else header + 8 + pay))  # fmt: skip
        out.append((src, dst, req))
        if rng.random() < 0.4:
            err = replace(
                back,
                nw_proto=icmp,
                icmp_type=unreach[0],
                icmp_code=unreach[1],
                inner=replace(req, ip_len=None),
            )
            out.append((dst, src, vary(err)))
        elif rng.random() < 0.7:
            out.append((dst, src, vary(replace(back, nw_proto=17, tp_src=dport, tp_dst=sport))))
            out.append((src, dst, replace(req, ip_len=None)))
    elif kind == "tcp":
        sport, dport = rng.randint(1024, 65535), rng.choice([22, 80, 4000])
        seq, rseq = rng.randint(0, 2**31), rng.randint(0, 2**31)
        syn = vary(replace(fwd, nw_proto=6, tp_src=sport, tp_dst=dport,
                           tcp_flags=int(TcpFlag.SYN), tcp_seq=seq, tcp_window=64240))  # fmt: skip
        out.append((src, dst, syn))
        if rng.random() < 0.8:
            synack = replace(back, nw_proto=6, tp_src=dport, tp_dst=sport,
                             tcp_flags=int(TcpFlag.SYN | TcpFlag.ACK), tcp_seq=rseq,
                             tcp_ack=seq + 1, tcp_window=65160)  # fmt: skip
            out.append((dst, src, vary(synack)))
            ack = replace(syn, tcp_flags=int(TcpFlag.ACK), tcp_seq=seq + 1, tcp_ack=rseq + 1)
            out.append((src, dst, ack))
    else:
        flags = rng.choice([TcpFlag.ACK, TcpFlag.ACK | TcpFlag.PSH, TcpFlag.FIN, TcpFlag.RST])
        stray = replace(fwd, nw_proto=6, tp_src=rng.randint(1024, 65535), tp_dst=80,
                        tcp_flags=int(flags), tcp_seq=rng.randint(0, 2**31),
                        tcp_ack=rng.randint(0, 2**31), tcp_window=500)  # fmt: skip
        out.append((src, dst, vary(stray)))
        if rng.random() < 0.5:
            lone = replace(
                back, nw_proto=icmp, icmp_type=reply, icmp_id=rng.randint(1, 999), icmp_seq=1
            )
            out.append((dst, src, vary(lone)))
    return out


def random_local_sends(
    rng: random.Random, *, path: str, local: IPv4Address, listen_port: int, first_id: int = 3000
) -> list[Send]:
    """Random IPv4 traffic to or from the bed's own address ``local``, interleaved.

    ``input``: hosts ``a`` and ``b`` send UDP datagrams to ``listen_port`` (several per flow)
    and single ICMP echo requests (the bed's echo reply is a packet the engine does not see, so
    no flow continues after one). ``output``: the bed sends UDP from ``listen_port``, ICMP
    echoes and TCP SYNs to the hosts, and some are answered (the answers cross PREROUTING and
    INPUT, moving conntrack on, and an answered UDP flow sends again).
    """
    addrs = {"a": ["10.9.0.1", "10.9.1.7"], "b": ["10.9.0.2", "10.9.0.3"]}

    def vary(p: Packet) -> Packet:
        return replace(
            p,
            nw_ttl=rng.choice([1, 64, 64, 128]),
            nw_tos=rng.choice([0, 0, 0x10, 0xB8]),
            ip_df=rng.random() < 0.5,
        )

    flows: list[list[tuple[str, str, Packet]]] = []
    for _ in range(rng.randint(3, 5)):
        host = rng.choice(["a", "b"])
        remote = IPv4Address(rng.choice(addrs[host]))
        kind = rng.choice(["udp", "udp", "icmp", "tcp"] if path == "output" else ["udp", "icmp"])
        flow: list[tuple[str, str, Packet]] = []
        if path == "input":
            if kind == "udp":
                sport = rng.randint(1024, 65535)
                for _ in range(rng.choice([1, 2, 3])):
                    flow.append((host, BED, vary(Packet(nw_src=remote, nw_dst=local, nw_proto=17,
                                                        tp_src=sport, tp_dst=listen_port))))  # fmt: skip
            else:
                flow.append((host, BED, vary(Packet(nw_src=remote, nw_dst=local, nw_proto=1,
                                                    icmp_type=8, icmp_code=0,
                                                    icmp_id=rng.randint(1, 65535),
                                                    icmp_seq=1))))  # fmt: skip
        elif kind == "udp":
            dport = rng.choice([53, 4000, 40000])
            out = vary(Packet(nw_src=local, nw_dst=remote, nw_proto=17, tp_src=listen_port,
                              tp_dst=dport))  # fmt: skip
            flow.append((BED, host, out))
            if rng.random() < 0.6:
                flow.append((host, BED, vary(Packet(nw_src=remote, nw_dst=local, nw_proto=17,
                                                    tp_src=dport, tp_dst=listen_port))))  # fmt: skip
                flow.append((BED, host, replace(out, ip_len=None)))
        elif kind == "icmp":
            ident = rng.randint(1, 65535)
            req = vary(Packet(nw_src=local, nw_dst=remote, nw_proto=1, icmp_type=8, icmp_code=0,
                              icmp_id=ident, icmp_seq=1))  # fmt: skip
            flow.append((BED, host, req))
            if rng.random() < 0.6:
                flow.append((host, BED, vary(Packet(nw_src=remote, nw_dst=local, nw_proto=1,
                                                    icmp_type=0, icmp_code=0, icmp_id=ident,
                                                    icmp_seq=1))))  # fmt: skip
                flow.append((BED, host, replace(req, icmp_seq=2)))
        else:
            seq = rng.randint(0, 2**31)
            flow.append((BED, host, vary(Packet(nw_src=local, nw_dst=remote, nw_proto=6,
                                                tp_src=rng.randint(1024, 65535),
                                                tp_dst=rng.choice([22, 80]),
                                                tcp_flags=int(TcpFlag.SYN), tcp_seq=seq,
                                                tcp_window=64240))))  # fmt: skip
        flows.append(flow)
    return _interleave(rng, flows, first_id, "ip_id")
