"""A lab scenario whose real TRACE output ``nodetrace log`` must explain to what the wire saw.

A Linux bridge with two veth ports (hosts ``a`` 10.0.0.1 and ``b`` 10.0.0.2) carries a
Neutron-shaped ruleset: TRACE in raw PREROUTING, conntrack zones, a security-group chain for
``b`` (ICMP and TCP 22 allowed, TCP 23 rejected, the rest to a fallback DROP) and anti-spoofing
for ``a`` whose last rule is a bare ``-j DROP`` (logged by the kernel as ``return``). Host ``a``
sends crafted frames with unique IP IDs; both hosts' wires record what arrived; the kernel's
trace is captured as the kernel log (iptables-legacy), ``xtables-monitor --trace`` and
``nft monitor trace`` (iptables-nft).

Run as a program to refresh the captured samples in tests/data/tracelog (as root)::

    .venv/bin/python -m tests.lab.log_scenario --write tests/data/tracelog
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from nodetrace.lab.bridge_bed import (
    BridgeBed,
    HostSpec,
    build_bridge_bed,
    load_ruleset,
    save_ruleset,
)
from nodetrace.lab.capture import KernelTraceLog, TraceMonitor
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources
from nodetrace.lab.run import run
from nodetrace.lab.send import Frame, Wire, frame_bytes
from nodetrace.model.netfilter import Backend
from nodetrace.model.packet import ETH_TYPE_IPV6, Family, IPProto, Packet, TcpFlag

RULES = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:sg-PREROUTING - [0:0]
-A PREROUTING -p icmp -j TRACE
-A PREROUTING -p tcp -j TRACE
-A PREROUTING -j sg-PREROUTING
-A sg-PREROUTING -m physdev --physdev-in {pa} -m comment --comment "Set zone for port a" -j CT --zone 4097
-A sg-PREROUTING -m physdev --physdev-in {pb} -m comment --comment "Set zone for port b" -j CT --zone 4098
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:i-b - [0:0]
:o-a - [0:0]
:s-a - [0:0]
:sg-chain - [0:0]
:sg-fallback - [0:0]
-A FORWARD -m physdev --physdev-out {pb} --physdev-is-bridged -j sg-chain
-A FORWARD -m physdev --physdev-in {pa} --physdev-is-bridged -j sg-chain
-A i-b -m state --state RELATED,ESTABLISHED -j RETURN
-A i-b -p icmp -j RETURN
-A i-b -p tcp -m tcp --dport 22 -j RETURN
-A i-b -p tcp -m tcp --dport 23 -j REJECT --reject-with tcp-reset
-A i-b -m state --state INVALID -j DROP
-A i-b -j sg-fallback
-A o-a -j s-a
-A o-a -j RETURN
-A s-a -s 10.0.0.1/32 -m mac --mac-source {mac_a} -j RETURN
-A s-a -j DROP
-A sg-chain -m physdev --physdev-out {pb} --physdev-is-bridged -j i-b
-A sg-chain -m physdev --physdev-in {pa} --physdev-is-bridged -j o-a
-A sg-chain -j ACCEPT
-A sg-fallback -m comment --comment "Default drop rule for unmatched traffic." -j DROP
COMMIT
"""


RULES6 = """\
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j TRACE
-A PREROUTING -p tcp -j TRACE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:i-b - [0:0]
:s-a - [0:0]
-A FORWARD -m physdev --physdev-in {pa} --physdev-is-bridged -j s-a
-A FORWARD -m physdev --physdev-out {pb} --physdev-is-bridged -j i-b
-A i-b -p ipv6-icmp -j RETURN
-A i-b -p tcp -m tcp --dport 22 -j RETURN
-A i-b -j DROP
-A s-a -s fc00::1/128 -j RETURN
-A s-a -j DROP
COMMIT
"""


@dataclass(frozen=True)
class Probe:
    """One packet host ``a`` sends, and what the ruleset does to it (for the reader)."""

    name: str
    packet: Packet


@dataclass
class Capture:
    """What one run produced: the trace text per format and what each wire received."""

    backend: Backend
    rules: str
    """iptables-save of the bed as the kernel holds the rules (for ``--rules``)."""
    traces: dict[str, str] = field(default_factory=dict)
    """``kernel`` / ``dmesg`` / ``xtables-monitor`` / ``nft-monitor`` -> log text."""
    arrived: set[tuple[str, str, int]] = field(default_factory=set)
    """(src, dst, IP ID) of every IPv4 frame a host's wire received; (src, dst, flow label)
    of every IPv6 frame."""
    devices: frozenset[str] = frozenset()
    sent: list[Probe] = field(default_factory=list)


