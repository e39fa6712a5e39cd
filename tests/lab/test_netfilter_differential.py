"""The netfilter engine against the real kernel: same ruleset, same packets, same TRACE lines.

Each case loads a ruleset into a bridge bed with ``iptables-legacy-restore`` or
``iptables-nft-restore``, sends crafted frames across the bridge, captures the kernel's TRACE
output (kernel log lines, or ``xtables-monitor --trace``), and checks that the engine, given
the bed's own ``iptables-save`` output and the same frames in the same order, predicts those
lines exactly (timestamps and nft trace ids aside) and the verdict that arrived on the wire.

Random rulesets and traffic come from a seed printed at the start (fixed by default;
``NODETRACE_SEED=N`` replays one, ``NODETRACE_SEED=random`` explores new ones); failures show the
seed, the ruleset and a diff of the lines.
"""

from __future__ import annotations

import difflib
import random
import re
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, ip_address
from pathlib import Path

import pytest

from nodetrace.engine.netfilter import (
    NetfilterEngine,
    NodeFacts,
    bridge_path,
    input_path,
    output_path,
)
from nodetrace.lab.bridge_bed import (
    BridgeBed,
    HostSpec,
    add_neighbors,
    build_bridge_bed,
    load_ipsets,
    load_ruleset,
    save_ruleset,
)
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.netfilter_oracle import (
    BED,
    CaptureFailed,
    Observation,
    Send,
    observe,
    packet_key,
)
from nodetrace.lab.netfilter_random import (
    V6_ADDRESSES,
    BedNames,
    RandomRuleset,
    random_local_sends,
    random_sends,
)
from nodetrace.lab.resources import Resources
from nodetrace.model.netfilter import Backend, HookDevices
from nodetrace.model.packet import Family, Packet, TcpFlag
from nodetrace.model.trace import Hook
from nodetrace.model.verdict import Verdict
from nodetrace.neutron.firewall import NodeFirewall, PortFilter, node_firewall
from nodetrace.neutron.naming import qvb_name, tap_name
from nodetrace.neutron.scenario import parse_scenario
from nodetrace.parsers.ipset_save import parse_ipset_save
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.kernel_trace import render_kernel_trace
from nodetrace.render.xtables_trace import render_xtables_trace
from tests.conftest import seed_from_env, unique

pytestmark = pytest.mark.lab

_TRACE_ID = re.compile(r"^(PACKET: \d+ | TRACE: \d+ )[0-9a-f]{8} ")

RANDOM_CASES = 160
"""Per backend: random rulesets are drawn until this many packets were compared."""

IPV6_CASES = 120
"""Per backend, bridged IPv6 packets."""

LOCAL_CASES = 80
"""Per backend and host path (INPUT, OUTPUT), IPv4 packets to or from the bed itself."""

BED_ADDRESS = IPv4Interface("10.9.0.254/16")
LISTEN_PORT = 5353

SEED = seed_from_env()

IPSETS = """\
create s1 hash:net family inet hashsize 1024 maxelem 65536
add s1 10.9.0.1
add s1 10.9.1.0/24
create s2 hash:ip family inet hashsize 1024 maxelem 65536
add s2 10.9.0.2
"""

IPSETS_V6 = """\
create s1 hash:net family inet6 hashsize 1024 maxelem 65536
add s1 2001:db8::1
add s1 2001:db8:1::/64
create s2 hash:ip family inet6 hashsize 1024 maxelem 65536
add s2 2001:db8::2
"""


@pytest.fixture(scope="module", autouse=True)
def _announce_seed() -> None:
    print(f"\nnetfilter differential tests: NODETRACE_SEED={SEED}", file=sys.stderr)


@dataclass
class Tally:
    cases: int = 0
    failures: list[str] | None = None

    def __post_init__(self) -> None:
        self.failures = []


