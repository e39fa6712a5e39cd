"""Write a snapshot bundle for a generated Neutron node, as ``nodetrace collect`` would capture it
from the lab's layout (OVS userspace datapath; underlay address on br-phys; hybrid-plugged VMs).

Every file has the shape the real tool prints: flows, rulesets and ipsets come from the
scenario generator (checked against real OVS and iptables by its own tests), and the JSON of
``ip -j``/``ovs-vsctl --format=json`` is written with the keys those tools use.
"""

from __future__ import annotations

import json
import uuid
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from nodetrace.neutron.generate import NodeState

BRIDGES = ("br-int", "br-tun", "br-phys")


def _mac(seed: str) -> str:
    h = uuid.uuid5(uuid.NAMESPACE_OID, seed).bytes
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


def _link(
    index: int,
    name: str,
    kind: str | None,
    *,
    master: str | None = None,
    slave: str | None = None,
    peer: str | None = None,
    data: dict[str, Any] | None = None,
    addrs: tuple[tuple[str, int], ...] = (),
    mtu: int = 1500,
) -> dict[str, Any]:
    link: dict[str, Any] = {"ifindex": index, "ifname": name}
    if peer is not None:
        link["link"] = peer
    link |= {
        "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"],
        "mtu": mtu,
        "operstate": "UP",
        "link_type": "ether",
        "address": _mac(name),
    }
    if master is not None:
        link["master"] = master
    info: dict[str, Any] = {}
    if kind is not None:
        info["info_kind"] = kind
        if data is not None:
            info["info_data"] = data
    if slave is not None:
        info["info_slave_kind"] = slave
        info["info_slave_data"] = {"state": "forwarding", "learning": True, "flood": True}
    if info:
        link["linkinfo"] = info
    link["addr_info"] = [
        {"family": "inet", "local": ip, "prefixlen": plen, "scope": "global", "label": name}
        for ip, plen in addrs
    ]
    return link


def _ovsdb(headings: list[str], rows: list[list[Any]]) -> str:
    return json.dumps({"data": rows, "headings": headings})


def _map(pairs: tuple[tuple[str, str], ...]) -> list[Any]:
    return ["map", [[k, v] for k, v in pairs]]


