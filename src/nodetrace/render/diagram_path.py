"""A trace as the hops a diagram marks: the devices and bridges the packet crossed, in order,
with the steps that happened at each and how the packet fared there.

A hop is where the packet *was*: a ``DeviceStep``'s device (both ends of a veth), an
``OpenFlowStep``'s bridge, a netfilter step's device (the one netfilter ran on: ``in`` for
PREROUTING, INPUT and FORWARD, ``out`` for OUTPUT and POSTROUTING; a bridged frame's port,
``physin``, comes first when the packet has not been seen there). Consecutive steps at one
device are one hop, and each step belongs to exactly one hop (a veth crossing to its receiving
end). The hop of the step that decided the outcome is ``decided`` (``dropped``
for a drop or reject, ``unknown`` when the walk could not tell); when no step decided an
unknown or dropped end, the last hop carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, assert_never

from nodetrace.model.topology import MAIN_NS
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    Hook,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    Trace,
)

HopState = Literal["passed", "decided", "dropped", "unknown"]

VETH_ARROW = " → "
"""How the walk names a veth crossing: ``qvbX → qvoX``."""
INTO_NAMESPACE = "(into namespace "
"""How the walk's veth step says the peer is in another namespace."""
PSEUDO_DEVICES = {(DeviceAction.ENTER, "host"), (DeviceAction.OUTPUT, "CONTROLLER")}
"""Steps the walk records at no device: the host stack sending, a controller receiving."""


@dataclass(frozen=True, slots=True)
class Hop:
    index: int
    """From 1, in the order of the packet's path."""
    device: str
    """A device (interface) or bridge name as in the snapshot's topology."""
    netns: str
    """Its namespace as far as the trace tells (``""``: the main one)."""
    steps: tuple[int, ...]
    """Indexes (from 1) of the trace's steps that happened at this hop."""
    state: HopState


@dataclass(frozen=True, slots=True)
class PathMarks:
    hops: tuple[Hop, ...]
    observed: bool = False
    """True: drawn in the colour of what a node was seen doing (explain views)."""


@dataclass
class _Hop:
    device: str
    netns: str
    steps: list[int]


def _netfilter_devices(step: NetfilterStep) -> tuple[str, ...]:
    """The devices of a netfilter step, the one netfilter ran on last."""
    match step.hook:
        case Hook.OUTPUT | Hook.POSTROUTING:
            main = step.out_dev or step.in_dev
        case Hook.PREROUTING | Hook.INPUT | Hook.FORWARD | None:
            main = step.in_dev or step.out_dev
        case _:
            assert_never(step.hook)
    return tuple(d for d in (step.physin or "", main) if d)


def path_marks(trace: Trace, *, observed: bool = False) -> PathMarks:
    """The hops of ``trace``, in the order of its steps (see the module's docstring)."""
    hops: list[_Hop] = []
    netns = MAIN_NS
    pending: list[int] = []
    decided_hop: int | None = None

    def visit(device: str, where: str, step: int | None) -> None:
        if hops and hops[-1].device == device and hops[-1].netns == where:
            hop = hops[-1]
        else:
            hop = _Hop(device, where, [])
            hops.append(hop)
        hop.steps.extend(pending)
        pending.clear()
        if step is not None:
            hop.steps.append(step)

    for number, step in enumerate(trace.steps, start=1):
        match step:
            case DeviceStep(action=action, device=device, detail=detail):
                if (action, device) in PSEUDO_DEVICES:
                    if hops and action is DeviceAction.OUTPUT:
                        hops[-1].steps.append(number)
                    else:
                        pending.append(number)
                elif action is DeviceAction.VETH and VETH_ARROW in device:
                    # Sent on the near end, received on the far one: the step is the far
                    # end's, so that every step belongs to exactly one hop.
                    near, far = device.split(VETH_ARROW, 1)
                    visit(near, netns, None)
                    if INTO_NAMESPACE in detail:
                        netns = detail.split(INTO_NAMESPACE, 1)[1].split(")", 1)[0]
                    visit(far, netns, number)
                else:
                    visit(device, netns, number)
            case OpenFlowStep(bridge=bridge):
                visit(bridge, MAIN_NS, number)
            case NetfilterStep():
                devices = _netfilter_devices(step)
                if hops and hops[-1].device in {
                    d for d in (step.in_dev, step.out_dev, step.physin, step.physout) if d
                }:
                    hops[-1].steps.append(number)
                elif devices:
                    for device in devices[:-1]:
                        visit(device, netns, None)
                    visit(devices[-1], netns, number)
                else:
                    pending.append(number)
            case _:
                assert_never(step)
        if trace.verdict_step is not None and number == trace.verdict_step + 1 and hops:
            decided_hop = len(hops) - 1
    if pending and hops:
        hops[-1].steps.extend(pending)

    final: HopState = "decided"
    if trace.outcome in (Outcome.DROPPED, Outcome.REJECTED):
        final = "dropped"
    elif trace.outcome in (Outcome.UNKNOWN, Outcome.ENDS):
        final = "unknown"
    if decided_hop is None and final != "decided" and hops:
        decided_hop = len(hops) - 1
    return PathMarks(
        tuple(
            Hop(i, h.device, h.netns, tuple(h.steps), final if i - 1 == decided_hop else "passed")
            for i, h in enumerate(hops, start=1)
        ),
        observed=observed,
    )