def _compare(
    engine: NetfilterEngine,
    bed: BridgeBed,
    observations: list[Observation],
    backend: Backend,
    tally: Tally,
    label: str,
) -> None:
    assert tally.failures is not None
    for obs in observations:
        send = obs.send
        result = engine.run(obs.packet, _path(bed, send))
        tally.cases += 1
        if backend is Backend.LEGACY:
            owner = (0, 0) if send.src == BED else None  # the raw socket runs as root
            predicted = render_kernel_trace(result.trace.steps, owner=owner)
            got = list(obs.lines)
        else:
            # nf_tables derives the trace id from the skb and its input interface, so a packet
            # delivered locally gets a second id at INPUT: ids are compared as zeros.
            predicted = render_xtables_trace(result.trace.steps, local=send.src == BED)
            got = [_TRACE_ID.sub(r"\g<1>00000000 ", line) for line in obs.lines]
        arrived = obs.delivered if send.dst == BED else bool(obs.arrived)
        problems = []
        if result.verdict is Verdict.UNKNOWN:
            problems.append(f"engine answered unknown: {result.trace.reason}")
        elif arrived is not None and arrived != (result.verdict is Verdict.ACCEPT):
            problems.append(
                f"verdict {result.verdict} ({result.trace.reason}) but "
                f"{'delivered' if send.dst == BED else 'arrived'}={arrived}"
            )
        elif obs.arrived and _wire_source(obs.arrived[0].data) != result.packet.nw_src:
            problems.append("the source address on the wire differs from the predicted one")
        if predicted != got:
            diff = "\n".join(
                difflib.unified_diff(got, predicted, "kernel", "nodetrace", lineterm="", n=1)
            )
            problems.append("TRACE lines differ:\n" + diff)
        if problems:
            tally.failures.append(
                f"{label} packet {send.src}->{send.dst} key={packet_key(obs.packet)}: "
                + "\n".join(problems)
            )


def _path(bed: BridgeBed, send: Send) -> Sequence[tuple[Hook, HookDevices]]:
    if send.dst == BED:
        return input_path(bed.bridge, physin=bed.host(send.src).port)
    if send.src == BED:
        return output_path(bed.bridge)
    return bridge_path(bed.bridge, physin=bed.host(send.src).port, physout=bed.host(send.dst).port)


def _wire_source(frame: bytes) -> object:
    if frame[12:14] == b"\x86\xdd":
        return ip_address(frame[22:38])
    return ip_address(frame[26:30])


def _observe_case(
    tmp_path: Path,
    backend: Backend,
    hosts: list[HostSpec],
    ruleset_text: object,
    sends_for: object,
    ipsets: str,
    family: Family,
    local: bool,
) -> tuple[BridgeBed, str, list[Observation]]:
    """Build a bed, load the ruleset, send the batch, tear the bed down; what the kernel did."""
    res = Resources(Ledger(tmp_path / f"{unique('bed')}.ledger"))
    try:
        bed = build_bridge_bed(
            res,
            prefix=unique("nt"),
            hosts=hosts,
            ipv6=family is Family.IPV6,
            bridge_address=str(BED_ADDRESS) if local else None,
        )
        if local:
            add_neighbors(bed, {"10.9.0.1": "a", "10.9.1.7": "a", "10.9.0.2": "b", "10.9.0.3": "b"})
        text = ruleset_text(bed)  # type: ignore[operator]
        sends = sends_for(bed)  # type: ignore[operator]
        if ipsets:
            load_ipsets(bed, ipsets)
        load_ruleset(bed, text, backend=backend, family=family)
        saved = save_ruleset(bed, backend=backend, family=family)
        observations = observe(
            res,
            bed,
            sends,
            backend=backend,
            workdir=tmp_path,
            listen_udp=LISTEN_PORT if local else None,
        )
    finally:
        problems = res.teardown()
    assert not problems, problems
    return bed, saved, observations


def _run_case(
    tmp_path: Path,
    backend: Backend,
    hosts: list[HostSpec],
    ruleset_text: object,
    sends_for: object,
    tally: Tally,
    label: str,
    *,
    ipsets: str = "",
    family: Family = Family.IPV4,
    local: bool = False,
) -> None:
    """One bed, one ruleset, one batch of packets; the bed is removed right after.

    ``local`` gives the bridge :data:`BED_ADDRESS` (hosts' addresses pinned in its neighbour
    table) and listens on :data:`LISTEN_PORT` there, for traffic to and from the bed itself.
    """
    try:
        bed, saved, observations = _observe_case(
            tmp_path, backend, hosts, ruleset_text, sends_for, ipsets, family, local
        )
    except CaptureFailed as err:
        # The monitor died (its socket buffer overflowed): a capture that failed, not a kernel
        # that disagrees. The same batch runs once more on a new bed; a second failure fails.
        print(f"{label}: {err}; running the batch again", file=sys.stderr)
        bed, saved, observations = _observe_case(
            tmp_path, backend, hosts, ruleset_text, sends_for, ipsets, family, local
        )
    ruleset = parse_iptables_save(saved, source=f"{label}.save", family=family)
    addresses = {"lo": (ip_address("::1" if family is Family.IPV6 else "127.0.0.1"),)}
    if local:
        addresses[bed.bridge] = (BED_ADDRESS.ip,)
    engine = NetfilterEngine(
        ruleset,
        ipsets=parse_ipset_save(ipsets, source="ipsets") if ipsets else None,
        facts=NodeFacts(local_addresses=addresses, socket_uid=0, socket_gid=0),
    )
    before = len(tally.failures or [])
    _compare(engine, bed, observations, backend, tally, label)
    if tally.failures and len(tally.failures) > before:
        (tmp_path / f"{label}.save").write_text(saved)


