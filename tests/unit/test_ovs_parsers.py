"""The other Open vSwitch outputs a snapshot holds: ovs-vsctl show/list, ovs-ofctl show,
fdb/show, dpctl/dump-conntrack, dpif/show, and ofproto/trace itself."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from nodetrace.errors import DiagnosticSink, InputError, ParseError
from nodetrace.model.openflow import LOCAL_PORT
from nodetrace.model.openflow_trace import NodeKind, TracePass
from nodetrace.model.ovs_switch import OvsSwitch
from nodetrace.model.ovsdb import VlanMode
from nodetrace.model.packet import IPProto
from nodetrace.parsers.ovs_appctl_dpctl_dump_conntrack import parse_ovs_appctl_dpctl_dump_conntrack
from nodetrace.parsers.ovs_appctl_dpif_show import parse_ovs_appctl_dpif_show
from nodetrace.parsers.ovs_appctl_fdb_show import parse_ovs_appctl_fdb_show
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree, parse_ovs_appctl_ofproto_trace
from nodetrace.parsers.ovs_ofctl_show import parse_ovs_ofctl_show
from nodetrace.parsers.ovs_vsctl_list import ovsdb_from_tables, parse_ovs_vsctl_list
from nodetrace.parsers.ovs_vsctl_show import parse_ovs_vsctl_show
from nodetrace.render.ofproto_trace import node_text, ofproto_lines
from tests.conftest import DATA

OF = DATA / "openflow"


def read(name: str) -> str:
    return (OF / name).read_text()


def test_vsctl_show_of_a_lab_node() -> None:
    config = parse_ovs_vsctl_show(read("samples-ovs-vsctl-show.txt"), source="show")
    tun = config.bridge("br-tun")
    assert tun is not None and tun.datapath_type == "netdev" and tun.fail_mode == "secure"
    vx = tun.port("vxlan-peer")
    assert vx is not None
    iface = vx.interfaces[0]
    assert iface.is_tunnel and iface.remote_ip == "192.168.50.2" and iface.out_key == "flow"
    assert iface.dst_port == 4789
    patch = config.interface("patch-int")
    assert patch is not None and patch[2].peer == "patch-tun"
    qvo = config.bridge("br-int").port("qvovm1")  # type: ignore[union-attr]
    assert qvo is not None and qvo.tag == 1 and qvo.effective_vlan_mode is VlanMode.ACCESS
    assert not qvo.vlan_mode_known


def test_vsctl_show_with_quoted_names_from_insights() -> None:
    config = parse_ovs_vsctl_show(read("insights-ovs-vsctl-show-neutron-vxlan.txt"))
    assert config.ovs_version == "2.3.2"
    assert [b.name for b in config.bridges] == ["br-ex", "br-int", "br-tun"]
    tap = config.bridge("br-int").port("tapdf2d6113-b2")  # type: ignore[union-attr]
    assert tap is not None and tap.tag == 2 and tap.interfaces[0].type == "internal"
    vx = config.interface("vxlan-aca80118")
    assert vx is not None and vx[2].out_key == "flow" and vx[2].local_ip == "172.168.1.26"
    assert config.interface("int-br-ex")[2].peer == "phy-br-ex"  # type: ignore[index]


def test_vsctl_show_reports_lines_it_does_not_know() -> None:
    text = "    Bridge br0\n        Port p1\n            Interface p1\n  garbage here\n"
    sink = DiagnosticSink()
    config = parse_ovs_vsctl_show(text, source="show.txt", sink=sink)
    assert [b.name for b in config.bridges] == ["br0"]
    assert [str(d) for d in sink.errors] == [
        "show.txt:4: error: not an ovs-vsctl show line at 'garbage here'"
    ]


def test_vsctl_list_json_tables_merge_into_bridges() -> None:
    tables = [
        parse_ovs_vsctl_list(read(f"lab-neutron/ovs-vsctl-list-{t}.json"), source=t)
        for t in ("bridge", "port", "interface")
    ]
    assert [t.name for t in tables] == ["Bridge", "Port", "Interface"]
    config = ovsdb_from_tables(tables)
    br_int = config.bridge("br-int")
    assert br_int is not None and br_int.datapath_type == "netdev"
    vm = br_int.port("qvo3b1f6a2c-8d")
    assert vm is not None and vm.tag == 1 and vm.vlan_mode_known
    assert vm.interfaces[0].ofport == 2 and vm.interfaces[0].type == "internal"
    dead = br_int.port("qvodead0000-00")
    assert dead is not None and dead.tag == 4095
    tun = config.bridge("br-tun")
    assert tun is not None
    gre = tun.port("gre-0a000034")
    assert gre is not None and gre.interfaces[0].type == "gre"
    assert gre.interfaces[0].option("df_default") == "true"


def test_vsctl_list_port_and_interface_complete_show() -> None:
    show = parse_ovs_vsctl_show(read("lab-firewall/ovs-vsctl-show.txt"))
    tables = [
        parse_ovs_vsctl_list(read(f"lab-firewall/ovs-vsctl-list-{t}.json"))
        for t in ("port", "interface")
    ]
    config = ovsdb_from_tables(tables, show=show)
    p1 = config.interface("p1")
    assert p1 is not None and p1[2].ofport == 1 and p1[1].vlan_mode_known
    with pytest.raises(InputError, match="cannot place ports"):
        ovsdb_from_tables(tables)


def test_vsctl_list_rejects_other_json() -> None:
    with pytest.raises(ParseError, match="not ovs-vsctl --format=json list output"):
        parse_ovs_vsctl_list('{"rows": []}', source="x.json")


def test_ofctl_show_ports_numbers_and_flags() -> None:
    show = parse_ovs_ofctl_show(read("lab-neutron/ovs-ofctl-show.br-int.txt"))
    local = show.by_name("br-int")
    assert local is not None and local.number == LOCAL_PORT and "PORT_DOWN" in local.config
    assert show.by_name("patch-tun").number == 1  # type: ignore[union-attr]
    assert show.datapath_id is not None and show.n_tables == 254


def test_fdb_show_learned_and_static_entries() -> None:
    sample = parse_ovs_appctl_fdb_show(read("samples-ovs-fdb-show.txt"))
    assert [(e.port, e.vlan, e.age) for e in sample.entries] == [
        (2, 1, 0),
        (2, 1, 0),
        (3, 1, 0),
        (1, 1, 0),
    ]
    static = parse_ovs_appctl_fdb_show(read("lab-neutron/ovs-appctl-fdb-show.br-int.txt"))
    assert static.entries and all(e.age is None for e in static.entries)
    assert static.lookup("fa:16:3e:4c:2a:11", 1) is not None
    with pytest.raises(ParseError, match=r"<stdin>:2: not an fdb/show entry"):
        parse_ovs_appctl_fdb_show(" port  VLAN  MAC                Age\n    x  1  nope  0\n")


def test_dpctl_dump_conntrack() -> None:
    table = parse_ovs_appctl_dpctl_dump_conntrack(read("samples-ovs-dpctl-dump-conntrack.txt"))
    (entry,) = table.entries
    assert entry.proto == IPProto.ICMP and entry.zone == 1
    assert entry.orig.src == ip_address("10.2.0.1") and entry.orig.icmp_id == 7704
    assert entry.reply.icmp_type == 0
    sink = DiagnosticSink()
    text = (
        "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=22),reply=(src=10.0.0.2,"
        "dst=10.0.0.1,sport=22,dport=40000),zone=5,mark=0x1,protoinfo=(state=ESTABLISHED)\n"
        "tcp,orig=(src=10.0.0.1),zone=5\n"
    )
    table = parse_ovs_appctl_dpctl_dump_conntrack(text, source="ct", sink=sink)
    assert len(table.entries) == 1 and table.entries[0].state == "ESTABLISHED"
    assert table.entries[0].mark == 1 and table.entries[0].orig.dport == 22
    assert [d.pos.line for d in sink.errors] == [2]


def test_dpif_show_maps_datapath_ports() -> None:
    dpif = parse_ovs_appctl_dpif_show(read("samples-ovs-dpif-show.txt"))
    port = dpif.by_dp_port(5)
    assert port is not None and (port.bridge, port.name, port.ofport) == ("br-tun", "vxlan-peer", 2)
    assert next(p for p in dpif.ports if p.name == "patch-tun").dp_port is None


@pytest.mark.parametrize(
    "name",
    ["allowed", "ct", "dropped", "hybrid-to-vxlan", "vxlan-egress", "vxlan-ingress"],
)
def test_ofproto_trace_tree_rebuilds_exactly(name: str) -> None:
    """Parsing a real ofproto/trace and printing the rebuilt tree gives back OVS's lines."""
    trace = parse_ovs_appctl_ofproto_trace(read(f"samples-ofproto-trace-{name}.txt"))
    assert trace.passes
    for p in trace.passes:
        assert p.datapath_actions is not None
        tree = observed_tree(p)
        printed = [line for line in ofproto_lines(TracePass(p.flow, tree, None)) if line.strip()]
        assert printed == [" " * line.indent + line.text for line in p.lines]
    if name == "ct":
        assert len(trace.passes) == 2 and "default ct_state=trk|new" in trace.passes[1].header
        thaw = observed_tree(trace.passes[1])[0].children[0]
        assert thaw.kind is NodeKind.THAW and node_text(thaw.children[0]) == "Resuming from table 0"


def test_switch_build_states_what_is_missing() -> None:
    from nodetrace.parsers.ovs_ofctl_dump_flows import parse_ovs_ofctl_dump_flows

    flows = {"br-int": parse_ovs_ofctl_dump_flows(" priority=0 actions=NORMAL")}
    switch = OvsSwitch.build(flows)
    assert any("no ovs-vsctl data" in n for n in switch.notes)
    assert any("no MAC table" in n for n in switch.notes)
    bridge = switch.bridge("br-int")
    assert bridge is not None and bridge.port_by_number(LOCAL_PORT) is not None
