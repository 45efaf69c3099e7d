"""The enforcer: a hub-managed service that stops servers whose approval no longer allows them.

Built like jupyterhub-idle-culler: it asks the hub's API for the running
servers, decides per server with a pure function, and stops what must stop.
Its scopes are exactly `list:users`, `read:users:name`, `read:servers` and
`delete:servers`. The decision reads the approval registry against an
injectable clock. Every stop is written to the audit store with the
enforcer as the actor.

The guard in the container stops a server at the end of its period by
itself; the enforcer is the hub's own check, for a container that did not,
and for approvals that end early (revoked) or change while a server runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..access import approvals_at_site
from ..audit import AuditStore
from ..periods import Clock, clock_from_env
from ..policy import load_platform
from ..registry import ApprovalRegistry
from ..traits import PLATFORM_ENV, REPO_ROOT

log = logging.getLogger("visiting.enforcer")

STOP_SCHEMA = "https://visiting.example/events/hub/enforcement-stop"
SCOPES = ["list:users", "read:users:name", "read:servers", "delete:servers"]


@dataclass(frozen=True)
class Verdict:
    user: str
    server: str
    stop: bool
    reason: str


def judge(registry: ApprovalRegistry, user: str, server: str, now: datetime) -> Verdict:
    """Whether `user`'s server named `server` (a site id) may keep running at `now`."""
    active = approvals_at_site(registry.active_approvals(user, now), server)
    if active:
        return Verdict(user, server, False, f"approval {active[0].approval_id} is active")
    past = [a for a in registry.approvals_of(user) if server in a.sites]
    if past:
        latest = max(past, key=lambda a: a.period.end)
        return Verdict(
            user,
            server,
            True,
            f"approval {latest.approval_id} is {latest.status_at(now)} "
            f"(period {latest.period.start} .. {latest.period.end})",
        )
    return Verdict(user, server, True, f"no approval covers site {server}")


class Enforcer:
    def __init__(
        self,
        api_url: str,
        token: str,
        registry: ApprovalRegistry,
        audit: AuditStore,
        clock: Clock,
    ):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.registry = registry
        self.audit = audit
        self.clock = clock
        self.client = AsyncHTTPClient()

    async def fetch(self, path: str, method: str = "GET", **kwargs):
        req = HTTPRequest(
            self.api_url + path,
            method=method,
            headers={
                "Authorization": f"token {self.token}",
                "Accept": "application/jupyterhub-pagination+json",
            },
            allow_nonstandard_methods=True,
            request_timeout=30,
            **kwargs,
        )
        resp = await self.client.fetch(req)
        return json.loads(resp.body) if resp.body else None

    async def running_servers(self):
        """(user, server name, server model) of every running or starting server."""
        offset = 0
        while True:
            page = await self.fetch(f"/users?state=active&offset={offset}&limit=200")
            items = page["items"] if isinstance(page, dict) else page
            for user in items:
                for name, server in (user.get("servers") or {}).items():
                    yield user["name"], name, server
            nxt = page.get("_pagination", {}).get("next") if isinstance(page, dict) else None
            if not nxt:
                return
            offset = nxt["offset"]

    async def stop(self, verdict: Verdict) -> None:
        path = f"/users/{quote(verdict.user)}/servers/{quote(verdict.server)}"
        try:
            await self.fetch(path, method="DELETE", body=json.dumps({"remove": False}))
        except HTTPClientError as e:
            if e.code == 404:
                return  # gone already
            raise
        now = self.clock.now()
        self.audit.append(
            [
                {
                    "event_id": uuid.uuid4().hex,
                    "schema": STOP_SCHEMA,
                    "version": 1,
                    "time": now.isoformat(),
                    "user": verdict.user,
                    "site": verdict.server,
                    "approval_id": None,
                    "actor": "enforcer",
                    "data": {"reason": verdict.reason},
                }
            ]
        )
        log.warning("stopped %s's server at %s: %s", verdict.user, verdict.server, verdict.reason)

    async def enforce_once(self) -> list[Verdict]:
        now = self.clock.now()
        stopped = []
        async for user, name, _server in self.running_servers():
            if not name:
                continue  # the platform names every server after its site
            verdict = judge(self.registry, user, name, now)
            if verdict.stop:
                await self.stop(verdict)
                stopped.append(verdict)
        return stopped

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.enforce_once()
            except Exception:
                log.exception("enforcement round failed; trying again in %.0f s", interval)
            await asyncio.sleep(interval)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--interval", type=float, default=30.0, help="seconds between rounds (default 30)"
    )
    args = parser.parse_args(argv)
    if args.interval <= 0:
        parser.error("--interval must be positive")
    logging.basicConfig(
        level=logging.INFO, format="[enforcer %(levelname)s %(asctime)s] %(message)s"
    )
    platform = load_platform(os.environ.get(PLATFORM_ENV, REPO_ROOT / "policies" / "demo"))
    clock = clock_from_env()
    enforcer = Enforcer(
        os.environ["JUPYTERHUB_API_URL"],
        os.environ["JUPYTERHUB_API_TOKEN"],
        ApprovalRegistry(platform.database_url, clock=clock),
        AuditStore(platform.database_url, clock=clock),
        clock,
    )
    log.info("enforcing every %.0f s", args.interval)
    try:
        asyncio.run(enforcer.run(args.interval))
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
