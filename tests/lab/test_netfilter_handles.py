"""Rule handles against the kernel: after ``iptables-nft -I`` inserts TRACE (and another rule)
in front of restored rules, the inserted rules hold the next free handles while the others keep
theirs. The prediction from ``iptables-nft-save`` plus ``nft -a list ruleset`` must equal
``xtables-monitor --trace`` line for line; without the listing it must not."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from nodetrace.engine.netfilter import NetfilterEngine, bridge_path
from nodetrace.lab.bridge_bed import HostSpec, build_bridge_bed, load_ruleset, save_ruleset
from nodetrace.lab.netfilter_oracle import Send, observe
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import Family, Packet
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.nft_list_ruleset import attach_nft_handles, parse_nft_list_ruleset
from nodetrace.render.xtables_trace import render_xtables_trace
from tests.conftest import unique

pytestmark = pytest.mark.lab

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p icmp -j CT --zone 4
-A PREROUTING -p udp --dport 9 -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:sg-chain - [0:0]
-A FORWARD -m physdev --physdev-is-bridged -j sg-chain
-A FORWARD -j ACCEPT
-A sg-chain -p udp --dport 7 -j RETURN
-A sg-chain -p udp -j ACCEPT
COMMIT
"""

A, B = IPv4Address("10.9.0.1"), IPv4Address("10.9.0.2")


def test_inserted_trace_rule_is_named_by_its_real_handle(lab: Resources, tmp_path: Path) -> None:
    hosts = [HostSpec("a", mac="fa:16:3e:8c:aa:01"), HostSpec("b", mac="fa:16:3e:91:7b:f2")]
    bed = build_bridge_bed(lab, prefix=unique("nh"), hosts=hosts)
    load_ruleset(bed, RULES, backend=Backend.NFT)
    run(["iptables-nft", "-t", "raw", "-I", "PREROUTING", "1", "-j", "TRACE"], netns=bed.netns)
    run(
        ["iptables-nft", "-I", "sg-chain", "2", "-p", "udp", "--dport", "8", "-j", "DROP"],
        netns=bed.netns,
    )
    saved = save_ruleset(bed, backend=Backend.NFT)
    listing_text = run(["nft", "-a", "list", "ruleset"], netns=bed.netns).stdout
    packets = [
        Packet(nw_src=A, nw_dst=B, nw_proto=17, tp_src=5000, tp_dst=port, ip_id=100 + port)
        for port in (7, 8, 9, 53)
    ]
    observations = observe(
        lab, bed, [Send("a", "b", p) for p in packets], backend=Backend.NFT, workdir=tmp_path
    )

    ruleset = parse_iptables_save(saved, source="saved", family=Family.IPV4)
    listing = parse_nft_list_ruleset(listing_text, source="nft -a list ruleset")
    attached = attach_nft_handles(ruleset, listing)
    assert attached.notes == ()
    assert set(attached.tables_with_handles) == {"raw", "filter"}
    with_handles = NetfilterEngine(attached.ruleset)
    without = NetfilterEngine(ruleset)
    path = bridge_path(bed.bridge, physin=bed.host("a").port, physout=bed.host("b").port)
    differs = False
    for obs in observations:
        assert obs.lines, f"the kernel printed nothing for {obs.packet}"
        result = with_handles.run(obs.packet, path)
        assert not any("fresh iptables-nft-restore" in a for a in result.trace.assumptions)
        predicted = render_xtables_trace(result.trace.steps, trace_id=obs.trace_id or 0)
        assert predicted == list(obs.lines), "\n".join(
            f"kernel:    {g}\nnodetrace: {q}"
            for g, q in zip(obs.lines, predicted, strict=False)
            if g != q
        )
        assumed = without.run(obs.packet, path)
        differs |= render_xtables_trace(assumed.trace.steps, trace_id=obs.trace_id or 0) != list(
            obs.lines
        )
    assert differs, "the fresh-restore assumption should misname the inserted rules"
