"""Pipelines and packets for the OpenFlow differential tests.

``neutron_pipeline`` builds br-int and br-tun as the Neutron OVS agent does
(``reference/compute-node.md`` section 3): br-int tables 0, 23, 24, 25, 30, 31, 58, 59, 60, 62
with per-port ARP/MAC anti-spoofing and the dead VLAN; br-tun tables 0, 2, 3, 4, 6, 10 (learn),
20, 22 with VXLAN and GRE tunnel ports, patch ports between them. ``random_pipeline`` draws
pipelines with random matches (masks, priorities that tie, conjunctions) and actions.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from tests.lab.openflow_harness import Pipeline, PortSpec

COOKIE = "0x8f1e2d3c4b5a6978"


@dataclass(frozen=True)
class Vm:
    port: str
    mac: str
    ip: str
    ip6: str
    lvid: int


@dataclass(frozen=True)
class Network:
    lvid: int
    seg: int
    kind: str  # vxlan or gre


@dataclass(frozen=True)
class Remote:
    name: str
    kind: str
    ip: str
    mac: str
    """A VM on that remote node."""
    lvid: int


def neutron_pipeline(goto: bool) -> tuple[Pipeline, list[Vm], list[Remote], list[Network]]:
    """Two networks (VXLAN VNI 0x40d on local VLAN 1, GRE key 0x50 on local VLAN 2)."""
    nets = [Network(1, 0x40D, "vxlan"), Network(2, 0x50, "gre")]
    vms = [
        Vm("qvo3b1f6a2c-8d", "fa:16:3e:4c:2a:11", "10.1.0.11", "fe80::f816:3eff:fe4c:2a11", 1),
        Vm("qvoa7e9c4d1-2b", "fa:16:3e:4c:2a:12", "10.1.0.12", "fe80::f816:3eff:fe4c:2a12", 1),
        Vm("qvo5d6e7f80-11", "fa:16:3e:4c:2b:21", "10.2.0.21", "fe80::f816:3eff:fe4c:2b21", 2),
        Vm("qvodead0000-00", "fa:16:3e:4c:2f:ff", "10.1.0.99", "fe80::f816:3eff:fe4c:2fff", 4095),
    ]
    remotes = [
        Remote("vxlan-0a000032", "vxlan", "10.0.0.50", "fa:16:3e:5d:6e:7f", 1),
        Remote("vxlan-0a000033", "vxlan", "10.0.0.51", "fa:16:3e:5d:6e:80", 1),
        Remote("gre-0a000034", "gre", "10.0.0.52", "fa:16:3e:5d:6e:81", 2),
    ]
    g = (lambda t: f"goto_table:{t}") if goto else (lambda t: f"resubmit(,{t})")
    c = f"cookie={COOKIE},"
    br_int = [
        f"{c}table=0,priority=65535,vlan_tci=0x0fff/0x1fff,actions=drop",
        f"{c}table=0,priority=0,actions={g(58)}",
        f"{c}table=23,priority=0,actions=drop",
        f"{c}table=24,priority=0,actions=drop",
        f"{c}table=30,priority=0,actions={g(58)}",
        f"{c}table=31,priority=0,actions={g(58)}",
        f"{c}table=58,priority=0,actions={g(59)}",
        f"{c}table=59,priority=0,actions={g(60)}",
        f"{c}table=60,priority=1,actions=NORMAL",
        f"{c}table=62,priority=3,actions=NORMAL",
    ]
    for vm in vms:
        if vm.lvid == 4095:
            continue
        br_int += [
            f"{c}table=0,priority=10,arp,in_port={vm.port},actions={g(24)}",
            f"{c}table=0,priority=10,icmp6,in_port={vm.port},icmp_type=136,actions={g(24)}",
            f"{c}table=0,priority=9,in_port={vm.port},actions={g(25)}",
            f"{c}table=24,priority=2,arp,in_port={vm.port},arp_spa={vm.ip},actions={g(25)}",
            f"{c}table=24,priority=2,icmp6,in_port={vm.port},icmp_type=136,nd_target={vm.ip6},actions={g(58)}",
            f"{c}table=25,priority=2,in_port={vm.port},dl_src={vm.mac},actions={g(30)}",
        ]
    br_tun = [
        f"{c}table=0,priority=1,in_port=patch-int,actions=resubmit(,2)",
        f"{c}table=0,priority=0,actions=drop",
        f"{c}table=2,priority=0,dl_dst=00:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,20)",
        f"{c}table=2,priority=0,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,22)",
        f"{c}table=3,priority=0,actions=drop",
        f"{c}table=4,priority=0,actions=drop",
        f"{c}table=6,priority=0,actions=drop",
        f"{c}table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,cookie={COOKIE},"
        "NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],"
        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:patch-int",
        f"{c}table=20,priority=0,actions=resubmit(,22)",
        f"{c}table=22,priority=0,actions=drop",
    ]
    for r in remotes:
        table = 4 if r.kind == "vxlan" else 3
        br_tun.append(f"{c}table=0,priority=1,in_port={r.name},actions=resubmit(,{table})")
    for net in nets:
        table = 4 if net.kind == "vxlan" else 3
        ports = ",".join(f"output:{r.name}" for r in remotes if r.kind == net.kind)
        br_tun += [
            f"{c}table={table},priority=1,tun_id={net.seg:#x},actions=mod_vlan_vid:{net.lvid},resubmit(,10)",
            f"{c}table=22,priority=1,dl_vlan={net.lvid},actions=strip_vlan,set_tunnel:{net.seg:#x},{ports}",
        ]
    first = remotes[0]
    br_tun += [
        # A flow learned earlier (hard_timeout 300, like table 10 writes) and an l2pop one.
        f"cookie={COOKIE},table=20,priority=1,hard_timeout=300,vlan_tci=0x0001/0x0fff,dl_dst={first.mac},"
        f"actions=load:0->NXM_OF_VLAN_TCI[],load:0x40d->NXM_NX_TUN_ID[],output:{first.name}",
        f"{c}table=20,priority=2,dl_vlan=2,dl_dst={remotes[2].mac},actions=strip_vlan,"
        f"set_tunnel:0x50,output:{remotes[2].name}",
    ]
    int_ports = [PortSpec("patch-tun", "patch", options={"peer": "patch-int"})]
    int_ports += [PortSpec(vm.port, tag=vm.lvid) for vm in vms]
    tun_ports = [PortSpec("patch-int", "patch", options={"peer": "patch-tun"})]
    for r in remotes:
        tun_ports.append(
            PortSpec(
                r.name,
                r.kind,
                options={
                    "remote_ip": r.ip,
                    "local_ip": "10.0.0.11",
                    "key": "flow",
                    "df_default": "true",
                },
            )
        )
    fdb = [("br-int", vm.port, vm.lvid, vm.mac) for vm in vms[:3]]
    fdb += [("br-int", "patch-tun", r.lvid, r.mac) for r in remotes]
    pipeline = Pipeline(
        {"br-int": int_ports, "br-tun": tun_ports},
        {"br-int": br_int, "br-tun": br_tun},
        fdb,
        remotes=tuple(r.ip for r in remotes),
        dump_args=("-O", "OpenFlow13") if goto else (),
    )
    return pipeline, vms, remotes, nets


def neutron_packets(
    rng: random.Random, vms: list[Vm], remotes: list[Remote], nets: list[Network], n: int
) -> list[tuple[str, str]]:
    """(bridge, ofproto/trace flow) pairs covering the agent's paths, allowed and dropped."""
    out: list[tuple[str, str]] = []
    unknown_mac = "fa:16:3e:99:99:99"
    bcast = "ff:ff:ff:ff:ff:ff"
    for _ in range(n):
        kind = rng.choice(["vm", "vm", "vm", "arp", "nd", "tunnel", "tunnel", "tagged"])
        vm = rng.choice(vms)
        src_mac = vm.mac if rng.random() < 0.8 else unknown_mac
        src_ip = vm.ip if rng.random() < 0.8 else "10.1.0.200"
        peers = [v for v in vms if v is not vm] + [r for r in remotes]  # type: ignore[operator]
        peer = rng.choice(peers)
        dst_mac = rng.choice([peer.mac, peer.mac, unknown_mac, bcast])
        if kind == "vm":
            proto = rng.choice(["icmp", "tcp", "udp"])
            l4 = {
                "icmp": "icmp_type=8,icmp_code=0",
                "tcp": f"tp_src={rng.randint(1024, 65535)},tp_dst=22",
                "udp": "udp_src=68,udp_dst=67",
            }[proto]
            out.append(
                (
                    "br-int",
                    f"{proto},in_port={vm.port},dl_src={src_mac},dl_dst={dst_mac},"
                    f"nw_src={src_ip},nw_dst=10.1.0.50,nw_ttl=64,{l4}",
                )
            )
        elif kind == "arp":
            out.append(
                (
                    "br-int",
                    f"arp,in_port={vm.port},dl_src={src_mac},dl_dst={bcast},arp_op=1,"
                    f"arp_spa={src_ip},arp_tpa=10.1.0.1,arp_sha={src_mac}",
                )
            )
        elif kind == "nd":
            target = vm.ip6 if rng.random() < 0.7 else "fe80::1"
            out.append(
                (
                    "br-int",
                    f"icmp6,in_port={vm.port},dl_src={src_mac},dl_dst=33:33:00:00:00:01,"
                    f"ipv6_src={vm.ip6},ipv6_dst=ff02::1,nw_ttl=255,icmpv6_type=136,"
                    f"icmpv6_code=0,nd_target={target}",
                )
            )
        elif kind == "tagged":
            out.append(
                (
                    "br-int",
                    f"ip,in_port={vm.port},dl_vlan={rng.choice([1, 2, 7])},"
                    f"dl_src={src_mac},dl_dst={dst_mac},nw_src={src_ip},nw_dst=10.1.0.50",
                )
            )
        else:
            r = rng.choice(remotes)
            net = rng.choice(nets) if rng.random() < 0.85 else Network(9, 0x999, r.kind)
            local = [v for v in vms if v.lvid == net.lvid] or vms
            dst = rng.choice([rng.choice(local).mac, unknown_mac, bcast])
            out.append(
                (
                    "br-tun",
                    f"icmp,in_port={r.name},tun_id={net.seg:#x},tun_src={r.ip},"
                    f"tun_dst=10.0.0.11,dl_src={r.mac},dl_dst={dst},nw_src=10.9.0.5,"
                    f"nw_dst=10.1.0.11,nw_ttl=64,icmp_type=8,icmp_code=0",
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Random pipelines

MACS = ["fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03", "ff:ff:ff:ff:ff:ff"]
IPS = ["10.0.0.1", "10.0.0.2", "10.0.1.7", "192.168.5.5"]


def random_pipeline(rng: random.Random, index: int) -> tuple[Pipeline, dict[str, list[str]]]:
    """Two bridges joined by a patch pair, access/trunk/native ports, one VXLAN port on br-b.

    Returns the pipeline and, per bridge, the port names a packet may arrive on.
    """
    a_ports = [
        PortSpec("pa-b", "patch", options={"peer": "pb-a"}),
        PortSpec("a1", tag=10),
        PortSpec("a2", tag=20),
        PortSpec("a3", trunks=(10, 30)),
        PortSpec("a4", tag=30, vlan_mode="native-untagged", trunks=(10,)),
        PortSpec("a5"),
    ]
    b_ports = [
        PortSpec("pb-a", "patch", options={"peer": "pa-b"}),
        PortSpec("b1", tag=10),
        PortSpec("b2", tag=30, vlan_mode="native-tagged"),
        PortSpec(
            "vx1",
            "vxlan",
            options={"remote_ip": "10.0.0.50", "local_ip": "10.0.0.11", "key": "flow"},
        ),
    ]
    flows = {
        "br-a": _random_flows(rng, "br-a", ["a1", "a2", "a3", "a4", "a5", "pa-b"]),
        "br-b": _random_flows(rng, "br-b", ["b1", "b2", "pb-a", "vx1"]),
    }
    fdb = [("br-a", "a1", 10, MACS[0]), ("br-a", "pa-b", 30, MACS[1]), ("br-b", "b1", 10, MACS[2])]
    dump = [("-O", "OpenFlow13"), ("-O", "OpenFlow15"), ("--no-stats", "-O", "OpenFlow13")][
        index % 3
    ]
    p = Pipeline(
        {"br-a": a_ports, "br-b": b_ports}, flows, fdb, remotes=("10.0.0.50",), dump_args=dump
    )
    return p, {"br-a": ["a1", "a2", "a3", "a4", "a5", "LOCAL"], "br-b": ["b1", "b2", "vx1"]}


def _match(rng: random.Random, ports: list[str]) -> tuple[str, bool]:
    """A random match; returns it and whether it requires IPv4."""
    terms: list[str] = []
    ip = False
    if rng.random() < 0.5:
        terms.append(f"in_port={rng.choice(ports)}")
    if rng.random() < 0.3:
        terms.append(
            rng.choice(
                [
                    f"dl_src={rng.choice(MACS)}",
                    f"dl_dst={rng.choice(MACS)}",
                    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
                ]
            )
        )
    if rng.random() < 0.3:
        terms.append(
            rng.choice(["dl_vlan=10", "dl_vlan=30", "vlan_tci=0/0x1000", "vlan_tci=0x1000/0x1000"])
        )
    if rng.random() < 0.3:
        terms.append(
            f"reg{rng.randint(0, 2)}={rng.randint(0, 3)}" + rng.choice(["", "/0x1", "/0x3"])
        )
    if rng.random() < 0.5:
        proto = rng.choice(["ip", "icmp", "tcp", "udp"])
        terms.insert(0, proto)
        ip = True
        if rng.random() < 0.5:
            net = rng.choice(["10.0.0.0/24", "10.0.0.1", "10.0.0.0/16", "192.168.5.5"])
            terms.append(f"nw_{rng.choice(['src', 'dst'])}={net}")
        if proto in ("tcp", "udp") and rng.random() < 0.5:
            terms.append(rng.choice(["tp_dst=22", "tp_dst=0x40/0xffc0", "tp_src=1000"]))
    elif rng.random() < 0.15:
        terms.insert(0, "arp")
    return ",".join(terms), ip


def _actions(
    rng: random.Random, bridge: str, table: int, ports: list[str], ip: bool, vlan: bool = False
) -> str:
    acts: list[str] = []
    for _ in range(rng.randint(0, 3)):
        choice = rng.random()
        if choice < 0.2:
            acts.append(f"load:{rng.randint(0, 3)}->NXM_NX_REG{rng.randint(0, 2)}[]")
        elif choice < 0.3:
            acts.append("move:NXM_NX_REG0[0..7]->NXM_NX_REG1[8..15]")
        elif choice < 0.4:
            choices = [
                "mod_vlan_vid:30",
                "push_vlan:0x8100,set_field:4106->vlan_vid",
                "mod_vlan_pcp:3",
            ]
            # OpenFlow 1.1+ accepts pop_vlan only when the match requires a tag.
            act = rng.choice([*choices, "strip_vlan"] if vlan else choices)
            vlan = vlan and act != "strip_vlan"
            acts.append(act)
        elif choice < 0.5:
            acts.append(f"mod_dl_src:{rng.choice(MACS[:3])}")
        elif choice < 0.6 and ip:
            acts.append(
                rng.choice(["mod_nw_dst:10.0.0.2", "dec_ttl", "set_field:10.0.1.7->ip_src"])
            )
        elif choice < 0.7:
            acts.append(f"set_field:{rng.randint(0, 5)}->metadata")
        elif choice < 0.8:
            acts.append(f"output:{rng.choice(ports)}")
        elif choice < 0.84:
            acts.append("set_tunnel:0x64")
        elif choice < 0.88:
            acts.append(f"clone(mod_dl_dst:{rng.choice(MACS[:3])},output:{rng.choice(ports)})")
        elif choice < 0.91:
            acts.append("output:NXM_NX_REG0[0..15]")
        elif choice < 0.94 and ip:
            acts.append("dec_ttl")
        elif choice < 0.96:
            acts.append("exit")
        else:
            acts.append(f"note:{rng.randint(0, 255):02x}")
    end = rng.random()
    if end < 0.35 and table < 4:
        acts.append(
            rng.choice(
                [
                    f"resubmit(,{rng.randint(table + 1, 5)})",
                    f"goto_table:{rng.randint(table + 1, 5)}",
                ]
            )
        )
    elif end < 0.5:
        acts.append("NORMAL")
    elif end < 0.6:
        acts.append(rng.choice(["FLOOD", "ALL", "IN_PORT", "LOCAL"]))
    elif end < 0.7:
        acts.append(f"output:{rng.choice(ports)}")
    elif end < 0.72 and table > 0:
        acts.append(f"resubmit(,{rng.randint(0, table)})")
    if not acts:
        return "drop"
    return ",".join(acts)


def _random_flows(rng: random.Random, bridge: str, ports: list[str]) -> list[str]:
    flows = []
    for table in range(6):
        for _ in range(rng.randint(1, 6)):
            match, ip = _match(rng, ports)
            prio = rng.choice([1, 5, 5, 10, 10, 20, 100])
            head = f"table={table},priority={prio}" + (f",{match}" if match else "")
            vlan = "dl_vlan=" in match or "vlan_tci=0x1000/0x1000" in match
            flows.append(f"{head},actions={_actions(rng, bridge, table, ports, ip, vlan)}")
        if rng.random() < 0.4:
            cid = rng.randint(1, 50)
            prio = rng.choice([10, 20, 30, 200])
            n = rng.choice([2, 2, 3])
            flows += [
                f"table={table},priority={prio},in_port={rng.choice(ports)},actions=conjunction({cid},1/{n})",
                f"table={table},priority={prio},in_port={rng.choice(ports)},actions=conjunction({cid},1/{n})",
                f"table={table},priority={prio},ip,nw_src={rng.choice(IPS)},"
                f"actions=conjunction({cid},2/{n}),conjunction({cid + 100},1/2)",
                f"table={table},priority={prio},conj_id={cid},actions={_actions(rng, bridge, table, ports, False)}",
            ]
            if n == 3:
                flows.append(
                    f"table={table},priority={prio},dl_dst={rng.choice(MACS)},actions=conjunction({cid},3/3)"
                )
    flows.append("table=0,priority=0,actions=NORMAL")
    return flows


def random_packets(
    rng: random.Random, in_ports: dict[str, list[str]], n: int
) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        bridge = rng.choice(sorted(in_ports))
        port = rng.choice(in_ports[bridge])
        terms = [f"in_port={port}"]
        proto = rng.choice(["icmp", "tcp", "udp", "arp", "ip"])
        head = proto
        if rng.random() < 0.3:
            terms.append(f"dl_vlan={rng.choice([10, 20, 30])}")
        terms += [f"dl_src={rng.choice(MACS[:3])}", f"dl_dst={rng.choice(MACS)}"]
        if rng.random() < 0.3:
            terms.append(f"reg{rng.randint(0, 2)}={rng.randint(0, 3)}")
        if port == "vx1":
            terms += ["tun_id=0x64", "tun_src=10.0.0.50", "tun_dst=10.0.0.11"]
        if proto == "arp":
            terms += [f"arp_spa={rng.choice(IPS)}", f"arp_tpa={rng.choice(IPS)}", "arp_op=1"]
        else:
            terms += [
                f"nw_src={rng.choice(IPS)}",
                f"nw_dst={rng.choice(IPS)}",
                f"nw_ttl={rng.choice([1, 64])}",
            ]
            if proto in ("tcp", "udp"):
                terms += [
                    f"{proto}_src={rng.choice([1000, 4000])}",
                    f"{proto}_dst={rng.choice([22, 80, 67])}",
                ]
            elif proto == "icmp":
                terms += ["icmp_type=8", "icmp_code=0"]
        out.append((bridge, head + "," + ",".join(terms)))
    return out


# ---------------------------------------------------------------------------------------------
# Neutron's OVS firewall (conntrack + conjunctions), from the upstream documentation's flows

FIREWALL_FLOWS = (
    Path(__file__).resolve().parents[1] / "data" / "openflow" / "neutron-ovsfw-flows-doc.txt"
)
FW_MACS = [
    "fa:16:3e:a4:22:10",
    "fa:16:3e:8c:84:13",
    "fa:16:3e:24:57:c7",
    "fa:16:3e:8c:84:14",
    "fa:16:3e:a4:22:11",
    "fa:16:3e:a4:22:22",
]
FW_IPS = ["192.168.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.9"]
CT_STATES = ["trk,new", "trk,est", "trk,est,rpl", "trk,rel", "trk,inv", "trk,rel,rpl"]


def firewall_pipeline() -> Pipeline:
    """The flows of doc/source/contributor/internals/openvswitch_firewall.rst, loadable as-is
    except where the document abbreviates: ``ct(commit)`` flows get the ``ip`` match OVS
    requires, ``set_field:0x1->vlan_vid`` gets the VLAN-present bit (``0x1001``), and table 0
    sends everything to table 60, as the OVS agent does."""
    flows = []
    for line in FIREWALL_FLOWS.read_text().splitlines():
        if not line.strip():
            continue
        flow = re.sub(r",\s+", ",", line.strip()).replace(" actions=", ",actions=")
        flow = flow.replace("set_field:0x1->vlan_vid", "set_field:0x1001->vlan_vid")
        if "ct(" in flow and not re.search(
            r",(ip|ipv6|tcp|udp|icmp|icmp6)(,|$)", flow.split(",actions=")[0]
        ):
            flow = flow.replace(",actions=", ",ip,actions=", 1)
        flows.append(flow)
    flows.append("table=0,priority=0,actions=resubmit(,60)")
    ports = [PortSpec("p1"), PortSpec("p2"), PortSpec("p3")]
    return Pipeline(
        {"br-int": ports}, {"br-int": flows}, dump_args=("-O", "OpenFlow13"), load_args=()
    )


def firewall_packets(rng: random.Random, n: int) -> list[tuple[str, str, tuple[str, ...]]]:
    out = []
    for _ in range(n):
        port = rng.choice(["p1", "p2", "p3"])
        proto = rng.choice(["tcp", "tcp", "udp", "icmp", "icmp6", "arp"])
        src, dst = rng.choice(FW_MACS), rng.choice(FW_MACS)
        terms = [proto, f"in_port={port}"]
        if rng.random() < 0.2:
            terms.append("dl_vlan=644")
        terms += [f"dl_src={src}", f"dl_dst={dst}"]
        if proto == "arp":
            terms += [f"arp_spa={rng.choice(FW_IPS)}", f"arp_tpa={rng.choice(FW_IPS)}", "arp_op=1"]
        elif proto == "icmp6":
            terms += [
                "ipv6_src=fe80::11",
                "ipv6_dst=fe80::22",
                "icmpv6_type=" + str(rng.choice([130, 135, 136, 128])),
            ]
        else:
            terms += [f"nw_src={rng.choice(FW_IPS)}", f"nw_dst={rng.choice(FW_IPS)}", "nw_ttl=64"]
            if proto in ("tcp", "udp"):
                terms += [
                    f"{proto}_src={rng.choice([67, 40000])}",
                    f"{proto}_dst={rng.choice([68, 80, 81, 90, 22])}",
                ]
            else:
                terms += ["icmp_type=8", "icmp_code=0"]
        ct = tuple(rng.choice(CT_STATES) for _ in range(rng.randint(0, 2)))
        out.append(("br-int", ",".join(terms), ct))
    return out
