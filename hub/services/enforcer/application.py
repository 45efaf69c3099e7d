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

The verdict is in `judge`, the hub calls in `enforcer`, the admin service's requests in
`handlers`; here the service itself.
"""

from __future__ import annotations

import logging

from jupyterhub.services.auth import HubAuth
from tornado import web
from traitlets import Float, Instance, TraitError, default, validate

from hub.services._base import ServiceApp, normal_prefix, service_web_app
from hub.services.enforcer.enforcer import Enforcer
from hub.services.enforcer.handlers import EnforceHandler, StopHandler
from hub.store.audit import AuditStore

log = logging.getLogger("visiting.enforcer")

#: list and read servers, stop them, and revoke the tokens of a suspended person
SCOPES = ["list:users", "read:users:name", "read:servers", "delete:servers", "tokens"]


def make_app(enforcer: Enforcer, auth: HubAuth, prefix: str) -> web.Application:
    prefix = normal_prefix(prefix)
    args = {"enforcer": enforcer, "auth": auth}
    routes = [
        (prefix + "api/enforce", EnforceHandler, args),
        (prefix + "api/stop", StopHandler, args),
    ]
    return service_web_app(prefix, routes)


class EnforcerService(ServiceApp):
    """The enforcer: a round every `interval` seconds, and at once when the admin service asks."""

    name = "enforcer"
    description = __doc__.split("\n")[0]
    default_service_url = None  # answers the admin service only where the hub names its URL
    default_prefix = "/services/enforcer/"
    required = ("api_token",)
    aliases = {**ServiceApp.aliases, "interval": "EnforcerService.interval"}

    interval = Float(
        30.0,
        help="""Seconds between enforcement rounds over every running server. Default: 30.
        Example: `--interval=10`.""",
    ).tag(config=True)

    @validate("interval")
    def _positive_interval(self, proposal):
        if proposal["value"] <= 0:
            raise TraitError(f"--interval must be positive, not {proposal['value']:g}")
        return proposal["value"]

    enforcer = Instance(Enforcer, help="The enforcer (built from the settings above).")

    @default("enforcer")
    def _enforcer_default(self):
        return Enforcer(
            self.hub_api_url,
            self.api_token,
            self.registry,
            AuditStore(self.platform.database_url, clock=self.clock),
            self.clock,
        )

    def make_web_app(self) -> web.Application:
        # callers are checked without the cache (see CallerHandler.prepare)
        auth = HubAuth(api_url=self.hub_api_url, api_token=self.api_token)
        return make_app(self.enforcer, auth, self.service_prefix)

    async def run(self) -> None:
        log.info("enforcing every %.0f s", self.interval)
        await self.enforcer.run(self.interval)


def main(argv=None) -> int:
    return EnforcerService.main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
