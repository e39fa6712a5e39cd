"""Write a generated Neutron node as an older sosreport shows it: text outputs only, under the
file names sos gives them, with no JSON and no ``ip -d``: ``ip address`` text, ``brctl show``,
``ovs-vsctl -t 5 show``, ``ovs-ofctl show`` and ``dump-flows`` per bridge, ``iptables-save``.

That is the shape of the Newton-era hybrid-firewall nodes operators still send, so a benchmark on
it measures the readers and the Neutron inference a real node exercises, not only the bundle path.
Flows, rules and ipsets come from the scenario generator (checked against real OVS and iptables by
its own tests); the text around them follows the layouts of ``tests/data/snapshot/sos-mini``
(captured from real tools).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from nodetrace.neutron.generate import NodeState

BRIDGES = ("br-int", "br-tun", "br-phys")
UPLINK = "eth1"


def _mac(seed: str) -> str:
    h = uuid.uuid5(uuid.NAMESPACE_OID, seed).bytes
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


def _ip_address(state: NodeState) -> str:
    """``ip address`` (no ``-d``): masters and veth peers, but no link kinds."""
    out: list[str] = []
    index = 1

    def link(name: str, flags: str, mtu: int, extra: str = "", addrs: tuple[str, ...] = ()) -> None:
        nonlocal index
        out.append(
            f"{index}: {name}: <{flags}> mtu {mtu} qdisc noqueue{extra} state UP "
            "group default qlen 1000"
        )
        out.append(f"    link/ether {_mac(name)} brd ff:ff:ff:ff:ff:ff")
        for a in addrs:
            out.append(f"    inet {a} scope global {name.split('@')[0]}")
            out.append("       valid_lft forever preferred_lft forever")
        index += 1

    out += [
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000",
        "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
        "    inet 127.0.0.1/8 scope host lo",
        "       valid_lft forever preferred_lft forever",
    ]
    index = 2
    up = "BROADCAST,MULTICAST,UP,LOWER_UP"
    link(UPLINK, up, 1500, " master ovs-system")
    link("ovs-system", "BROADCAST,MULTICAST", 1500)
    for b in BRIDGES:
        addrs = (f"{state.node.underlay_ip}/24",) if b == "br-phys" else ()
        link(b, "BROADCAST,MULTICAST", 1500, addrs=addrs)
    for vp in state.vm_ports:
        d = vp.devices
        link(d.qbr, up, vp.mtu)
        link(d.tap, up, vp.mtu, f" master {d.qbr}")
        # Both ends in one namespace: `ip` names each end's peer after the `@`.
        link(f"{d.qvo}@{d.qvb}", "BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP", vp.mtu,
             " master ovs-system")  # fmt: skip
        link(f"{d.qvb}@{d.qvo}", "BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP", vp.mtu,
             f" master {d.qbr}")  # fmt: skip
    return "\n".join(out) + "\n"


def _brctl_show(state: NodeState) -> str:
    out = ["bridge name\tbridge id\t\tSTP enabled\tinterfaces"]
    for vp in state.vm_ports:
        d = vp.devices
        bridge_id = "8000." + _mac(d.qbr).replace(":", "")
        out.append(f"{d.qbr}\t\t{bridge_id}\tno\t\t{d.qvb}")
        out.append(f"\t\t\t\t\t\t\t{d.tap}")
    return "\n".join(out) + "\n"


def _q(name: str) -> str:
    """OVS 2.6 quotes a name unless it is letters, ``_``, ``-`` and ``.`` only (so ``"eth1"``)."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z_.-]*", name) else f'"{name}"'


