"""Why the prediction itself loses the packet: the step that decided it, read back as a
catalogue cause with the snapshot's facts behind it.

The walk ends a packet at a netfilter rule, an OpenFlow table or a device; which one is in its
trace (``verdict_step``). A rule or flow is its own evidence; a device's drop is checked
against the device's facts (link state, MTU) and the sysctls the walk read, so the cause never
rests on the wording of a reason alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodetrace.diagnosis.catalogue import (
    TITLES,
    CauseId,
    confirm_fdb,
    confirm_flow,
    confirm_link,
    confirm_rule,
    confirm_sysctl,
    in_netns,
)
from nodetrace.diagnosis.facts import (
    find_device,
    link_fact,
    matched_states,
    rule_fact,
    sysctl_fact,
    where,
)
from nodetrace.engine.walk import WalkRequest
from nodetrace.model.diagnosis import Cause, Layer
from nodetrace.model.packet import total_length
from nodetrace.model.snapshot import Snapshot
from nodetrace.model.topology import MAIN_NS
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    StepKind,
    Trace,
)


@dataclass(frozen=True, slots=True)
class Finding:
    """Where and why, before it is joined with the observation."""

    layer: Layer
    location: str
    cause: Cause


LOST = frozenset({Outcome.DROPPED, Outcome.REJECTED})


def cause(cid: CauseId, evidence: list[str], confirm: str = "", title: str = "") -> Cause:
    return Cause(cid.value, title or TITLES[cid], tuple(e for e in evidence if e), confirm)


def explain_prediction(
    snapshot: Snapshot, predicted: Trace, request: WalkRequest
) -> Finding | None:
    """The cause of the prediction's own loss; ``None`` when it predicts the packet passes."""
    if predicted.outcome is Outcome.UNKNOWN:
        return _unknown(predicted)
    if predicted.outcome not in LOST:
        return None
    step = predicted.steps[predicted.verdict_step] if predicted.verdict_step is not None else None
    match step:
        case NetfilterStep():
            return _netfilter(step, request, predicted)
        case OpenFlowStep():
            return _openflow(step, predicted, request)
        case DeviceStep():
            return _device(snapshot, step, predicted, request)
        case None:
            finding = _unknown(predicted)
            return finding
    return None


def _unknown(predicted: Trace) -> Finding:
    reason = predicted.reason or "the prediction ends without a reason"
    return Finding(
        Layer.UNKNOWN,
        "",
        cause(CauseId.UNKNOWN, [reason], title=f"the snapshot cannot tell: {reason}"),
    )


def _netns_of(request: WalkRequest) -> str:
    return getattr(request.start, "netns", MAIN_NS)


def _netfilter(step: NetfilterStep, request: WalkRequest, predicted: Trace) -> Finding:
    netns = _netns_of(request)
    family = step.family
    rule = step.rule
    what = f"{step.table} {step.chain}"
    if step.kind is StepKind.POLICY:
        location = f"{what} policy {step.verdict or predicted.outcome.value.upper()}"
    else:
        location = f"{what} rule {step.number}" + (f": {rule.text}" if rule is not None else "")
    evidence = [rule_fact(rule)] if rule is not None else []
    if step.kind is StepKind.POLICY:
        evidence.append(f"the policy of {what}: {predicted.reason}")
    confirm = confirm_rule(family, step.table, step.chain, netns)
    states = matched_states(rule)
    if "INVALID" in states:
        evidence.append(
            "the rule matches conntrack state INVALID: conntrack could not place the packet in "
            "a connection (out of window, no connection for a reply, a bad checksum)"
        )
        confirm += "; " + in_netns("conntrack -S", netns) + " (the invalid counter rises)"
        return Finding(
            Layer.CONNTRACK, location, cause(CauseId.CONNTRACK_INVALID, evidence, confirm)
        )
    return Finding(Layer.NETFILTER, location, cause(CauseId.RULE_DROP, evidence, confirm))


def _in_port(predicted: Trace, step: OpenFlowStep) -> str | None:
    """The in_port of the bridge pass the step belongs to (the walk says it on entering)."""
    index = predicted.steps.index(step)
    for before in reversed(predicted.steps[:index]):
        if not isinstance(before, DeviceStep) or before.action is not DeviceAction.ENTER:
            continue
        if before.device == step.bridge and "in_port=" in before.detail:
            return before.detail.split("in_port=", 1)[1].split()[0]
    return None


