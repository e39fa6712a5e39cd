"""``ipset save`` / ``ipset list`` readers against real output captured in a lab namespace."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from nodetrace.errors import DiagnosticSink, ParseError
from nodetrace.model.ipset import (
    Dimension,
    IcmpPart,
    IfacePart,
    MacPart,
    Method,
    NetPart,
    PortPart,
    SetPart,
)
from nodetrace.model.packet import Family
from nodetrace.parsers.ipset_list import looks_like_ipset_list, parse_ipset_list
from nodetrace.parsers.ipset_save import parse_ipset_save
from tests.conftest import DATA

SAVE = (DATA / "ipset" / "lab-ipset-save.txt").read_text()
LIST = (DATA / "ipset" / "lab-ipset-list.txt").read_text()


def test_every_set_of_the_real_save_is_read_with_its_type_and_family() -> None:
    sets = parse_ipset_save(SAVE, source="lab-ipset-save.txt")
    types = {s.name: (s.type_name, s.family) for s in sets}
    assert types == {
        "a": ("hash:ip", Family.IPV4),
        "b": ("hash:net", Family.IPV6),
        "c": ("hash:ip,port", Family.IPV4),
        "d": ("hash:net,port", Family.IPV4),
        "g": ("hash:net,iface", Family.IPV4),
        "h": ("hash:ip", Family.IPV4),
        "i": ("bitmap:port", None),
        "k": ("hash:ip", Family.IPV4),
        "m": ("bitmap:ip,mac", Family.IPV4),
        "f": ("list:set", None),
    }
    # The member count per set is what `ipset list` says in its "Number of entries" lines.
    listed = {}
    for block in LIST.split("\n\n"):
        lines = block.strip().splitlines()
        name = lines[0].removeprefix("Name: ")
        count = next(int(x.split(": ")[1]) for x in lines if x.startswith("Number of entries"))
        listed[name] = count
    assert {s.name: len(s.members) for s in sets} == listed


def test_member_options_timeouts_counters_comment_and_nomatch() -> None:
    sets = parse_ipset_save(SAVE, source="s")
    a = sets.get("a")
    assert a is not None and a.options.timeout == 600 and a.options.counters and a.options.comment
    first = a.members[0]
    assert first.parts == (NetPart(ip_network("10.0.0.1/32")),)
    assert (first.packets, first.bytes, first.comment) == (5, 420, "vm one")
    assert first.timeout is not None and 0 < first.timeout <= 600
    b = sets.get("b")
    assert b is not None
    nomatch = [m for m in b.members if m.nomatch]
    assert [m.parts for m in nomatch] == [(NetPart(ip_network("2001:db8:2::/48")),)]
    k = sets.get("k")
    assert k is not None and k.options.skbinfo
    assert (k.members[0].skbmark, k.members[0].skbprio, k.members[0].skbqueue) == (
        (1, 0xFF),
        "1:10",
        3,
    )


def test_typed_parts_per_dimension() -> None:
    sets = parse_ipset_save(SAVE, source="s")
    c = sets.get("c")
    assert c is not None and c.dimensions == (Dimension.IP, Dimension.PORT)
    parts = {m.parts for m in c.members}
    assert (NetPart(ip_network("10.0.0.1/32")), PortPart("udp", 53)) in parts
    assert (NetPart(ip_network("10.0.0.2/32")), IcmpPart("icmp", "echo-request", 8, 0)) in parts
    g = sets.get("g")
    assert g is not None
    assert {m.parts[1] for m in g.members} == {IfacePart("eth0"), IfacePart("tap1", physdev=True)}
    m = sets.get("m")
    assert m is not None and m.members[0].parts[1] == MacPart("fa:16:3e:00:00:01")
    f = sets.get("f")
    assert f is not None and f.method is Method.LIST
    assert [mem.parts for mem in f.members] == [(SetPart("a"),), (SetPart("d"),)]
    i = sets.get("i")
    assert i is not None and i.options.range == "1-1024"
    assert [mem.parts for mem in i.members] == [(PortPart("", 22),), (PortPart("", 80),)]


def test_netmask_set_members_are_networks_of_that_prefix() -> None:
    h = parse_ipset_save(SAVE, source="s").get("h")
    assert h is not None and h.options.netmask == 24
    (member,) = h.members
    assert isinstance(member.parts[0], NetPart)
    assert member.parts[0].contains(ip_address("10.9.9.200"))
    assert not member.parts[0].contains(ip_address("10.9.10.1"))


def test_ranges_expand_like_ipset_add_does() -> None:
    text = (
        "create r hash:ip,port family inet\n"
        "add r 10.0.0.1-10.0.0.2,tcp:80-81\n"
        "create n hash:net family inet\n"
        "add n 10.0.0.0-10.0.0.255\n"
    )
    sets = parse_ipset_save(text, source="r")
    r = sets.get("r")
    assert r is not None and len(r.members) == 4
    n = sets.get("n")
    assert n is not None and [m.parts for m in n.members] == [(NetPart(ip_network("10.0.0.0/24")),)]


def test_old_v4_spelling_is_read() -> None:
    sets = parse_ipset_save("-N old iphash\n", source="o", sink=DiagnosticSink())
    assert len(sets) == 0  # "iphash" is not a type of this syntax: reported, not guessed
    sets = parse_ipset_save("-N new hash:ip\n-A new 10.1.1.1\n", source="o")
    s = sets.get("new")
    assert s is not None and s.family is Family.IPV4 and len(s.members) == 1


@pytest.mark.parametrize(
    ("text", "line", "token"),
    [
        ("create s hash:foo family inet\n", 1, "foo"),
        ("create s hash:ip family inet\nadd s 10.0.0.300\n", 2, "10.0.0.300"),
        ("create s hash:ip family inet\nadd s 2001:db8::1\n", 2, "2001:db8::1"),
        ("create s hash:ip,port family inet\nadd s 10.0.0.1\n", 2, "10.0.0.1"),
        ("create s hash:ip,port family inet\nadd s 10.0.0.1,tcp:http\n", 2, "tcp:http"),
        ("create s hash:ip,port family inet\nadd s 10.0.0.1,icmp:bogus\n", 2, "bogus"),
        ("add nope 10.0.0.1\n", 1, "nope"),
        ("create s hash:ip family inet\nadd s 10.0.0.1 timeout soon\n", 2, "soon"),
        ("create s hash:ip family ipx\n", 1, "ipx"),
        ("-A FORWARD -j ACCEPT\n", 1, "FORWARD"),
        ("*filter\n", 1, "*filter"),
    ],
    ids=[
        "unknown-dimension",
        "bad-address",
        "wrong-family",
        "missing-part",
        "named-port",
        "unknown-icmp-name",
        "set-not-created",
        "bad-timeout",
        "bad-family",
        "iptables-line",
        "iptables-table",
    ],
)
def test_errors_name_file_line_and_token(text: str, line: int, token: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_ipset_save(text, source="sets.txt")
    assert info.value.pos.file == "sets.txt" and info.value.pos.line == line
    assert info.value.token == token
    assert f"sets.txt:{line}:" in str(info.value)


def test_lenient_parse_keeps_the_good_lines() -> None:
    text = "create s hash:ip family inet\nadd s 10.0.0.1\nadd s junk\nadd s 10.0.0.2\n"
    sink = DiagnosticSink()
    s = parse_ipset_save(text, source="f", sink=sink).get("s")
    assert s is not None and len(s.members) == 2
    assert [(d.pos.line, d.severity.value) for d in sink.items] == [(3, "error")]


def test_ipset_list_reads_to_the_same_sets_as_save() -> None:
    assert looks_like_ipset_list(LIST) and not looks_like_ipset_list(SAVE)
    listed = parse_ipset_list(LIST, source="l")
    saved = parse_ipset_save(SAVE, source="s")
    assert [s.name for s in listed] == [s.name for s in saved]
    for s in saved:
        other = listed.get(s.name)
        assert other is not None
        assert (other.type_name, other.family) == (s.type_name, s.family)
        # timeouts tick between the two commands; the members themselves must agree
        assert sorted(str(m.parts) for m in other.members) == sorted(
            str(m.parts) for m in s.members
        )


def test_sample_ipset_list_of_a_neutron_remote_group() -> None:
    sets = parse_ipset_list((DATA / "ipset" / "sample-ipset-list.txt").read_text(), source="x")
    s = sets.get("NIPv4sg1")
    assert s is not None and s.type_name == "hash:net"
    assert {str(m.parts[0]) for m in s.members} == {
        str(NetPart(ip_network("10.0.0.1/32"))),
        str(NetPart(ip_network("10.0.0.2/32"))),
    }