def _ovs_vsctl_show(state: NodeState) -> str:
    out = [str(uuid.uuid5(uuid.NAMESPACE_DNS, state.node.name))]
    for b in BRIDGES:
        out += [f"    Bridge {b}", "        Controller \"tcp:127.0.0.1:6633\"",
                "            is_connected: true", "        fail_mode: secure"]  # fmt: skip
        ports = [*state.bridge_ports(b)]
        for p in ports:
            out.append(f"        Port {_q(p.name)}")
            if p.tag is not None:
                out.append(f"            tag: {p.tag}")
            out.append(f"            Interface {_q(p.name)}")
            if p.type not in ("", "system"):
                out.append(f"                type: {p.type}")
            if p.options:
                opts = ", ".join(
                    f'{k}="{v}"' if k in ("local_ip", "remote_ip", "dst_port") else f"{k}={v}"
                    for k, v in p.options
                )
                out.append(f"                options: {{{opts}}}")
        if b == "br-phys":
            out += [f"        Port {_q(UPLINK)}", f"            Interface {_q(UPLINK)}"]
        out += [f"        Port {b}", f"            Interface {b}", "                type: internal"]
    out.append('    ovs_version: "2.6.1"')
    return "\n".join(out) + "\n"


def write_sosreport(state: NodeState, root: Path, *, mac_tables: bool = False) -> Path:
    """Write ``state`` as a sosreport folder at the new path ``root``; with ``mac_tables`` also
    ``ovs-appctl fdb/show`` per bridge (sos 3.3 and later collect it), so NORMAL unicasts
    instead of flooding."""
    net = root / "sos_commands" / "networking"
    ovs = root / "sos_commands" / "openvswitch"
    for d in (net, ovs, root / "sos_commands" / "kernel"):
        d.mkdir(parents=True)
    (root / "hostname").write_text(f"{state.node.name}\n")
    (root / "uname").write_text(f"Linux {state.node.name} 4.4.0-210-generic x86_64 GNU/Linux\n")
    (net / "ip_address").write_text(_ip_address(state))
    (net / "brctl_show").write_text(_brctl_show(state))
    (net / "ip_route_show_table_all").write_text(
        f"192.168.50.0/24 dev br-phys  proto kernel  scope link  src {state.node.underlay_ip} \n"
        f"local {state.node.underlay_ip} dev br-phys  table local  proto kernel  scope host  "
        f"src {state.node.underlay_ip} \n"
    )
    (net / "iptables-save").write_text(state.firewall.iptables_save)
    (net / "ip6tables-save").write_text(state.firewall.ip6tables_save)
    (root / "sos_commands" / "kernel" / "sysctl_-a").write_text(
        "net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
        "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.rp_filter = 0\n"
    )
    (ovs / "ovs-vsctl_-t_5_show").write_text(_ovs_vsctl_show(state))
    for b in BRIDGES:
        (ovs / f"ovs-ofctl_show_{b}").write_text(_ofctl_show(state, b))
        (ovs / f"ovs-ofctl_dump-flows_{b}").write_text(state.dump_flows_text(b))
        if mac_tables:
            entries = [" port  VLAN  MAC                Age"]
            if b == "br-int":
                entries += [f"{vp.ofport:5d} {vp.local_vlan:5d}  {vp.port.mac}    1"
                            for vp in state.vm_ports]  # fmt: skip
            (ovs / f"ovs-appctl_fdb.show_{b}").write_text("\n".join(entries) + "\n")
    return root


def _ofctl_show(state: NodeState, bridge: str) -> str:
    out = ["OFPT_FEATURES_REPLY (xid=0x2): dpid:0000000000000001", "n_tables:254, n_buffers:256"]
    ports = sorted(state.bridge_ports(bridge), key=lambda p: p.ofport)
    numbered = [(p.ofport, p.name) for p in ports]
    if bridge == "br-phys":
        numbered.append((max(n for n, _ in numbered) + 1, UPLINK))
    for number, name in numbered:
        out += [f" {number}({name}): addr:{_mac(name)}", "     config:     0",
                "     state:      0", "     speed: 0 Mbps now, 0 Mbps max"]  # fmt: skip
    out += [f" LOCAL({bridge}): addr:{_mac(bridge)}", "     config:     PORT_DOWN",
            "     state:      LINK_DOWN", "     speed: 0 Mbps now, 0 Mbps max",
            "OFPT_GET_CONFIG_REPLY (xid=0x4): frags=normal miss_send_len=0"]  # fmt: skip
    return "\n".join(out) + "\n"
