"""Shared fixtures: the demo policy directory and copies of it to break, and the
databases (SQLite and a throwaway PostgreSQL server) the registry and audit store run on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.postgres import PostgresNotInstalled, PostgresServer, find_bin_dir, postgres_server

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "policies" / "demo"

#: How long the process may take to exit after the session (pytest_unconfigure).
EXIT_GRACE_SECONDS = 180


@pytest.fixture(scope="session", autouse=True)
def leave_the_engine_as_found():
    """Tests (integration, e2e) start the project's Docker engine when they need it; stop it
    after the session, if they did."""
    import subprocess

    script = str(REPO_ROOT / "scripts" / "docker.sh")
    status = subprocess.run(["bash", script, "status"], capture_output=True)
    yield
    if status.returncode != 0:
        subprocess.run(["bash", script, "down"], capture_output=True)


@pytest.fixture
def policy_copy(tmp_path, monkeypatch) -> Path:
    """A private copy of the demo policy directory, with its state inside tmp_path."""
    dest = tmp_path / "policy"
    shutil.copytree(DEMO_DIR, dest)
    monkeypatch.setenv("VISITING_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VISITING_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.delenv("VISITING_DATABASE_URL", raising=False)
    return dest


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A PostgreSQL server for the whole session, started on first use (see tests/postgres.py).

    Not installed is a failure, not a skip: `make setup` installs it.
    """
    try:
        bin_dir = find_bin_dir()
    except PostgresNotInstalled as e:
        bin_dir, missing = None, str(e)
    if bin_dir is None:
        pytest.fail(missing, pytrace=False)
    with postgres_server(bin_dir) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """The SQLAlchemy URL of a new, empty database: a SQLite file in tmp_path, or a
    database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("postgres").empty_database()


_EXIT_STATUS = {"status": 0}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["status"] = int(exitstatus)


def pytest_unconfigure(config):
    """A process that does not exit within minutes of its summary must not sit until the
    CI's time limit: a watchdog prints every thread's stack (what keeps it alive, to be
    fixed) and ends the process with the run's own status. A normal exit takes well under
    a second and ends the watchdog with it."""
    import faulthandler
    import os
    import sys
    import threading
    import time

    def watchdog():
        time.sleep(EXIT_GRACE_SECONDS)
        print(
            f"\n*** the test process did not exit within {EXIT_GRACE_SECONDS} s of the end of "
            "the run; the threads that keep it alive:",
            file=sys.__stderr__,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        os._exit(_EXIT_STATUS["status"])

    threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()
