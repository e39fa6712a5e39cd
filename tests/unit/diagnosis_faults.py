"""Faults put into a copy of the bundled two-node example's cmp2 snapshot, as an operator's
mistake or a broken node would leave them: the files are edited the way the node's own
commands would then print them (``ip -j link``, ``sysctl -a``, ``iptables-save``, dumps)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from nodetrace.api import load_snapshot, trace_request
from nodetrace.engine.walk import WalkRequest
from nodetrace.model.snapshot import Snapshot

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
CMP2 = EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz"
CMP2_LOG = EXAMPLES / "two-nodes-cmp2.trace.log"

WEB2 = "85f28c5a"
DB2 = "79645311"
DB2_MAC = "fa:16:3e:ba:03:dd"
DB1_MAC = "fa:16:3e:67:bb:58"
"""db1 lives on cmp1: from cmp2 it is reached over the VXLAN tunnel."""


def node(tmp_path: Path) -> Path:
    """A fresh copy of cmp2's snapshot as a folder, ready to be broken."""
    with tarfile.open(CMP2) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / "cmp2"


def host(folder: Path, name: str) -> Path:
    return folder / "host" / name


def edit_link(folder: Path, name: str, *, up: bool | None = None, carrier: bool | None = None,
              mtu: int | None = None) -> None:  # fmt: skip
    """Change a device as ``ip -j link`` and ``ip -j address`` would then print it."""
    for listing in ("ip-link.json", "ip-addr.json"):
        path = host(folder, listing)
        links = json.loads(path.read_text())
        (link,) = [x for x in links if x["ifname"] == name]
        flags = [f for f in link["flags"] if f not in ("UP", "LOWER_UP", "NO-CARRIER")]
        is_up = "UP" in link["flags"] if up is None else up
        has_carrier = "LOWER_UP" in link["flags"] if carrier is None else carrier
        if is_up:
            flags += ["UP", "LOWER_UP" if has_carrier else "NO-CARRIER"]
        link["flags"] = flags
        link["operstate"] = "UP" if is_up and has_carrier else "DOWN"
        if mtu is not None:
            link["mtu"] = mtu
        path.write_text(json.dumps(links))


def add_neighbour(folder: Path, ip: str, dev: str, mac: str) -> None:
    """A reachable neighbour, as ``ip -j neigh`` prints it."""
    path = host(folder, "ip-neigh.json")
    entries = json.loads(path.read_text())
    entries.append({"dst": ip, "dev": dev, "lladdr": mac, "state": ["REACHABLE"]})
    path.write_text(json.dumps(entries))


def set_sysctl(folder: Path, key: str, value: int) -> None:
    path = host(folder, "sysctl.txt")
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.split(" = ")[0] != key]
    path.write_text("\n".join([*kept, f"{key} = {value}"]) + "\n")


def insert_rule(folder: Path, chain: str, rule: str) -> None:
    """Insert ``-A chain rule`` at the top of ``chain`` in every iptables-save of the node."""
    for path in (folder / "host").glob("iptables*save.txt"):
        lines = path.read_text().splitlines()
        first = next((i for i, x in enumerate(lines) if x.startswith(f"-A {chain} ")), None)
        if first is None:
            continue
        lines.insert(first, f"-A {chain} {rule}")
        path.write_text("\n".join(lines) + "\n")


def remove_lines(path: Path, *needles: str) -> int:
    """Drop every line containing all of ``needles``; how many went."""
    lines = path.read_text().splitlines()
    kept = [x for x in lines if not all(n in x for n in needles)]
    path.write_text("\n".join(kept) + "\n")
    return len(lines) - len(kept)


def replace_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new))


def web2_to_db2(snap: Snapshot, packet: str = "tcp,tp_dst=5432,tcp_flags=+syn",
                ct_state: str | None = None) -> WalkRequest:  # fmt: skip
    """Both VMs on cmp2: web2's bridge, br-int, db2's bridge."""
    request, _ = trace_request(snap, packet, from_port=WEB2, to_port=DB2, ct_state=ct_state)
    return request


def web2_to_db1(snap: Snapshot, packet: str) -> WalkRequest:
    """web2 to db1 on the other node: br-int, br-tun, VXLAN out of und0."""
    request, _ = trace_request(snap, f"{packet},dl_dst={DB1_MAC},nw_dst=10.20.0.12", from_port=WEB2)
    return request


def underlay_to_host(snap: Snapshot, packet: str) -> WalkRequest:
    """A packet from the underlay's wire into the host through br-phys."""
    request, _ = trace_request(snap, packet, from_device="und0")
    return request


def load(folder: Path) -> Snapshot:
    return load_snapshot(folder)
