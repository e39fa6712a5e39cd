"""``nodetrace log --json``: one JSON object per packet (JSON Lines), schema in docs/formats.md."""

from __future__ import annotations

import json
from typing import Any

from nodetrace.model.packet import IPProto, TcpFlag
from nodetrace.model.trace import NetfilterStep
from nodetrace.tracelog.observed import ObservedPacket

SCHEMA_VERSION = 1

_PROTO_NAMES = {int(p): p.name for p in IPProto}


def _packet(obs: ObservedPacket) -> dict[str, Any]:
    packet = obs.trace.packet
    out: dict[str, Any] = {
        "family": obs.family.value if obs.family is not None else None,
        "fields": [[k, v] for k, v in obs.header.fields] if obs.header is not None else [],
    }
    if packet is None:
        return out
    proto = _PROTO_NAMES.get(packet.nw_proto) if packet.nw_proto else None
    out.update(
        {
            "src": str(packet.nw_src) if packet.nw_src is not None else None,
            "dst": str(packet.nw_dst) if packet.nw_dst is not None else None,
            "proto": "ICMPv6" if packet.nw_proto == IPProto.ICMPV6 else proto,
            "sport": packet.tp_src,
            "dport": packet.tp_dst,
            "length": packet.ip_len,
            "ttl": packet.nw_ttl,
            "ip_id": packet.ip_id,
            "df": packet.ip_df,
            "tcp_flags": [f.name for f in TcpFlag if packet.tcp_flags & f],
            "tcp_seq": packet.tcp_seq if packet.nw_proto == IPProto.TCP else None,
            "tcp_ack": packet.tcp_ack if packet.nw_proto == IPProto.TCP else None,
            "icmp_type": packet.icmp_type,
            "icmp_code": packet.icmp_code,
            "icmp_id": packet.icmp_id,
            "icmp_seq": packet.icmp_seq,
            "mac_src": packet.dl_src if packet.dl_src != "00:00:00:00:00:00" else None,
            "mac_dst": packet.dl_dst if packet.dl_dst != "00:00:00:00:00:00" else None,
            "mark": packet.skb_mark,
        }
    )
    return out


def _step(step: NetfilterStep) -> dict[str, Any]:
    return {
        "hook": step.hook.value if step.hook is not None else None,
        "table": step.table,
        "chain": step.chain,
        "kind": step.kind.value,
        "number": step.number,
        "handle": step.handle,
        "verdict": step.verdict,
        "rule": step.rule.text if step.rule is not None else step.rule_text,
        "rule_source": str(step.rule.pos) if step.rule is not None and step.rule.pos else None,
        "in": step.in_dev,
        "out": step.out_dev,
        "physin": step.physin,
        "physout": step.physout,
        "lines": [step.span.first_line, step.span.last_line] if step.span is not None else None,
        "note": step.note,
        "misfit": step.misfit,
    }


def packet_json(obs: ObservedPacket) -> dict[str, Any]:
    steps = [s for s in obs.trace.steps if isinstance(s, NetfilterStep)]
    return {
        "schema": SCHEMA_VERSION,
        "index": obs.index,
        "packet": _packet(obs),
        "steps": [_step(s) for s in steps],
        "outcome": obs.trace.outcome.value,
        "verdict_step": obs.trace.verdict_step,
        "reason": obs.trace.reason,
        "egress": obs.conclusion.egress,
        "source": {
            "file": obs.source,
            "lines": [obs.first_line, obs.last_line],
            "format": obs.log_format,
        },
        "time": obs.time,
        "trace_id": obs.trace_id,
        "pass": obs.occurrence,
        "same_ports": obs.same_ports,
        "warnings": list(obs.warnings),
        "assumptions": list(obs.trace.assumptions),
    }


def dumps_packet(obs: ObservedPacket) -> str:
    return json.dumps(packet_json(obs), ensure_ascii=False)