def _report(tally: Tally, tmp_path: Path, minimum: int) -> None:
    assert tally.failures is not None
    detail = "\n\n".join(tally.failures[:5])
    assert not tally.failures, (
        f"NODETRACE_SEED={SEED}: {len(tally.failures)} of {tally.cases} cases differ from the "
        f"kernel (rulesets saved in {tmp_path}):\n{detail}"
    )
    assert tally.cases >= minimum, f"only {tally.cases} cases ran"
    print(f"{tally.cases} cases agree with the kernel", file=sys.stderr)


@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
def test_random_rulesets_trace_like_the_kernel(
    lab: Resources, tmp_path: Path, backend: Backend
) -> None:
    tally = Tally()
    _random_rulesets(tmp_path, backend, tally, RANDOM_CASES)
    _report(tally, tmp_path, minimum=RANDOM_CASES)


def _random_rulesets(
    tmp_path: Path,
    backend: Backend,
    tally: Tally,
    minimum: int,
    *,
    family: Family = Family.IPV4,
    path: str = "forward",
    tag: str = "",
) -> None:
    """Draw random rulesets (and traffic for ``path``) until ``minimum`` packets were compared."""
    rng = random.Random(f"{SEED}-{tag}{backend.value}")
    v6 = family is Family.IPV6
    hosts = [HostSpec("a"), HostSpec("b")]
    n = 0
    while tally.cases < minimum:
        n += 1
        seed = rng.randrange(1 << 30)

        def text(bed: BridgeBed, seed: int = seed) -> str:
            names = BedNames(
                bed.bridge,
                tuple(h.port for h in bed.hosts),
                tuple(h.mac for h in bed.hosts),
                ipsets=("s1", "s2"),
                family=family,
                **({"addresses": V6_ADDRESSES} if v6 else {}),
            )
            # xtables-monitor 1.8.9 misprints ip6tables-nft's native hop-limit, icmpv6 and
            # tcp/udp port expressions (-m hl, -m icmp6, -m tcp/udp ports): an empty rule and
            # nothing more, or the rule without its ports. Those are checked with legacy only.
            nft6 = v6 and backend is Backend.NFT
            exclude = frozenset({"ttl", "icmp6", "ports"}) if nft6 else frozenset()
            return RandomRuleset(random.Random(seed), names, path=path, exclude=exclude).text()

        def sends(bed: BridgeBed, seed: int = seed) -> list[Send]:
            r = random.Random(seed + 1)
            if path == "forward":
                return random_sends(r, family=family)
            return random_local_sends(r, path=path, local=BED_ADDRESS.ip, listen_port=LISTEN_PORT)

        _run_case(
            tmp_path, backend, hosts, text, sends, tally, f"{tag}random{n}-{seed}",
            ipsets=IPSETS_V6 if v6 else IPSETS, family=family, local=path != "forward",
        )  # fmt: skip


@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
def test_random_ipv6_rulesets_trace_like_the_kernel(
    lab: Resources, tmp_path: Path, backend: Backend
) -> None:
    tally = Tally()
    _random_rulesets(tmp_path, backend, tally, IPV6_CASES, family=Family.IPV6, tag="v6")
    _report(tally, tmp_path, minimum=IPV6_CASES)


@pytest.mark.parametrize("path", ["input", "output"])
@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
def test_random_rulesets_on_the_host_paths_trace_like_the_kernel(
    lab: Resources, tmp_path: Path, backend: Backend, path: str
) -> None:
    tally = Tally()
    _random_rulesets(tmp_path, backend, tally, LOCAL_CASES, path=path, tag=path)
    _report(tally, tmp_path, minimum=LOCAL_CASES)


