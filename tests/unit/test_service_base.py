"""A hub-managed service ends with the hub that started it, however the hub ends, and stops
promptly on SIGTERM (extensions.contracts.service)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SERVICE = textwrap.dedent(
    """
    import sys, time
    import extensions.contracts.service as base
    if "--no-prctl" in sys.argv:
        base.die_with_parent = lambda *a: False
    base.follow_the_hub()
    try:
        print("serving", flush=True)
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:
        print("stopped", flush=True)
    """
)

# a stand-in for the hub: starts the service as JupyterHub does (a session of its own,
# VISITING_HUB_PID naming itself), prints the service's pid, and waits to be killed
HUB = textwrap.dedent(
    """
    import os, subprocess, sys, time
    env = dict(os.environ, VISITING_HUB_PID=str(os.getpid()))
    child = subprocess.Popen(
        [sys.executable, "-c", sys.argv[1], *sys.argv[2:]], env=env, start_new_session=True
    )
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running(pid):
        time.sleep(0.05)
    return not running(pid)


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(REPO))
    e.pop("VISITING_HUB_PID", None)
    return e


@pytest.mark.parametrize(
    "how", ["parent-death-signal", "pid-watch"], ids=["parent-death-signal", "pid-watch"]
)
def test_a_service_ends_when_its_hub_is_killed(how):
    args = ["--no-prctl"] if how == "pid-watch" else []
    hub = subprocess.Popen(
        [sys.executable, "-c", HUB, SERVICE, *args],
        env=env(),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    service = int(hub.stdout.readline())
    try:
        time.sleep(1.0)  # the service is up and watching
        assert running(service)
        hub.kill()
        hub.wait()
        assert wait_gone(service, 5), "the service outlived its hub"
    finally:
        if running(service):
            os.kill(service, signal.SIGKILL)


def test_a_service_whose_hub_is_already_gone_does_not_start():
    # pid 1 is not this service's parent: its hub is gone before it started
    r = subprocess.run(
        [sys.executable, "-c", SERVICE],
        env=env() | {"VISITING_HUB_PID": "1"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1 and "serving" not in r.stdout
    assert "the hub that started this service (pid 1) is gone; not starting" in r.stderr


def test_a_service_without_a_hub_runs_on_its_own_and_sigterm_stops_it():
    p = subprocess.Popen(
        [sys.executable, "-c", SERVICE], env=env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert p.stdout.readline().strip() == "serving"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert p.wait(5) == 0 and time.monotonic() - t0 < 2
        assert p.stdout.read().strip() == "stopped"
    finally:
        p.kill()
        p.wait()


def test_a_service_stuck_after_sigterm_ends_after_the_grace():
    stuck = textwrap.dedent(
        """
        import time
        from extensions.contracts.service import stop_on_sigterm
        stop_on_sigterm(grace=0.5)
        serving = False
        while True:
            try:
                if not serving:
                    print("serving", flush=True)
                    serving = True
                time.sleep(0.1)
            except KeyboardInterrupt:
                pass  # a thread, a library that swallows it: still running
        """
    )
    p = subprocess.Popen([sys.executable, "-c", stuck], env=env(), stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"serving"
        p.send_signal(signal.SIGTERM)
        assert p.wait(5) == 128 + signal.SIGTERM
    finally:
        p.kill()
        p.wait()
