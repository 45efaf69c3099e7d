"""The enforcer's API: the admin service asks for a round for some people now, or for a
site admin's stop of one server. Only the admin service's own token is answered."""

from __future__ import annotations

import asyncio

from jupyterhub.services.auth import HubAuth
from tornado import web

from hub.services._base import JsonApiHandler
from hub.services.enforcer.enforcer import Enforcer

#: the hub services that may ask for an enforcement round or a stop
CALLERS = ("admin",)


class CallerHandler(JsonApiHandler):
    """Answers only the admin service's own token."""

    def initialize(self, enforcer: Enforcer, auth: HubAuth):
        self.enforcer = enforcer
        self.auth = auth

    async def prepare(self):
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not token:
            raise web.HTTPError(401, "an Authorization: token header is needed")
        model = await self.auth.user_for_token(token, use_cache=False, sync=False)
        if not model or model.get("kind") != "service" or model.get("name") not in CALLERS:
            raise web.HTTPError(403, "only the admin service may ask the enforcer")
        self.caller = model["name"]


class EnforceHandler(CallerHandler):
    """POST api/enforce {"users": [...]}: a round for these people, now."""

    async def post(self):
        users = self.json_body().get("users")
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
        body = self.json_body()
        fields = {k: body.get(k) for k in ("user", "site", "reason", "actor")}
        bad = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise web.HTTPError(400, f"missing or empty: {', '.join(bad)}")
        done = await self.enforcer.stop_server(
            fields["user"], fields["site"], fields["reason"], fields["actor"]
        )
        self.finish(done)
