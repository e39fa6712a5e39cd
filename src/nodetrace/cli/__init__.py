"""The ``nodetrace`` command: arguments in, calls into the packages, output out.

Each subcommand lives in its own module with ``register(subparsers)``; this module only wires
them together and turns nodetrace's own errors into one-line messages (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

from nodetrace import __version__
from nodetrace.errors import NodetraceError

ORDER = ("log", "iptables", "openflow", "trace", "show", "collect", "lab")
"""The order ``--help`` lists subcommands in; every module of this package is one."""

EXIT_OK = 0
EXIT_NOTHING_USABLE = 1
EXIT_USAGE = 2


def subcommands() -> list[str]:
    """Every subcommand module of this package, in ``ORDER``."""
    found = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command`` only that subcommand's module is imported.

    Importing every subcommand pulls in the OVS flow grammar, the lab and all engines (about
    0.3 s); a command that runs one subcommand needs only its own.
    """
    parser = argparse.ArgumentParser(
        prog="nodetrace",
        description="Show how packets cross an OpenStack compute node, and where one stops.",
    )
    parser.add_argument("--version", action="version", version=f"nodetrace {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    names = subcommands()
    for name in [command] if command in names else names:
        module = importlib.import_module(f"nodetrace.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(next((w for w in words if not w.startswith("-")), None))
    args = parser.parse_args(words)
    try:
        result: int = args.func(args)
        return result
    except NodetraceError as err:
        print(f"nodetrace: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nodetrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (head, less) went away: not an error worth a message. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again on the closed pipe.
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a real file (tests capture it): nothing will be flushed to a pipe


if __name__ == "__main__":
    sys.exit(main())
