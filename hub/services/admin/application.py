"""The admin service: the secretariat's and site admins' levers, as a REST API and a web page.

A hub-managed service at /services/admin/. People are identified by
JupyterHub OAuth (a browser's login, or `Authorization: token <their own
token>` for the API and the `visiting secretariat` / `visiting site-admin`
commands); what they may do is decided here, on the server, from the
platform roles in the approval registry (`secretariat`, `site-admin:<site>`),
never from what a page shows. Every action goes through `hub.platform.operations`,
which checks every field before anything changes and records the action in
the audit store.

    GET  api/me                                         who am I, which roles and sites
    GET  api/approvals | api/approvals/<id>             (secretariat)
    POST api/approvals/<id>/extend   {end, reason}
    POST api/approvals/<id>/revoke   {reason}
    POST api/approvals/<id>/query-audit/reset   {reason}   the sites' query-set audit of
                                                the approval starts afresh
    GET  api/suspensions
    POST api/suspend     {user | institution, reason, ban_until?, ban_indefinite?}
    POST api/reinstate   {user, reason}
    GET  api/sites/<site>                               (site admin of <site>)
    POST api/sites/<site>/images          {image, reason}  add to the allow-list
    POST api/sites/<site>/images/retire   {image, reason}
    POST api/sites/<site>/quota           {quota: {cpu, memory, home}, reason}
    POST api/sites/<site>/approvals/<id>/quota   {quota, reason}
    GET  api/sites/<site>/servers
    POST api/sites/<site>/servers/<user>/stop    {reason}

After a suspension or revocation the service asks the enforcer to act at
once (stop the people's servers, revoke a suspended person's tokens) and
answers with what it did. When the enforcer is down the answer says so:
the action holds anyway (login, spawn and the gateways read the registry)
and the enforcer stops the servers when it is back.

The page (GET /services/admin/) shows each person the parts of their roles,
in Japanese and English; its forms post to the same actions and show a
refused field's message next to the field.

    GET  api/services      (secretariat, site admins) each hub service: up or
                           down by its health check, pid, restarts since the hub started
    GET  api/egress?days=30  (secretariat) the egress alerts and caps of researchers'
                           servers in the last days, from the audit store: one row per
                           person, site and Japan-time day at its highest level
    GET  api/query-audit?days=30  (secretariat) per approval, the federated queries the
                           sites' query-set audit refused in the last days (time, user,
                           site, dataset, task, rule, the earlier queries it collides with
                           by time and task), newest first, and the audit's resets then

The page shows the same table to the secretariat and the site admins, and a
warning at its top while the enforcer does not answer (suspensions and
revocations then hold, but nobody stops the servers).

The export airlock's review, in the browser (see `review`): the requests a site admin or
the secretariat may review now, each request's frozen files rendered beside their checks,
and the form to decide, through the export service's own desk and rules.

    GET  review | review/<id> | review/<id>/files/<name>    POST review/<id>

The export airlock's release, in the browser (see `releases`): every person's own export
requests, on the hub outside their server, with their files' hashes, the checks and the
reviews; an approved request's frozen files to download within the release window, and
the form to withdraw an open request.

    GET  exports | exports/<id>/files/<name>    POST exports/<id>/withdraw

The modules: `backend` (the hub, the enforcer, the sites' engines), `figures` (what the
secretariat reads), `handlers` (the API), `pages` (the page and the report),
`review` (the export airlock's review pages), `releases` (the requester's pages); here the
service itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from tornado import web
from traitlets import Bool, Dict, Unicode, default

from hub.platform.operations import Operations
from hub.services._base import ServiceApp, normal_prefix, service_web_app
from hub.services.admin.backend import Backend
from hub.services.admin.handlers import (
    ApprovalActionHandler,
    ApprovalsHandler,
    EgressHandler,
    MeHandler,
    QueryAuditHandler,
    QueryAuditResetHandler,
    ReinstateHandler,
    ServicesHandler,
    SiteHandler,
    SiteImagesHandler,
    SiteQuotaHandler,
    SiteServersHandler,
    StopServerHandler,
    SuspendHandler,
    SuspensionsHandler,
)
from hub.services.admin.pages import PageHandler, ReportHandler
from hub.services.admin.releases import release_routes
from hub.services.admin.review import review_routes
from hub.services.export.desk import ExportDesk
from hub.services.export.freezer import make_freezer
from hub.store.audit import AuditStore
from hub.store.exports import ExportStore

#: what the service asks of the hub: the servers at a site, and the enforcer
SCOPES = ["list:users", "read:users:name", "read:servers", "access:services!service=enforcer"]


def make_app(backend: Backend, prefix: str, cookie_secret: bytes) -> web.Application:
    prefix = normal_prefix(prefix)
    args = {"backend": backend}
    api = prefix + "api/"
    routes = [
        (api + "me", MeHandler, args),
        (api + "approvals", ApprovalsHandler, args),
        (api + r"approvals/([^/]+)", ApprovalsHandler, args),
        (api + r"approvals/([^/]+)/(extend|revoke)", ApprovalActionHandler, args),
        (api + r"approvals/([^/]+)/query-audit/reset", QueryAuditResetHandler, args),
        (api + "suspensions", SuspensionsHandler, args),
        (api + "suspend", SuspendHandler, args),
        (api + "reinstate", ReinstateHandler, args),
        (api + "services", ServicesHandler, args),
        (api + "egress", EgressHandler, args),
        (api + "query-audit", QueryAuditHandler, args),
        (api + r"sites/([^/]+)", SiteHandler, args),
        (api + r"sites/([^/]+)/images(/retire)?", SiteImagesHandler, args),
        (api + r"sites/([^/]+)/quota", SiteQuotaHandler, args),
        (api + r"sites/([^/]+)/approvals/([^/]+)/quota", SiteQuotaHandler, args),
        (api + r"sites/([^/]+)/servers", SiteServersHandler, args),
        (api + r"sites/([^/]+)/servers/([^/]+)/stop", StopServerHandler, args),
        (prefix + "report", ReportHandler, args),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        *review_routes(prefix, args),
        *release_routes(prefix, args),
        (prefix + r"do/([a-z-]+)", PageHandler, args),
        (prefix + "?", PageHandler, args),
    ]
    return service_web_app(prefix, routes, cookie_secret=cookie_secret, xsrf_cookies=True)


class AdminService(ServiceApp):
    """The secretariat's and the site admins' API and page."""

    name = "admin"
    description = __doc__.split("\n")[0]
    default_service_url = "http://127.0.0.1:8084"
    default_prefix = "/services/admin/"
    required = ("api_token",)

    enforcer_url = Unicode(
        help="""Where the enforcer answers (its prefix), asked to act at once after a
        suspension or a revocation and to stop a server for a site admin. Default:
        $VISITING_ENFORCER_URL, else none (the enforcer's rounds act later). Example:
        `http://127.0.0.1:8083/services/enforcer/`.""",
    ).tag(config=True)

    @default("enforcer_url")
    def _enforcer_url_default(self):
        return self.environ.get("VISITING_ENFORCER_URL", "")

    service_health = Dict(
        help="""Each hub service's health URL, by name, for the page's table of services.
        Default: the JSON object in $VISITING_SERVICE_HEALTH (the hub's configuration sets
        it), else none. Example: `{"audit": "http://127.0.0.1:8082/services/audit/health"}`.""",
    ).tag(config=True)

    @default("service_health")
    def _service_health_default(self):
        return json.loads(self.environ.get("VISITING_SERVICE_HEALTH") or "{}")

    state_dir = Unicode(
        help="""The hub's state folder, where it records its services' starts and restarts.
        Default: $VISITING_STATE_DIR, else none (the page shows no restarts). Example:
        `/var/lib/visiting`.""",
    ).tag(config=True)

    @default("state_dir")
    def _state_dir_default(self):
        return self.environ.get("VISITING_STATE_DIR", "")

    sites = Bool(
        help="""Whether the sites run in containers, as the export service reads it: the
        review page then reads a frozen file from the site's export volume (DockerFreezer),
        else from the state folder (LocalFreezer). Default: True when $VISITING_SITES is `1`.""",
    ).tag(config=True)

    @default("sites")
    def _sites_default(self):
        return self.environ.get("VISITING_SITES", "") == "1"

    def make_web_app(self) -> web.Application:
        audit = AuditStore(self.platform.database_url, clock=self.clock)
        backend = Backend(
            Operations(self.registry, audit, self.platform, self.clock),
            self.hub_api_url,
            self.api_token,
            self.enforcer_url or None,
            self.service_prefix,
            service_health=self.service_health,
            state_dir=Path(self.state_dir) if self.state_dir else None,
        )
        backend.ops.image_present = backend.image_present
        # the export airlock's review page: the export service's own desk and rules over
        # the same registry database, reading frozen files back as that service does
        exports = ExportStore(self.platform.database_url, self.platform.export, audit, self.clock)
        backend.desk = ExportDesk(
            exports, self.registry, self.platform, make_freezer(self.platform, self.sites),
            self.clock,
        )  # fmt: skip
        # a revoked or expired token stops working here within a second (0 would mean "forever")
        # (the one instance the page, the API and the OAuth callback share)
        HubOAuth.instance(api_url=self.hub_api_url, api_token=self.api_token, cache_max_age=1)
        return make_app(backend, self.service_prefix, os.urandom(32))


def main(argv=None) -> int:
    return AdminService.main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
