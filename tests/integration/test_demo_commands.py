"""`visiting demo up` / `demo down` (behind `make demo-up` / `make demo-down`) start and stop
exactly their own processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub.stack import free_port, http_ok, port_in_use

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def visiting(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_up_then_down(tmp_path):
    ports = {name: free_port() for name in ("hub", "idp", "hub-api", "proxy-api")}
    env = dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "state"))
    env.pop("VISITING_CLOCK_FILE", None)
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        up = visiting("demo", "up", "--no-data", "--no-sites", *flags, env=env)
        assert up.returncode == 0, up.stderr
        hub = f"http://127.0.0.1:{ports['hub']}"
        assert f"Visiting workspace demo is up: {hub}/" in up.stdout
        assert "tanaka" in up.stdout and "DEMO ONLY" in up.stdout
        assert http_ok(f"{hub}/hub/health")
        assert http_ok(f"http://127.0.0.1:{ports['idp']}/.well-known/openid-configuration")
        pids = sorted(p.name for p in (tmp_path / "state" / "pids").iterdir())
        assert pids == ["hub.pid", "idp.pid"]

        again = visiting("demo", "up", "--no-data", "--no-sites", *flags, env=env)
        assert again.returncode == 2
        assert f"port {ports['hub']} (hub) on 127.0.0.1 is already in use" in again.stderr

        down = visiting("demo", "down", env=env)
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == "stopped: hub, idp"
        for name, port in ports.items():
            assert not port_in_use(port), f"{name} port {port} still open after down"
        assert not any((tmp_path / "state" / "pids").iterdir())
        assert bystander.poll() is None, "demo down must not touch processes it did not start"

        nothing = visiting("demo", "down", env=env)
        assert nothing.stdout.strip() == "stopped: nothing was running"
    finally:
        visiting("demo", "down", env=env)
        bystander.kill()


@pytest.mark.parametrize(
    "flag,message",
    [
        pytest.param(
            "--hub-port=80", "argument --hub-port: 80 is outside 1024-65535", id="privileged-port"
        ),
        pytest.param(
            "--idp-port=http", "argument --idp-port: 'http' is not a port number", id="not-a-number"
        ),
    ],
)
def test_bad_port_flag(tmp_path, flag, message):
    env = dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "state"))
    r = visiting("demo", "up", "--no-data", "--no-sites", flag, env=env)
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "state" / "pids").exists()


def test_down_after_the_hub_died_hard(tmp_path):
    """A hub killed with SIGKILL cannot stop its proxy; `demo down` still leaves nothing behind."""
    import signal

    ports = {name: free_port() for name in ("hub", "idp", "hub-api", "proxy-api")}
    env = dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "state"))
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    try:
        assert visiting("demo", "up", "--no-data", "--no-sites", *flags, env=env).returncode == 0
        hub_pid = int((tmp_path / "state" / "pids" / "hub.pid").read_text())
        os.killpg(hub_pid, signal.SIGKILL)
        assert port_in_use(ports["hub"]), "the proxy outlives a hard-killed hub"
        down = visiting("demo", "down", env=env)
        assert down.stdout.strip() == "stopped: idp, proxy"
        for name, port in ports.items():
            assert not port_in_use(port), f"{name} port {port} still open after down"
    finally:
        visiting("demo", "down", env=env)
