"""Shared fixtures: the demo policy directory and copies of it to break, and the
databases (SQLite and a throwaway PostgreSQL server) the registry and audit store run on."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.postgres import PostgresNotInstalled, PostgresServer, find_bin_dir, postgres_server

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "policies" / "demo"

#: How long the process may take to exit after the session (pytest_unconfigure).
EXIT_GRACE_SECONDS = 180


@pytest.fixture(scope="session", autouse=True)
def leave_the_engine_as_found(request):
    """Tests (integration, e2e) start the project's Docker engine when they need it; stop it
    after the session, if they did. A session of unit tests never starts it, so it never
    stops it either: an engine another session started while this one ran stays up."""
    import subprocess

    script = str(REPO_ROOT / "scripts" / "docker.sh")
    status = subprocess.run(["bash", script, "status"], capture_output=True)
    yield
    if status.returncode != 0 and may_start_the_engine(request.session.items):
        subprocess.run(["bash", script, "down"], capture_output=True)


def may_start_the_engine(items) -> bool:
    """Whether a session's tests include a tier that starts the Docker engine."""
    tiers = {REPO_ROOT / "tests" / "integration", REPO_ROOT / "tests" / "e2e"}
    return any(tier in Path(item.path).resolve().parents for item in items for tier in tiers)


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

#: seconds a process left running by the tests gets between SIGTERM and SIGKILL
LEAK_STOP_SECONDS = 5.0

#: the project's programs, as their command lines name them; one a test started by hand
#: (not through a stack) is the session's when its working folder is in the session's
#: temporary folder
PROJECT_PROGRAMS = ("hub.services.", "jupyterhub", "configurable-http-proxy", "idp/server.mjs")


def pytest_configure(config):
    """SIGTERM (a CI timeout, `kill`) ends the session the way Ctrl-C does: pytest then runs
    every fixture's teardown, so stacks, sites and servers a test started are stopped; the
    default would end the process at once and leave them running."""
    import signal

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, interrupted)


def pytest_sessionfinish(session, exitstatus):
    if stop_leaked_processes(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _EXIT_STATUS["status"] = int(session.exitstatus)


def _session_basetemp(config) -> Path | None:
    """This session's temporary folder, if a test made one (none made: nothing to look for)."""
    factory = getattr(config, "_tmp_path_factory", None)
    return getattr(factory, "_basetemp", None)


def stop_leaked_processes(config) -> list[str]:
    """No process of the project may outlive the session: every stack's process (IdP, hub,
    proxy, services) names its state folder in VISITING_STATE_DIR, and the tests' state
    folders are in this session's temporary folder (see session_processes). Those still
    running are stopped and named, and the session fails. A demo the user started (its
    state outside the temporary folder) and other sessions' stacks (their own temporary
    folders) are not touched."""
    from hub.demo.processes import stop_pids

    base = _session_basetemp(config)
    if base is None:
        return []
    leaked = session_processes(Path(base))
    if not leaked:
        return []
    lines = list(leaked.values())
    stop_pids(leaked, LEAK_STOP_SECONDS)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else (lambda line, **_: print(line, file=sys.stderr))
    if reporter:
        reporter.write_sep("=", f"{len(lines)} process(es) left running by the tests", red=True)
    for line in lines:
        write(line, red=True)
    write("they were stopped now; the session fails (a test or fixture must stop what it starts)")
    return lines


def session_processes(base: Path) -> dict[int, str]:
    """pid -> a line naming it, for each live process of the project that is this session's:
    its VISITING_STATE_DIR is in `base` (a stack's process), or it runs one of the project's
    programs with its working folder in `base` (one a test started by hand)."""
    from hub.demo.processes import processes_of

    found = {
        pid: f"  pid {pid}{_service(env)}: {_cmdline(pid)}  "
        f"[VISITING_STATE_DIR={env.get('VISITING_STATE_DIR')}]"
        for pid, env in processes_of(base, inside=True).items()
    }
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in found or pid == os.getpid():
            continue
        cmdline = _cmdline(pid)
        if not any(program in cmdline for program in PROJECT_PROGRAMS):
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd == str(base) or cwd.startswith(f"{base}/"):
            found[pid] = f"  pid {pid}: {cmdline}  [working folder {cwd}]"
    return found


def _cmdline(pid: int) -> str:
    from hub.demo.ports import cmdline_of

    return cmdline_of(pid)[:200]


def _service(env: dict[str, str]) -> str:
    service = env.get("JUPYTERHUB_SERVICE_NAME")
    return f" (service {service})" if service else ""


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
