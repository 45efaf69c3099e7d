"""The enforcer: a hub-managed service that stops servers whose approval no longer allows them.

Built like jupyterhub-idle-culler: it asks the hub's API for the running
servers, decides per server with a pure function, and stops what must stop.
The decision reads the approval registry against an injectable clock: an
approval that ended or was revoked, or a person who is suspended, stops the
server. A suspended person's API tokens are revoked as well. Every stop is
written to the audit store with the enforcer as the actor.

It runs a round every `--interval` seconds, and at once when the admin
service asks (`POST api/enforce {"users": [...]}`) after the secretariat
suspended or revoked: then it stops the people's servers concurrently, waits
until the hub reports them gone, and answers with what it did. A site admin's
stop of one server comes the same way (`POST api/stop`). Only the admin
service's token is answered. When the enforcer is down, nothing else is
weakened: the authenticator, the spawner and the gateways ask the registry
themselves; the next round after a restart stops what should have stopped.

Its scopes are exactly those in SCOPES.

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

from jupyterhub.services.auth import HubAuth
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from extensions.contracts.clock import Clock, clock_from_env
from extensions.contracts.events import ENFORCEMENT_STOP
from hub.platform.access import approvals_at_site
from hub.platform.policy import load_platform
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT
from hub.services import service_port
from hub.services._base import follow_the_hub, health_route
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry

log = logging.getLogger("visiting.enforcer")

#: list and read servers, stop them, and revoke the tokens of a suspended person
SCOPES = ["list:users", "read:users:name", "read:servers", "delete:servers", "tokens"]
#: the hub services that may ask for an enforcement round or a stop
CALLERS = ("admin",)
#: how long a stop may take before the answer says it is still pending
STOP_WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Verdict:
    user: str
    server: str
    stop: bool
    reason: str


def judge(registry: ApprovalRegistry, user: str, server: str, now: datetime) -> Verdict:
    """Whether `user`'s server named `server` (a site id) may keep running at `now`."""
    suspension = registry.suspension_of(user, now)
    if suspension is not None:
        return Verdict(
            user,
            server,
            True,
            f"{user} is suspended (suspension {suspension.id} by {suspension.suspended_by})",
        )
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

    async def stop(self, verdict: Verdict, actor: str = "enforcer") -> bool:
        """Ask the hub to stop one server and record it; False when it was not running."""
        path = f"/users/{quote(verdict.user)}/servers/{quote(verdict.server)}"
        try:
            await self.fetch(path, method="DELETE", body=json.dumps({"remove": False}))
        except HTTPClientError as e:
            if e.code in (400, 404):
                return False  # not running, or gone already
            if (
                e.code == 500
                and (await self.servers_of(verdict.user)).get(verdict.server, {}).get("pending")
                == "stop"
            ):
                return False  # being stopped by someone else already (the hub answers 500)
            raise
        now = self.clock.now()
        self.audit.append(
            [
                {
                    "event_id": uuid.uuid4().hex,
                    "schema": ENFORCEMENT_STOP,
                    "version": 1,
                    "time": now.isoformat(),
                    "user": verdict.user,
                    "site": verdict.server,
                    "approval_id": None,
                    "actor": actor,
                    "data": {"reason": verdict.reason},
                }
            ]
        )
        log.warning("stopped %s's server at %s: %s", verdict.user, verdict.server, verdict.reason)
        return True

    async def servers_of(self, user: str) -> dict:
        """The running or pending servers of `user` (name -> model); empty for an unknown user."""
        try:
            model = await self.fetch(f"/users/{quote(user)}")
        except HTTPClientError as e:
            if e.code == 404:
                return {}
            raise
        return {name: s for name, s in (model.get("servers") or {}).items() if name}

    async def wait_stopped(self, user: str, names: set[str], timeout: float) -> set[str]:
        """Wait until none of `names` is running or stopping; the names still there."""
        deadline = asyncio.get_running_loop().time() + timeout
        left = set(names)
        while left:
            left &= set(await self.servers_of(user))
            if not left or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        return left

    async def revoke_tokens(self, user: str) -> int:
        """Revoke every API token of `user` (their servers' tokens go with the servers)."""
        try:
            page = await self.fetch(f"/users/{quote(user)}/tokens")
        except HTTPClientError as e:
            if e.code == 404:
                return 0  # never logged in: no tokens
            raise
        if isinstance(page, dict):  # paginated ("items") or JupyterHub's older shape
            tokens = page.get("items", page.get("api_tokens", []))
        else:
            tokens = page
        revoked = 0
        for token in tokens:
            try:
                await self.fetch(f"/users/{quote(user)}/tokens/{token['id']}", method="DELETE")
                revoked += 1
            except HTTPClientError as e:
                if e.code != 404:
                    raise
        if revoked:
            log.warning("revoked %d token(s) of %s", revoked, user)
        return revoked

    async def enforce_users(self, users: list[str]) -> dict:
        """Apply the registry to these people now: stop what may not run (all at once), wait
        until it is gone, revoke a suspended person's tokens. Returns what was done."""
        now = self.clock.now()
        out: dict[str, dict] = {}

        async def one(user: str) -> None:
            servers = await self.servers_of(user)
            verdicts = [judge(self.registry, user, name, now) for name in servers]
            stopping = [v for v in verdicts if v.stop]
            # a server that a round or a site admin is stopping already is only waited for
            asked = [v for v in stopping if servers[v.server].get("pending") != "stop"]
            names = {v.server for v in stopping}
            suspended = self.registry.suspension_of(user, now) is not None

            async def stops() -> set[str]:
                await asyncio.gather(*(self.stop(v) for v in asked))
                return await self.wait_stopped(user, names, STOP_WAIT_SECONDS)

            async def tokens_of_suspended() -> int:
                return await self.revoke_tokens(user) if suspended else 0

            # the tokens go at once, while the containers are still stopping
            pending, tokens = await asyncio.gather(stops(), tokens_of_suspended())
            out[user] = {
                "stopped": sorted(names - pending),
                "still_stopping": sorted(pending),
                "kept": sorted(v.server for v in verdicts if not v.stop),
                "tokens_revoked": tokens,
            }

        await asyncio.gather(*(one(u) for u in users))
        return out

    async def stop_server(self, user: str, site: str, reason: str, actor: str) -> dict:
        """A site admin's stop of one server, recorded with the admin as the actor."""
        stopped = await self.stop(Verdict(user, site, True, reason), actor=actor)
        pending = await self.wait_stopped(user, {site} if stopped else set(), STOP_WAIT_SECONDS)
        return {"stopped": stopped and not pending, "still_stopping": bool(pending)}

    async def enforce_once(self) -> list[Verdict]:
        now = self.clock.now()
        stopped = []
        async for user, name, server in self.running_servers():
            if not name:
                continue  # the platform names every server after its site
            if server.get("pending") == "stop":
                continue  # being stopped already (a request to act at once, a site admin)
            verdict = judge(self.registry, user, name, now)
            if verdict.stop:
                await self.stop(verdict)
                stopped.append(verdict)
        # tokens of people suspended while the enforcer was away
        for suspension in self.registry.suspensions():
            if suspension.active_at(now):
                await self.revoke_tokens(suspension.username)
        return stopped

    async def run(self, interval: float) -> None:
        while True:
            try:
                await self.enforce_once()
            except Exception:
                log.exception("enforcement round failed; trying again in %.0f s", interval)
            await asyncio.sleep(interval)


