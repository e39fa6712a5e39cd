"""Drop counters that rose while the packet was followed (``live watch``, ``diff``): where
the snapshot lets the packet through but a device on its path counted drops.

A tap's ``tx_dropped`` is what the kernel counts when the VM does not take the frames sent to
it (its queue is full, or nothing reads it), and the same counter of whatever device hands the
packet to the VM says the same: that is the catalogue's ``vm-not-reading``. Any
other device on the path whose drop counter rose is named, as a lead, not a cause.
"""

from __future__ import annotations

from collections.abc import Mapping

from nodetrace.diagnosis.catalogue import CauseId, confirm_link
from nodetrace.diagnosis.facts import find_device
from nodetrace.diagnosis.predicted import Finding, cause
from nodetrace.model.diagnosis import Layer
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import LinkKind
from nodetrace.model.trace import DeviceAction, DeviceStep, Trace

DeviceCounters = Mapping[str, Mapping[str, int]]
"""Per device name, how much each counter (``tx_dropped``, ``rx_dropped``...) grew."""

_DROP_COUNTERS = ("tx_dropped", "rx_dropped", "tx_errors", "rx_errors")


def path_devices(predicted: Trace) -> list[str]:
    """The devices the prediction crosses, in order, each once (a veth crossing names both)."""
    out: list[str] = []
    for step in predicted.steps:
        if isinstance(step, DeviceStep):
            for name in step.device.split(" → "):
                if name not in out:
                    out.append(name)
    return out


def explain_counters(
    snapshot: Snapshot, predicted: Trace, counters: DeviceCounters
) -> Finding | None:
    """The cause the counters point at on the predicted path, if any rose."""
    delivered = next(
        (
            s.device
            for s in reversed(predicted.steps)
            if isinstance(s, DeviceStep) and s.action is DeviceAction.DELIVER
        ),
        None,
    )
    for name in path_devices(predicted):
        grown = {k: counters.get(name, {}).get(k, 0) for k in _DROP_COUNTERS}
        rising = {k: v for k, v in grown.items() if v > 0}
        if not rising:
            continue
        dev = find_device(snapshot, name)
        netns = dev.netns if dev is not None else ""
        said = ", ".join(f"{k} +{v}" for k, v in rising.items())
        evidence = [f"{name}: {said} while the packet was followed"]
        if "tx_dropped" in rising and name == delivered:
            is_tap = dev is not None and dev.kind in (LinkKind.TAP, LinkKind.TUN)
            what = "a tap" if is_tap else "the device"
            evidence.append(
                f"the snapshot delivers the packet to {name}, the VM's side: the kernel counts "
                f"tx_dropped on {what} when the VM does not take the frames sent to it"
            )
            return Finding(
                Layer.DEVICE,
                f"{name} (tx_dropped)",
                cause(CauseId.VM_NOT_READING, evidence, confirm_link(name, netns)),
            )
        title = f"a drop counter of {name}, on the packet's path, rose ({said})"
        return Finding(
            Layer.DEVICE,
            name,
            cause(CauseId.UNKNOWN, evidence, confirm_link(name, netns), title),
        )
    return None


def device_growth(before: Snapshot, after: Snapshot, netns: str) -> tuple[DeviceCounters, str]:
    """How much each device's counters of namespace ``netns`` grew from ``before`` to
    ``after`` (``ip -s -s -j link`` in both), and why nothing can be said when a snapshot
    lacks them (empty when it can)."""
    from nodetrace.snapshot.counters import snapshot_counters

    first, last = snapshot_counters(before), snapshot_counters(after)
    for name, tables in (("the first", first), ("the second", last)):
        if netns not in tables.links:
            return {}, f"{name} snapshot has no `ip -s -s -j link` output: no device counters"
    grown: dict[str, dict[str, int]] = {}
    start = first.links[netns]
    for device, stats in last.links[netns].items():
        earlier = start.get(device)
        if earlier is None:
            continue
        grown[device] = {k: v - earlier.get(k, v) for k, v in stats.items()}
    return grown, ""
