"""The ``nodetrace`` command: arguments in, calls into the packages, output out.

Each subcommand lives in its own module with ``register(subparsers)``; this module only wires
them together and keeps the README's promise on exit status: 0 whatever a packet's fate, 1 when
an input held nothing usable, 2 for a usage or input error, always in one line on stderr and
never a traceback (argparse's usage dump and a missing optional package included).

Only the subcommand being run is imported: the others pull in the OVS flow grammar, the lab and
every engine, which would make ``nodetrace --version`` and ``--help`` take most of a second.
``COMMANDS`` lists them for ``--help`` without importing them (a unit test keeps it equal to
each module's own ``register()``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from nodetrace import __version__
from nodetrace.errors import NodetraceError

COMMANDS: dict[str, str] = {
    "log": "explain netfilter TRACE logs",
    "iptables": "simulate a packet through an iptables ruleset",
    "openflow": "trace a packet through OVS bridges (offline ofproto/trace)",
    "trace": "follow a packet through the whole node (OVS, veth, Linux bridge, iptables)",
    "show": "summarise a node snapshot: bridges, ports, VMs, chains and flows",
    "collect": "capture this node's network state into a snapshot (read-only)",
    "diff": "compare two snapshots of a node: changes, counters, a packet's fate",
    "lab": "mini compute nodes in network namespaces (real OVS, real iptables)",
    "explain": "compare each packet of a TRACE log with the snapshot's prediction, and say why it was lost",
    "live": "trace packets on this running node, safely (root)",
    "audit": "find what is wrong on a node before a packet is lost (findings with evidence)",
    "fleet": "audit, trace or explain logs over many nodes into one DuckDB store",
}
"""Every subcommand (a module of this package) and its one-line help, in ``--help`` order."""

OPTIONAL_MODULES: dict[str, str] = {
    "pyroute2": "lab", "scapy": "lab", "duckdb": "fleet", "distributed": "fleet", "dask": "fleet",
}  # fmt: skip
"""Packages of an optional extra (pyproject.toml), and the extra that installs them."""

EXIT_OK = 0
EXIT_NOTHING_USABLE = 1
EXIT_USAGE = 2

EXAMPLES = """\
examples:
  nodetrace log /var/log/kern.log --rules iptables-save.txt
  nodetrace show src/nodetrace/examples/two-nodes-cmp2.snapshot.tar.gz
  nodetrace trace src/nodetrace/examples/two-nodes-cmp2.snapshot.tar.gz \\
      --from-port 85f28c5a --to-port 79645311 --packet 'tcp,tp_dst=5432,tcp_flags=+syn'
  sudo nodetrace collect -o node.tar.gz
  nodetrace COMMAND --help     (each command's options, with examples)
"""


def add_levels(parser: argparse.ArgumentParser, *, summary: str, detailed: str) -> None:
    """``--summary`` and ``--detailed``, the levels of the text view: ``args.level`` is
    ``summary``, ``default`` or ``detailed`` (the values of :class:`nodetrace.render.text.Level`)."""
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--summary", dest="level", action="store_const", const="summary",
                       default="default", help=summary)  # fmt: skip
    level.add_argument("--detailed", dest="level", action="store_const", const="detailed",
                       help=detailed)  # fmt: skip


def add_format(parser: argparse.ArgumentParser, **others: str) -> None:
    """``--format``, the same flag on every command: ``text`` (the default, for people) and
    the command's other outputs, each with its help (``json`` is docs/json.md everywhere).
    ``tree``, the text view's former name, is still understood."""
    names = ", ".join(f"{name} ({what})" for name, what in others.items())
    parser.add_argument(
        "--format", choices=("text", *others), default="text",
        type=lambda word: "text" if word == "tree" else word,
        help=f"text (default: for people), {names}",
    )  # fmt: skip


class ExamplesFormatter(argparse.HelpFormatter):
    """argparse's help, re-wrapping the description as usual but keeping an ``examples:``
    epilog's lines as written (commands must not be broken across lines)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line that says where to look, not the usage dump."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # A subcommand's parser reports a word it does not know itself, so the hint names the
        # subcommand's --help (argparse leaves it to the top parser, which names its own).
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"nodetrace: error: {message} (see '{self.prog} --help')\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported, the others are listed."""
    parser = _Parser(
        prog="nodetrace",
        description="Show how packets cross an OpenStack compute node, and where one stops.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    parser.add_argument("--version", action="version", version=f"nodetrace {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        if name == command:
            importlib.import_module(f"nodetrace.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    try:
        args = build_parser(command).parse_args(words)
        result: int = args.func(args)
        return result
    except NodetraceError as err:
        return _fail(str(err))
    except ModuleNotFoundError as err:
        extra = OPTIONAL_MODULES.get((err.name or "").partition(".")[0])
        if extra is None:
            raise  # not an optional package: a bug, whose traceback is wanted
        return _fail(
            f"'nodetrace {command}' needs the {extra} extra: pip install 'nodetrace[{extra}]'"
        )
    except KeyboardInterrupt:
        print("nodetrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away: not an error worth a message. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again on the closed pipe.
        _silence_stdout()
        return EXIT_OK


def _fail(message: str) -> int:
    print(f"nodetrace: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (tests capture it): nothing will be flushed to a pipe


if __name__ == "__main__":
    sys.exit(main())