def probes(bed: BridgeBed) -> list[Probe]:
    a, b = bed.host("a"), bed.host("b")
    base = Packet(
        dl_src=a.mac,
        dl_dst=b.mac,
        nw_src=IPv4Address("10.0.0.1"),
        nw_dst=IPv4Address("10.0.0.2"),
        nw_ttl=64,
        ip_df=True,
    )
    icmp = replace(base, nw_proto=IPProto.ICMP, icmp_type=8, icmp_code=0, icmp_id=77, ip_len=84)
    syn = replace(
        base,
        nw_proto=IPProto.TCP,
        tp_src=40000,
        tcp_flags=TcpFlag.SYN,
        tcp_seq=1000,
        tcp_window=64240,
    )
    return [
        Probe("ping a->b: allowed", replace(icmp, ip_id=40001, icmp_seq=1)),
        Probe(
            "ping from a spoofed address: dropped by s-a's bare DROP",
            replace(icmp, ip_id=40002, icmp_seq=2, nw_src=IPv4Address("10.0.0.5")),
        ),
        Probe("tcp to b:22: allowed", replace(syn, ip_id=40003, tp_dst=22)),
        Probe(
            "tcp to b:80: dropped by the fallback",
            replace(syn, ip_id=40004, tp_src=40001, tp_dst=80),
        ),
        Probe("tcp to b:23: rejected", replace(syn, ip_id=40005, tp_src=40002, tp_dst=23)),
        Probe("second ping a->b: allowed", replace(icmp, ip_id=40006, icmp_seq=3)),
    ]


def probes6(bed: BridgeBed) -> list[Probe]:
    a, b = bed.host("a"), bed.host("b")
    base = Packet(
        dl_src=a.mac,
        dl_dst=b.mac,
        dl_type=ETH_TYPE_IPV6,
        nw_src=IPv6Address("fc00::1"),
        nw_dst=IPv6Address("fc00::2"),
        nw_ttl=64,
    )
    ping = replace(base, nw_proto=IPProto.ICMPV6, icmp_type=128, icmp_code=0, icmp_id=9)
    syn = replace(
        base, nw_proto=IPProto.TCP, tp_src=40000, tcp_flags=TcpFlag.SYN, tcp_seq=5, tcp_window=64240
    )
    return [
        Probe("ping6 a->b: allowed", replace(ping, ipv6_label=50001, icmp_seq=1)),
        Probe(
            "ping6 from a spoofed address: dropped",
            replace(ping, ipv6_label=50002, icmp_seq=2, nw_src=IPv6Address("fc00::5")),
        ),
        Probe("tcp6 to b:22: allowed", replace(syn, ipv6_label=50003, tp_dst=22)),
        Probe("tcp6 to b:80: dropped", replace(syn, ipv6_label=50004, tp_dst=80)),
    ]


def _frame(packet: Packet) -> bytes:
    if packet.nw_proto != IPProto.ICMPV6:
        return frame_bytes(packet)
    # an ICMPv6 echo built here: lab.send's generic ICMPv6 header does not build with scapy 2.8
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Ether

    frame = (
        Ether(src=packet.dl_src, dst=packet.dl_dst)
        / IPv6(
            src=str(packet.nw_src), dst=str(packet.nw_dst), hlim=packet.nw_ttl, fl=packet.ipv6_label
        )
        / ICMPv6EchoRequest(id=packet.icmp_id or 0, seq=packet.icmp_seq or 0)
    )
    return bytes(frame)


def frame_key(frame: Frame) -> tuple[str, str, int] | None:
    """(src, dst, IP ID) of an IPv4 frame, (src, dst, flow label) of an IPv6 frame."""
    data = frame.data
    if len(data) >= 34 and data[12:14] == b"\x08\x00":
        return (
            str(ip_address(data[26:30])),
            str(ip_address(data[30:34])),
            int.from_bytes(data[18:20], "big"),
        )
    if len(data) >= 54 and data[12:14] == b"\x86\xdd":
        return (
            str(ip_address(data[22:38])),
            str(ip_address(data[38:54])),
            int.from_bytes(data[14:18], "big") & 0xFFFFF,
        )
    return None


def _collect(wire: Wire, into: set[tuple[str, str, int]], quiet: float = 0.3) -> None:
    while True:
        frames = wire.receive(timeout=quiet)
        if not frames:
            return
        for frame in frames:
            key = frame_key(frame)
            if key is not None:
                into.add(key)


def build(lab: Resources, prefix: str, backend: Backend) -> tuple[BridgeBed, str]:
    bed = build_bridge_bed(
        lab,
        prefix=prefix,
        hosts=[
            HostSpec("a", addresses=("10.0.0.1/24",)),
            HostSpec("b", addresses=("10.0.0.2/24",)),
        ],
    )
    a, b = bed.host("a"), bed.host("b")
    # the hosts answer b's replies without ARP: each knows the other's MAC
    run(["ip", "-n", a.netns, "neigh", "replace", "10.0.0.2", "lladdr", b.mac, "dev", "eth0"])
    run(["ip", "-n", b.netns, "neigh", "replace", "10.0.0.1", "lladdr", a.mac, "dev", "eth0"])
    text = RULES.format(pa=a.port, pb=b.port, mac_a=a.mac.upper())
    load_ruleset(bed, text, backend=backend)
    return bed, save_ruleset(bed, backend=backend)