def write_bundle(state: NodeState, root: Path) -> Path:
    """Write the bundle of ``state`` into the new folder ``root``."""
    host = root / "host"
    host.mkdir(parents=True)
    commands: list[dict[str, Any]] = []

    def put(kind: str, name: str, text: str, bridge: str | None = None) -> None:
        (host / name).write_text(text)
        commands.append(
            {"kind": kind, "argv": [kind], "file": f"host/{name}", "netns": None,
             "bridge": bridge, "status": "ok", "exit": 0, "started": "", "seconds": 0.0,
             "stderr": "", "truncated": False}
        )  # fmt: skip

    underlay = str(state.node.underlay_ip)
    links = [
        _link(1, "lo", None, addrs=(("127.0.0.1", 8),)),
        _link(2, "ovs-netdev", "tun", data={"type": "tap"}),
    ]
    links[0]["link_type"] = "loopback"
    index = 3
    for b in BRIDGES:
        addrs = ((underlay, 24),) if b == "br-phys" else ()
        links.append(_link(index, b, "tun", data={"type": "tap"}, addrs=addrs))
        index += 1
    links.append(_link(index, "und0", "veth"))
    index += 1
    for vp in state.vm_ports:
        d = vp.devices
        links.append(
            _link(index, d.qbr, "bridge", data={"ageing_time": 0, "stp_state": 0}, mtu=vp.mtu)
        )
        links.append(_link(index + 1, d.tap, "tun", master=d.qbr, slave="bridge",
                           data={"type": "tap"}, mtu=vp.mtu))  # fmt: skip
        links.append(_link(index + 2, d.qvb, "veth", master=d.qbr, slave="bridge", peer=d.qvo,
                           mtu=vp.mtu))  # fmt: skip
        links.append(_link(index + 3, d.qvo, "veth", peer=d.qvb, mtu=vp.mtu))
        index += 4
    put("ip-addr", "ip-addr.json", json.dumps(links))
    routes = [
        {"type": "unicast", "dst": str(ip_network(f"{underlay}/24", strict=False)),
         "dev": "br-phys", "table": "main", "protocol": "kernel", "scope": "link",
         "prefsrc": underlay},
        {"type": "local", "dst": underlay, "dev": "br-phys", "table": "local",
         "protocol": "kernel", "scope": "host", "prefsrc": underlay},
        {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local",
         "protocol": "kernel", "scope": "host", "prefsrc": "127.0.0.1"},
    ]  # fmt: skip
    put("ip-route", "ip-route.json", json.dumps(routes))
    put("ip-rule", "ip-rule.json", json.dumps([
        {"priority": 0, "src": "all", "table": "local"},
        {"priority": 32766, "src": "all", "table": "main"},
        {"priority": 32767, "src": "all", "table": "default"},
    ]))  # fmt: skip
    put("ip-neigh", "ip-neigh.json", "[]")
    fdb = [
        {"mac": _mac(vp.devices.tap), "ifname": vp.devices.tap, "flags": [],
         "master": vp.devices.qbr, "state": "permanent"}
        for vp in state.vm_ports
    ]  # fmt: skip
    put("bridge-fdb", "bridge-fdb.json", json.dumps(fdb))
    put(
        "sysctl",
        "sysctl.txt",
        "net.bridge.bridge-nf-call-arptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\n"
        "net.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.conf.all.rp_filter = 0\n"
        "net.ipv4.ip_forward = 0\nnet.netfilter.nf_conntrack_tcp_loose = 1\n",
    )
    put("iptables-save", "iptables-save.txt", state.firewall.iptables_save)
    put("ip6tables-save", "ip6tables-save.txt", state.firewall.ip6tables_save)
    put("ipset-save", "ipset-save.txt", state.firewall.ipset_restore)

    iface_rows: list[list[Any]] = []
    port_rows: list[list[Any]] = []
    bridge_ports: dict[str, list[str]] = {b: [] for b in BRIDGES}
    all_ports = [*state.ovs_ports]
    for b in BRIDGES:
        all_ports.append(type(state.ovs_ports[0])(b, b, 65534, "internal"))
    for p in all_ports:
        iu, pu = (
            str(uuid.uuid5(uuid.NAMESPACE_DNS, "i" + p.name)),
            str(uuid.uuid5(uuid.NAMESPACE_DNS, "p" + p.name)),
        )
        iface_rows.append([["uuid", iu], p.name, p.type, p.ofport, _map(p.options),
                           _map(p.external_ids), _mac(p.name)])  # fmt: skip
        port_rows.append([["uuid", pu], p.name, ["uuid", iu], p.tag if p.tag is not None
                          else ["set", []], ["set", []], ["set", []], _map(())])  # fmt: skip
        bridge_ports[p.bridge].append(pu)
    put(
        "ovs-vsctl-list-interface",
        "ovs-vsctl-list-interface.json",
        _ovsdb(
            ["_uuid", "name", "type", "ofport", "options", "external_ids", "mac_in_use"], iface_rows
        ),
    )
    put(
        "ovs-vsctl-list-port",
        "ovs-vsctl-list-port.json",
        _ovsdb(
            ["_uuid", "name", "interfaces", "tag", "trunks", "vlan_mode", "external_ids"], port_rows
        ),
    )
    put("ovs-vsctl-list-bridge", "ovs-vsctl-list-bridge.json", _ovsdb(
        ["_uuid", "name", "ports", "datapath_type", "fail_mode", "external_ids", "other_config"],
        [[["uuid", str(uuid.uuid5(uuid.NAMESPACE_DNS, b))], b,
          ["set", [["uuid", u] for u in bridge_ports[b]]], "netdev", "secure", _map(()), _map(())]
         for b in BRIDGES]))  # fmt: skip
    for b in BRIDGES:
        shown = ["OFPT_FEATURES_REPLY (xid=0x2): dpid:0000000000000001",
                 "n_tables:254, n_buffers:0"]  # fmt: skip
        for p in sorted((p for p in all_ports if p.bridge == b), key=lambda p: p.ofport):
            number = "LOCAL" if p.ofport == 65534 else str(p.ofport)
            shown += [f" {number}({p.name}): addr:{_mac(p.name)}", "     config:     0",
                      "     state:      0"]  # fmt: skip
        shown.append("OFPT_GET_CONFIG_REPLY (xid=0x4): frags=normal miss_send_len=0")
        put("ovs-ofctl-show", f"ovs-ofctl-show.{b}.txt", "\n".join(shown) + "\n", b)
        put("ovs-ofctl-dump-flows", f"ovs-ofctl-dump-flows.{b}.txt", state.dump_flows_text(b), b)
        entries = [" port  VLAN  MAC                Age"]
        if b == "br-int":
            entries += [f"{vp.ofport:5d} {vp.local_vlan:5d}  {vp.port.mac}    1"
                        for vp in state.vm_ports]  # fmt: skip
        put("ovs-appctl-fdb-show", f"ovs-appctl-fdb-show.{b}.txt", "\n".join(entries) + "\n", b)
    manifest = {
        "format": "nodetrace-snapshot", "version": 1, "host": state.node.name,
        "kernel": "synthetic", "started": "", "finished": "", "collector": {},
        "tools": {}, "iptables_backend": "legacy", "namespaces": [],
        "namespaces_skipped": [], "namespaces_problem": "", "commands": commands,
    }  # fmt: skip
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root
