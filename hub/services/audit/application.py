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

The decisions are in `checks`, the handlers in `handlers`; here the service itself.
"""

from __future__ import annotations

import logging

from jupyterhub.services.auth import HubAuth
from tornado import web

from hub.services._base import ServiceApp, normal_prefix, service_web_app
from hub.services.audit.handlers import ApprovalsHandler, IntakeHandler, PeriodHandler
from hub.store.audit import AuditStore

log = logging.getLogger("visiting.audit")


def make_app(store: AuditStore, auth: HubAuth, prefix: str, registry=None) -> web.Application:
    prefix = normal_prefix(prefix)
    routes = [(prefix + "api/events", IntakeHandler, {"store": store, "auth": auth})]
    if registry is not None:
        args = {"registry": registry, "auth": auth}
        routes += [
            (prefix + r"api/approvals/([^/]+)", ApprovalsHandler, args),
            (prefix + "api/period", PeriodHandler, args),
        ]
    return service_web_app(prefix, routes)


class AuditService(ServiceApp):
    """The audit intake: events in from servers and gateways, the approvals' state out."""

    name = "audit"
    description = __doc__.split("\n")[0]
    default_service_url = "http://127.0.0.1:8082"
    default_prefix = "/services/audit/"

    def make_web_app(self) -> web.Application:
        store = AuditStore(self.platform.database_url, clock=self.clock)
        auth = HubAuth(api_url=self.hub_api_url, api_token=self.api_token, cache_max_age=60)
        log.info("audit store %s", self.platform.database_url)
        return make_app(store, auth, self.service_prefix, self.registry)


def main(argv=None) -> int:
    return AuditService.main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
