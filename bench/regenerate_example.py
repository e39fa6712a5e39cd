"""Capture the bundled example again: a real iptables-legacy TRACE log and the ruleset that
produced it (``src/nodetrace/examples/lab-legacy-trace.dmesg`` and ``lab-rules.iptables-save``,
which ``./run-example`` explains).

In the lab (root), a Linux bridge ``br-lab`` with br_netfilter carries the tap devices of two VM
ports of the scenario below, A (10.0.0.1) and B (10.0.0.2), each host in its own namespace. The
ruleset is what Neutron's hybrid firewall writes for the two ports
(:func:`nodetrace.neutron.firewall.node_firewall`; both in conntrack zone 4097) with ``-p icmp
-j TRACE`` first in raw PREROUTING, loaded with ``iptables-legacy-restore`` and saved back with
``iptables-legacy-save`` before any packet is sent. A sends a ping to B, B's kernel answers it,
and A sends a ping from the spoofed source 10.0.0.5, which A's anti-spoofing chain drops. The
TRACE records naming the bed's devices are read from ``/dev/kmsg`` and written in ``dmesg``'s
``[seconds.micros] text`` form. Nothing is written unless the wires saw exactly that story.

    sudo .venv/bin/python bench/regenerate_example.py            # writes src/nodetrace/examples
    sudo .venv/bin/python bench/regenerate_example.py --write DIR

Then update the date, ``uname -r`` and ``iptables -V`` in src/nodetrace/examples/SOURCES.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from nodetrace.lab.bridge_bed import (
    BridgeBed,
    HostSpec,
    build_bridge_bed,
    load_ruleset,
    save_ruleset,
)
from nodetrace.lab.capture import KernelLine, KernelTraceLog
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.lab.send import Wire, frame_bytes, packet_from_frame
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import IPProto, Packet
from nodetrace.neutron.firewall import PortFilter, node_firewall
from nodetrace.neutron.naming import tap_name
from nodetrace.neutron.scenario import Port, parse_scenario

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "nodetrace" / "examples"
LOG_NAME = "lab-legacy-trace.dmesg"
RULES_NAME = "lab-rules.iptables-save"
BRIDGE = "br-lab"
SPOOFED = IPv4Address("10.0.0.5")

SCENARIO = """\
[[nodes]]
name = "cmp1"

[[networks]]
name = "private"
type = "vxlan"
segmentation_id = 1037
cidr = "10.0.0.0/24"

[[security_groups]]
name = "ping"
rules = [
  { direction = "ingress", protocol = "icmp", remote_ip_prefix = "10.0.0.0/24" },
  { direction = "egress" },
]

[[ports]]
name = "vm-a"
node = "cmp1"
network = "private"
ip = "10.0.0.1"
security_groups = ["ping"]

[[ports]]
name = "vm-b"
node = "cmp1"
network = "private"
ip = "10.0.0.2"
security_groups = ["ping"]
"""


def _host(name: str, port: Port) -> HostSpec:
    return HostSpec(
        name, mac=port.mac, addresses=(f"{port.fixed_ips[0]}/24",), port=tap_name(port.id)
    )


def _capture(lab: Resources, ruleset: str, ports: tuple[Port, Port]) -> tuple[str, list[str]]:
    """Build the bed, load ``ruleset``, send the two pings; the saved ruleset and the records."""
    bed = build_bridge_bed(
        lab,
        prefix=f"ex{uuid.uuid4().hex[:6]}",
        hosts=[_host("a", ports[0]), _host("b", ports[1])],
        bridge=BRIDGE,
    )
    a, b = bed.host("a"), bed.host("b")
    # Each host knows the other's MAC, so no ARP crosses the bridge before the ping.
    run(["ip", "-n", a.netns, "neigh", "replace", "10.0.0.2", "lladdr", b.mac, "dev", "eth0"])
    run(["ip", "-n", b.netns, "neigh", "replace", "10.0.0.1", "lladdr", a.mac, "dev", "eth0"])
    load_ruleset(bed, ruleset, backend=Backend.LEGACY)
    saved = save_ruleset(bed, backend=Backend.LEGACY)
    with KernelTraceLog(lab) as log:
        _send_and_check(bed)
        time.sleep(0.1)
        records = [r for r in log.records() if _names_bed(r, bed)]
    return saved, [f"[{r.usec // 1_000_000:5d}.{r.usec % 1_000_000:06d}] {r.text}" for r in records]


def _names_bed(record: KernelLine, bed: BridgeBed) -> bool:
    return record.text.startswith("TRACE: ") and any(f"={d} " in record.text for d in bed.devices)


def _send_and_check(bed: BridgeBed) -> None:
    a, b = bed.host("a"), bed.host("b")
    ping = Packet(
        dl_src=a.mac,
        dl_dst=b.mac,
        nw_src=IPv4Address("10.0.0.1"),
        nw_dst=IPv4Address("10.0.0.2"),
        nw_ttl=64,
        ip_df=True,
        ip_id=4101,
        ip_len=84,
        nw_proto=IPProto.ICMP,
        icmp_type=8,
        icmp_code=0,
        icmp_id=4242,
        icmp_seq=1,
    )
    spoofed = replace(ping, nw_src=SPOOFED, ip_id=4102, icmp_seq=2)
    with Wire.open(a) as wire_a, Wire.open(b) as wire_b:
        wire_a.drain()
        wire_b.drain()
        wire_a.send(frame_bytes(ping))
        time.sleep(0.2)
        wire_a.send(frame_bytes(spoofed))
        time.sleep(0.2)
        at_b = [packet_from_frame(f.data) for f in wire_b.receive(timeout=0.3)]
        at_a = [packet_from_frame(f.data) for f in wire_a.receive(timeout=0.1)]
    if [(p.nw_src, p.icmp_type) for p in at_b if p is not None] != [(ping.nw_src, 8)]:
        raise SystemExit(f"B should have received the ping only; it received {at_b}")
    replies = [p for p in at_a if p is not None and p.icmp_type == 0 and p.icmp_id == 4242]
    if len(replies) != 1:
        raise SystemExit(f"A should have received one echo reply; it received {at_a}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", type=Path, default=EXAMPLES, help="folder for the two files")
    args = parser.parse_args()
    scenario = parse_scenario(SCENARIO, source="lab-example.toml")
    vm_a, vm_b = scenario.port("vm-a"), scenario.port("vm-b")
    # One conntrack zone for both ports, as where they share a bridge (per network): the reply
    # then belongs to the ping's connection, as it does on a node.
    ports = [PortFilter(vm_a, zone=4097), PortFilter(vm_b, zone=4097)]
    firewall = node_firewall(scenario, ports, ipv4_trace="-p icmp")
    with tempfile.TemporaryDirectory() as tmp:
        lab = Resources(Ledger(Path(tmp) / "ledger"))
        try:
            saved, records = _capture(lab, firewall.iptables_save, (vm_a, vm_b))
        finally:
            problems = lab.teardown()
    if problems:
        raise SystemExit(f"teardown problems: {problems}")
    (args.write / RULES_NAME).write_text(saved)
    (args.write / LOG_NAME).write_text("".join(line + "\n" for line in records))
    kernel = run(["uname", "-r"]).stdout.strip()
    iptables = run(["iptables-legacy", "-V"]).stdout.strip()
    print(f"wrote {len(records)} TRACE records to {args.write / LOG_NAME} ({kernel}, {iptables})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
