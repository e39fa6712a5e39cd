"""``ovs-ofctl dump-flows`` in every form operators paste, read into the typed flow model."""

from __future__ import annotations

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.openflow import (
    DEFAULT_PRIORITY,
    Conjunction,
    Ct,
    DumpProtocol,
    FieldMatch,
    GotoTable,
    Learn,
    LearnSpecKind,
    Output,
    PortName,
    PortNumber,
    PushVlan,
    Reserved,
    ReservedPort,
    Resubmit,
    SetField,
    SetVlan,
    Unsupported,
    VlanOp,
)
from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from tests.conftest import DATA

OF = DATA / "openflow"


def parse(name: str, sink: DiagnosticSink | None = None):  # type: ignore[no-untyped-def]
    path = OF / name
    return parse_ovs_ofctl_dump_flows(path.read_text(), source=name, sink=sink)


@pytest.mark.parametrize("lab", ["lab-neutron", "lab-firewall"])
def test_every_dump_form_of_one_bridge_reads_to_the_same_flows(lab: str) -> None:
    """OF1.0, -O OpenFlow13/15, --names and --no-stats dumps of the same bridge (captured from
    OVS 3.1) give the same tables, priorities, cookies and matches."""
    show = parse_ovs_ofctl_show((OF / lab / "ovs-ofctl-show.br-int.txt").read_text())
    numbers = {p.name: p.number for p in show.ports}

    def key(flow) -> tuple:  # type: ignore[no-untyped-def]
        port = flow.in_port
        if isinstance(port, PortName):
            port = PortNumber(numbers[port.name])
        return (flow.table, flow.priority, flow.cookie, frozenset(flow.matches), port)

    forms = {}
    for form in ("of10", "of13", "of15", "names", "nostats"):
        sink = DiagnosticSink()
        dump = parse(f"{lab}/forms.br-int.{form}.txt", sink)
        assert not sink.items, sink.items
        forms[form] = sorted(map(key, dump.flows), key=repr)
    assert len(forms["of10"]) > 20
    for form, flows in forms.items():
        assert flows == forms["of10"], form


def test_headers_tell_the_protocol_and_versions_print_actions_differently() -> None:
    of10 = parse("lab-neutron/forms.br-tun.of10.txt")
    of13 = parse("lab-neutron/forms.br-tun.of13.txt")
    nostats = parse("lab-neutron/forms.br-tun.nostats.txt")
    assert of10.protocol is DumpProtocol.OF10
    assert of13.protocol is DumpProtocol.OF11_PLUS
    assert nostats.protocol is DumpProtocol.UNKNOWN and nostats.flows[0].stats is None
    t4_10 = next(f for f in of10.flows if f.table == 4 and f.priority == 1)
    t4_13 = next(f for f in of13.flows if f.table == 4 and f.priority == 1)
    assert t4_10.actions[0] == SetVlan("mod_vlan_vid:1", VlanOp.MOD_VID, 1)
    assert isinstance(t4_13.actions[0], PushVlan) and isinstance(t4_13.actions[1], SetField)
    assert t4_13.actions[1].field == "vlan_vid" and t4_13.actions[1].value == 0x1001
    assert of10.flows[0].stats is not None and of10.flows[0].stats.n_packets == 0


def test_names_dump_keeps_port_names() -> None:
    dump = parse("lab-neutron/forms.br-tun.names.txt")
    assert dump.names
    t0 = next(f for f in dump.flows if f.table == 0 and f.priority == 1 and "patch" in f.match_text)
    assert t0.in_port == PortName("patch-int")
    t22 = next(f for f in dump.flows if f.table == 22 and f.priority == 1)
    assert Output('output:"vxlan-0a000032"', PortName("vxlan-0a000032")) in t22.actions


def test_wrapped_ovn_dump_is_joined_and_parsed() -> None:
    """The OVN documentation wraps each flow over several lines (55 flows, 210 lines)."""
    sink = DiagnosticSink()
    dump = parse("neutron-ovn-br-int-flows-wrapped.txt", sink)
    text = (OF / "neutron-ovn-br-int-flows-wrapped.txt").read_text()
    assert not sink.items
    assert len(dump.flows) == text.count("cookie=") == 55
    arp = next(f for f in dump.flows if f.table == 25)
    assert arp.span is not None and (arp.span.first_line, arp.span.last_line) == (103, 113)
    assert arp.match_text == "arp,metadata=0x5,arp_tpa=192.168.1.5,arp_op=1"
    assert len(arp.actions) == 11
    assert isinstance(arp.actions[-1], Resubmit) and arp.actions[-1].table == 32
    first = dump.flows[0]
    assert first.priority == 100 and first.in_port == PortNumber(12)
    assert first.stats is not None and first.stats.idle_age == 1


