"""Event ids: the schema id of every event the hub's audit store holds, defined once.

The guard in each researcher's server emits its events through jupyter_server's
event logger, each under a schema in `extensions/guard/events/<name>.yaml` whose
`$id` is `GUARD_BASE + name`. The hub's services write theirs straight to the
audit store under `HUB_BASE + name`. Emitters, the audit intake, the admin pages
and the data-usage report all name an event by the constants here.
"""

from __future__ import annotations

GUARD_BASE = "https://visiting.example/events/guard/"
HUB_BASE = "https://visiting.example/events/hub/"

# -- the guard's events (a server at a site) ---------------------------------------------

#: the names of the guard's events, one schema file each under extensions/guard/events/
GUARD_EVENTS = (
    "data-access",
    "download-allowed",
    "download-blocked",
    "egress-alert",
    "egress-cap",
    "egress-tally",
    "gate-start",
    "kernel-refused",
    "kernel-start",
    "kernel-stop",
    "notebook-save",
    "output-withheld",
    "period-end",
    "period-warning",
    "server-start",
    "server-stop",
)


def guard_event(name: str) -> str:
    """The schema id of the guard's event `name` (one of GUARD_EVENTS)."""
    if name not in GUARD_EVENTS:
        raise ValueError(f"no guard event {name!r} (events: {', '.join(GUARD_EVENTS)})")
    return GUARD_BASE + name


SERVER_START = guard_event("server-start")
SERVER_STOP = guard_event("server-stop")
KERNEL_START = guard_event("kernel-start")
KERNEL_REFUSED = guard_event("kernel-refused")
DATA_ACCESS = guard_event("data-access")
DOWNLOAD_ALLOWED = guard_event("download-allowed")
DOWNLOAD_BLOCKED = guard_event("download-blocked")
PERIOD_END = guard_event("period-end")
EGRESS_TALLY = guard_event("egress-tally")
EGRESS_ALERT = guard_event("egress-alert")
EGRESS_CAP = guard_event("egress-cap")
OUTPUT_WITHHELD = guard_event("output-withheld")

# -- the hub's events ------------------------------------------------------------------

#: a site's federation gateway answered, refused or failed a task (extensions.federation.gateway)
FEDERATION_QUERY = HUB_BASE + "federation-query"
#: data.code of a federation-query that a site's query-set audit refused (data.audit.rule
#: names the rule); the gateway answers with it, the catalogue, the admin page and the report
#: read it
QUERY_SET_AUDIT = "query_set_audit"
#: the catalogue counted people for someone (hub.services.catalogue.catalogue)
CATALOGUE_QUERY = HUB_BASE + "catalogue-query"
#: the enforcer stopped a server whose access ended (hub.services.enforcer.enforcer)
ENFORCEMENT_STOP = HUB_BASE + "enforcement-stop"
#: the secretariat acted on an approval or a person (hub.platform.operations)
SECRETARIAT_ACTION = HUB_BASE + "secretariat-action"
#: a site admin acted at their site (hub.platform.operations)
SITE_ADMIN_ACTION = HUB_BASE + "site-admin-action"
#: the export airlock (hub.store.exports): a researcher asked to take files out of their home
#: at a site; the site froze and checked them; a reviewer decided; the requester withdrew the
#: request or received its files. `user` is the requester, `actor` who acted, and
#: data.request_id the request (data.reason, data.override where a person gave one)
EXPORT_REQUEST = HUB_BASE + "export-request"
EXPORT_CHECKED = HUB_BASE + "export-checked"
EXPORT_REVIEW = HUB_BASE + "export-review"
EXPORT_WITHDRAW = HUB_BASE + "export-withdraw"
EXPORT_RELEASE = HUB_BASE + "export-release"
