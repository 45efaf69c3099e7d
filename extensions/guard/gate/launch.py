"""The container's first process: the gate in front, the Jupyter server behind it.

Runs as root with three capabilities only (bind a privileged port, change
user and group; the spawner drops every other one and sets no-new-privileges):

1. binds the port the hub's proxy routes to (from JUPYTERHUB_SERVICE_URL, a
   port below 1024: the spawner sets net.ipv4.ip_unprivileged_port_start so
   no other user in the container can bind it, even after the gate is gone);
2. starts the gate as user `gate` on that socket;
3. starts the Jupyter server (with its tutorials and Dask, `visiting-singleuser`)
   as `jovyan`, listening on the container's loopback only;
4. waits: when either ends, it stops the other and the container ends. A server
   without its gate is never reachable.

Neither child can signal, trace or read this process or each other: they run
under different users without capabilities.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from ...contracts.environment import TERMINALS
from . import GATE_GID, GATE_UID, SERVER_GID, SERVER_UID, UPSTREAM_PORT

# what the gate process keeps of the environment (the server's token ships its events)
GATE_ENV_PREFIXES = ("VISITING_", "JUPYTERHUB_")
GATE_ENV_NAMES = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH")


def split_service_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.port:
        raise SystemExit(
            f"visiting-gate: JUPYTERHUB_SERVICE_URL must be http://host:port/..., not {url!r}"
        )
    return parts.hostname or "0.0.0.0", parts.port, parts.path or "/"


def behind(url: str) -> str:
    """The server's own URL: the same path on the container's loopback."""
    parts = urlsplit(url)
    return urlunsplit(("http", f"127.0.0.1:{UPSTREAM_PORT}", parts.path, "", ""))


def gate_env(environ) -> dict:
    env = {
        k: v for k, v in environ.items() if k.startswith(GATE_ENV_PREFIXES) or k in GATE_ENV_NAMES
    }
    env["HOME"] = "/var/lib/visiting-gate"
    env["USER"] = "gate"
    return env


class LaunchRefused(Exception):
    """Why the launcher will not start: said on stderr, and the container ends with 2."""


def main(argv: list[str]) -> int:
    try:
        service_url, host, port, prefix = where_to_listen(os.environ)
    except LaunchRefused as e:
        print(f"visiting-gate: {e}", file=sys.stderr)
        return 2
    listener = bind_listener(host, port)
    gate = start_gate(listener.fileno(), prefix)
    listener.close()
    server = start_server(argv, os.environ, service_url, port)
    forward_signals(server, gate)
    return wait_for_either(gate, server)


def where_to_listen(environ) -> tuple[str, str, int, str]:
    """(service URL, host, port, prefix) of the gate, or LaunchRefused: not root, no service
    URL, or a port another user in the container could bind."""
    if os.getuid() != 0:
        raise LaunchRefused("the launcher runs as root and starts the server itself")
    service_url = environ.get("JUPYTERHUB_SERVICE_URL")
    if not service_url:
        raise LaunchRefused("JUPYTERHUB_SERVICE_URL is not set")
    host, port, prefix = split_service_url(service_url)
    if port >= 1024:
        raise LaunchRefused(
            f"the gate's port must be below 1024 (got {port}), so that no other "
            "user in the container can take it"
        )
    return service_url, host, port, prefix


def bind_listener(host: str, port: int) -> socket.socket:
    """The gate's listening socket, bound here as root and inherited by the gate."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0" if host in ("", "0.0.0.0", "*") else host, port))
    listener.listen(256)
    listener.set_inheritable(True)
    return listener


def start_gate(fd: int, prefix: str) -> subprocess.Popen:
    """The gate as user `gate`, serving on the inherited socket `fd`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "extensions.guard.gate",
            "serve",
            "--fd",
            str(fd),
            "--prefix",
            prefix,
        ],
        user=GATE_UID,
        group=GATE_GID,
        extra_groups=[],
        env=gate_env(os.environ),
        pass_fds=[fd],
        cwd="/",
    )


def server_env(environ, service_url: str, port: int) -> dict:
    """The server's environment: its URL behind the gate, and the user it runs as."""
    env = dict(environ)
    env["JUPYTERHUB_SERVICE_URL"] = behind(service_url)
    env["VISITING_GATE"] = f"{port}"
    env["USER"] = "jovyan"
    env["HOME"] = "/home/jovyan"
    return env


def start_server(argv: list[str], environ, service_url: str, port: int) -> subprocess.Popen:
    """The Jupyter server (`argv`, else `visiting-singleuser`) as `jovyan`, behind the gate."""
    command = argv or ["visiting-singleuser"]
    if environ.get(TERMINALS, "guarded") == "off":
        command = [*command, "--ServerApp.terminals_enabled=False"]
    return subprocess.Popen(
        command,
        user=SERVER_UID,
        group=SERVER_GID,
        extra_groups=[],
        env=server_env(environ, service_url, port),
        cwd="/home/jovyan",
        start_new_session=False,
    )


def forward_signals(server: subprocess.Popen, gate: subprocess.Popen) -> None:
    """SIGTERM, SIGINT and SIGHUP to this process go on to both children."""

    def forward(signum, _frame):
        for p in (server, gate):
            if p.poll() is None:
                p.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, forward)


def wait_for_either(gate: subprocess.Popen, server: subprocess.Popen) -> int:
    """When either child ends, stop the other; the server's exit code, or the gate's (never 0)."""
    children = {gate.pid: "gate", server.pid: "server"}
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid in children:
            which = children[pid]
            code = os.waitstatus_to_exitcode(status)
            other = server if which == "gate" else gate
            print(
                f"visiting-gate: the {which} ended ({code}); stopping the {'server' if which == 'gate' else 'gate'}",
                file=sys.stderr,
            )
            stop(other)
            return code if which == "server" else (code or 1)


def stop(child: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM, then SIGKILL when it has not ended within `grace` seconds."""
    child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if child.poll() is None:
        child.kill()
