"""Outputs pasted with the command line as typed (``root@osa:~# ip netns``, ``$ sudo ovs-vsctl
show``, ``oot@instance-vm01:~# ...`` with its first character lost) and with sudo's
``unable to resolve host`` warning: the line is skipped with a warning naming it, never
reported as malformed, and the output under it reads as it did. Cut outputs (``...`` in an
``ovs-vsctl show`` or an ``iptables-save``, a table without COMMIT) are said to be incomplete
wherever a port or a verdict could hang on what was left out. Expected values were read by hand
from the files named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nodetrace.cli import main
from nodetrace.errors import DiagnosticSink
from nodetrace.parsers.brctl_show import parse_brctl_show
from nodetrace.parsers.ip_text import parse_ip_netns_text
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show
from nodetrace.parsers.pasted import is_pasted_command

CORPUS = Path(__file__).parent
ROUTER = "qrouter-50711ca1-1e58-44dc-bd95-a87250d5b4ae"

# (node, file, line) of every typed command line and sudo warning in the corpus, by hand.
TYPED = [
    ("devstack-2022-hybrid-compute", "ovs-ofctl dump-flows br-int", 1),
    ("devstack-2022-hybrid-compute", "ovs-ofctl dump-flows br-tun", 1),
    ("devstack-2022-hybrid-compute", "ovs-ofctl show br-int | grep 3e399bf2-31", 1),
    ("devstack-2022-hybrid-compute", "ovs-vsctl show", 1),
    ("devstack-2022-hybrid-dhcp-controller", "ip netns", 1),
    ("devstack-2022-hybrid-router-controller", f"ip netns exec {ROUTER} ip a", 1),
    ("devstack-2022-hybrid-router-controller", f"ip netns exec {ROUTER} iptables-save", 1),
    ("devstack-2022-hybrid-router-controller", "ovs-ofctl dump-flows br-ex", 1),
    ("devstack-2022-hybrid-router-controller", "ovs-ofctl dump-flows br-int", 1),
    ("devstack-liberty-ovs-compute", "ovs-vsctl show", 1),
    ("fuel-mitaka-dvr-compute", "ip netns", 1),
    ("juju-queens-dvr-compute", "ovs-vsctl show", 1),
    ("juju-queens-dvr-compute", "ovs-vsctl show", 2),  # sudo: unable to resolve host
    ("kolla-ocata-hybrid-aio", "ip netns", 1),
    ("kolla-ocata-hybrid-aio", "brctl show", 1),
    (
        "kolla-ocata-hybrid-aio",
        "ovs-ofctl dump-flows br-ex",
        1,
    ),  # (openvswitch-vswitchd)[root@osa ~]#
    ("kolla-ocata-hybrid-aio", "ovs-vsctl show", 1),
    ("osa-stein-ovs-infra01", "ovs-vsctl show", 1),
    ("tripleo-newton-compute", "ovs-vsctl show", 1),  # [root@overcloud-compute-0 ~]#
    ("ubuntu-noble-hybrid-compute", "brctl show", 1),
    ("ubuntu-noble-hybrid-compute", "ovs-ofctl dump-flows br-int", 1),  # oot@instance-vm01:~#
    ("ubuntu-noble-hybrid-compute", "ovs-vsctl show", 1),
]


def _show(capsys: pytest.CaptureFixture[str], node: str) -> dict[str, Any]:
    code = main(["show", str(CORPUS / node), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


@pytest.mark.parametrize(("node", "name", "line"), TYPED)
def test_the_typed_command_line_is_a_warning_not_an_error(
    capsys: pytest.CaptureFixture[str], node: str, name: str, line: int
) -> None:
    said = _show(capsys, node)["diagnostics"]
    where = f"{CORPUS / node / name}:{line}: "
    assert f"{where}warning: the command line as typed: skipped" in said
    assert not [d for d in said if d.startswith(f"{where}error")]


def test_the_outputs_under_the_typed_line_read_as_before() -> None:
    node = CORPUS / "ubuntu-noble-hybrid-compute"
    sink = DiagnosticSink()
    bridges = parse_brctl_show((node / "brctl show").read_text(), source="b", sink=sink)
    # brctl show:3-10: docker0, three qbr with qvb+tap each, virbr0
    assert [b.name for b in bridges] == [
        "docker0", "qbr271f9531-54", "qbr6b5d65c3-82", "qbr7d4e020e-fd", "virbr0",
    ]  # fmt: skip
    assert bridges[1].ports == ("qvb271f9531-54", "tap271f9531-54")
    dump = parse_ovs_ofctl_dump_flows(
        (node / "ovs-ofctl dump-flows br-int").read_text(), source="f", sink=sink
    )
    assert len(dump.flows) == 3  # lines 2, 3 and 5 (line 4 is "...")
    router = CORPUS / "devstack-2022-hybrid-router-controller"
    dump = parse_ovs_ofctl_dump_flows(
        (router / "ovs-ofctl dump-flows br-int").read_text(), source="f", sink=sink
    )
    assert len(dump.flows) == 10  # lines 2-11
    namespaces = parse_ip_netns_text(
        (CORPUS / "kolla-ocata-hybrid-aio" / "ip netns").read_text(), source="n", sink=sink
    )
    assert [n.name for n in namespaces] == [
        "qrouter-ec37ce79-b992-4e37-b53d-7cb8889179ca",
        "qdhcp-4a71fbfd-f1d7-44ba-9c9b-9815316243bd",
    ]
    juju = parse_ovs_vsctl_show(
        (CORPUS / "juju-queens-dvr-compute" / "ovs-vsctl show").read_text(), source="s", sink=sink
    )
    assert [b.name for b in juju.bridges][:2] == ["br-ex", "br-int"]  # lines 6, 7
    assert sink.errors == []


def _data_files() -> list[Path]:
    data = CORPUS.parent / "data"
    found = [p for p in CORPUS.rglob("*") if p.is_file() and p.parent != CORPUS]
    found += [p for p in (data / "iptables").iterdir() if p.is_file()]
    found += [p for p in (data / "openflow").rglob("*") if p.is_file()]
    return [p for p in found if p.suffix not in (".md", ".py", ".gz", ".tar", ".json")]


def test_no_data_line_of_the_corpus_is_taken_for_a_typed_command() -> None:
    """Every line of the corpus and of the iptables/OpenFlow test data is tried: only the hand
    listed ones are typed commands (flows, rules with '#' in comments, ovs-vsctl lines,
    interface lines all stay data)."""
    typed = {(CORPUS / node / name, line) for node, name, line in TYPED}
    found = set()
    for path in _data_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if is_pasted_command(line):
                found.add((path, number))
    assert typed <= found
    # Beyond the listed ones, only the first line of a corpus file (the command it was made
    # with, heading files `show` does not all read) is taken; no line of tests/data at all.
    beyond = {(str(p), n) for p, n in found - typed if n != 1 or CORPUS not in p.parents}
    assert beyond == set()


@pytest.mark.parametrize(
    "line",
    [
        '-A INPUT -m comment --comment "root@host:~# ip a" -j ACCEPT',
        '[0:0] -A neutron-openvswi-INPUT -m comment --comment "# ip" -j RETURN',
        ":neutron-openvswi-sg-chain - [0:0]",
        " cookie=0x0, table=0, priority=1,ip,nw_src=10.0.0.1 actions=NORMAL",
        '        Port "ip"',
        '    ovs_version: "2.17.9"',
        "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP",
        "    0     0 ACCEPT     all  --  *      *       0.0.0.0/0  0.0.0.0/0  /* x # ip */",
        "qrouter-1c2d (id: 0)",
        "sudo",
        "default via 10.0.0.1 dev eth0 proto dhcp src 10.0.0.5 metric 100",
    ],
)
def test_a_data_line_resembling_a_prompt_is_kept(line: str) -> None:
    assert not is_pasted_command(line)


def test_a_cut_nat_save_is_incomplete_and_said_so(capsys: pytest.CaptureFixture[str]) -> None:
    save = (
        CORPUS / "devstack-2022-hybrid-router-controller" / f"ip netns exec {ROUTER} iptables-save"
    )
    ruleset = parse_iptables_save(save.read_text(), source=str(save), sink=DiagnosticSink())
    # line 4 is the author's "..." inside *nat (line 3), which never reaches its COMMIT
    assert ruleset.incomplete.startswith(f"table 'nat' was elided at {save}:4")
    notes = _show(capsys, "devstack-2022-hybrid-router-controller")["snapshot_notes"]
    assert f"iptables-save of {ROUTER}: {ruleset.incomplete}" in notes


def test_a_verdict_of_the_cut_nat_save_is_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    """10.10.0.151 is DNATed to 10.0.0.57 by iptables-save:6, but PREROUTING's rules before it
    were left out (line 4): nothing the rules shown do can be the answer."""
    node = CORPUS / "devstack-2022-hybrid-router-controller"
    code = main(["iptables", str(node), "--netns", ROUTER, "--hook", "PREROUTING",
                 "--in", "qg-abce46ac-61", "--format", "json", "--packet",
                 "icmp,nw_src=8.8.8.8,nw_dst=10.10.0.151,icmp_type=8,icmp_code=0"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    doc = json.loads(out)
    assert doc["verdict"] == "unknown"
    assert "table 'nat' was elided at" in doc["reason"]
    assert "iptables-save:4" in doc["reason"]


def test_a_cut_ovs_vsctl_show_is_said_where_a_port_is_not_found(
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = CORPUS / "devstack-2022-hybrid-compute"
    cut = f"the ovs-vsctl show listing was cut at {node / 'ovs-vsctl show'}:5"
    notes = _show(capsys, "devstack-2022-hybrid-compute")["snapshot_notes"]
    assert any(n.startswith(cut) for n in notes)
    # ovs-vsctl show:5 and :30 are "..."; br-tun (line 6) is read whole.
    show = parse_ovs_vsctl_show((node / "ovs-vsctl show").read_text(), source="s")
    assert [p.name for p in show.bridges[0].ports] == [
        "gre-0a780066", "br-tun", "vxlan-0a780066", "vxlan-0a780064", "patch-int",
    ]  # fmt: skip
    for argv in (["--from-port", "deadbeef-0000"], ["--from", "qvodeadbeef-00"]):
        code = main(["trace", str(node), *argv, "--packet",
                     "tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=22"])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2
        assert "it may be among the ports not shown" in err
        assert cut in err


def test_a_whole_listing_says_nothing_of_a_cut(capsys: pytest.CaptureFixture[str]) -> None:
    node = CORPUS / "ubuntu-noble-hybrid-compute"
    code = main(["trace", str(node), "--from", "qvodeadbeef-00", "--packet",
                 "tcp,nw_src=10.0.0.1,nw_dst=10.0.0.2,tp_dst=22"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "no such device" in err
    assert "not shown" not in err
