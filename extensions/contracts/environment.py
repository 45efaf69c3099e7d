"""The environment the hub sets in the containers it starts, defined once.

A researcher's server: the hub's spawner sets these; the guard, the gate and
the analysis client inside the container read them (and trust nothing the user
can change: the hub and the enforcer check the same facts again).

A site's federation gateway: `hub.sites.containers.gateway_env` sets these; the gateway's
`config_from_env` reads them.
"""

from __future__ import annotations

# -- a researcher's server -------------------------------------------------------------

#: the site's short id (nig, ncc, ...) and its name for people
SITE = "VISITING_SITE"
SITE_NAME = "VISITING_SITE_NAME"
#: the approval the server runs under, its first instant after the end (UTC, ISO 8601) and
#: its last day (Japan time, ISO date)
APPROVAL_ID = "VISITING_APPROVAL_ID"
APPROVAL_END = "VISITING_APPROVAL_END"
APPROVAL_END_DATE = "VISITING_APPROVAL_END_DATE"
#: the datasets of the approval at this site, comma-separated
DATASETS = "VISITING_DATASETS"
#: the platform's download rules (JSON; extensions.guard.context.GuardRules)
GUARD_RULES = "VISITING_GUARD_RULES"
#: the platform's egress rules (JSON; extensions.contracts.egress.EgressRules)
EGRESS_RULES = "VISITING_EGRESS_RULES"
#: whether the site lets its servers open terminals: one of TERMINAL_MODES
TERMINALS = "VISITING_TERMINALS"
TERMINAL_MODES = ("guarded", "off")
#: the hub's audit intake and the hub's proxy, as the site's network reaches them
AUDIT_URL = "VISITING_AUDIT_URL"
HUB_URL = "VISITING_HUB_URL"
#: how often the guard asks the hub for the approval's end (seconds)
PERIOD_CHECK_SECONDS = "VISITING_PERIOD_CHECK_SECONDS"
#: the home's quota in bytes (unset: none)
HOME_QUOTA = "VISITING_HOME_QUOTA"

# -- a site's federation gateway ---------------------------------------------------------

#: where the site's datasets are mounted in the gateway's container
SITE_DATA = "VISITING_SITE_DATA"
#: the query-set audit's histories (a volume of the site)
QUERY_AUDIT_DIR = "VISITING_QUERY_AUDIT_DIR"
#: the platform's disclosure rules (JSON: min_cell_count, min_minor_allele_count)
DISCLOSURE = "VISITING_DISCLOSURE"
#: the tasks the gateway answers (comma-separated, "*" for all) and the hub services that
#: may ask it for counts
GATEWAY_TASKS = "VISITING_GATEWAY_TASKS"
GATEWAY_SERVICES = "VISITING_GATEWAY_SERVICES"
