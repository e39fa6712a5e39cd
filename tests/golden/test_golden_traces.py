"""Golden traces: ``nodetrace trace`` on stored lab snapshots, compared byte for byte.

Each ``tests/data/golden/CASE.txt`` holds the command a user would type (second line) and the
text view it printed when the case was captured; the lab had just shown that the real kernel and
Open vSwitch did the same with that packet (``tests/lab/test_golden_capture.py``, which also
rewrites these files with ``NODETRACE_REGENERATE_GOLDEN=1``). Any change in what the walk
decides, which rules and flows it names, or how it words them shows up here, with no lab.
"""

from __future__ import annotations

import difflib

import pytest

from tests.golden.cases import CASES, GOLDEN, GoldenCase, golden_path, read_golden, run_cli


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_trace_prints_the_golden_output(case: GoldenCase) -> None:
    golden = read_golden(case)
    assert golden.argv[:2] == ["trace", case.bundle], "the stored command traces another bundle"
    status, out, err = run_cli(golden.argv, cwd=GOLDEN)
    assert status == 0, err
    if out != golden.output:
        diff = "".join(
            difflib.unified_diff(
                golden.output.splitlines(keepends=True),
                out.splitlines(keepends=True),
                str(golden_path(case)),
                "nodetrace trace now",
            )
        )
        pytest.fail(f"the trace changed (if on purpose, regenerate in the lab):\n{diff}")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_golden_verdict_is_the_labs_fate(case: GoldenCase) -> None:
    """The stored output ends in the fate the lab showed (the table says which)."""
    golden = read_golden(case)
    assert golden.title.endswith(f"(fate: {case.fate})")
    verdicts = [line for line in golden.output.splitlines() if line.startswith("Verdict: ")]
    assert len(verdicts) == 1 and verdicts[0].startswith(f"Verdict: {case.fate.upper()}:")
