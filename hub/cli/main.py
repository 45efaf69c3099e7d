"""The `visiting` command: platform files, approvals, synthetic data and its ingest, the demo stack.

One module per command group (hub/cli/<group>.py), each with `add_parser(subparsers)`
and its commands. The parser is built from the standard library alone, so
`visiting --help` and a mistyped option answer at once; each command imports what
it needs when it runs (the registry, the report, Docker, Hail, ...).
tests/unit/hub/cli/test_cli_startup.py holds the list of modules the parser may import.
"""

from __future__ import annotations

import argparse
import sys

from hub.cli import (
    approvals,
    audit,
    demo,
    policy,
    report,
    secretariat,
    site,
    site_admin,
    sites,
    synth,
)
from hub.cli.base import CommandError

#: the command groups, in the order `visiting --help` lists them
GROUPS = (policy, approvals, audit, report, synth, site, demo, sites, secretariat, site_admin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visiting",
        description="Visiting compute workspace for controlled-access genomic data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as e:
        print(f"visiting: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
