"""What the gateway's parts share: who asks, the gateway's configuration, the refusal a
caller reads, and the limits of a request."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tornado import web

from extensions.contracts.events import QUERY_SET_AUDIT

log = logging.getLogger("visiting.gateway")

#: a request's largest body: the later rounds of a logistic GWAS carry the fit of every variant
#: in `state` (about 40 bytes a variant per parameter, several MB at 100,000 variants)
MAX_BODY = 64 * 1024 * 1024

#: what a trusted hub service (the catalogue) may ask: counts of people, nothing else
SERVICE_TASKS = ("cohort_counts",)
ON_BEHALF_HEADER = "X-Visiting-On-Behalf-Of"


class GatewayRefusal(web.HTTPError):
    """A refusal the caller reads: its message says what is wrong; it is audited.

    `code` is a machine-readable kind where one helps the caller ("small_query":
    the query selects fewer people than disclosure control allows;
    "query_set_audit": the approval's earlier answers and this one would single
    someone out); `details` go into the answer's JSON and the audit event."""

    def __init__(
        self, status: int, message: str, code: str | None = None, details: dict | None = None
    ):
        super().__init__(status, message.replace("%", "%%"))
        self.message = message
        self.code = code
        self.details = details or {}

    @classmethod
    def of_audit(cls, refused) -> GatewayRefusal:
        """The refusal of an `audit_book.AuditRefused`: the rule, the earlier queries, no people."""
        from extensions.federation.audit_book import refusal_text_ja

        v = refused.verdict
        details = {
            "audit": {
                "rule": v.rule,
                "scope": refused.scope.key,
                "collides_with": [m.to_json() for m in v.collides_with],
            }
        }
        return cls(403, f"{v.message} / {refusal_text_ja(v)}", QUERY_SET_AUDIT, details)


@dataclass(frozen=True)
class Caller:
    """Who asks: a person (kind "user") or a trusted hub service (kind "service")."""

    name: str
    kind: str

    @property
    def is_service(self) -> bool:
        return self.kind == "service"


@dataclass
class GatewayConfig:
    site: str
    data_root: Path  # the site's datasets: <data_root>/<dataset>/
    hub_api_url: str
    token: str  # the gateway's own service token
    audit_url: str | None  # the hub's audit intake (…/services/audit/)
    scheduler: str | None  # the site's Dask scheduler; None: computed in-process
    allowed_tasks: tuple[str, ...]  # "*": every task the package holds
    engines: tuple[str, ...] = ("dask", "hail")
    services: tuple[str, ...] = ("catalogue",)  # hub services that may ask SERVICE_TASKS
    audit_dir: Path | None = None  # the query-set audits' histories (None: memory only)

    @property
    def service_name(self) -> str:
        return f"gateway-{self.site}"
