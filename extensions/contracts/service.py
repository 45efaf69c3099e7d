"""What a process the hub starts agrees on with the hub: its life ends with the hub's, and it
answers a health route.

The hub starts each managed service (the audit intake, the enforcer, the admin
and catalogue services, a site's gateway when it runs beside the hub) as a
child process in a session of its own and stops it with SIGINT when the hub
stops cleanly. A hub that dies hard (SIGKILL, a crash, the machine's OOM
killer) stops nothing: its services would keep their ports and answer from a
state folder nobody runs any more, and the next hub's services could not
start. So a service started by a hub ends with that hub:

- on Linux the kernel sends it SIGTERM when the hub dies
  (`prctl(PR_SET_PDEATHSIG)`);
- it checks at start that its parent is still the hub that started it (the hub
  may have died before the service asked the kernel), and keeps checking
  every second (a second line where prctl is not available);
- SIGTERM stops it as SIGINT does, and a service that does not stop within a
  few seconds ends anyway.

The hub names its own pid in VISITING_HUB_PID (`HUB_PID_ENV`). A service
started otherwise (a site's gateway container, a developer's shell) runs on
its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from urllib.parse import urlsplit

from tornado import web

log = logging.getLogger("visiting.services")

#: the environment variable in which the hub names its pid to the services it starts
HUB_PID_ENV = "VISITING_HUB_PID"

#: how long a service may take to stop after SIGTERM before it ends without cleaning up
STOP_GRACE_SECONDS = 5.0

#: how often a service checks that its hub is still its parent
HUB_CHECK_SECONDS = 1.0

PR_SET_PDEATHSIG = 1


class HealthHandler(web.RequestHandler):
    """GET <prefix>health: 200 {"status": "ok"} while the service's loop answers; no login."""

    def get(self):
        self.set_header("Cache-Control", "no-store")
        self.finish({"status": "ok"})


def health_route(prefix: str) -> tuple:
    """The health route under a service's prefix ('/services/audit/' -> '/services/audit/health')."""
    return (prefix + "health", HealthHandler)


def hub_pid_from_env(environ=None) -> int | None:
    """The pid of the hub that started this service, or None when no hub did."""
    value = (os.environ if environ is None else environ).get(HUB_PID_ENV, "")
    return int(value) if value.isdigit() else None


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` when the parent dies; False where it cannot (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def stop_on_sigterm(grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM stops the service as SIGINT does (KeyboardInterrupt in the main thread); one
    that has not exited `grace` seconds later (a thread stuck on a call) ends at once."""

    def stop(signum, _frame):
        log.info("signal %s: stopping", signal.Signals(signum).name)
        threading.Thread(
            target=_exit_after, args=(grace, 128 + signum), name="stop-grace", daemon=True
        ).start()
        signal.signal(signum, signal.SIG_DFL)  # a second SIGTERM ends it at once
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def _exit_after(seconds: float, status: int) -> None:
    time.sleep(seconds)
    log.warning("not stopped within %.0f s; exiting now", seconds)
    logging.shutdown()
    os._exit(status)


def watch_hub(hub_pid: int, interval: float = HUB_CHECK_SECONDS) -> threading.Thread:
    """A daemon thread that sends this process SIGTERM once `hub_pid` is no longer its parent."""

    def watch():
        while os.getppid() == hub_pid:
            time.sleep(interval)
        log.warning("the hub (pid %d) is gone: stopping", hub_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="hub-watch", daemon=True)
    thread.start()
    return thread


def follow_the_hub(environ=None) -> None:
    """Tie this service's life to the hub's; call first thing in a service's main().

    Exits at once (status 1) when the hub that started it has already gone.
    """
    stop_on_sigterm()
    hub_pid = hub_pid_from_env(environ)
    if hub_pid is None:
        return
    if not die_with_parent():
        log.info("no parent-death signal on this system; watching the hub's pid only")
    if os.getppid() != hub_pid:
        log.error("the hub that started this service (pid %d) is gone; not starting", hub_pid)
        sys.exit(1)
    watch_hub(hub_pid)


def service_port(url: str) -> int:
    """The port a service listens on, from its JUPYTERHUB_SERVICE_URL (e.g. http://127.0.0.1:8084).

    A URL without an explicit port is refused: the hub always gives its services one.
    """
    try:
        port = urlsplit(url).port
    except ValueError as e:
        raise ValueError(f"JUPYTERHUB_SERVICE_URL {url!r}: {e}") from None
    if port is None:
        raise ValueError(f"JUPYTERHUB_SERVICE_URL {url!r} names no port")
    return port
