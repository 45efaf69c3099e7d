"""Processes of a stack: each child in its own session (process group) with a pid file and a
log file, stopped by signalling its group; and the processes found by the state folder
their environment names (the hub's proxy and services, which the hub starts itself).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from hub.demo import StackError


class ManagedProcess:
    """One child process in its own process group, with a pid file and a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], state_dir: Path, cwd: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.pid_file = state_dir / "pids" / f"{name}.pid"
        self.log_file = state_dir / "logs" / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        self.pid_file.write_text(str(self.proc.pid))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise StackError(
                    f"{self.name} exited with status {self.proc.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            if ready():
                return
            time.sleep(0.2)
        raise StackError(
            f"{self.name} was not ready after {timeout:.0f} s; last lines of {self.log_file}:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and _signal_group(self.proc.pid, signal.SIGTERM):
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            _wait_group_gone(self.proc.pid, timeout)
        self.pid_file.unlink(missing_ok=True)


def stop_pid_file(pid_file: Path, timeout: float = 15.0) -> bool:
    """Stop the process group recorded in `pid_file` (started by another process).

    True if something of it was still running. The whole group goes, not only
    its leader.
    """
    try:
        pgid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    running = bool(_live_members(pgid))
    if running:
        _signal_group(pgid, signal.SIGTERM)
        _wait_group_gone(pgid, timeout)
    pid_file.unlink(missing_ok=True)
    return running


def _live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that are not zombies.

    A killed process whose parent has gone waits as a zombie until PID 1 reaps
    it, which can take a while in a container; it still counts for killpg, but
    nothing of it runs.
    """
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _wait_group_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _live_members(pgid):
            return
        time.sleep(0.1)
    _signal_group(pgid, signal.SIGKILL)


STATE_DIR_ENV = "VISITING_STATE_DIR"
SERVICE_NAME_ENV = "JUPYTERHUB_SERVICE_NAME"


def _environ(pid: int) -> dict[str, str]:
    """A process's environment; {} when it is gone, a zombie, or another user's."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def processes_of(state_dir: Path, inside: bool = False) -> dict[int, dict[str, str]]:
    """pid -> environment of the live processes (not this one) whose VISITING_STATE_DIR is
    `state_dir`, or with `inside`, `state_dir` or any folder under it.

    Every process of a stack has it: the IdP, the hub, its proxy and its services.
    """
    base = str(state_dir).rstrip("/")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        env = _environ(int(entry.name))
        value = env.get(STATE_DIR_ENV, "").rstrip("/")
        if value == base or (inside and value.startswith(base + "/")):
            found[int(entry.name)] = env
    return found


def services_of(state_dir: Path) -> list[int]:
    """Pids of hub-managed services started for this state folder.

    The hub starts its services in sessions of their own and stops them with
    SIGINT; a service ends with its hub (extensions.contracts.service), but one of an
    older version, or one that does not stop, keeps running (and holding its
    port). Their environment names the state folder, which is how they are found.
    """
    return [pid for pid, env in processes_of(state_dir).items() if SERVICE_NAME_ENV in env]


def stop_services_of(state_dir: Path, timeout: float = 10.0) -> list[str]:
    """Stop the services left running for this state folder; returns their names."""
    found = {
        pid: env[SERVICE_NAME_ENV]
        for pid, env in processes_of(state_dir).items()
        if env.get(SERVICE_NAME_ENV)
    }
    stop_pids(found, timeout)
    return sorted(set(found.values()))


def stop_pids(pids, timeout: float = 10.0) -> None:
    """SIGTERM to each of `pids`; SIGKILL to those still running `timeout` s later."""
    pids = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (pids := [p for p in pids if _alive(p)]):
            time.sleep(0.1)
        if not pids:
            return


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False
