"""A port's exposure, checked on the bundled two-node example (generated as Neutron writes it,
and proved against the real kernel by the lab) and on small rulesets that exercise what makes
an answer exact, conditional (ipset atoms) or unknown."""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from nodetrace.audit.exposure import NodeExposure, exposure, start_set
from nodetrace.audit.exposure_check import cross_check
from nodetrace.audit.exposure_eval import PathEvaluator
from nodetrace.audit.exposure_intended import compare, load_intended
from nodetrace.audit.exposure_match import MatchCompiler
from nodetrace.cli import main
from nodetrace.engine.netfilter import bridge_path
from nodetrace.errors import InputError
from nodetrace.model.exposure import CT_STATES, Direction, Fate, HeaderClass, universe
from nodetrace.model.header_space import box_contains
from nodetrace.model.packet import Family
from nodetrace.neutron.ports import find_port
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.snapshot.load import load
from tests.conftest import DATA

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
CMP1 = EXAMPLES / "two-nodes-cmp1.snapshot.tar.gz"
DB1 = "7eb6fb94"
WEB1 = int(IPv4Address("10.20.0.10"))
OTHER = int(IPv4Address("10.20.0.99"))
DB1_IP = int(IPv4Address("10.20.0.12"))


def _point(
    src: int, dst: int, proto: int, sport: int, dport: int, ct: str, atoms: int = 0
) -> tuple[int, ...]:
    return (src, dst, proto, sport, dport, 0, CT_STATES.index(ct), 0xFA163E000001, *([0] * atoms))


def _fate(classes: tuple[HeaderClass, ...], point: tuple[int, ...]) -> Fate:
    holding = [c for c in classes if c.family is Family.IPV4 and box_contains(c.box, point)]
    assert len(holding) == 1, holding
    return holding[0].fate


@pytest.fixture(scope="module")
def cmp1():  # type: ignore[no-untyped-def]
    return load(str(CMP1))


def test_db_port_lets_in_postgres_only_from_the_web_group(cmp1) -> None:  # type: ignore[no-untyped-def]
    inbound = exposure(cmp1, DB1).direction(Direction.INBOUND)
    assert inbound is not None
    classes = inbound.classes
    assert _fate(classes, _point(WEB1, DB1_IP, 6, 40000, 5432, "NEW")) is Fate.ALLOWED
    assert _fate(classes, _point(OTHER, DB1_IP, 6, 40000, 5432, "NEW")) is Fate.DENIED
    assert _fate(classes, _point(WEB1, DB1_IP, 6, 40000, 22, "NEW")) is Fate.DENIED
    assert _fate(classes, _point(OTHER, DB1_IP, 6, 40000, 22, "ESTABLISHED")) is Fate.ALLOWED
    allowed = [c for c in classes if c.fate is Fate.ALLOWED and c.family is Family.IPV4]
    postgres = [c for c in allowed if c.box[4] == ((5432, 5432),)]
    assert postgres and "--match-set" in postgres[0].rules[0].text


def test_the_host_is_open_to_the_vm_because_physdev_is_bridged_never_matches_at_input(cmp1) -> None:  # type: ignore[no-untyped-def]
    to_host = exposure(cmp1, DB1).direction(Direction.TO_HOST)
    assert to_host is not None
    assert _fate(to_host.classes, _point(DB1_IP, WEB1, 6, 40000, 22, "NEW")) is Fate.ALLOWED


def test_port_without_port_security_is_open(cmp1) -> None:  # type: ignore[no-untyped-def]
    node = NodeExposure(cmp1)
    open_ports = [
        p for p in node.ports()
        if all(
            c.fate in (Fate.ALLOWED, Fate.IMPOSSIBLE)
            for d in node.exposure(p).directions
            for c in d.classes
        )
    ]  # fmt: skip
    assert len(open_ports) == 1


def test_every_class_agrees_with_the_engine_on_the_example(cmp1) -> None:  # type: ignore[no-untyped-def]
    result = cross_check(NodeExposure(cmp1), 600, seed=4)
    assert result.packets == 600
    assert result.disagreements == []
    assert result.agreed > 350  # the rest: packets no rule sees (UNTRACKED, later fragments)
    assert result.agreed + result.impossible == 600


