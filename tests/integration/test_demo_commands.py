"""`visiting demo up` / `demo down` (behind `make demo-up` / `make demo-down`) start and stop
exactly their own processes, on ports the caller chooses, and refuse a port that is taken.

Every stack here runs on free ports for every process (hub, IdP, APIs, services,
gateways): never on the demo's own, which a user's demo may hold.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.cli.demo import DEMO_PORTS
from hub.demo.ports import free_port, port_in_use
from hub.demo.processes import processes_of
from hub.demo.stack import http_ok
from hub.platform.policy import load_policy_dir

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SITES = list(load_policy_dir(REPO / "policies" / "demo").platform.sites)
SERVICES = ["audit", "enforcer", "admin", "catalogue", "export"] + [f"gateway-{s}" for s in SITES]


def visiting(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@dataclass
class DemoPorts:
    """A free loopback port for every port flag of `demo up`, none of them the demo's own."""

    ports: dict[str, int]  # flag without "--" and "-port" ("hub", "audit", ...) -> port
    gateways: dict[str, int]  # site -> port

    @classmethod
    def free(cls) -> DemoPorts:
        taken: set[int] = set(DEMO_PORTS.values()) | set(range(8090, 8090 + len(SITES)))

        def fresh() -> int:
            while (port := free_port()) in taken:
                pass
            taken.add(port)
            return port

        return cls(
            {flag.removesuffix("-port"): fresh() for flag in DEMO_PORTS},
            {site: fresh() for site in SITES},
        )

    @property
    def flags(self) -> list[str]:
        return [f"--{name}-port={port}" for name, port in self.ports.items()] + [
            f"--gateway-port={site}={port}" for site, port in self.gateways.items()
        ]

    def every(self) -> dict[str, int]:
        """name -> port of every process's port."""
        return self.ports | {f"gateway-{s}": p for s, p in self.gateways.items()}


@pytest.fixture
def demo_env(tmp_path):
    env = dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "state"))
    env.pop("VISITING_CLOCK_FILE", None)
    yield env
    visiting("demo", "down", env=env)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def assert_nothing_left(state: Path, ports: DemoPorts) -> None:
    for name, port in ports.every().items():
        assert not port_in_use(port), f"{name} port {port} still open"
    left = processes_of(state)
    assert not left, f"processes of {state} still running: {sorted(left)}"


def test_up_then_down(tmp_path, demo_env):
    ports = DemoPorts.free()
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        up = visiting("demo", "up", "--no-data", "--no-sites", *ports.flags, env=demo_env)
        assert up.returncode == 0, up.stderr
        hub = f"http://127.0.0.1:{ports.ports['hub']}"
        assert f"Visiting workspace demo is up: {hub}/" in up.stdout
        assert "tanaka" in up.stdout and "DEMO ONLY" in up.stdout
        assert http_ok(f"{hub}/hub/health")
        assert http_ok(f"http://127.0.0.1:{ports.ports['idp']}/.well-known/openid-configuration")
        # "up" means every service answers, each on the port it was given
        for name in SERVICES:
            assert http_ok(f"{hub}/services/{name}/health"), name
        for name, port in ports.every().items():
            if name not in ("hub", "idp", "hub-api", "proxy-api"):
                assert http_ok(f"http://127.0.0.1:{port}/services/{name}/health"), name
        pids = sorted(p.name for p in (tmp_path / "state" / "pids").iterdir())
        assert pids == ["hub.pid", "idp.pid"]

        again = visiting("demo", "up", "--no-data", "--no-sites", *ports.flags, env=demo_env)
        assert again.returncode == 2
        assert f"port {ports.ports['hub']} (hub) on 127.0.0.1 is already in use" in again.stderr

        down = visiting("demo", "down", env=demo_env)
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == "stopped: hub, idp"
        assert_nothing_left(tmp_path / "state", ports)
        assert not any((tmp_path / "state" / "pids").iterdir())
        assert bystander.poll() is None, "demo down must not touch processes it did not start"

        nothing = visiting("demo", "down", env=demo_env)
        assert nothing.stdout.strip() == "stopped: nothing was running"
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize(
    "flag,message",
    [
        pytest.param(
            "--hub-port=80", "argument --hub-port: 80 is outside 1024-65535", id="privileged-port"
        ),
        pytest.param(
            "--idp-port=http", "argument --idp-port: 'http' is not a port number", id="not-a-number"
        ),
        pytest.param(
            "--enforcer-port=0", "argument --enforcer-port: 0 is outside 1024-65535", id="service"
        ),
        pytest.param(
            "--gateway-port=nig",
            "argument --gateway-port: 'nig' is not SITE=PORT",
            id="gateway-without-port",
        ),
        pytest.param(
            "--gateway-port=atlantis=18090",
            "--gateway-port: unknown site 'atlantis' (known: nig, ",
            id="gateway-unknown-site",
        ),
    ],
)
def test_bad_port_flag(tmp_path, flag, message):
    env = dict(os.environ, VISITING_STATE_DIR=str(tmp_path / "state"))
    r = visiting("demo", "up", "--no-data", "--no-sites", flag, env=env)
    assert r.returncode == 2 and message in r.stderr
    assert not (tmp_path / "state" / "pids").exists()


