"""The export airlock: a hub-managed service through which results leave a site as files.

A researcher asks to take files out of their home at a site; the site freezes them out
of their reach, hashes and checks them; one site admin of that site and one member of
the secretariat (the platform file's `rules.export.reviewers`) approve; the requester
then downloads the frozen bytes, within `release_days`. Each call carries the caller's
own hub token (`Authorization: token ...`), a researcher's server's token included:

    POST api/requests                    {"site", "paths", "purpose"} -> 201 the request
    GET  api/requests[?site=S]           the caller's own requests
    GET  api/requests?queue=1            the requests the caller may review now
    GET  api/requests/<id>               one request: files, hashes, checks, reviews
    POST api/requests/<id>/reviews       {"decision": approve|reject|changes, "reason",
                                          "override"?}
    POST api/requests/<id>/withdraw      the requester withdraws an open request
    GET  api/requests/<id>/files/<name>  the released file's frozen bytes (attachment,
                                          X-Content-SHA256); the first download releases

The rules are in hub.platform.airlock, the store in hub.store.exports, the site's side
behind `Freezer` (freezer); the caller's work in `desk`, the handlers in `handlers`; here
the service itself. It needs no scope of its own: a caller's token is checked with the
hub by the token itself (GET /hub/api/user), and roles, approvals and suspensions come
from the registry.
"""

from __future__ import annotations

import logging

from jupyterhub.services.auth import HubAuth
from tornado import web
from traitlets import Bool, Float, default

from hub.services._base import ServiceApp, normal_prefix, service_web_app
from hub.services.export.desk import ExportDesk
from hub.services.export.freezer import Freezer, make_freezer
from hub.services.export.handlers import routes
from hub.store.audit import AuditStore
from hub.store.exports import ExportStore

log = logging.getLogger("visiting.export")

#: the service's own scopes: none (see the module's doc)
SCOPES: list[str] = []


def make_app(desk: ExportDesk, auth: HubAuth, prefix: str) -> web.Application:
    prefix = normal_prefix(prefix)
    return service_web_app(prefix, routes(prefix, desk, auth))


class ExportService(ServiceApp):
    """The export airlock: requests, reviews and released files."""

    name = "export"
    description = __doc__.split("\n")[0]
    default_service_url = "http://127.0.0.1:8086"
    default_prefix = "/services/export/"

    sites = Bool(
        help="""Whether the sites run in containers: files are then frozen in a short-lived
        container of the site's image (DockerFreezer), else by a process over the state
        folder's homes (LocalFreezer). Default: True when $VISITING_SITES is `1`.""",
    ).tag(config=True)

    @default("sites")
    def _sites_default(self):
        return self.environ.get("VISITING_SITES", "") == "1"

    freeze_timeout = Float(
        600.0,
        help="""Seconds the site may take to freeze and check one request (default 600).""",
    ).tag(config=True)

    def make_freezer(self) -> Freezer:
        return make_freezer(self.platform, self.sites, self.freeze_timeout)

    def make_web_app(self) -> web.Application:
        audit = AuditStore(self.platform.database_url, clock=self.clock)
        store = ExportStore(self.platform.database_url, self.platform.export, audit, self.clock)
        desk = ExportDesk(store, self.registry, self.platform, self.make_freezer(), self.clock)
        # a revoked token or an ended approval stops working here within a second
        auth = HubAuth(api_url=self.hub_api_url, api_token=self.api_token, cache_max_age=1)
        log.info("export store %s", self.platform.database_url)
        return make_app(desk, auth, self.service_prefix)


def main(argv=None) -> int:
    return ExportService.main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