# --- Neutron hybrid-firewall rulesets ------------------------------------------------------------

VM1_IP, VM2_IP = IPv4Address("10.9.0.11"), IPv4Address("10.9.0.12")
REMOTE_IP, MEMBER_IP = IPv4Address("10.9.0.50"), IPv4Address("10.9.0.15")
NEUTRON_SCENARIO = """\
[[nodes]]
name = "cmp1"

[[nodes]]
name = "cmp2"

[[networks]]
name = "private"
type = "vxlan"
segmentation_id = 1037
cidr = "10.9.0.0/24"

[[security_groups]]
name = "ssh-icmp"
rules = [
  { direction = "ingress", protocol = "tcp", port = 22 },
  { direction = "ingress", protocol = "icmp" },
  { direction = "egress" },
]

[[security_groups]]
name = "members"
rules = [
  { direction = "ingress", remote_group = "members" },
  { direction = "egress", protocol = "tcp", port = 80 },
  { direction = "egress", protocol = "udp", port = 53 },
  { direction = "egress", protocol = "udp", port = 123 },
]

[[ports]]
name = "vm1"
id = "VM1_ID"
node = "cmp1"
network = "private"
ip = "10.9.0.11"
security_groups = ["ssh-icmp"]

[[ports]]
name = "vm2"
id = "VM2_ID"
node = "cmp1"
network = "private"
ip = "10.9.0.12"
security_groups = ["members"]

[[ports]]
name = "member"
id = "MEMBER_ID"
node = "cmp2"
network = "private"
ip = "10.9.0.15"
security_groups = ["members"]
"""
"""Two VM ports on the node: vm1 lets in SSH and ICMP; vm2 lets in its own group (vm2 and the
port ``member`` elsewhere: the remote-group ipset) and sends only HTTP, DNS and NTP."""


def _neutron_case() -> tuple[list[HostSpec], NodeFirewall]:
    """The bed's hosts and the firewall Neutron writes for ports vm1 and vm2 (``up1``/``up2``
    stand for their qvb side). The port UUIDs are new on every call, so the devices named
    after them are this run's own (kernel log lines are told apart by device)."""
    text = NEUTRON_SCENARIO
    for key in ("VM1_ID", "VM2_ID", "MEMBER_ID"):
        text = text.replace(key, str(uuid.uuid4()))
    scenario = parse_scenario(text, source="neutron-case.toml")
    vm1, vm2 = scenario.port("vm1"), scenario.port("vm2")
    hosts = [
        HostSpec("vm1", mac=vm1.mac, port=tap_name(vm1.id)),
        HostSpec("vm2", mac=vm2.mac, port=tap_name(vm2.id)),
        HostSpec("up1", port=qvb_name(vm1.id)),
        HostSpec("up2", port=qvb_name(vm2.id)),
    ]
    ports = [PortFilter(vm1, zone=4097), PortFilter(vm2, zone=4098)]
    return hosts, node_firewall(scenario, ports, ipv4_trace="")