def _evaluate(text: str, ipsets=None):  # type: ignore[no-untyped-def]
    ruleset = parse_iptables_save(text, source="t.save")
    compiler = MatchCompiler(Family.IPV4, ipsets, universe(Family.IPV4))
    atoms = compiler.prepare_atoms(list(ruleset.rules()))
    compiler.u = universe(Family.IPV4, atoms)
    ev = PathEvaluator(ruleset, compiler)
    path = bridge_path("qbr1", physin="qvb1", physout="tap1")
    return ev.run(path, start_set(Family.IPV4, atoms)), compiler


def test_a_match_the_classes_cannot_express_makes_its_packets_unknown() -> None:
    outcomes, _ = _evaluate(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A FORWARD -p tcp -m length --length 100:200 -j DROP\n"
        "-A FORWARD -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
    )
    unknown = [o for o in outcomes if o.fate is Fate.UNKNOWN]
    assert unknown and all("length" in o.reason for o in unknown)
    assert all(b[2] == ((6, 6),) for o in unknown for b in o.boxes)
    allowed = [o for o in outcomes if o.fate is Fate.ALLOWED]
    assert allowed == []  # tcp 22 sits behind the unknown rule: never silently allowed


def test_an_ipset_without_members_becomes_an_atom_the_answer_names() -> None:
    outcomes, compiler = _evaluate(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A FORWARD -m set --match-set friends src -j ACCEPT\nCOMMIT\n"
    )
    assert [a.label() for a in compiler.atoms] == [
        "src in ipset friends (the snapshot has no ipset data)"
    ]
    allowed = [b for o in outcomes if o.fate is Fate.ALLOWED for b in o.boxes]
    assert allowed and all(b[-1] == ((1, 1),) for b in allowed)
    denied = [b for o in outcomes if o.fate is Fate.DENIED for b in o.boxes]
    assert denied and all(b[-1] == ((0, 0),) for b in denied)


