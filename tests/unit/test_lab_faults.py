"""Lab faults are recorded before they are made and undone exactly once, from the ledger alone
(commands here touch files in a temporary folder instead of the network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetrace.lab import faults as F
from nodetrace.lab.ledger import Ledger
from nodetrace.lab.run import CommandError


def _file_fault(path: Path, *, make_fails: bool = False) -> F.Fault:
    make = [F.Command(("touch", str(path)))]
    if make_fails:
        make.append(F.Command(("false",)))
    return F.Fault(f"file {path.name}", tuple(make), (F.Command(("rm", "-f", str(path))),))


def test_a_fault_is_undone_once_even_after_the_maker_is_gone(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    first, second = tmp_path / "one", tmp_path / "two"
    faults = F.Faults(ledger)
    faults.inject(_file_fault(first))
    done = faults.inject(_file_fault(second))
    assert first.exists() and second.exists()
    assert faults.undo(done) == [] and not second.exists()
    # A new reader of the same ledger (the maker crashed) sees only what is still made.
    assert [what for _, what, _ in F.pending(Ledger(ledger.path))] == ["file one"]
    second.touch()  # made again by someone else: not this fault's to remove any more
    assert F.undo_faults(Ledger(ledger.path)) == []
    assert not first.exists() and second.exists()
    assert F.pending(ledger) == []


def test_a_fault_that_fails_half_way_is_undone(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    made = tmp_path / "made"
    with pytest.raises(CommandError):
        F.Faults(ledger).inject(_file_fault(made, make_fails=True))
    assert not made.exists()
    assert F.pending(ledger) == []


def test_a_torn_record_is_ignored(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    ledger.path.write_text('{"kind": "fault", "id": "x", "extra": "{\\"undo\\": [{\\"arg\n')
    assert F.pending(ledger) == []


def test_undo_reports_a_failing_command_and_still_marks_the_fault(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    fault = F.Fault("cannot be undone", (F.Command(("true",)),), (F.Command(("false",)),))
    faults = F.Faults(ledger)
    faults.inject(fault)
    problems = faults.undo(fault)
    assert len(problems) == 1 and "false" in problems[0]
    assert F.pending(ledger) == []


@pytest.mark.parametrize(
    ("flow", "key"),
    [
        ("cookie=0x1, table=60, priority=1 actions=NORMAL", (1, "")),
        (
            "cookie=0xf0, table=25, priority=2,in_port=2,dl_src=fa:16:3e:10:94:fc actions=goto_table:30",
            (2, "in_port=2,dl_src=fa:16:3e:10:94:fc"),
        ),
        ("cookie=0x0, table=3, arp actions=drop", (32768, "arp")),
    ],
)
def test_a_dumped_flow_is_found_by_priority_and_match(flow: str, key: tuple[int, str]) -> None:
    assert F._flow_key(flow) == key
