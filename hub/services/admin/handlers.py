"""The admin service's JSON API: who am I, the secretariat's actions on approvals and
people, the site admins' on their sites, and the figures (services, egress, query audit).
Every action is `hub.platform.operations`; a refusal names its field."""

from __future__ import annotations

import time

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from hub.platform.access import SECRETARIAT
from hub.platform.messages import message
from hub.platform.operations import OperationError
from hub.services._base import JsonApiHandler
from hub.services.admin.backend import Backend
from hub.services.admin.figures import (
    EGRESS_DAYS,
    QUERY_AUDIT_DAYS,
    days_since,
    egress_alerts,
    egress_since,
    enforcer_up,
    query_audit_section,
)


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    """Identifies the person by JupyterHub OAuth; roles come from the registry."""

    def initialize(self, backend: Backend):
        self.backend = backend
        self.ops = backend.ops

    @property
    def actor(self) -> str:
        return self.current_user["name"]


class ApiHandler(BaseHandler, JsonApiHandler):
    """JSON in, JSON out; errors as {"status", "message", "field"}."""

    public_errors = (OperationError,)

    def check_xsrf_cookie(self):
        # the API is for tokens; a browser's cookie cannot reach it (see prepare)
        return

    async def prepare(self):
        header = self.request.headers.get("Authorization", "")
        if not header:
            raise web.HTTPError(401, "an Authorization: token header is needed")
        if self.current_user is None:
            raise web.HTTPError(403, "the hub does not accept this token (expired or revoked?)")

    def bad_request(self, text: str) -> Exception:
        return OperationError(text)

    def days(self, default: int) -> int:
        """?days=N: whole Japan-time days back from today, 1 to 366."""
        days = self.get_argument("days", str(default))
        if not days.isdigit() or not 1 <= int(days) <= 366:
            raise OperationError(f"days: {days!r} is not a number of days from 1 to 366", "days")
        return int(days)


class MeHandler(ApiHandler):
    def get(self):
        roles = self.ops.registry.roles_of(self.actor)
        self.finish(
            {"user": self.actor, "roles": roles, "admin_sites": self.ops.admin_sites(self.actor)}
        )


class ApprovalsHandler(ApiHandler):
    def get(self, approval_id: str | None = None):
        self.ops.require_secretariat(self.actor)
        if approval_id:
            self.finish(self.ops.approval_state(approval_id))
        else:
            self.finish({"approvals": self.ops.approvals_state()})


class ApprovalActionHandler(ApiHandler):
    async def post(self, approval_id: str, action: str):
        body = self.json_body()
        if action == "extend":
            out = self.ops.extend(
                self.actor, approval_id=approval_id, end=body.get("end"), reason=body.get("reason")
            )
            result = out.to_json()
        else:
            out = self.ops.revoke(self.actor, approval_id=approval_id, reason=body.get("reason"))
            result = out.to_json()
            result["enforcement"] = await self.backend.enforce_after(out)
        self.finish(result)


class SuspensionsHandler(ApiHandler):
    def get(self):
        self.ops.require_secretariat(self.actor)
        now = self.ops.clock.now()
        self.finish(
            {
                "suspensions": [
                    s.to_json() | {"active": s.active_at(now)}
                    for s in self.ops.registry.suspensions()
                ]
            }
        )


class SuspendHandler(ApiHandler):
    async def post(self):
        body = self.json_body()
        t0 = time.monotonic()
        out = self.ops.suspend(
            self.actor,
            user=body.get("user"),
            institution=body.get("institution"),
            reason=body.get("reason"),
            ban_until=body.get("ban_until"),
            ban_indefinite=body.get("ban_indefinite", False),
        )
        result = out.to_json()
        result["enforcement"] = await self.backend.enforce_after(out)
        result["seconds"] = round(time.monotonic() - t0, 3)
        self.finish(result)


class EgressHandler(ApiHandler):
    def get(self):
        self.ops.require_secretariat(self.actor)
        since = egress_since(self.ops.clock.now(), self.days(EGRESS_DAYS))
        self.finish({"since": since.isoformat(), "egress": egress_alerts(self.ops.audit, since)})


class QueryAuditHandler(ApiHandler):
    def get(self):
        self.ops.require_secretariat(self.actor)
        days = self.days(QUERY_AUDIT_DAYS)
        since = days_since(self.ops.clock.now(), days)
        self.finish(
            {
                "since": since.isoformat(),
                "days": days,
                "approvals": query_audit_section(self.ops, since),
            }
        )


class QueryAuditResetHandler(ApiHandler):
    def post(self, approval_id: str):
        body = self.json_body()
        out = self.ops.reset_query_audit(
            self.actor, approval_id=approval_id, reason=body.get("reason")
        )
        self.finish(out.to_json())


class ReinstateHandler(ApiHandler):
    def post(self):
        body = self.json_body()
        out = self.ops.reinstate(self.actor, user=body.get("user"), reason=body.get("reason"))
        self.finish(out.to_json())


class ServicesHandler(ApiHandler):
    async def get(self):
        roles = self.ops.registry.roles_of(self.actor)
        if SECRETARIAT not in roles and not self.ops.admin_sites(self.actor):
            raise OperationError(
                f"{self.actor} is neither secretariat nor a site admin", field=None, status=403
            )
        services = await self.backend.services_status()
        answer = {"services": services, "enforcer_up": enforcer_up(services)}
        if not answer["enforcer_up"]:
            answer["warning"] = message("admin.enforcer_down").to_json()
        self.finish(answer)


class SiteHandler(ApiHandler):
    def get(self, site: str):
        self.ops.require_site_admin(self.actor, site)
        self.finish(
            self.ops.registry.site_settings(site)
            | {"approval_quotas": self.ops.registry.approval_quotas(site)}
        )


class SiteImagesHandler(ApiHandler):
    def post(self, site: str, retire: str | None = None):
        body = self.json_body()
        action = self.ops.retire_image if retire else self.ops.add_image
        out = action(self.actor, site=site, image=body.get("image"), reason=body.get("reason"))
        self.finish(out.to_json())


class SiteQuotaHandler(ApiHandler):
    def post(self, site: str, approval_id: str | None = None):
        body = self.json_body()
        if approval_id:
            out = self.ops.set_approval_quota(
                self.actor,
                site=site,
                approval_id=approval_id,
                quota=body.get("quota"),
                reason=body.get("reason"),
            )
        else:
            out = self.ops.set_site_quota(
                self.actor, site=site, quota=body.get("quota"), reason=body.get("reason")
            )
        self.finish(out.to_json())

    put = post


class SiteServersHandler(ApiHandler):
    async def get(self, site: str):
        self.ops.require_site_admin(self.actor, site)
        self.finish({"site": site, "servers": await self.backend.servers_at(site)})


class StopServerHandler(ApiHandler):
    async def post(self, site: str, user: str):
        reason = self.json_body().get("reason")
        self.finish(await self.backend.stop_server(self.actor, site, user, reason))
