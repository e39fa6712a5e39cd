"""The HTML pages without a browser: the policy allows exactly the inline blocks, nothing is
fetched, hostile text stays text, the JSON block cannot be closed from inside, and the trace
tree numbers and marks its steps as the text view does."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from nodetrace import api
from nodetrace.cli import main
from nodetrace.model.packet import Family
from nodetrace.model.trace import (
    DeviceAction,
    DeviceStep,
    Hook,
    NetfilterStep,
    OpenFlowStep,
    Outcome,
    StepKind,
    Trace,
)
from nodetrace.neutron.inventory import inventory
from nodetrace.parsers.iptables_save import parse_iptables_save
from nodetrace.render.html import trace_page
from nodetrace.render.html_page import DATA_ID, document, json_block
from nodetrace.render.html_tree import trace_tree
from nodetrace.render.node_diagram import path_marks

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "nodetrace" / "examples"
HOSTILE = "</script><script>window.pwned=1</script>\"'<img src=x onerror=alert(1)>javascript:&amp;"


class _Page(HTMLParser):
    """Every element with its attributes, and the text inside each script and style."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.blocks: list[tuple[str, dict[str, str | None], str]] = []
        self._open: tuple[str, dict[str, str | None]] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._open = (tag, dict(attrs))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self.blocks.append((*self._open, data))
            self._open = None
        else:
            self.text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._open = None


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _policy(parsed: _Page) -> dict[str, list[str]]:
    metas = [a for tag, a in parsed.elements if tag == "meta" and a.get("http-equiv")]
    assert len(metas) == 1
    assert metas[0]["http-equiv"] == "Content-Security-Policy"
    content = metas[0]["content"] or ""
    return {part.split()[0]: part.split()[1:] for part in content.split(";") if part.strip()}


def _dropped_trace(rule_text: str = "-A sg -j DROP", note: str = "", printed: str = "") -> Trace:
    """A trace dropped by ``rule_text`` (read from a ruleset), or by a rule only ``printed`` by
    the trace's source (as xtables-monitor prints it, any text)."""
    save = f"*filter\n:FORWARD ACCEPT [0:0]\n:sg - [0:0]\n-A sg -p udp -j RETURN\n{rule_text}\nCOMMIT\n"
    parsed = parse_iptables_save(save, source="rules.save")
    rule = next(r for r in parsed.rules() if r.chain == "sg" and r.position == 2)
    return Trace(
        steps=(
            DeviceStep(DeviceAction.ENTER, "tap1", "received"),
            OpenFlowStep("br-int", 0, 10, "in_port=2", "resubmit(,60)", note=note or None),
            OpenFlowStep("br-int", 60, 3, "", "NORMAL"),
            NetfilterStep(
                Family.IPV4,
                "filter",
                "FORWARD",
                StepKind.RULE,
                1,
                hook=Hook.FORWARD,
                in_dev="qbr1",
                out_dev="qbr1",
                physin="tap1",
                rule_text="-A FORWARD -j sg",
            ),
            NetfilterStep(
                Family.IPV4,
                "filter",
                "sg",
                StepKind.RULE,
                2,
                hook=Hook.FORWARD,
                in_dev="qbr1",
                out_dev="qbr1",
                physin="tap1",
                rule=None if printed else rule,
                rule_text=printed or None,
            ),
        ),
        outcome=Outcome.DROPPED,
        verdict_step=4,
        reason="dropped by filter sg rule 2",
        assumptions=("conntrack state NEW",),
        resting_on=("tp_src=32768 (assumed)",),
    )


def test_the_policy_allows_exactly_the_inline_blocks_and_nothing_else() -> None:
    page = document(title=HOSTILE, view="x", body="<p>body</p>", data={"a": HOSTILE})
    parsed = _parse(page)
    policy = _policy(parsed)
    assert policy["default-src"] == ["'none'"]
    assert set(policy) == {"default-src", "script-src", "style-src", "base-uri", "form-action"}
    scripts = [
        text for tag, attrs, text in parsed.blocks if tag == "script" and not attrs.get("type")
    ]
    styles = [text for tag, _attrs, text in parsed.blocks if tag == "style"]
    assert len(scripts) == 1 and len(styles) == 1
    assert policy["script-src"] == [_hash(scripts[0])]
    assert policy["style-src"] == [_hash(styles[0])]
    # no element loads anything: no src, no link, no external href
    assert not [a for _tag, a in parsed.elements if "src" in a]
    assert not [tag for tag, _a in parsed.elements if tag in ("link", "iframe", "object", "embed")]
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)


def test_the_data_block_cannot_be_closed_by_its_data() -> None:
    data = {"name": HOSTILE, "list": ["<!--", "-->", "&", "\u2028"]}
    block = json_block(data)
    assert not set(block) & set("<>&")
    assert json.loads(block) == data
    page = document(title=HOSTILE, view="x", body="", data=data)
    parsed = _parse(page)
    blocks = [text for tag, a, text in parsed.blocks if tag == "script" and a.get("id") == DATA_ID]
    assert [json.loads(b) for b in blocks] == [data]
    # the title is text
    assert "<title>&lt;/script&gt;" in page
    assert page.count("<script") == 2  # the data block and the page's own script


