"""Write a Ruleset back as ``iptables-save`` text, in the order and spelling iptables 1.8 uses.

Parsing this output gives the same typed ruleset again (the round trip the parser is tested
with), and for rules that iptables-save itself printed the text comes out unchanged, so a
formatted rule can be compared with a node's saved line character for character.
"""

from __future__ import annotations

from typing import Any, TypeVar

from nodetrace.model.netfilter import (
    AddrtypeMatch,
    ChecksumTarget,
    CommentMatch,
    ConnmarkTarget,
    ConntrackMatch,
    CtTarget,
    DscpMatch,
    IcmpMatch,
    IprangeMatch,
    IpSpec,
    JumpTarget,
    LengthMatch,
    LimitMatch,
    LogTarget,
    MacMatch,
    MarkMatch,
    MarkTarget,
    Match,
    MultiportMatch,
    NatRange,
    NatTarget,
    Neg,
    NflogTarget,
    NoTarget,
    NotrackTarget,
    OwnerMatch,
    PhysdevMatch,
    PkttypeMatch,
    PortRange,
    RawOption,
    RejectTarget,
    Rule,
    Ruleset,
    SctpMatch,
    SetMatch,
    StandardTarget,
    StateMatch,
    Target,
    TcpMatch,
    TcpmssTarget,
    TosMatch,
    TraceTarget,
    TtlMatch,
    UdpMatch,
    UnknownMatch,
    UnknownTarget,
)
from nodetrace.model.packet import Family, TcpFlag

T = TypeVar("T")

_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# libxt_tcp prints flag masks by walking this table (ALL and NONE only when nothing else fits).
_TCP_FLAG_ORDER = tuple((flag.name, int(flag)) for flag in TcpFlag if flag <= TcpFlag.URG)


