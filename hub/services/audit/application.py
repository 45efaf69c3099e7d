"""The audit intake: a hub-managed service that stores the events researchers' servers send.

    POST /services/audit/api/events   {"events": [...]}   Authorization: token <server token>
    GET  /services/audit/api/approvals/<user>              Authorization: token <gateway token>
    GET  /services/audit/api/period?approval_id=<id>       Authorization: token <server token>

The caller is identified by JupyterHub from its own token (no shared
secret). A server's token is accepted only for events of that server's user
and site: the site comes from the token's `access:servers!server=<user>/<site>`
scope, never from the payload. A site's federation gateway (the service
`gateway-<site>`) may send `federation-query` events of its own site, about
any caller; the intake sets their actor to the gateway. A gateway also asks
here which approvals of a caller are active at its site, and a server asks how
the approval it runs under stands now (extended, revoked, its user suspended),
so the approval registry never leaves the hub side. Events
go into the hash-chained audit store; an event id already stored is
skipped, so a server that resends a batch after a timeout is harmless.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime

from jupyterhub.services.auth import HubAuth
from tornado import ioloop, web

from extensions.contracts.clock import clock_from_env
from extensions.contracts.events import FEDERATION_QUERY
from hub.platform.access import approvals_at_site
from hub.platform.policy import load_platform
from hub.platform.traits import PLATFORM_ENV, REPO_ROOT
from hub.services import service_port
from hub.services._base import follow_the_hub, health_route
from hub.store.audit import AuditError, AuditStore
from hub.store.registry import ApprovalRegistry, ApprovalView, SuspensionView

log = logging.getLogger("visiting.audit")

SERVER_SCOPE = re.compile(r"^access:servers!server=([^/]+)/(.+)$")
MAX_BODY = 8 * 1024 * 1024
MAX_EVENTS = 5000


def server_of(model: dict) -> tuple[str, str] | None:
    """(user, server name) a token belongs to, from its scopes; None for other tokens."""
    if model.get("kind") != "user":
        return None
    for scope in model.get("scopes", []):
        m = SERVER_SCOPE.match(scope)
        if m and m.group(1) == model.get("name"):
            return m.group(1), m.group(2)
    return None


GATEWAY_SERVICE = re.compile(r"^gateway-([a-z][a-z0-9-]*)$")


def gateway_of(model: dict) -> str | None:
    """The site whose federation gateway this token belongs to; None for other tokens."""
    if model.get("kind") != "service":
        return None
    m = GATEWAY_SERVICE.match(model.get("name", ""))
    return m.group(1) if m else None


def check_events(events, user: str | None, site: str) -> str | None:
    """Why a batch may not be stored, or None.

    From a server (`user` set): only events of that user at its site. From a
    site's gateway (`user` None): only federation-query events of its site.
    """
    sender = "a gateway" if user is None else "a server"
    where = f"the {'gateway' if user is None else 'server'} at {site}"
    if not isinstance(events, list):
        return "'events' must be a list"
    if len(events) > MAX_EVENTS:
        return f"at most {MAX_EVENTS} events per request"
    for i, e in enumerate(events):
        if not isinstance(e, dict):
            return f"events[{i}] is not an object"
        if user is None and e.get("schema") != FEDERATION_QUERY:
            return f"events[{i}].schema: a gateway sends only {FEDERATION_QUERY}"
        if user is not None and e.get("user") != user:
            return f"events[{i}].user is {e.get('user')!r}; this token is {user}'s"
        if e.get("site") != site:
            return f"events[{i}].site is {e.get('site')!r}; this token is of {where}"
        if e.get("actor") is not None:
            return f"events[{i}].actor is set by the hub, not by {sender}"
    return None


def period_of(
    approvals: Sequence[ApprovalView],
    suspension: SuspensionView | None,
    site: str,
    approval_id: str,
    now: datetime,
) -> dict | None:
    """What a server at `site` is told about `approval_id`, given every approval naming its
    user and the user's suspension in force; None when that approval does not name the user
    or covers no dataset at `site` (the server may not ask about it)."""
    approval = next(
        (a for a in approvals_at_site(approvals, site) if a.approval_id == approval_id), None
    )
    if approval is None:
        return None
    return {
        "approval_id": approval.approval_id,
        "end_date": approval.period.end.isoformat(),
        "ends_before": approval.ends_before.isoformat(),
        "status": "suspended" if suspension is not None else approval.status_at(now),
        "suspended": suspension is not None,
    }


async def token_model(handler: web.RequestHandler, auth: HubAuth) -> dict:
    """The hub's model of the caller's token; 401 without one, 403 for one the hub refuses."""
    header = handler.request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("token", "bearer") or not token:
        raise web.HTTPError(401, "an Authorization: token header is needed")
    model = await auth.user_for_token(token, sync=False)
    if not model:
        raise web.HTTPError(403, "the token is not valid")
    return model


class IntakeHandler(web.RequestHandler):
    def initialize(self, store: AuditStore, auth: HubAuth):
        self.store = store
        self.auth = auth

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    async def identify(self) -> tuple[str | None, str]:
        """(user, site) of a server's token; (None, site) of a site gateway's token."""
        model = await token_model(self, self.auth)
        gateway = gateway_of(model)
        if gateway is not None:
            return None, gateway
        owner = server_of(model)
        if owner is None:
            raise web.HTTPError(403, "only a Jupyter server's own token may send events")
        return owner

    async def post(self):
        user, site = await self.identify()
        if len(self.request.body) > MAX_BODY:
            raise web.HTTPError(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(self.request.body)
        except ValueError as e:
            raise web.HTTPError(400, f"the body is not JSON: {e}") from None
        if not isinstance(body, dict) or "events" not in body:
            raise web.HTTPError(400, "the body must be an object with 'events'")
        problem = check_events(body["events"], user, site)
        if user is None and not problem:  # a site's gateway is the actor of what it sends
            body["events"] = [dict(e, actor=f"gateway-{site}") for e in body["events"]]
        if problem:
            log.warning("refused events from %s/%s: %s", user, site, problem)
            raise web.HTTPError(403 if "token" in problem else 400, problem)
        try:
            result = self.store.append(body["events"])
        except AuditError as e:
            raise web.HTTPError(400, str(e)) from None
        self.finish({"stored": result.stored, "duplicates": result.duplicates})


class ApprovalsHandler(web.RequestHandler):
    """GET api/approvals/<user>: a site gateway asks which approvals of a caller hold at its site.

    Only a gateway's token is answered, and only about its own site: the
    approval ids and the datasets there, active now (the registry's clock), and
    the time of each approval's latest query-set audit reset (`query_audit_reset`,
    null when it was never reset): a gateway holding an older history for the
    approval archives it and starts afresh.
    """

    def initialize(self, registry, auth: HubAuth):
        self.registry = registry
        self.auth = auth

    write_error = IntakeHandler.write_error

    async def get(self, user: str):
        site = gateway_of(await token_model(self, self.auth))
        if site is None:
            raise web.HTTPError(403, "only a site's federation gateway may ask")
        active = approvals_at_site(
            self.registry.active_approvals(user, self.registry.clock.now()), site
        )
        resets = self.registry.latest_query_audit_resets(a.approval_id for a in active)
        self.finish(
            {
                "user": user,
                "site": site,
                "approvals": [
                    {
                        "approval_id": a.approval_id,
                        "datasets": list(a.datasets_at(site)),
                        "end": a.period.end.isoformat(),
                        "query_audit_reset": (
                            resets[a.approval_id].isoformat() if a.approval_id in resets else None
                        ),
                    }
                    for a in active
                ],
            }
        )


class PeriodHandler(web.RequestHandler):
    """GET api/period?approval_id=<id>: a server asks how the approval it runs under stands.

    Only a server's own token is answered, about its user and site, and only
    about an approval that names the user and covers a dataset at that site.
    The answer (at the registry's clock):

        {"approval_id": "J-DU000101", "end_date": "2035-09-30",
         "ends_before": "2035-09-30T15:00:00+00:00", "status": "active", "suspended": false}

    `end_date` is the last day (Japan time, with any extension); `ends_before` the
    first instant the approval no longer holds (the revocation instant when revoked);
    `status` one of active, not-started, ended, revoked, suspended (the user is
    suspended, whatever the approval's own state).
    """

    def initialize(self, registry, auth: HubAuth):
        self.registry = registry
        self.auth = auth

    write_error = IntakeHandler.write_error

    async def get(self):
        owner = server_of(await token_model(self, self.auth))
        if owner is None:
            raise web.HTTPError(403, "only a Jupyter server's own token may ask")
        user, site = owner
        approval_id = self.get_query_argument("approval_id", "").strip()
        if not approval_id:
            raise web.HTTPError(400, "the query parameter approval_id is needed")
        now = self.registry.clock.now()
        answer = period_of(
            self.registry.approvals_of(user),
            self.registry.suspension_of(user, now),
            site,
            approval_id,
            now,
        )
        if answer is None:
            log.warning("refused period of %s to the server %s/%s", approval_id, user, site)
            raise web.HTTPError(
                403,
                f"approval {approval_id} does not name {user} or covers no dataset at {site}",
            )
        self.set_header("Cache-Control", "no-store")
        self.finish(answer)


def make_app(store: AuditStore, auth: HubAuth, prefix: str, registry=None) -> web.Application:
    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
    routes = [
        (prefix + "api/events", IntakeHandler, {"store": store, "auth": auth}),
        health_route(prefix),
    ]
    if registry is not None:
        routes += [
            (
                prefix + r"api/approvals/([^/]+)",
                ApprovalsHandler,
                {"registry": registry, "auth": auth},
            ),
            (prefix + "api/period", PeriodHandler, {"registry": registry, "auth": auth}),
        ]
    return web.Application(routes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="port (default: from JUPYTERHUB_SERVICE_URL)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[audit %(levelname)s %(asctime)s] %(message)s")
    follow_the_hub()
    platform = load_platform(os.environ.get(PLATFORM_ENV, REPO_ROOT / "policies" / "demo"))
    clock = clock_from_env()
    store = AuditStore(platform.database_url, clock=clock)
    registry = ApprovalRegistry(platform.database_url, clock=clock)
    auth = HubAuth(cache_max_age=60)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/audit/")
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8082")
    port = args.port or service_port(url)
    app = make_app(store, auth, prefix, registry)
    app.listen(port, address="127.0.0.1", xheaders=True)
    log.info("audit intake on 127.0.0.1:%d%s, store %s", port, prefix, platform.database_url)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT (SIGTERM: _base)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
