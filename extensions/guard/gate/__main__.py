"""`python -m extensions.guard.gate launch [command...]` (root) or `serve --fd N --prefix P` (gate)."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from ...contracts.environment import AUDIT_URL, EGRESS_RULES, TERMINALS
from . import STATE_DIR, UPSTREAM_PORT

log = logging.getLogger("visiting.gate")

PR_SET_DUMPABLE = 4
ASSET_DIRS = ("share/jupyter/lab", "share/jupyter/labextensions", "share/jupyter/nbconvert")


def not_dumpable() -> None:
    """No core dumps and no /proc/<pid>/mem for anyone but root, whatever the uid."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except OSError:
        log.warning("could not mark the gate non-dumpable")


def asset_digests(prefix: str = sys.prefix) -> set[bytes]:
    """Digests of JupyterLab's own files as the image ships them (root-owned, read-only)."""
    from .judge import digest

    roots = [Path(prefix, d) for d in ASSET_DIRS]
    try:
        import jupyter_server

        roots.append(Path(jupyter_server.__file__).parent / "static")
    except ImportError:
        pass
    out: set[bytes] = set()
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = os.path.join(dirpath, name)
                try:
                    if os.path.getsize(p) > 64 * 1024 * 1024:
                        continue
                    with open(p, "rb") as f:
                        out.add(digest(f.read()))
                except OSError:
                    continue
    return out


def wait_for_upstream(upstream: str, timeout: float = 600) -> None:
    """The gate accepts connections only once the server behind it answers (the hub waits)."""
    parts = urlsplit(upstream)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"visiting-gate: no server at {upstream} after {timeout:.0f} s")


def build_gate(prefix: str, environ=os.environ):
    from ...contracts.clock import clock_from_env
    from ...contracts.egress import EgressRules
    from ..context import ServerContext
    from ..events import EventShipper, EventSpool
    from ..meter import EgressMeter
    from ..recognise import Cohort, Recogniser
    from .events import GateEvents
    from .judge import Gate

    context = ServerContext.from_env(environ)
    clock = clock_from_env(environ)
    state = Path(environ.get("VISITING_GATE_STATE", STATE_DIR))
    upstream = environ.get("VISITING_GATE_UPSTREAM", f"http://127.0.0.1:{UPSTREAM_PORT}")
    rules = EgressRules.from_env(environ.get(EGRESS_RULES))
    cohort = Cohort.from_data(
        environ.get("VISITING_DATA_ROOT", "/data"), list(context.datasets) or None
    )
    recogniser = Recogniser(cohort)
    meter = EgressMeter(rules, clock, state / "meter.json")
    spool = EventSpool(state / "spool")
    url = environ.get(AUDIT_URL)
    shipper = EventShipper(spool, url, environ.get("JUPYTERHUB_API_TOKEN")) if url else None
    events = GateEvents(context, clock, spool, shipper)
    gate = Gate(
        prefix=prefix,
        recogniser=recogniser,
        rules=rules,
        meter=meter,
        events=events,
        max_bytes=context.rules.max_bytes,
        terminals=environ.get(TERMINALS, "guarded"),
        downloads=context.rules.downloads,
        upstream=upstream,
    )
    return gate, shipper


async def serve(fd: int, prefix: str) -> None:
    from tornado import httpclient
    from tornado.httpserver import HTTPServer

    from .proxy import make_app

    not_dumpable()
    gate, shipper = build_gate(prefix)
    limit = gate.max_bytes + 1024 * 1024
    httpclient.AsyncHTTPClient.configure(None, max_body_size=limit, max_buffer_size=limit)
    loop = asyncio.get_running_loop()
    gate.assets = await loop.run_in_executor(None, asset_digests)
    await loop.run_in_executor(None, wait_for_upstream, gate.upstream)
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    server = HTTPServer(make_app(gate), max_body_size=1024**3, xheaders=False)
    server.add_sockets([sock])
    if shipper is not None:
        shipper.start()
    gate.events.emit(
        "gate-start",
        pid=os.getpid(),
        cohort_people=len(gate.recogniser.cohort or ()),
        terminals=gate.terminals,
        downloads=gate.downloads,
    )
    log.info(
        "visiting-gate: %s on fd %d for %s, %d cohort people, %d asset digests",
        prefix,
        fd,
        gate.upstream,
        len(gate.recogniser.cohort or ()),
        len(gate.assets),
    )
    tally = asyncio.ensure_future(_tallies(gate))
    stop = asyncio.Event()
    for sig in (15, 2):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    tally.cancel()
    gate.events.tallies(gate.meter, force=True)
    gate.meter.close()
    server.stop()
    if shipper is not None:
        await shipper.stop()


async def _tallies(gate, every: float = 10.0) -> None:
    """The ledger's lines as the meter hands them out (it spaces today's; a past day's at once)."""
    while True:
        await asyncio.sleep(every)
        try:
            gate.events.tallies(gate.meter)
        except Exception:
            log.exception("could not write the egress ledger's lines")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extensions.guard.gate")
    sub = parser.add_subparsers(dest="command", required=True)
    launch = sub.add_parser("launch", help="the container's first process (root)")
    launch.add_argument("cmd", nargs=argparse.REMAINDER)
    s = sub.add_parser("serve", help="the gate itself (user gate)")
    s.add_argument("--fd", type=int, required=True)
    s.add_argument("--prefix", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[gate %(levelname)s %(asctime)s] %(message)s")
    if args.command == "launch":
        from .launch import main as launch_main

        cmd = [c for c in args.cmd if c != "--"]
        return launch_main(cmd)
    asyncio.run(serve(args.fd, args.prefix))
    return 0


if __name__ == "__main__":
    sys.exit(main())
