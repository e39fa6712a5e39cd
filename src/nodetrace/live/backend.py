"""Which netfilter back end a namespace uses, found from what its tables hold, and said.

A node's rules live in iptables-legacy, in iptables-nft (nf_tables tables that iptables-nft
made) or in native nftables; the Neutron agent uses whatever ``iptables`` points to. Rules found
in one back end decide it; rules in both are reported and the one ``iptables`` runs is chosen;
an empty namespace follows ``iptables -V``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodetrace.live.command import CommandError, run
from nodetrace.live.rules import Backend

_IPTABLES_NFT_TABLES = {"filter", "nat", "mangle", "raw", "security"}


@dataclass(frozen=True, slots=True)
class Detected:
    backend: Backend
    reason: str


def detect(netns: str) -> Detected:
    """The back end of namespace ``netns`` (``""``: the current one) and why."""
    legacy = _has_rules(["iptables-legacy-save"], netns) or _has_rules(
        ["ip6tables-legacy-save"], netns
    )
    nft_iptables = _has_rules(["iptables-nft-save"], netns) or _has_rules(
        ["ip6tables-nft-save"], netns
    )
    native = _native_nft_tables(netns)
    default = _default_backend(netns)
    if legacy and nft_iptables:
        return Detected(
            default,
            f"rules in both iptables-legacy and iptables-nft; {default.value} is what "
            "`iptables` runs here",
        )
    if legacy:
        return Detected(Backend.LEGACY, "iptables-legacy holds the rules")
    if nft_iptables:
        return Detected(Backend.NFT, "iptables-nft holds the rules")
    if native:
        return Detected(
            Backend.NFTABLES, f"native nftables tables and no iptables rules: {', '.join(native)}"
        )
    return Detected(default, f"no rules yet; {default.value} is what `iptables` runs here")


def _has_rules(argv: list[str], netns: str) -> bool:
    try:
        text = run(argv, netns=netns).stdout
    except CommandError:
        return False
    return any(line.startswith("*") for line in text.splitlines())


def _native_nft_tables(netns: str) -> list[str]:
    """Tables ``nft list tables`` shows that iptables-nft did not make (by their names)."""
    try:
        text = run(["nft", "list", "tables"], netns=netns).stdout
    except CommandError:
        return []
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table":
            family, name = words[1], words[2]
            if family in ("ip", "ip6") and name in _IPTABLES_NFT_TABLES:
                continue
            if name.startswith("nodetrace_"):
                continue  # another live run's own table
            out.append(f"{family} {name}")
    return out


def _default_backend(netns: str) -> Backend:
    try:
        version = run(["iptables", "-V"], netns=netns).stdout
    except CommandError:
        return Backend.NFT
    return Backend.LEGACY if "legacy" in version else Backend.NFT
