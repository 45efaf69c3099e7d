"""`visiting` reads its arguments before it loads anything heavy.

A secretariat's `visiting secretariat suspend ...` and anyone's `visiting --help`
should not wait for SQLAlchemy, JupyterHub, NumPy, Docker or Hail to load: the
parser is built from the standard library, and each command imports what it
needs when it runs. Checked by what a fresh process has imported after parsing,
not by a clock (a busy machine would make a timed test flaky).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli.main import build_parser

REPO_ROOT = Path(__file__).resolve().parents[4]

#: what building the parser and reading any command's arguments must not import
HEAVY = (
    "sqlalchemy",
    "jupyterhub",
    "tornado",
    "traitlets",
    "numpy",
    "pandas",
    "docker",
    "hail",
    "matplotlib",
    "dask",
    "distributed",
    "zarr",
    "xarray",
    "jsonschema",
    "referencing",
    "yaml",
    "jinja2",
    "requests",
    "urllib.request",
    "extensions",
)

#: the only project modules the parser needs
PARSER_MODULES = {
    "hub",
    "hub.cli",
    "hub.cli.main",
    "hub.cli.base",
    "hub.cli.policy",
    "hub.cli.approvals",
    "hub.cli.audit",
    "hub.cli.report",
    "hub.cli.synth",
    "hub.cli.site",
    "hub.cli.demo",
    "hub.cli.sites",
    "hub.cli.admin",
    "hub.cli.secretariat",
    "hub.cli.site_admin",
}

# Builds the parser, asks every command for its help as `visiting ... --help` would,
# and prints the modules the process then holds.
PROBE = """
import contextlib, io, json, sys
from hub.cli.main import build_parser
parser = build_parser()
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        parser.parse_args([*argv, "--help"])
print(json.dumps(sorted(sys.modules)))
"""


def commands(parser: argparse.ArgumentParser, argv: tuple[str, ...] = ()):
    """The argv of every command and group, e.g. ("secretariat", "suspend"); a positional
    before a group's subcommands (`site-admin SITE ...`) gets a placeholder."""
    yield argv
    fill = tuple(
        "x"
        for a in parser._actions
        if not a.option_strings
        and not isinstance(a, argparse._SubParsersAction)
        and a.nargs in (None, 1)
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*argv, *fill, name))


ALL_COMMANDS = list(commands(build_parser()))


def test_every_group_is_walked():
    names = {" ".join(a) for a in ALL_COMMANDS}
    assert {"", "secretariat suspend", "site-admin x quota", "demo up", "report"} <= names
    assert len(ALL_COMMANDS) > 25


def test_parsing_any_command_imports_nothing_heavy():
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(ALL_COMMANDS)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    modules = set(json.loads(probe.stdout))
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], f"building the parser imported {heavy}"
    ours = {m for m in modules if m == "hub" or m.startswith("hub.")}
    assert ours == PARSER_MODULES


def visiting() -> Path:
    """The installed `visiting` command beside this Python (the venv's bin)."""
    path = Path(sys.executable).with_name("visiting")
    if not path.exists():
        pytest.fail(f"no `visiting` command at {path}: install the project (make setup)")
    return path


@pytest.mark.parametrize("argv", ALL_COMMANDS, ids=lambda a: " ".join(a) or "visiting")
def test_help_of_every_command(argv):
    r = subprocess.run(
        [str(visiting()), *argv, "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: visiting"), r.stdout[:300]
    assert r.stderr == ""
