"""What the `visiting` command groups share: the error a command prints, the demo's policy
folder, argument types, and opening the platform files, the registry and the audit store.

Standard library only at the top: every group imports this while the parser is built.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# hub.platform.traits.REPO_ROOT names the same folder, but importing it brings the registry
DEMO_DIR = Path(__file__).resolve().parents[2] / "policies" / "demo"


class CommandError(Exception):
    """A command that cannot do what was asked; printed as one line, exit status 2."""


def load_policy(directory):
    """The policy directory's bundle, or CommandError listing every problem in it."""
    from hub.platform.policy import PolicyError, load_policy_dir

    try:
        return load_policy_dir(directory)
    except PolicyError as e:
        lines = [str(i) for i in e.issues] or ["invalid policy directory"]
        raise CommandError(
            f"{directory}: {len(lines)} problem(s); nothing was loaded\n" + "\n".join(lines)
        ) from None


def open_registry(bundle, database: str | None):
    from hub.store.registry import ApprovalRegistry

    return ApprovalRegistry(database or bundle.platform.database_url)


def open_audit_store(bundle, database: str | None):
    """The audit store to read; a SQLite file that does not exist is an error, not a new store."""
    from sqlalchemy.engine import make_url

    from hub.store.audit import AuditStore

    url = database or bundle.platform.database_url
    try:
        parsed = make_url(url)
    except Exception as e:  # sqlalchemy raises ArgumentError for a malformed URL
        raise CommandError(f"--database: {e}") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():
            raise CommandError(f"no audit store at {parsed.database} (database {url})")
    return AuditStore(url)


# -- argument types -------------------------------------------------------------------


def instant(text: str):
    from hub.store.audit import parse_instant

    try:
        return parse_instant(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1024 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is outside 1024-65535")
    return number


def site_port(text: str) -> tuple[str, int]:
    site, sep, number = text.partition("=")
    if not sep or not site:
        raise argparse.ArgumentTypeError(f"{text!r} is not SITE=PORT (e.g. nig=18090)")
    return site, port(number)
