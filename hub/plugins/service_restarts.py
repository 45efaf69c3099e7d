"""The hub restarts a managed service whose process exits, says so in its log, and keeps count.

JupyterHub 6 restarts a managed service whose process it finds gone
(`Service._proc_stopped`), but only at its next poll of that process, every
30 s, and it keeps no count: a service that keeps dying (its port taken, a
bad platform file) looks no different from one that never did. Here, in the
hub's process:

- each managed service's process is polled every few seconds, so a dead
  enforcer is back within seconds;
- each start and each restart is logged and written to the state folder's
  `services.json` (pid, start time, restarts since the hub started, the last
  restart's time and the exit status before it), which the admin page shows
  the secretariat and the site admins.

Only the hub writes the file; a new hub starts it afresh.
"""

from __future__ import annotations

import functools
import json
import os
from datetime import UTC, datetime
from pathlib import Path

#: the file in the state folder in which the hub records its services' starts and restarts
SERVICE_STATUS_FILE = "services.json"


class ServiceRecord:
    """The hub's record of its managed services' processes, in `<state>/services.json`."""

    def __init__(self, path: Path, hub_pid: int | None = None, now=lambda: datetime.now(UTC)):
        self.path = path
        self.hub_pid = os.getpid() if hub_pid is None else hub_pid
        self.now = now

    def load(self) -> dict:
        """{"hub_pid", "services": {name: {...}}}; empty for a file of another hub, or none."""
        data = read_service_status_file(self.path)
        if data.get("hub_pid") != self.hub_pid:
            return {"hub_pid": self.hub_pid, "services": {}}
        return data

    def started(self, name: str, pid: int) -> dict:
        """A process of `name` started (the first time, or again after an exit)."""
        data = self.load()
        entry = data["services"].setdefault(
            name, {"restarts": 0, "last_restart": None, "last_exit_status": None}
        )
        entry.update(pid=pid, started=self.now().isoformat())
        self._write(data)
        return entry

    def exited(self, name: str, status: int | None) -> int:
        """A process of `name` exited and will be started again; returns the restart's number."""
        data = self.load()
        entry = data["services"].setdefault(name, {"restarts": 0})
        entry["restarts"] = entry.get("restarts", 0) + 1
        entry["last_restart"] = self.now().isoformat()
        entry["last_exit_status"] = status
        entry["pid"] = None
        self._write(data)
        return entry["restarts"]

    def _write(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)


def read_service_status_file(path: Path) -> dict:
    """The record as the hub last wrote it; {} when there is none (yet) or it is unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("services"), dict) else {}


def read_service_status(state_dir: Path) -> dict[str, dict]:
    """name -> {pid, started, restarts, last_restart, last_exit_status} from the hub's record."""
    return read_service_status_file(Path(state_dir) / SERVICE_STATUS_FILE).get("services", {})


#: what watch_managed_services patched into JupyterHub's Service, read at each call
_WATCH: dict = {}


def watch_managed_services(state_dir: Path, poll_seconds: int) -> None:
    """Make this hub poll its managed services every `poll_seconds` and record (re)starts.

    Patches `jupyterhub.services.service.Service` once per process; a later call
    changes only where and how often.
    """
    from jupyterhub.services.service import Service

    _WATCH["record"] = ServiceRecord(Path(state_dir) / SERVICE_STATUS_FILE)
    _WATCH["poll_seconds"] = max(1, int(poll_seconds))
    if getattr(Service, "_visiting_watched", False):
        return
    Service.start = _recorded_start(Service.start)
    Service._proc_stopped = _recorded_exit(Service._proc_stopped)
    Service._visiting_watched = True


def _recorded_start(start):
    @functools.wraps(start)
    async def wrapper(self):
        await start(self)
        spawner, poll = self.spawner, _WATCH["poll_seconds"]
        if spawner is not None and spawner.poll_interval != poll:
            spawner.poll_interval = poll
            spawner.start_polling()  # JupyterHub's service spawner takes no config of its own
        if self.proc is not None:
            _WATCH["record"].started(self.name, self.proc.pid)
            self.log.info("Service %s runs as pid %d", self.name, self.proc.pid)

    return wrapper


def _recorded_exit(proc_stopped):
    @functools.wraps(proc_stopped)
    def wrapper(self):
        status = self.proc.returncode if self.proc is not None else None
        n = _WATCH["record"].exited(self.name, status)
        self.log.error(
            "Service %s exited with status %s; restarting it (restart %d since the hub started)",
            self.name,
            status,
            n,
        )
        return proc_stopped(self)  # JupyterHub logs the exit and starts the service again

    return wrapper