def test_neutron_ovs_firewall_doc_flows_parse() -> None:
    sink = DiagnosticSink()
    dump = parse("neutron-ovsfw-flows-doc.txt", sink)
    assert not sink.items
    assert len(dump.flows) == 128
    conj = [f for f in dump.flows if f.conjunctions]
    assert conj and all(isinstance(a, Conjunction) for f in conj for a in f.actions)
    commit = next(f for f in dump.flows if f.table == 73 and isinstance(f.actions[0], Ct))
    ct = commit.actions[0]
    assert isinstance(ct, Ct) and ct.commit and ct.zone_field is not None
    assert (ct.zone_field.field, ct.zone_field.start, ct.zone_field.width) == ("reg6", 0, 16)
    masked = next(f for f in dump.flows if "tp_dst=0x60/0xffe0" in f.match_text)
    assert FieldMatch("tp_dst", 0x60, 0xFFE0) in masked.matches


def test_lab_sample_with_two_dumps_and_an_ofctl_show() -> None:
    """The shared lab sample concatenates a br-tun dump, a br-int OF1.3 dump and `ovs-ofctl
    show`: every flow is read, and the show lines are reported with their line numbers."""
    sink = DiagnosticSink()
    dump = parse("samples-ovs-ofctl-dump-flows.txt", sink)
    assert len(dump.flows) == 14
    assert {d.pos.line for d in sink.errors} >= {19, 20, 21, 22, 23}
    assert "reset_counts" in dump.flows[-1].flags
    learn = next(f for f in dump.flows if f.table == 10)
    spec = learn.actions[0]
    assert isinstance(spec, Learn) and spec.table == 20 and spec.hard_timeout == 300
    kinds = [s.kind for s in spec.specs]
    assert kinds == [
        LearnSpecKind.MATCH,
        LearnSpecKind.MATCH,
        LearnSpecKind.LOAD,
        LearnSpecKind.LOAD,
        LearnSpecKind.OUTPUT,
    ]
    with pytest.raises(ParseError) as err:
        parse("samples-ovs-ofctl-dump-flows.txt")
    assert err.value.pos.line == 19


def test_defaults_goto_reserved_ports_and_damaged_lines() -> None:
    text = "\n".join(
        [
            " cookie=0x5, table=3, in_port=LOCAL,dl_vlan=7 actions=goto_table:9,NORMAL,IN_PORT",
            " cookie=0x0, duration=1.0s, table=1, priority=5,ip actions=output:",
            " table=2, priority=7,tun_metadata0=0x1,ip actions=multipath(eth_src,50,hrw,12,0,NXM_NX_REG0[0..3])",
            " this line is broken",
            " priority=1 actions=CONTROLLER:65535,resubmit(2,3)",
        ]
    )
    sink = DiagnosticSink()
    dump = parse_ovs_ofctl_dump_flows(text, source="pasted", sink=sink)
    first = dump.flows[0]
    assert first.priority == DEFAULT_PRIORITY and first.table == 3 and first.cookie == 5
    assert first.in_port == Reserved(ReservedPort.LOCAL)
    assert FieldMatch("vlan_tci", 0x1007, 0x1FFF) in first.matches
    assert isinstance(first.actions[0], GotoTable) and first.actions[0].table == 9
    assert first.actions[1] == Output("NORMAL", Reserved(ReservedPort.NORMAL))
    odd = next(f for f in dump.flows if f.table == 2)
    assert odd.unsupported == ("tun_metadata0=0x1",)
    assert isinstance(odd.actions[0], Unsupported) and odd.actions[0].name == "multipath"
    last = dump.flows[-1]
    assert last.table == 0 and last.priority == 1
    assert last.actions[1] == Resubmit("resubmit(2,3)", PortNumber(2), 3)
    problems = [str(d) for d in sink.items]
    assert any(p.startswith("pasted:4: error: flow has no actions=") for p in problems), problems
    assert any(p.startswith("pasted:2: warning: action 'output:'") for p in problems), problems
