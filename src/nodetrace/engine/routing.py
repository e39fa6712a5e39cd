"""The kernel's routing decision for one packet in one namespace: policy rules in priority
order, then the longest matching prefix of the table they name.

The answer is what the host stack does next: deliver locally (INPUT), forward out of a device
(FORWARD, if forwarding is on), or drop (blackhole, unreachable, no route, reverse-path filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from nodetrace.model.packet import Family
from nodetrace.model.topology import MAIN_NS, IPAddress, Route, RouteRule, RouteType, Topology

DEFAULT_RULES = {
    Family.IPV4: (
        RouteRule(Family.IPV4, 0, "local"),
        RouteRule(Family.IPV4, 32766, "main"),
        RouteRule(Family.IPV4, 32767, "default"),
    ),
    Family.IPV6: (RouteRule(Family.IPV6, 0, "local"), RouteRule(Family.IPV6, 32766, "main")),
}
"""The rules every namespace starts with; used when a snapshot has no ``ip rule`` output."""


class RouteAction(StrEnum):
    LOCAL = "local"
    """The destination is this host: INPUT, then a socket (or a tunnel endpoint)."""
    FORWARD = "forward"
    DROP = "drop"
    UNKNOWN = "unknown"
    """The snapshot has no routing table for the namespace: nothing can be decided."""


@dataclass(frozen=True, slots=True)
class RouteDecision:
    action: RouteAction
    route: Route | None = None
    rule: RouteRule | None = None
    dev: str | None = None
    gateway: IPAddress | None = None
    reason: str = ""
    assumption: str | None = None


def missing_routes(family: Family, netns: str) -> str:
    """Why a routing decision cannot be made: the output, and the command that collects it."""
    command = "ip -6 route show table all" if family is Family.IPV6 else "ip route show table all"
    if netns == MAIN_NS:
        return f"no `{command}` output in the snapshot: collect it with `{command}`"
    return (
        f"no `{command}` output of namespace {netns} in the snapshot: collect it with "
        f"`ip netns exec {netns} {command}`"
    )


def _rule_matches(
    rule: RouteRule, src: IPAddress | None, dst: IPAddress, iif: str | None, mark: int
) -> bool:
    ok = True
    if rule.src is not None:
        ok = ok and src is not None and src in rule.src
    if rule.dst is not None:
        ok = ok and dst in rule.dst
    if rule.iif is not None:
        ok = ok and rule.iif == (iif or "lo")
    if rule.oif is not None:
        # Only sockets bound to that device use the rule; nothing here is such a socket.
        ok = False
    if rule.fwmark is not None:
        mask = rule.fwmask if rule.fwmask is not None else 0xFFFFFFFF
        ok = ok and (mark & mask) == (rule.fwmark & mask)
    return ok != rule.not_


def best_route(routes: tuple[Route, ...], table: str, dst: IPAddress) -> Route | None:
    """Longest prefix, then lowest metric, in ``table`` (``main`` is also table 254...)."""
    aliases = {"main": "254", "local": "255", "default": "253"}
    names = {table, aliases.get(table, table)} | {k for k, v in aliases.items() if v == table}
    best: Route | None = None
    for r in routes:
        if r.table not in names or r.dst.version != dst.version or dst not in r.dst:
            continue
        if best is None or (r.dst.prefixlen, -r.metric) > (best.dst.prefixlen, -best.metric):
            best = r
    return best


def decide(
    topology: Topology,
    dst: IPAddress,
    *,
    src: IPAddress | None = None,
    iif: str | None = None,
    mark: int = 0,
    netns: str = MAIN_NS,
) -> RouteDecision:
    """Route ``dst`` as the kernel would for a packet received on ``iif`` (``None``: locally
    generated)."""
    family = Family.IPV4 if dst.version == 4 else Family.IPV6
    routes = topology.routes_in(netns)
    rules = topology.rules_in(netns, family)
    assumption = None
    if not rules:
        rules = DEFAULT_RULES[family]
        assumption = "no `ip rule` output: the default rules (local, main, default) assumed"
    if not routes:
        return RouteDecision(RouteAction.UNKNOWN, reason=missing_routes(family, netns))
    for rule in sorted(rules, key=lambda r: r.priority):
        if not _rule_matches(rule, src, dst, iif, mark):
            continue
        if rule.action in ("blackhole", "unreachable", "prohibit"):
            return RouteDecision(
                RouteAction.DROP,
                rule=rule,
                reason=f"ip rule {rule.priority}: {rule.action}",
                assumption=assumption,
            )
        if rule.action != "lookup" or rule.table is None:
            continue
        route = best_route(routes, rule.table, dst)
        if route is None or route.type is RouteType.THROW:
            continue
        return _decision(route, rule, dst, assumption)
    return RouteDecision(
        RouteAction.DROP,
        reason=f"no route to {dst} (network unreachable)",
        assumption=assumption,
    )


def _decision(
    route: Route, rule: RouteRule, dst: IPAddress, assumption: str | None
) -> RouteDecision:
    where = f"table {route.table}: {_route_text(route)}"
    if route.type in (RouteType.LOCAL, RouteType.BROADCAST):
        return RouteDecision(
            RouteAction.LOCAL,
            route,
            rule,
            route.dev,
            reason=f"{dst} is local ({where})",
            assumption=assumption,
        )
    if route.type in (RouteType.BLACKHOLE, RouteType.UNREACHABLE, RouteType.PROHIBIT):
        return RouteDecision(
            RouteAction.DROP, route, rule, reason=f"{route.type.value} route ({where})",
            assumption=assumption,
        )  # fmt: skip
    dev, gateway = route.dev, route.gateway
    if route.nexthops:
        # Multipath: the kernel hashes the flow; the first hop is shown and the choice stated.
        hop = route.nexthops[0]
        dev, gateway = hop.dev, hop.gateway
        assumption = (assumption + "; " if assumption else "") + (
            f"multipath route to {route.dst}: first next hop ({gateway} dev {dev}) assumed"
        )
    return RouteDecision(RouteAction.FORWARD, route, rule, dev, gateway, where, assumption)


def _route_text(route: Route) -> str:
    dst = "default" if route.dst.prefixlen == 0 else str(route.dst)
    parts = [dst] if route.type is RouteType.UNICAST else [route.type.value, dst]
    if route.gateway is not None:
        parts += ["via", str(route.gateway)]
    if route.dev is not None:
        parts += ["dev", route.dev]
    return " ".join(parts)


def reverse_path_ok(
    topology: Topology, src: IPAddress, iif: str, mode: int, netns: str = MAIN_NS
) -> tuple[bool | None, str]:
    """``rp_filter``: strict (1) wants the route back to ``src`` to leave by ``iif``; loose (2)
    wants any route back; 0 checks nothing. ``None``: no routing table to check with."""
    if mode == 0:
        return True, ""
    back = decide(topology, src, netns=netns)
    if back.action is RouteAction.UNKNOWN:
        return None, f"rp_filter={mode} checks the route back to {src}: {back.reason}"
    if back.action is RouteAction.DROP:
        return False, f"rp_filter={mode}: no route back to {src}"
    if mode == 1 and back.action is RouteAction.FORWARD and back.dev != iif:
        return (
            False,
            f"rp_filter=1 (strict): the route back to {src} leaves by {back.dev}, not {iif}",
        )
    return True, ""
