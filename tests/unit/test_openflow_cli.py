"""``nodetrace openflow`` end to end, on outputs recorded from a real OVS."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nodetrace.cli import main
from nodetrace.parsers.ovs_appctl_ofproto_trace import observed_tree, parse_ovs_appctl_ofproto_trace
from tests.conftest import DATA
from tests.lab.openflow_harness import flow_lookups, strip_underlay

LAB = DATA / "openflow" / "lab-neutron"
VM = "qvo3b1f6a2c-8d"
TO_REMOTE = "icmp,dl_src=fa:16:3e:4c:2a:11,dl_dst=fa:16:3e:5d:6e:7f,nw_src=10.1.0.11,nw_dst=10.1.0.50,icmp_type=8"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["openflow", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_snapshot_folder_tree(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, LAB, "--bridge", "br-int", "--in-port", VM, "--packet", TO_REMOTE)
    assert code == 0
    assert 'bridge("br-tun")' in out
    assert "table 20: vlan_tci=0x0001/0x0fff,dl_dst=fa:16:3e:5d:6e:7f  priority 1" in out
    assert "ovs-ofctl-dump-flows.br-tun.txt:16]" in out
    verdict = next(line for line in out.splitlines() if line.startswith("Verdict:"))
    assert verdict.startswith("Verdict: leaves through 1 port: br-tun port vxlan-0a000032")
    # A userspace-datapath node without OVS's own routes: the underlay is not followed, and said.
    assert "(ovs-appctl ovs/route/show) were not given" in out.split(verdict, 1)[1]


def test_single_files_named_or_given_bridges(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Loose files (one named only by BRIDGE=, one found by content) give the same tree as the
    real ofproto/trace recorded for this packet."""
    head, _, recorded = next(
        c
        for c in (LAB / "traces.txt").read_text().split("##### ")[1:]
        if c.startswith(
            f"br-int udp,in_port={VM},dl_src=fa:16:3e:4c:2a:11,dl_dst=fa:16:3e:5d:6e:7f"
        )
    ).partition("\n")
    packet = head.split()[1].replace(f"in_port={VM},", "")
    flows = tmp_path / "flows.txt"
    shutil.copy(LAB / "ovs-ofctl-dump-flows.br-int.txt", flows)
    code, out, err = run(
        capsys,
        flows,
        f"br-tun={LAB / 'ovs-ofctl-dump-flows.br-tun.txt'}",
        LAB / "ovs-vsctl-list-bridge.json",
        LAB / "ovs-vsctl-list-port.json",
        LAB / "ovs-vsctl-list-interface.json",
        LAB / "ovs-appctl-fdb-show.br-int.txt",
        "--bridge",
        "br-int",
        "--in-port",
        "2",
        "--packet",
        packet,
        "--format",
        "ofproto",
    )
    assert code == 0, err
    ovs = parse_ovs_appctl_ofproto_trace(recorded)
    mine = parse_ovs_appctl_ofproto_trace(out.split("\nLeaves:")[0])
    lookups = flow_lookups(observed_tree(mine.passes[0]))
    assert lookups == flow_lookups(strip_underlay(observed_tree(ovs.passes[0])))
    assert len(lookups) >= 9


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        LAB,
        "--bridge",
        "br-int",
        "--in-port",
        VM,
        "--packet",
        TO_REMOTE,
        "--packet",
        TO_REMOTE.replace("nw_src=10.1.0.11", "nw_src=10.1.0.77"),
        "--format",
        "json",
    )
    assert code == 0
    docs = [json.loads(line) for line in out.splitlines()]  # one document per packet
    assert all(d["schema"] >= 1 for d in docs) and len(docs) == 2
    first = docs[0]
    assert first["outcome"] == "delivered" and first["egress"][0]["encap"]["key"] == 0x40D
    assert [s["type"] for s in first["steps"]][:2] == ["openflow", "openflow"]
    assert first["steps"][0]["source"] is not None


def test_tunnel_ingress_from_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        LAB,
        "--bridge",
        "br-tun",
        "--in-port",
        "vxlan-0a000032",
        "--packet",
        "icmp,tun_id=0x40d,tun_src=10.0.0.50,tun_dst=10.0.0.11,dl_src=fa:16:3e:5d:6e:7f,"
        "dl_dst=fa:16:3e:4c:2a:11,nw_src=10.1.0.50,nw_dst=10.1.0.11",
    )
    assert code == 0
    assert "would learn: table=20 vlan_tci=0x0001/0x0fff,dl_dst=fa:16:3e:5d:6e:7f priority=1" in out
    assert f"br-int port {VM} (2) untagged" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bridge", "br-ex"], "bridge 'br-ex' is not in the inputs"),
        (["--in-port", "qvo-nope"], "port 'qvo-nope' is not a port of br-int"),
        (["--ct-state", "trk,bogus"], "unknown ct_state flag 'bogus'"),
        (["--packet", "icmp,nw_src=nonsense"], "nw_src=nonsense: not an IP address"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    base = {"--bridge": "br-int", "--in-port": VM, "--packet": TO_REMOTE}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1]
    flat = [x for kv in base.items() for x in kv]
    code, out, err = run(capsys, LAB, *flat)
    assert code == 2 and out == ""
    assert err.startswith("nodetrace: error: ") and message in err and "Traceback" not in err


def test_missing_input_and_damaged_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, tmp_path / "nope.txt", "--bridge", "br-int", "--in-port", "1", "--packet", "ip"
    )
    assert code == 2 and "no such file or folder" in err
    flows = tmp_path / "ovs-ofctl_dump-flows_br-int"
    flows.write_text(" priority=5,ip actions=output:2\n truncated line without actions\n")
    code, out, err = run(
        capsys,
        flows,
        "--bridge",
        "br-int",
        "--in-port",
        "1",
        "--packet",
        "ip,nw_src=10.0.0.1,nw_dst=10.0.0.2",
    )
    assert code == 0
    assert f"{flows}:2: error: flow has no actions=" in err
    assert "port 2 is not in the snapshot's port list" in out


def test_a_device_as_a_flow_file_is_refused_not_read_forever(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys, "br-int=/dev/zero", "--bridge", "br-int", "--in-port", "1", "--packet", "ip"
    )
    assert (code, out, err) == (2, "", "nodetrace: error: /dev/zero: is a device, not a file\n")


def test_a_damaged_snapshot_names_its_first_problems_and_counts_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    junk = bytes(range(256)) * 40
    (tmp_path / "iptables-save").write_bytes(junk)
    (tmp_path / "ovs-ofctl_dump-flows_br-int").write_text(" priority=1,ip actions=drop\n")
    code, _, err = run(capsys, tmp_path, "--bridge", "br-int", "--in-port", "1", "--packet", "ip")
    lines = err.splitlines()
    assert len(lines) <= 21, lines[:25]
    assert lines[0].startswith("nodetrace: ")
    assert "more problems like these" in lines[-1]
    assert code == 0  # the flows were readable: the trace is still given
