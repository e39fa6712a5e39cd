"""Which namespace's rules explain a logged packet, on a node with several.

A network node or a DVR compute node runs iptables in many namespaces: the host's own
(Neutron's security-group chains), each ``qrouter-``, ``snat-`` and ``fip-`` namespace (the L3
agent's ``neutron-l3-agent-*`` chains). With ``nf_log_all_netns`` the kernel logs TRACE lines
from all of them into one log, and a line does not say which namespace it came from. Its
devices do: ``IN=qr-3a70b31c-3f`` lives in exactly one namespace of the snapshot. So each packet
is explained with the rules of the namespace that holds its devices; when its devices do not
tell (none known, or in several namespaces), with the one namespace whose rulesets have every
chain the packet went through; when that is not one either, with no rules, and the packet says
why (``--netns`` then chooses).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nodetrace.parsers.trace_kernel_log import parse_devs

if TYPE_CHECKING:
    from nodetrace.tracelog.rulebook import RuleBook

DEVICE_KEYS = ("IN", "OUT", "PHYSIN", "PHYSOUT")


@dataclass(frozen=True, slots=True)
class Choice:
    """The namespace chosen for one packet, its rules, and a warning when none could be."""

    netns: str | None
    book: RuleBook | None
    warning: str = ""


@dataclass
class NamespaceBooks:
    """Every namespace's rules of one snapshot, and where each of its devices lives."""

    books: Mapping[str, RuleBook]
    """Namespace -> its rulesets and ipsets (only namespaces that have rules)."""
    homes: Mapping[str, frozenset[str]]
    """Device name -> the namespaces holding a device of that name."""

    def __post_init__(self) -> None:
        self._chains = {
            netns: {
                (t.name, c)
                for ruleset in book.rulesets.values()
                for t in ruleset.tables.values()
                for c in t.chains
            }
            for netns, book in self.books.items()
        }
        self._cache: dict[tuple[frozenset[str], frozenset[tuple[str, str]]], Choice] = {}

    def choose(self, devs: Iterable[str], chains: Iterable[tuple[str, str]]) -> Choice:
        """The namespace of a packet whose records show ``devs`` (``IN=… OUT=…`` texts) and
        went through ``chains`` (table, chain)."""
        names = frozenset(
            name
            for text in devs
            for key, name in parse_devs(text).items()
            if key in DEVICE_KEYS and name
        )
        steps = frozenset(chains)
        key = (names, steps)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._choose(names, steps)
        return found

    def _choose(self, names: frozenset[str], steps: frozenset[tuple[str, str]]) -> Choice:
        fitting = [ns for ns, known in self._chains.items() if steps <= known]
        known = [self.homes[n] for n in names if n in self.homes]
        if known:
            holding = frozenset.intersection(*known) & frozenset(self.books)
            if len(holding) == 1:
                return self._take(next(iter(holding)))
            if len(holding) > 1:
                holding &= frozenset(fitting)
                if len(holding) == 1:
                    return self._take(next(iter(holding)))
        if len(fitting) == 1:
            return self._take(fitting[0])
        devices = ", ".join(sorted(names)) or "none"
        if not fitting:
            why = "no namespace of the snapshot has every chain it went through"
        else:
            why = f"the rules of {len(fitting)} namespaces fit ({', '.join(sorted(fitting)[:3])}"
            why += ", ...)" if len(fitting) > 3 else ")"
        return Choice(
            None,
            None,
            f"which namespace logged this packet is not told by its devices ({devices}) and "
            f"{why}: shown without rules (--netns chooses)",
        )

    def _take(self, netns: str) -> Choice:
        return Choice(netns, self.books[netns])
