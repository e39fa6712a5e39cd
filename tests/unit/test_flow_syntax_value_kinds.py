"""A packet's header fields are read as MACs, addresses or numbers by the Packet attribute they
set, so that reading a packet does not load ``ovs.flow``; OVS's field table must agree."""

from __future__ import annotations

import subprocess
import sys

from ovs.flow.decoders import EthMask, IPMask
from ovs.flow.ofp_fields import field_decoders

from nodetrace.parsers import flow_syntax


def test_every_header_field_is_read_as_ovs_decodes_it() -> None:
    for name, attribute in flow_syntax._ATTRIBUTE.items():
        decoder = field_decoders.get(name)
        expected = "mac" if decoder is EthMask else "address" if decoder is IPMask else "number"
        kind = (
            "mac"
            if attribute in flow_syntax._MAC_ATTRIBUTES
            else "address"
            if attribute in flow_syntax._ADDRESS_ATTRIBUTES
            else "number"
        )
        assert kind == expected, name


def test_a_packet_of_header_fields_is_read_without_ovs_flow_or_the_flow_model() -> None:
    heavy = "('ovs', 'pyparsing', 'netaddr', 'nodetrace.model.openflow.')"
    code = (
        "import sys\n"
        "from nodetrace.parsers.flow_syntax import parse_flow\n"
        "spec = parse_flow('tcp,dl_src=fa:16:3e:00:00:01,nw_src=10.0.0.1,nw_dst=10.0.0.2,"
        "tp_src=40000,tp_dst=22,tcp_flags=+syn')\n"
        "assert str(spec.packet.nw_dst) == '10.0.0.2', spec\n"
        f"print(sorted(m for m in sys.modules if (m + '.').startswith({heavy})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
