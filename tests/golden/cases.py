"""The golden traces: one row per case, and how a case's command line is written and run.

Each case names a lab scenario, the node whose snapshot is traced, the ``nodetrace trace``
arguments (with ``{placeholders}`` for what only the built lab knows, such as the outside
namespace's MAC), the fate the real kernel and Open vSwitch gave the packet, and who sends and
who receives it in the lab. ``tests/lab/test_golden_capture.py`` builds each scenario, checks
every case against reality and, with ``NODETRACE_REGENERATE_GOLDEN=1``, rewrites
``tests/data/golden/``: the snapshot bundles and one ``CASE.txt`` per case, whose second line
is the exact command (``$ nodetrace trace BUNDLE ARGS...``) and the rest its output.
``tests/golden/test_golden_traces.py`` re-runs each stored command and compares, byte for byte.

A new shape is new rows here, and its scenario's preparation in the capture test.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
SCENARIOS = Path(__file__).parents[2] / "src" / "nodetrace" / "examples" / "scenarios"
REGENERATE = "NODETRACE_REGENERATE_GOLDEN"


@dataclass(frozen=True, slots=True)
class GoldenCase:
    name: str
    """The golden file's stem: ``tests/data/golden/NAME.txt``."""
    title: str
    scenario: str
    """A scenario of ``src/nodetrace/examples/scenarios`` (without ``.toml``)."""
    node: str
    args: tuple[str, ...]
    """``nodetrace trace`` arguments after the snapshot, with ``{placeholders}``."""
    fate: str
    """``delivered`` or ``dropped``: what the lab did and the walk must say."""
    sender: str
    """A VM's name, or ``outside`` (the namespace behind br-ex)."""
    receiver: str
    """Where the packet arrives in the lab when it is delivered: a VM's name, ``outside``, or
    ``answer`` (the sender gets the destination's answer: a socket accepted it). ``outside``
    is the outside namespace of the case's node; ``outside:NODE`` names another node's."""
    crossed_from: str = ""
    """With several nodes: the node the packet left before it reached ``node``. The case's
    packet is then the frame the underlay carried from there (the capture test checks it) and
    ``node``'s walk starts where that frame enters the node."""

    @property
    def bundle(self) -> str:
        return f"{self.scenario}-{self.node}.snapshot.tar.gz"

    def argv(self, facts: Mapping[str, str]) -> list[str]:
        """The arguments with each ``{placeholder}`` replaced; a fact the lab does not have is
        a ``KeyError`` naming it."""
        return [_PLACEHOLDER.sub(lambda m: facts[m.group(1)], a) for a in self.args]


_PLACEHOLDER = re.compile(r"\{([a-z_]+(?::[a-z0-9-]+)?)\}")


def _icmp(src: str, dst: str, nw_dst: str) -> str:
    return (
        f"icmp,dl_src={{mac:{src}}},dl_dst={dst},nw_src={{ip:{src}}},nw_dst={nw_dst},nw_ttl=64,"
        "icmp_type=8,icmp_code=0"
    )


def _syn(src: str, dst: str, nw_dst: str, port: int) -> str:
    return (
        f"tcp,dl_src={{mac:{src}}},dl_dst={dst},nw_src={{ip:{src}}},nw_dst={nw_dst},nw_ttl=64,"
        f"tp_src=40000,tp_dst={port},tcp_flags=+syn"
    )


