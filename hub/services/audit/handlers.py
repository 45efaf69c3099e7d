"""The audit intake's API handlers: events in, and the approvals' state out to gateways and
servers. The caller is whoever JupyterHub says its token belongs to (see `checks`)."""

from __future__ import annotations

import json
import logging

from jupyterhub.services.auth import HubAuth
from tornado import web

from hub.platform.access import approvals_at_site
from hub.services._base import JsonApiHandler
from hub.services.audit.checks import check_events, gateway_of, period_of, server_of
from hub.store.audit import AuditError, AuditStore

log = logging.getLogger("visiting.audit")

MAX_BODY = 8 * 1024 * 1024


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


class IntakeHandler(JsonApiHandler):
    """POST api/events {"events": [...]}: a server's events of its own user and site, or a
    site gateway's federation-query events of its site (the gateway becomes their actor)."""

    def initialize(self, store: AuditStore, auth: HubAuth):
        self.store = store
        self.auth = auth

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


class ApprovalsHandler(JsonApiHandler):
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


class PeriodHandler(JsonApiHandler):
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
