"""``nodetrace collect``: capture this node's network state into a snapshot bundle (read-only).

The work is done by :mod:`nodetrace.snapshot.collect`, which also runs on its own as a single
file on nodes where nodetrace cannot be installed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nodetrace.cli import ExamplesFormatter
from nodetrace.errors import InputError, UsageError
from nodetrace.snapshot import collect as collector

EXAMPLES = """\
examples:
  sudo nodetrace collect                              # nodetrace-snapshot-HOST-TIME.tar.gz
  sudo nodetrace collect -o node.tar.gz --conntrack 1000
  sudo nodetrace collect -o snap/ --namespaces none   # a folder, the host's namespace only
  nodetrace show node.tar.gz                          # then read it, here or anywhere
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="capture this node's network state into a snapshot (read-only)",
        description="Run read-only commands (iptables-save, ipset save, ovs-vsctl, ovs-ofctl, "
        "ovs-appctl fdb/show, ip -j, bridge -j, sysctl) here and in every network namespace, "
        "and store their output with a manifest. Missing tools and failing commands are "
        "recorded, not fatal.",
        epilog=EXAMPLES,
        formatter_class=ExamplesFormatter,
    )
    collector.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = collector.options_from(args)
    problem = collector.option_problem(options)
    if problem is not None:
        raise UsageError(problem)
    output = args.output or collector.default_output()

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"collect: {msg}", file=sys.stderr)

    try:
        path = collector.collect(output, options, log=log)
    except FileExistsError as err:
        raise UsageError(str(err)) from None
    except OSError as err:
        raise InputError(f"cannot write the snapshot: {err}") from None
    print(path)
    return 0
