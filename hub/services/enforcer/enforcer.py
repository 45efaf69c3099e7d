"""The enforcer's hands: through the hub's REST API it lists the running servers, stops
those the verdict (`judge`) stops, waits until they are gone, revokes a suspended person's
tokens, and records every stop in the audit store."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from extensions.contracts.clock import Clock
from extensions.contracts.events import ENFORCEMENT_STOP
from hub.services.enforcer.judge import Verdict, judge
from hub.store.audit import AuditStore
from hub.store.registry import ApprovalRegistry

log = logging.getLogger("visiting.enforcer")

#: how long a stop may take before the answer says it is still pending
STOP_WAIT_SECONDS = 30.0


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
