"""The federation gateway of one site: allow-listed aggregate tasks, disclosure control, audit.

One gateway runs per site, registered with JupyterHub as the service
`gateway-<site>` (so the hub's proxy serves it at `/services/gateway-<site>/`)
and placed next to the site's data and Dask cluster. A request:

1. names its caller by the caller's own JupyterHub token (the hub's API says
   whose it is and what it may do; the token must allow access to this
   service) - no shared secret;
2. must hold an approval active now that covers the requested dataset here
   (the gateway asks the hub's audit service, which reads the registry; the
   registry never leaves the hub side). The one exception is a hub service
   named in VISITING_GATEWAY_SERVICES (default: the catalogue), which may ask
   for the counts of people (`cohort_counts`, under the same disclosure
   control) of any analysis dataset here, and nothing else; it names the
   person it asks for in the X-Visiting-On-Behalf-Of header, which the audit
   event records;
3. asks for a task on the allow-list, with parameters the task validates;
4. passes the query-set audit of the caller's approval on the dataset
   (`extensions.federation.audit_book`): the sets of people the answer would sum
   over are checked, before anything is computed, against every set the
   approval was answered on before; a query whose answer, added to or
   subtracted from earlier ones, would single out a person is refused (403,
   code "query_set_audit", naming the rule and the earlier queries by time
   and task). The catalogue's counts are audited per person it asks for (the
   person's approvals covering the dataset, or the person alone);
5. runs the task's per-site half on the site's engine (Dask or Hail), applies
   disclosure control at the site (and the audit's per-variant rule: variants
   at which this query and a near earlier one differ by the calls of too few
   people are withheld), records the sets in the audit (on disk, at the site)
   and only then returns aggregates;
6. is recorded as a `federation.query` event (user, approval, site, task,
   parameters, result size, suppressions) in the hub's audit store; refusals
   are recorded too, and so are failures.

A failure (a task or an import that raises) is the gateway's own error, not a
refusal: its exception and traceback go to the log (standard error: the hub's
log when the hub runs the gateway, the container's log at a site) under an
error id, and the caller gets a 500 naming the task, the exception's type and
that id (`code` "gateway_error"), never the exception's text, which may quote
the data.

Routes (under the service prefix):
    GET  api/datasets            the datasets here the caller may analyse, with versions
    POST api/tasks/<name>        {"dataset", "params", "state", "engine", "variants_known"}
                                 -> a SiteHalf: JSON, or the compact wire format
                                 (`extensions.federation.wire`) when the Accept header names
                                 it; without the variant keys when their digest is among
                                 `variants_known`. Errors are JSON.
    GET  health

The package: `models` (the caller, the configuration, the refusal a caller
reads), `decisions` (`Gateway`: who, which approval, which task, then run it;
independent of HTTP), `handlers` (the routes), `application` (the app, the
configuration from the environment, `main`); `python -m extensions.federation.gateway`
runs it.
"""

from extensions.contracts.clock import clock_from_env

from .application import config_from_env, disclosure_from_env, main, make_app
from .decisions import Gateway, missing_calls
from .handlers import DatasetsHandler, GatewayHandler, TaskHandler, new_error_id
from .models import (
    MAX_BODY,
    ON_BEHALF_HEADER,
    SERVICE_TASKS,
    Caller,
    GatewayConfig,
    GatewayRefusal,
)

__all__ = [
    "MAX_BODY",
    "ON_BEHALF_HEADER",
    "SERVICE_TASKS",
    "Caller",
    "DatasetsHandler",
    "Gateway",
    "GatewayConfig",
    "GatewayHandler",
    "GatewayRefusal",
    "TaskHandler",
    "clock_from_env",
    "config_from_env",
    "disclosure_from_env",
    "main",
    "make_app",
    "missing_calls",
    "new_error_id",
]