def _neutron_sends(rng: random.Random) -> object:
    def make(bed: BridgeBed) -> list[Send]:
        templates = []
        ident = rng.randint(1, 60000)
        # up1 -> vm1 ingress: ssh, icmp allowed; other tcp dropped by the fallback chain.
        for dport, flags in ((22, TcpFlag.SYN), (80, TcpFlag.SYN), (22, TcpFlag.ACK)):
            templates.append(
                [
                    (
                        "up1",
                        "vm1",
                        Packet(
                            nw_src=REMOTE_IP,
                            nw_dst=VM1_IP,
                            nw_proto=6,
                            tp_src=rng.randint(1024, 65535),
                            tp_dst=dport,
                            tcp_flags=int(flags),
                            tcp_seq=rng.randint(0, 2**31),
                            tcp_window=29200,
                            ip_df=True,
                        ),
                    )
                ]
            )
        ping = Packet(nw_src=REMOTE_IP, nw_dst=VM1_IP, nw_proto=1, icmp_type=8, icmp_id=ident,
                      icmp_seq=1, ip_len=84)  # fmt: skip
        pong = Packet(nw_src=VM1_IP, nw_dst=REMOTE_IP, nw_proto=1, icmp_type=0, icmp_id=ident,
                      icmp_seq=1, ip_len=84)  # fmt: skip
        templates.append([("up1", "vm1", ping), ("vm1", "up1", pong)])
        # vm1 egress: its own address and MAC pass the anti-spoof chain, a spoofed one does not.
        templates.append([("vm1", "up1", Packet(nw_src=VM1_IP, nw_dst=REMOTE_IP, nw_proto=17,
                                                tp_src=40000, tp_dst=53))])  # fmt: skip
        templates.append([("vm1", "up1", Packet(nw_src=IPv4Address("10.9.0.99"), nw_dst=REMOTE_IP,
                                                nw_proto=17, tp_src=40000, tp_dst=53))])  # fmt: skip
        # DHCP discover from vm1 (allowed before the anti-spoof chain), DHCP offer spoofed by vm1.
        templates.append([("vm1", "up1", Packet(nw_src=IPv4Address("0.0.0.0"),
                                                nw_dst=IPv4Address("255.255.255.255"),
                                                nw_proto=17, tp_src=68, tp_dst=67))])  # fmt: skip
        templates.append([("vm1", "up1", Packet(nw_src=VM1_IP, nw_dst=REMOTE_IP, nw_proto=17,
                                                tp_src=67, tp_dst=68))])  # fmt: skip
        # vm2 ingress: only members of the remote-group ipset; vm1 -> vm2 crosses both chains.
        templates.append([("up2", "vm2", Packet(nw_src=MEMBER_IP, nw_dst=VM2_IP, nw_proto=6,
                                                tp_src=5000, tp_dst=5432,
                                                tcp_flags=int(TcpFlag.SYN)))])  # fmt: skip
        templates.append([("up2", "vm2", Packet(nw_src=REMOTE_IP, nw_dst=VM2_IP, nw_proto=6,
                                                tp_src=5000, tp_dst=5432,
                                                tcp_flags=int(TcpFlag.SYN)))])  # fmt: skip
        templates.append([("vm1", "vm2", Packet(nw_src=VM1_IP, nw_dst=VM2_IP, nw_proto=1,
                                                icmp_type=8, icmp_id=ident + 1, icmp_seq=1))])  # fmt: skip
        # vm2 egress: http allowed, its reply is ESTABLISHED; a lone ACK is INVALID (dropped).
        syn = Packet(nw_src=VM2_IP, nw_dst=REMOTE_IP, nw_proto=6, tp_src=41000, tp_dst=80,
                     tcp_flags=int(TcpFlag.SYN), tcp_seq=1000, tcp_window=64240)  # fmt: skip
        synack = Packet(nw_src=REMOTE_IP, nw_dst=VM2_IP, nw_proto=6, tp_src=80, tp_dst=41000,
                        tcp_flags=int(TcpFlag.SYN | TcpFlag.ACK), tcp_seq=5000, tcp_ack=1001,
                        tcp_window=65160)  # fmt: skip
        templates.append([("vm2", "up2", syn), ("up2", "vm2", synack)])
        templates.append([("up2", "vm2", Packet(nw_src=REMOTE_IP, nw_dst=VM2_IP, nw_proto=6,
                                                tp_src=80, tp_dst=41999, tcp_flags=int(TcpFlag.FIN),
                                                tcp_seq=7))])  # fmt: skip
        rng.shuffle(templates)
        out: list[Send] = []
        next_id = 2000
        for group in templates:
            for src, dst, packet in group:
                out.append(
                    Send(src, dst, replace(packet, ip_id=next_id, nw_ttl=rng.choice([64, 63])))
                )
                next_id += 1
        return out

    return make


@pytest.mark.parametrize("backend", [Backend.LEGACY, Backend.NFT], ids=["legacy", "nft"])
def test_neutron_hybrid_rulesets_trace_like_the_kernel(
    lab: Resources, tmp_path: Path, backend: Backend
) -> None:
    rng = random.Random(f"{SEED}-neutron-{backend.value}")
    tally = Tally()
    for n in range(3):
        hosts, firewall = _neutron_case()

        def text(bed: BridgeBed, saved: str = firewall.iptables_save) -> str:
            return saved

        _run_case(
            tmp_path, backend, hosts, text, _neutron_sends(rng), tally,
            f"neutron{n}", ipsets=firewall.ipset_restore,
        )  # fmt: skip
    _report(tally, tmp_path, minimum=36)
