"""The trace rules ``nodetrace live trace`` builds from a flow spec or a port: exact argument
lists and nf_tables text, what is left out and said, and what is refused."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest

from nodetrace.errors import UsageError
from nodetrace.live.rules import (
    Backend,
    IptablesRule,
    Limit,
    iptables_rules,
    nft_table,
)
from nodetrace.live.selector import for_port, from_flow
from nodetrace.model.packet import Family, Packet

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
RUN = "0123456789ab"
TAIL = ["-m", "comment", "--comment", f"nodetrace live trace {RUN}", "-m", "limit", "--limit",
        "10/sec", "--limit-burst", "10", "-j", "TRACE"]  # fmt: skip


@pytest.mark.parametrize(
    ("flow", "backend", "matches"),
    [
        (
            "tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=22",
            Backend.LEGACY,
            ["-s", "10.0.0.1", "-d", "10.0.0.2", "-p", "tcp", "-m", "tcp", "--dport", "22"],
        ),
        (
            "udp,udp_src=68,udp_dst=67",
            Backend.NFT,
            ["-p", "udp", "-m", "udp", "--sport", "68", "--dport", "67"],
        ),
        (
            "icmp,nw_dst=192.0.2.9,icmp_type=8,icmp_code=0",
            Backend.LEGACY,
            ["-d", "192.0.2.9", "-p", "icmp", "-m", "icmp", "--icmp-type", "8/0"],
        ),
        ("ip,nw_src=10.0.0.1", Backend.NFT, ["-s", "10.0.0.1"]),
        ("ip,nw_proto=47", Backend.LEGACY, ["-p", "47"]),
    ],
    ids=["tcp-legacy", "udp-nft", "icmp-type-code", "any-ip-from", "gre-by-number"],
)
def test_a_flow_gives_one_rule_per_hook_at_the_top_of_raw(
    flow: str, backend: Backend, matches: list[str]
) -> None:
    rules, notes = iptables_rules(from_flow(flow), backend, RUN, Limit())
    tool = "iptables-legacy" if backend is Backend.LEGACY else "iptables-nft"
    assert [r.insert_argv() for r in rules] == [
        [tool, "-w", "5", "-t", "raw", "-I", "PREROUTING", "1", *matches, *TAIL],
        [tool, "-w", "5", "-t", "raw", "-I", "OUTPUT", "1", *matches, *TAIL],
    ]
    assert notes == ()


def test_removal_and_check_use_the_exact_spec_never_a_number() -> None:
    (rule, _), _ = iptables_rules(from_flow("tcp6,ipv6_dst=fd00::5,tp_dst=443"), Backend.NFT,
                                  RUN, Limit(rate=3, burst=6))  # fmt: skip
    spec = ["-d", "fd00::5", "-p", "tcp", "-m", "tcp", "--dport", "443", "-m", "comment",
            "--comment", f"nodetrace live trace {RUN}", "-m", "limit", "--limit", "3/sec",
            "--limit-burst", "6", "-j", "TRACE"]  # fmt: skip
    assert rule.delete_argv() == ["ip6tables-nft", "-w", "5", "-t", "raw", "-D", "PREROUTING",
                                  *spec]  # fmt: skip
    assert rule.check_argv() == ["ip6tables-nft", "-w", "5", "-t", "raw", "-C", "PREROUTING",
                                 *spec]  # fmt: skip


def test_icmpv6_uses_ip6tables_own_match() -> None:
    (rule, _), _ = iptables_rules(from_flow("icmp6,icmpv6_type=128"), Backend.LEGACY, RUN,
                                  Limit())  # fmt: skip
    assert rule.tool == "ip6tables-legacy"
    assert rule.spec[:6] == ("-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", "128")


def test_input_only_matches_are_not_put_in_output_and_that_is_said() -> None:
    selection = from_flow("icmp,in_port=tap1,dl_src=fa:16:3e:00:00:01")
    rules, notes = iptables_rules(selection, Backend.LEGACY, RUN, Limit())
    assert [r.chain for r in rules] == ["PREROUTING"]
    assert rules[0].spec[:6] == ("-i", "tap1", "-p", "icmp", "-m", "mac")
    assert len(notes) == 1 and "not traced in OUTPUT" in notes[0]


def test_fields_no_rule_matches_are_named() -> None:
    selection = from_flow("tcp,nw_dst=10.0.0.2,tcp_flags=+syn,nw_ttl=5")
    assert any("nw_ttl" in n and "tcp_flags" in n for n in selection.notes)


def test_the_nft_table_is_created_whole_and_removed_by_its_name() -> None:
    table, notes = nft_table(from_flow("udp6,ipv6_src=fd00::1,udp_dst=53"), RUN, Limit(5, 7))
    assert notes == ()
    rule = ("ip6 saddr fd00::1 meta l4proto udp udp dport 53 limit rate 5/second burst 7 "
            f'packets meta nftrace set 1 comment "nodetrace live trace {RUN}"')  # fmt: skip
    assert table.create_text() == (
        f"create table inet nodetrace_{RUN}\n"
        f"add chain inet nodetrace_{RUN} trace_prerouting "
        "{ type filter hook prerouting priority raw - 1; policy accept; }\n"
        f"add chain inet nodetrace_{RUN} trace_output "
        "{ type filter hook output priority raw - 1; policy accept; }\n"
        f"add rule inet nodetrace_{RUN} trace_prerouting {rule}\n"
        f"add rule inet nodetrace_{RUN} trace_output {rule}\n"
    )
    assert table.delete_argv() == ["nft", "delete", "table", "inet", f"nodetrace_{RUN}"]


def test_nft_without_addresses_keeps_to_the_family() -> None:
    table, _ = nft_table(from_flow("icmp,icmp_type=8"), RUN, Limit())
    assert table.rules[0][1].startswith("meta nfproto ipv4 meta l4proto icmp icmp type 8 limit")


@pytest.mark.parametrize(
    "flow",
    ["arp", "in_port=tap1'\"x,icmp", "ip,nw_dst=10.0.0.0/24"],
    ids=["arp-not-traced", "device-with-quotes", "network-not-a-packet"],
)
def test_what_cannot_be_a_trace_rule_is_refused_in_one_line(flow: str) -> None:
    with pytest.raises(UsageError):
        selection = from_flow(flow)
        nft_table(selection, RUN, Limit())


def test_a_run_id_is_twelve_hex_digits() -> None:
    with pytest.raises(ValueError, match="run id"):
        iptables_rules(from_flow("icmp"), Backend.LEGACY, "x; rm", Limit())


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0), (10_001, 5)])
def test_rate_limits_are_bounded(rate: int, burst: int) -> None:
    with pytest.raises(UsageError):
        Limit(rate, burst)


def test_a_port_traces_from_and_to_each_address_of_the_filter_family() -> None:
    addresses = (ip_address("10.0.0.5"), ip_address("fd00::5"))
    selection = for_port("85f28c5a", addresses, from_flow("tcp,tp_dst=22"))
    assert [s.describe() for s in selection.selectors] == [
        "tcp,nw_src=10.0.0.5,tp_dst=22",
        "tcp,nw_dst=10.0.0.5,tp_dst=22",
    ]
    assert any("fd00::5: not traced" in n for n in selection.notes)
    rules, _ = iptables_rules(selection, Backend.NFT, RUN, Limit())
    assert len(rules) == 4 and all(r.tool == "iptables-nft" for r in rules)


def test_a_port_without_addresses_cannot_be_traced() -> None:
    with pytest.raises(UsageError, match="no IP address"):
        for_port("85f28c5a", (), None)


def test_a_port_and_a_filter_fixing_the_other_end() -> None:
    selection = for_port("p", (ip_address("10.0.0.5"),), from_flow("icmp,nw_dst=10.0.0.9"))
    assert [s.describe() for s in selection.selectors] == ["icmp,nw_src=10.0.0.5,nw_dst=10.0.0.9"]


def test_a_logged_packet_is_kept_unless_a_field_it_shows_contradicts() -> None:
    (selector,) = from_flow("tcp,nw_src=10.0.0.1,tp_dst=22").selectors
    shown = Packet(nw_src=ip_address("10.0.0.1"), nw_dst=ip_address("10.0.0.2"), nw_proto=6,
                   tp_src=40000, tp_dst=22)  # fmt: skip
    assert selector.matches(shown)
    # xtables-monitor prints no protocol and no ports: nothing contradicts.
    assert selector.matches(Packet(nw_src=ip_address("10.0.0.1")))
    assert not selector.matches(Packet(nw_src=ip_address("10.0.0.3")))
    assert not selector.matches(Packet(nw_src=ip_address("10.0.0.1"), nw_proto=17))
    assert not selector.matches(Packet(dl_type=0x86DD, nw_src=ip_address("fd00::1"))), (
        "another family"
    )
    assert selector.family is Family.IPV4


def test_describe_round_trips_through_iptables_rule_text() -> None:
    rule = IptablesRule("iptables-legacy", "OUTPUT", ("-s", "10.0.0.1", "-m", "comment",
                        "--comment", "a b", "-j", "TRACE"))  # fmt: skip
    assert (
        rule.describe()
        == "iptables-legacy -t raw OUTPUT: -s 10.0.0.1 -m comment --comment 'a b' -j TRACE"
    )


def test_a_port_is_found_with_its_addresses_in_a_snapshot_of_the_node() -> None:
    from nodetrace.live.ports import port_addresses
    from nodetrace.snapshot.load import load

    snapshot = load(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz")
    port, addresses = port_addresses(snapshot, "85f28c5a")
    assert port.port_id.startswith("85f28c5a") and port.tap == "tap85f28c5a-9f"
    assert ip_address("10.20.0.11") in addresses
    selection = for_port(port.port_id, addresses, None)
    described = [s.describe() for s in selection.selectors]
    assert "ip,nw_src=10.20.0.11" in described and "ip,nw_dst=10.20.0.11" in described