def _send(bed: BridgeBed, capture: Capture, probe_list: list[Probe] | None = None) -> None:
    with Wire.open(bed.host("a")) as wa, Wire.open(bed.host("b")) as wb:
        wa.drain()
        wb.drain()
        for probe in probe_list if probe_list is not None else probes(bed):
            wa.send(_frame(probe.packet))
            capture.sent.append(probe)
            time.sleep(0.02)
        _collect(wb, capture.arrived)
        _collect(wa, capture.arrived, quiet=0.1)


def _kernel_capture(
    lab: Resources, bed: BridgeBed, capture: Capture, probe_list: list[Probe] | None
) -> None:
    capture.devices = bed.devices
    with KernelTraceLog(lab) as log:
        _send(bed, capture, probe_list)
        time.sleep(0.05)
        wanted = bed.devices
        records = [
            r
            for r in log.records()
            if r.text.startswith("TRACE: ") and any(f"={d} " in r.text for d in wanted)
        ]
    capture.traces["kernel"] = "".join(r.text + "\n" for r in records)
    # dmesg's own format for the same records: "[seconds.micros] text", seconds padded to 5
    capture.traces["dmesg"] = "".join(
        f"[{r.usec // 1_000_000:5d}.{r.usec % 1_000_000:06d}] {r.text}\n" for r in records
    )


def run_legacy(lab: Resources, prefix: str) -> Capture:
    bed, saved = build(lab, prefix, Backend.LEGACY)
    capture = Capture(Backend.LEGACY, saved)
    _kernel_capture(lab, bed, capture, None)
    return capture


def run_legacy6(lab: Resources, prefix: str) -> Capture:
    """The IPv6 variant with ip6tables-legacy: hosts fc00::1 and fc00::2."""
    bed = build_bridge_bed(
        lab,
        prefix=prefix,
        ipv6=True,
        hosts=[HostSpec("a", addresses=("fc00::1/64",)), HostSpec("b", addresses=("fc00::2/64",))],
    )
    a, b = bed.host("a"), bed.host("b")
    text = RULES6.format(pa=a.port, pb=b.port)
    load_ruleset(bed, text, backend=Backend.LEGACY, family=Family.IPV6)
    saved = save_ruleset(bed, backend=Backend.LEGACY, family=Family.IPV6)
    capture = Capture(Backend.LEGACY, saved)
    _kernel_capture(lab, bed, capture, probes6(bed))
    return capture


def run_nft(lab: Resources, prefix: str, workdir: Path) -> Capture:
    bed, saved = build(lab, prefix, Backend.NFT)
    capture = Capture(Backend.NFT, saved)
    xt = TraceMonitor(bed.netns, workdir, kind="xtables")
    nf = TraceMonitor(bed.netns, workdir, kind="nft")
    xt.start()
    try:
        nf.start()
        try:
            _send(bed, capture)
        finally:
            capture.traces["nft-monitor"] = "".join(line + "\n" for line in nf.stop())
    finally:
        capture.traces["xtables-monitor"] = "".join(line + "\n" for line in xt.stop())
    return capture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, required=True, help="directory for the samples")
    args = parser.parse_args()
    prefix = f"lg{int(time.time()) % 100000:05d}"
    with tempfile.TemporaryDirectory() as tmp:
        lab = Resources(Ledger(Path(tmp) / "ledger"))
        try:
            legacy = run_legacy(lab, prefix + "l")
            # the same records as `dmesg -T` prints them (wall-clock time from the boot time)
            shown = run(["dmesg", "-T"]).stdout.splitlines()
            dmesg_t = [
                x for x in shown if "TRACE: " in x and any(f"={d} " in x for d in legacy.devices)
            ]
            legacy6 = run_legacy6(lab, prefix + "6")
            nft = run_nft(lab, prefix + "n", Path(tmp))
        finally:
            problems = lab.teardown()
    if problems:
        raise SystemExit(f"teardown problems: {problems}")
    out = args.write
    (out / "lab-capture-legacy.iptables-save").write_text(legacy.rules)
    (out / "lab-capture-legacy.kmsg").write_text(legacy.traces["kernel"])
    (out / "lab-capture-legacy.dmesg").write_text(legacy.traces["dmesg"])
    (out / "lab-capture-legacy.dmesg-T").write_text("".join(x + "\n" for x in dmesg_t))
    (out / "lab-capture-legacy6.ip6tables-save").write_text(legacy6.rules)
    (out / "lab-capture-legacy6.dmesg").write_text(legacy6.traces["dmesg"])
    (out / "lab-capture-nft.iptables-save").write_text(nft.rules)
    (out / "lab-capture-nft.xtables-monitor").write_text(nft.traces["xtables-monitor"])
    (out / "lab-capture-nft.nft-monitor").write_text(nft.traces["nft-monitor"])
    arrived = sorted(f"{s} {d} {i}" for s, d, i in legacy.arrived | legacy6.arrived | nft.arrived)
    (out / "lab-capture-wire.txt").write_text("\n".join(arrived) + "\n")


if __name__ == "__main__":
    main()
