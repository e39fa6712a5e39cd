"""What the whole-node walk asks of the netfilter and OpenFlow engines, in the walk's terms.

The walk crosses many hooks and bridges; each time it hands one packet to one engine and needs
back a verdict, the steps to show, the packet as changed and the assumptions made. These small
interfaces keep the walk independent of each engine's own API; thin adapters implement them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nodetrace.engine.netfilter import HookPath
from nodetrace.model.ipset import IpSets
from nodetrace.model.netfilter import Ruleset
from nodetrace.model.openflow_trace import TunnelEncap
from nodetrace.model.packet import Packet
from nodetrace.model.trace import DeviceStep, NetfilterStep, OpenFlowStep
from nodetrace.model.verdict import Verdict

Metadata = tuple[tuple[str, str], ...]
"""OVS pipeline fields given with a packet (``tun_id``, ``reg0``, ``ct_state``...)."""


@dataclass(frozen=True, slots=True)
class PathCall:
    """The hooks one skb crosses in one namespace, in order (a bridge pass, or a routed
    packet's PREROUTING then INPUT or FORWARD and POSTROUTING)."""

    netns: str
    hooks: HookPath
    ct_state: str | None = None
    """As the user gave it (``--ct-state``); ``None`` lets the engine decide and say so."""
    routed: bool = False
    """Forwarded by the IP layer: its TTL is lowered before FORWARD (``ip_forward``)."""


@dataclass(frozen=True, slots=True)
class HookResult:
    verdict: Verdict
    steps: tuple[NetfilterStep, ...]
    packet: Packet
    reason: str = ""
    """For a drop or unknown: which rule (or policy) decided, in words."""
    decisive_step: int | None = None
    """Index into ``steps`` of the step that decided a drop or unknown."""
    assumptions: tuple[str, ...] = ()


class HookRunner(Protocol):
    """Runs one skb through the netfilter hooks of one namespace."""

    def run_path(
        self, ruleset: Ruleset, ipsets: IpSets | None, packet: Packet, call: PathCall
    ) -> HookResult: ...


@dataclass(frozen=True, slots=True)
class OfOutput:
    """A packet leaving an OVS bridge through a port (after patch ports have been followed)."""

    bridge: str
    port: str
    packet: Packet
    metadata: Metadata = ()
    encap: TunnelEncap | None = None
    """Set when ``port`` is a tunnel port: the packet is encapsulated on the way out."""


@dataclass(frozen=True, slots=True)
class OfResult:
    steps: tuple[OpenFlowStep | DeviceStep, ...]
    """Table lookups, and the patch ports and outputs the engine itself reports."""
    outputs: tuple[OfOutput, ...]
    verdict: Verdict
    """``accept`` when at least one packet leaves, ``drop`` when none does."""
    reason: str = ""
    decisive_step: int | None = None
    assumptions: tuple[str, ...] = ()
    consulted: tuple[tuple[str, str], ...] = ()
    """Fields outside ``given`` that a lookup depended on, with the table that looked."""


class BridgeRunner(Protocol):
    """Runs one packet through the OpenFlow pipeline of one OVS bridge."""

    def run(
        self,
        bridge: str,
        in_port: str,
        packet: Packet,
        metadata: Metadata,
        given: frozenset[str] | None = None,
    ) -> OfResult:
        """``given``: the packet fields with a stated value; lookups that depend on any
        other field report it in ``consulted`` (``None``: report nothing)."""
        ...
