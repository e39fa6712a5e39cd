"""TRACE output formats against the kernel, field by field: packets chosen to exercise every part
of the packet dump (TCP options and every flag, reserved bits, urgent pointer, payload lengths,
ICMP errors with their quoted packet, incomplete ICMP bodies, fragments, other protocols,
marks, TOS/precedence bits, MAC bytes above 0x7f, IPv6), in the kernel log and in
xtables-monitor output."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.lab.bridge_bed import (
    HostSpec,
    build_bridge_bed,
    load_ruleset,
    save_ruleset,
)
from nodetrace.lab.netfilter_oracle import Send, observe
from nodetrace.lab.resources import Resources
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import Family
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.kernel_trace import render_kernel_trace
from nodetrace.render.xtables_trace import render_xtables_trace
from tests.conftest import unique
from tests.unit.test_netfilter_render import RULES, v4_packets, v6_packets

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
@pytest.mark.parametrize("family", [Family.IPV4, Family.IPV6], ids=["ipv4", "ipv6"])
def test_packet_dumps_match_the_kernel_field_for_field(
    lab: Resources, tmp_path: Path, backend: Backend, family: Family
) -> None:
    hosts = [HostSpec("a", mac="fa:16:3e:8c:aa:01"), HostSpec("b", mac="fa:16:3e:91:7b:f2")]
    bed = build_bridge_bed(lab, prefix=unique("nf"), hosts=hosts, ipv6=family is Family.IPV6)
    load_ruleset(bed, RULES, backend=backend, family=family)
    saved = save_ruleset(bed, backend=backend, family=family)
    packets = v4_packets() if family is Family.IPV4 else v6_packets()
    sends = [Send("a", "b", p) for p in packets]
    observations = observe(lab, bed, sends, backend=backend, workdir=tmp_path)
    engine = NetfilterEngine(parse_iptables_save(saved, source="saved", family=family))
    mismatches = []
    for obs in observations:
        result = engine.run(obs.packet, bridge_path(bed.bridge, physin=bed.host("a").port,
                                                     physout=bed.host("b").port))  # fmt: skip
        if backend is Backend.LEGACY:
            predicted = render_kernel_trace(result.trace.steps)
        else:
            predicted = render_xtables_trace(result.trace.steps, trace_id=obs.trace_id or 0)
        assert obs.lines, f"the kernel printed nothing for {obs.packet}"
        if predicted != list(obs.lines):
            mismatches.append((obs.packet, list(obs.lines), predicted))
    detail = "\n".join(
        f"{p}\n  kernel:    {g}\n  nodetrace: {q}"
        for p, got, pred in mismatches
        for g, q in zip(got, pred, strict=False)
        if g != q
    )
    assert not mismatches, detail