def test_cli_prints_the_exposure_and_its_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", str(CMP1), "--exposure", "--port", DB1]) == 0
    text = capsys.readouterr().out
    assert "tcp dport 5432 from 10.20.0.10/31 (new/invalid)" in text
    assert main(["audit", str(CMP1), "--exposure", "--port", DB1, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "exposure" and doc["ports"][0]["port_id"].startswith(DB1)
    fates = {c["fate"] for d in doc["ports"][0]["directions"] for c in d["classes"]}
    # impossible: UNTRACKED packets and later fragments, which no rule of a tracked node sees
    assert fates == {"allowed", "denied", "impossible"}


def test_intended_rules_missing_from_the_node_are_reported(cmp1) -> None:  # type: ignore[no-untyped-def]
    rules, problems = load_intended(str(DATA / "exposure" / "db-security-group-rules.json"))
    assert problems == [] and len(rules) == 5
    port = find_port(cmp1, DB1)
    cmp = compare(cmp1, port, NodeExposure(cmp1).exposure(port), rules)
    missing = [g for g in cmp.gaps if g.kind == "intended-not-allowed"]
    assert any(g.box[4] == ((22, 22),) and g.direction is Direction.INBOUND for g in missing)
    # The node allows what the group intends on 5432; beyond it only packets without a
    # connection, which Neutron's rules let through ahead of their INVALID drop.
    postgres = [g for g in cmp.gaps if g.box[4] == ((5432, 5432),)]
    assert postgres and all(g.kind == "allowed-not-intended" for g in postgres)
    assert all(g.box[6] == ((CT_STATES.index("INVALID"),) * 2,) for g in postgres)


def test_malformed_intended_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "rules.json"
    bad.write_text('{"ID": 1}')
    with pytest.raises(InputError):
        load_intended(str(bad))
    bad.write_text('[{"Direction": "sideways", "Ethertype": "IPv4"}]')
    rules, problems = load_intended(str(bad))
    assert rules == [] and "entry 1" in problems[0] and "sideways" in problems[0]


def test_bridged_frames_skip_iptables_when_bridge_nf_call_is_off(cmp1) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from nodetrace.model.snapshot import Sysctls

    sysctls = Sysctls((("net.bridge.bridge-nf-call-iptables", "0"),
                       ("net.bridge.bridge-nf-call-ip6tables", "1")))  # fmt: skip
    main_ns = replace(cmp1.main, sysctls=sysctls)
    snap = replace(cmp1, namespaces=(main_ns, *cmp1.namespaces[1:]))
    inbound = exposure(snap, DB1).direction(Direction.INBOUND)
    assert inbound is not None
    v4 = [c for c in inbound.classes if c.family is Family.IPV4]
    assert v4 and all(
        c.fate is Fate.ALLOWED and "bridge-nf-call-iptables = 0" in c.reason for c in v4
    )
    assert _fate(inbound.classes, _point(OTHER, DB1_IP, 6, 40000, 22, "NEW")) is Fate.ALLOWED
    v6 = [c for c in inbound.classes if c.family is Family.IPV6]
    assert any(c.fate is Fate.DENIED for c in v6)  # ip6tables still sees them


REAL = Path(__file__).resolve().parents[1] / "realworld" / "xenial-2016-hybrid-aio"


def test_a_real_nodes_libvirt_masquerade_drops_bridged_traffic_from_its_network() -> None:
    """The node's nat POSTROUTING has libvirt's MASQUERADE for 192.168.122.0/24; a bridged
    packet leaves by the VM's qbr, which has no address, so the kernel drops it."""
    snap = load(str(REAL))
    exp = exposure(snap, "0695f2ca-bf")
    inbound = exp.direction(Direction.INBOUND)
    assert inbound is not None
    libvirt = int(IPv4Address("192.168.122.5"))
    vm = int(IPv4Address("172.24.220.12"))
    point = _point(libvirt, vm, 6, 40000, 22, "NEW", atoms=1)
    holding = [c for c in inbound.classes if c.family is Family.IPV4 and box_contains(c.box, point)]
    assert [c.fate for c in holding] == [Fate.DENIED]
    assert "MASQUERADE" in holding[0].reason and holding[0].rules[-1].chain == "POSTROUTING"
    assert _fate(inbound.classes, _point(OTHER, vm, 6, 40000, 22, "NEW", atoms=1)) is Fate.ALLOWED
    # the remote-group ipset is not in this snapshot: its rule is conditional on an atom
    assert exp.atoms == (
        "ipv4: src in ipset NIPv4e7b85005-a11b-405e-a60f- (the snapshot has no ipset data)",
    )
    result = cross_check(NodeExposure(snap), 400, seed=2)
    assert result.disagreements == [] and result.agreed > 100


def test_addrtype_is_read_from_the_nodes_addresses() -> None:
    text = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A FORWARD -m addrtype --dst-type LOCAL -j DROP\nCOMMIT\n"
    )
    ruleset = parse_iptables_save(text, source="t.save")
    local = {"eth0": (IPv4Address("192.0.2.1"),)}
    compiler = MatchCompiler(Family.IPV4, None, universe(Family.IPV4), local)
    outcomes = PathEvaluator(ruleset, compiler, local).run(
        bridge_path("qbr1", physin="qvb1", physout="tap1"), start_set(Family.IPV4, 0)
    )
    denied = [b for o in outcomes if o.fate is Fate.DENIED for b in o.boxes]
    assert denied and all(b[1] == ((int(IPv4Address("192.0.2.1")),) * 2,) for b in denied)


def test_cli_compares_with_the_intended_groups(capsys: pytest.CaptureFixture[str]) -> None:
    intended = str(DATA / "exposure" / "db-security-group-rules.json")
    assert main(["audit", str(CMP1), "--exposure", "--port", DB1, "--intended", intended]) == 0
    text = capsys.readouterr().out
    missing = text.split("intended not allowed:")[1]
    assert "inbound: tcp dport 22 from 10.20.0.0/24 (new)" in missing
    assert "5432" not in missing
    assert "entry 2: the ICMP type or code openstackclient printed is ambiguous" in text