def _openflow(step: OpenFlowStep, predicted: Trace, request: WalkRequest) -> Finding:
    location = f"{step.bridge} table {step.table}"
    at = f" ({step.source})" if step.source is not None else ""
    port = _in_port(predicted, step)
    packet = predicted.packet or request.packet
    flow = packet.flow_text(in_port=port) if port is not None else None
    confirm = confirm_flow(step.bridge, step.table, flow)
    if step.priority is None and not step.match:
        evidence = [f"{step.bridge} table {step.table}: no flow matches the packet{at}"]
        title = f"no flow in {step.bridge} table {step.table} matches the packet (table miss)"
        return Finding(
            Layer.OPENFLOW, location, cause(CauseId.FLOW_MISSING, evidence, confirm, title)
        )
    flow_text = f"priority={step.priority},{step.match} actions={step.actions or 'drop'}{at}"
    location += f" (priority {step.priority})"
    if "ct_state" in step.match and "+inv" in step.match:
        evidence = [flow_text, "the flow matches conntrack state +inv"]
        confirm += "; ovs-appctl dpctl/dump-conntrack"
        return Finding(
            Layer.CONNTRACK, location, cause(CauseId.CONNTRACK_INVALID, evidence, confirm)
        )
    evidence = [flow_text, predicted.reason]
    title = (
        f"no flow in {step.bridge} forwards the packet: it meets a flow that drops it "
        f"(table {step.table}, priority {step.priority})"
    )
    return Finding(Layer.OPENFLOW, location, cause(CauseId.FLOW_MISSING, evidence, confirm, title))


_MTU_RE = re.compile(r"more than the MTU of (\S+) \((\d+)\)")
_LINK_RE = re.compile(r"(\S+) (?:is down|has no carrier)\b")
"""How the walk words a drop for want of link: the device named first is the one without it."""
"""How the walk words an MTU drop: the device whose MTU is exceeded (a veth's peer, a bridge's
out port) may be another than the one the step names."""


def _device(
    snapshot: Snapshot, step: DeviceStep, predicted: Trace, request: WalkRequest
) -> Finding:
    name = step.device.split(" → ")[0]
    dev = find_device(snapshot, name)
    netns = dev.netns if dev is not None else _netns_of(request)
    # A route step's detail is the route taken; the walk's reason says why that ended it.
    reason = " ".join(dict.fromkeys(x for x in (step.detail, predicted.reason) if x))
    too_long = _MTU_RE.search(reason)
    if too_long is not None:
        return _mtu(snapshot, too_long.group(1), reason, predicted, netns)
    down = _LINK_RE.search(reason)
    if down is not None:
        return _link(snapshot, down.group(1), reason, netns)
    if dev is not None and (not dev.up or not dev.carrier):
        return _link(snapshot, name, reason, netns)
    if "native tunnel:" in reason:
        return _tunnel(snapshot, step, reason)
    if step.action is DeviceAction.ROUTE or reason.startswith("rp_filter="):
        return _routing(snapshot, step, reason, netns)
    if step.action is DeviceAction.BRIDGE or _is_fdb(reason):
        found = _fdb(snapshot, step, reason, predicted, netns)
        if found is not None:
            return found
    if "never reached" in reason:
        found = _astray(snapshot, predicted, netns)
        if found is not None:
            return found
    return Finding(
        Layer.DEVICE,
        step.device,
        cause(CauseId.UNKNOWN, [reason], title=f"dropped at {step.device}: {reason}"),
    )


def _link(snapshot: Snapshot, name: str, reason: str, netns: str) -> Finding:
    dev = find_device(snapshot, name, netns)
    evidence = [link_fact(snapshot, dev)] if dev is not None else []
    state = "down" if dev is not None and not dev.up else "no carrier"
    peer = snapshot.topology.veth_peer(dev) if dev is not None else None
    if peer is not None and (not peer.up or not peer.carrier):
        evidence.append(link_fact(snapshot, peer))
        state = f"no carrier: peer {peer.name} down"
    evidence.append(reason)
    return Finding(
        Layer.DEVICE,
        f"{name} ({state})",
        cause(CauseId.LINK_DOWN, evidence, confirm_link(name, netns)),
    )


