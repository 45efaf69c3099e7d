"""A test session fails when a process of the project outlives it (tests/conftest.py): the
process is named and stopped; a process of a stack outside the session's temporary folder
(a user's demo, another session) is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LEAKY = textwrap.dedent(
    """
    import os, subprocess, sys

    def test_leaves_a_service_running(tmp_path):
        env = dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "state"),
                   JUPYTERHUB_SERVICE_NAME="enforcer")
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             env=env, start_new_session=True)
        open(os.environ["LEAK_PID_FILE"], "w").write(str(p.pid))

    def test_leaves_an_idp_running(tmp_path):
        # started by hand, not through a stack: no VISITING_STATE_DIR, its folder in tmp_path
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                              "idp/server.mjs"], cwd=tmp_path, start_new_session=True)
        open(os.environ["LEAK_PID_FILE"] + ".idp", "w").write(str(p.pid))
    """
)


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_a_process_left_running_fails_the_session_and_is_stopped(tmp_path):
    (tmp_path / "test_leaky.py").write_text(LEAKY)
    pid_file = tmp_path / "leak.pid"
    # a stack outside the session's temporary folder: a user's demo
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env=dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "users-demo")),
        start_new_session=True,
    )
    try:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "tests.conftest",
                "-p",
                "no:cacheprovider",
                f"--basetemp={tmp_path / 'inner'}",
                f"--rootdir={tmp_path}",
                str(tmp_path / "test_leaky.py"),
            ],
            cwd=REPO,
            env=dict(os.environ, LEAK_PID_FILE=str(pid_file)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        leaked = int(pid_file.read_text())
        idp = int(Path(f"{pid_file}.idp").read_text())
        assert "2 passed" in r.stdout
        assert r.returncode == 1, r.stdout
        assert "2 process(es) left running by the tests" in r.stdout
        assert f"pid {leaked} (service enforcer)" in r.stdout
        assert f"pid {idp}: " in r.stdout and "idp/server.mjs  [working folder " in r.stdout
        assert not running(leaked) and not running(idp)
        assert bystander.poll() is None, "a process outside the session's folder was stopped"
    finally:
        bystander.kill()
        bystander.wait()


def test_a_clean_session_passes(tmp_path):
    (tmp_path / "test_clean.py").write_text("def test_nothing(tmp_path):\n    pass\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",
            f"--rootdir={tmp_path}",
            str(tmp_path / "test_clean.py"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout
    assert "left running" not in r.stdout


class _Item:
    def __init__(self, path):
        self.path = path


def test_only_a_session_with_a_docker_tier_stops_the_engine():
    from tests.conftest import REPO_ROOT, may_start_the_engine

    unit = _Item(REPO_ROOT / "tests" / "unit" / "test_locks.py")
    integration = _Item(REPO_ROOT / "tests" / "integration" / "test_sites.py")
    browser = _Item(REPO_ROOT / "tests" / "e2e" / "test_journey.py")
    assert not may_start_the_engine([unit])
    assert may_start_the_engine([unit, integration])
    assert may_start_the_engine([browser])
