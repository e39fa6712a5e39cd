"""``nodetrace --version`` and ``--help`` start fast because they import no subcommand; the
table they list the subcommands from cannot drift from the modules; every ``--help`` ends with
examples; a missing optional package is one line naming the extra that installs it."""

from __future__ import annotations

import argparse
import json
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import nodetrace.cli
from nodetrace.cli import COMMANDS, OPTIONAL_MODULES, build_parser, main

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
SCENARIO = str(Path(__file__).resolve().parents[1] / "data" / "lab" / "reference-node.toml")


def _python(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The subcommand help entries of ``parser``, by name."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {a.dest: a for a in action._choices_actions}


def test_the_command_table_is_every_module_with_its_own_help() -> None:
    modules = {m.name for m in pkgutil.iter_modules(nodetrace.cli.__path__)}
    assert set(COMMANDS) == {m for m in modules if not m.startswith("_")}
    for name, help_text in COMMANDS.items():
        assert _subcommands(build_parser(name))[name].help == help_text, name


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_subcommand(flag: str) -> None:
    probe = (
        "import json, sys\n"
        "from nodetrace.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('nodetrace'))))\n"
    )
    done = _python(probe, flag)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout.splitlines()[-1])
    assert imported == ["nodetrace", "nodetrace.cli", "nodetrace.errors"]


def _help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    out: str = capsys.readouterr().out
    return out


def _lab_subcommands() -> list[str]:
    return sorted(_subcommands(_lab_parser()))


def _lab_parser() -> argparse.ArgumentParser:
    (action,) = [
        a for a in build_parser("lab")._actions if isinstance(a, argparse._SubParsersAction)
    ]
    parser: argparse.ArgumentParser = action.choices["lab"]
    return parser


@pytest.mark.parametrize(
    "argv",
    [[name] for name in COMMANDS] + [["lab", name] for name in _lab_subcommands()],
    ids=" ".join,
)
def test_every_help_ends_with_examples_of_that_command(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    text = _help_of(capsys, *argv)
    found = re.search(r"^examples\b.*:$", text, re.M)  # "examples:" or "examples (...):"
    assert found, f"nodetrace {' '.join(argv)} --help has no examples: section"
    examples = text[found.end() :]
    command = "nodetrace " + " ".join(argv)
    assert re.search(rf"^\s+(sudo )?{re.escape(command)}\b", examples, re.M), examples


def test_the_top_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help_of(capsys)
    for name, help_text in COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(help_text.split()[0])}", text, re.M), name
    assert "\nexamples:\n" in text


def test_optional_modules_are_those_of_the_extras() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    expected = {
        re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]: extra
        for extra, requirements in extras.items()
        if extra != "dev"  # the tools of the project's own development, not a feature's
        for requirement in requirements
    }
    assert expected == OPTIONAL_MODULES  # each of these packages imports under its own name


MISSING_PACKAGE = (
    "import sys\n"
    "sys.modules[sys.argv[1]] = None  # 'import' then fails as when it is not installed\n"
    "from nodetrace.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)


def test_lab_without_its_extra_is_one_line_naming_it(tmp_path: Path) -> None:
    done = _python(MISSING_PACKAGE, "pyroute2", "lab", "status", "--root", str(tmp_path))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "nodetrace: error: 'nodetrace lab' needs the lab extra: pip install 'nodetrace[lab]'\n"
    )


@pytest.mark.parametrize("package", sorted(OPTIONAL_MODULES))
def test_what_needs_no_optional_package_works_without_it(package: str) -> None:
    done = _python(MISSING_PACKAGE, package, "lab", "generate", SCENARIO, "--what", "ports")
    assert (done.returncode, done.stderr) == (0, "")
    assert "br-int" in done.stdout


@pytest.mark.parametrize("command", ["log", "iptables", "openflow", "trace", "show"])
def test_every_command_names_its_people_view_text(command: str) -> None:
    """One --format flag everywhere, its default the text view, called the same on each."""
    parser = build_parser(command)
    sub = next(
        a
        for a in parser._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
        if a.prog.endswith(command)
    )
    (fmt,) = [a for a in sub._actions if "--format" in a.option_strings]
    assert fmt.default == "text"
    assert fmt.choices is not None and "text" in fmt.choices and "json" in fmt.choices
    assert fmt.type is not None and fmt.type("tree") == "text"  # the text view's former name