def _mtu(snapshot: Snapshot, name: str, reason: str, predicted: Trace, netns: str) -> Finding:
    dev = find_device(snapshot, name, netns) or find_device(snapshot, name)
    evidence = [link_fact(snapshot, dev)] if dev is not None else []
    packet = predicted.packet
    if packet is not None and packet.family is not None:
        given = "its IP length as given" if packet.ip_len is not None else "its headers alone"
        evidence.append(f"the packet: {total_length(packet)} bytes ({given})")
    evidence.append(reason)
    mtu = dev.mtu if dev is not None else None
    return Finding(
        Layer.DEVICE,
        f"{name} (mtu {mtu})",
        cause(CauseId.MTU, evidence, confirm_link(name, netns)),
    )


def _routing(snapshot: Snapshot, step: DeviceStep, reason: str, netns: str) -> Finding:
    dev = step.device
    if reason.startswith("rp_filter="):
        keys = ["net.ipv4.conf.all.rp_filter", f"net.ipv4.conf.{dev.replace('.', '/')}.rp_filter"]
        evidence = [sysctl_fact(snapshot, netns, k) for k in keys] + [reason]
        confirm = (
            confirm_sysctl(keys, netns)
            + "; "
            + in_netns("nstat -az TcpExtIPReversePathFilter", netns)
        )
        return Finding(
            Layer.ROUTING, f"{dev} (rp_filter)", cause(CauseId.RP_FILTER, evidence, confirm)
        )
    if "ip_forward=0" in reason or "forwarding is off" in reason:
        keys = ["net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"]
        evidence = [sysctl_fact(snapshot, netns, k) for k in keys] + [reason]
        return Finding(
            Layer.ROUTING,
            f"{dev} (ip_forward=0)",
            cause(CauseId.IP_FORWARD_OFF, evidence, confirm_sysctl(keys[:1], netns)),
        )
    evidence = [reason, f"routing table of {where(snapshot)}"]
    return Finding(
        Layer.ROUTING,
        dev,
        cause(CauseId.NO_ROUTE, evidence, in_netns("ip route get <destination>", netns)),
    )


def _tunnel(snapshot: Snapshot, step: DeviceStep, reason: str) -> Finding:
    """Open vSwitch's userspace datapath routes a tunnel's outer packet itself (its own
    routing table, ``ovs/route/show``): no route there through one of its bridges."""
    evidence = [reason, f"Open vSwitch's routes and the node's routing table ({where(snapshot)})"]
    return Finding(
        Layer.TUNNEL,
        f"{step.device} (outer packet)",
        cause(CauseId.NO_ROUTE, evidence, "ovs-appctl ovs/route/show; ovs-appctl tnl/neigh/show"),
    )


_FDB_WORDS = ("was learned on", "forwarding table:", "is on ")


def _is_fdb(reason: str) -> bool:
    return any(w in reason for w in _FDB_WORDS)


def _fdb(
    snapshot: Snapshot, step: DeviceStep, reason: str, predicted: Trace, netns: str
) -> Finding | None:
    if not _is_fdb(reason):
        return None
    bridge = step.device
    packet = predicted.packet
    mac = packet.dl_dst if packet is not None else ""
    entries = [e for e in snapshot.topology.fdb_of(bridge, netns) if e.mac == mac.lower()]
    evidence = [
        f"bridge fdb: {e.mac} dev {e.dev} master {bridge} {e.state or 'learned'} "
        f"({where(snapshot)})"
        for e in entries
    ]
    evidence.append(reason)
    return Finding(
        Layer.BRIDGE,
        f"{bridge} forwarding table ({mac})",
        cause(CauseId.FDB_STALE, evidence, confirm_fdb(bridge, mac, netns, ovs=False)),
    )


def _astray(snapshot: Snapshot, predicted: Trace, netns: str) -> Finding | None:
    """The packet went elsewhere than its target: the forwarding entry that sent it there."""
    for step in predicted.steps:
        if isinstance(step, DeviceStep) and step.detail.startswith("forwarding table:"):
            return _fdb(snapshot, step, step.detail, predicted, netns)
    for step in predicted.steps:
        if isinstance(step, OpenFlowStep) and "NORMAL" in step.actions and predicted.packet:
            mac = predicted.packet.dl_dst
            evidence = [
                f"{step.bridge} table {step.table}: actions={step.actions} (MAC learning)",
                predicted.reason,
            ]
            return Finding(
                Layer.BRIDGE,
                f"{step.bridge} MAC learning table ({mac})",
                cause(CauseId.FDB_STALE, evidence, confirm_fdb(step.bridge, mac, netns, ovs=True)),
            )
    return None
