"""Record real OVS outputs for the offline OpenFlow tests (tests/data/openflow/lab-*/).

Run as root, only on purpose (the files are golden data)::

    .venv/bin/python -m tests.lab.openflow_record [--seed N]

It loads the differential-test pipelines into a private ovs-vswitchd, saves every command output
a snapshot holds (under the bundle's file names) and ``ofproto/trace`` for a set of packets in
``traces.txt`` (``##### BRIDGE FLOW [--ct-next S]...`` then OVS's answer).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import uuid
from pathlib import Path

from nodetrace.lab.ledger import Ledger
from nodetrace.lab.resources import Resources
from tests.lab.openflow_harness import OvsLab, Pipeline
from tests.lab.openflow_pipelines import (
    firewall_packets,
    firewall_pipeline,
    neutron_packets,
    neutron_pipeline,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "openflow"


def record(
    lab: OvsLab, name: str, p: Pipeline, packets: list[tuple[str, str, tuple[str, ...]]]
) -> None:
    out = DATA / name
    out.mkdir(parents=True, exist_ok=True)
    lab.load(p)
    lab.snapshot()
    bridges = [b for b in p.bridges]
    for br in bridges:
        (out / f"ovs-ofctl-dump-flows.{br}.txt").write_text(lab.texts[f"flows.{br}"])
        (out / f"ovs-ofctl-show.{br}.txt").write_text(lab.texts[f"show.{br}"])
        (out / f"ovs-appctl-fdb-show.{br}.txt").write_text(lab.texts[f"fdb.{br}"])
    for t in ("Bridge", "Port", "Interface"):
        (out / f"ovs-vsctl-list-{t.lower()}.json").write_text(lab.texts[f"list.{t}"])
    (out / "ovs-vsctl-show.txt").write_text(lab.ovs.vsctl("show"))
    (out / "ovs-appctl-dpif-show.txt").write_text(lab.ovs.appctl("dpif/show"))
    forms = {
        "of10": (),
        "of13": ("-O", "OpenFlow13"),
        "of15": ("-O", "OpenFlow15"),
        "names": ("--names",),
        "nostats": ("--no-stats",),
    }
    for br in bridges:
        for form, args in forms.items():
            (out / f"forms.{br}.{form}.txt").write_text(lab.ovs.ofctl(*args, "dump-flows", br))
    chunks = []
    for bridge, flow, ct in packets:
        text = lab.trace(bridge, flow, ct)
        head = " ".join([bridge, flow, *(f"--ct-next {s}" for s in ct)])
        chunks.append(f"##### {head}\n{text}")
    (out / "traces.txt").write_text("".join(chunks))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        res = Resources(Ledger(Path(tmp) / "ledger"))
        try:
            lab = OvsLab(res, f"ofr{uuid.uuid4().hex[:6]}", Path(tmp))
            p, vms, remotes, nets = neutron_pipeline(goto=False)
            packets = [(b, f, ()) for b, f in neutron_packets(rng, vms, remotes, nets, 60)]
            record(lab, "lab-neutron", p, packets)
            p = firewall_pipeline()
            record(lab, "lab-firewall", p, firewall_packets(rng, 40))
        finally:
            problems = res.teardown()
            assert not problems, problems


if __name__ == "__main__":
    main()
