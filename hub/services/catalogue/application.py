"""The catalogue: datasets to plan a study with, and how many people each site holds.

A hub-managed service at /services/catalogue/, open to every person with an
approval active now (not only for the datasets they are approved for: the
catalogue is where a study is planned). It answers

    GET api/datasets            every dataset: JGA-style metadata (catalogue.yaml),
                                its site, whether the caller is approved for it,
                                and the number of people at its site
    GET api/attributes          the levels of the four clinical attributes and of
                                the disease codes, for filters
    GET api/counts?sex=female&age_band=40-49&region=Kanto&icd10=E11&by=age_band
                                the people the filters select, per site and pooled,
                                and a table by one attribute
    GET /                       the same as a page (Japanese and English)
    GET guide/ | guide/<page>   the user guide for data handlers (docs/researchers)

The counts come from the sites, never from a copy held here: the service
asks each site's federation gateway for `cohort_counts` with its own
service token (the gateways let the catalogue ask for counts of people and
nothing else), so every count has passed the site's disclosure control. A
site whose selection is smaller than the platform's minimum count answers
nothing, and the catalogue shows that site's count as withheld; a cell under
the minimum count is withheld at the site, and so is a count that the
person's earlier counts (through this page or their approvals' analyses)
would combine with to single someone out (the gateway's query-set audit,
code `query_set_audit`). Answers are kept for a few minutes (CACHE_SECONDS),
per person, so a page reload does not ask five sites again.
Each request for counts is recorded as a `catalogue-query` event.

A site that gives no count says why, on the page and in the API's `reason`
(see `no_answer`): its site is down (the hub's proxy cannot reach its gateway,
or the gateway does not answer in time), its gateway failed (a 5xx: the
gateway logs the exception and names it), or its gateway refused the query (a
4xx with the gateway's code and message). Each is logged here with the site
and the cause. A site found down is not asked again for SITE_DOWN_SECONDS, so
one page does not wait for a dead site once per table.

The model is in `catalogue` (with the sites' answers in `answers`), the user guide in
`guide`, the handlers in `handlers`; here the service itself.
"""

from __future__ import annotations

import os

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from tornado import web
from traitlets import Unicode, default

from extensions.contracts.environment import HUB_URL
from hub.platform.policy import load_catalogue
from hub.services._base import ServiceApp, normal_prefix, service_web_app
from hub.services.catalogue.catalogue import Catalogue
from hub.services.catalogue.handlers import (
    AttributesHandler,
    CountsHandler,
    DatasetsHandler,
    GuideHandler,
    PageHandler,
)
from hub.store.audit import AuditStore


def make_app(catalogue: Catalogue, prefix: str, cookie_secret: bytes) -> web.Application:
    prefix = normal_prefix(prefix)
    args = {"catalogue": catalogue, "prefix": prefix}
    routes = [
        (prefix + "api/datasets", DatasetsHandler, args),
        (prefix + "api/attributes", AttributesHandler, args),
        (prefix + "api/counts", CountsHandler, args),
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (prefix + r"guide/?([a-z0-9-]*)", GuideHandler, args),
        (prefix + "?", PageHandler, args),
    ]
    return service_web_app(prefix, routes, cookie_secret=cookie_secret, xsrf_cookies=True)


class CatalogueService(ServiceApp):
    """The catalogue: datasets, counts of people through the sites' gateways, the user guide."""

    name = "catalogue"
    description = __doc__.split("\n")[0]
    default_service_url = "http://127.0.0.1:8085"
    default_prefix = "/services/catalogue/"
    required = ("hub_url", "api_token")
    env_names = {**ServiceApp.env_names, "hub_url": HUB_URL}

    hub_url = Unicode(
        help="""The hub's public URL, through which the sites' gateways are asked
        (<hub_url>/services/gateway-<site>/). Default: $VISITING_HUB_URL (the hub's
        configuration sets it); the catalogue does not start without it. Example:
        `http://127.0.0.1:8000`.""",
    ).tag(config=True)

    @default("hub_url")
    def _hub_url_default(self):
        return self.environ.get(HUB_URL, "")

    def make_web_app(self) -> web.Application:
        catalogue = Catalogue(
            platform=self.platform,
            entries=load_catalogue(self.platform_dir, self.platform),
            registry=self.registry,
            audit=AuditStore(self.platform.database_url, clock=self.clock),
            hub_url=self.hub_url,
            token=self.api_token,
            clock=self.clock,
        )
        # an approval that ends or a token that is revoked stops working here within a second
        HubOAuth.instance(api_url=self.hub_api_url, api_token=self.api_token, cache_max_age=1)
        return make_app(catalogue, self.service_prefix, os.urandom(32))


def main(argv=None) -> int:
    return CatalogueService.main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