class CallerHandler(web.RequestHandler):
    """Answers only the admin service's own token."""

    def initialize(self, enforcer: Enforcer, auth: HubAuth):
        self.enforcer = enforcer
        self.auth = auth

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) else self._reason
        self.finish({"status": status_code, "message": message})

    async def prepare(self):
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token:
            raise web.HTTPError(401, "an Authorization: token header is needed")
        model = await self.auth.user_for_token(token, use_cache=False, sync=False)
        if not model or model.get("kind") != "service" or model.get("name") not in CALLERS:
            raise web.HTTPError(403, "only the admin service may ask the enforcer")
        self.caller = model["name"]

    def body(self) -> dict:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body


class EnforceHandler(CallerHandler):
    """POST api/enforce {"users": [...]}: a round for these people, now."""

    async def post(self):
        users = self.body().get("users")
        if not isinstance(users, list) or not all(isinstance(u, str) and u for u in users):
            raise web.HTTPError(400, "users must be a list of user names")
        started = self.enforcer.clock.now()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        done = await self.enforcer.enforce_users(users)
        self.finish(
            {"users": done, "seconds": round(loop.time() - t0, 3), "at": started.isoformat()}
        )


class StopHandler(CallerHandler):
    """POST api/stop {"user", "site", "reason", "actor"}: a site admin's stop of one server."""

    async def post(self):
        body = self.body()
        fields = {k: body.get(k) for k in ("user", "site", "reason", "actor")}
        bad = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise web.HTTPError(400, f"missing or empty: {', '.join(bad)}")
        done = await self.enforcer.stop_server(
            fields["user"], fields["site"], fields["reason"], fields["actor"]
        )
        self.finish(done)


def make_app(enforcer: Enforcer, auth: HubAuth, prefix: str) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    args = {"enforcer": enforcer, "auth": auth}
    return web.Application(
        [
            (prefix + "api/enforce", EnforceHandler, args),
            (prefix + "api/stop", StopHandler, args),
            health_route(prefix),
        ]
    )


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
    follow_the_hub()
    platform = load_platform(os.environ.get(PLATFORM_ENV, REPO_ROOT / "policies" / "demo"))
    clock = clock_from_env()
    enforcer = Enforcer(
        os.environ["JUPYTERHUB_API_URL"],
        os.environ["JUPYTERHUB_API_TOKEN"],
        ApprovalRegistry(platform.database_url, clock=clock),
        AuditStore(platform.database_url, clock=clock),
        clock,
    )
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")

    async def serve():
        if url:
            # callers are checked without the cache (see CallerHandler.prepare)
            auth = HubAuth()
            prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/enforcer/")
            port = service_port(url)
            make_app(enforcer, auth, prefix).listen(port, address="127.0.0.1")
            log.info("answering the admin service on 127.0.0.1:%d%s", port, prefix)
        await enforcer.run(args.interval)

    log.info("enforcing every %.0f s", args.interval)
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:  # the hub stops its services with SIGINT (SIGTERM: _base)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