def test_a_port_given_twice_is_refused(tmp_path, demo_env):
    ports = DemoPorts.free()
    ports.ports["catalogue"] = ports.ports["audit"]
    r = visiting("demo", "up", "--no-data", "--no-sites", *ports.flags, env=demo_env)
    assert r.returncode == 2
    assert f"port {ports.ports['audit']} is given to both audit and catalogue" in r.stderr
    assert not (tmp_path / "state" / "pids").exists()


@pytest.mark.parametrize(
    "taken",
    [
        "hub",
        "idp",
        "hub-api",
        "proxy-api",
        "audit",
        "enforcer",
        "admin",
        "catalogue",
        "gateway-nig",
    ],
)
def test_up_refuses_a_taken_port_and_names_its_holder(tmp_path, demo_env, taken):
    """A port any process of the demo needs is held by this test: `demo up` says which port,
    for what, and who holds it (this process), and starts nothing."""
    ports = DemoPorts.free()
    port = ports.every()[taken]
    what = {"idp": "OIDC provider", "hub-api": "hub API", "proxy-api": "proxy API"}.get(
        taken, taken
    )
    me = Path("/proc/self/comm").read_text().strip()
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        r = visiting("demo", "up", "--no-data", "--no-sites", *ports.flags, env=demo_env)
    assert r.returncode == 2, r.stdout
    line = f"port {port} ({what}) on 127.0.0.1 is already in use by pid {os.getpid()} ({me}"
    assert line in r.stderr, r.stderr
    assert "nothing was started" in r.stderr
    assert "is up" not in r.stdout
    assert not (tmp_path / "state" / "pids").exists()
    assert_nothing_left(tmp_path / "state", ports)


@pytest.mark.parametrize("kill", ["process-group", "hub-alone"])
def test_down_after_the_hub_died_hard(tmp_path, demo_env, kill):
    """A hub killed with SIGKILL cannot stop its services or its proxy: the services end
    with it by themselves; `demo down` stops the proxy and the IdP and leaves nothing behind."""
    state = tmp_path / "state"
    ports = DemoPorts.free()
    up = visiting("demo", "up", "--no-data", "--no-sites", *ports.flags, env=demo_env)
    assert up.returncode == 0, up.stderr
    hub_pid = int((state / "pids" / "hub.pid").read_text())
    services = {
        env["JUPYTERHUB_SERVICE_NAME"]: pid
        for pid, env in processes_of(state).items()
        if "JUPYTERHUB_SERVICE_NAME" in env
    }
    assert sorted(services) == sorted(SERVICES)
    if kill == "process-group":
        os.killpg(hub_pid, signal.SIGKILL)
    else:
        os.kill(hub_pid, signal.SIGKILL)
    assert wait_until(lambda: not set(services.values()) & set(processes_of(state)), 15), (
        "services outlived their hub"
    )
    for name in SERVICES:
        port = ports.every()[name]
        assert wait_until(lambda port=port: not port_in_use(port), 5), f"{name} port {port}"
    assert port_in_use(ports.ports["hub"]), "the proxy outlives a hard-killed hub"
    down = visiting("demo", "down", env=demo_env)
    assert down.stdout.strip() == "stopped: idp, proxy"
    assert_nothing_left(state, ports)


def test_down_stops_services_left_running(tmp_path, demo_env):
    """A service that outlived its hub (one that ignores SIGINT, from an older version) is
    found by the state folder in its environment, stopped, and named."""
    state = tmp_path / "state"
    code = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"
    env = dict(demo_env, JUPYTERHUB_SERVICE_NAME="enforcer")
    orphan = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        assert wait_until(lambda: orphan.pid in processes_of(state), 10)
        down = visiting("demo", "down", env=demo_env)
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip() == "stopped: enforcer"
        assert orphan.wait(10) is not None
    finally:
        orphan.kill()
        orphan.wait()