def save_string(value: str) -> str:
    """A word as libxtables saves it: bare when only ``[A-Za-z0-9_-]``, else double-quoted
    with ``"``, ``\\`` and ``'`` escaped."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    escaped = "".join("\\" + c if c in "\"\\'" else c for c in value)
    return f'"{escaped}"'


def _neg(negated: bool) -> str:
    return "! " if negated else ""


def _tcp_flags(bits: int) -> str:
    return ",".join(name for name, bit in _TCP_FLAG_ORDER if bits & bit) or "NONE"


def _raw(options: tuple[RawOption, ...]) -> list[str]:
    out = []
    for opt in options:
        words = [f"{_neg(opt.negated)}--{opt.name}"]
        words += [save_string(v) if _needs_quotes(v) else v for v in opt.values]
        out.append(" ".join(words))
    return out


def _needs_quotes(value: str) -> bool:
    return value == "" or any(c in value for c in " \t\"'\\")


def format_ip(ip: IpSpec) -> list[str]:
    options: tuple[tuple[str, Neg[Any] | None], ...] = (
        ("-s", ip.src), ("-d", ip.dst), ("-i", ip.in_iface), ("-o", ip.out_iface),
        ("-p", ip.proto),
    )  # fmt: skip
    out = [f"{_neg(spec.negated)}{flag} {spec.value}" for flag, spec in options if spec is not None]
    if ip.fragment is not None:
        out.append(f"{_neg(ip.fragment.negated)}-f")
    return out


def _opt(name: str, spec: Neg[T] | None, render: str | None = None) -> list[str]:
    if spec is None:
        return []
    value = render if render is not None else str(spec.value)
    return [f"{_neg(spec.negated)}--{name} {value}"]


def _flag(name: str, spec: Neg[bool] | None) -> list[str]:
    return [] if spec is None else [f"{_neg(spec.negated)}--{name}"]


def _words(spec: Neg[tuple[str, ...]] | None) -> str:
    return ",".join(spec.value) if spec is not None else ""


def _icmp(m: IcmpMatch) -> str:
    if m.icmp_type is None:
        return "any"
    if m.code_min == 0 and m.code_max == 0xFF:
        return str(m.icmp_type)
    return f"{m.icmp_type}/{m.code_min}"


def _mark(value: int, mask: int) -> str:
    return f"0x{value:x}" if mask == 0xFFFFFFFF else f"0x{value:x}/0x{mask:x}"


def _dashed(r: PortRange) -> str:
    """A range as owner and NAT options print it: ``lo-hi``, not ``lo:hi``."""
    return str(r).replace(":", "-")


def format_match(m: Match) -> str:
    """``-m MODULE OPTIONS`` as iptables-save prints it."""
    parts: list[str] = [f"-m {m.module}"]
    if isinstance(m, TcpMatch):
        parts += _opt("sport", m.sport) + _opt("dport", m.dport)
        if m.flags is not None:
            f = m.flags.value
            parts.append(
                f"{_neg(m.flags.negated)}--tcp-flags {_tcp_flags(f.mask)} {_tcp_flags(f.comp)}"
            )
        parts += _opt("tcp-option", m.option)
    elif isinstance(m, UdpMatch | SctpMatch):
        parts += _opt("sport", m.sport) + _opt("dport", m.dport)
        if isinstance(m, SctpMatch) and m.chunk_types:
            neg = m.chunk_types[0] == "!"
            words = m.chunk_types[1:] if neg else m.chunk_types
            parts.append(f"{_neg(neg)}--chunk-types {' '.join(words)}")
    elif isinstance(m, MultiportMatch):
        ports = ",".join(str(p) for p in m.ports)
        parts.append(f"{_neg(m.negated)}--{m.direction} {ports}")
    elif isinstance(m, IcmpMatch):
        name = "icmp-type" if m.module == "icmp" else "icmpv6-type"
        parts.append(f"{_neg(m.negated)}--{name} {_icmp(m)}")
    elif isinstance(m, StateMatch):
        parts.append(f"{_neg(m.negated)}--state {','.join(m.states)}")
    elif isinstance(m, ConntrackMatch):
        parts += _opt("ctstate", m.ctstate, _words(m.ctstate))
        if m.ctproto is not None:
            parts += _opt("ctproto", m.ctproto)
        for name in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
            spec = getattr(m, name)
            if spec is not None:
                net = spec.value
                text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
                parts += _opt(name, spec, text)
        for name in ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport"):
            parts += _opt(name, getattr(m, name))
        parts += _opt("ctstatus", m.ctstatus, _words(m.ctstatus))
        parts += _opt("ctexpire", m.ctexpire)
        if m.ctdir is not None:
            parts.append(f"--ctdir {m.ctdir}")
    elif isinstance(m, PhysdevMatch):
        parts += _flag("physdev-is-in", m.is_in) + _opt("physdev-in", m.physdev_in)
        parts += _flag("physdev-is-out", m.is_out) + _opt("physdev-out", m.physdev_out)
        parts += _flag("physdev-is-bridged", m.is_bridged)
    elif isinstance(m, SetMatch):
        parts.append(f"{_neg(m.negated)}--match-set {m.set_name} {','.join(m.directions)}")
        if m.return_nomatch:
            parts.append("--return-nomatch")
        if not m.update_counters:
            parts.append("! --update-counters")
        if not m.update_subcounters:
            parts.append("! --update-subcounters")
        parts += _raw(m.counter_conditions)
    elif isinstance(m, MacMatch):
        parts += _opt("mac-source", m.source)
    elif isinstance(m, CommentMatch):
        parts.append(f"--comment {save_string(m.comment)}")
    elif isinstance(m, MarkMatch):
        parts.append(f"{_neg(m.negated)}--mark {_mark(m.value, m.mask)}")
    elif isinstance(m, IprangeMatch):
        for name, spec in (("src-range", m.src_range), ("dst-range", m.dst_range)):
            if spec is not None:
                parts.append(f"{_neg(spec.negated)}--{name} {spec.value[0]}-{spec.value[1]}")
    elif isinstance(m, AddrtypeMatch):
        parts += _opt("src-type", m.src_type, _words(m.src_type))
        parts += _opt("dst-type", m.dst_type, _words(m.dst_type))
        if m.limit_iface_in:
            parts.append("--limit-iface-in")
        if m.limit_iface_out:
            parts.append("--limit-iface-out")
    elif isinstance(m, PkttypeMatch):
        parts += _opt("pkt-type", m.pkt_type)
    elif isinstance(m, LengthMatch):
        parts += _opt("length", m.length)
    elif isinstance(m, TtlMatch):
        op = "eq" if m.op == "ne" else m.op
        parts.append(f"{_neg(m.op == 'ne')}--{m.module}-{op} {m.value}")
    elif isinstance(m, TosMatch):
        parts.append(f"{_neg(m.negated)}--tos 0x{m.value:02x}/0x{m.mask:02x}")
    elif isinstance(m, DscpMatch):
        parts.append(f"{_neg(m.negated)}--dscp 0x{m.dscp:02x}")
    elif isinstance(m, OwnerMatch):
        parts += _flag("socket-exists", m.socket_exists)
        if m.uid is not None:
            parts.append(f"{_neg(m.uid.negated)}--uid-owner {_dashed(m.uid.value)}")
        if m.gid is not None:
            parts.append(f"{_neg(m.gid.negated)}--gid-owner {_dashed(m.gid.value)}")
        if m.suppl_groups:
            parts.append("--suppl-groups")
    elif isinstance(m, LimitMatch | UnknownMatch):
        parts += _raw(m.options)
    return " ".join(parts)


def _nat_range(r: NatRange) -> str:
    text = ""
    if r.addr_lo is not None:
        addr = str(r.addr_lo) if r.addr_hi in (None, r.addr_lo) else f"{r.addr_lo}-{r.addr_hi}"
        text = f"[{addr}]" if r.addr_lo.version == 6 and r.ports is not None else addr
    if r.ports is not None:
        text += f":{_dashed(r.ports)}"
    return text


def format_target(t: Target) -> str:
    """``-j TARGET OPTIONS`` (or ``-g CHAIN``) as iptables-save prints it; empty without one."""
    if isinstance(t, NoTarget):
        return ""
    if isinstance(t, StandardTarget):
        return f"-j {t.verdict}"
    if isinstance(t, JumpTarget):
        return f"-{'g' if t.goto else 'j'} {t.chain}"
    parts = [f"-j {t.name}"]
    if isinstance(t, RejectTarget):
        parts.append(f"--reject-with {t.reject_with}")
    elif isinstance(t, LogTarget):
        if t.prefix:
            parts.append(f"--log-prefix {save_string(t.prefix)}")
        if t.level is not None:
            parts.append(f"--log-level {t.level}")
        parts += [f"--log-{f}" for f in t.flags]
    elif isinstance(t, NflogTarget):
        if t.prefix:
            parts.append(f"--nflog-prefix {save_string(t.prefix)}")
        if t.group:
            parts.append(f"--nflog-group {t.group}")
        parts += _raw(t.options)
    elif isinstance(t, CtTarget):
        if t.notrack:
            parts.append("--notrack")
        parts += _raw(t.options)
        if t.zone is not None:
            suffix = f"-{t.zone_dir}" if t.zone_dir else ""
            parts.append(f"--zone{suffix} {t.zone}")
    elif isinstance(t, MarkTarget):
        parts.append(f"--set-xmark 0x{t.value:x}/0x{t.mask:x}")
    elif isinstance(t, ConnmarkTarget):
        if t.mode == "set":
            parts.append(f"--set-xmark 0x{t.value:x}/0x{t.mask:x}")
        else:
            parts.append(f"--{t.mode}-mark --nfmask 0x{t.nfmask:x} --ctmask 0x{t.ctmask:x}")
    elif isinstance(t, NatTarget):
        option = "--to-source" if t.nat_type == "SNAT" else "--to-destination"
        parts += [f"{option} {_nat_range(r)}" for r in t.ranges]
        if t.to_ports is not None:
            parts.append(f"--to-ports {_dashed(t.to_ports)}")
        for flag in ("random", "random_fully", "persistent"):
            if getattr(t, flag):
                parts.append("--" + flag.replace("_", "-"))
    elif isinstance(t, ChecksumTarget):
        parts.append("--checksum-fill")
    elif isinstance(t, TcpmssTarget):
        parts.append("--clamp-mss-to-pmtu" if t.clamp_to_pmtu else f"--set-mss {t.mss}")
    elif isinstance(t, UnknownTarget):
        parts += _raw(t.options)
    elif isinstance(t, TraceTarget | NotrackTarget):
        pass
    return " ".join(parts)


def format_rule(rule: Rule) -> str:
    """The rule's ``-A CHAIN ...`` line (without counters)."""
    parts = [f"-A {rule.chain}", *format_ip(rule.ip)]
    parts += [format_match(m) for m in rule.matches]
    target = format_target(rule.target)
    if target:
        parts.append(target)
    return " ".join(parts)


def format_ruleset(ruleset: Ruleset, *, counters: bool = False) -> str:
    """The whole ruleset as ``iptables-save`` (with ``-c`` when ``counters``) would print it."""
    prog = "iptables" if ruleset.family is Family.IPV4 else "ip6tables"
    lines: list[str] = []
    for table in ruleset.tables.values():
        lines.append(f"# Generated by {prog}-save")
        lines.append(f"*{table.name}")
        for chain in table.chains.values():
            pkts, byts = chain.counters or (0, 0)
            lines.append(f":{chain.name} {chain.policy or '-'} [{pkts}:{byts}]")
        for chain in table.chains.values():
            for rule in chain.rules:
                prefix = ""
                if counters:
                    rp, rb = rule.counters or (0, 0)
                    prefix = f"[{rp}:{rb}] "
                lines.append(prefix + format_rule(rule))
        lines.append("COMMIT")
        lines.append(f"# Completed by {prog}-save")
    return "\n".join(lines) + "\n"