def test_the_tree_numbers_groups_and_marks_steps_like_the_text_view() -> None:
    trace = _dropped_trace()
    html = trace_tree(trace, hop_of_step={1: 1, 2: 2, 3: 2, 4: 3, 5: 3})
    parsed = _parse(html)
    steps = [
        a for tag, a in parsed.elements if tag == "li" and "step" in (a.get("class") or "").split()
    ]
    assert [s["data-step"] for s in steps] == ["1", "2", "3", "4", "5"]
    assert [s["data-hop"] for s in steps] == ["1", "2", "2", "3", "3"]
    decided = [s for s in steps if "decided" in (s.get("class") or "").split()]
    assert [s["data-step"] for s in decided] == [str(trace.verdict_step + 1)]  # type: ignore[operator]
    assert "dropped" in (decided[0]["class"] or "").split()
    groups = [
        a["class"]
        for tag, a in parsed.elements
        if tag == "li" and "group" in (a.get("class") or "")
    ]
    assert groups == ["group bridge", "group hook"]  # br-int's two lookups, FORWARD's two rules
    text = "".join(parsed.text)
    assert "-A sg -j DROP" in text and "rules.save:5" in text  # the rule and where it was read
    assert "tp_src=32768 (assumed)" in text and "conntrack state NEW" in text
    assert "DROPPED" in text


def test_hostile_rule_text_and_notes_stay_text_in_the_tree() -> None:
    trace = _dropped_trace(printed=f'-A sg -m comment --comment "{HOSTILE}" -j DROP', note=HOSTILE)
    html = trace_tree(trace, heading=HOSTILE, subtitle=HOSTILE, warnings=(HOSTILE,))
    parsed = _parse(html)
    assert not [tag for tag, _a in parsed.elements if tag in ("script", "img")]
    assert not [a for _t, a in parsed.elements if any(k.startswith("on") for k in a)]
    assert "".join(parsed.text).count(HOSTILE) >= 4


def _main_out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_log_page_carries_the_summarys_counts(capsys: pytest.CaptureFixture[str]) -> None:
    log = str(EXAMPLES / "two-nodes-cmp2.trace.log")
    rules = str(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz")
    summary = json.loads(
        _main_out(capsys, "log", log, "--rules", rules, "--summary", "--format", "json")
    )
    page = _main_out(capsys, "log", log, "--rules", rules, "--format", "html")
    parsed = _parse(page)
    bars = {
        a["data-label"]: int(a["data-count"] or 0)
        for tag, a in parsed.elements
        if tag == "g" and a.get("class") == "bar" and (a.get("data-bar") or "").startswith("hits-")
    }
    assert {
        c["chain"]: c["hits"] for c in summary["summary"]["chains_by_hits"]
    }.items() <= bars.items()
    drops = {
        a["data-label"]: int(a["data-count"] or 0)
        for tag, a in parsed.elements
        if tag == "g" and (a.get("data-bar") or "").startswith("drops-")
    }
    assert drops == {"filter:neutron-openvswi-sg-fallback": 1}
    assert summary["summary"]["top_dropping_rules"][0]["step"].startswith(
        "filter:neutron-openvswi-sg-fallback:"
    )
    data = json.loads(next(t for tag, a, t in parsed.blocks if a.get("id") == DATA_ID))
    behind = {key: value for key, value in data["bars"].items() if key.startswith("drops-")}
    dropped = [
        json.loads(line)["index"]
        for line in _main_out(capsys, "log", log, "--rules", rules, "--format", "json").splitlines()
        if json.loads(line)["outcome"] == "dropped"
    ]
    assert list(behind.values()) == [dropped]


def test_a_log_without_trace_records_is_nothing_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "kern.log"
    empty.write_text("Dec  1 10:00:00 host kernel: eth0: link up\n")
    assert main(["log", str(empty), "--format", "html"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "nothing usable" in captured.err


def test_trace_page_links_the_path_to_the_steps() -> None:
    snap = api.load_snapshot(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz")
    trace = api.trace(
        snap, "tcp,tp_dst=5432,tcp_flags=+syn", from_port="85f28c5a", to_port="79645311"
    )
    page = trace_page(snap, inventory(snap), trace, title="t")
    parsed = _parse(page)
    data = json.loads(next(t for tag, a, t in parsed.blocks if a.get("id") == DATA_ID))
    marks = path_marks(trace)
    assert [h["index"] for h in data["paths"][0]["hops"]] == [h.index for h in marks.hops]
    ids = {a.get("id") for _t, a in parsed.elements}
    assert all(h["element"] in ids for h in data["paths"][0]["hops"] if h["element"])
    steps = {
        a["data-step"]: a.get("data-hop")
        for t, a in parsed.elements
        if t == "li" and a.get("data-step")
    }
    assert len(steps) == len(trace.steps)
    for hop in marks.hops:
        assert all(steps[str(s)] == str(hop.index) for s in hop.steps)


def test_trace_svg_is_the_diagram_alone_with_the_path_and_its_own_style(
    capsys: pytest.CaptureFixture[str],
) -> None:
    snapshot = str(EXAMPLES / "two-nodes-cmp2.snapshot.tar.gz")
    packet = "tcp,tp_dst=8080,tcp_flags=+syn"
    svg = _main_out(
        capsys, "trace", snapshot, "--from-port", "85f28c5a", "--to-port", "79645311",
        "--packet", packet, "--format", "svg",
    )  # fmt: skip
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    styles = [el for el in root.iter() if el.tag.endswith("}style")]
    assert len(styles) == 1 and ".hop-dropped" in (styles[0].text or "")
    trace = api.trace(api.load_snapshot(snapshot), packet, from_port="85f28c5a", to_port="79645311")
    devices = {h.device for h in path_marks(trace).hops}
    hops = [el for el in root.iter() if "hop" in el.get("class", "").split()]
    drawn = {el.get("data-device") for el in hops}
    assert drawn == devices  # a two-port node: every device is drawn alone
    dropped = [el for el in hops if "hop-dropped" in el.get("class", "").split()]
    assert [el.get("data-device") for el in dropped] == [path_marks(trace).hops[-1].device]