CASES: tuple[GoldenCase, ...] = (
    GoldenCase(
        "legacy-snat",
        "VM to the internet through a legacy router's SNAT",
        "legacy-router", "aio1",
        ("--from", "{tap:db1}", "--packet", _icmp("db1", "{qr:db1}", "8.8.8.8")),
        "delivered", "db1", "outside",
    ),
    GoldenCase(
        "legacy-floating-ip-in",
        "The internet to a floating IP, DNAT to the VM",
        "legacy-router", "aio1",
        ("--from", "ext0", "--to-port", "{port:web1}", "--packet",
         "icmp,dl_src={outside_mac},dl_dst={qg},nw_src=8.8.8.8,nw_dst={fip:web1},nw_ttl=64,"
         "icmp_type=8,icmp_code=0"),
        "delivered", "outside", "web1",
    ),
    GoldenCase(
        "legacy-east-west",
        "VM to VM across the router (two networks, no NAT)",
        "legacy-router", "aio1",
        ("--from", "{tap:db1}", "--to-port", "{port:web1}", "--packet",
         _icmp("db1", "{qr:db1}", "{ip:web1}")),
        "delivered", "db1", "web1",
    ),
    GoldenCase(
        "legacy-metadata",
        "VM to 169.254.169.254:80, redirected to the router's metadata proxy",
        "legacy-router", "aio1",
        ("--from", "{tap:db1}", "--packet", _syn("db1", "{qr:db1}", "169.254.169.254", 80)),
        "delivered", "db1", "answer",
    ),
    GoldenCase(
        "ovsfw-ingress-allowed",
        "Native OVS firewall: ingress allowed by a rule (tcp 22 to app1)",
        "ovs-firewall", "cmp1",
        ("--from", "{tap:other1}", "--to-port", "{port:app1}", "--packet",
         _syn("other1", "{mac:app1}", "{ip:app1}", 22)),
        "delivered", "other1", "app1",
    ),
    GoldenCase(
        "ovsfw-ingress-dropped",
        "Native OVS firewall: ingress no rule allows (tcp 22 to other1)",
        "ovs-firewall", "cmp1",
        ("--from", "{tap:app1}", "--to-port", "{port:other1}", "--packet",
         _syn("app1", "{mac:other1}", "{ip:other1}", 22)),
        "dropped", "app1", "other1",
    ),
    GoldenCase(
        "ovsfw-remote-group",
        "Native OVS firewall: ingress allowed by a remote-group conjunction (tcp 5432)",
        "ovs-firewall", "cmp1",
        ("--from", "{tap:app1}", "--to-port", "{port:db1}", "--packet",
         _syn("app1", "{mac:db1}", "{ip:db1}", 5432)),
        "delivered", "app1", "db1",
    ),
    GoldenCase(
        "dvr-snat-compute",
        "DVR, VM without a floating IP to the internet: routed to the snat port (compute node)",
        "dvr", "cmp2",
        ("--from", "{tap:blue2}", "--packet", _icmp("blue2", "{qr:blue2}", "8.8.8.8")),
        "delivered", "blue2", "outside:net1",
    ),
    GoldenCase(
        "dvr-snat-network",
        "DVR, the same packet on the dvr_snat node: SNAT out of the snat namespace's qg- port",
        "dvr", "net1",
        ("--from", "und0", "--packet",
         "icmp,dl_src={dvr_mac:cmp2},dl_dst={sg:blue2},nw_src={ip:blue2},nw_dst=8.8.8.8,"
         "nw_ttl=63,icmp_type=8,icmp_code=0,tun_id=2001,tun_src={underlay:cmp2},"
         "tun_dst={underlay:net1}"),
        "delivered", "blue2", "outside", crossed_from="cmp2",
    ),
    GoldenCase(
        "dvr-east-west-source",
        "DVR, VM to VM across routers on two nodes: routed on the source node, its DVR MAC out",
        "dvr", "cmp1",
        ("--from", "{tap:blue1}", "--packet", _icmp("blue1", "{qr:blue1}", "{ip:green2}")),
        "delivered", "blue1", "green2",
    ),
    GoldenCase(
        "dvr-east-west-destination",
        "DVR, the same packet on the destination node: the router's MAC back, to the VM",
        "dvr", "cmp2",
        ("--from", "und0", "--to-port", "{port:green2}", "--packet",
         "icmp,dl_src={dvr_mac:cmp1},dl_dst={mac:green2},nw_src={ip:blue1},nw_dst={ip:green2},"
         "nw_ttl=63,icmp_type=8,icmp_code=0,tun_id=2002,tun_src={underlay:cmp1},"
         "tun_dst={underlay:cmp2}"),
        "delivered", "blue1", "green2", crossed_from="cmp1",
    ),
    GoldenCase(
        "dvr-floating-ip-in",
        "DVR, the internet to a floating IP: proxy ARP on fg-, fpr-/rfp-, DNAT to the VM",
        "dvr", "cmp1",
        ("--from", "ext0", "--to-port", "{port:blue1}", "--packet",
         "icmp,dl_src={outside_mac:cmp1},dl_dst={fg:cmp1},nw_src=8.8.8.8,nw_dst={fip:blue1},"
         "nw_ttl=64,icmp_type=8,icmp_code=0"),
        "delivered", "outside", "blue1",
    ),
    GoldenCase(
        "dvr-floating-ip-out",
        "DVR, VM with a floating IP to the internet: table 16, SNAT to it, out of the fip namespace",
        "dvr", "cmp1",
        ("--from", "{tap:blue1}", "--packet", _icmp("blue1", "{qr:blue1}", "8.8.8.8")),
        "delivered", "blue1", "outside",
    ),
)  # fmt: skip


# --- golden files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GoldenFile:
    title: str
    argv: list[str]
    """The ``nodetrace`` command line, starting with ``trace BUNDLE``."""
    output: str


def golden_path(case: GoldenCase) -> Path:
    return GOLDEN / f"{case.name}.txt"


def write_golden(case: GoldenCase, argv: list[str], output: str) -> None:
    text = f"# {case.title} (fate: {case.fate})\n$ nodetrace {shlex.join(argv)}\n{output}"
    golden_path(case).write_text(text, encoding="utf-8")


def read_golden(case: GoldenCase) -> GoldenFile:
    title, command, output = golden_path(case).read_text(encoding="utf-8").split("\n", 2)
    if not title.startswith("# ") or not command.startswith("$ nodetrace "):
        raise ValueError(f"{golden_path(case)}: expected '# title' and '$ nodetrace ...' first")
    return GoldenFile(title[2:], shlex.split(command[len("$ nodetrace ") :]), output)


@contextlib.contextmanager
def _plain_terminal() -> Iterator[None]:
    """The renderer's plain mode, whatever the caller's terminal: no width, no colour."""
    saved = {k: os.environ.pop(k, None) for k in ("COLUMNS",)}
    os.environ["NO_COLOR"] = "1"
    try:
        yield
    finally:
        os.environ.pop("NO_COLOR", None)
        for k, v in saved.items():
            if v is not None:
                os.environ[k] = v


def run_cli(argv: list[str], *, cwd: Path) -> tuple[int, str, str]:
    """``nodetrace ARGV`` through the command-line entry point, in ``cwd``: status, stdout and
    stderr."""
    from nodetrace.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = Path.cwd()
    os.chdir(cwd)
    try:
        with _plain_terminal(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    finally:
        os.chdir(here)
    return status, out.getvalue(), err.getvalue()
